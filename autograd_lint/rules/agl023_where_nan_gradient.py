"""AGL023 where-nan-gradient: `torch.where(x > 0, torch.log(x), 0)` evaluates log everywhere, and the
unselected side's infinite derivative times where's zero gradient is NaN."""

from __future__ import annotations

import ast
import math
import re
from dataclasses import dataclass
from typing import Iterator

import libcst as cst

from ..confirm.expression import expression_function, single_assignment
from ..confirm.harness import Harness
from ..diagnostic import Severity
from ..module import ParsedModule
from ..rule import Finding, Rule
from ..syntax import children, code_of, normalized_code, walk

INF = math.inf

# Unsafe op -> where its derivative is infinite or NaN, as a predicate on the set of argument values
# the unselected side takes ("zero": at 0; "nonpositive": at <= 0; "negative": < 0; "minus_one": at
# -1; "unit": |u| >= 1; "large": overflows for large u).
UNSAFE_CALLS = {
    "log": "zero", "log2": "zero", "log10": "zero", "log1p": "minus_one",
    "sqrt": "nonpositive", "rsqrt": "nonpositive", "reciprocal": "zero",
    "exp": "large", "expm1": "large", "exp2": "large",
    "acos": "unit", "asin": "unit", "arccos": "unit", "arcsin": "unit", "atanh": "unit", "arctanh": "unit",
}
WHAT = {
    "zero": "infinite at 0", "nonpositive": "infinite or NaN at and below 0", "negative": "NaN below 0",
    "minus_one": "infinite at -1", "unit": "infinite or NaN where |x| >= 1", "large": "infinite once the op overflows for large inputs",
}
COMPARISON_METHODS = {"gt": ">", "ge": ">=", "lt": "<", "le": "<=", "greater": ">", "greater_equal": ">=", "less": "<", "less_equal": "<=", "eq": "==", "ne": "!="}
OPERATORS = {cst.GreaterThan: ">", cst.GreaterThanEqual: ">=", cst.LessThan: "<", cst.LessThanEqual: "<=", cst.Equal: "==", cst.NotEqual: "!="}
FLIPPED = {">": "<", ">=": "<=", "<": ">", "<=": ">=", "==": "==", "!=": "!="}
UNKNOWN_THRESHOLD = 1e-12  # `x > eps`, `x > self.threshold`: taken as a small non-negative number
# Where each kind's derivative starts to blow up. A condition whose threshold is one of these guards
# that very point (`x > 0` before a log); one elsewhere (`x < 3.75` choosing between two series) is a
# regime switch, and inputs may never reach the singular point. Overflow has no such point: it is
# flagged whatever the threshold.
SINGULAR_POINTS = {"zero": (0.0,), "nonpositive": (0.0,), "negative": (0.0,), "minus_one": (-1.0,), "unit": (-1.0, 1.0)}
NEAR = 1e-3  # `x.abs() < 1e-6` guards 0
CLAMPS = frozenset({"clamp", "clip", "clamp_min", "clamp_max", "clamp_", "clamp_min_"})
_UNSAFE_WORDS = "|".join(sorted(UNSAFE_CALLS))
_TRIGGER_WHERE = re.compile(r"\bwhere\s*\(")
_TRIGGER_UNSAFE = re.compile(r"\b(?:" + _UNSAFE_WORDS + r"|pow)\s*\(|/|\*\*")


# An interval of real numbers: (low, high, low_closed, high_closed).
Interval = tuple[float, float, bool, bool]


def _contains(interval: Interval, value: float) -> bool:
    low, high, low_closed, high_closed = interval
    return (low < value or (low_closed and low == value)) and (value < high or (high_closed and high == value))


def _reaches_below(interval: Interval, value: float, inclusive: bool) -> bool:
    low, _, low_closed, _ = interval
    return low < value or (inclusive and low == value and low_closed)


def _reaches_above(interval: Interval, value: float, inclusive: bool) -> bool:
    _, high, _, high_closed = interval
    return high > value or (inclusive and high == value and high_closed)


def _bad(kind: str, region: list[Interval]) -> bool:
    for interval in region:
        if kind == "zero" and _contains(interval, 0.0):
            return True
        if kind == "minus_one" and _contains(interval, -1.0):
            return True
        if kind == "nonpositive" and _reaches_below(interval, 0.0, inclusive=True):
            return True
        if kind == "negative" and _reaches_below(interval, 0.0, inclusive=False):
            return True
        if kind == "unit" and (_reaches_below(interval, -1.0, True) or _reaches_above(interval, 1.0, True)):
            return True
        if kind == "large" and interval[1] == INF:
            return True
    return False


