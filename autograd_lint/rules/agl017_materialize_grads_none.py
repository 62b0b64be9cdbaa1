"""AGL017 materialize-grads-none: with `ctx.set_materialize_grads(False)`, backward receives None for
every output that did not reach the loss, and arithmetic or a method call on it raises.

Reported for Functions whose backward takes two or more gradients (with one output, backward only
runs when its gradient exists), at the first use of each gradient that cannot take None: an operand,
a method or attribute, a subscript, an argument of a torch function. A gradient that backward checks
against None anywhere (`is None`, `is not None`, `if g:`, `isinstance`) is trusted, as are uses after
backward rebinds it (`g = _maybe_zero(g)`). A call of a function of this module counts as a use when that
function uses the parameter so without a None check (one call deep); `backward(ctx, *grads)` is judged
when its body names two or more of them (`g_out, g_aux = grads`, `g_out = grads[0]`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import libcst as cst

from ..core.diagnostic import Severity
from ..core.module import ParsedModule
from ..core.prefilter import TextCue
from ..core.rule import Finding
from ..core.scopes import bindings
from ..core.syntax import ORDERING_OPERATORS, is_none, short_code, walk
from ..facts.function_model import FunctionClass, Method, function_model
from ..torch_api import TENSOR_FUNCTION_MODULES
from .base import FunctionClassRule

OPERATOR_SYMBOLS = {
    cst.Multiply: "*",
    cst.Add: "+",
    cst.Subtract: "-",
    cst.Divide: "/",
    cst.MatrixMultiply: "@",
    cst.Power: "** or pow()",
    cst.FloorDivide: "//",
    cst.Modulo: "%",
}


@dataclass(frozen=True)
class NoneGradUse:
    function_class: FunctionClass
    grad: str
    position: int  # the gradient's index among backward's grad parameters (= forward's output index)
    use: cst.CSTNode


class MaterializeGradsNone(FunctionClassRule[NoneGradUse]):
    code = "AGL017"
    name = "materialize-grads-none"
    severity = Severity.ERROR
    summary = "set_materialize_grads(False) and backward uses a gradient that can be None without checking"

    requires = (TextCue("set_materialize_grads", substrings=("set_materialize_grads",)),)
    only_reachable_backward = True

    def check_class(self, function_class: FunctionClass, module: ParsedModule) -> Iterator[Finding[NoneGradUse]]:
        backward = function_class.own_methods.get("backward")
        if backward is None or not _disables_materialization(function_class):
            return
        grads = [p.name.value for p in backward.data_params] or _unpacked_star_grads(backward)
        if len(grads) < 2:
            return  # one output: backward only runs when its gradient exists
        checked = _none_checked(backward.node)
        helpers = dict(function_model(module).called_functions(backward))
        reported: set[cst.CSTNode] = set()
        for position, grad in enumerate(grads):
            if grad in checked:
                continue
            use = _first_unsafe_use(module, backward.node, grad, helpers)
            if use is not None and use not in reported:
                if use in helpers:
                    reported.add(use)  # a helper given two gradients: one finding at its call
                subject = NoneGradUse(function_class, grad, position, use)
                helper = helpers.get(use) if isinstance(use, cst.Call) else None
                yield Finding(use, *_message(function_class, backward, grad, use, helper), subject=subject)


def _message(
    function_class: FunctionClass, backward: Method, grad: str, use: cst.CSTNode, helper: cst.FunctionDef | None = None
) -> tuple[str, str]:
    inside = f" (`{helper.name.value}` computes with it)" if helper is not None else ""
    return (
        f"{function_class.name}.{backward.name} uses `{grad}` in `{short_code(use, 25)}` without a None check",
        f"`{short_code(use)}`{inside} uses it, but "
        f"the Function calls ctx.set_materialize_grads(False): when that output does not reach the loss, torch passes "
        f"None and backward fails with {_error_of(use)}. Handle it (`if {grad} is not None:`) or drop "
        f"set_materialize_grads(False) so that torch passes zeros.",
    )


def _error_of(use: cst.CSTNode) -> str:
    if isinstance(use, cst.BinaryOperation):
        symbol = OPERATOR_SYMBOLS.get(type(use.operator), "the operator")
        return f"TypeError: unsupported operand type(s) for {symbol}: 'NoneType' and ..."
    if isinstance(use, cst.Attribute):
        return f"AttributeError: 'NoneType' object has no attribute '{use.attr.value}'"
    return "a TypeError on 'NoneType'"


def _disables_materialization(function_class: FunctionClass) -> bool:
    for name in ("forward", "setup_context"):
        method = function_class.method(name)
        if method is None:
            continue
        for node in walk(method.node.body, into_functions=False):
            if (
                isinstance(node, cst.Call)
                and isinstance(node.func, cst.Attribute)
                and node.func.attr.value == "set_materialize_grads"
                and len(node.args) == 1
                and isinstance(node.args[0].value, cst.Name)
                and node.args[0].value.value == "False"
            ):
                return True
    return False


def _none_checked(function: cst.FunctionDef) -> set[str]:
    """Names backward tests for None or truthiness: `g is None`, `g is not None`, `if g:`, `not g`,
    `g or ...`, `isinstance(g, ...)`, `any(... g ...)`-style checks on a name."""
    found: set[str] = set()
    for node in walk(function.body):
        if isinstance(node, cst.Comparison):
            operands = [node.left, *(c.comparator for c in node.comparisons)]
            if any(
                isinstance(c.operator, (cst.Is, cst.IsNot, cst.Equal, cst.NotEqual)) for c in node.comparisons
            ) and any(is_none(o) for o in operands):
                found |= {o.value for o in operands if isinstance(o, cst.Name)}
        elif isinstance(node, (cst.If, cst.While, cst.IfExp)) and isinstance(node.test, cst.Name):
            found.add(node.test.value)
        elif (
            isinstance(node, cst.UnaryOperation)
            and isinstance(node.operator, cst.Not)
            and isinstance(node.expression, cst.Name)
        ):
            found.add(node.expression.value)
        elif isinstance(node, cst.BooleanOperation):
            found |= {side.value for side in (node.left, node.right) if isinstance(side, cst.Name)}
        elif (
            isinstance(node, cst.Call)
            and isinstance(node.func, cst.Name)
            and node.func.value == "isinstance"
            and node.args
        ):
            if isinstance(node.args[0].value, cst.Name):
                found.add(node.args[0].value.value)
    # `for g in (g1, g2): if g is None: ...`, `any(g is None for g in (g1, g2))`: the loop checks them all
    for node in walk(function.body):
        if (
            isinstance(node, (cst.For, cst.CompFor))
            and isinstance(node.target, cst.Name)
            and node.target.value in found
        ):
            if isinstance(node.iter, (cst.List, cst.Tuple)):
                found |= {e.value.value for e in node.iter.elements if isinstance(e.value, cst.Name)}
    return found


def _unpacked_star_grads(backward: Method) -> list[str]:
    """`def backward(ctx, *grads)` whose body names the gradients: unpacks them once (`g_out, g_lse = grads`),
    or binds names to elements (`g_out = grads[0]`, `g_lse = grads[1]`). Those names, in gradient order."""
    star = backward.node.params.star_arg
    if not isinstance(star, cst.Param):
        return []
    tuple_name = star.name.value
    unpackings: list[cst.BaseAssignTargetExpression] = []
    elements: dict[int, list[str]] = {}
    for node in walk(backward.node.body, into_functions=False):
        if not (isinstance(node, cst.Assign) and len(node.targets) == 1):
            continue
        target, value = node.targets[0].target, node.value
        if isinstance(value, cst.Name) and value.value == tuple_name:
            unpackings.append(target)
        elif (
            isinstance(target, cst.Name)
            and isinstance(value, cst.Subscript)
            and isinstance(value.value, cst.Name)
            and value.value.value == tuple_name
        ):
            index = (
                value.slice[0].slice.value
                if len(value.slice) == 1 and isinstance(value.slice[0].slice, cst.Index)
                else None
            )
            if isinstance(index, cst.Integer):
                elements.setdefault(int(index.value), []).append(target.value)
    if len(unpackings) == 1 and isinstance(unpackings[0], (cst.Tuple, cst.List)):
        names = [e.value for e in unpackings[0].elements]
        return (
            [e.value for e in names if isinstance(e, cst.Name)] if all(isinstance(e, cst.Name) for e in names) else []
        )
    if (
        not unpackings
        and len(elements) >= 2
        and sorted(elements) == list(range(len(elements)))
        and all(len(v) == 1 for v in elements.values())
    ):
        return [elements[i][0] for i in range(len(elements))]
    return []


def _first_unsafe_use(module: ParsedModule, function: cst.FunctionDef, grad: str, helpers=None) -> cst.CSTNode | None:
    """The first use of `grad` that fails on None, before backward first rebinds it; a call of a function
    of this module (`helpers`: call -> definition) counts when the function uses that parameter so."""
    rebinding = next(
        (
            n
            for n in bindings(function).get(grad, [])
            if not isinstance(n, cst.Param) and not _unpacks_star(n, function)
        ),
        None,
    )
    for node in walk(function.body, into_functions=False):
        if node is rebinding:
            if isinstance(node, cst.AugAssign):
                return node  # `g *= 2` on None raises
            # uses inside the rebinding's value still see the parameter
            value = getattr(node, "value", None)
            return _first_unsafe_use_in(module, value, grad, helpers) if value is not None else None
        use = _unsafe_use(module, node, grad) or _unsafe_in_helper(module, node, grad, helpers)
        if use is not None:
            return use
    return None


def _unpacks_star(node: cst.CSTNode, function: cst.FunctionDef) -> bool:
    """`g_out, g_lse = grads` or `g_out = grads[0]` on backward's `*grads`: binds the gradients, not a new value."""
    star = function.params.star_arg
    if not (isinstance(star, cst.Param) and isinstance(node, cst.Assign)):
        return False
    value = node.value.value if isinstance(node.value, cst.Subscript) else node.value
    return isinstance(value, cst.Name) and value.value == star.name.value


