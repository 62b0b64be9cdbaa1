"""Dotted module names from file paths, for resolving relative imports (no libcst needed)."""

from __future__ import annotations

import os


def module_name_for_path(path: str) -> str | None:
    """Dotted module name from the package directories (those with `__init__.py`) above `path`."""
    path = os.path.abspath(path)
    directory, filename = os.path.split(path)
    stem = os.path.splitext(filename)[0]
    parts = [] if stem == "__init__" else [stem]
    while os.path.isfile(os.path.join(directory, "__init__.py")):
        directory, package = os.path.split(directory)
        parts.insert(0, package)
        if not package:
            break
    return ".".join(parts) or None
