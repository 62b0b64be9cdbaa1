"""The confirm harness of AGL024 functorch-incompatible; its recipe is runtime/agl024.py."""

from __future__ import annotations

from ...core.module import ParsedModule
from ...core.rule import Finding
from ...rules.agl024_functorch_incompatible import TransformedFunction
from ..harness import Harness, finding_subject, recipe_harness

EVIDENCE = r"runs plainly, but under torch\.func\.\w+ raised (RuntimeError: In order to use an autograd\.Function with functorch transforms .* it must override the setup_context staticmethod|RuntimeError: You tried to vmap over \w+, but it does not have vmap support|NotImplementedError: You must implement the jvp function for custom autograd\.Function)"


def build(module: ParsedModule, finding: Finding) -> Harness:
    """Run the module's transform over `.apply` on float64 inputs (vmap over a leading batch
    dimension); torch's own refusal is the proof, and the plain call must run."""
    found = finding_subject(finding, TransformedFunction)
    name = found.function_class.name
    return recipe_harness(
        module, found.function_class, f"_agl_recipe.check_functorch({name}.apply, _agl_builders, {found.transform!r})"
    )
