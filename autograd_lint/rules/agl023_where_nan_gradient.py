"""AGL023 where-nan-gradient: `torch.where(x > 0, torch.log(x), 0)` evaluates log everywhere, and the
unselected side's infinite derivative times where's zero gradient is NaN."""

from __future__ import annotations

import ast
import bisect
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass

import libcst as cst

from ..core.diagnostic import Severity
from ..core.module import ParsedModule
from ..core.prefilter import (
    STATEMENT_FIELDS,
    TextCue,
    calls,
    number_literal,
    python_children,
    python_nodes,
    record_python_import,
    terminal_name,
)
from ..core.rule import Finding, NodeRule
from ..core.syntax import children, literal_number, normalized_code, short_code, walk
from ..facts.gradient_reach import (
    feeds_only_non_differentiable,
    gradient_disabled,
    holds_no_gradient,
    in_function_forward,
    in_operator_implementation,
)
from ..torch_api import COMPARISON_METHODS

INF = math.inf

# Unsafe op -> where its derivative is infinite or NaN, as a predicate on the set of argument values
# the unselected side takes ("zero": at 0; "nonpositive": at <= 0; "negative": < 0; "minus_one": at
# -1; "unit": |u| >= 1; "large": overflows for large u).
UNSAFE_CALLS = {
    "log": "zero",
    "log2": "zero",
    "log10": "zero",
    "log1p": "minus_one",
    "sqrt": "nonpositive",
    "rsqrt": "nonpositive",
    "reciprocal": "zero",
    "exp": "large",
    "expm1": "large",
    "exp2": "large",
    "acos": "unit",
    "asin": "unit",
    "arccos": "unit",
    "arcsin": "unit",
    "atanh": "unit",
    "arctanh": "unit",
}
# The op's derivative at those points.
DERIVATIVE = {
    "zero": "infinite",
    "nonpositive": "infinite or NaN",
    "negative": "NaN",
    "minus_one": "infinite",
    "unit": "infinite or NaN",
    "large": "infinite",
}
# The operator each of torch_api's COMPARISON_METHODS spells, for messages and the threshold's side.
OPERATOR_OF_METHOD = {
    "gt": ">",
    "ge": ">=",
    "lt": "<",
    "le": "<=",
    "greater": ">",
    "greater_equal": ">=",
    "less": "<",
    "less_equal": "<=",
    "eq": "==",
    "ne": "!=",
}
OPERATORS = {
    cst.GreaterThan: ">",
    cst.GreaterThanEqual: ">=",
    cst.LessThan: "<",
    cst.LessThanEqual: "<=",
    cst.Equal: "==",
    cst.NotEqual: "!=",
}
FLIPPED = {">": "<", ">=": "<=", "<": ">", "<=": ">=", "==": "==", "!=": "!="}
UNKNOWN_THRESHOLD = 1e-12  # `x > eps`, `x > self.threshold`: taken as a small non-negative number
# Where each kind's derivative starts to blow up. A condition whose threshold is one of these guards
# that very point (`x > 0` before a log); one elsewhere (`x < 3.75` choosing between two series) is a
# regime switch, and inputs may never reach the singular point. Overflow has no such point: it is
# flagged whatever the threshold.
SINGULAR_POINTS = {"zero": (0.0,), "nonpositive": (0.0,), "negative": (0.0,), "minus_one": (-1.0,), "unit": (-1.0, 1.0)}
NEAR = 1e-3  # `x.abs() < 1e-6` guards 0
CLAMPS = frozenset({"clamp", "clip", "clamp_min", "clamp_max", "clamp_", "clamp_min_"})
# What keeps an op's singular point from the values under it (`x.where(x > 0, 1.0)`, `x.nan_to_num()`):
# the rule does not look inside.
SANITIZERS = frozenset({"where", "masked_fill", "nan_to_num", "maximum", "minimum", "fmax", "fmin"})
_UNSAFE_WORDS = "|".join(sorted(UNSAFE_CALLS))
SELECTIONS = frozenset({"where", "masked_fill", "masked_fill_"})
UNSAFE_OP = TextCue(
    "an unsafe op, a division or a power", patterns=(re.compile(r"\b(?:" + _UNSAFE_WORDS + r"|pow)\s*\(|/|\*\*"),)
)


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
    """`comparison` (negated or not) compares `variable` (or its absolute value) with a threshold."""

    variable: cst.BaseExpression
    true_region: list[Interval]
    threshold: float
    comparison: cst.BaseExpression
    negated: bool


@dataclass(frozen=True)
class Selection:
    """`torch.where(condition, when_true, when_false)`, `when_true.where(condition, when_false)` or
    `when_false.masked_fill(condition, when_true)`: each selects `when_true` where `condition` holds
    and gives the other side a zero gradient there."""

    call: cst.Call
    condition: cst.BaseExpression
    when_true: cst.BaseExpression
    when_false: cst.BaseExpression


@dataclass(frozen=True)
class UnsafeWhere:
    selection: Selection
    variable: cst.BaseExpression
    operation: cst.BaseExpression  # the unsafe call, division or power
    kind: str
    sign: int  # 1: the op's argument is the variable (or a positive multiple of it); -1: its negation
    guard: Guard
    in_true_branch: bool  # whether the op sits in `when_true`
    inner: cst.BaseExpression | None  # the op inside a helper function that `operation` calls


