"""The package's layout holds: no import cycle, and no layer importing one built on top of it.

Read from the source with `ast`, so a violation fails here even where no test happens to import the module.
Every import counts, also one inside a function or under `TYPE_CHECKING`: a function-local import that
dodges a cycle at import time is still a cycle in the design.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import autograd_lint
from autograd_lint.io.cache import linter_fingerprint

PACKAGE = Path(autograd_lint.__file__).resolve().parent


def _module_name(path: Path) -> str:
    parts = ["autograd_lint", *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _imports(name: str) -> set[str]:
    """The package's modules that module `name` imports (`from x import y` counts as importing x.y when
    that is a module, else x)."""
    path = MODULES[name]
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            targets = [
                f"{source}.{alias.name}" if f"{source}.{alias.name}" in MODULES else source for alias in node.names
            ]
        else:
            continue
        found.update(target for target in targets if target in MODULES and target != name)
    return found


GRAPH = {name: _imports(name) for name in MODULES}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in sorted(graph[module]):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return found


def test_the_import_reader_sees_every_kind_of_import():
    assert "autograd_lint.facts.function_model" in GRAPH["autograd_lint.rules.agl002_backward_arity_mismatch"]
    assert "autograd_lint.core.rule" in GRAPH["autograd_lint.rules"]  # inside a function
    assert "autograd_lint.core.module" in GRAPH["autograd_lint.facts.function_model"]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycle():
    assert _cycles(GRAPH) == []


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


# What each layer must never import, by the first name under autograd_lint: the interfaces (the CLI, the
# library API, the output formats) and the confirm subsystem are built on the linting layers, not under them;
# core is what facts and rules stand on; a fact is shared by rules, so it never needs one; the engine, which
# runs the rules on the facts, stands on all three.
FORBIDDEN = {
    "core": {"cli", "api", "engine", "report", "confirm", "facts", "rules"},
    "torch_api": {"cli", "api", "engine", "report", "confirm", "facts", "rules"},
    "facts": {"cli", "api", "engine", "report", "confirm", "rules"},
    "rules": {"cli", "api", "engine", "report", "confirm"},
    "io": {"cli", "api", "engine", "report", "confirm", "facts", "rules"},
}


def _upward_imports() -> set[tuple[str, str]]:
    return {
        (module, imported)
        for module, imported_modules in GRAPH.items()
        for imported in imported_modules
        if _layer(imported) in FORBIDDEN.get(_layer(module), ())
    }


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_a_layer_never_imports_one_built_on_it(layer):
    assert any(_layer(module) == layer for module in MODULES)
    new = sorted((module, imported) for module, imported in _upward_imports() if _layer(module) == layer)
    assert new == [], f"{layer}/ must not import {sorted(FORBIDDEN[layer])}"


def test_the_cache_fingerprint_covers_every_module_of_the_package(monkeypatch):
    """The cache is keyed by a hash of the linter's code: an edited rule or fact, wherever it sits in the
    package, must invalidate it (a module that finds files beside itself must follow it when it moves)."""
    read = []
    original = Path.read_bytes

    def recording(path: Path) -> bytes:
        read.append(path.resolve())
        return original(path)

    monkeypatch.setattr(Path, "read_bytes", recording)
    linter_fingerprint.cache_clear()
    try:
        linter_fingerprint()
    finally:
        linter_fingerprint.cache_clear()
    assert set(read) == set(MODULES.values())
