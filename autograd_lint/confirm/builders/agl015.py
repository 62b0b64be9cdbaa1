"""The confirm harness of AGL015 autograd-inside-forward; its recipe is runtime/agl015.py."""

from __future__ import annotations

from ...core.module import ParsedModule
from ...core.rule import Finding
from ...core.syntax import short_code
from ...rules.agl015_autograd_inside_forward import AutogradCall
from ..harness import Harness, finding_subject, recipe_harness

EVIDENCE = r"with inputs that require grad raised RuntimeError: element 0 of tensors does not require grad and does not have a grad_fn"


def build(module: ParsedModule, finding: Finding) -> Harness:
    """Apply the Function to float64 leaf tensors that require grad; torch's own error from inside
    forward is the proof."""
    found = finding_subject(finding, AutogradCall)
    return recipe_harness(
        module,
        found.function_class,
        f"_agl_recipe.check_autograd_in_forward({found.function_class.name}.apply, _agl_builders, {short_code(found.call)!r})",
    )