def _unsafe_in_helper(module: ParsedModule, node: cst.CSTNode, grad: str, helpers) -> cst.CSTNode | None:
    """`_combine(g_a, g_b)` where `_combine` does arithmetic on that parameter without a None check."""
    if not helpers or not isinstance(node, cst.Call) or node not in helpers:
        return None
    helper = helpers[node]
    params = [p.name.value for p in helper.params.params]
    for position, arg in enumerate(node.args):
        if arg.star or arg.keyword is not None or not _is_grad(arg.value, grad) or position >= len(params):
            continue
        name = params[position]
        if name not in _none_checked(helper) and _first_unsafe_use(module, helper, name) is not None:
            return node
    return None


def _first_unsafe_use_in(module: ParsedModule, root: cst.CSTNode, grad: str, helpers=None) -> cst.CSTNode | None:
    for node in [root, *walk(root)]:
        use = _unsafe_use(module, node, grad) or _unsafe_in_helper(module, node, grad, helpers)
        if use is not None:
            return use
    return None


def _is_grad(expr: cst.CSTNode, grad: str) -> bool:
    return isinstance(expr, cst.Name) and expr.value == grad


def _unsafe_use(module: ParsedModule, node: cst.CSTNode, grad: str) -> cst.CSTNode | None:
    """`node` itself when it is an operation on `grad` that raises for None."""
    if isinstance(node, cst.BinaryOperation) and (_is_grad(node.left, grad) or _is_grad(node.right, grad)):
        return node
    if (
        isinstance(node, cst.UnaryOperation)
        and _is_grad(node.expression, grad)
        and not isinstance(node.operator, cst.Not)
    ):
        return node
    if isinstance(node, cst.AugAssign) and (_is_grad(node.target, grad) or _is_grad(node.value, grad)):
        return node
    if isinstance(node, cst.Attribute) and _is_grad(node.value, grad):
        return node
    if isinstance(node, cst.Subscript) and _is_grad(node.value, grad):
        return node
    if isinstance(node, cst.Comparison) and _is_grad(node.left, grad):
        if all(isinstance(c.operator, ORDERING_OPERATORS) for c in node.comparisons):
            return node
    if isinstance(node, cst.Call) and any(_passes_grad(a, grad) for a in node.args):
        head = (module.qualified_name(node.func) or "").rpartition(".")[0]
        if head in TENSOR_FUNCTION_MODULES:
            return node
    return None


def _passes_grad(arg: cst.Arg, grad: str) -> bool:
    """`f(g)` or `torch.cat([g, h])`: the gradient itself, or an element of a list or tuple argument."""
    if arg.keyword is not None or arg.star:
        return False
    if isinstance(arg.value, (cst.List, cst.Tuple)):
        return any(_is_grad(e.value, grad) for e in arg.value.elements)
    return _is_grad(arg.value, grad)
