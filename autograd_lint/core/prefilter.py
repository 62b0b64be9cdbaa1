"""The prefilter: can a file contain a finding of a rule at all? Derived from what each rule declares.

First on the text: a rule's `requires` cues (and, for a rule about Function classes, `FUNCTION_CLASS`) must
all be in the file. Then on CPython's AST (already built for the syntax check, far cheaper than libcst's
tree): the rule's `candidate`. A file no selected rule passes is never parsed with libcst, the expensive
step. Each cue is a necessary condition of its rule's findings, looser than the rule itself, so skipping
loses nothing; each is asked once per file however many rules share it.
"""

from __future__ import annotations

import ast
import bisect
import re
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

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
    # Per pattern, the name of a `FOLLOW_UPS` check its matches must also pass ("": none), for a pattern too loose
    # on its own: `mask = x > 0` is in many files, a product with `mask` in few.
    follow_ups: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if len(self.pattern_guards) != len(self.patterns):
            object.__setattr__(self, "pattern_guards", tuple(required_words(pattern) for pattern in self.patterns))
        if len(self.follow_ups) != len(self.patterns):
            object.__setattr__(self, "follow_ups", ("",) * len(self.patterns))

    def found_in(self, text: str) -> bool:
        if any(substring in text for substring in self.substrings):
            return True
        return any(
            (not guards or any(guard in text for guard in guards)) and search(text)
            for search, guards in self._searches()
        )

    def _searches(self) -> list[tuple[Callable[[str], bool], tuple[str, ...]]]:
        """What `found_in` runs, with the same answers as searching each pattern: derived on first use (a run
        that reads no cue compiles nothing more), see `fast_searches`."""
        searches = self.__dict__.get("_derived_searches")
        if searches is None:
            searches = [
                (search if not follow_up else _followed(search, pattern, FOLLOW_UPS[follow_up]), words)
                for pattern, guards, follow_up in zip(self.patterns, self.pattern_guards, self.follow_ups)
                for search, words in fast_searches(pattern, guards)
            ]
            object.__setattr__(self, "_derived_searches", searches)
        return searches


def fast_searches(
    pattern: re.Pattern[str], guards: tuple[str, ...]
) -> list[tuple[Callable[[str], bool], tuple[str, ...]]]:
    """Searches, each with its guard words, one of which finds a match exactly where `pattern.search` does, and
    faster. Python's regular expressions find a literal start with a fast scan and try every position of the
    text otherwise, so: a pattern's top-level alternatives are searched apart (`class ...|= ...|Function as`:
    each has its literal start and its own guard words); a pattern that starts with assertions (`\\b`, a
    lookbehind) is searched without them, each match checked with them (`\\bwhere\\s*\\(`: 5x faster); a
    pattern anchored at a line's start that stays on its line is searched from its first literal, each line
    found checked from its start (`^[ \\t]*return...`: 4x). Searched over torch's source, the 15 real
    repositories and the fixtures, every cue gives the same answer on every file as its patterns."""
    if not isinstance(pattern, re.Pattern):
        return [(lambda text: pattern.search(text) is not None, guards)]  # a stand-in (tests)
    branches = _top_level_alternatives(pattern.pattern)
    if len(branches) == 1:
        return [(_search_of(pattern.pattern, pattern.flags), guards)]
    searches = []
    for branch in branches:
        compiled = re.compile(branch, pattern.flags)
        searches.append((_search_of(branch, pattern.flags), required_words(compiled)))
    return searches


# Zero-width assertions a pattern may start with: a word boundary, a lookbehind or a lookahead.
_LEADING_ASSERTION = re.compile(r"\\b|\(\?<?[=!]")


def _search_of(text: str, flags: int) -> Callable[[str], bool]:
    compiled = re.compile(text, flags)
    lead = _line_lead(text, flags)
    if lead is not None:
        return _line_search(compiled, re.compile(lead, flags))
    rest = _after_leading_assertions(text)
    if rest is None:
        return lambda searched: compiled.search(searched) is not None
    return _asserted_search(compiled, re.compile(rest, flags))


def _after_leading_assertions(text: str) -> str | None:
    """The pattern's text after the zero-width assertions it starts with; None when it starts with none."""
    index = 0
    while (assertion := _LEADING_ASSERTION.match(text, index)) is not None:
        index = assertion.end() if assertion.group(0) == "\\b" else _element_end(text, index)
    return text[index:] if 0 < index < len(text) else None


