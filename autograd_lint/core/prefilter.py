"""The prefilter: can a file contain a finding at all? First on the text (`Rule.triggered`), then on
CPython's AST (`Rule.candidate`; already built for the syntax check, and far cheaper than libcst's tree):
does the file contain a node a rule could report? Each check is a necessary condition of its rule's
findings, looser than the rule itself, so skipping libcst when it says no loses nothing."""

from __future__ import annotations

import ast
import re

from ..torch_api import CASTS, INTEGER_CASTS, ORDERING_METHODS, ZERO_GRADIENT_OPS

ORDERING = (ast.Gt, ast.GtE, ast.Lt, ast.LtE)
INTEGER_DTYPE = re.compile(r"^(u?int(8|16|32|64)?|long|short|bool|\w*Tensor)$")

# A Function subclass is declared with "Function" in its bases (or subclasses one that is), or
# through a module-level alias of torch's Function (`Fn = Function`, `from torch.autograd import Function as Fn`).
FUNCTION_CLASS_TRIGGER = re.compile(r"class\s+\w+\s*\([^)]*Function|=\s*[\w.]*Function\b|\bFunction\s+as\s+\w")
_last_trigger_answer: tuple[str | None, bool] = (None, False)


def may_define_function_class(text: str) -> bool:
    """FUNCTION_CLASS_TRIGGER on the file's text; every Function rule asks it of the same text, so the
    last answer is kept with the very string it is about."""
    global _last_trigger_answer
    last_text, answer = _last_trigger_answer
    if last_text is not text:
        answer = FUNCTION_CLASS_TRIGGER.search(text) is not None
        _last_trigger_answer = (text, answer)
    return answer


def _terminal(node: ast.AST) -> str | None:
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Name):
        return node.id
    return None


# Every Function rule asks the same question of the same file, so the last answer is kept, with the
# tree it is about (an identity check, so a new tree with a reused id() is never mistaken for it).
_last_function_answer: tuple[ast.AST | None, bool] = (None, False)


def defines_function_subclass(tree: ast.AST) -> bool:
    global _last_function_answer
    last_tree, answer = _last_function_answer
    if last_tree is not tree:
        answer = _defines_function_subclass(tree)
        _last_function_answer = (tree, answer)
    return answer


def _defines_function_subclass(tree: ast.AST) -> bool:
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and any("Function" in (_terminal(base) or "") for base in node.bases):
            return True
        if isinstance(node, ast.Assign) and "Function" in (_terminal(node.value) or ""):
            return True  # `Fn = torch.autograd.Function`, then `class X(Fn)`
        if isinstance(node, ast.ImportFrom) and any(alias.name == "Function" and alias.asname for alias in node.names):
            return True  # `from torch.autograd import Function as AutogradFn`, then `class X(AutogradFn)`
    return False


def _unwrap_casts(node: ast.AST) -> ast.AST:
    while isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in CASTS:
        node = node.func.value
    return node


def _is_comparison(node: ast.AST) -> bool:
    node = _unwrap_casts(node)
    if isinstance(node, ast.Compare):
        return any(isinstance(op, ORDERING) for op in node.ops)
    return isinstance(node, ast.Call) and _terminal(node.func) in ORDERING_METHODS


def _factors(node: ast.AST):
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult):
        yield from _factors(node.left)
        yield from _factors(node.right)
    else:
        yield node


def multiplies_a_comparison(tree: ast.AST) -> bool:
    nodes = list(ast.walk(tree))
    compared_names = {
        target.id
        for node in nodes
        if isinstance(node, ast.Assign) and _is_comparison(node.value)
        for target in node.targets
        if isinstance(target, ast.Name)
    }

    # Module functions that return a (cast) comparison: `positive_mask(h)` is a mask.
    mask_helpers = {
        node.name
        for node in getattr(tree, "body", [])
        if isinstance(node, ast.FunctionDef)
        and any(
            isinstance(r, ast.Return) and r.value is not None and _is_comparison(_unwrap_casts(r.value))
            for r in ast.walk(node)
        )
    }

    def comparison_like(factor: ast.AST) -> bool:
        factor = _unwrap_casts(factor)
        if isinstance(factor, ast.Call) and isinstance(factor.func, ast.Name) and factor.func.id in mask_helpers:
            return True
        return _is_comparison(factor) or (isinstance(factor, ast.Name) and factor.id in compared_names)

    for node in nodes:
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult):
            if any(comparison_like(f) for f in _factors(node)):
                return True
        elif isinstance(node, ast.AugAssign) and isinstance(node.op, ast.Mult):
            if comparison_like(node.value):
                return True
        elif isinstance(node, ast.Call) and _terminal(node.func) in ("mul", "mul_", "multiply"):
            if any(comparison_like(a) for a in node.args):
                return True
    return False


def _is_source_call(node: ast.AST, aliases: frozenset[str] = frozenset()) -> bool:
    if not isinstance(node, ast.Call):
        return False
    name = _terminal(node.func)
    if name is None:
        return False
    if name in aliases or name.rstrip("_") in ZERO_GRADIENT_OPS or name in ("one_hot", "where", "scatter", "scatter_"):
        return True
    if name in INTEGER_CASTS and not node.args:
        return True
    if name in ("to", "type") and any(
        INTEGER_DTYPE.match(_terminal(a) or "") for a in [*node.args, *(k.value for k in node.keywords)]
    ):
        return True
    return (
        name in CASTS
        and isinstance(node.func, ast.Attribute)
        and _is_comparison(node.func.value)
        or (name in CASTS and isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Compare))
    )


def activation_with_a_flagged_op(tree: ast.AST, activation_like) -> bool:
    """A function the rule would judge (`activation_like(name)`) that calls one of its ops, also
    under an alias (`from torch import sign as hard_sign`)."""
    aliases = frozenset(
        alias.asname
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("torch")
        for alias in node.names
        if alias.asname and (alias.name.rstrip("_") in ZERO_GRADIENT_OPS or alias.name == "one_hot")
    )
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and activation_like(node.name):
            if any(_is_source_call(inner, aliases) for inner in ast.walk(node)):
                return True
    return False
