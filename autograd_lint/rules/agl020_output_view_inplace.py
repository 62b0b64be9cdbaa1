"""AGL020 output-view-inplace: forward returns an input (or a view of it) and the caller writes into the result."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import libcst as cst

from ..core.diagnostic import Severity
from ..core.module import ParsedModule
from ..core.rule import Finding, FunctionRule
from ..core.scopes import bindings
from ..core.syntax import code_of, dotted_name, shortened, walk
from ..facts.apply_flow import CallerWrite, caller_writes
from ..facts.function_model import FunctionClass, Method, function_model
from ..facts.inplace import basic_index
from ..facts.value_kinds import ValueKinds
from ..torch_api import VIEW_ATTRIBUTES, VIEW_METHODS

TORCH_MESSAGE = (
    "Output 0 of {cls} is a view and is being modified inplace. This view was created inside a custom Function "
    "(or because an input was returned as-is) and the autograd logic to handle view+inplace would override the "
    "custom backward associated with the custom Function, leading to incorrect gradients"
)
# Methods and attributes whose result is always the tensor itself or a view of it (verified on torch 2.13:
# each, returned from forward and then written in place, raises). `detach`, `.data`, `float()`/`to()`
# (a copy when the dtype changes) are not among them.


@dataclass(frozen=True)
class ReturnedView:
    parameter: str
    returned: str  # the return statement's value, as written


@dataclass(frozen=True)
class ViewWritten:
    caller: CallerWrite
    view: ReturnedView


class OutputViewInplace(FunctionRule[ViewWritten]):
    code = "AGL020"
    name = "output-view-inplace"
    severity = Severity.WARNING
    summary = "forward returns an input or a view of it and the caller modifies the .apply result in place"

    def check(self, module: ParsedModule) -> Iterator[Finding[ViewWritten]]:
        views: dict[str, ReturnedView] = {}
        for function_class in function_model(module):
            if function_class.apply_calls or function_class.partial_applies:
                found = returned_input_view(module, function_class)
                if found is not None:
                    views[function_class.name] = found
        if not views:
            return
        classes = [c for c in function_model(module) if c.name in views]
        # The view check runs at the write itself, after backward too; with grad mode off it does not.
        counts = lambda write: not module.under_no_grad(write.node)  # noqa: E731
        for caller in caller_writes(module, classes, lambda c, call: (True, []), until_backward=False, counts=counts):
            view = views[caller.tracked.function_class.name]
            yield Finding(caller.write.node, *_message(caller, view), subject=ViewWritten(caller, view))


def returned_input_view(module: ParsedModule, function_class: FunctionClass) -> ReturnedView | None:
    """When every `return` of forward gives back one input unchanged or a view of it (`x`, `x.view_as(x)`,
    `x[:, 0]`, `x.transpose(0, 1)`, through locals bound once), and forward does not mark it dirty."""
    forward = function_class.forward
    if forward is None or not function_class.hierarchy_known or _calls_mark_dirty(function_class):
        return None
    kinds = ValueKinds(function_class, forward, module)
    returns = kinds.returns
    if not returns or len(returns) != sum(
        1 for n in walk(forward.node.body, into_functions=False) if isinstance(n, cst.Return)
    ):
        return None  # a bare `return` gives None
    local = bindings(forward.node)
    helpers = dict(function_model(module).called_functions(forward))
    found: set[str] = set()
    for value in returns:
        name = _viewed_input(value, forward, kinds, local, depth=0, helpers=helpers)
        if name is None:
            return None
        found.add(name)
    if len(found) != 1:
        return None
    return ReturnedView(found.pop(), " ".join(code_of(returns[0]).split()))


def _strip_views(expr: cst.BaseExpression) -> cst.BaseExpression:
    """`x` for `x.view_as(x)`, `x[:, 0].T`, `x.transpose(0, 1)`: what a chain of views is a view of."""
    while True:
        if isinstance(expr, cst.Call) and isinstance(expr.func, cst.Attribute) and expr.func.attr.value in VIEW_METHODS:
            expr = expr.func.value
        elif isinstance(expr, cst.Attribute) and expr.attr.value in VIEW_ATTRIBUTES:
            expr = expr.value
        elif isinstance(expr, cst.Subscript) and all(basic_index(e.slice) for e in expr.slice):
            expr = expr.value
        else:
            return expr


def _viewed_parameter(function: cst.FunctionDef) -> int | None:
    """The position of the parameter every `return` of a helper gives back unchanged or as a view
    (`def passthrough(t): return t.view_as(t)`), else None."""
    params = [p.name.value for p in function.params.params]
    local = bindings(function)
    returns = [n for n in walk(function.body, into_functions=False) if isinstance(n, cst.Return)]
    found = set()
    for statement in returns:
        base = _strip_views(statement.value) if statement.value is not None else None
        if not (isinstance(base, cst.Name) and base.value in params and len(local.get(base.value, [])) == 1):
            return None
        found.add(params.index(base.value))
    return found.pop() if len(found) == 1 else None


def _viewed_input(
    expr: cst.BaseExpression, forward: Method, kinds: ValueKinds, local, depth: int, helpers=None
) -> str | None:
    """The input parameter `expr` is, or is a view of; through a call of a module function that returns its
    parameter or a view of it (`helpers`: forward's calls -> definitions)."""
    expr = _strip_views(expr)
    if helpers and isinstance(expr, cst.Call) and expr in helpers and depth < 3:
        position = _viewed_parameter(helpers[expr])
        positional = [a for a in expr.args if a.keyword is None and not a.star]
        if position is None or position >= len(positional) or any(a.star for a in expr.args):
            return None
        return _viewed_input(positional[position].value, forward, kinds, local, depth + 1, helpers)
    if not isinstance(expr, cst.Name):
        return None
    name = expr.value
    if name in kinds.parameter_kinds:
        return name if kinds.is_unchanged_input(name) else None
    bound = local.get(name, [])
    if depth < 3 and len(bound) == 1 and isinstance(bound[0], cst.Assign) and len(bound[0].targets) == 1:
        if isinstance(bound[0].targets[0].target, cst.Name):
            return _viewed_input(bound[0].value, forward, kinds, local, depth + 1, helpers)
    return None


def _calls_mark_dirty(function_class: FunctionClass) -> bool:
    for name in ("forward", "setup_context"):
        method = function_class.method(name)
        if method is not None and any(
            isinstance(n, cst.Call) and (dotted_name(n.func) or "").endswith(".mark_dirty")
            for n in walk(method.node.body)
        ):
            return True
    return False


def _message(caller: CallerWrite, view: ReturnedView) -> tuple[str, str]:
    tracked, write = caller.tracked, caller.write
    cls = tracked.function_class.name
    returned = (
        f"returns its input `{view.parameter}` as-is"
        if view.returned == view.parameter
        else (f"returns a view of its input `{view.parameter}` (`return {view.returned}`)")
    )
    return (
        f"`{shortened(write.text, 20)}` writes in place into {cls}'s output, a view of its input",
        f"`{tracked.name}` is the output of {tracked.applied}, and {cls}.forward {returned}: "
        f"torch raises '{TORCH_MESSAGE.format(cls=cls)}'. Return `{view.parameter}.clone()` from forward, or make "
        "this op out of place.",
    )