class WhereNanGradient(NodeRule[UnsafeWhere]):
    code = "AGL023"
    name = "where-nan-gradient"
    severity = Severity.WARNING
    summary = "torch.where selects around an op whose derivative is inf/NaN on the unselected side: NaN gradients"

    requires = (calls(*SELECTIONS), UNSAFE_OP)
    node_types = (cst.Call,)

    @classmethod
    def candidate(cls, tree: ast.AST) -> bool:
        """A selection call (`where`, `masked_fill`) whose arguments, with the values of the locals
        they name, compare an operand (up to `abs`) that is also the argument of an unsafe op there
        (up to `-`, a scale, a shape op and a clamp), or of a module function's that applies one. The
        rule finds the guard in the condition and the op in a branch through one function's locals,
        so a file whose `where`s and unsafe ops are apart (most test and codegen modules) is never
        parsed with libcst for this rule."""
        return _any_selection_may_report(tree)

    def check_node(self, node: cst.CSTNode, module: ParsedModule) -> Iterator[Finding[UnsafeWhere]]:
        if not isinstance(node, cst.Call) or _terminal_name(node.func) not in SELECTIONS:
            return
        selection = _selection(module, node)
        if selection is None:
            return
        found = _unsafe_where(module, selection)
        if found is not None and not _no_gradient_reaches(module, found):
            yield Finding(found.operation, *_message(found), subject=found)


def _terminal_name(func: cst.BaseExpression) -> str | None:
    return func.attr.value if isinstance(func, cst.Attribute) else func.value if isinstance(func, cst.Name) else None


def _no_gradient_reaches(module: ParsedModule, found: UnsafeWhere) -> bool:
    """The NaN is made in backward, when a gradient (even a zero one) flows through the selection
    into the op: not when the code runs with recording off, in an optimizer step, in a registered
    operator's implementation or in a custom Function's forward (autograd applies their own
    gradient formula), when nothing the op reads can require grad (counts from integer indices, a
    grid from `linspace`), or when the selection's result only feeds non-differentiable uses (an
    argmax, a comparison, a new `nn.Parameter`). An in-place `masked_fill_` result lives on in its
    receiver, whose uses are not followed."""
    call = found.selection.call
    if gradient_disabled(module, call) or in_operator_implementation(module, call) or in_function_forward(module, call):
        return True
    if holds_no_gradient(module, found.operation):
        return True
    # a selection's func is a Name or an Attribute: its terminal name is never None
    return not (_terminal_name(call.func) or "").endswith("_") and feeds_only_non_differentiable(module, call)


_DEFINITIONS = (ast.FunctionDef, ast.AsyncFunctionDef)


def _any_selection_may_report(tree: ast.AST) -> bool:
    """The selections are found in one walk of the tree's nodes; what the rule reads around them (the locals of
    the function each one is in, the imports, the module's functions) in a walk of its statements, and the
    module functions' unsafe ops only for those a selection's branch calls."""
    selections = [n for n in python_nodes(tree) if isinstance(n, ast.Call) and terminal_name(n.func) in SELECTIONS]
    if not selections:
        return False
    scopes = _Scopes(tree)
    helpers = _UnsafeHelpers(scopes.module_functions)
    return any(
        _selects(call, scopes) and _selection_may_report(call, scopes.locals_around(call), helpers)
        for call in selections
    )


class _Scopes:
    """From a tree's statements: each function's single-name assignments, the imports, the module's functions,
    and where each function's body lies (a node inside it and in no function nested there is one of its
    locals' readers)."""

    def __init__(self, tree: ast.AST):
        self.assignments: dict[ast.AST | None, dict[str, list[ast.expr]]] = {}
        self.imported: dict[str, set[str]] = {}  # local name -> the dotted names it may stand for
        self.imported_relatively: set[str] = set()
        self.module_functions: dict[str, list[ast.AST]] = {}
        bodies: list[tuple[tuple[int, int], tuple[int, int], ast.AST]] = []
        top_level = {id(statement) for statement in getattr(tree, "body", ())}
        stack: list[tuple[ast.AST, ast.AST | None]] = [(tree, None)]
        while stack:
            node, function = stack.pop()
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                self.assignments.setdefault(function, {}).setdefault(node.targets[0].id, []).append(node.value)
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                record_python_import(node, self.imported, self.imported_relatively)
            elif isinstance(node, _DEFINITIONS):
                if id(node) in top_level:
                    self.module_functions.setdefault(node.name, []).append(node)
                last = node.body[-1]
                bodies.append((_start(node.body[0]), (last.end_lineno or 0, last.end_col_offset or 0), node))
                function = node  # its body; its decorators, defaults and annotations are the enclosing scope's
            for field in STATEMENT_FIELDS:
                value = getattr(node, field, None)
                if type(value) is list:
                    stack.extend((child, function) for child in reversed(value))
        bodies.sort(key=lambda body: body[0])
        self._bodies = bodies
        self._starts = [body[0] for body in bodies]

    def locals_around(self, node: ast.expr) -> dict[str, list[ast.expr]]:
        """The assignments of the innermost function whose body holds `node`; none at module level (the rule
        follows a function's locals only)."""
        position = (node.lineno, node.col_offset)
        for index in range(bisect.bisect_right(self._starts, position) - 1, -1, -1):
            _, end, function = self._bodies[index]
            if position <= end:  # bodies nest or are apart: the latest one that holds it is the innermost
                return self.assignments.get(function, {})
        return {}


