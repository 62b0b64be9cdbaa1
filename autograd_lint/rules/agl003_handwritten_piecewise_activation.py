"""AGL003 handwritten-piecewise-activation: `x * (x > 0).float()` instead of torch.relu."""

from __future__ import annotations

from typing import Iterator

import libcst as cst

import re

from ..confirm.expression import expression_function, single_assignment
from ..confirm.harness import Harness
from ..ast_candidates import multiplies_a_comparison
from ..diagnostic import Severity
from ..module import ParsedModule
from ..rule import Finding, Rule
from ..scopes import bindings
from ..syntax import code_of, dotted_name, normalized_code, walk

CASTS = frozenset({"float", "half", "double", "bfloat16", "to", "type_as", "type"})
COMPARISON_METHODS = frozenset({"gt", "ge", "lt", "le", "greater", "greater_equal", "less", "less_equal"})
_COMPARISON = r"[^()\n]*?(?<![-<>=!])[<>]=?(?![<>])[^()\n]*"
_CAST = r"(?:\s*\.\s*(?:float|half|double|bfloat16|to|type_as|type)\([^()\n]*(?:\([^()\n]*\))?[^()\n]*\))?"
_COMPARISON_METHOD = r"\.(?:gt|ge|lt|le|greater|less|greater_equal|less_equal)\("
# Separate patterns: one alternation of all of them is several times slower to search.
_TRIGGERS = tuple(
    re.compile(pattern, re.MULTILINE)
    for pattern in (
        r"\*=?\s*\(" + _COMPARISON + r"\)",
        r"\(" + _COMPARISON + r"\)" + _CAST + r"\s*\*",
        _COMPARISON_METHOD + r"[^\n]*\*|\*[^\n]*" + _COMPARISON_METHOD,
        r"mul_?\([^\n]*(?:[<>]|" + _COMPARISON_METHOD + r")|multiply\(",
        r"^[ \t]*\w+[ \t]*=[ \t]*\(?[ \t]*[\w.\[\]]+[ \t]*[<>]=?[ \t]*[\w.(-]",
        r"^[ \t]*\w+[ \t]*=[ \t]*[\w.\[\]]+" + _COMPARISON_METHOD,
    )
)
ORDERING = (cst.GreaterThan, cst.GreaterThanEqual, cst.LessThan, cst.LessThanEqual)


class HandwrittenPiecewiseActivation(Rule):
    code = "AGL003"
    name = "handwritten-piecewise-activation"
    severity = Severity.WARNING
    summary = "a value multiplied by a comparison of itself: -0.0 for negatives, NaN at -inf"

    @classmethod
    def triggered(cls, text: str) -> bool:
        """A comparison next to a multiplication (`x * (x > 0)`, `(x > 0).float() * x`, `x * x.gt(0)`,
        `x.mul(x > 0)`) or assigned to a name (`mask = (x > 0).float()`). The flagged expression is
        assumed to keep each of these on one physical line, as formatters write it."""
        return any(pattern.search(text) for pattern in _TRIGGERS)

    @classmethod
    def candidate(cls, tree) -> bool:
        return multiplies_a_comparison(tree)

    def check(self, module: ParsedModule) -> Iterator[Finding]:
        for node in walk(module.tree):
            kind = type(node)
            if kind not in (cst.BinaryOperation, cst.AugAssign, cst.Call):
                continue
            if isinstance(node, cst.BinaryOperation) and isinstance(node.operator, cst.Multiply):
                parent = module.parents.get(node)
                if _is_multiply(parent) and parent.left is node:
                    continue  # judged once, at the top of the `a * b * c` chain
                factors = list(_factors(node))
            elif isinstance(node, cst.AugAssign) and isinstance(node.operator, cst.MultiplyAssign):
                factors = [node.target, node.value]
            elif isinstance(node, cst.Call) and _is_mul_call(module, node):
                # `x.mul(mask)`, `torch.mul(x, mask)`
                receiver = [node.func.value] if not (module.qualified_name(node.func) or "").startswith("torch.") else []
                factors = receiver + [a.value for a in node.args if a.keyword is None]
            else:
                continue
            match = _self_mask(module, factors)
            if match is not None and not _integer_valued(module, match[0]):
                value, mask = match
                yield Finding(node, _message(value, mask), subject=value)

    def confirm_harness(self, module: ParsedModule, finding: Finding) -> Harness:
        """Evaluate the flagged expression on [-inf, -2, -0.5, 0.5, 2, inf] against torch.relu:
        -0.0 outputs, NaN outputs, NaN gradients for an inf upstream gradient."""
        node = finding.node
        expression = cst.BinaryOperation(node.target, cst.Multiply(), node.value) if isinstance(node, cst.AugAssign) else node
        code, required, optional = expression_function(module, node, expression, finding.subject, "_agl_expression")
        shown = " ".join(code_of(expression).split())
        return Harness(required, f"{code}\n_agl_relu_recipe(_agl_expression, {shown!r})", optional)


