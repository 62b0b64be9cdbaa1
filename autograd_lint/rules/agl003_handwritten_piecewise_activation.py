"""AGL003 handwritten-piecewise-activation: `x * (x > 0).float()` instead of torch.relu."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from typing import TypeGuard

import libcst as cst

from ..core.diagnostic import Severity
from ..core.module import ParsedModule
from ..core.prefilter import (
    COMPARED_NAME_IS_A_FACTOR,
    FUNCTION_IS_A_FACTOR,
    NAME_IS_A_FACTOR,
    TextCue,
    is_ordering_comparison,
    python_nodes,
    terminal_name,
    unwrap_casts,
)
from ..core.rule import Finding, NodeRule
from ..core.scopes import bindings
from ..core.syntax import ORDERING_OPERATORS, dotted_name, literal_number, normalized_code, short_code, walk
from ..facts.gradient_reach import (
    feeds_only_non_differentiable,
    gradient_disabled,
    holds_no_gradient,
    in_operator_implementation,
)
from ..torch_api import CASTS, LESS_METHODS, ORDERING_METHODS

_COMPARISON = r"[^()\n]*?(?<![-<>=!])[<>]=?(?![<>])[^()\n]*"
_CAST = r"(?:\s*\.\s*(?:float|half|double|bfloat16|to|type_as|type)\([^()\n]*(?:\([^()\n]*\))?[^()\n]*\))?"
_COMPARISON_METHOD = r"\.(?:gt|ge|lt|le|greater|less|greater_equal|less_equal)\("
_MULTIPLICATIONS = frozenset({"mul", "mul_", "multiply"})  # `x.mul(mask)`, `torch.mul(x, mask)`
# Separate patterns: one alternation of all of them is several times slower to search.
# The flagged expression is assumed to keep each of these on one physical line, as formatters write it.
MASK_MULTIPLIED = TextCue(
    "a comparison next to a multiplication, or assigned to a name or returned by a function that is a factor",
    patterns=tuple(
        re.compile(pattern, re.MULTILINE)
        for pattern in (
            r"\*=?\s*\(" + _COMPARISON + r"\)",
            r"\(" + _COMPARISON + r"\)" + _CAST + r"\s*\*",
            _COMPARISON_METHOD + r"[^\n]*\*|\*[^\n]*" + _COMPARISON_METHOD,
            # `<` or `>`, not the arrow of a return annotation (`def mul(self, other) -> Tensor`)
            r"mul_?\([^\n]*(?:<|(?<!-)>|" + _COMPARISON_METHOD + r")|multiply\(",
            # a comparison on an assignment's line, a factor where the follow-up finds the name in a product
            r"^[ \t]*\w+[ \t]*=(?!=)[^\n]*?(?<![-<>=!])[<>]=?(?![<>])",
            r"^[ \t]*\w+[ \t]*=(?!=)[^\n]*?" + _COMPARISON_METHOD,
            # a parenthesized value continued on the next lines (`mask = (`), which may be a comparison
            r"^[ \t]*\w+[ \t]*=[ \t]*\((?:[^()\n]|\([^()\n]*\))*$",
            r"^[ \t]*return[ \t]+\(?[ \t]*[\w.\[\]]+[ \t]*[<>]=?[ \t]*[\w.(-]",  # a helper returning a mask
        )
    ),
    # `mask = x > 0` counts where `mask` is a factor of a product, `mask = (` where its value compares and it is
    # one, `return x > 0` where its function is one
    follow_ups=(
        *("", "", "", ""),
        *(NAME_IS_A_FACTOR, NAME_IS_A_FACTOR, COMPARED_NAME_IS_A_FACTOR, FUNCTION_IS_A_FACTOR),
    ),
)


class HandwrittenPiecewiseActivation(NodeRule[cst.BaseExpression]):
    code = "AGL003"
    name = "handwritten-piecewise-activation"
    severity = Severity.WARNING
    summary = "a value multiplied by a comparison of itself: -0.0 for negatives, NaN at -inf"

    # A comparison next to a multiplication (`x * (x > 0)`, `(x > 0).float() * x`, `x * x.gt(0)`,
    # `x.mul(x > 0)`) or assigned to a name (`mask = (x > 0).float()`).
    requires = (MASK_MULTIPLIED,)
    node_types = (cst.BinaryOperation, cst.AugAssign, cst.Call)

    @classmethod
    def candidate(cls, tree: ast.AST) -> bool:
        return _multiplies_a_comparison(tree)

    def check_node(self, node: cst.CSTNode, module: ParsedModule) -> Iterator[Finding[cst.BaseExpression]]:
        if isinstance(node, cst.BinaryOperation) and isinstance(node.operator, cst.Multiply):
            parent = module.parents.get(node)
            if _is_multiply(parent) and parent.left is node:
                return  # judged once, at the top of the `a * b * c` chain
            factors = list(_factors(node))
        elif isinstance(node, cst.AugAssign) and isinstance(node.operator, cst.MultiplyAssign):
            factors = [node.target, node.value]
        elif isinstance(node, cst.Call) and _is_mul_call(module, node):
            # `x.mul(mask)`, `torch.mul(x, mask)`
            torch_function = (module.qualified_name(node.func) or "").startswith("torch.")
            receiver = [node.func.value] if isinstance(node.func, cst.Attribute) and not torch_function else []
            factors = receiver + [a.value for a in node.args if a.keyword is None]
        else:
            return
        match = _self_mask(module, factors)
        if match is None:
            return
        value, _, comparison = match
        if _integer_valued(module, value) or not _activation_in_a_differentiable_path(module, node, value):
            return
        yield Finding(node, *_message(node, value, comparison), subject=value)


def _is_multiply(node: cst.CSTNode | None) -> TypeGuard[cst.BinaryOperation]:
    return isinstance(node, cst.BinaryOperation) and isinstance(node.operator, cst.Multiply)


def _factors(node: cst.BaseExpression) -> Iterator[cst.BaseExpression]:
    if _is_multiply(node) and not node.lpar:
        yield from _factors(node.left)
        yield from _factors(node.right)
    else:
        yield node


def _is_mul_call(module: ParsedModule, call: cst.Call) -> bool:
    if not (isinstance(call.func, cst.Attribute) and call.func.attr.value in _MULTIPLICATIONS):
        return False
    qualified = module.qualified_name(call.func) or ""
    positional = [a for a in call.args if a.keyword is None]
    return len(positional) == (2 if qualified.startswith("torch.") else 1)


def _self_mask(module: ParsedModule, factors: list[cst.BaseExpression]):
    """(value, mask, comparison) when one factor is a comparison of another factor with a threshold
    that is a setting (optionally cast), inline or through a local name assigned once
    (`mask = (x > 0).float(); x * mask`), and the mask zeroes negative values."""
    plain = {normalized_code(f): f for f in factors if not isinstance(f, cst.BaseNumber)}
    for factor in factors:
        found = _compared_value(module, module.single_assignment(factor))
        if found is None:
            continue
        compared, threshold, comparison = found
        key = normalized_code(compared)
        if (
            key in plain
            and plain[key] is not factor
            and _constant_threshold(module, threshold, compared)
            and not _zeroes_only_non_negatives(comparison, compared, threshold)
        ):
            return plain[key], factor, comparison
    return None


def _compared_value(
    module: ParsedModule, expr: cst.BaseExpression
) -> tuple[cst.BaseExpression, cst.BaseExpression, cst.BaseExpression] | None:
    """(compared value, threshold, the comparison) of a (possibly cast) ordering comparison:
    `(x > 0).float()` -> (x, 0, x > 0); `0 < x` and `x.gt(0)` compare x too."""
    while isinstance(expr, cst.Call) and isinstance(expr.func, cst.Attribute) and expr.func.attr.value in CASTS:
        expr = expr.func.value
    if isinstance(expr, cst.Comparison) and len(expr.comparisons) == 1:
        if isinstance(expr.comparisons[0].operator, ORDERING_OPERATORS):
            # The activation's input, not its threshold: `x > t` and `0 < x` both compare `x`.
            left, right = expr.left, expr.comparisons[0].comparator
            return (right, left, expr) if _is_setting(left) else (left, right, expr)
    if isinstance(expr, cst.Call) and isinstance(expr.func, cst.Attribute):
        name = expr.func.attr.value
        args = [a.value for a in expr.args if a.keyword is None]
        if name in ORDERING_METHODS:
            qualified = module.qualified_name(expr.func)
            if qualified and qualified.startswith("torch.") and len(args) >= 2:
                return args[0], args[1], expr
            if len(args) == 1:
                return expr.func.value, args[0], expr
    if isinstance(expr, cst.Call) and isinstance(expr.func, cst.Name):
        return _helper_mask(module, expr)
    return None


def _helper_mask(
    module: ParsedModule, call: cst.Call
) -> tuple[cst.BaseExpression, cst.BaseExpression, cst.BaseExpression] | None:
    """`positive_mask(x)` with `def positive_mask(t, threshold=0.0): return (t > threshold).float()`
    in this module: the mask compares the call's argument. The threshold and the comparison are
    returned in the caller's terms (the helper's parameters replaced by the arguments or defaults)."""
    if not isinstance(call.func, cst.Name):
        return None
    name = call.func.value
    helper = next((s for s in module.tree.body if isinstance(s, cst.FunctionDef) and s.name.value == name), None)
    returns = (
        [n for n in walk(helper.body, into_functions=False) if isinstance(n, cst.Return)] if helper is not None else []
    )
    if helper is None or len(returns) != 1 or returns[0].value is None or any(a.star for a in call.args):
        return None
    found = _compared_value(module, returns[0].value)
    if found is None:
        return None
    compared, threshold, comparison = found
    if not isinstance(compared, cst.Name):
        return None
    params = list(helper.params.params)
    values = {p.name.value: p.default for p in params if p.default is not None}
    values.update({p.name.value: a.value for p, a in zip(params, (a for a in call.args if a.keyword is None))})
    values.update({a.keyword.value: a.value for a in call.args if a.keyword is not None})
    local = {name for name, binders in bindings(helper).items() if not all(isinstance(b, cst.Param) for b in binders)}
    if compared.value not in values or any(
        isinstance(n, cst.Name) and n.value in local for n in [threshold, *walk(threshold)]
    ):
        return None  # a threshold the helper computes (from the data, maybe): not judged here
    in_caller = _InCaller(values)
    caller_threshold, caller_comparison = threshold.visit(in_caller), comparison.visit(in_caller)
    if not isinstance(caller_threshold, cst.BaseExpression) or not isinstance(caller_comparison, cst.BaseExpression):
        return None  # never: _InCaller only puts expressions in place of names
    return values[compared.value], caller_threshold, caller_comparison


class _InCaller(cst.CSTTransformer):
    """A helper's expression with its parameters replaced by what the caller passes."""

    def __init__(self, values: dict[str, cst.BaseExpression]):
        self.values = values

    def leave_Name(self, original, updated):
        value = self.values.get(original.value)
        return updated if value is None else value

    def leave_Attribute(self, original, updated):
        return updated.with_changes(attr=original.attr)


