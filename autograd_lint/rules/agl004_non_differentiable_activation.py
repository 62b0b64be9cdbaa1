"""AGL004 non-differentiable-activation: a step, sign, rounding or integer cast in the path to the output.

Such ops have a gradient of exactly zero almost everywhere, or cut the graph, so whatever feeds them
(the input, a weight) stops training and nothing raises. The rule reports one only where a gradient
would really be lost: the op's operand carries a gradient, and its value reaches what an
`nn.Module.forward` returns as a differentiable value (`gradient_reach.ValueFlow`), or what a
quantizer/activation helper returns when a forward in the module uses that result as a value. It
is silent under no_grad and in optimizer steps, behind a straight-through estimator (in the
function or in its caller), for integer results returned as integers (ids, lengths, codes), for
indices, sizes, masks and sign factors of another differentiable term, and for helpers nothing in
the module calls (their caller decides).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator

import libcst as cst

from ..core.diagnostic import Severity
from ..core.module import ParsedModule
from ..core.prefilter import TextCue, is_ordering_comparison, python_nodes, terminal_name
from ..core.rule import Finding, NodeRule
from ..core.syntax import ORDERING_OPERATORS, assigned_names, dotted_name, is_integer_dtype, short_code, walk
from ..facts.function_model import function_model
from ..facts.gradient_reach import ValueFlow, callers, gradient_disabled, is_integer_cast
from ..torch_api import CASTS, INTEGER_CASTS, ORDERING_METHODS, ZERO_GRADIENT_OPS

ZERO_GRADIENT_METHODS = ZERO_GRADIENT_OPS | {name + "_" for name in ZERO_GRADIENT_OPS}
MASK_WRAPPERS = frozenset(
    {"float", "half", "double", "bfloat16", "to", "type_as", "type", "unsqueeze", "view", "expand_as", "int", "long"}
)
# The views and casts an index goes through and stays an index (`idx.unsqueeze(-1)`, `idx.long()`).
INDEX_KEEPING_METHODS = frozenset({"unsqueeze", "view", "reshape", "expand", "expand_as", "long", "to"})
# Calls whose value is a constant factor (`torch.ones_like(w)`), not data.
CONSTANT_FILL_CALLS = frozenset(
    {"ones_like", "zeros_like", "full_like", "ones", "zeros", "full", "tensor", "as_tensor", "empty_like"}
)
# How far a helper's result is followed up through the helpers that call it, to a forward.
CALLER_DEPTH = 3

FORWARD_DEFINED = TextCue("a forward method", patterns=(re.compile(r"def\s+forward\s*\("),))
_ZERO_GRADIENT_OP_NAMES = "(" + "|".join(sorted(ZERO_GRADIENT_OPS)) + ")"
# One pattern per kind of source (separate patterns search faster than one alternation).
FLAGGED_OP = TextCue(
    "one of the ops this rule flags",
    patterns=tuple(
        re.compile(pattern, re.MULTILINE)
        for pattern in (
            r"(?<!math)(?<!np)(?<!numpy)\." + _ZERO_GRADIENT_OP_NAMES + r"_?\s*\(",
            r"^\s*from\s+torch\s+import[^\n]*\b" + _ZERO_GRADIENT_OP_NAMES + r"\b",
            r"\bone_hot\s*\(",
            r"\bwhere\s*\([^\n]*(?:ones|zeros|full|tensor|,\s*-?\d)",
            r"\bscatter_?\s*\(",
            r"\.(int|long|short|byte|char|bool)\(\s*\)",
            r"\.(to|type)\([^)\n]*\b(u?int(8|16|32|64)|long|bool|short|\w*Tensor)\b",
            r"([<>]|==)[^\n]*\)\s*\.(float|half|double|bfloat16|to|type_as|type)\(",
            r"\.(gt|ge|lt|le|greater|less|greater_equal|less_equal)\(",
        )
    ),
)


class NonDifferentiableActivation(NodeRule[cst.FunctionDef]):
    code = "AGL004"
    name = "non-differentiable-activation"
    severity = Severity.ERROR
    summary = "a sign, rounding, step or integer cast feeds the output: its input gets zero or no gradient"

    requires = (FORWARD_DEFINED, FLAGGED_OP)
    node_types = (cst.FunctionDef,)

    @classmethod
    def candidate(cls, tree: ast.AST) -> bool:
        """A forward calls one of the rule's ops, itself or through the functions it calls: every finding is in
        a forward or in a helper whose result one uses (`_training_use`)."""
        return _forward_reaches_a_flagged_call(tree)

    def check_node(self, node: cst.CSTNode, module: ParsedModule) -> Iterator[Finding[cst.FunctionDef]]:
        function_classes = module.fact(_function_class_nodes)
        if isinstance(node, cst.FunctionDef) and _is_judged(module, node, function_classes):
            yield from _Judge(module, node, function_classes).findings()


def _function_class_nodes(module: ParsedModule) -> frozenset[cst.ClassDef]:
    return frozenset(c.node for c in function_model(module))


def _operand(source: cst.CSTNode) -> cst.BaseExpression | None:
    """The differentiable value an op quantizes: `x` in `torch.sign(x)`, `x.round()`, `(x > 0).float()`."""
    if not isinstance(source, cst.Call):
        return None
    func = source.func
    if isinstance(func, cst.Attribute) and isinstance(func.value, cst.Name) and func.value.value in ("torch", "F"):
        if func.attr.value in ("one_hot",):
            return None
        if func.attr.value == "where":
            return source.args[0].value.left if isinstance(source.args[0].value, cst.Comparison) else None
        return source.args[0].value if source.args else None
    if isinstance(func, cst.Attribute):
        receiver = func.value
        if isinstance(receiver, cst.Comparison):
            return receiver.left
        return receiver
    return None


def _is_judged(module: ParsedModule, function: cst.FunctionDef, function_classes) -> bool:
    """An `nn.Module`-style forward, or a module-level function or method a forward may call (it
    is reported only through such a call, see `_training_use`); not a custom Function's method
    (its backward supplies the gradient), not a nested helper (its caller is judged), not code that
    runs with gradients off."""
    if gradient_disabled(module, function.body):
        return False
    owner = module.grandparent(function)
    if isinstance(owner, cst.ClassDef):
        if owner in function_classes:
            return False
        if function.name.value == "forward":
            return True
    return module.enclosing_function(function) is None


def _is_forward(module: ParsedModule, function: cst.FunctionDef, function_classes) -> bool:
    owner = module.grandparent(function)
    return function.name.value == "forward" and isinstance(owner, cst.ClassDef) and owner not in function_classes


def _training_use(
    module: ParsedModule, function: cst.FunctionDef, function_classes, depth: int = CALLER_DEPTH, seen=frozenset()
):
    """The forward that passes a differentiable value to `function` (directly or through helpers
    that call it) and uses its result as a differentiable value: (forward, call in that forward).
    None when no caller in the module does: the helper's result is only used under no_grad, on
    `.data`/`.detach()` values, inside a custom Function, behind a straight-through estimator, as
    an index or a mask, or not called here at all (then its caller, elsewhere, decides)."""
    for call in callers(module, function):
        caller = module.enclosing_function(call)
        if caller is None or caller in seen or caller is function or gradient_disabled(module, call):
            continue
        owner = module.grandparent(caller)
        if owner in function_classes:
            continue
        flow = ValueFlow(module, caller)
        # `quantize_weight(self)`: the module itself carries its parameters
        if not any(flow.carries_gradient(arg.value) or dotted_name(arg.value) == "self" for arg in call.args):
            continue
        if flow.reaches_output(call, operand=call) is None:
            continue
        if _is_forward(module, caller, function_classes):
            return caller, call
        if depth > 1:
            found = _training_use(module, caller, function_classes, depth - 1, seen | {function})
            if found is not None:
                return found
    return None


class _Judge:
    """The zero-gradient sources of one judged function whose value reaches a training output."""

    def __init__(self, module: ParsedModule, function: cst.FunctionDef, function_classes):
        self.module = module
        self.function = function
        self.function_classes = function_classes

    def findings(self) -> Iterator[Finding]:
        calls = [n for n in walk(self.function.body, into_functions=False) if _may_be_source(self.module, n)]
        if not calls:
            return  # most functions: no data flow to build
        forward = _is_forward(self.module, self.function, self.function_classes)
        if not forward and _returns_integers(self.function):
            return  # a quantizer that returns integer codes on purpose
        self.flow = ValueFlow(self.module, self.function)
        use = None
        for node in calls:
            found = self._source(node)
            if found is None:
                continue
            description, integer = found
            if (
                gradient_disabled(self.module, node)
                or self.flow.reaches_output(node, integer, _operand(node) or node) is None
            ):
                continue
            if not forward:
                use = use or _training_use(self.module, self.function, self.function_classes)
                if use is None:
                    return
            yield Finding(node, *_message(self.module, self.function, node, description, use), subject=self.function)

    # --- which expressions are non-differentiable sources -------------------------------------

    def _source(self, node: cst.CSTNode) -> tuple[str, bool] | None:
        """(what the op does to the gradient, whether its result is integer-typed), or None."""
        if not isinstance(node, cst.Call):
            return None
        qualified = self.module.qualified_name(node.func) or ""
        op = _public_torch_op(qualified)
        operands = [a.value for a in node.args]
        if op in ZERO_GRADIENT_OPS:
            return self._zero_gradient(op, operands[:1])
        if op == "one_hot":
            # A hard selection (`one_hot(scores.argmax(-1))`); a one-hot of ids, positions or
            # counts encodes data that never had a gradient.
            if operands and self._is_argmax_value(operands[0]) and self.flow.carries_gradient(operands[0]):
                return "one_hot of an index has no gradient: the result is cut from the graph", True
            return None
        if op == "where" and len(operands) == 3:
            if self._compares_data(operands[0]) and all(self._is_constant(b) for b in operands[1:]):
                return "torch.where with constant branches is a step: no gradient reaches the condition's input", False
            return None
        if not isinstance(node.func, cst.Attribute) or self._is_module_function(node.func):
            return None
        method, receiver = node.func.attr.value, node.func.value
        if method in ZERO_GRADIENT_METHODS:
            return self._zero_gradient(method, [receiver])
        if is_integer_cast(node):
            # Only an inline factor counts as a mask here: `q = x.to(torch.int8)` then `q.float() * s`
            # is quantize-dequantize, the very bug.
            if self.flow.carries_gradient(receiver) and not self._used_as_mask(node, through_names=False):
                return f"casting to an integer type (.{method}) cuts the result from the graph", True
            return None
        if (
            method in ("scatter", "scatter_")
            and len(operands) >= 3
            and self._is_argmax_value(operands[1])
            and self._is_constant(operands[2])
        ):
            if self.flow.carries_gradient(operands[1]):
                return "a one-hot scattered at an argmax has no gradient: the result is cut from the graph", False
            return None
        if method in CASTS and self._is_comparison(receiver):
            if self._compares_data(receiver) and not self._used_as_mask(node):
                return "a comparison has no gradient: the result is cut from the graph", False
        return None

    def _zero_gradient(self, op: str, subjects: list[cst.BaseExpression]) -> tuple[str, bool] | None:
        if not any(self.flow.carries_gradient(s) for s in subjects):
            return None
        if op.rstrip("_") == "heaviside":
            return "torch.heaviside has no derivative: backward raises", False
        return f"{op} has a gradient of exactly zero almost everywhere", False

    def _compares_data(self, condition: cst.BaseExpression) -> bool:
        """Whether a comparison (`x > 0`, `x.gt(0)`) compares a value that carries a gradient."""
        if isinstance(condition, cst.Comparison):
            sides = [condition.left, *(c.comparator for c in condition.comparisons)]
        elif isinstance(condition, cst.Call) and isinstance(condition.func, cst.Attribute):
            sides = [condition.func.value, *(a.value for a in condition.args)]
        else:
            sides = [condition]
        return any(self.flow.carries_gradient(side) for side in sides)

    def _is_argmax_value(self, expr: cst.BaseExpression) -> bool:
        """`x.argmax(-1)`, a local assigned one, or a view of either (`index.unsqueeze(-1)`)."""
        while (
            isinstance(expr, cst.Call)
            and isinstance(expr.func, cst.Attribute)
            and expr.func.attr.value in INDEX_KEEPING_METHODS
        ):
            expr = expr.func.value
        if isinstance(expr, cst.Name):
            values = self.flow.assigned_values(expr.value)
            return bool(values) and all(_is_argmax(v) for v in values)
        return _is_argmax(expr)

    def _is_comparison(self, expr: cst.BaseExpression) -> bool:
        if isinstance(expr, cst.Comparison) and len(expr.comparisons) == 1:
            operator, right = expr.comparisons[0].operator, expr.comparisons[0].comparator
            if isinstance(operator, cst.Equal):  # `(x == x.max(-1, keepdim=True).values)`: a one-hot
                return any(_is_max(side) for side in (expr.left, right))
            return isinstance(operator, ORDERING_OPERATORS)
        if (
            isinstance(expr, cst.Call)
            and isinstance(expr.func, cst.Attribute)
            and expr.func.attr.value in ORDERING_METHODS
        ):
            return _public_torch_op(
                self.module.qualified_name(expr.func) or ""
            ) is not None or not self._is_module_function(expr.func)
        return False

    def _is_module_function(self, func: cst.Attribute) -> bool:
        """`ops.round(a)`, `math.floor(x)`: a function reached through an imported name, not a tensor method."""
        return isinstance(func.value, cst.Name) and func.value.value in self.module.imports

    def _is_constant(self, expr: cst.BaseExpression) -> bool:
        if isinstance(expr, cst.BaseNumber):
            return True
        if isinstance(expr, cst.UnaryOperation):
            return self._is_constant(expr.expression)  # -1.0, -torch.ones_like(w)
        if isinstance(expr, cst.Call):
            name = (self.module.qualified_name(expr.func) or "").rsplit(".", 1)[-1]
            return name in CONSTANT_FILL_CALLS
        return False

    def _used_as_mask(self, expr: cst.CSTNode, through_names: bool = True) -> bool:
        """A comparison or integer cast multiplying data is a mask or a deliberate sign factor
        (`h * (ids != pad).float()`, `Q * X.diagonal().int()`), not an activation."""
        node = expr
        parent = self.module.parents.get(node)
        while True:
            if isinstance(parent, cst.Subscript) and parent.value is node:  # mask[..., None]
                node, parent = parent, self.module.parents.get(parent)
                continue
            if not (isinstance(parent, cst.Attribute) and parent.value is node and parent.attr.value in MASK_WRAPPERS):
                break
            call = self.module.parents.get(parent)
            if not (isinstance(call, cst.Call) and call.func is parent):
                break
            node, parent = call, self.module.parents.get(call)
        if isinstance(parent, cst.BinaryOperation) and isinstance(parent.operator, cst.Multiply):
            other = parent.right if parent.left is node else parent.left
            return self.flow.carries_gradient(other)
        if isinstance(parent, cst.AugAssign) and isinstance(parent.operator, cst.MultiplyAssign):
            return self.flow.carries_gradient(parent.target)
        if isinstance(parent, cst.Assign) and through_names:
            return any(
                self._name_used_as_mask(name.value)
                for target in parent.targets
                for name in assigned_names(target.target)
            )
        return False

    def _name_used_as_mask(self, name: str) -> bool:
        # A mask also feeds its normaliser (`mask.sum()`) or a log line; one masking use shows the
        # intent, unless the value is also returned as it is (a spike train is output and mask).
        uses = self.flow.loads(name)
        returned = any(_directly_returned(self.module, use) for use in uses)
        return not returned and any(self._used_as_mask(use, through_names=False) for use in uses)


_SOURCE_CALL_NAMES = ZERO_GRADIENT_METHODS | INTEGER_CASTS | CASTS | {"one_hot", "where", "scatter", "scatter_"}


def _may_be_source(module: ParsedModule, node: cst.CSTNode) -> bool:
    """A call named like one of the ops `_Judge._source` judges (a cheap first filter; an imported
    alias such as `from torch import sign as sgn_` is resolved)."""
    if not isinstance(node, cst.Call):
        return False
    func = node.func
    if isinstance(func, cst.Attribute):
        return func.attr.value in _SOURCE_CALL_NAMES
    return isinstance(func, cst.Name) and (module.qualified_name(func) or "").rsplit(".", 1)[-1] in _SOURCE_CALL_NAMES


def _message(
    module: ParsedModule, function: cst.FunctionDef, node: cst.CSTNode, description: str, use
) -> tuple[str, str]:
    operand = _operand(node)
    if (
        isinstance(node, cst.Call)
        and isinstance(node.func, cst.Attribute)
        and node.func.attr.value in ("scatter", "scatter_")
    ):
        operand = node.args[1].value  # the argmax index, not the zeros it is scattered into
    fed = f"`{short_code(operand, 40)}`" if operand is not None else "its input"
    owner = module.grandparent(function)
    name = f"{owner.name.value}.{function.name.value}" if isinstance(owner, cst.ClassDef) else function.name.value
    used = ""
    if use is not None:
        forward, _ = use
        forward_owner = module.grandparent(forward)
        assert isinstance(forward_owner, cst.ClassDef)  # _is_forward: a method of a class
        used = f"`{name}` returns what `{forward_owner.name.value}.forward` uses as a value. "
    return (
        f"`{short_code(node, 40)}` reaches what `{name}` returns",
        f"{used}At `{short_code(node, 50)}`, {description}, so {fed} and every weight before it get no gradient "
        f"through this path. This matters if they are learnable or fed by trained layers; use a straight-through "
        f"estimator `x + (q - x).detach()` or a custom autograd.Function with a surrogate backward.",
    )


def _directly_returned(module: ParsedModule, node: cst.CSTNode) -> bool:
    parent = module.parents.get(node)
    while isinstance(parent, (cst.Element, cst.Tuple, cst.List)):
        parent = module.parents.get(parent)
    return isinstance(parent, cst.Return)


def _is_argmax(expr: cst.BaseExpression) -> bool:
    return (
        isinstance(expr, cst.Call)
        and isinstance(expr.func, (cst.Attribute, cst.Name))
        and (
            (dotted_name(expr.func) or "").rsplit(".", 1)[-1] in ("argmax", "argmin")
            or (isinstance(expr.func, cst.Attribute) and expr.func.attr.value in ("argmax", "argmin"))
        )
    )


def _is_max(expr: cst.BaseExpression) -> bool:
    """`x.max(-1, keepdim=True).values`, `x.amax(-1, keepdim=True)`, `torch.max(x, 1, True)[0]`."""
    if isinstance(expr, cst.Attribute) and expr.attr.value == "values":
        expr = expr.value
    if isinstance(expr, cst.Subscript):
        expr = expr.value
    return (
        isinstance(expr, cst.Call)
        and isinstance(expr.func, cst.Attribute)
        and expr.func.attr.value in ("max", "amax", "min", "amin")
    )


def _public_torch_op(qualified: str) -> str | None:
    """`round` for `torch.round`, `one_hot` for `torch.nn.functional.one_hot`; None for private namespaces."""
    parts = qualified.split(".")
    if len(parts) == 2 and parts[0] == "torch":
        return parts[1]
    if qualified in ("torch.nn.functional.one_hot", "torch.special.round"):
        return parts[-1]
    return None


def _returns_integers(function: cst.FunctionDef) -> bool:
    """A quantizer that returns integer codes (`q = round(x / s).to(torch.int8); return q, s`) is an
    export or kernel helper whose output is not meant to be differentiated."""
    dtype_params = {p.name.value for p in function.params.params if "dtype" in p.name.value}
    last_binding: dict[str, cst.BaseExpression] = {}
    for node in walk(function.body, into_functions=False):
        if isinstance(node, cst.Assign):
            for target in node.targets:
                if isinstance(target.target, cst.Name):
                    last_binding[target.target.value] = node.value
        elif isinstance(node, cst.Return) and node.value is not None:
            returned = node.value.elements if isinstance(node.value, cst.Tuple) else [node.value]
            for element in returned:
                value = element.value if isinstance(element, cst.Element) else element
                if isinstance(value, cst.Name):
                    value = last_binding.get(value.value, value)
                # a StarredElement is a BaseExpression too: the check only tells mypy
                if isinstance(value, cst.BaseExpression) and _produces_integers(value, dtype_params):
                    return True
    return False


def _produces_integers(expr: cst.BaseExpression, dtype_params: set[str]) -> bool:
    """Whether a method chain (`x.round().to(torch.int32).reshape(s)`) casts to an integer type."""
    while isinstance(expr, cst.Call) and isinstance(expr.func, cst.Attribute):
        method = expr.func.attr.value
        args = [a.value for a in expr.args]
        if method in INTEGER_CASTS or method == "astype" or "quantize_per" in method:
            return True
        if method in ("to", "type") and any(
            is_integer_dtype(a) or (isinstance(a, cst.Name) and a.value in dtype_params) for a in args
        ):
            return True
        expr = expr.func.value
        while isinstance(expr, cst.BinaryOperation):
            expr = expr.left
    return False


# --- the prefilter's AST check ---

INTEGER_DTYPE = re.compile(r"^(u?int(8|16|32|64)?|long|short|bool|\w*Tensor)$")


def _forward_reaches_a_flagged_call(tree: ast.AST) -> bool:
    """A class's `forward` method calls one of the rule's ops (also under an alias: `from torch import sign as
    hard_sign`), or calls by name a function that does, through at most `CALLER_DEPTH` calls: where every
    finding is (in a forward, or in a helper whose result one uses, `_training_use`). Looser than the rule:
    a call counts wherever it is in a function, nested functions included, and calls match by name alone."""
    nodes = python_nodes(tree)
    aliases = frozenset(
        alias.asname
        for node in nodes
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("torch")
        for alias in node.names
        if alias.asname and (alias.name.rstrip("_") in ZERO_GRADIENT_OPS or alias.name == "one_hot")
    )
    forwards: list[ast.AST] = [
        statement
        for node in nodes
        if isinstance(node, ast.ClassDef)
        for statement in node.body
        if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef)) and statement.name == "forward"
    ]
    if not forwards:
        return False
    functions: dict[str, list[ast.AST]] = {}
    for node in nodes:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            functions.setdefault(node.name, []).append(node)
    reached: set[ast.AST] = set()
    level = forwards
    for _ in range(CALLER_DEPTH + 1):  # the forwards, then the functions they call, to CALLER_DEPTH calls away
        called: set[str] = set()
        for function in level:
            if function in reached:
                continue
            reached.add(function)
            for node in python_nodes(function):
                if isinstance(node, ast.Call):
                    if _is_source_call(node, aliases):
                        return True
                    name = terminal_name(node.func)
                    if name is not None:
                        called.add(name)
        level = [function for name in called for function in functions.get(name, ())]
    return False


def _is_source_call(node: ast.AST, aliases: frozenset[str] = frozenset()) -> bool:
    if not isinstance(node, ast.Call):
        return False
    name = terminal_name(node.func)
    if name is None:
        return False
    if name in aliases or name.rstrip("_") in ZERO_GRADIENT_OPS or name in ("one_hot", "where", "scatter", "scatter_"):
        return True
    if name in INTEGER_CASTS and not node.args:
        return True
    if name in ("to", "type") and any(
        INTEGER_DTYPE.match(terminal_name(a) or "") for a in [*node.args, *(k.value for k in node.keywords)]
    ):
        return True
    return (
        name in CASTS
        and isinstance(node.func, ast.Attribute)
        and is_ordering_comparison(node.func.value)
        or (name in CASTS and isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Compare))
    )
