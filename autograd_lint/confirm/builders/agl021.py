"""The confirm harness of AGL021 bad-grad-shape; its recipe is runtime/agl021.py."""

from __future__ import annotations

from ...core.module import ParsedModule
from ...core.rule import Finding
from ...rules.agl021_bad_grad_shape import BadGradient
from ..harness import Harness, finding_subject, recipe_harness

EVIDENCE = r"returned an invalid gradient at index \d+ - got \[[\d, ]*\] but expected shape compatible with \[[\d, ]*\]"


def build(module: ParsedModule, finding: Finding) -> Harness:
    """Forward and backward on non-square inputs of several ranks; torch's own "returned an invalid
    gradient at index <i>" for the flagged input is the proof."""
    bad = finding_subject(finding, BadGradient)
    name = bad.function_class.name
    return recipe_harness(
        module, bad.function_class, f"_agl_recipe.check_grad_shape({name}.apply, _agl_builders, {bad.input_index})"
    )