def _zeroes_only_non_negatives(
    comparison: cst.BaseExpression, compared: cst.BaseExpression, threshold: cst.BaseExpression
) -> bool:
    """`x * (x < 0)`, `x * (x <= 1.0)`: the mask keeps the values below a threshold that is not
    negative, so the elements it zeroes are >= 0 and `x * 0` is +0.0 there; the product differs
    from the library op only for an infinite input, as any mask multiplication does."""
    value = literal_number(threshold)
    if value is None or value < 0:
        return False
    if isinstance(comparison, cst.Comparison):
        operator = comparison.comparisons[0].operator
        below = isinstance(operator, (cst.LessThan, cst.LessThanEqual))
        return below if comparison.left is compared else not below
    name = (
        comparison.func.attr.value
        if isinstance(comparison, cst.Call) and isinstance(comparison.func, cst.Attribute)
        else ""
    )
    return name in LESS_METHODS


def _constant_threshold(module: ParsedModule, threshold: cst.BaseExpression, compared: cst.BaseExpression) -> bool:
    """An activation's threshold is a setting: a number, an attribute (`self.threshold`), a
    parameter, or a value computed from the module's state (a learned `self.log_threshold.exp()`).
    A threshold computed in this function from the compared value or from what that value is
    computed from (Otsu's level from the image's histogram, a quantile, a mean) makes the product
    a data-dependent selection, not an activation."""
    if _is_setting(threshold):
        return True
    return _names_read(module, threshold).isdisjoint(_names_read(module, compared) - {"self", "cls"})


