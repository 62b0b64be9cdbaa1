"""The confirm harness of AGL022 amp-missing-custom-fwd; its recipe is runtime/agl022.py."""

from __future__ import annotations

from ...core.module import ParsedModule
from ...core.rule import Finding
from ...rules.agl022_amp_missing_custom_fwd import AmpCase
from ..harness import Harness, finding_subject, recipe_harness

EVIDENCE = r"inside torch\.autocast\('cpu', dtype=torch\.bfloat16\) \(output bfloat16\) backward after the block raised RuntimeError: .*(dtype|scalar type)|backward raised AttributeError: '\w+Backward' object has no attribute '_fwd_used_autocast'"


def build(module: ParsedModule, finding: Finding) -> Harness:
    """Forward under `torch.autocast("cpu", dtype=torch.bfloat16)` on float32 inputs, backward
    after the block, as a training loop does; the same Function without autocast must run."""
    case = finding_subject(finding, AmpCase)
    name = case.function_class.name
    return recipe_harness(module, case.function_class, f"_agl_recipe.check_amp({name}.apply, _agl_builders)")
