"""What each `return` of a backward gives back, position by position, when that can be known statically.

torch counts a tuple's elements; anything else (a tensor, None, a list) is one object. A value whose
arity cannot be known here (a helper's result, `tuple(grads)`, a slice) is None: rules skip it.
"""

from __future__ import annotations

from dataclasses import dataclass

import libcst as cst

from ..core.syntax import assigned_names, walk
from .function_model import Method

# Calls that return several tensors; everything else called on a tensor or from torch gives one.
TUPLE_RETURNING = frozenset(
    {
        "split",
        "chunk",
        "unbind",
        "tensor_split",
        "hsplit",
        "vsplit",
        "dsplit",
        "meshgrid",
        "broadcast_tensors",
        "max",
        "min",
        "sort",
        "topk",
        "kthvalue",
        "median",
        "nanmedian",
        "mode",
        "unique",
        "unique_consecutive",
        "aminmax",
        "frexp",
        "svd",
        "qr",
        "eig",
        "eigh",
        "slogdet",
        "lu",
        "var_mean",
        "std_mean",
        "cummax",
        "cummin",
        "grad",
        "tolist",
        "where",
        "nonzero",
        "histogram",
        "lstsq",
        "triangular_solve",
        "geqrf",
        "items",
        "values",
        "keys",
    }
)


@dataclass(frozen=True)
class ReturnedValues:
    node: cst.Return
    elements: tuple[cst.BaseExpression, ...]  # one expression per gradient position
    is_list: bool  # `return [a, b]`: torch sees one object

    @property
    def count(self) -> int:
        return len(self.elements)


_UNKNOWN = object()  # arity cannot be known
_ONE = object()  # bound to exactly one object: a parameter or one element of an unpacking


@dataclass(frozen=True)
class _Tuple:
    length: int


class _Arity:
    """Arity inference inside one backward: a count, or _UNKNOWN."""

    def __init__(self, method: Method):
        self.bindings: dict[str, list[object]] = {}
        for param in method.params:
            self.bindings[param.name.value] = [_ONE]
        if method.ctx_name:
            self.bindings[method.ctx_name] = [_UNKNOWN]
        star = method.node.params.star_arg
        if isinstance(star, cst.Param):
            self.bindings[star.name.value] = [_UNKNOWN]
        for node in walk(method.node.body, into_functions=False):
            self._record_binding(node)

    def _record_binding(self, node: cst.CSTNode) -> None:
        if isinstance(node, cst.Assign):
            for target in node.targets:
                if isinstance(target.target, cst.Name):
                    self.bindings.setdefault(target.target.value, []).append(node.value)
                else:
                    for name in assigned_names(target.target):
                        self.bindings.setdefault(name.value, []).append(_ONE)
        elif isinstance(node, cst.AugAssign) and isinstance(node.target, cst.Name):
            if isinstance(node.value, (cst.Tuple, cst.List)) or self.count(node.value) is _UNKNOWN:
                self.bindings.setdefault(node.target.value, []).append(_UNKNOWN)
        elif isinstance(node, cst.AnnAssign) and isinstance(node.target, cst.Name) and node.value is not None:
            self.bindings.setdefault(node.target.value, []).append(node.value)
        elif isinstance(node, (cst.For, cst.CompFor)):
            for name in assigned_names(node.target):
                self.bindings.setdefault(name.value, []).append(_UNKNOWN)
        elif isinstance(node, (cst.WithItem, cst.ExceptHandler)):
            alias = node.asname if isinstance(node, cst.WithItem) else node.name  # ExceptHandler's `as` is `.name`
            bound = alias.name if alias else None
            for name in assigned_names(bound) if isinstance(bound, cst.BaseExpression) else ():
                self.bindings.setdefault(name.value, []).append(_UNKNOWN)
        elif isinstance(node, cst.NamedExpr) and isinstance(node.target, cst.Name):
            self.bindings.setdefault(node.target.value, []).append(node.value)
        elif isinstance(node, (cst.Global, cst.Nonlocal)):
            for item in node.names:
                self.bindings.setdefault(item.name.value, []).append(_UNKNOWN)

    def count(self, expr, visiting: frozenset[str] = frozenset()):
        """1 for a single object, _Tuple(n) for a tuple of n, _UNKNOWN otherwise."""
        if isinstance(expr, cst.Name):
            if expr.value in ("None", "True", "False"):
                return 1
            return self._name_count(expr, visiting)
        if isinstance(expr, cst.Tuple):
            if any(isinstance(e, cst.StarredElement) for e in expr.elements):
                return _UNKNOWN
            return _Tuple(len(expr.elements))
        if isinstance(expr, (cst.List, cst.BaseNumber, cst.UnaryOperation, cst.Comparison)):
            return 1
        if isinstance(expr, cst.BinaryOperation):
            if isinstance(expr.operator, (cst.Add, cst.Multiply)):
                # `grads + (None,)` and `(None,) * k` build tuples; only tensor arithmetic is one value.
                # A tensor on either side makes it tensor arithmetic (a tensor and a tuple do not mix).
                sides = (self.count(expr.left, visiting), self.count(expr.right, visiting))
                if any(isinstance(side, _Tuple) for side in sides):
                    return _UNKNOWN
                return 1 if 1 in sides else _UNKNOWN
            return 1
        if isinstance(expr, cst.Subscript):
            simple_index = len(expr.slice) == 1 and isinstance(expr.slice[0].slice, cst.Index)
            return 1 if simple_index else _UNKNOWN
        if isinstance(expr, cst.IfExp):
            body, orelse = self.count(expr.body, visiting), self.count(expr.orelse, visiting)
            return body if body == orelse else _UNKNOWN
        if isinstance(expr, cst.Call):
            return self._call_count(expr, visiting)
        return _UNKNOWN

    def _name_count(self, name: cst.Name, visiting: frozenset[str]):
        if name.value in visiting:
            return 1  # `g = g * 2`: arithmetic on itself; tuple building is caught by the caller
        values = self.bindings.get(name.value)
        if not values:
            return _UNKNOWN
        counts = set()
        for value in values:
            if value is _UNKNOWN:
                return _UNKNOWN
            if value is _ONE:
                counts.add(1)
            else:
                counts.add(self.count(value, visiting | {name.value}))
        return counts.pop() if len(counts) == 1 else _UNKNOWN

    def _call_count(self, call: cst.Call, visiting: frozenset[str]):
        func = call.func
        if not isinstance(func, cst.Attribute):
            return _UNKNOWN
        if func.attr.value in TUPLE_RETURNING and not _single_tensor_form(call, func):
            return _UNKNOWN
        receiver = func.value
        # A tensor method (`g.neg()`) or a torch function (`torch.mul(...)`, `F.pad(...)`).
        if isinstance(receiver, cst.Name) and receiver.value in ("torch", "F"):
            return 1
        if (
            isinstance(receiver, cst.Attribute)
            and _root_name(receiver) == "torch"
            and "ops" not in _dotted_parts(receiver)
            and "_C" not in _dotted_parts(receiver)
        ):
            return 1
        return 1 if self.count(receiver, visiting) == 1 else _UNKNOWN

    def elements(self, expr: cst.BaseExpression) -> tuple[cst.BaseExpression, ...] | None:
        if isinstance(expr, cst.Tuple):
            if any(isinstance(e, cst.StarredElement) for e in expr.elements):
                return None
            return tuple(e.value for e in expr.elements)
        if isinstance(expr, cst.Name):
            values = self.bindings.get(expr.value, [])
            if len(values) == 1 and isinstance(values[0], cst.Tuple):
                return self.elements(values[0])
        if self.count(expr) == 1:
            return (expr,)
        return None