def _names_read(module: ParsedModule, expr: cst.BaseExpression, depth: int = 6) -> set[str]:
    """The names `expr` reads, and those the locals it reads are computed from (a few
    assignments deep); `.shape`, `.dtype` and `.device` read no value."""
    function = module.enclosing_function(expr)
    scope = bindings(function) if function is not None else {}
    found: set[str] = set()
    pending = [(expr, depth)]
    while pending:
        node, left = pending.pop()
        if isinstance(node, cst.Attribute) and node.attr.value in ("shape", "dtype", "device", "ndim"):
            continue
        if isinstance(node, cst.Attribute):
            pending.append((node.value, left))
            continue
        if isinstance(node, cst.Name):
            if node.value in found:
                continue
            found.add(node.value)
            if left > 0:
                for binder in scope.get(node.value, []):
                    value = binder.iter if isinstance(binder, cst.For) else getattr(binder, "value", None)
                    if isinstance(value, cst.BaseExpression):
                        pending.append((value, left - 1))
            continue
        pending.extend(
            (child, left)
            for child in walk(node)
            if isinstance(child, (cst.Name, cst.Attribute))
            and module.parents.get(child) is not None
            and not isinstance(module.parents.get(child), cst.Attribute)
        )
    return found


def _is_setting(expr: cst.BaseExpression) -> bool:
    """A number or a `self.<attr>` threshold."""
    if isinstance(expr, (cst.BaseNumber, cst.UnaryOperation)):
        return True
    name = dotted_name(expr) or ""
    return name.startswith("self.")