def _asserted_search(whole: re.Pattern[str], rest: re.Pattern[str]) -> Callable[[str], bool]:
    """A search for `whole` by `rest`, the pattern without its leading assertions: `whole` matches at a position
    exactly where `rest` does and the assertions hold there, and `rest` often starts with a literal, which
    is searched for by a fast scan (`\\bwhere\\s*\\(`: 5x faster than the pattern tried at every position)."""

    def search(searched: str) -> bool:
        position = 0
        while (found := rest.search(searched, position)) is not None:
            if whole.match(searched, found.start()) is not None:
                return True
            position = found.start() + 1
        return False

    return search


def _line_search(whole: re.Pattern[str], lead: re.Pattern[str]) -> Callable[[str], bool]:
    """A search for `whole`, a pattern anchored at a line's start that stays on the line, by `lead`, the part of it
    from its first literal on: the lines `lead` is found on are the only ones `whole` can match at the start of
    (`^[ \\t]*return...`: a regular expression tries a line-start anchor at every position of the text)."""

    def search(searched: str) -> bool:
        return next(_line_matches(whole, lead, searched), None) is not None

    return search


def _line_matches(whole: re.Pattern[str], lead: re.Pattern[str], text: str) -> Iterator[re.Match[str]]:
    """`whole.finditer(text)` for a pattern anchored at a line's start that stays on the line: at most one match
    a line, on the lines `lead` is found on (see `_line_search`)."""
    position = 0
    while (found := lead.search(text, position)) is not None:
        line_start = text.rfind("\n", 0, found.start()) + 1
        match = whole.match(text, line_start)
        if match is not None:
            yield match
        position = text.find("\n", found.start()) + 1
        if position == 0:
            return


def _followed(
    search: Callable[[str], bool], pattern: re.Pattern[str], follow_up: Callable[[str, Iterator[re.Match[str]]], bool]
) -> Callable[[str], bool]:
    """`search`, then, where it finds the pattern, `follow_up` of the text and every match of the pattern in it."""
    lead = _line_lead(pattern.pattern, pattern.flags)
    lead_pattern = re.compile(lead, pattern.flags) if lead is not None else None

    def followed(text: str) -> bool:
        if not search(text):
            return False
        matches = _line_matches(pattern, lead_pattern, text) if lead_pattern is not None else pattern.finditer(text)
        return follow_up(text, matches)

    return followed


# One element of a pattern's text: an escape, a class, a group (its nesting skipped by `_element_end`) or a
# character, then its quantifier.
_QUANTIFIER = re.compile(r"(?:[*+?]|\{\d*(?:,\d*)?\})[?+]?")
_SPECIAL = set(".^$*+?{}[]\\|()")


def _line_lead(text: str, flags: int) -> str | None:
    """For a pattern that matches only from a line's start (`^` in MULTILINE mode) and never past its end, the
    pattern's text from its first literal character on (which every match contains, on its line); None for
    any other pattern, or one with no such literal."""
    if not (flags & re.MULTILINE and text.startswith("^")) or not _stays_on_one_line(text, flags):
        return None
    index = 1
    while index < len(text):
        end = _element_end(text, index)
        quantifier = _QUANTIFIER.match(text, end)
        element = text[index:end]
        literal = (len(element) == 1 and element not in _SPECIAL) or (
            len(element) == 2 and element[0] == "\\" and not element[1].isalnum()
        )
        if literal and (quantifier is None or quantifier.group(0).startswith("+")):
            return text[index:]
        if element in ("^", "$", "|") or element.startswith("(?"):
            return None  # an anchor or a group whose kind this reading does not follow
        index = quantifier.end() if quantifier else end
    return None


def _element_end(text: str, index: int) -> int:
    character = text[index]
    if character == "\\":
        return index + 2
    if character == "[":
        index += 1
        if text[index : index + 1] == "^":
            index += 1
        index += 1  # the first member, even a ]
        while text[index] != "]":
            index += 2 if text[index] == "\\" else 1
        return index + 1
    if character == "(":
        depth = 0
        while True:
            if text[index] == "\\":
                index += 2
                continue
            if text[index] == "[":
                index = _element_end(text, index)
                continue
            depth += {"(": 1, ")": -1}.get(text[index], 0)
            index += 1
            if depth == 0:
                return index
    return index + 1