def _start(statement: ast.stmt) -> tuple[int, int]:
    """Where a statement's text starts: at its first decorator, for a decorated definition."""
    decorators = getattr(statement, "decorator_list", None)
    first = decorators[0] if decorators else statement
    return (first.lineno, first.col_offset)


class _UnsafeHelpers:
    """The kinds of unsafe op a module function applies, itself or through the module functions it calls by name
    (`def safe_log(x): return _log(x)`): read for the functions a selection's branch calls, once each."""

    def __init__(self, functions: dict[str, list[ast.AST]]):
        self._functions = functions
        self._own: dict[str, tuple[set[str], set[str]]] = {}  # name -> (kinds of its own ops, what it calls)
        self._kinds: dict[str, set[str]] = {}

    def kinds(self, name: str) -> set[str]:
        found = self._kinds.get(name)
        if found is None:
            found, reached, pending = set(), set(), [name]
            while pending:
                current = pending.pop()
                if current in reached or current not in self._functions:
                    continue
                reached.add(current)
                kinds, called = self._own_facts(current)
                found |= kinds
                pending.extend(called)
            self._kinds[name] = found
        return found

    def _own_facts(self, name: str) -> tuple[set[str], set[str]]:
        facts = self._own.get(name)
        if facts is None:
            kinds: set[str] = set()
            called: set[str] = set()
            for function in self._functions[name]:
                for node in python_nodes(function):
                    kinds.update(kind for _, kind in _ast_unsafe(node))
                    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                        called.add(node.func.id)
            facts = self._own[name] = (kinds, called)
        return facts


def _selects(call: ast.Call, scopes: _Scopes) -> bool:
    """Whether a call may be one of `_selection`'s: every parameter given, nothing unpacked; the three-argument
    form is torch's function (`torch.where`, `th.where`, `where` imported from torch), the two-argument
    form a tensor's method."""
    if any(isinstance(a, ast.Starred) for a in call.args) or any(k.arg is None for k in call.keywords):
        return False
    count = len(call.args) + len(call.keywords)
    func = call.func
    if isinstance(func, ast.Name):
        return count == 3 and func.id in ("where", "masked_fill")
    if not isinstance(func, ast.Attribute) or _is_array_library_call(func):
        return False
    if count == 2:
        return True
    # A receiver imported as some other module (`tl.where(c, a, b)` with `import triton.language as tl`, or
    # from the file's own package) is not torch; one the file does not import may still be, through the whole
    # file's imports.
    receiver = func.value
    name = receiver.id if isinstance(receiver, ast.Name) else None
    return (
        count == 3
        and func.attr in ("where", "masked_fill")
        and name is not None
        and (
            (name not in scopes.imported and name not in scopes.imported_relatively)
            or "torch" in scopes.imported.get(name, ())
            or name in scopes.assignments.get(None, {})  # `th = torch`
        )
    )


def _selection_may_report(call: ast.Call, assigned: dict[str, list[ast.expr]], helpers: _UnsafeHelpers) -> bool:
    """Whether a guard in what may be the selection's condition compares an operand (up to `abs` and the
    locals it names) that an unsafe op in what may be one of its branches applies to (up to `-`, a scale, a
    shape op and a clamp), at a threshold that guards the op's singular point. Any argument may be the
    condition and any argument or the receiver a branch: keywords and forms are sorted out by the rule."""
    arguments = [*call.args, *(k.value for k in call.keywords)]
    receiver = [call.func.value] if isinstance(call.func, ast.Attribute) else []
    guards = [
        (_ast_guarded_texts(operand, assigned), threshold) for operand, threshold in _ast_guards(arguments, assigned)
    ]
    if not guards:
        return False
    for operand, kind in _ast_branch_unsafe([*arguments, *receiver], assigned, helpers):
        texts = _ast_argument_texts([operand])
        for guarded, threshold in guards:
            if (_guards_the_singular_point(kind, threshold) or _guards_the_singular_point(kind, -threshold)) and (
                not guarded.isdisjoint(texts)
            ):
                return True
    return False


def _ast_guards(conditions: list[ast.expr], assigned: dict[str, list[ast.expr]]) -> list[tuple[ast.expr, float]]:
    """(compared operand, threshold) of each comparison `_guards` may find in a condition: through the locals
    it names, element-keeping reshapes and casts, negations, `&`, `|`, `logical_and` and `logical_or`."""
    pairs: list[tuple[ast.expr, ast.expr]] = []
    stack: list[ast.AST] = list(conditions)
    seen: set[int] = set()
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, ast.Name):
            stack.extend(assigned.get(node.id, ()))
        elif isinstance(node, ast.Subscript):
            stack.append(node.value)
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.Invert, ast.Not)):
            stack.append(node.operand)
        elif isinstance(node, ast.BinOp) and isinstance(node.op, (ast.BitAnd, ast.BitOr)):
            stack += [node.left, node.right]
        elif isinstance(node, ast.Compare) and len(node.ops) == 1 and isinstance(node.ops[0], _AST_OPERATORS):
            pairs.append((node.left, node.comparators[0]))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            name, receiver = node.func.attr, node.func.value
            positional = [a.value if isinstance(a, ast.Starred) else a for a in node.args]
            if name in VALUE_PRESERVING or name == "bool" or name in ("logical_and", "logical_or"):
                stack += [receiver, *positional]
            elif name in COMPARISON_METHODS and len(positional) == 2:  # `torch.gt(x, 0)`
                pairs.append((positional[0], positional[1]))
            elif name in COMPARISON_METHODS and len(positional) == 1:  # `x.gt(0)`
                pairs.append((receiver, positional[0]))
    guards = []
    for left, right in pairs:  # as `_guard` reads them
        threshold, other = number_literal(right), number_literal(left)
        if threshold is None and other is not None:
            left, right, threshold = right, left, other
        if threshold is None and _threshold_like_text("".join(ast.unparse(right).split())):
            threshold = UNKNOWN_THRESHOLD
        if threshold is not None:
            guards.append((left, threshold))
    return guards


