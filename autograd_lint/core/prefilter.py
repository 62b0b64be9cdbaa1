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

from ..torch_api import CASTS, ORDERING_METHODS, TORCH_FUNCTION_BASES


@dataclass(frozen=True)
class TextCue:
    """Text a file must contain for a rule to find anything: one of `substrings` or a match of one of `patterns`."""

    description: str
    substrings: tuple[str, ...] = ()
    patterns: tuple[re.Pattern[str], ...] = ()
    # Per pattern, words one of which every match of it contains (`required_words`): looked for first, as a
    # substring search is many times faster than a pattern that does not start with a literal. Derived from
    # the patterns unless given (the generated table gives them, so that start-up parses no pattern).
    pattern_guards: tuple[tuple[str, ...], ...] = ()

    def __post_init__(self) -> None:
        if len(self.pattern_guards) != len(self.patterns):
            object.__setattr__(self, "pattern_guards", tuple(required_words(pattern) for pattern in self.patterns))

    def found_in(self, text: str) -> bool:
        # Separate patterns: one alternation of them all is several times slower to search.
        if any(substring in text for substring in self.substrings):
            return True
        return any(
            (not guards or any(guard in text for guard in guards)) and pattern.search(text)
            for pattern, guards in zip(self.patterns, self.pattern_guards)
        )


def required_words(pattern: re.Pattern[str]) -> tuple[str, ...]:
    """Words one of which every match of `pattern` contains, the most selective such set read from its syntax
    (a run of literal characters, the alternatives of a group, a repeated part that must occur); () when no
    such set can be told (case-insensitive patterns, only classes and wildcards)."""
    if pattern.flags & re.IGNORECASE:
        return ()
    try:
        from re import _parser as parser  # type: ignore[attr-defined]
    except ImportError:  # Python 3.10
        import sre_parse as parser
    return _required(parser.parse(pattern.pattern, pattern.flags)) or ()


def _required(items: object) -> tuple[str, ...] | None:
    best: tuple[str, ...] | None = None
    run: list[str] = []

    def consider(candidate: tuple[str, ...] | None) -> None:
        nonlocal best
        # The most selective: its shortest word the longest.
        if candidate and all(candidate) and (best is None or min(map(len, candidate)) > min(map(len, best))):
            best = candidate

    def end_run() -> None:
        if run:
            consider(("".join(run),))
            run.clear()

    for operator, argument in items:  # type: ignore[attr-defined]
        kind = operator.name
        if kind == "LITERAL":
            run.append(chr(argument))
            continue
        end_run()
        if kind == "SUBPATTERN" and not argument[1] & re.IGNORECASE:
            consider(_required(argument[-1]))
        elif kind == "BRANCH":
            branches = [_required(branch) for branch in argument[1]]
            if all(branches):
                consider(tuple(sorted({word for branch in branches for word in branch or ()})))
        elif kind in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT") and argument[0] >= 1:
            consider(_required(argument[2]))
        elif kind == "IN" and all(member.name == "LITERAL" for member, _ in argument):
            consider(tuple(chr(code) for _, code in argument))
        # Anything else (a lookaround, a boundary, a class, a wildcard) requires no particular word.
    end_run()
    return best


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


def python_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node of a CPython AST (depth first): what `ast.walk` yields, about twice as fast."""
    found: list[ast.AST] = []
    stack = [tree]
    while stack:
        node = stack.pop()
        found.append(node)
        stack.extend(reversed(python_children(node)))
    return found


def python_children(node: ast.AST) -> list[ast.AST]:
    """A CPython AST node's children, in order: what `ast.iter_child_nodes` yields, without its generators."""
    children: list[ast.AST] = []
    node_type = ast.AST
    for field in node._fields:
        value = getattr(node, field, None)
        if isinstance(value, node_type):
            children.append(value)
        elif type(value) is list:
            children.extend(item for item in value if isinstance(item, node_type))
    return children


def defines_function_subclass(tree: ast.AST) -> bool:
    """Whether the Function model (`facts.function_model`) can find a Function class here, asked of CPython's
    AST: a class with a base that resolves through the file's imports and module-level aliases to one of
    `TORCH_FUNCTION_BASES`, or derives from such a class of the file. It decides as the model does, with
    two looser steps so that it never says no where the model would say yes: a name imported twice counts
    with each of its imports, and a name imported relatively (resolved there from the module's package)
    may be anything."""
    imports: dict[str, set[str]] = {}
    relative: set[str] = set()
    classes: list[ast.ClassDef] = []
    for node in python_nodes(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                local = alias.asname or alias.name.split(".")[0]
                imports.setdefault(local, set()).add(alias.name if alias.asname else local)
        elif isinstance(node, ast.ImportFrom):
            for alias in node.names:
                local = alias.asname or alias.name
                if node.level:
                    relative.add(local)
                elif alias.name != "*":
                    full = f"{node.module}.{alias.name}" if node.module else alias.name
                    imports.setdefault(local, set()).add(full)
        elif isinstance(node, ast.ClassDef):
            classes.append(node)
    if not classes:
        return False

    def resolutions(expr: ast.AST) -> set[str]:
        dotted = _dotted(expr)
        if dotted is None:
            return set()
        head, _, rest = dotted.partition(".")
        if head not in imports:
            return {dotted}
        return {f"{full}.{rest}" if rest else full for full in imports[head]}

    def may_be_torch_function(expr: ast.AST) -> bool:
        dotted = _dotted(expr)
        return dotted is not None and (
            dotted.partition(".")[0] in relative or not resolutions(expr).isdisjoint(TORCH_FUNCTION_BASES)
        )

    if isinstance(tree, ast.Module):
        for statement in tree.body:  # `Fn = torch.autograd.Function`, as the parsed module records them
            if (
                isinstance(statement, ast.Assign)
                and len(statement.targets) == 1
                and isinstance(statement.targets[0], ast.Name)
                and isinstance(statement.value, (ast.Name, ast.Attribute))
            ):
                head = (_dotted(statement.value) or "").split(".")[0]
                if head in relative:
                    relative.add(statement.targets[0].id)
                elif head in imports:
                    imports.setdefault(statement.targets[0].id, set()).update(resolutions(statement.value))
    local_functions: set[str] = set()
    pending = classes
    changed = True
    while changed:  # to a fixed point, for subclasses of the file's own Functions in any order
        changed = False
        for class_def in list(pending):
            if any(may_be_torch_function(base) or _dotted(base) in local_functions for base in class_def.bases):
                local_functions.add(class_def.name)
                pending.remove(class_def)
                changed = True
    return bool(local_functions)


def _dotted(node: ast.AST) -> str | None:
    """`a.b.c` for a Name/Attribute chain, else None (`syntax.dotted_name` on CPython's AST)."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else None
    return None


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

    def admits_text(self, cues: tuple[TextCue, ...]) -> bool:
        """Whether the text has every cue: a rule's, read before the rule is imported (`rules.text_cues`)."""
        return all(self._cue(cue) for cue in cues)

    def admits(self, rule: type[Prerequisites]) -> bool:
        if not self.admits_text(rule.text_cues()):
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
