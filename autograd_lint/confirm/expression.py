"""Rebuilding one flagged expression as a function of a probe tensor, for the expression rules' recipes
(AGL003's hand-written activations, AGL023's `torch.where`s).

The subject (the activation's input, the guarded variable) becomes the function's parameter; local
names the enclosing function binds once are inlined; `self` becomes an instance built from the
module's literal constructor call; other locals take their literal value, or a stand-in.
"""

from __future__ import annotations

import builtins

import libcst as cst

from ..core.module import ParsedModule
from ..core.scopes import bindings
from ..core.syntax import code_of, normalized_code, walk
from .harness import CannotBuildHarness, literal_binding, literal_call_arguments

BUILTIN_NAMES = frozenset(dir(builtins))


def expression_function(
    module: ParsedModule,
    anchor: cst.CSTNode,
    expression: cst.BaseExpression,
    subject: cst.BaseExpression,
    function_name: str,
    probe_name: str = "_agl_x",
    stand_in: str | None = None,
) -> tuple[str, set[str], set[str]]:
    """(code of `def function_name(probe_name): return <expression>`, required names, optional names).

    `anchor` is the flagged node in the module (its scope gives the local values); `expression` is
    built from it. A local whose value is only known at run time raises CannotBuildHarness, unless
    `stand_in` gives the code that replaces it (a tensor shaped like the probe).
    """
    target = normalized_code(subject)
    rewritten = _transformed(expression, _Substitute(target, probe_name))
    # `x * mask` -> `x * ((x > 0).float())`, with `x` already the probe
    rewritten = _transformed(
        _transformed(rewritten, _InlineLocals(module, expression, target)), _Substitute(target, probe_name)
    )
    free = {n.value for n in walk(rewritten) if isinstance(n, cst.Name) and not _is_attribute_name(rewritten, n)} - {
        probe_name
    }
    module_level = set(bindings(module.tree))
    function = module.enclosing_function(anchor)
    local_values = []
    required: set[str] = set()
    if "self" in free and function is not None:
        parent = module.parents.get(function)
        owner = module.parents.get(parent) if parent is not None else None
        if isinstance(owner, cst.ClassDef) and module.parents.get(owner) is module.tree:
            arguments = literal_call_arguments(module, owner.name.value)
            if arguments is not None or stand_in is None or not _needs_arguments(owner):
                local_values.append(f"    self = {owner.name.value}({arguments or ''})")
                required.add(owner.name.value)
                free = free - {"self"}
    unknown = {
        name
        for name in free - module_level - BUILTIN_NAMES
        if (literal_binding(function, name) if function is not None else None) is None
    }
    if unknown and stand_in is not None:
        # `self.q.real`, `plane.offset`: the attribute of a value only known at run time stands in as one value.
        # One value (shape [1]), so that it broadcasts against the probe whatever the expression's shapes.
        scalar = cst.parse_expression(f"{probe_name}.new_tensor([0.75])")
        rewritten = _transformed(rewritten, _OpaqueAttributes(unknown, scalar))
        free = {n.value for n in walk(rewritten) if isinstance(n, cst.Name) and not _is_attribute_name(rewritten, n)}
        free -= {probe_name}
    for name in sorted(free - module_level - BUILTIN_NAMES):
        value = literal_binding(function, name) if function is not None else None
        if value is None and stand_in is None:
            raise CannotBuildHarness(f"the expression reads `{name}`, whose value is only known at run time")
        local_values.append(f"    {name} = {value if value is not None else stand_in}")
    code = "\n".join([f"def {function_name}({probe_name}):", *local_values, f"    return {code_of(rewritten).strip()}"])
    return code, required, free & module_level


def _needs_arguments(owner: cst.ClassDef) -> bool:
    """Whether the class's own `__init__` has a required parameter besides `self`."""
    for statement in owner.body.body:
        if isinstance(statement, cst.FunctionDef) and statement.name.value == "__init__":
            params = statement.params
            return any(p.default is None for p in (*params.posonly_params, *params.params)[1:]) or any(
                p.default is None for p in params.kwonly_params
            )
    return False