def _is_multiply(node) -> bool:
    return isinstance(node, cst.BinaryOperation) and isinstance(node.operator, cst.Multiply)


def _factors(node: cst.BaseExpression) -> Iterator[cst.BaseExpression]:
    if _is_multiply(node) and not node.lpar:
        yield from _factors(node.left)
        yield from _factors(node.right)
    else:
        yield node


def _is_mul_call(module: ParsedModule, call: cst.Call) -> bool:
    if not (isinstance(call.func, cst.Attribute) and call.func.attr.value in ("mul", "mul_", "multiply")):
        return False
    qualified = module.qualified_name(call.func) or ""
    positional = [a for a in call.args if a.keyword is None]
    return len(positional) == (2 if qualified.startswith("torch.") else 1)


def _self_mask(module: ParsedModule, factors: list[cst.BaseExpression]):
    """(value, mask) when one factor is a comparison of another factor (optionally cast), inline
    or through a local name assigned once (`mask = (x > 0).float(); x * mask`)."""
    plain = {normalized_code(f): f for f in factors if not isinstance(f, cst.BaseNumber)}
    for factor in factors:
        for compared in _compared_values(module, single_assignment(module, factor)):
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
            # The activation's input, not its threshold: `x > t` and `0 < x` both compare `x`.
            left, right = expr.left, expr.comparisons[0].comparator
            return [right] if _is_setting(left) else [left]
    if isinstance(expr, cst.Call) and isinstance(expr.func, cst.Attribute):
        name = expr.func.attr.value
        if name in COMPARISON_METHODS:
            qualified = module.qualified_name(expr.func)
            if qualified and qualified.startswith("torch.") and len(expr.args) >= 2:
                return [expr.args[0].value]
            if expr.args:
                return [expr.func.value]
    return []


def _is_setting(expr: cst.BaseExpression) -> bool:
    """A number or a `self.<attr>` threshold."""
    if isinstance(expr, (cst.BaseNumber, cst.UnaryOperation)):
        return True
    name = dotted_name(expr) or ""
    return name.startswith("self.")


INTEGER_PRODUCERS = frozenset({"arange", "randint", "argmax", "argmin", "long", "int", "nonzero", "bucketize", "searchsorted"})


def _integer_valued(module: ParsedModule, expr: cst.BaseExpression, depth: int = 3) -> bool:
    """Whether a value is built from integer producers (`torch.arange(n)[:, None] - ...`):
    integers have no -0.0 and no NaN, so the pattern is index arithmetic."""
    if depth == 0:
        return False
    for node in [expr, *walk(expr)]:
        if isinstance(node, cst.Call) and isinstance(node.func, (cst.Attribute, cst.Name)):
            callee = node.func.attr.value if isinstance(node.func, cst.Attribute) else node.func.value
            if callee in INTEGER_PRODUCERS:
                return True
        if isinstance(node, cst.Name):
            function = module.enclosing_function(expr)
            for binding in bindings(function).get(node.value, []) if function is not None else []:
                if isinstance(binding, cst.Assign) and binding.value is not expr and _integer_valued(module, binding.value, depth - 1):
                    return True
    return False


def _message(value: cst.BaseExpression, mask: cst.BaseExpression) -> str:
    x = " ".join(code_of(value).split())
    return (
        f"`{x}` multiplied by a comparison of itself is a hand-written piecewise activation: "
        f"negative inputs give -0.0, -inf gives NaN, and an inf upstream gradient gives NaN; "
        f"use torch.relu({x}), {x}.clamp(min=0), F.threshold or torch.where(cond, {x}, 0.0)"
    )