def _region(operator: str, threshold: float) -> list[Interval]:
    """Where `v <operator> threshold` holds."""
    t = threshold
    return {
        ">": [(t, INF, False, False)],
        ">=": [(t, INF, True, False)],
        "<": [(-INF, t, False, False)],
        "<=": [(-INF, t, False, True)],
        "==": [(t, t, True, True)],
        "!=": [(-INF, t, False, False), (t, INF, False, False)],
    }[operator]


def _complement(region: list[Interval]) -> list[Interval]:
    result: list[Interval] = []
    position, closed = -INF, False  # the next gap starts here; `closed`: whether it includes `position`
    for low, high, low_closed, high_closed in sorted(region):
        if low > position or (low == position and closed and not low_closed):
            result.append((position, low, closed, not low_closed))
        position, closed = high, not high_closed
    if position < INF:
        result.append((position, INF, closed, False))
    return result


def _negated(region: list[Interval]) -> list[Interval]:
    return [(-high, -low, high_closed, low_closed) for low, high, low_closed, high_closed in region]


@dataclass(frozen=True)
class Guard:
    """`cond` is a comparison of `variable` (or of its absolute value) with a threshold."""

    variable: cst.BaseExpression
    true_region: list[Interval]
    threshold: float


@dataclass(frozen=True)
class UnsafeWhere:
    where: cst.Call
    condition: cst.BaseExpression
    selected: cst.BaseExpression  # the branch where cond is True
    other: cst.BaseExpression
    variable: cst.BaseExpression
    operation: cst.BaseExpression  # the unsafe call, division or power
    kind: str
    threshold: float


class WhereNanGradient(Rule):
    code = "AGL023"
    name = "where-nan-gradient"
    severity = Severity.WARNING
    summary = "torch.where selects around an op whose derivative is inf/NaN on the unselected side: NaN gradients"

    @classmethod
    def triggered(cls, text: str) -> bool:
        """A `where(` call and one of the unsafe ops, a division or a power somewhere in the file."""
        return _TRIGGER_WHERE.search(text) is not None and _TRIGGER_UNSAFE.search(text) is not None

    @classmethod
    def candidate(cls, tree: ast.AST) -> bool:
        """In one scope (a function with what it contains, or the module outside functions): a
        `where` call, and an unsafe op whose argument (up to `-`, `.neg()` and a clamp) is also
        compared there (up to `abs`). The rule follows guards and branches through one function's
        locals only, so a file whose `where`s and unsafe ops live in different functions (the big
        test and codegen modules) is never parsed with libcst for this rule."""
        return _any_scope_may_report(tree)

    def check(self, module: ParsedModule) -> Iterator[Finding]:
        for node in walk(module.tree):
            if type(node) is not cst.Call or not isinstance(node.func, cst.Attribute) or node.func.attr.value != "where":
                continue
            parts = _where_parts(module, node)
            if parts is None:
                continue
            found = _unsafe_where(module, node, *parts)
            if found is not None:
                yield Finding(found.operation, _message(found), subject=found)

    def confirm_harness(self, module: ParsedModule, finding: Finding) -> Harness:
        """Evaluate the `where` on a probe that takes both branches and hits the unsafe op's singular
        points on the unselected side; compare where's gradient with the selected branch's own."""
        found: UnsafeWhere = finding.subject
        expression = cst.Tuple([cst.Element(e) for e in (found.where, found.condition, found.selected, found.other)])
        code, required, optional = expression_function(
            module, found.where, expression, found.variable, "_agl_where_parts", stand_in="torch.full_like(_agl_x, 0.75)"
        )
        probe = [-1000.0, -100.0, -2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0, 100.0, 1000.0]
        if found.threshold != UNKNOWN_THRESHOLD:
            probe += [found.threshold - 0.5, found.threshold, found.threshold + 0.5]
        shown = " ".join(code_of(found.where).split())
        main = "\n".join(["import torch", code, f"_agl_where_recipe(_agl_where_parts, {sorted(set(probe))!r}, {shown!r})"])
        return Harness(required, main, optional | {"torch"})