def _stays_on_one_line(text: str, flags: int) -> bool:
    """Whether no match of the pattern can take in a line break (what it asserts around itself may look past one)."""
    parser, constants = _regex_parser()
    newline = ord("\n")
    line_breaking = {constants.CATEGORY_SPACE, constants.CATEGORY_NOT_DIGIT, constants.CATEGORY_NOT_WORD}
    line_breaking |= {constants.CATEGORY_LINEBREAK}

    def in_set(items: list) -> bool:  # whether a class matches a line break
        negated = any(operator is constants.NEGATE for operator, _ in items)
        hit = False
        for operator, argument in items:
            if operator is constants.LITERAL:
                hit = hit or argument == newline
            elif operator is constants.RANGE:
                hit = hit or argument[0] <= newline <= argument[1]
            elif operator is constants.CATEGORY:
                if argument not in line_breaking and argument not in (
                    constants.CATEGORY_DIGIT,
                    constants.CATEGORY_WORD,
                    constants.CATEGORY_NOT_SPACE,
                    constants.CATEGORY_NOT_LINEBREAK,
                ):
                    return True  # a category this reading does not know: assume the worst
                hit = hit or argument in line_breaking
            elif operator is not constants.NEGATE:
                return True
        return hit != negated

    def stays(items) -> bool:
        for operator, argument in items:
            if operator is constants.LITERAL:
                if argument == newline:
                    return False
            elif operator is constants.NOT_LITERAL:
                if argument != newline:
                    return False
            elif operator is constants.ANY:
                if flags & re.DOTALL:
                    return False
            elif operator is constants.IN:
                if in_set(argument):
                    return False
            elif operator in (constants.MAX_REPEAT, constants.MIN_REPEAT):
                if not stays(argument[2]):
                    return False
            elif operator is constants.SUBPATTERN:
                if not stays(argument[-1]):
                    return False
            elif operator is constants.BRANCH:
                if not all(stays(branch) for branch in argument[1]):
                    return False
            elif operator not in (constants.AT, constants.ASSERT, constants.ASSERT_NOT):
                return False  # a back reference, an atomic group: not read here
        return True

    return stays(parser.parse(text, flags))


def _top_level_alternatives(pattern: str) -> list[str]:
    """`pattern` cut at each `|` outside brackets, groups and escapes (read element by element, as `_line_lead`
    reads them): alternatives any of which matching is the pattern matching (a pattern that starts with inline
    flags is kept whole)."""
    if pattern.startswith("(?") and pattern[2:3].isalpha():
        return [pattern]
    branches, start, index = [], 0, 0
    while index < len(pattern):
        end = _element_end(pattern, index)
        if pattern[index] == "|":
            branches.append(pattern[start:index])
            start = end
        index = end
    branches.append(pattern[start:])
    return branches


def _regex_parser() -> tuple[Any, Any]:
    """Python's regular-expression parser and its constants (`re._parser`; `sre_parse` before 3.11)."""
    try:
        from re import _constants as constants  # type: ignore[attr-defined]
        from re import _parser as parser  # type: ignore[attr-defined]
    except ImportError:  # Python 3.10
        import sre_constants as constants
        import sre_parse as parser
    return parser, constants


def required_words(pattern: re.Pattern[str]) -> tuple[str, ...]:
    """Words one of which every match of `pattern` contains, the most selective such set read from its syntax
    (a run of literal characters, the alternatives of a group, a repeated part that must occur); () when no
    such set can be told (case-insensitive patterns, only classes and wildcards)."""
    if pattern.flags & re.IGNORECASE:
        return ()
    parser, _ = _regex_parser()
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


# --- follow-ups: what a cue's pattern is worth only with (`TextCue.follow_ups`) ---

# What may stand between a product's `*` and the factor after it (whitespace, a comment, a line continued by a
# backslash, opening parentheses) or a factor and the `*` after it (closing ones). A comment is read to its line's
# end: read in pieces, a run of `#` could be cut in exponentially many ways.
_COMMENT = r"#[^\n]*(?![^\n])"
_GAP_AFTER = r"(?:\s|\\|" + _COMMENT + r"|\()*"
_GAP_BEFORE = r"(?:\s|\\|" + _COMMENT + r"|\))*"
# A call's parentheses, nested three deep (deeper ones are taken as balanced: see `_is_a_factor`).
_PARENTHESES = r"\((?:[^()]|\((?:[^()]|\([^()]*\))*\))*\)"
# Pattern texts, compiled on first use (`re` keeps them): a run that reads no such cue compiles none of them.
_AFTER_STAR = r"\*=?" + _GAP_AFTER + r"(\w+)"  # `x * mask`, `x *= (mask`, `x * positive(h)`
# After a name: its call's parentheses, methods called on it (`.float()`, `.to(x)`), then `*`
_BEFORE_STAR = r"(?:\s*" + _PARENTHESES + r")?(?:\s*\.\s*\w+\s*" + _PARENTHESES + r")*" + _GAP_BEFORE + r"\*"
_MULTIPLY_CALL = r"mul(?:_|tiply)?\s*(?=\()"  # `x.mul(mask)`, `torch.mul(x, mask)`, `multiply(`
_WORD = r"\w+"
# `<`, `>`, `<=`, `>=` (not `->`, `<<`, `>>`), or a comparison method
_A_COMPARISON = r"(?<![-<>=!])[<>]=?(?![<>])|\.(?:" + "|".join(sorted(ORDERING_METHODS)) + r")\s*\("
_ASSIGNED_NAMES = r"(\w+)[ \t]*=(?!=)"  # `a = b = x > 0`: a and b (and keywords: more is safe)
_MODULE_FUNCTION = r"^def[ \t]+(\w+)"
_MODULE_FUNCTION_LEAD = r"def[ \t]+(\w+)"  # searched by its literal start


