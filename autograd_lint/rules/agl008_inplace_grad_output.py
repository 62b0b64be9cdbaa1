"""AGL008 inplace-grad-output: backward must not write into the gradients it is given."""

from __future__ import annotations

from collections.abc import Iterator

import libcst as cst

from ..core.diagnostic import Severity
from ..core.module import ParsedModule
from ..core.rule import Finding
from ..facts.function_model import BACKWARD_METHODS, FunctionClass, Method
from ..facts.inplace import TENSOR, TENSORS, Alias, AliasFlow
from .base import FunctionClassRule

TORCH_MESSAGE = (
    "unsupported operation: more than one element of the written-to tensor refers to a single memory "
    "location. Please clone() the tensor before performing the operation."
)


class InplaceGradOutput(FunctionClassRule[FunctionClass]):
    code = "AGL008"
    name = "inplace-grad-output"
    severity = Severity.ERROR
    summary = "backward modifies an incoming gradient in place without a prior clone"
    only_reachable_backward = True

    def check_class(self, function_class: FunctionClass, module: ParsedModule) -> Iterator[Finding[FunctionClass]]:
        for name in BACKWARD_METHODS:
            method = function_class.own_methods.get(name)
            if method is not None:
                yield from self._check_method(module, method)

    def _check_method(self, module: ParsedModule, method: Method) -> Iterator[Finding]:
        roots = {param.name.value: Alias(param.name.value, TENSOR) for param in method.data_params}
        star = method.node.params.star_arg
        if isinstance(star, cst.Param):
            roots[star.name.value] = Alias(star.name.value, TENSORS)
        if not roots:
            return
        reported: set[str] = set()
        for write, alias in AliasFlow(method.node, roots, module.qualified_name).found:
            if alias.root in reported:
                continue  # the first write is the one to fix
            reported.add(alias.root)
            yield Finding(write.node, *_message(method, write.text, alias), subject=method.owner)


def _message(method: Method, text: str, alias: Alias) -> tuple[str, str]:
    star = method.node.params.star_arg
    if isinstance(star, cst.Param) and star.name.value == alias.root:
        gradient = f"an incoming gradient (from `*{alias.root}`)"
    else:
        gradient = f"the incoming gradient `{alias.root}`"
    return (
        f"{method.owner.name}.{method.name} writes in place into {gradient}",
        f"`{text}` writes into it. That tensor belongs to "
        f"the caller (`y.backward(g)` sees `g` overwritten), and after `.sum()` or `.mean()` torch raises "
        f"'{TORCH_MESSAGE}'. Compute out of place (`g * s`) or clone it first.",
    )