class _ScopeFacts:
    """What the prefilter needs from one scope: a torch `where` call, compared texts, unsafe-op arguments."""

    def __init__(self) -> None:
        self.has_where = False
        self.compared: set[str] = set()
        self.arguments: set[str] = set()

    def merge(self, other: "_ScopeFacts") -> None:
        self.has_where |= other.has_where
        self.compared |= other.compared
        self.arguments |= other.arguments

    def may_report(self) -> bool:
        return self.has_where and not self.compared.isdisjoint(self.arguments)

    def add(self, node: ast.AST) -> None:
        if isinstance(node, ast.Compare):
            self.compared.update(_ast_operand_texts([node.left, *node.comparators]))
        elif isinstance(node, ast.Call):
            name = _ast_terminal(node.func)
            operands = [*node.args, *([node.func.value] if isinstance(node.func, ast.Attribute) else [])]
            if name == "where":
                self.has_where = self.has_where or not _is_array_library_call(node.func)
            elif name in COMPARISON_METHODS:
                self.compared.update(_ast_operand_texts(operands))
            elif name in UNSAFE_CALLS or name in ("pow", "div", "true_divide", "divide"):
                self.arguments.update(_ast_argument_texts(operands))
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            self.arguments.update(_ast_argument_texts([node.right]))
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow):
            self.arguments.update(_ast_argument_texts([node.left]))


_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)


def _any_scope_may_report(tree: ast.AST) -> bool:
    """One pass over the tree. A function's (or lambda's) facts include those of the functions nested
    in it; the module's scope is what lies outside every function."""
    facts: dict[ast.AST, _ScopeFacts] = {tree: _ScopeFacts()}
    outer: dict[ast.AST, ast.AST] = {}
    order: list[ast.AST] = []
    stack = [(tree, tree)]
    while stack:
        node, scope = stack.pop()
        if node is not scope and isinstance(node, _SCOPES):
            facts[node], outer[node] = _ScopeFacts(), scope
            order.append(node)
            scope = node
        facts[scope].add(node)
        stack.extend((child, scope) for child in ast.iter_child_nodes(node))
    for function in reversed(order):  # inner functions come after the ones containing them
        if outer[function] is not tree:
            facts[outer[function]].merge(facts[function])
    return any(f.may_report() for f in facts.values())


def _is_array_library_call(func: ast.expr) -> bool:
    """`np.where(...)`, `numpy.where(...)`: not torch, no autograd (the rule skips them too)."""
    return isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id in ("np", "numpy", "jnp", "jax")

def _ast_terminal(func: ast.AST) -> str | None:
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None


def _ast_operand_texts(nodes: list[ast.AST]) -> set[str]:
    """Source of compared operands, and of `x` for `x.abs()` / `torch.abs(x)`."""
    texts = set()
    for node in nodes:
        texts.add(ast.unparse(node))
        if isinstance(node, ast.Call) and _ast_terminal(node.func) == "abs":
            texts.update(ast.unparse(n) for n in [*node.args, *([node.func.value] if isinstance(node.func, ast.Attribute) else [])])
    return texts


def _ast_argument_texts(nodes: list[ast.AST]) -> set[str]:
    """Source of unsafe ops' arguments, and of `x` for `-x`, `x.neg()`, `x.clamp(...)`."""
    texts = set()
    for node in nodes:
        texts.add(ast.unparse(node))
        if isinstance(node, ast.UnaryOp):
            texts.add(ast.unparse(node.operand))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and (node.func.attr == "neg" or node.func.attr in CLAMPS):
            texts.add(ast.unparse(node.func.value))
    return texts


def _where_parts(module: ParsedModule, call: cst.Call) -> tuple[cst.BaseExpression, cst.BaseExpression, cst.BaseExpression] | None:
    """(cond, value where true, value where false) of `torch.where(c, a, b)` or `a.where(c, b)`."""
    args = [a for a in call.args if a.keyword is None and not a.star]
    if len(args) != len(call.args):
        return None
    qualified = module.qualified_name(call.func) or ""
    if qualified == "torch.where":
        return (args[0].value, args[1].value, args[2].value) if len(args) == 3 else None
    if qualified.startswith(("np.", "numpy.", "jnp.", "jax.")) or len(args) != 2:
        return None
    return args[0].value, call.func.value, args[1].value


def _unsafe_where(module: ParsedModule, call: cst.Call, condition, when_true, when_false) -> UnsafeWhere | None:
    guard = _guard(module, condition)
    if guard is None:
        return None
    target = normalized_code(guard.variable)
    for branch, unselected in ((when_true, _complement(guard.true_region)), (when_false, guard.true_region)):
        branch_value = single_assignment(module, branch) if isinstance(branch, cst.Name) else branch
        for operation, argument, kind in _unsafe_operations(branch_value):
            sign = _sign_of(argument, target)
            if sign is None:
                continue
            region = unselected if sign > 0 else _negated(unselected)
            if _bad(kind, region) and _guards_the_singular_point(kind, sign * guard.threshold):
                return UnsafeWhere(call, condition, when_true, when_false, guard.variable, operation, kind, guard.threshold)
    return None