def _is_a_factor(text: str, names: set[str]) -> bool:
    """Whether one of `names` may be a factor of a product in `text` (itself, called, or with methods called on
    it): right after `*` or `*=`, right before a `*`, or in the arguments of `mul` or `multiply`."""
    if not names:
        return False
    if any(found.group(1) in names for found in re.finditer(_AFTER_STAR, text)):
        return True
    for call in re.finditer(_MULTIPLY_CALL, text):
        arguments = re.compile(_PARENTHESES).match(text, call.end())
        if arguments is None or not names.isdisjoint(re.findall(_WORD, arguments.group())):
            return True  # (arguments nested deeper than the pattern reads may hold any name)
    before_star = re.compile(_BEFORE_STAR)
    return any(
        before_star.match(text, found.end()) is not None
        for name in names
        for found in re.finditer(re.escape(name) + r"\b", text)
    )


def _assigned_name_is_a_factor(text: str, matches: Iterator[re.Match[str]]) -> bool:
    """Matches at a line's start that assign a name (`mask = x > 0`, `a = b = x > 0`): one of the names is a
    factor."""
    return _is_a_factor(text, {name for match in matches for name in re.findall(_ASSIGNED_NAMES, match.group())})


def _compared_name_is_a_factor(text: str, matches: Iterator[re.Match[str]]) -> bool:
    """Matches that assign a parenthesized value their line does not close (`mask = (`): one of the names whose
    value (up to its closing parenthesis, on a later line) compares is a factor."""
    names = set()
    for match in matches:
        value = re.compile(_PARENTHESES).match(text, match.group().index("(", match.group().index("=")) + match.start())
        if value is None or re.search(_A_COMPARISON, value.group()):  # (nested deeper than read: it may compare)
            names.update(re.findall(_ASSIGNED_NAMES, match.group()))
    return _is_a_factor(text, names)


def _module_function_is_a_factor(text: str, matches: Iterator[re.Match[str]]) -> bool:
    """Matches in module functions (`return x > 0`): one of those functions is a factor. A match's function is
    the last one defined at column 0 before it (a string's line starting `def` in between would hide it)."""
    functions = [
        (found.start(), found.group(1))
        for found in _line_matches(re.compile(_MODULE_FUNCTION, re.MULTILINE), re.compile(_MODULE_FUNCTION_LEAD), text)
    ]
    starts = [start for start, _ in functions]
    names = set()
    for match in matches:
        index = bisect.bisect_right(starts, match.start()) - 1
        if index >= 0:
            names.add(functions[index][1])
    return _is_a_factor(text, names)


NAME_IS_A_FACTOR = "the assigned name is a factor of a product"
COMPARED_NAME_IS_A_FACTOR = "the name assigned a comparison is a factor of a product"
FUNCTION_IS_A_FACTOR = "the module function is a factor of a product"
FOLLOW_UPS: dict[str, Callable[[str, Iterator[re.Match[str]]], bool]] = {
    NAME_IS_A_FACTOR: _assigned_name_is_a_factor,
    COMPARED_NAME_IS_A_FACTOR: _compared_name_is_a_factor,
    FUNCTION_IS_A_FACTOR: _module_function_is_a_factor,
}


# A Function subclass is declared with "Function" in its bases (or subclasses one that is), or through a
# module-level alias of torch's Function (`Fn = Function`, `from torch.autograd import Function as Fn`).
FUNCTION_CLASS = TextCue(
    "a Function subclass",
    patterns=(re.compile(r"class\s+\w+\s*\([^)]*Function|=\s*[\w.]*Function\b|\bFunction\s+as\s+\w"),),
)


