"""The confirm harness of AGL008 inplace-grad-output; its recipe is runtime/agl008.py."""

from __future__ import annotations

from ...core.module import ParsedModule
from ...core.rule import Finding
from ...facts.function_model import FunctionClass
from ..harness import Harness, finding_subject, recipe_harness

EVIDENCE = r"backward changed the caller's upstream gradient from \[[^\]]*\] to \[[^\]]*\]|raised RuntimeError: unsupported operation: more than one element of the written-to tensor refers to a single memory location"


def build(module: ParsedModule, finding: Finding) -> Harness:
    """Backward with an explicit contiguous upstream gradient (is the caller's tensor changed?),
    then from `.sum()` (does torch refuse to write into the expanded gradient?)."""
    function_class = finding_subject(finding, FunctionClass)
    name = function_class.name
    return recipe_harness(module, function_class, f"_agl_recipe.check_grad_output_inplace({name}.apply, _agl_builders)")
