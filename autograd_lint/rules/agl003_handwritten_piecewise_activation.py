"""AGL003 handwritten-piecewise-activation: `x * (x > 0).float()` instead of torch.relu."""

from __future__ import annotations

from typing import Iterator

import libcst as cst

from ..diagnostic import Severity
from ..module import ParsedModule
from ..rule import Finding, Rule
from ..syntax import code_of, normalized_code, walk

CASTS = frozenset({"float", "half", "double", "bfloat16", "to", "type_as", "type"})
COMPARISON_METHODS = frozenset({"gt", "ge", "lt", "le", "greater", "greater_equal", "less", "less_equal"})
ORDERING = (cst.GreaterThan, cst.GreaterThanEqual, cst.LessThan, cst.LessThanEqual)


class HandwrittenPiecewiseActivation(Rule):
    code = "AGL003"
    name = "handwritten-piecewise-activation"
    severity = Severity.WARNING
    summary = "a value multiplied by a comparison of itself: -0.0 for negatives, NaN at -inf"

    def check(self, module: ParsedModule) -> Iterator[Finding]:
        for node in walk(module.tree):
            if isinstance(node, cst.BinaryOperation) and isinstance(node.operator, cst.Multiply):
                parent = module.parents.get(node)
                if _is_multiply(parent) and parent.left is node:
                    continue  # judged once, at the top of the `a * b * c` chain
                factors = list(_factors(node))
            elif isinstance(node, cst.AugAssign) and isinstance(node.operator, cst.MultiplyAssign):
                factors = [node.target, node.value]
            else:
                continue
            match = _self_mask(module, factors)
            if match is not None:
                value, mask = match
                yield Finding(node, _message(value, mask))


def _is_multiply(node) -> bool:
    return isinstance(node, cst.BinaryOperation) and isinstance(node.operator, cst.Multiply)


def _factors(node: cst.BaseExpression) -> Iterator[cst.BaseExpression]:
    if _is_multiply(node) and not node.lpar:
        yield from _factors(node.left)
        yield from _factors(node.right)
    else:
        yield node


def _self_mask(module: ParsedModule, factors: list[cst.BaseExpression]):
    """(value, mask) when one factor is a comparison of another factor (optionally cast)."""
    plain = {normalized_code(f): f for f in factors if not isinstance(f, cst.BaseNumber)}
    for factor in factors:
        for compared in _compared_values(module, factor):
            key = normalized_code(compared)
            if key in plain and plain[key] is not factor:
                return plain[key], factor
    return None


def _compared_values(module: ParsedModule, expr: cst.BaseExpression) -> list[cst.BaseExpression]:
    """The operands of a (possibly cast) ordering comparison: `(x > 0).float()` -> [x, 0]."""
    while isinstance(expr, cst.Call) and isinstance(expr.func, cst.Attribute) and expr.func.attr.value in CASTS:
        expr = expr.func.value
    if isinstance(expr, cst.Comparison) and len(expr.comparisons) == 1:
        if isinstance(expr.comparisons[0].operator, ORDERING):
            return [expr.left, expr.comparisons[0].comparator]
    if isinstance(expr, cst.Call) and isinstance(expr.func, cst.Attribute):
        name = expr.func.attr.value
        if name in COMPARISON_METHODS:
            qualified = module.qualified_name(expr.func)
            if qualified and qualified.startswith("torch.") and len(expr.args) >= 2:
                return [expr.args[0].value, expr.args[1].value]
            if expr.args:
                return [expr.func.value]
    return []


def _message(value: cst.BaseExpression, mask: cst.BaseExpression) -> str:
    x = " ".join(code_of(value).split())
    return (
        f"`{x}` multiplied by a comparison of itself is a hand-written piecewise activation: "
        f"negative inputs give -0.0, -inf gives NaN, and an inf upstream gradient gives NaN; "
        f"use torch.relu({x}), {x}.clamp(min=0), F.threshold or torch.where(cond, {x}, 0.0)"
    )
