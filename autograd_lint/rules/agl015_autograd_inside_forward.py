"""AGL015 autograd-inside-forward: forward runs with grad mode off, so autograd calls in it fail.

`Function.apply` runs forward under no-grad: nothing computed there has a grad_fn, so
`torch.autograd.grad(...)` or `y.backward()` on it raises unless the inner computation is wrapped in
`torch.enable_grad()`. The rule looks at forward's own body and, one level deep, at the helpers it
calls by name (functions defined in forward, module functions, the Function's own methods), reported
at forward's call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import libcst as cst

from ..confirm.harness import Harness, recipe_harness
from ..diagnostic import Severity
from ..function_model import FunctionClass
from ..module import ParsedModule
from ..rule import Finding, FunctionRule
from ..syntax import enables_grad, short_code, walk

AUTOGRAD_FUNCTIONS = frozenset({"torch.autograd.grad", "torch.autograd.backward"})
TORCH_MESSAGE = "element 0 of tensors does not require grad and does not have a grad_fn"


@dataclass(frozen=True)
class AutogradCall:
    function_class: FunctionClass
    call: cst.Call
    helper: cst.FunctionDef | None  # set when the call is in a helper that forward calls (reported at that call)


class AutogradInsideForward(FunctionRule):
    code = "AGL015"
    name = "autograd-inside-forward"
    severity = Severity.ERROR
    summary = "forward calls torch.autograd.grad or .backward() without torch.enable_grad()"

    def check(self, module: ParsedModule) -> Iterator[Finding]:
        for function_class in module.functions:
            forward = function_class.own_methods.get("forward")
            if forward is None or _grad_enabled_throughout(forward.node):
                continue
            for call in _unguarded_autograd_calls(module, forward.node):
                yield Finding(call, _message(function_class, call, None), subject=AutogradCall(function_class, call, None))
            for helper_call, helper in module.functions.called_functions(forward):
                inner = _unguarded_autograd_calls(module, helper)
                if inner and not _under_enable_grad(module, helper_call, forward.node):
                    subject = AutogradCall(function_class, inner[0], helper)
                    yield Finding(helper_call, _message(function_class, inner[0], helper), subject=subject)

    def confirm_harness(self, module: ParsedModule, finding: Finding) -> Harness:
        """Apply the Function to float64 leaf tensors that require grad; torch's own error from inside
        forward is the proof."""
        found: AutogradCall = finding.subject
        return recipe_harness(module, found.function_class, f"_agl_autograd_in_forward_recipe({found.function_class.name}.apply, _agl_builders, {short_code(found.call)!r})")


def _message(function_class: FunctionClass, call: cst.Call, helper: cst.FunctionDef | None) -> str:
    where = f"{function_class.name}.forward" + (f" calls `{helper.name.value}()`, which" if helper is not None else "")
    return (
        f"{where} calls `{short_code(call)}` outside `torch.enable_grad()`: apply runs forward with grad mode off, "
        f"so nothing computed there has a grad_fn and torch raises '{TORCH_MESSAGE}'; "
        f"wrap the inner computation in `with torch.enable_grad():`"
    )


def _autograd_call(module: ParsedModule, node: cst.CSTNode) -> bool:
    """`torch.autograd.grad(...)`, `torch.autograd.backward(...)` (however imported), `<t>.backward(...)`."""
    if not isinstance(node, cst.Call):
        return False
    func = node.func
    if module.qualified_name(func) in AUTOGRAD_FUNCTIONS:
        return True
    if isinstance(func, cst.Attribute) and func.attr.value == "backward":
        receiver = func.value
        # `Fn.backward(ctx, g)`, `super().backward(...)`, `self.backward(...)`: a direct call of a
        # Function's backward (AGL006's concern), not a backward pass.
        if (isinstance(receiver, cst.Call) and isinstance(receiver.func, cst.Name) and receiver.func.value == "super") or (
            isinstance(receiver, cst.Name) and (receiver.value[:1].isupper() or receiver.value in ("self", "cls"))
        ):
            return False
        return module.qualified_name(func) not in ("torch.autograd.grad", "torch.autograd")
    return False


def _unguarded_autograd_calls(module: ParsedModule, function: cst.FunctionDef) -> list[cst.Call]:
    if _grad_enabled_throughout(function):
        return []
    return [node for node in walk(function.body, into_functions=False) if _autograd_call(module, node) and not _under_enable_grad(module, node, function)]


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