def _ast_guarded_texts(operand: ast.expr, assigned: dict[str, list[ast.expr]]) -> set[str]:
    """Source of a guarded operand, of what `abs` and reshapes wrap in it, and of the values of the locals it
    names (`_absolute_of`, `_unwrapping`)."""
    texts = _ast_operand_texts([operand])
    pending = list(texts)
    while pending:
        for text in _ast_operand_texts(assigned.get(pending.pop(), [])):
            if text not in texts:
                texts.add(text)
                pending.append(text)
    return texts


def _ast_branch_unsafe(
    branches: list[ast.expr], assigned: dict[str, list[ast.expr]], helpers: _UnsafeHelpers
) -> list[tuple[ast.expr, str]]:
    """(argument, kind) of each unsafe op `_unsafe_operations` may find in a branch: through the locals it
    names, not into lambdas nor sanitizers; a call of a module function that applies one (`safe_log(x)`)
    may apply it to any of the call's arguments."""
    found: list[tuple[ast.expr, str]] = []
    stack: list[ast.AST] = list(branches)
    seen: set[int] = set()
    while stack:
        node = stack.pop()
        if id(node) in seen or isinstance(node, ast.Lambda):
            continue
        seen.add(id(node))
        if isinstance(node, ast.Name):
            stack.extend(assigned.get(node.id, ()))
            continue
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in SANITIZERS:
            continue
        found += _ast_unsafe(node)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and (kinds := helpers.kinds(node.func.id)):
            arguments = [*node.args, *(k.value for k in node.keywords)]
            found += [(argument, kind) for argument in arguments for kind in kinds]
        stack.extend(python_children(node))
    return found


