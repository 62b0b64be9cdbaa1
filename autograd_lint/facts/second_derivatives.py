"""Whether code takes second derivatives: where the default selection runs `SECOND_DERIVATIVE_RULES`.

A backward computed outside autograd (AGL010) is wrong only under a second derivative, so that rule is
opt-in except in a package that takes one somewhere: a `create_graph=True` backward or grad, a gradient
penalty, `gradgradcheck`, a Hessian or a nested transform. The package is the top-level one (the highest
folder reached through `__init__.py` files); a module outside any package counts alone.
"""

from __future__ import annotations

import os
import re

_SECOND_DERIVATIVE = re.compile(
    r"create_graph\s*=\s*True|\bgradgradcheck\b|(?<!def )\b(?:hessian|[hv]vp|vhp)\s*\("
    r"|\b(?:jacrev|jacfwd|grad)\s*\(\s*(?:torch\.func\.|func\.|functorch\.)?(?:jacrev|jacfwd|grad)\s*\("
)


# What every match contains, looked for first: the pattern itself tries each alternative at every position
# (1.7 s on a 10 MB file), these are searched for as words.
_WORDS_IN_A_MATCH = ("create_graph", "gradgradcheck", "hessian", "hvp", "vvp", "vhp", "jacrev", "jacfwd")
_GRAD_CALL = re.compile(r"grad\s*\(")


def _may_match(text: str) -> bool:
    return any(word in text for word in _WORDS_IN_A_MATCH) or _GRAD_CALL.search(text) is not None


def takes_second_derivatives(source: str | bytes) -> bool:
    text = source.decode("latin-1") if isinstance(source, bytes) else source
    return _may_match(text) and _SECOND_DERIVATIVE.search(text) is not None


def second_derivative_uses(source: str):
    """Where a module's text takes second derivatives, by the same definition: the offset of each match
    (`create_graph=True`, `gradgradcheck`, `hessian(`, nested `jacrev(jacrev(`), in order. Only the
    literal `create_graph=True` counts: `create_graph=create_graph` passes a caller's choice on, and
    that caller (in the package, if it takes second derivatives) writes True."""
    return [match.start() for match in _SECOND_DERIVATIVE.finditer(source)] if _may_match(source) else []


def package_root(path: str) -> str | None:
    """The top-level package folder `path` belongs to, or None for a module outside a package."""
    folder = os.path.dirname(os.path.abspath(path))
    root = None
    while os.path.isfile(os.path.join(folder, "__init__.py")):
        root = folder
        parent = os.path.dirname(folder)
        if parent == folder:
            break
        folder = parent
    return root


class SecondDerivativeScope:
    """Whether a module's package takes second derivatives anywhere, read from the package's files on
    disk (once per package and run), so a file linted alone (pre-commit) gets the same rules as in a
    run over the whole tree."""

    def __init__(self) -> None:
        self._packages: dict[str, bool] = {}

    def covers(self, path: str, source: str | bytes) -> bool:
        root = package_root(path)
        if root is None:
            return takes_second_derivatives(source)
        if root not in self._packages:
            self._packages[root] = takes_second_derivatives(source) or _any_module_takes_them(root)
        return self._packages[root]


def _any_module_takes_them(root: str) -> bool:
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = [name for name in subfolders if not name.startswith(".") and name != "__pycache__"]
        for name in files:
            if name.endswith(".py"):
                try:
                    with open(os.path.join(folder, name), "rb") as handle:
                        if takes_second_derivatives(handle.read()):
                            return True
                except OSError:  # unreadable here; the linter reports it where it lints the file
                    continue
    return False
