"""The confirm harness of AGL018 float-output-not-marked; its recipe is runtime/agl018.py."""

from __future__ import annotations

from ...core.module import ParsedModule
from ...core.rule import Finding
from ...rules.agl018_float_output_not_marked import UnmarkedOutput
from ..harness import Harness, finding_subject, recipe_harness

EVIDENCE = r"output \d+ \(.*\) has dtype torch\.\w+ and requires_grad=True"


def build(module: ParsedModule, finding: Finding) -> Harness:
    """Apply it: the output requires grad although it is a mask or index, a loss that uses it
    sends a gradient into backward, and backward drops it (the inputs' gradients do not change)."""
    unmarked = finding_subject(finding, UnmarkedOutput)
    name = unmarked.function_class.name
    return recipe_harness(
        module, unmarked.function_class, f"_agl_recipe.check_unmarked_output({name}, _agl_builders, {unmarked.index})"
    )
