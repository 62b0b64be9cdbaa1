"""The confirm harness of AGL007 tensor-on-ctx; its recipe is runtime/agl007.py."""

from __future__ import annotations

from ...core.module import ParsedModule
from ...core.rule import Finding
from ...rules.agl007_tensor_on_ctx import CtxTensor
from ..harness import Harness, finding_subject, recipe_harness

EVIDENCE = r"survived `del out` and only gc\.collect\(\) freed it|raised no error but changed input \d+'s gradient from|after backward, grad_fn still holds ctx\.\w+ \(torch\.\w+ \["


def build(module: ParsedModule, finding: Finding) -> Harness:
    """Three measurements, the first that shows the harm wins: the output on ctx keeps grad_fn alive
    after `del out` with gc disabled (a reference cycle); an input changed in place after apply
    changes the gradients without an error; the tensor is still held by grad_fn after backward."""
    stored = finding_subject(finding, CtxTensor)
    name = stored.function_class.name
    call = f"_agl_recipe.check_tensor_on_ctx({name}.apply, _agl_builders, {stored.attribute!r}, {stored.role!r})"
    return recipe_harness(module, stored.function_class, call)
