"""`# noqa` (flake8 syntax) on the reported line, and a file-level `# autograd-lint: noqa`."""

from __future__ import annotations

import io
import re
import tokenize
from dataclasses import dataclass, field
from typing import Iterator

_CODES = r"[A-Z]+[0-9]+(?:[,\s]+[A-Z]+[0-9]+)*"
_LINE_NOQA = re.compile(rf"#\s*noqa(?::[\s]?(?P<codes>{_CODES}))?", re.IGNORECASE)
_FILE_NOQA = re.compile(rf"^\s*#\s*autograd-lint:\s*noqa(?::\s*(?P<codes>{_CODES}))?\s*$", re.IGNORECASE)
_SPLIT = re.compile(r"[,\s]+")

ALL = None  # "every code" in a suppression map


def _codes(text: str | None) -> frozenset[str] | None:
    if not text:
        return ALL
    return frozenset(code.upper() for code in _SPLIT.split(text.strip()) if code)


def _matches(codes: frozenset[str] | None, code: str) -> bool:
    # flake8 matches noqa codes as prefixes (`# noqa: AGL0` covers AGL001).
    return codes is ALL or any(code.startswith(listed) for listed in codes)


@dataclass
class Suppressions:
    file_codes: list[frozenset[str] | None] = field(default_factory=list)
    line_codes: dict[int, frozenset[str] | None] = field(default_factory=dict)

    def suppresses(self, code: str, line: int) -> bool:
        if any(_matches(codes, code) for codes in self.file_codes):
            return True
        return line in self.line_codes and _matches(self.line_codes[line], code)


def _comments(source: str) -> Iterator[tuple[int, str, bool]]:
    """(line, comment text, whether the comment is alone on its line) for real comments, not strings."""
    try:
        for token in tokenize.generate_tokens(io.StringIO(source).readline):
            if token.type == tokenize.COMMENT:
                alone = not token.line[: token.start[1]].strip()
                yield token.start[0], token.string, alone
    except (tokenize.TokenError, SyntaxError):
        return


def find_suppressions(source: str) -> Suppressions:
    found = Suppressions()
    for number, comment, alone in _comments(source):
        file_match = _FILE_NOQA.match(comment) if alone else None
        if file_match:
            found.file_codes.append(_codes(file_match.group("codes")))
            continue
        line_match = _LINE_NOQA.search(comment)
        if line_match:
            found.line_codes[number] = _codes(line_match.group("codes"))
    return found
