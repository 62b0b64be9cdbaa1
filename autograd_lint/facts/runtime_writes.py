"""Where a module changes shared state while it runs: class attributes, globals, shared containers.

A write is keyed by the dotted chain it changes (`GradDecay.alpha`, `CFG`, `Curriculum.cfg`). Writes
inside functions happen at run time; a top-level write only inside a loop or after the script has
started applying Functions (otherwise it is import-time initialisation, like a class-body assignment).
"""

from __future__ import annotations

from dataclasses import dataclass

import libcst as cst

from ..core.module import ParsedModule
from ..core.scopes import bindings, declared_global
from ..core.syntax import dotted_name, string_value, walk

# Methods that change a list, dict or set in place.
MUTATING_METHODS = frozenset(
    {
        "append",
        "extend",
        "insert",
        "pop",
        "popitem",
        "remove",
        "clear",
        "update",
        "setdefault",
        "add",
        "discard",
        "sort",
        "reverse",
        "__setitem__",
    }
)


@dataclass(frozen=True)
class Write:
    chain: str
    node: cst.CSTNode
    function: cst.FunctionDef | None  # None: module top level
    how: str  # "reassigns" or "modifies"

    def where(self, module: ParsedModule) -> str:
        line = module.position(self.node).start.line
        if self.function is None:
            return f"at module level (line {line})"
        return f"in `{_qualified_function_name(module, self.function)}()` (line {line})"


def _qualified_function_name(module: ParsedModule, function: cst.FunctionDef) -> str:
    names = [function.name.value]
    for ancestor in module.ancestors(function):
        if isinstance(ancestor, (cst.ClassDef, cst.FunctionDef)):
            names.append(ancestor.name.value)
    return ".".join(reversed(names))


def chains_overlap(read: str, written: str) -> bool:
    """A write to `A.b` affects reads of `A.b` and `A.b.c` (not of `A`: reading a class is not reading its attributes)."""
    return read == written or read.startswith(written + ".")


