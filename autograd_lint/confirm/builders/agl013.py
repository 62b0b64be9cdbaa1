"""The confirm harness of AGL013 save-for-backward-twice; its recipe is runtime/agl013.py."""

from __future__ import annotations

from ...core.module import ParsedModule
from ...core.rule import Finding
from ...rules.agl013_save_for_backward_twice import Replacement
from ..harness import Harness, finding_subject, recipe_harness

EVIDENCE = r"forward called save_for_backward \d+ times \([\d + ]+ tensors\) and grad_fn\.saved_tensors holds \d+; backward (raised \w+Error|ran but input \d+'s gradient is)"


def build(module: ParsedModule, finding: Finding) -> Harness:
    """Run forward as written, then with the calls' tensors accumulated into one save (the fix):
    torch's `saved_tensors` count, the error backward raises, or the gradients differ."""
    function_class = finding_subject(finding, Replacement).function_class
    return recipe_harness(
        module, function_class, f"_agl_recipe.check_save_twice({function_class.name}.apply, _agl_builders)"
    )
