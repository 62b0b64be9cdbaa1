"""Small, rule-agnostic helpers over libcst nodes."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence

import libcst as cst

from ..torch_api import INTEGER_DTYPE_NAMES
from .context import active_file

_CODEGEN = cst.Module(body=[])


def dotted_name(expr: cst.BaseExpression) -> str | None:
    """`a.b.c` for a Name/Attribute chain, else None."""
    if isinstance(expr, cst.Name):
        return expr.value
    if isinstance(expr, cst.Attribute):
        base = dotted_name(expr.value)
        return f"{base}.{expr.attr.value}" if base else None
    return None


def is_integer_dtype(expr: cst.BaseExpression) -> bool:
    """A dtype argument that makes an integer or bool tensor: `torch.int32`, `torch.long`,
    `torch.bool`, `torch.LongTensor`, and Python's `int`/`bool` as torch reads them (`dtype=int`)."""
    name = dotted_name(expr) or ""
    head, _, last = name.rpartition(".")
    return (head == "torch" and last in INTEGER_DTYPE_NAMES) or name in ("int", "bool")


def code_of(node: cst.CSTNode) -> str:
    return _CODEGEN.code_for_node(node)


def normalized_code(node: cst.CSTNode) -> str:
    """Source text without whitespace or redundant parentheses, for structural equality."""
    if isinstance(node, cst.BaseExpression) and (node.lpar or node.rpar):
        node = node.with_changes(lpar=(), rpar=())
    return "".join(code_of(node).split())


def method_name(call: cst.Call) -> str | None:
    """`m` for a call `<anything>.m(...)`."""
    if isinstance(call.func, cst.Attribute):
        return call.func.attr.value
    return None


def decorator_names(func: cst.FunctionDef) -> list[str]:
    names = []
    for decorator in func.decorators:
        expr = decorator.decorator
        if isinstance(expr, cst.Call):
            expr = expr.func
        names.append(dotted_name(expr) or "")
    return names


def string_value(expr: cst.BaseExpression) -> str | None:
    if isinstance(expr, cst.SimpleString):
        value = expr.evaluated_value
        return value if isinstance(value, str) else None
    return None


def literal_number(expr: cst.BaseExpression) -> float | None:
    """The value of a number literal, signs included (`-1`, `+0.5`, `- -2`); None for anything else."""
    negative = False
    while isinstance(expr, cst.UnaryOperation) and isinstance(expr.operator, (cst.Minus, cst.Plus)):
        negative ^= isinstance(expr.operator, cst.Minus)
        expr = expr.expression
    if isinstance(expr, (cst.Integer, cst.Float)):
        value = float(expr.evaluated_value)
        return -value if negative else value
    return None


def is_none(expr: cst.BaseExpression | None) -> bool:
    return isinstance(expr, cst.Name) and expr.value == "None"


_CHILD_FIELDS: dict[type, tuple[str, ...]] = {}
_IS_NODE_TYPE: dict[type, bool] = {}
_SCOPE_TYPES = (cst.FunctionDef, cst.Lambda, cst.ClassDef)


# Whitespace, punctuation and operator tokens: no rule asks for their parents or walks into them,
# and they are about half of all nodes.
_TOKEN_TYPES = (
    cst.BaseParenthesizableWhitespace,
    cst.EmptyLine,
    cst.TrailingWhitespace,
    cst.Newline,
    cst.Comment,
    cst.Comma,
    cst.Dot,
    cst.Colon,
    cst.Semicolon,
    cst.AssignEqual,
    cst.LeftParen,
    cst.RightParen,
    cst.LeftSquareBracket,
    cst.RightSquareBracket,
    cst.LeftCurlyBrace,
    cst.RightCurlyBrace,
    cst.BaseBinaryOp,
    cst.BaseCompOp,
    cst.BaseUnaryOp,
    cst.BaseAugOp,
    cst.BaseBooleanOp,
    cst.ImportStar,
)


# The comparison operators that order (`x > 0`, `x <= t`): what a threshold, a mask or a step is made of.
ORDERING_OPERATORS = (cst.GreaterThan, cst.GreaterThanEqual, cst.LessThan, cst.LessThanEqual)


