"""AGL006 forward-called-directly: `Fn.forward(...)` / `Fn.backward(...)` outside the Function bypass `.apply`."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import libcst as cst

from ..core.diagnostic import Severity
from ..core.module import ParsedModule
from ..core.rule import Finding
from ..core.syntax import short_code
from ..facts.function_model import FunctionClass, function_model
from .base import FunctionClassRule


@dataclass(frozen=True)
class DirectCall:
    function_class: FunctionClass
    call: cst.Call
    method: str  # "forward" or "backward"


class ForwardCalledDirectly(FunctionClassRule[DirectCall]):
    code = "AGL006"
    name = "forward-called-directly"
    severity = Severity.ERROR
    summary = "Fn.forward(...) / Fn.backward(...) called outside the Function, bypassing .apply"

    def check_class(self, function_class: FunctionClass, module: ParsedModule) -> Iterator[Finding[DirectCall]]:
        for call in function_class.direct_calls:
            if function_model(module).enclosing(call) is not None:
                continue  # delegation inside a Function (Base.forward(ctx, ...) in a subclass, composition)
            if module.under_no_grad(call):
                continue  # nothing is recorded, so nothing is bypassed
            if not isinstance(call.func, cst.Attribute):
                continue  # never: direct_calls are `Cls.forward(...)` / `Cls.backward(...)`
            method = call.func.attr.value
            yield Finding(
                call, *_message(function_class, call, method), subject=DirectCall(function_class, call, method)
            )


def _message(function_class: FunctionClass, call: cst.Call, method: str) -> tuple[str, str]:
    name = function_class.name
    if method == "forward":
        return (
            f"`{short_code(call, 40)}` calls {name}.forward directly",
            f"No {name}Backward node is recorded, so autograd "
            f"differentiates forward's body (or nothing) and the custom backward never runs. Call `{name}.apply(...)` "
            f"without the ctx argument.",
        )
    return (
        f"`{short_code(call, 40)}` calls {name}.backward directly",
        f"Autograd never calls it that way, so its result "
        f"reaches no .grad. Call `{name}.apply(...)` and let `loss.backward()` run it.",
    )