def _ast_unsafe(node: ast.AST) -> list[tuple[ast.expr, str]]:
    """(argument, kind) of what `_unsafe` may find in a node. Without the imports, `a.log()`'s receiver may be a
    namespace or a tensor: both readings are taken (`torch.log(x)`, `x.log()`)."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
        return [(node.right, "zero")]
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow):
        kind = _power_kind(number_literal(node.right))
        return [(node.left, kind)] if kind else []
    if not isinstance(node, ast.Call) or not isinstance(node.func, (ast.Name, ast.Attribute)):
        return []
    positional = [a.value if isinstance(a, ast.Starred) else a for a in node.args]
    readings = [(positional[0], positional[1:])] if positional else []  # a function's
    if isinstance(node.func, ast.Attribute):
        readings.append((node.func.value, positional))  # a method's
    name = terminal_name(node.func)
    found = []
    for operand, rest in readings:
        if name in UNSAFE_CALLS and not rest:
            found.append((operand, UNSAFE_CALLS[name]))
        elif name == "pow" and len(rest) == 1 and (kind := _power_kind(number_literal(rest[0]))):
            found.append((operand, kind))
        elif name in DIVISIONS and rest:
            found.append((rest[0], "zero"))
    return found


_AST_OPERATORS = (ast.Gt, ast.GtE, ast.Lt, ast.LtE, ast.Eq, ast.NotEq)


def _is_array_library_call(func: ast.expr) -> bool:
    """`np.where(...)`, `numpy.where(...)`: not torch, no autograd (the rule skips them too)."""
    return (
        isinstance(func, ast.Attribute)
        and isinstance(func.value, ast.Name)
        and func.value.id in ("np", "numpy", "jnp", "jax")
    )


def _ast_operand_texts(nodes: list[ast.expr]) -> set[str]:
    """Source of compared operands, and of `x` for `x.abs()` / `torch.abs(x)` and for what
    `_unwrapping` sees through (`n.unsqueeze(-1)`, `n[..., None]`, `n.float()`)."""
    texts = set()
    stack = list(nodes)
    while stack:
        node = stack.pop()
        texts.add(ast.unparse(node))
        if isinstance(node, ast.Call) and terminal_name(node.func) == "abs":
            stack.extend([*node.args, *([node.func.value] if isinstance(node.func, ast.Attribute) else [])])
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in VALUE_PRESERVING:
            stack.append(node.func.value)
        elif isinstance(node, ast.Subscript):
            stack.append(node.value)
    return texts


def _ast_argument_texts(nodes: list[ast.expr]) -> set[str]:
    """Source of unsafe ops' arguments, and of `x` for what `_guarded_sign` sees through: `-x`,
    `x.neg()`, `x.clamp(...)`, `beta * x`, `x / 2`, `x.unsqueeze(-1)`, `x[..., None]`."""
    texts = set()
    stack = list(nodes)
    while stack:
        node = stack.pop()
        texts.add(ast.unparse(node))
        if isinstance(node, ast.UnaryOp):
            stack.append(node.operand)
        elif isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Mult, ast.Div)):
            stack.extend([node.left, node.right])
        elif isinstance(node, ast.Subscript):
            stack.append(node.value)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and (node.func.attr in VALUE_PRESERVING or node.func.attr in CLAMPS or node.func.attr == "neg")
        ):
            stack.extend([node.func.value, *node.args[:1]])  # `x.clamp(0)`, `torch.clamp(x, 0)`
    return texts


# The parameters of each selection, in order; a method's receiver is its `input`.
SELECTION_PARAMETERS = {
    "torch.where": ("condition", "input", "other"),
    "torch.masked_fill": ("input", "mask", "value"),
    "where": ("condition", "other"),
    "masked_fill": ("mask", "value"),
    "masked_fill_": ("mask", "value"),
}


def _selection(module: ParsedModule, call: cst.Call) -> Selection | None:
    """`torch.where(c, a, b)` and `a.where(c, b)` select `a` where `c` holds; `b.masked_fill(c, a)`
    and `torch.masked_fill(b, c, a)` (also in place) do the same. Arguments may be keywords, and
    `where` may be imported from torch by name."""
    qualified = module.qualified_name(call.func) or ""
    if qualified in ("torch.where", "torch.masked_fill"):
        bound = _bind(call, SELECTION_PARAMETERS[qualified])
    elif isinstance(call.func, cst.Attribute) and not qualified.startswith(("torch.", "np.", "numpy.", "jnp.", "jax.")):
        bound = _bind(call, SELECTION_PARAMETERS[call.func.attr.value])
        if bound is not None:
            bound["input"] = call.func.value
    else:
        return None
    if bound is None:
        return None
    if "condition" in bound:
        return Selection(call, bound["condition"], bound["input"], bound["other"])
    return Selection(call, bound["mask"], bound["value"], bound["input"])


def _bind(call: cst.Call, parameters: tuple[str, ...]) -> dict[str, cst.BaseExpression] | None:
    """Parameter name -> argument, when every parameter is given once and nothing is starred."""
    if any(a.star for a in call.args):
        return None
    bound = {name: a.value for name, a in zip(parameters, (a for a in call.args if a.keyword is None))}
    for arg in call.args:
        if arg.keyword is not None:
            if arg.keyword.value in bound or arg.keyword.value not in parameters:
                return None
            bound[arg.keyword.value] = arg.value
    return bound if len(bound) == len(parameters) and len(call.args) == len(parameters) else None


def _selection_name(call: cst.Call) -> str:
    name = _terminal_name(call.func) or ""  # a selection's func is a Name or an Attribute
    return "masked_fill" if name.startswith("masked_fill") else "torch.where"


def _unsafe_where(module: ParsedModule, selection: Selection) -> UnsafeWhere | None:
    for guard, judged_branches in _guards(module, selection.condition, negate=False):
        # `bx = beta * x; torch.where(bx > t, x, torch.exp(beta * x))`: the local or its value;
        # `n.squeeze(-1) > 0` guards `n`
        targets = {normalized_code(v): v for v in _unwrapping(module, guard.variable)}
        branches = {
            True: (selection.when_true, _complement(guard.true_region)),
            False: (selection.when_false, guard.true_region),
        }
        for in_true_branch in judged_branches:
            branch, unselected = branches[in_true_branch]
            for operation, argument, kind, inner in _unsafe_operations(module, branch):
                sign, variable = next(
                    (
                        (sign, v)
                        for target, v in targets.items()
                        if (sign := _guarded_sign(argument, target)) is not None
                    ),
                    (None, None),
                )
                if sign is None or variable is None:
                    continue
                region = unselected if sign > 0 else _negated(unselected)
                if _bad(kind, region) and _guards_the_singular_point(kind, sign * guard.threshold):
                    return UnsafeWhere(selection, variable, operation, kind, sign, guard, in_true_branch, inner)
    return None


def _guards_the_singular_point(kind: str, threshold: float) -> bool:
    points = SINGULAR_POINTS.get(kind)
    return points is None or any(
        abs(abs(threshold) - abs(point)) <= NEAR and (point == 0 or threshold * point > 0) for point in points
    )


BOTH = (True, False)


def _guards(
    module: ParsedModule, condition: cst.BaseExpression, negate: bool, depth: int = 3
) -> Iterator[tuple[Guard, tuple[bool, ...]]]:
    """Each comparison in the condition that guards a variable, with the branches it tells about.
    A comparison alone tells about both. In `a & b` a false `a` makes the whole condition false, so
    where `a` fails the true branch is unselected: `a` tells about the true branch only (and in
    `a | b` about the false branch only). A negation swaps them."""
    condition = _unwrapped(module, condition)
    while isinstance(condition, cst.UnaryOperation) and isinstance(condition.operator, (cst.BitInvert, cst.Not)):
        negate = not negate
        condition = _unwrapped(module, condition.expression)
    operands = _logical_operands(module, condition)
    if operands is not None and depth > 0:
        is_and, parts = operands
        branch = (True,) if is_and != negate else (False,)
        for part in parts:
            for guard, judged in _guards(module, part, negate, depth - 1):
                yield guard, tuple(b for b in judged if b in branch)
        return
    single = _guard(module, condition, negate)
    if single is not None:
        yield single, BOTH


def _unwrapped(module: ParsedModule, expr: cst.BaseExpression) -> cst.BaseExpression:
    return _unwrapping(module, expr)[-1]


def _unwrapping(module: ParsedModule, expr: cst.BaseExpression, depth: int = 6) -> list[cst.BaseExpression]:
    """`expr`, then the values behind it: through a local name bound once and through reshapes and
    casts that keep every element (`(n > 0).unsqueeze(-1)`, `mask[..., None]`, `keep.bool()`)."""
    chain = [expr]
    for _ in range(depth):
        inner = module.single_assignment(expr)
        if (
            isinstance(inner, cst.Call)
            and isinstance(inner.func, cst.Attribute)
            and (inner.func.attr.value in VALUE_PRESERVING or inner.func.attr.value == "bool")
        ):
            inner = inner.func.value
        elif isinstance(inner, cst.Subscript) and all(_keeps_elements(element.slice) for element in inner.slice):
            inner = inner.value
        if inner is expr:
            break
        chain.append(inner)
        expr = inner
    return chain


def _logical_operands(module: ParsedModule, expr: cst.BaseExpression) -> tuple[bool, list[cst.BaseExpression]] | None:
    """(is a conjunction, operands) of `a & b`, `a | b`, `torch.logical_and(a, b)`, `a.logical_or(b)`."""
    if isinstance(expr, cst.BinaryOperation) and isinstance(expr.operator, (cst.BitAnd, cst.BitOr)):
        return isinstance(expr.operator, cst.BitAnd), [expr.left, expr.right]
    if (
        isinstance(expr, cst.Call)
        and isinstance(expr.func, cst.Attribute)
        and expr.func.attr.value in ("logical_and", "logical_or")
    ):
        args = [a.value for a in expr.args if a.keyword is None]
        if (module.qualified_name(expr.func) or "").startswith("torch."):
            parts = args if len(args) == 2 else None
        else:
            parts = [expr.func.value, *args] if len(args) == 1 else None
        return (expr.func.attr.value == "logical_and", parts) if parts else None
    return None


def _guard(module: ParsedModule, condition: cst.BaseExpression, negate: bool) -> Guard | None:
    compared = _comparison(module, condition)
    if compared is None:
        return None
    left, operator, right = compared
    if literal_number(right) is None and literal_number(left) is not None:
        left, operator, right = right, FLIPPED[operator], left
    threshold = literal_number(right)
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
    return Guard(variable, region, threshold, condition, negate)


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


def _comparison(
    module: ParsedModule, expr: cst.BaseExpression
) -> tuple[cst.BaseExpression, str, cst.BaseExpression] | None:
    if isinstance(expr, cst.Comparison) and len(expr.comparisons) == 1:
        operator = OPERATORS.get(type(expr.comparisons[0].operator))
        return (expr.left, operator, expr.comparisons[0].comparator) if operator else None
    if (
        isinstance(expr, cst.Call)
        and isinstance(expr.func, cst.Attribute)
        and expr.func.attr.value in COMPARISON_METHODS
    ):
        operator = OPERATOR_OF_METHOD[expr.func.attr.value]
        args = [a.value for a in expr.args if a.keyword is None]
        if (module.qualified_name(expr.func) or "").startswith("torch.") and len(args) == 2:
            return args[0], operator, args[1]
        if len(args) == 1:
            return expr.func.value, operator, args[0]
    return None


def _threshold_like(expr: cst.BaseExpression) -> bool:
    return _threshold_like_text(normalized_code(expr))


def _threshold_like_text(code: str) -> bool:
    """A name or attribute that reads as a small constant: `eps`, `self.threshold`, `EPS`, `tol`."""
    last = re.split(r"[.\\[]", code.lower())[-1]
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


FOLLOWED_LOCALS = 3  # `d = torch.sqrt(d2); scaled = 2 * d; torch.where(d2 > 0, scaled, 0)`


def _unsafe_operations(
    module: ParsedModule, branch: cst.BaseExpression, depth: int = 0
) -> Iterator[tuple[cst.BaseExpression, cst.BaseExpression, str, cst.BaseExpression | None]]:
    """(operation, its argument, kind, the op inside a helper or None) for each unsafe op in a
    branch, in the locals it is computed from (names the function binds once, a few assignments
    deep) or in a helper function of this module that it calls, not looking inside sanitizers
    (`clamp(min=eps)`, a nested `where`, `nan_to_num`)."""
    stack: list[tuple[cst.CSTNode, int]] = [(branch, depth)]
    seen: set[cst.CSTNode] = set()
    while stack:
        node, level = stack.pop()
        if node in seen or _sanitizes(node):
            continue
        seen.add(node)
        if isinstance(node, cst.Name):
            value = module.single_assignment(node)
            if value is not node and level < FOLLOWED_LOCALS:
                stack.append((value, level + 1))
            continue
        if isinstance(node, cst.BaseExpression) and (found := _unsafe(module, node)) is not None:  # calls, `/`, `**`
            yield (node, *found, None)
        elif isinstance(node, cst.Call):
            for argument, kind, inner in _helper_unsafe(module, node, level):
                yield node, argument, kind, inner
        stack.extend((child, level) for child in children(node) if not isinstance(child, (cst.Lambda, cst.FunctionDef)))


def _sanitizes(node: cst.CSTNode) -> bool:
    if not (isinstance(node, cst.Call) and isinstance(node.func, cst.Attribute)):
        return False
    name = node.func.attr.value
    if name in SANITIZERS:
        return True
    # `x.clamp(min=0)` still puts 0 under a log or sqrt; any other bound keeps it away.
    return name in CLAMPS and not _zero_lower_bound(node)


def _clamp_operands(clamp: cst.Call) -> list[cst.Arg]:
    """The bound arguments of `x.clamp(lo, hi)` or `torch.clamp(x, lo, hi)`."""
    assert isinstance(clamp.func, cst.Attribute)  # callers match clamps by their attribute name
    receiver = normalized_code(clamp.func.value)
    return list(clamp.args[1:]) if receiver in ("torch", "th") else list(clamp.args)


def _clamped_value(clamp: cst.Call) -> cst.BaseExpression | None:
    assert isinstance(clamp.func, cst.Attribute)  # callers match clamps by their attribute name
    receiver = normalized_code(clamp.func.value)
    if receiver in ("torch", "th"):
        return clamp.args[0].value if clamp.args else None
    return clamp.func.value


def _zero_lower_bound(clamp: cst.Call) -> bool:
    """`x.clamp(min=0)`, `x.clamp(0, 1)`, `x.clamp_min(0.)`, `x.clip(0)`, `torch.clamp(x, 0)`: the lower bound is 0."""
    assert isinstance(clamp.func, cst.Attribute)  # callers match clamps by their attribute name
    name = clamp.func.attr.value
    if name.startswith("clamp_max"):
        return False
    for index, arg in enumerate(_clamp_operands(clamp)):
        is_lower = arg.keyword.value == "min" if arg.keyword is not None else index == 0
        if is_lower and literal_number(arg.value) == 0.0:
            return True
    return False


# Where unsafe functions live: `torch.log(x)`, `th.sqrt(x)` (an alias), `from torch import log`.
FUNCTION_NAMESPACES = frozenset({"torch", "torch.special", "math"})
DIVISIONS = frozenset({"div", "true_divide", "divide"})


def _unsafe(module: ParsedModule, node: cst.BaseExpression) -> tuple[cst.BaseExpression, str] | None:
    """(the argument whose singular point matters, kind) of an unsafe op: a call, a method, `/`, `**`."""
    if isinstance(node, cst.Call):
        args = [a.value for a in node.args if a.keyword is None]
        qualified = module.qualified_name(node.func) or ""
        namespace, _, name = qualified.rpartition(".")
        if namespace in FUNCTION_NAMESPACES and args:
            operand, rest = args[0], args[1:]  # `torch.log(x)`, `log(x)` imported from torch
        elif (
            isinstance(node.func, cst.Attribute)
            and (module.qualified_name(node.func.value) or "") not in FUNCTION_NAMESPACES
        ):
            name, operand, rest = node.func.attr.value, node.func.value, args  # `x.log()`
        else:
            return None
        if name in UNSAFE_CALLS and not rest:
            return operand, UNSAFE_CALLS[name]
        if name == "pow" and len(rest) == 1:
            kind = _power_kind(literal_number(rest[0]))
            return (operand, kind) if kind else None
        if name in DIVISIONS and rest:
            return rest[0], "zero"
        return None
    if isinstance(node, cst.BinaryOperation):
        if isinstance(node.operator, cst.Divide):
            return node.right, "zero"
        if isinstance(node.operator, cst.Power):
            kind = _power_kind(literal_number(node.right))
            return (node.left, kind) if kind else None
    return None


def _helper_unsafe(
    module: ParsedModule, call: cst.Call, depth: int
) -> Iterator[tuple[cst.BaseExpression, str, cst.BaseExpression]]:
    """(the call's argument, kind, the helper's op) for each unsafe op that a function of this
    module (`def safe_log(x): return torch.log(x)`) applies to one of its parameters and returns."""
    if not isinstance(call.func, cst.Name) or depth >= FOLLOWED_LOCALS or any(a.star for a in call.args):
        return
    helper = next(
        (s for s in module.tree.body if isinstance(s, cst.FunctionDef) and s.name.value == call.func.value), None
    )
    if helper is None:
        return
    positional = [p.name.value for p in (*helper.params.posonly_params, *helper.params.params)]
    arguments = {name: a.value for name, a in zip(positional, (a for a in call.args if a.keyword is None))}
    arguments.update({a.keyword.value: a.value for a in call.args if a.keyword is not None})
    for statement in walk(helper.body, into_functions=False):
        if not isinstance(statement, cst.Return) or statement.value is None:
            continue
        for operation, argument, kind, _ in _unsafe_operations(module, statement.value, depth + 1):
            for name, value in arguments.items():
                sign = _guarded_sign(argument, name)
                if sign:
                    yield (value if sign > 0 else cst.UnaryOperation(cst.Minus(), value)), kind, operation


def _power_kind(value: float | None) -> str | None:
    """The kind of `x ** value`, for an exponent that is a number literal; None for a safe or unknown one."""
    if value is None or (value >= 0 and value == int(value)):
        return None
    if value < 0:
        return "zero" if value == int(value) else "nonpositive"
    return "nonpositive" if value < 1 else "negative"


# Methods that keep every element's value (and sign): the op still sees the guarded variable.
VALUE_PRESERVING = frozenset(
    {
        "unsqueeze",
        "squeeze",
        "view",
        "reshape",
        "expand",
        "expand_as",
        "view_as",
        "reshape_as",
        "flatten",
        "contiguous",
        "float",
        "double",
        "half",
        "bfloat16",
        "to",
        "type_as",
    }
)


def _guarded_sign(argument: cst.BaseExpression, target: str, depth: int = 4) -> int | None:
    """1 when the op's argument is the guarded variable, up to value-preserving reshapes and casts
    and a scale (`beta * x`, `x / 2`: the singular point stays at 0, overflow stays on the same
    side for a positive scale; a scale that is not a literal is taken as positive, as `beta` and
    `alpha` are); -1 when it is its negation; None otherwise."""
    if normalized_code(argument) == target:
        return 1
    if depth == 0:
        return None
    if isinstance(argument, cst.Call) and isinstance(argument.func, cst.Attribute):
        name = argument.func.attr.value
        if name in CLAMPS:
            # `x.clamp(min=0)`: 0 stays under the op, exactly where its derivative is infinite
            clamped = _clamped_value(argument)
            return (
                _guarded_sign(clamped, target, depth - 1)
                if clamped is not None and _zero_lower_bound(argument)
                else None
            )
        if name == "neg" and not argument.args:
            inner = _guarded_sign(argument.func.value, target, depth - 1)
            return -inner if inner else None
        if name in VALUE_PRESERVING and normalized_code(argument.func.value) not in ("torch", "th"):
            return _guarded_sign(argument.func.value, target, depth - 1)
        return None
    if isinstance(argument, cst.Subscript) and all(_keeps_elements(element.slice) for element in argument.slice):
        return _guarded_sign(argument.value, target, depth - 1)
    if isinstance(argument, cst.UnaryOperation) and isinstance(argument.operator, cst.Minus):
        inner = _guarded_sign(argument.expression, target, depth - 1)
        return -inner if inner else None
    if isinstance(argument, cst.BinaryOperation) and isinstance(argument.operator, (cst.Multiply, cst.Divide)):
        operands = [(argument.left, argument.right)] + (
            [(argument.right, argument.left)] if isinstance(argument.operator, cst.Multiply) else []
        )
        for scale, value in ((right, left) for left, right in operands):
            inner = _guarded_sign(value, target, depth - 1)
            factor = _scale_sign(scale)
            if inner and factor:
                return inner * factor
    return None


def _keeps_elements(index: cst.BaseSlice) -> bool:
    """`[..., None]`, `[:, None]`: a new axis or a full slice, every element kept."""
    if isinstance(index, cst.Slice):
        return index.lower is None and index.upper is None and index.step is None
    assert isinstance(index, cst.Index)  # a BaseSlice is an Index or a Slice
    value = index.value
    return isinstance(value, cst.Ellipsis) or (isinstance(value, cst.Name) and value.value == "None")


def _scale_sign(scale: cst.BaseExpression) -> int | None:
    value = literal_number(scale)
    if value is not None:
        return None if value == 0 else (1 if value > 0 else -1)
    return 1 if isinstance(scale, (cst.Name, cst.Attribute)) else None


# Where the gradient turns NaN, for the message: the variable's values, by kind and by the sign of
# the op's argument.
NAN_AT = {
    ("zero", 1): "`{v} == 0`",
    ("zero", -1): "`{v} == 0`",
    ("nonpositive", 1): "`{v} <= 0`",
    ("nonpositive", -1): "`{v} >= 0`",
    ("negative", 1): "`{v} < 0`",
    ("negative", -1): "`{v} > 0`",
    ("minus_one", 1): "`{v} == -1`",
    ("minus_one", -1): "`{v} == 1`",
    ("unit", 1): "`|{v}| >= 1`",
    ("unit", -1): "`|{v}| >= 1`",
    ("large", 1): "large `{v}` (exp overflows above 88 in float32, 11 in float16)",
    ("large", -1): "very negative `{v}` (exp overflows below -88 in float32, -11 in float16)",
}
# What to put in the unselected elements before the op so that its derivative there is finite.
SAFE_VALUE = {"zero": "1.0", "nonpositive": "1.0", "negative": "1.0", "minus_one": "0.0", "unit": "0.0", "large": "0.0"}


def _message(found: UnsafeWhere) -> tuple[str, str]:
    selection = found.selection
    op = f"`{short_code(found.operation)}`"
    if found.inner is not None:
        op += f" (which computes `{short_code(found.inner)}`)"
    v = short_code(found.variable)
    condition = short_code(selection.condition)
    at = NAN_AT[(found.kind, found.sign)].format(v=v)
    what = _selection_name(selection.call)
    safe = SAFE_VALUE[found.kind]
    safe_input = (
        f"torch.where({condition}, {v}, {safe})" if found.in_true_branch else f"torch.where({condition}, {safe}, {v})"
    )
    inputs = f"`{v}` gets"
    if (
        isinstance(found.operation, cst.BinaryOperation)
        and isinstance(found.operation.operator, cst.Divide)
        and normalized_code(found.operation.left) != normalized_code(found.variable)
    ):
        inputs = f"`{v}` and the numerator `{short_code(found.operation.left)}` get"
    library = " or F.elu/F.softplus" if found.kind == "large" else ""
    at_briefly = NAN_AT[(found.kind, found.sign)].split(" (")[0].format(v=short_code(found.variable, 15))
    return (
        f"`{short_code(found.operation, 25)}` has a NaN gradient at {at_briefly}, where {what} discards it",
        f"{op} is evaluated on every element, also where {what} does not select it: at {at} its derivative "
        f"is {DERIVATIVE[found.kind]}, and {what}'s zero gradient times it is NaN, so {inputs} "
        f"a NaN gradient although the output is finite (whenever a gradient flows to `{v}`). Compute the op on "
        f"a safe input, `{safe_input}` (the double-where), or clamp it away from the singular point{library}.",
    )
