"""The confirm harness of AGL016 rng-in-backward; its recipe is runtime/agl016.py."""

from __future__ import annotations

import libcst as cst

from ...core.module import ParsedModule
from ...core.rule import Finding
from ...core.syntax import short_code
from ...facts.function_model import FunctionClass
from ..harness import CannotBuildHarness, Harness, recipe_harness

EVIDENCE = r"two backward passes over the same forward \(seeds 1 and 2\) gave different gradients for input \d+: \d+ of \d+ elements differ"


def build(module: ParsedModule, finding: Finding) -> Harness:
    """Forward once, then two backward passes over the same graph under different seeds: a backward
    that reuses forward's draw gives the same gradient both times; the mask mismatch is measured too."""
    match finding.subject:
        case (FunctionClass() as function_class, cst.Call() as call):
            pass
        case _:
            raise CannotBuildHarness("the finding carries no (FunctionClass, Call) pair for its harness")
    return recipe_harness(
        module,
        function_class,
        f"_agl_recipe.check_rng_backward({function_class.name}.apply, _agl_builders, {short_code(call)!r})",
    )
