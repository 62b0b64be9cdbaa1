"""Which names a function binds locally, and which a module binds at its top level."""

from __future__ import annotations

import libcst as cst

from .context import per_file
from .syntax import assigned_names, dotted_name, walk


def _declared(body: cst.CSTNode, kind: type[cst.Global] | type[cst.Nonlocal]) -> set[str]:
    return {
        item.name.value for node in walk(body, into_functions=False) if isinstance(node, kind) for item in node.names
    }


@per_file  # rules ask about the same scopes again and again
def bindings(scope: cst.CSTNode) -> dict[str, list[cst.CSTNode]]:
    """Name -> the nodes that bind it directly in `scope` (a Module or FunctionDef), nested scopes excluded.

    Parameters are included for functions; `global`/`nonlocal` names are not local and are left out.
    """
    found: dict[str, list[cst.CSTNode]] = {}

    def add(name: cst.Name | str, node: cst.CSTNode) -> None:
        found.setdefault(name if isinstance(name, str) else name.value, []).append(node)

    body = scope.body if isinstance(scope, cst.FunctionDef) else scope
    if isinstance(scope, cst.FunctionDef):
        params = scope.params
        for param in (*params.posonly_params, *params.params, *params.kwonly_params):
            add(param.name, param)
        for star in (params.star_arg, params.star_kwarg):
            if isinstance(star, cst.Param):
                add(star.name, star)
    for node in walk(body, into_functions=False):
        if isinstance(node, (cst.FunctionDef, cst.ClassDef)):
            add(node.name, node)
        elif isinstance(node, cst.Assign):
            for target in node.targets:
                for name in assigned_names(target.target):
                    add(name, node)
        elif isinstance(node, (cst.AugAssign, cst.AnnAssign)):
            for name in assigned_names(node.target):
                add(name, node)
        elif isinstance(node, (cst.For, cst.CompFor)):
            for name in assigned_names(node.target):
                add(name, node)
        elif isinstance(node, cst.WithItem) and node.asname is not None:
            for name in assigned_names(node.asname.name):
                add(name, node)
        elif isinstance(node, cst.ExceptHandler) and node.name is not None and isinstance(node.name.name, cst.Name):
            add(node.name.name, node)
        elif isinstance(node, cst.NamedExpr):
            for name in assigned_names(node.target):
                add(name, node)
        elif isinstance(node, cst.Import):
            for alias in node.names:
                local = alias.asname.name if alias.asname else alias.name
                add((dotted_name(local) or "").split(".")[0], node)
        elif isinstance(node, cst.ImportFrom) and not isinstance(node.names, cst.ImportStar):
            for alias in node.names:
                local = alias.asname.name if alias.asname else alias.name
                if isinstance(local, cst.Name):
                    add(local, node)
    if isinstance(scope, cst.FunctionDef):
        for declared in declared_global(scope) | declared_nonlocal(scope):
            found.pop(declared, None)
    return found


@per_file
def declared_global(function: cst.FunctionDef) -> set[str]:
    return _declared(function.body, cst.Global)


@per_file
def declared_nonlocal(function: cst.FunctionDef) -> set[str]:
    return _declared(function.body, cst.Nonlocal)