INTEGER_PRODUCERS = frozenset(
    {"arange", "randint", "argmax", "argmin", "long", "int", "nonzero", "bucketize", "searchsorted"}
)


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
                if (
                    isinstance(binding, cst.Assign)
                    and binding.value is not expr
                    and _integer_valued(module, binding.value, depth - 1)
                ):
                    return True
    return False


def _activation_in_a_differentiable_path(
    module: ParsedModule, node: cst.BaseExpression | cst.AugAssign, value: cst.BaseExpression
) -> bool:
    """The pitfall is the activation's: its output keeps -0.0 and NaN, its input's gradient takes NaN.
    Not when the code runs with recording off, in an optimizer step or in a registered operator's
    implementation, when the input can hold no
    gradient (noise, a grid, counts), when the product only feeds non-differentiable uses, or when it
    is one term of a sum (`a * (a > 0) + b`, a leaky ReLU built from two masked terms): adding
    another term turns -0.0 into that term, and the gradient of `x * (x > 0)` is ReLU's."""
    if gradient_disabled(module, node) or in_operator_implementation(module, node) or holds_no_gradient(module, value):
        return False
    if isinstance(node, cst.AugAssign) or (
        isinstance(node, cst.Call) and isinstance(node.func, cst.Attribute) and node.func.attr.value.endswith("_")
    ):
        return True  # in place: the product lives on in the multiplied tensor
    return not _only_summed(module, node) and not feeds_only_non_differentiable(module, node)


def _only_summed(module: ParsedModule, node: cst.CSTNode) -> bool:
    """`node` is an operand of `+`/`-`, directly or through a local name all of whose uses are."""
    parent = module.parents.get(node)
    if isinstance(parent, cst.BinaryOperation) and isinstance(parent.operator, (cst.Add, cst.Subtract)):
        return True
    if isinstance(parent, cst.Assign) and len(parent.targets) == 1 and isinstance(parent.targets[0].target, cst.Name):
        function = module.enclosing_function(node)
        name = parent.targets[0].target.value
        if function is None or len(bindings(function).get(name, [])) != 1:
            return False
        uses = [
            n
            for n in walk(function.body)
            if isinstance(n, cst.Name) and n.value == name and n is not parent.targets[0].target
        ]
        return bool(uses) and all(_only_summed(module, use) for use in uses)
    return False


