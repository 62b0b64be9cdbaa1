"""The confirm harness of AGL012 save-for-backward-non-tensor; its recipe is runtime/agl012.py."""

from __future__ import annotations

from ...core.module import ParsedModule
from ...core.rule import Finding
from ...rules.agl012_save_for_backward_non_tensor import NonTensorSave
from ..harness import Harness, finding_subject, recipe_harness

EVIDENCE = r"raised TypeError: save_for_backward can only save variables, but argument \d+ is of type [\w.]+"


def build(module: ParsedModule, finding: Finding) -> Harness:
    """Apply with float64 inputs that require grad, grad mode on: torch's own TypeError."""
    function_class = finding_subject(finding, NonTensorSave).function_class
    return recipe_harness(
        module, function_class, f"_agl_recipe.check_save_non_tensor({function_class.name}.apply, _agl_builders)"
    )
