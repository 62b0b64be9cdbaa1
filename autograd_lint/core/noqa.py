"""`# noqa` (flake8 syntax) on the reported line, a file-level `# autograd-lint: noqa`, the checks of noqa
comments themselves (AGL100 unused-noqa, AGL101 blanket-noqa) and `--add-noqa`.

Where a comment cannot follow the reported line, the directive goes where ruff looks for it: a line inside
a multi-line string, or one continued with a backslash, is covered by the noqa at the end of the line the
string or the continuation ends on.
"""

from __future__ import annotations

import io
import re
import tokenize
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from .diagnostic import AUDIT_CODES, UNSUPPRESSIBLE, Diagnostic, Severity

_CODES = r"[A-Z]+[0-9]+(?:[,\s]+[A-Z]+[0-9]+)*"
_LINE_NOQA = re.compile(rf"#\s*noqa(?::[\s]?(?P<codes>{_CODES}))?", re.IGNORECASE)
_FILE_NOQA = re.compile(rf"^\s*#\s*autograd-lint:\s*noqa(?::\s*(?P<codes>{_CODES}))?\s*$", re.IGNORECASE)
_SPLIT = re.compile(r"[,\s]+")

OUR_PREFIX = "AGL"
UNUSED_NOQA, BLANKET_NOQA = "AGL100", "AGL101"
NOQA_RULES = frozenset({UNUSED_NOQA, BLANKET_NOQA})  # computed here, after every other rule ran

ALL = None  # "every code" in a suppression map


def _codes(text: str | None) -> tuple[str, ...] | None:
    if not text:
        return ALL
    return tuple(dict.fromkeys(code.upper() for code in _SPLIT.split(text.strip()) if code))


def _matches(codes: tuple[str, ...] | None, code: str) -> bool:
    # flake8 matches noqa codes as prefixes (`# noqa: AGL0` covers AGL001).
    return codes is ALL or any(code.startswith(listed) for listed in codes)


@dataclass(frozen=True)
class Directive:
    """One line's `# noqa`: where it is (1-based line, 0-based columns of the directive's text) and its codes."""

    line: int
    start: int
    end: int
    codes: tuple[str, ...] | None  # None: a bare `# noqa`, every code


@dataclass
class Suppressions:
    file_codes: list[tuple[str, ...] | None] = field(default_factory=list)
    directives: dict[int, Directive] = field(default_factory=dict)
    # A line a comment cannot end (inside a multi-line string, continued by a backslash) -> the line that can.
    moved: dict[int, int] = field(default_factory=dict)

    def noqa_line(self, line: int) -> int:
        """The line whose `# noqa` covers a finding reported on `line`."""
        while line in self.moved:
            line = self.moved[line]
        return line

    def directive_for(self, line: int) -> Directive | None:
        return self.directives.get(self.noqa_line(line))

    def suppresses(self, code: str, line: int) -> bool:
        if any(_matches(codes, code) for codes in self.file_codes):
            return True
        directive = self.directive_for(line)
        return directive is not None and _matches(directive.codes, code)


def _scan(source: str) -> tuple[list[tuple[int, int, str, bool]], dict[int, int]]:
    """Real comments (line, column, text, alone on its line), not strings, and the lines a comment cannot end."""
    comments: list[tuple[int, int, str, bool]] = []
    moved: dict[int, int] = {}
    skip = {tokenize.NL, tokenize.NEWLINE, tokenize.COMMENT, tokenize.INDENT, tokenize.DEDENT}
    fstring_start, fstring_end = getattr(tokenize, "FSTRING_START", None), getattr(tokenize, "FSTRING_END", None)
    open_fstrings: list[int] = []
    previous = None  # the last token of the logical line so far
    try:
        for token in tokenize.generate_tokens(io.StringIO(source).readline):
            if token.type == tokenize.COMMENT:
                alone = not token.line[: token.start[1]].strip()
                comments.append((token.start[0], token.start[1], token.string, alone))
            if token.type in (tokenize.NL, tokenize.NEWLINE):
                previous = None
                continue
            if token.type in skip or token.type == tokenize.ENDMARKER:
                continue
            if previous is not None and token.start[0] > previous.end[0]:
                for line in range(previous.end[0], token.start[0]):  # a backslash continuation
                    moved[line] = token.start[0]
            if token.type == fstring_start:
                open_fstrings.append(token.start[0])
            elif token.type == fstring_end and open_fstrings:
                for line in range(open_fstrings.pop(), token.end[0]):
                    moved[line] = token.end[0]
            elif token.start[0] < token.end[0] and not open_fstrings:  # a multi-line string
                for line in range(token.start[0], token.end[0]):
                    moved[line] = token.end[0]
            previous = token
    except (tokenize.TokenError, SyntaxError):
        pass
    return comments, moved