# What a tensor stand-in has itself: `x.device` of an unknown `x` stays as written.
_TENSOR_ATTRIBUTES = frozenset({"device", "dtype", "shape", "ndim", "real", "imag", "data", "T", "mT"})


class _OpaqueAttributes(cst.CSTTransformer):
    """Replace each attribute chain on a value only known at run time (`self.q.vec`, `plane.normal.data`)
    with a stand-in tensor; `x.device` and the like stay, the stand-in has them, and so does a method
    called on the value itself (`min_val.unsqueeze(-1)`: the value is a stand-in tensor too)."""

    def __init__(self, names: set[str], stand_in: cst.BaseExpression):
        self.names, self.stand_in = names, stand_in
        self.methods: set[cst.Attribute] = set()

    def visit_Call(self, node):
        if isinstance(node.func, cst.Attribute) and isinstance(node.func.value, cst.Name):
            self.methods.add(node.func)

    def _opaque(self, node: cst.Attribute) -> bool:
        if node in self.methods:
            return False
        first = node
        while isinstance(first.value, cst.Attribute):
            first = first.value
        return (
            isinstance(first.value, cst.Name)
            and first.value.value in self.names
            and first.attr.value not in _TENSOR_ATTRIBUTES
        )

    def visit_Attribute(self, node):
        return not self._opaque(node)  # the outermost chain is replaced whole

    def leave_Attribute(self, original, updated):
        if self._opaque(original):
            return self.stand_in.with_changes(lpar=[cst.LeftParen()], rpar=[cst.RightParen()])
        return updated


def _transformed(expression: cst.BaseExpression, transformer: cst.CSTTransformer) -> cst.BaseExpression:
    """`expression` rewritten by `transformer`; these transformers replace nodes, never remove them."""
    result = expression.visit(transformer)
    if not isinstance(result, cst.BaseExpression):
        raise CannotBuildHarness(f"rewriting `{code_of(expression).strip()}` removed it")
    return result


class _InlineLocals(cst.CSTTransformer):
    """Replace names the enclosing function binds exactly once, to a value computed from the subject
    (`mask = (x > 0).float()`), with that (parenthesized) value, a few assignments deep
    (`scaled = 0.5 * length; length = torch.sqrt(d2)`). Other locals stay names."""

    DEPTH = 3

    def __init__(self, module: ParsedModule, node: cst.CSTNode, subject: str):
        self.module, self.subject = module, subject
        self.values: dict[str, cst.BaseExpression] = {}
        self._collect(node, self.DEPTH)

    def _collect(self, root: cst.CSTNode, depth: int) -> None:
        for name in [root, *walk(root)]:
            if isinstance(name, cst.Name) and name in self.module.parents and name.value not in self.values:
                value = self.module.single_assignment(name)
                if value is not name and self._mentions_subject(value, depth):
                    self.values[name.value] = value
                    self._collect(value, depth - 1)

    def _mentions_subject(self, value: cst.BaseExpression, depth: int) -> bool:
        for node in [value, *walk(value)]:
            if isinstance(node, cst.BaseExpression) and normalized_code(node) == self.subject:
                return True
            if depth > 1 and isinstance(node, cst.Name) and node in self.module.parents:
                inner = self.module.single_assignment(node)
                if inner is not node and self._mentions_subject(inner, depth - 1):
                    return True
        return False

    def leave_Name(self, original, updated):
        value = self.values.get(original.value)
        return (
            updated
            if value is None
            else _transformed(value, self).with_changes(lpar=[cst.LeftParen()], rpar=[cst.RightParen()])
        )

    def leave_Attribute(self, original, updated):
        return updated.with_changes(attr=original.attr)  # `x.real`: the attribute name is not a variable


class _Substitute(cst.CSTTransformer):
    """Replace every occurrence of one expression (by normalized source) with a name."""

    def __init__(self, target: str, name: str):
        self.target, self.name = target, name

    def on_leave(self, original, updated):
        if isinstance(original, cst.BaseExpression) and normalized_code(original) == self.target:
            return cst.Name(self.name, lpar=original.lpar, rpar=original.rpar)
        return updated


def _is_attribute_name(root: cst.CSTNode, name: cst.Name) -> bool:
    return any(isinstance(n, cst.Attribute) and n.attr is name for n in walk(root))
