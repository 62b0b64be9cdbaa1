"""AGL015 autograd-inside-forward: forward runs with grad mode off, so autograd calls in it fail.

`Function.apply` runs forward under no-grad: nothing computed there has a grad_fn, so
`torch.autograd.grad(...)` or `y.backward()` on it raises unless the inner computation is wrapped in
`torch.enable_grad()`. The rule looks at forward's own body and, up to three calls deep, at the helpers
it calls by name (functions defined in forward or a helper, module functions, the Function's own methods,
functions of a module-level class used as a namespace), reported at forward's call.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import libcst as cst

from ..core.diagnostic import Severity
from ..core.module import ParsedModule
from ..core.rule import Finding
from ..core.syntax import enables_grad, short_code, walk
from ..facts.function_model import FunctionClass, function_model
from ..torch_api import AUTOGRAD_GRADIENT_CALLS
from .base import FunctionClassRule

TORCH_MESSAGE = "element 0 of tensors does not require grad and does not have a grad_fn"


@dataclass(frozen=True)
class AutogradCall:
    function_class: FunctionClass
    call: cst.Call
    helper: cst.FunctionDef | None  # set when the call is in a helper that forward calls (reported at that call)


class AutogradInsideForward(FunctionClassRule[AutogradCall]):
    code = "AGL015"
    name = "autograd-inside-forward"
    severity = Severity.ERROR
    summary = "forward calls torch.autograd.grad or .backward() without torch.enable_grad()"

    def check_class(self, function_class: FunctionClass, module: ParsedModule) -> Iterator[Finding[AutogradCall]]:
        forward = function_class.own_methods.get("forward")
        if forward is None or _grad_enabled_throughout(forward.node):
            return
        for call in _unguarded_autograd_calls(module, forward.node):
            yield Finding(call, *_message(function_class, call, None), subject=AutogradCall(function_class, call, None))
        helpers = dict(function_model(module).called_functions(forward))
        for helper_call in _calls_in(forward.node):
            helper = helpers.get(helper_call) or _class_function(module, helper_call)
            if helper is None or helper is forward.node or _under_enable_grad(module, helper_call, forward.node):
                continue
            found = _reachable_autograd_call(module, helper, {forward.node, helper}, HELPER_DEPTH)
            if found is not None:
                inner, where = found
                subject = AutogradCall(function_class, inner, helper)
                yield Finding(helper_call, *_message(function_class, inner, helper, where), subject=subject)


def _message(
    function_class: FunctionClass, call: cst.Call, helper: cst.FunctionDef | None, where: cst.FunctionDef | None = None
) -> tuple[str, str]:
    through = f" (through `{where.name.value}()`)" if where is not None and where is not helper else ""
    forward = f"{function_class.name}.forward"
    if helper is None:
        message = f"{forward} calls `{short_code(call, 30)}` outside torch.enable_grad()"
        detail = ""
    else:
        message = f"{forward} calls `{helper.name.value}()`, which runs autograd outside enable_grad()"
        detail = f"`{helper.name.value}()`{through} calls `{short_code(call)}` outside `torch.enable_grad()`. "
    return (
        message,
        f"{detail}Apply runs forward with grad mode off, "
        f"so nothing computed there has a grad_fn and torch raises '{TORCH_MESSAGE}'. "
        f"Wrap the inner computation in `with torch.enable_grad():`.",
    )


def _autograd_call(module: ParsedModule, node: cst.CSTNode) -> bool:
    """`torch.autograd.grad(...)`, `torch.autograd.backward(...)` (however imported), `<t>.backward(...)`."""
    if not isinstance(node, cst.Call):
        return False
    func = node.func
    if module.qualified_name(func) in AUTOGRAD_GRADIENT_CALLS:
        return True
    if isinstance(func, cst.Attribute) and func.attr.value == "backward":
        receiver = func.value
        # `Fn.backward(ctx, g)`, `super().backward(...)`, `self.backward(...)`: a direct call of a
        # Function's backward (AGL006's concern), not a backward pass.
        if (
            isinstance(receiver, cst.Call) and isinstance(receiver.func, cst.Name) and receiver.func.value == "super"
        ) or (isinstance(receiver, cst.Name) and (receiver.value[:1].isupper() or receiver.value in ("self", "cls"))):
            return False
        return module.qualified_name(func) not in ("torch.autograd.grad", "torch.autograd")
    return False


# How many calls deep the helpers forward calls are read (`forward -> _refine -> _grad_of`).
HELPER_DEPTH = 3


def _calls_in(function: cst.FunctionDef) -> list[cst.Call]:
    return [node for node in walk(function.body, into_functions=False) if isinstance(node, cst.Call)]


def _class_function(module: ParsedModule, call: cst.Call) -> cst.FunctionDef | None:
    """`Energy.force(x)`: a function defined in the body of a module-level class of this module (a
    staticmethod or classmethod used as a namespace)."""
    func = call.func
    if not (isinstance(func, cst.Attribute) and isinstance(func.value, cst.Name)):
        return None
    return function_model(module).class_functions.get((func.value.value, func.attr.value))


def _called_function(module: ParsedModule, call: cst.Call, caller: cst.FunctionDef) -> cst.FunctionDef | None:
    """The function a call in a helper runs, when this module shows it: a function defined in the helper,
    a module-level function, or a function of a module-level class (`Energy.force`)."""
    if isinstance(call.func, cst.Name):
        for node in walk(caller.body, into_functions=False):
            if isinstance(node, cst.FunctionDef) and node.name.value == call.func.value:
                return node
        return function_model(module).module_functions.get(call.func.value)
    return _class_function(module, call)


def _reachable_autograd_call(
    module: ParsedModule, function: cst.FunctionDef, seen: set, depth: int
) -> tuple[cst.Call, cst.FunctionDef] | None:
    """(call, the function it is in) for the first autograd call `function` makes outside enable_grad,
    itself or through the helpers it calls outside enable_grad (up to `depth` calls deep)."""
    inner = _unguarded_autograd_calls(module, function)
    if inner:
        return inner[0], function
    if depth <= 1 or _grad_enabled_throughout(function):
        return None
    for call in _calls_in(function):
        callee = _called_function(module, call, function)
        if callee is None or callee in seen or _under_enable_grad(module, call, function):
            continue
        found = _reachable_autograd_call(module, callee, seen | {callee}, depth - 1)
        if found is not None:
            return found
    return None


def _unguarded_autograd_calls(module: ParsedModule, function: cst.FunctionDef) -> list[cst.Call]:
    if _grad_enabled_throughout(function):
        return []
    return [
        node
        for node in walk(function.body, into_functions=False)
        if isinstance(node, cst.Call)
        and _autograd_call(module, node)
        and not _under_enable_grad(module, node, function)
    ]


def _grad_enabled_throughout(function: cst.FunctionDef) -> bool:
    """Decorated with `@torch.enable_grad()`, or switches grad on with a bare
    `torch.set_grad_enabled(True)` statement somewhere in its body."""
    if any(enables_grad(d.decorator) for d in function.decorators):
        return True
    for node in walk(function.body, into_functions=False):
        if isinstance(node, cst.Expr) and isinstance(node.value, cst.Call) and enables_grad(node.value):
            return True
    return False


def _under_enable_grad(module: ParsedModule, node: cst.CSTNode, function: cst.FunctionDef) -> bool:
    for ancestor in module.ancestors(node):
        if ancestor is function:
            return False
        if isinstance(ancestor, cst.With) and any(enables_grad(item.item) for item in ancestor.items):
            return True
    return False