def find_suppressions(source: str) -> Suppressions:
    comments, moved = _scan(source)
    found = Suppressions(moved=moved)
    for number, column, comment, alone in comments:
        file_match = _FILE_NOQA.match(comment) if alone else None
        if file_match:
            found.file_codes.append(_codes(file_match.group("codes")))
            continue
        line_match = _LINE_NOQA.search(comment)
        if line_match:
            found.directives[number] = Directive(
                number, column + line_match.start(), column + line_match.end(), _codes(line_match.group("codes"))
            )
    return found


def apply_noqa(
    source: str, path: str, diagnostics: list[Diagnostic], selected: list[str], rule_codes: Iterable[str]
) -> list[Diagnostic]:
    """The diagnostics no noqa comment silences, plus the checks of the comments themselves when AGL100 or
    AGL101 is in `selected` (the codes that ran on this file, after selection and per-file ignores);
    `rule_codes` are every rule's, for telling an unknown code in a comment from one that did not fire."""
    checks = NOQA_RULES.intersection(selected)
    if not diagnostics and not checks:
        return diagnostics
    lowered = source.lower()
    if "noqa" not in lowered:  # most files: nothing to tokenize for
        return sorted(diagnostics, key=Diagnostic.sort_key)
    if not diagnostics and OUR_PREFIX.lower() not in lowered:
        return []  # with no finding to hide, only a directive naming one of our codes can be reported (AGL100)
    suppressions = find_suppressions(source)
    kept: list[Diagnostic] = []
    used: dict[int, set[str]] = {}  # directive line -> the listed codes that silenced something
    hidden_by_bare: dict[int, set[str]] = {}  # a bare `# noqa`'s line -> the codes of the findings it hides
    for diagnostic in diagnostics:
        if diagnostic.code in UNSUPPRESSIBLE:
            kept.append(diagnostic)
            continue
        directive = suppressions.directive_for(diagnostic.line)
        if directive is not None and _matches(directive.codes, diagnostic.code):
            used.setdefault(directive.line, set()).update(
                listed for listed in directive.codes or () if diagnostic.code.startswith(listed)
            )
            if directive.codes is None:
                hidden_by_bare.setdefault(directive.line, set()).add(diagnostic.code)
        elif not any(_matches(codes, diagnostic.code) for codes in suppressions.file_codes):
            kept.append(diagnostic)
    # A file that was not (fully) checked says nothing about which comments are needed.
    if checks and not any(d.code in UNSUPPRESSIBLE for d in diagnostics):
        for finding in _noqa_findings(path, suppressions, used, hidden_by_bare, set(selected), checks, rule_codes):
            directive = suppressions.directives[finding.line]
            # Only the directive's own codes (`# noqa: AGL100`) or a file-level noqa silence these: a bare
            # `# noqa` must not hide the report that it is bare.
            if not any(_matches(codes, finding.code) for codes in suppressions.file_codes) and not (
                directive.codes and _matches(directive.codes, finding.code)
            ):
                kept.append(finding)
    return sorted(kept, key=Diagnostic.sort_key)