def _guards_the_singular_point(kind: str, threshold: float) -> bool:
    points = SINGULAR_POINTS.get(kind)
    return points is None or any(abs(abs(threshold) - abs(point)) <= NEAR and (point == 0 or threshold * point > 0) for point in points)


def _guard(module: ParsedModule, condition: cst.BaseExpression) -> Guard | None:
    condition = single_assignment(module, condition)
    negate = False
    while isinstance(condition, cst.UnaryOperation) and isinstance(condition.operator, (cst.BitInvert, cst.Not)):
        negate = not negate
        condition = condition.expression
    compared = _comparison(module, condition)
    if compared is None:
        return None
    left, operator, right = compared
    if _number(right) is None and _number(left) is not None:
        left, operator, right = right, FLIPPED[operator], left
    threshold = _number(right)
    if threshold is None:
        if not _threshold_like(right):
            return None
        threshold = UNKNOWN_THRESHOLD
    variable, absolute = _absolute_of(module, left)
    region = _region(operator, threshold)
    if absolute:  # |v| in region: v in region or in its mirror, both cut to v's own sign
        region = _absolute_region(region)
    if negate:
        region = _complement(region)
    return Guard(variable, region, threshold)


def _absolute_region(region: list[Interval]) -> list[Interval]:
    positive = []
    for low, high, low_closed, high_closed in region:
        if high < 0 or (high == 0 and not high_closed):
            continue
        if low < 0 or (low == 0 and not low_closed):
            low, low_closed = 0.0, True
        positive.append((low, high, low_closed, high_closed))
    mirrored = [(-high, -low, high_closed, low_closed) for low, high, low_closed, high_closed in positive]
    return sorted(mirrored + positive)


def _comparison(module: ParsedModule, expr: cst.BaseExpression) -> tuple[cst.BaseExpression, str, cst.BaseExpression] | None:
    if isinstance(expr, cst.Comparison) and len(expr.comparisons) == 1:
        operator = OPERATORS.get(type(expr.comparisons[0].operator))
        return (expr.left, operator, expr.comparisons[0].comparator) if operator else None
    if isinstance(expr, cst.Call) and isinstance(expr.func, cst.Attribute) and expr.func.attr.value in COMPARISON_METHODS:
        operator = COMPARISON_METHODS[expr.func.attr.value]
        args = [a.value for a in expr.args if a.keyword is None]
        if (module.qualified_name(expr.func) or "").startswith("torch.") and len(args) == 2:
            return args[0], operator, args[1]
        if len(args) == 1:
            return expr.func.value, operator, args[0]
    return None


def _number(expr: cst.BaseExpression) -> float | None:
    negative = False
    while isinstance(expr, cst.UnaryOperation) and isinstance(expr.operator, (cst.Minus, cst.Plus)):
        negative ^= isinstance(expr.operator, cst.Minus)
        expr = expr.expression
    if isinstance(expr, (cst.Integer, cst.Float)):
        value = float(expr.evaluated_value)
        return -value if negative else value
    return None


def _threshold_like(expr: cst.BaseExpression) -> bool:
    """A name or attribute that reads as a small constant: `eps`, `self.threshold`, `EPS`, `tol`."""
    text = normalized_code(expr).lower()
    last = re.split(r"[.\[]", text)[-1]
    return any(word in last for word in ("eps", "tol", "thresh", "tiny", "min_value", "epsilon"))


def _absolute_of(module: ParsedModule, expr: cst.BaseExpression) -> tuple[cst.BaseExpression, bool]:
    """`x.abs()` / `torch.abs(x)` -> (x, True); anything else -> (expr, False)."""
    if isinstance(expr, cst.Call) and isinstance(expr.func, cst.Attribute) and expr.func.attr.value == "abs":
        args = [a.value for a in expr.args]
        if (module.qualified_name(expr.func) or "") == "torch.abs" and len(args) == 1:
            return args[0], True
        if not args:
            return expr.func.value, True
    return expr, False