def _is_node(value) -> bool:
    # isinstance against libcst's ABCs is slow on this hot path; decide once per type.
    kind = type(value)
    known = _IS_NODE_TYPE.get(kind)
    if known is None:
        known = _IS_NODE_TYPE[kind] = isinstance(value, cst.CSTNode) and not issubclass(kind, _TOKEN_TYPES)
    return known


def children(node: cst.CSTNode) -> list[cst.CSTNode]:
    """A node's children in source order.

    The file being linted keeps every node's children from when it was indexed (the rules walk the same
    tree many times); elsewhere they are read from the node.
    """
    context = active_file()
    if context is not None:
        known = context.children.get(node)
        if known is not None:
            return known
    return read_children(node)


def read_children(node: cst.CSTNode) -> list[cst.CSTNode]:
    """A node's children, read from its dataclass fields: several times faster than libcst's `children`
    property, which runs a visitor per call, and this is on every file's hot path."""
    names = _CHILD_FIELDS.get(type(node))
    if names is None:
        names = _CHILD_FIELDS[type(node)] = tuple(f.name for f in dataclasses.fields(node))
    found = []
    for name in names:
        value = getattr(node, name)
        if _is_node(value):
            found.append(value)
        elif type(value) is tuple or type(value) is list:
            found.extend(item for item in value if _is_node(item))
    return found


def walk(node: cst.CSTNode, *, into_functions: bool = True) -> Iterator[cst.CSTNode]:
    """Pre-order walk of `node`'s descendants (not `node` itself)."""
    context = active_file()  # asked once per walk, not per node
    known = context.children if context is not None else {}

    def children_of(parent: cst.CSTNode) -> list[cst.CSTNode]:
        found = known.get(parent)
        return found if found is not None else read_children(parent)

    stack = list(reversed(children_of(node)))
    while stack:
        child = stack.pop()
        yield child
        if not into_functions and type(child) in _SCOPE_TYPES:
            continue
        stack.extend(reversed(children_of(child)))


def assigned_names(target: cst.BaseExpression) -> Iterator[cst.Name]:
    """Names bound by an assignment target (`a`, `a, (b, *c)`, `[a, b]`)."""
    if isinstance(target, cst.Name):
        yield target
    elif isinstance(target, (cst.Tuple, cst.List)):
        for element in target.elements:
            yield from assigned_names(element.value)
    elif isinstance(target, cst.StarredElement):
        yield from assigned_names(target.value)


def function_params(func: cst.FunctionDef) -> list[cst.Param]:
    """Positional parameters in order (positional-only first)."""
    return list(func.params.posonly_params) + list(func.params.params)


def disables_grad(expr: cst.BaseExpression) -> bool:
    """`torch.no_grad()`, `torch.inference_mode()`, `torch.set_grad_enabled(False)` (a `with` item or
    a decorator, called or not)."""
    args: Sequence[cst.Arg] = ()
    if isinstance(expr, cst.Call):
        args = expr.args
        expr = expr.func
    name = dotted_name(expr) or ""
    tail = name.rsplit(".", 1)[-1]
    if tail == "set_grad_enabled":
        return len(args) == 1 and isinstance(args[0].value, cst.Name) and args[0].value.value == "False"
    return tail in ("no_grad", "inference_mode")


def enables_grad(expr: cst.BaseExpression) -> bool:
    """`torch.enable_grad()`, `torch.set_grad_enabled(True)` or `set_grad_enabled(<not a literal False>)`
    (a `with` item, a decorator or a statement, called or not)."""
    args: Sequence[cst.Arg] = ()
    if isinstance(expr, cst.Call):
        args = expr.args
        expr = expr.func
    tail = (dotted_name(expr) or "").rsplit(".", 1)[-1]
    if tail in ("set_grad_enabled", "_set_grad_enabled"):  # torch._C._set_grad_enabled(True) too
        return not (len(args) == 1 and isinstance(args[0].value, cst.Name) and args[0].value.value == "False")
    return tail == "enable_grad"


def short_code(node: cst.CSTNode, limit: int = 50) -> str:
    """A node's source on one line, without enclosing parentheses, cut to `limit` characters."""
    if isinstance(node, cst.BaseExpression) and (node.lpar or node.rpar):
        node = node.with_changes(lpar=(), rpar=())
    return shortened(code_of(node), limit)


def shortened(text: str, limit: int) -> str:
    """`text` on one line (whitespace collapsed), cut to `limit` characters."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