def _noqa_findings(
    path: str,
    suppressions: Suppressions,
    used: dict[int, set[str]],
    hidden_by_bare: dict[int, set[str]],
    selected: set[str],
    checks: frozenset[str],
    rule_codes: Iterable[str],
) -> Iterator[Diagnostic]:
    for line, directive in sorted(suppressions.directives.items()):
        if directive.codes is None:
            # Only a bare noqa that hides one of this linter's findings: one that hides nothing of ours is
            # another tool's business (ruff's PGH004 reports those in every file), and reporting it would
            # flood a codebase with warnings about comments that have nothing to do with gradients.
            if BLANKET_NOQA in checks and line in hidden_by_bare:
                codes = ", ".join(sorted(hidden_by_bare[line]))
                yield _at(
                    directive,
                    path,
                    BLANKET_NOQA,
                    "blanket-noqa",
                    f"`# noqa` without codes hides {codes} here",
                    f"A bare noqa silences every rule on its line: it hides this finding and any later one, "
                    f"unseen. If the finding is deliberate, name it (`# noqa: {codes}`); if the comment is for "
                    f"another tool, name that tool's codes.",
                )
            continue
        if UNUSED_NOQA not in checks:
            continue
        unused, unknown = [], []
        for listed in directive.codes:
            if not listed.startswith(OUR_PREFIX) or listed in used.get(line, ()):
                continue  # another tool's code (F401, E501) is that tool's to judge, as ruff's `external`
            covered = [code for code in rule_codes if code.startswith(listed)]
            if not covered:
                if not any(code.startswith(listed) for code in UNSUPPRESSIBLE | NOQA_RULES):
                    unknown.append(listed)
            elif all(code in selected for code in covered) and not (NOQA_RULES | AUDIT_CODES).intersection(covered):
                # (the audit's codes are never reported by a lint run, so it cannot tell whether they are used)
                unused.append(listed)  # every rule it names ran here and none reported on this line
        if unused or unknown:
            parts = [
                f"{kind}: {', '.join(f'`{code}`' for code in codes)}"
                for kind, codes in (("unused", unused), ("unknown", unknown))
                if codes
            ]
            yield _at(
                directive,
                path,
                UNUSED_NOQA,
                "unused-noqa",
                f"unused `noqa` directive ({'; '.join(parts)})",
                "A noqa code that silences nothing today silences the next real finding on this line without "
                "anyone noticing, and an unknown code never silenced anything; remove those codes (or the "
                "comment), or correct a misspelled one.",
            )


def _at(directive: Directive, path: str, code: str, name: str, message: str, explanation: str) -> Diagnostic:
    return Diagnostic(
        path,
        directive.line,
        directive.start + 1,
        code,
        name,
        Severity.WARNING,
        message,
        directive.line,
        directive.end + 1,
        explanation,
    )


def add_noqa(source: str, diagnostics: list[Diagnostic]) -> tuple[str, int]:
    """`source` with `# noqa: CODE` on the line that silences each finding, merged into a noqa comment already
    there (ruff's `--add-noqa`), and the number of lines changed. Findings noqa cannot silence (AGL000, AGL999)
    and the noqa checks themselves are left alone."""
    suppressions = find_suppressions(source)
    wanted: dict[int, list[str]] = {}
    for diagnostic in diagnostics:
        if diagnostic.code in UNSUPPRESSIBLE or diagnostic.code in NOQA_RULES:
            continue
        if suppressions.suppresses(diagnostic.code, diagnostic.line):
            continue
        wanted.setdefault(suppressions.noqa_line(diagnostic.line), []).append(diagnostic.code)
    if not wanted:
        return source, 0
    lines = source.splitlines(keepends=True)
    for number, codes in wanted.items():
        text = lines[number - 1]
        body = text.rstrip("\r\n")
        ending = text[len(body) :]
        directive = suppressions.directives.get(number)
        if directive is not None:
            merged = tuple(dict.fromkeys((directive.codes or ()) + tuple(sorted(codes))))
            body = f"{body[: directive.start]}# noqa: {', '.join(merged)}{body[directive.end :]}"
        else:
            body = body.rstrip(" \t") + f"  # noqa: {', '.join(sorted(set(codes)))}"
        lines[number - 1] = body + ending
    return "".join(lines), len(wanted)
