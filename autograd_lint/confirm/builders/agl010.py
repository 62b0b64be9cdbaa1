"""The confirm harness of AGL010 missing-once-differentiable; its recipe is runtime/agl010.py."""

from __future__ import annotations

from ...core.module import ParsedModule
from ...core.rule import Finding
from ...facts.function_model import FunctionClass
from ..harness import Harness, apply_builders, finding_subject, function_class_code

EVIDENCE = r"second-order gradient for input \d+ \[[^\]]*\] where central finite differences of the first-order gradient give \[[^\]]*\]|cannot be differentiated again, so a gradient penalty gets no gradient: torch raises RuntimeError: element 0 of tensors does not require grad"


def build(module: ParsedModule, finding: Finding) -> Harness:
    """A gradient penalty through the Function: the second-order gradient autograd computes
    against central finite differences of the first-order gradient (see runtime/agl010.py)."""
    function_class = finding_subject(finding, FunctionClass)
    required, optional, definition = function_class_code(module, function_class)
    main = "\n".join(
        [
            definition,
            apply_builders(module, function_class),
            f"_agl_recipe.check_double_backward({function_class.name}.apply, _agl_builders)",
        ]
    )
    return Harness(required, main, optional)
