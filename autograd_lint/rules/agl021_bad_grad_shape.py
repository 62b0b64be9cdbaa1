"""AGL021 bad-grad-shape: forward reduces or reshapes an input, backward hands the output's gradient back unchanged."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import libcst as cst

from ..core.diagnostic import Severity
from ..core.module import ParsedModule
from ..core.rule import Finding
from ..core.scopes import bindings
from ..core.syntax import code_of, dotted_name, shortened, walk
from ..facts.function_model import FunctionClass, Method, function_model
from ..facts.gradient_returns import returned_values
from ..torch_api import EVERY_REDUCTION, RESHAPE_METHODS, TRANSPOSE_ATTRIBUTES, TRANSPOSE_METHODS
from .base import FunctionClassRule

# Reductions: the output has fewer elements than the input (with or without `dim`, `keepdim`).
# Namespaces whose functions take the tensor first (`torch.sum(x, 1)`, `torch.linalg.vector_norm(x, dim=-1)`).
TORCH_NAMESPACES = frozenset({"torch", "torch.linalg", "torch.special"})
# Reductions that also accept a second tensor and are then elementwise (`torch.max(a, b)`).
ALSO_ELEMENTWISE = frozenset({"max", "min"})
# Reductions that return (values, indices) when given a dim.
PAIR_WITH_DIM = frozenset({"max", "min", "median", "nanmedian"})
# Methods that keep a tensor's shape: `x.contiguous().view(-1)` still reshapes `x`.
SHAPE_KEEPING = frozenset(
    {"contiguous", "clone", "detach", "neg", "float", "double", "half", "bfloat16", "to", "type_as", "cpu", "cuda"}
)


@dataclass(frozen=True)
class ShapeChange:
    kind: str  # "reduction", "reshape" or "transpose"
    input_name: str
    expression: cst.BaseExpression


@dataclass(frozen=True)
class BadGradient:
    function_class: FunctionClass
    input_index: int
    input_name: str
    output_index: int
    change: ShapeChange


class BadGradShape(FunctionClassRule[BadGradient]):
    code = "AGL021"
    name = "bad-grad-shape"
    severity = Severity.ERROR
    summary = "forward reduces or reshapes an input but backward returns the output's gradient unchanged"
    only_reachable_backward = True

    def check_class(self, function_class: FunctionClass, module: ParsedModule) -> Iterator[Finding[BadGradient]]:
        pair = function_class.checked_pair()
        if pair is not None:
            yield from self._check_class(module, function_class, *pair)

    def _check_class(
        self, module: ParsedModule, function_class: FunctionClass, forward: Method, backward: Method
    ) -> Iterator[Finding]:
        if isinstance(backward.node.params.star_arg, cst.Param):
            return
        inputs = [p.name.value for p in forward.data_params]
        changes = _output_shape_changes(forward, set(inputs), dict(function_model(module).called_functions(forward)))
        if not changes:
            return
        grad_names = [p.name.value for p in backward.data_params]
        scalars = _ctx_scalars(forward, backward)
        for returned in returned_values(backward):
            if returned.is_list:
                continue
            for position, element in enumerate(returned.elements[: len(inputs)]):
                grad = _raw_gradient(backward, element, set(grad_names), scalars)
                if grad is None:
                    continue
                output_index = grad_names.index(grad)
                change = changes.get(output_index)
                if change is None or change.input_name != inputs[position]:
                    continue
                subject = BadGradient(function_class, position, inputs[position], output_index, change)
                yield Finding(element, *_message(function_class, subject, element, grad), subject=subject)


def _output_shape_changes(forward: Method, inputs: set[str], helpers=None) -> dict[int, ShapeChange]:
    """Output index -> how it changes an input's shape, for outputs that are that on every return
    (`helpers`: forward's calls of this module's functions -> their definitions, read one call deep)."""
    found: dict[int, ShapeChange] = {}
    conflicting: set[int] = set()
    scope = bindings(forward.node)
    for node in walk(forward.node.body, into_functions=False):
        if not isinstance(node, cst.Return) or node.value is None:
            continue
        value = _resolve(scope, node.value)
        elements = [e.value for e in value.elements] if isinstance(value, cst.Tuple) else [value]
        for index, element in enumerate(elements):
            change = _shape_change(scope, element, inputs, helpers)
            if change is None or (index in found and found[index].input_name != change.input_name):
                conflicting.add(index)
            else:
                found.setdefault(index, change)
    return {index: change for index, change in found.items() if index not in conflicting}


def _resolve(scope, expr: cst.BaseExpression) -> cst.BaseExpression:
    """The value a local name is bound to, when it is bound exactly once by a plain assignment."""
    if isinstance(expr, cst.Name):
        values = scope.get(expr.value, [])
        if len(values) == 1 and isinstance(values[0], cst.Assign) and len(values[0].targets) == 1:
            target = values[0].targets[0].target
            if isinstance(target, cst.Name):
                return values[0].value
            if isinstance(target, cst.Tuple) and target.elements and _is_name(target.elements[0].value, expr.value):
                # `values, indices = x.max(dim)`: the first element of a (values, indices) pair
                if _pair_reduction(values[0].value):
                    return values[0].value
    return expr


def _is_name(expr: cst.BaseExpression, name: str) -> bool:
    return isinstance(expr, cst.Name) and expr.value == name


def _shape_change(scope, expr: cst.BaseExpression, inputs: set[str], helpers=None) -> ShapeChange | None:
    expr = _resolve(scope, expr)
    expr = _strip_shape_keeping(expr)
    if helpers and isinstance(expr, cst.Call) and expr in helpers:
        return _helper_shape_change(scope, expr, helpers[expr], inputs)
    # `x.max(dim)[0]`, `x.max(dim).values`
    if isinstance(expr, cst.Subscript) and len(expr.slice) == 1 and isinstance(expr.slice[0].slice, cst.Index):
        index = expr.slice[0].slice.value
        if isinstance(index, cst.Integer) and index.value == "0" and _pair_reduction(expr.value):
            expr = expr.value
    elif isinstance(expr, cst.Attribute) and expr.attr.value == "values" and _pair_reduction(expr.value):
        expr = expr.value
    if isinstance(expr, cst.Attribute) and expr.attr.value in TRANSPOSE_ATTRIBUTES:
        source = _source_input(scope, expr.value, inputs)
        return ShapeChange("transpose", source, expr) if source else None
    if not isinstance(expr, cst.Call) or not isinstance(expr.func, cst.Attribute):
        return None
    name = expr.func.attr.value
    receiver, args = _receiver_and_args(expr)
    if receiver is None:
        return None
    kind = None
    if name in EVERY_REDUCTION and _is_reduction(name, args):
        kind = "reduction"
    elif name in RESHAPE_METHODS and _changes_shape(receiver, name, args):
        kind = "reshape"
    elif name in TRANSPOSE_METHODS:
        kind = "transpose"
    if kind is None:
        return None
    source = _source_input(scope, receiver, inputs)
    return ShapeChange(kind, source, expr) if source else None


def _helper_shape_change(scope, call: cst.Call, helper: cst.FunctionDef, inputs: set[str]) -> ShapeChange | None:
    """`_pool(x)` where every `return` of `_pool(t)` changes the shape of its parameter `t` the same way:
    that change, of the forward input passed as `t`."""
    params = [p.name.value for p in helper.params.params]
    returns = [n for n in walk(helper.body, into_functions=False) if isinstance(n, cst.Return)]
    helper_scope = bindings(helper)
    changes = {
        (c.kind, c.input_name) if c else None
        for c in (_shape_change(helper_scope, r.value, set(params)) for r in returns if r.value is not None)
    }
    if len(returns) == 0 or len(changes) != 1:
        return None
    (change,) = changes
    if change is None:
        return None
    kind, param = change
    position = params.index(param)
    positional = [a for a in call.args if a.keyword is None and not a.star]
    if position >= len(positional) or any(a.star for a in call.args):
        return None
    source = _source_input(scope, positional[position].value, inputs)
    return ShapeChange(kind, source, call) if source else None


def _receiver_and_args(call: cst.Call) -> tuple[cst.BaseExpression | None, list[cst.Arg]]:
    """`x.sum(1)` -> (x, [1]); `torch.sum(x, 1)` and `torch.sum(input=x, dim=1)` -> (x, [1])."""
    func = call.func
    if not isinstance(func, cst.Attribute):
        return None, []  # never: every caller asks about a method call
    if dotted_name(func.value) in TORCH_NAMESPACES:
        positional = [a for a in call.args if a.keyword is None and not a.star]
        first = (
            positional[0]
            if positional
            else next((a for a in call.args if a.keyword is not None and a.keyword.value == "input"), None)
        )
        if first is None:
            return None, []
        rest = [a for a in call.args if a is not first]
        return first.value, rest
    return func.value, list(call.args)


def _is_reduction(name: str, args: list[cst.Arg]) -> bool:
    if any(a.star for a in args):
        return False
    if name in ALSO_ELEMENTWISE:
        # `x.max()`, `x.max(1)`, `x.max(dim=1)`; `x.max(y)` is elementwise.
        positional = [a for a in args if a.keyword is None]
        keywords = {a.keyword.value for a in args if a.keyword is not None}
        if keywords - {"dim", "keepdim"}:
            return False
        return not positional or _is_dim_literal(positional[0].value)
    return True


def _is_dim_literal(expr: cst.BaseExpression) -> bool:
    if isinstance(expr, cst.UnaryOperation) and isinstance(expr.operator, cst.Minus):
        expr = expr.expression
    return isinstance(expr, cst.Integer)


def _pair_reduction(expr: cst.BaseExpression) -> bool:
    """`x.max(1)`, `torch.max(x, dim=1)`: a reduction that returns (values, indices)."""
    if not (
        isinstance(expr, cst.Call) and isinstance(expr.func, cst.Attribute) and expr.func.attr.value in PAIR_WITH_DIM
    ):
        return False
    receiver, args = _receiver_and_args(expr)
    return receiver is not None and bool(args) and _is_reduction(expr.func.attr.value, args)


def _changes_shape(receiver: cst.BaseExpression, name: str, args: list[cst.Arg]) -> bool:
    """A view/reshape/flatten whose target shape is written out: `x.view(-1)`, `x.reshape(n, -1)`,
    `x.flatten(1)`. Not `x.view(torch.float16)` (a dtype view), nor `x.view(x.shape)` / `x.view(*shape)`."""
    if name == "flatten":
        return True
    if not args or any(a.star or a.keyword is not None for a in args):
        return False
    values = [a.value for a in args]
    if len(values) == 1 and isinstance(values[0], (cst.Tuple, cst.List)):
        values = [e.value for e in values[0].elements]
    receiver_text = code_of(receiver).strip()
    for value in values:
        text = code_of(value).strip()
        if text.startswith(receiver_text + ".shape") or text.startswith(receiver_text + ".size("):
            continue  # keeps that dimension
        if _is_dim_literal(value):
            return True
    return False


def _strip_shape_keeping(expr: cst.BaseExpression, scalars: frozenset[str] = frozenset()) -> cst.BaseExpression:
    """`g.clone()`, `g.contiguous()`, `-g`, `g * 0.5`, `2 * g`, `g / ctx.n` -> `g`: same shape.
    `scalars` are the `ctx.<attr>` names forward sets to Python numbers."""
    while True:
        if (
            isinstance(expr, cst.Call)
            and isinstance(expr.func, cst.Attribute)
            and expr.func.attr.value in SHAPE_KEEPING
        ):
            expr = expr.func.value
        elif isinstance(expr, cst.UnaryOperation) and isinstance(expr.operator, cst.Minus):
            expr = expr.expression
        elif (
            isinstance(expr, cst.BinaryOperation)
            and isinstance(expr.operator, (cst.Multiply, cst.Divide))
            and _is_number(expr.right, scalars)
        ):
            expr = expr.left
        elif (
            isinstance(expr, cst.BinaryOperation)
            and isinstance(expr.operator, cst.Multiply)
            and _is_number(expr.left, scalars)
        ):
            expr = expr.right
        else:
            return expr


def _is_number(expr: cst.BaseExpression, scalars: frozenset[str] = frozenset()) -> bool:
    if isinstance(expr, cst.UnaryOperation) and isinstance(expr.operator, cst.Minus):
        expr = expr.expression
    return isinstance(expr, (cst.Integer, cst.Float)) or code_of(expr).strip() in scalars


def _ctx_scalars(forward: Method, backward: Method) -> frozenset[str]:
    """`ctx.n` (spelled with backward's ctx name) for each ctx attribute that forward only ever sets to
    a Python number: a literal, `x.shape[i]`, `x.size(i)`, `x.numel()`, `x.dim()`, or arithmetic of those."""
    if forward.ctx_name is None or backward.ctx_name is None:
        return frozenset()
    values: dict[str, list[cst.BaseExpression]] = {}
    for node in walk(forward.node.body, into_functions=False):
        if isinstance(node, cst.Assign):
            for target in node.targets:
                chain = target.target
                if isinstance(chain, cst.Attribute) and _is_name(chain.value, forward.ctx_name):
                    values.setdefault(chain.attr.value, []).append(node.value)
        elif isinstance(node, cst.AugAssign) and isinstance(node.target, cst.Attribute):
            values.setdefault(node.target.attr.value, []).append(node.target)  # never a plain number here
    return frozenset(f"{backward.ctx_name}.{attr}" for attr, exprs in values.items() if all(map(_python_number, exprs)))


def _python_number(expr: cst.BaseExpression) -> bool:
    if isinstance(expr, (cst.Integer, cst.Float)):
        return True
    if isinstance(expr, cst.UnaryOperation):
        return _python_number(expr.expression)
    if isinstance(expr, cst.BinaryOperation):
        return _python_number(expr.left) and _python_number(expr.right)
    if isinstance(expr, cst.Subscript) and isinstance(expr.value, cst.Attribute):
        return expr.value.attr.value == "shape"
    if isinstance(expr, cst.Call) and isinstance(expr.func, cst.Attribute):
        return expr.func.attr.value in ("size", "numel", "dim") and (expr.func.attr.value != "size" or bool(expr.args))
    return False


def _source_input(scope, expr: cst.BaseExpression, inputs: set[str]) -> str | None:
    """The forward input an expression is a shape-keeping chain of (`x`, `x.contiguous()`), when
    forward never rebinds it."""
    expr = _strip_shape_keeping(expr)
    if isinstance(expr, cst.Name) and expr.value in inputs:
        if all(isinstance(binding, cst.Param) for binding in scope.get(expr.value, [])):
            return expr.value
        return None
    # `x.view(b, t, h, -1).transpose(1, 2)`: the outer op changes the shape whatever the inner one does
    if isinstance(expr, cst.Attribute) and expr.attr.value in TRANSPOSE_ATTRIBUTES:
        return _source_input(scope, expr.value, inputs)
    if (
        isinstance(expr, cst.Call)
        and isinstance(expr.func, cst.Attribute)
        and expr.func.attr.value in RESHAPE_METHODS | TRANSPOSE_METHODS
    ):
        receiver, _ = _receiver_and_args(expr)
        return _source_input(scope, receiver, inputs) if receiver is not None else None
    if isinstance(expr, cst.Name):
        resolved = _resolve(scope, expr)
        return _source_input(scope, resolved, inputs) if resolved is not expr else None
    return None


def _raw_gradient(
    backward: Method, expr: cst.BaseExpression, grad_names: set[str], scalars: frozenset[str], depth: int = 4
) -> str | None:
    """The gradient parameter a returned expression is, unchanged in shape: the parameter itself, a
    name bound only to it, or a shape-keeping copy (`grad.clone()`)."""
    expr = _strip_shape_keeping(expr, scalars)
    if not isinstance(expr, cst.Name) or depth == 0:
        return None
    values = bindings(backward.node).get(expr.value, [])
    if not values:
        return None
    sources = set()
    for value in values:
        if isinstance(value, cst.Param):
            if expr.value not in grad_names:
                return None
            sources.add(expr.value)
        elif (
            isinstance(value, cst.Assign) and len(value.targets) == 1 and isinstance(value.targets[0].target, cst.Name)
        ):
            if not _is_name(_strip_shape_keeping(value.value, scalars), expr.value):
                inner = _raw_gradient(backward, value.value, grad_names, scalars, depth - 1)
                if inner is None:
                    return None
                sources.add(inner)
        else:
            return None  # `g *= w`, a loop, an unpacking: the shape may change
    return sources.pop() if len(sources) == 1 else None


def _message(
    function_class: FunctionClass, bad: BadGradient, returned: cst.BaseExpression, grad: str
) -> tuple[str, str]:
    name = function_class.name
    change = " ".join(code_of(bad.change.expression).split())
    shown = " ".join(code_of(returned).split())
    x = bad.input_name
    fix = {
        "reduction": (
            f"Expand it back to `{x}`'s shape (`{grad}.unsqueeze(dim).expand(ctx.shape)`, divided by the count "
            "for a mean)."
        ),
        "reshape": f"Reshape it back (`{grad}.reshape(ctx.shape)` with `ctx.shape = {x}.shape` saved in forward).",
        "transpose": (
            f"Apply the inverse permutation to it (`{grad}.transpose(...)` with the same dims, `permute` with the "
            "inverse order)."
        ),
    }[bad.change.kind]
    changed = {"reduction": "reduced", "reshape": "reshaped", "transpose": "transposed"}[bad.change.kind]
    square = (
        " (for a square input it silently returns the untransposed gradient)" if bad.change.kind == "transpose" else ""
    )
    return (
        f"{name}.backward returns `{shortened(shown, 20)}` as `{shortened(x, 20)}`'s gradient; forward {changed} it",
        f"It has the shape of forward's output "
        f"{bad.output_index}, `{change}`, not `{x}`'s: torch raises 'Function {name}Backward returned an invalid "
        f"gradient at index {bad.input_index} - got [...] but expected shape compatible with [...]'{square}. {fix}",
    )