def _single_tensor_form(call: cst.Call, func: cst.Attribute) -> bool:
    """`torch.where(c, a, b)` / `g.where(c, o)` and `torch.max(a, b)` return one tensor; `torch.where(c)`,
    `x.max(dim)` and `torch.max(x, 1)` return tuples."""
    name = func.attr.value
    positional = [a for a in call.args if a.keyword is None]
    keywords = {a.keyword.value for a in call.args if a.keyword is not None}
    receiver_is_torch = isinstance(func.value, cst.Name) and func.value.value == "torch"
    if name == "where":
        return len(positional) == (3 if receiver_is_torch else 2)
    if name in ("max", "min") and "dim" not in keywords:
        tensors = positional[1:] if receiver_is_torch else positional
        return len(tensors) == 1 and not isinstance(tensors[0].value, (cst.Integer, cst.UnaryOperation))
    return False


def _root_name(expr: cst.BaseExpression) -> str | None:
    while isinstance(expr, cst.Attribute):
        expr = expr.value
    return expr.value if isinstance(expr, cst.Name) else None


def _dotted_parts(expr: cst.BaseExpression) -> list[str]:
    parts = []
    while isinstance(expr, cst.Attribute):
        parts.append(expr.attr.value)
        expr = expr.value
    return parts


def returned_values(backward: Method) -> list[ReturnedValues]:
    """Each `return` of `backward` (not of nested functions) whose arity is known."""
    arity = _Arity(backward)
    results = []
    for node in walk(backward.node.body, into_functions=False):
        if not isinstance(node, cst.Return) or node.value is None:
            continue
        if isinstance(node.value, cst.List):
            results.append(ReturnedValues(node, (node.value,), is_list=True))
            continue
        elements = arity.elements(node.value)
        if elements is not None:
            results.append(ReturnedValues(node, elements, is_list=False))
    return results