# Fields whose nodes are leaves no check looks for by walking: a name's load or store context, an operator (a
# check reads `node.op`). A third of a tree's nodes; the walks below leave them out.
_LEAF_FIELDS = frozenset({"ctx", "op", "ops"})
_WALKED_FIELDS: dict[type, tuple[str, ...]] = {}  # per node type, its other fields, last to first


def _walked_fields(kind: type) -> tuple[str, ...]:
    fields = _WALKED_FIELDS.get(kind)
    if fields is None:
        fields = _WALKED_FIELDS[kind] = tuple(
            f for f in reversed(getattr(kind, "_fields", ())) if f not in _LEAF_FIELDS
        )
    return fields


# Each walked tree's nodes, for the next rule's candidate that walks it. Kept without the tree itself, which
# the nodes below it do not reference: an entry goes when its tree does.
_NODES_BELOW: weakref.WeakKeyDictionary[ast.AST, list[ast.AST]] = weakref.WeakKeyDictionary()


def python_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node of a CPython AST but the leaves of `_LEAF_FIELDS`, depth first in source order: what `ast.walk`
    yields less those, 2.4x faster than a walk by `python_children`, and walked once per tree."""
    below = _NODES_BELOW.get(tree)
    if below is None:
        below = _NODES_BELOW[tree] = _walked_nodes(tree)[1:]
    return [tree, *below]


def _walked_nodes(tree: ast.AST) -> list[ast.AST]:
    found: list[ast.AST] = []
    stack = [tree]
    node_type = ast.AST
    while stack:
        node = stack.pop()
        found.append(node)
        for field in _walked_fields(type(node)):  # pushed last to first: popped in source order
            value = getattr(node, field, None)
            if type(value) is list:
                stack.extend(item for item in reversed(value) if isinstance(item, node_type))
            elif isinstance(value, node_type):
                stack.append(value)
    return found


def python_children(node: ast.AST) -> list[ast.AST]:
    """A CPython AST node's children in order but the leaves of `_LEAF_FIELDS`: what `ast.iter_child_nodes`
    yields less those, without its generators."""
    children: list[ast.AST] = []
    node_type = ast.AST
    for field in reversed(_walked_fields(type(node))):
        value = getattr(node, field, None)
        if isinstance(value, node_type):
            children.append(value)
        elif type(value) is list:
            children.extend(item for item in value if isinstance(item, node_type))
    return children


# The fields of a statement, an except clause or a match case that hold statements (a lambda's or an if
# expression's `body` holds an expression: only lists are followed).
STATEMENT_FIELDS = ("body", "orelse", "finalbody", "handlers", "cases")


def python_statements(tree: ast.AST) -> list[ast.AST]:
    """The statements of a CPython AST at any depth (with its except clauses and match cases), in source order:
    the nodes an import or a class definition can be, without the expressions, most of a tree's nodes."""
    found: list[ast.AST] = []
    stack = [tree]
    while stack:
        node = stack.pop()
        found.append(node)
        children: list[ast.AST] = []
        for field in STATEMENT_FIELDS:
            value = getattr(node, field, None)
            if type(value) is list:
                children.extend(value)
        stack.extend(reversed(children))
    return found


def record_python_import(node: ast.Import | ast.ImportFrom, imports: dict[str, set[str]], relative: set[str]) -> None:
    """What an import statement of CPython's AST binds: local name -> the dotted names it may stand for (a name
    imported twice keeps both), and in `relative` the names imported relatively (which may be anything)."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            local = alias.asname or alias.name.split(".")[0]
            imports.setdefault(local, set()).add(alias.name if alias.asname else local)
        return
    for alias in node.names:
        local = alias.asname or alias.name
        if node.level:
            relative.add(local)
        elif alias.name != "*":
            imports.setdefault(local, set()).add(f"{node.module}.{alias.name}" if node.module else alias.name)


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
    for node in python_statements(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            record_python_import(node, imports, relative)
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


def number_literal(node: ast.AST) -> float | None:
    """The value of a number literal, signs included, as `core.syntax.literal_number` reads libcst's; None for
    anything else, a bool or a complex among them."""
    negative = False
    while isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        negative ^= isinstance(node.op, ast.USub)
        node = node.operand
    value = node.value if isinstance(node, ast.Constant) else None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return -float(value) if negative else float(value)
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
        self._cues: dict[int, bool] = {}  # by the cue's identity: hashing a cue hashes its every field
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
        found = self._cues.get(id(cue))
        if found is None:
            found = self._cues[id(cue)] = cue.found_in(self.text)
        return found