def _message(node: cst.CSTNode, value: cst.BaseExpression, comparison: cst.BaseExpression) -> tuple[str, str]:
    x = short_code(value)
    product = cst.BinaryOperation(node.target, cst.Multiply(), node.value) if isinstance(node, cst.AugAssign) else node
    condition = short_code(comparison)
    relu = f"torch.relu({x}) or " if _is_relu_mask(comparison, value) else ""
    return (
        f"`{short_code(product, 40)}` is a hand-written activation of `{short_code(value, 20)}`",
        f"Where the mask is 0 it returns `{x} * 0`, which is "
        f"-0.0 for a negative `{x}` (the library op gives +0.0) and NaN for an infinite one, and an inf gradient "
        f"arriving there becomes a NaN gradient for `{x}` (the library op passes 0); for finite values the "
        f"gradients agree. "
        f"Use {relu}torch.where({condition}, {x}, 0.0).",
    )


def _is_relu_mask(comparison: cst.BaseExpression, value: cst.BaseExpression) -> bool:
    """`x > 0`, `0 < x`, `x.gt(0.0)`: the mask of torch.relu."""
    if isinstance(comparison, cst.Comparison):
        left, operator, right = (
            comparison.left,
            comparison.comparisons[0].operator,
            comparison.comparisons[0].comparator,
        )
        if normalized_code(right) == normalized_code(value):
            left, right, operator = right, left, cst.GreaterThan() if isinstance(operator, cst.LessThan) else operator
        return (
            isinstance(operator, cst.GreaterThan)
            and normalized_code(left) == normalized_code(value)
            and literal_number(right) == 0
        )
    if (
        isinstance(comparison, cst.Call)
        and isinstance(comparison.func, cst.Attribute)
        and comparison.func.attr.value in ("gt", "greater")
    ):
        args = [a.value for a in comparison.args]
        compared, threshold = (
            (args[0], args[1]) if len(args) == 2 else (comparison.func.value, args[0] if args else None)
        )
        return (
            threshold is not None
            and normalized_code(compared) == normalized_code(value)
            and literal_number(threshold) == 0
        )
    return False


# --- the prefilter's AST check ---


def _multiplies_a_comparison(tree: ast.AST) -> bool:
    # One pass sorts the nodes by exact type (a set lookup each: most of a tree is neither): the products, and
    # the names assigned a comparison, which a product anywhere may read.
    compared_names: set[str] = set()
    products: list[ast.AST] = []
    for node in python_nodes(tree):
        if type(node) not in _READ_KINDS:
            continue
        if isinstance(node, ast.Assign):
            if is_ordering_comparison(node.value):
                compared_names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, (ast.BinOp, ast.AugAssign)):
            if isinstance(node.op, ast.Mult):
                products.append(node)
        elif isinstance(node, ast.Call) and terminal_name(node.func) in _MULTIPLICATIONS:
            products.append(node)

    # Module functions that return a (cast) comparison: `positive_mask(h)` is a mask. Read only for a product
    # with a call of a module function (rare), as it walks each such function again.
    module_functions = {node.name: node for node in getattr(tree, "body", []) if isinstance(node, ast.FunctionDef)}

    def returns_a_comparison(name: str) -> bool:
        return any(
            isinstance(r, ast.Return) and r.value is not None and is_ordering_comparison(unwrap_casts(r.value))
            for r in python_nodes(module_functions[name])
        )

    def comparison_like(factor: ast.AST) -> bool:
        factor = unwrap_casts(factor)
        if (
            isinstance(factor, ast.Call)
            and isinstance(factor.func, ast.Name)
            and factor.func.id in module_functions
            and returns_a_comparison(factor.func.id)
        ):
            return True
        return is_ordering_comparison(factor) or (isinstance(factor, ast.Name) and factor.id in compared_names)

    for node in products:
        if isinstance(node, ast.BinOp):
            if any(comparison_like(f) for f in _ast_factors(node)):
                return True
        elif isinstance(node, ast.AugAssign):
            if comparison_like(node.value):
                return True
        elif isinstance(node, ast.Call):
            if any(comparison_like(a) for a in node.args):
                return True
    return False


_READ_KINDS = frozenset({ast.Assign, ast.BinOp, ast.AugAssign, ast.Call})


def _ast_factors(node: ast.AST):
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult):
        yield from _ast_factors(node.left)
        yield from _ast_factors(node.right)
    else:
        yield node
