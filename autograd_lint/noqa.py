"""`# noqa` (flake8 syntax) on the reported line, and a file-level `# autograd-lint: noqa`."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

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


def find_suppressions(source: str) -> Suppressions:
    found = Suppressions()
    for number, line in enumerate(source.splitlines(), start=1):
        if "#" not in line:
            continue
        file_match = _FILE_NOQA.match(line)
        if file_match:
            found.file_codes.append(_codes(file_match.group("codes")))
            continue
        line_match = _LINE_NOQA.search(line)
        if line_match:
            found.line_codes[number] = _codes(line_match.group("codes"))
    return found