def _unsafe_operations(branch: cst.BaseExpression) -> Iterator[tuple[cst.BaseExpression, cst.BaseExpression, str]]:
    """(operation, its argument, kind) for each unsafe op in a branch, not looking inside sanitizers
    (`clamp(min=eps)`, a nested `where`, `nan_to_num`)."""
    stack = [branch]
    while stack:
        node = stack.pop()
        if _sanitizes(node):
            continue
        found = _unsafe(node)
        if found is not None:
            yield (node, *found)
        stack.extend(child for child in children(node) if not isinstance(child, (cst.Lambda, cst.FunctionDef)))


def _sanitizes(node: cst.CSTNode) -> bool:
    if not (isinstance(node, cst.Call) and isinstance(node.func, cst.Attribute)):
        return False
    name = node.func.attr.value
    if name in ("where", "masked_fill", "nan_to_num", "maximum", "minimum", "fmax", "fmin"):
        return True
    # `x.clamp(min=0)` still puts 0 under a log or sqrt; any other bound keeps it away.
    return name in CLAMPS and not _zero_lower_bound(node)


def _zero_lower_bound(clamp: cst.Call) -> bool:
    """`x.clamp(min=0)`, `x.clamp(0, 1)`, `x.clamp_min(0.)`, `x.clip(0)`: the lower bound is 0."""
    name = clamp.func.attr.value
    if name.startswith("clamp_max"):
        return False
    for index, arg in enumerate(clamp.args):
        is_lower = arg.keyword.value == "min" if arg.keyword is not None else index == 0
        if is_lower and _number(arg.value) == 0.0:
            return True
    return False


def _unsafe(node: cst.CSTNode) -> tuple[cst.BaseExpression, str] | None:
    if isinstance(node, cst.Call) and isinstance(node.func, cst.Attribute):
        name = node.func.attr.value
        args = [a.value for a in node.args if a.keyword is None]
        receiver_is_module = isinstance(node.func.value, (cst.Name, cst.Attribute)) and normalized_code(node.func.value) in ("torch", "torch.special", "math")
        operand = args[0] if receiver_is_module and args else node.func.value if not receiver_is_module else None
        if operand is None:
            return None
        rest = args[1:] if receiver_is_module else args
        if name in UNSAFE_CALLS and not rest:
            return operand, UNSAFE_CALLS[name]
        if name == "pow" and len(rest) == 1:
            kind = _power_kind(rest[0])
            return (operand, kind) if kind else None
        if name in ("div", "true_divide", "divide") and receiver_is_module and len(args) >= 2:
            return args[1], "zero"
        if name in ("div", "true_divide", "divide") and not receiver_is_module and rest:
            return rest[0], "zero"
        return None
    if isinstance(node, cst.BinaryOperation):
        if isinstance(node.operator, cst.Divide):
            return node.right, "zero"
        if isinstance(node.operator, cst.Power):
            kind = _power_kind(node.right)
            return (node.left, kind) if kind else None
    return None


def _power_kind(exponent: cst.BaseExpression) -> str | None:
    value = _number(exponent)
    if value is None or (value >= 0 and value == int(value)):
        return None
    if value < 0:
        return "zero" if value == int(value) else "nonpositive"
    return "nonpositive" if value < 1 else "negative"


def _sign_of(argument: cst.BaseExpression, target: str) -> int | None:
    """1 when the op's argument is the guarded variable itself, -1 when it is its negation."""
    if normalized_code(argument) == target:
        return 1
    if isinstance(argument, cst.Call) and isinstance(argument.func, cst.Attribute) and argument.func.attr.value in CLAMPS:
        # `x.clamp(min=0)`: 0 stays under the op, exactly where its derivative is infinite
        if _zero_lower_bound(argument) and normalized_code(argument.func.value) == target:
            return 1
    if isinstance(argument, cst.UnaryOperation) and isinstance(argument.operator, cst.Minus) and normalized_code(argument.expression) == target:
        return -1
    if isinstance(argument, cst.Call) and isinstance(argument.func, cst.Attribute) and argument.func.attr.value == "neg" and not argument.args:
        return -1 if normalized_code(argument.func.value) == target else None
    return None


def _message(found: UnsafeWhere) -> str:
    op = " ".join(code_of(found.operation).split())
    v = " ".join(code_of(found.variable).split())
    return (
        f"`{op}` is evaluated for every element, selected or not, and its derivative is {WHAT[found.kind]}: "
        f"where the condition does not select it, torch.where's zero gradient times that inf gives a NaN "
        f"gradient for `{v}` although the output is finite; sanitize the input first (the double-where idiom: "
        f"the op on `torch.where(cond, {v}, <a safe value>)`), clamp it away from the singular point, or use "
        f"a library op (F.elu, F.softplus, torch.xlogy)"
    )
