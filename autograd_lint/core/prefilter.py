"""The prefilter: can a file contain a finding of a rule at all? Derived from what each rule declares.

First on the text: a rule's `requires` cues (and, for a rule about Function classes, `FUNCTION_CLASS`) must
all be in the file. Then on CPython's AST (already built for the syntax check, far cheaper than libcst's
tree): the rule's `candidate`. A file no selected rule passes is never parsed with libcst, the expensive
step. Each cue is a necessary condition of its rule's findings, looser than the rule itself, so skipping
loses nothing; each is asked once per file however many rules share it.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from ..torch_api import CASTS, ORDERING_METHODS


@dataclass(frozen=True)
class TextCue:
    """Text a file must contain for a rule to find anything: one of `substrings` or a match of one of `patterns`."""

    description: str
    substrings: tuple[str, ...] = ()
    patterns: tuple[re.Pattern[str], ...] = ()

    def found_in(self, text: str) -> bool:
        # Separate patterns: one alternation of them all is several times slower to search.
        return any(substring in text for substring in self.substrings) or any(
            pattern.search(text) for pattern in self.patterns
        )


def calls(*names: str) -> TextCue:
    """A call of one of these functions or methods (`where(`, `x.masked_fill (`), by name."""
    alternatives = "|".join(re.escape(name) for name in sorted(names))
    return TextCue(f"a call of {', '.join(sorted(names))}", patterns=(re.compile(rf"\b(?:{alternatives})\s*\("),))


# A Function subclass is declared with "Function" in its bases (or subclasses one that is), or through a
# module-level alias of torch's Function (`Fn = Function`, `from torch.autograd import Function as Fn`).
FUNCTION_CLASS = TextCue(
    "a Function subclass",
    patterns=(re.compile(r"class\s+\w+\s*\([^)]*Function|=\s*[\w.]*Function\b|\bFunction\s+as\s+\w"),),
)


def defines_function_subclass(tree: ast.AST) -> bool:
    """FUNCTION_CLASS on the AST: a class with "Function" in a base, or an alias of a Function class."""
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and any("Function" in (terminal_name(base) or "") for base in node.bases):
            return True
        if isinstance(node, ast.Assign) and "Function" in (terminal_name(node.value) or ""):
            return True  # `Fn = torch.autograd.Function`, then `class X(Fn)`
        if isinstance(node, ast.ImportFrom) and any(alias.name == "Function" and alias.asname for alias in node.names):
            return True  # `from torch.autograd import Function as AutogradFn`, then `class X(AutogradFn)`
    return False


# --- AST helpers for the rules' `candidate` checks ---


def terminal_name(node: ast.AST) -> str | None:
    """`sign` for `torch.sign` and for `sign`."""
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Name):
        return node.id
    return None


ORDERING = (ast.Gt, ast.GtE, ast.Lt, ast.LtE)


def unwrap_casts(node: ast.AST) -> ast.AST:
    """`x > 0` for `(x > 0).float().to(y)`."""
    while isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in CASTS:
        node = node.func.value
    return node


def is_ordering_comparison(node: ast.AST) -> bool:
    """`x > 0`, `x.gt(0)`, cast or not."""
    node = unwrap_casts(node)
    if isinstance(node, ast.Compare):
        return any(isinstance(op, ORDERING) for op in node.ops)
    return isinstance(node, ast.Call) and terminal_name(node.func) in ORDERING_METHODS


class Prerequisites(Protocol):
    """What the prefilter reads of a rule class (`core.rule.Rule`)."""

    @classmethod
    def text_cues(cls) -> tuple[TextCue, ...]: ...

    @classmethod
    def candidate(cls, tree: ast.AST) -> bool: ...


class FilePrefilter:
    """The prefilter's answers for one file: each cue and each AST check is computed once, for every rule
    that declares it."""

    def __init__(self, text: str, tree: ast.AST | None):
        self.text = text
        self.tree = tree  # None when CPython cannot parse the file: only the text is judged
        self._cues: dict[TextCue, bool] = {}
        self._candidates: dict[Callable[[ast.AST], bool], bool] = {}

    def admits(self, rule: type[Prerequisites]) -> bool:
        if not all(self._cue(cue) for cue in rule.text_cues()):
            return False
        if self.tree is None:
            return True
        check = rule.candidate
        key = getattr(check, "__func__", check)  # the same answer for every rule inheriting one check
        if key not in self._candidates:
            self._candidates[key] = check(self.tree)
        return self._candidates[key]

    def _cue(self, cue: TextCue) -> bool:
        if cue not in self._cues:
            self._cues[cue] = cue.found_in(self.text)
        return self._cues[cue]