class RuntimeWrites:
    def __init__(self, module: ParsedModule):
        self.module = module
        module_bindings = bindings(module.tree)
        self.module_names = set(module_bindings)
        self.imported_names = {
            name
            for name, nodes in module_bindings.items()
            if all(isinstance(n, (cst.Import, cst.ImportFrom)) for n in nodes)
        }
        self._locals: dict[cst.FunctionDef, set[str]] = {}
        self._globals: dict[cst.FunctionDef, set[str]] = {}
        self.writes: list[Write] = []
        self._collect()

    def affecting(self, chain: str) -> list[Write]:
        return [write for write in self.writes if chains_overlap(chain, write.chain)]

    def _collect(self) -> None:
        found: list[Write] = []
        for node in self.module.parents:
            kind = type(node)
            if kind not in (cst.Assign, cst.AugAssign, cst.AnnAssign, cst.Del, cst.Call):
                continue
            if isinstance(node, (cst.Assign, cst.AugAssign, cst.AnnAssign, cst.Del)):
                targets = [t.target for t in node.targets] if isinstance(node, cst.Assign) else [node.target]
                for target in targets:
                    for element in _unpacked(target):
                        write = self._target_write(
                            node, element, "modifies" if isinstance(node, cst.AugAssign) else "reassigns"
                        )
                        if write is not None:
                            found.append(write)
            elif isinstance(node, cst.Call):
                write = self._call_write(node)
                if write is not None:
                    found.append(write)
        first_apply = self._first_top_level_apply()
        for write in found:
            if write.function is None and not self._top_level_at_run_time(write.node, first_apply):
                continue  # import-time initialisation, like a class-body assignment
            self.writes.append(write)

    def _first_top_level_apply(self) -> cst.CSTNode | None:
        for statement in self.module.tree.body:
            for node in walk(statement, into_functions=False):
                if (
                    isinstance(node, cst.Call)
                    and isinstance(node.func, cst.Attribute)
                    and node.func.attr.value == "apply"
                ):
                    return statement
        return None

    def _top_level_at_run_time(self, node: cst.CSTNode, first_apply: cst.CSTNode | None) -> bool:
        """A top-level write runs at import, once, unless a loop repeats it (a notebook-style
        training loop) or it comes after the script has started applying Functions."""
        if any(isinstance(a, (cst.For, cst.While)) for a in self.module.ancestors(node)):
            return True
        return first_apply is not None and self.module.comes_before(first_apply, node)

    def _target_write(self, statement, target: cst.BaseExpression, how: str) -> Write | None:
        function = self.module.enclosing_function(statement)
        if isinstance(target, cst.Subscript):
            chain = self._shared_chain(target.value, function)
            return Write(chain, statement, function, "modifies") if chain else None
        if isinstance(target, cst.Attribute):
            chain = self._shared_chain(target, function)
            if chain is None:
                return None
            deeper = chain.count(".") > 1
            return Write(chain, statement, function, "modifies" if deeper else how)
        if isinstance(target, cst.Name) and function is not None and target.value in self._global_names(function):
            return Write(target.value, statement, function, how)
        return None

    def _call_write(self, call: cst.Call) -> Write | None:
        function = self.module.enclosing_function(call)
        func = call.func
        if isinstance(func, cst.Name) and func.value == "setattr" and len(call.args) >= 2:
            attr = string_value(call.args[1].value)
            owner = self._shared_chain(call.args[0].value, function)
            if attr and owner:
                return Write(f"{owner}.{attr}", call, function, "reassigns")
        if isinstance(func, cst.Attribute) and func.attr.value in MUTATING_METHODS:
            chain = self._shared_chain(func.value, function)
            # `torch.add(a, b)` calls a module's function; it does not mutate a container.
            if chain and chain.split(".")[0] not in self.imported_names:
                return Write(chain, call, function, "modifies")
        return None

    def _shared_chain(self, expr: cst.BaseExpression, function: cst.FunctionDef | None) -> str | None:
        """The dotted chain of `expr` if it is rooted at module-level state, with `cls`/`type(self)` resolved."""
        parts = []
        while isinstance(expr, cst.Attribute):
            parts.append(expr.attr.value)
            expr = expr.value
        root = self._root_name(expr, function)
        if root is None:
            return None
        return ".".join([root, *reversed(parts)])

    def _root_name(self, expr: cst.BaseExpression, function: cst.FunctionDef | None) -> str | None:
        if isinstance(expr, cst.Call) and dotted_name(expr.func) == "type" and function is not None:
            return self._enclosing_class_name(function)  # type(self).x
        if not isinstance(expr, cst.Name):
            return None
        name = expr.value
        if function is not None:
            if name in self._local_names(function):
                if name == _first_param(function) and _is_classmethod(function):
                    return self._enclosing_class_name(function)  # cls.x in a classmethod
                return None
        return name if name in self.module_names else None

    def _enclosing_class_name(self, function: cst.FunctionDef) -> str | None:
        parent = self.module.grandparent(function)
        return parent.name.value if isinstance(parent, cst.ClassDef) else None

    def _local_names(self, function: cst.FunctionDef) -> set[str]:
        if function not in self._locals:
            self._locals[function] = set(bindings(function))
        return self._locals[function]

    def _global_names(self, function: cst.FunctionDef) -> set[str]:
        if function not in self._globals:
            self._globals[function] = declared_global(function)
        return self._globals[function]


def _unpacked(target: cst.BaseExpression):
    if isinstance(target, (cst.Tuple, cst.List)):
        for element in target.elements:
            yield from _unpacked(element.value)
    elif isinstance(target, cst.StarredElement):
        yield from _unpacked(target.value)
    else:
        yield target


def _first_param(function: cst.FunctionDef) -> str | None:
    params = list(function.params.posonly_params) + list(function.params.params)
    return params[0].name.value if params else None


def _is_classmethod(function: cst.FunctionDef) -> bool:
    return any(dotted_name(d.decorator) == "classmethod" for d in function.decorators)
