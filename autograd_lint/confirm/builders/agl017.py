"""The confirm harness of AGL017 materialize-grads-none; its recipe is runtime/agl017.py."""

from __future__ import annotations

from ...core.module import ParsedModule
from ...core.rule import Finding
from ...rules.agl017_materialize_grads_none import NoneGradUse
from ..harness import Harness, finding_subject, recipe_harness

EVIDENCE = r"backward from output \d+ only \(so `\w+` is None\) raised (TypeError: unsupported operand type\(s\) for .*: 'NoneType'|TypeError: .*NoneType|AttributeError: 'NoneType' object has no attribute)"


def build(module: ParsedModule, finding: Finding) -> Harness:
    """Backward from one output at a time (the others unused, so their gradients are None), as
    written and with materialization left on; torch's TypeError/AttributeError on NoneType is the proof."""
    use = finding_subject(finding, NoneGradUse)
    return recipe_harness(
        module,
        use.function_class,
        f"_agl_recipe.check_materialize_grads({use.function_class.name}.apply, _agl_builders, {use.grad!r}, {use.position})",
    )
