"""Expected diagnostics written inline, bugbear-style.

A trailing `# AGL001:17` comment says: this line reports AGL001 at column 17 (1-based). Rule pages may
omit the column (`# AGL001`) to stay readable; fixtures always give it.
"""

from __future__ import annotations

import re

MARKER = re.compile(r"#\s*(?P<markers>AGL\d{3}(?::\d+)?(?:[,\s]+AGL\d{3}(?::\d+)?)*)\s*$")


def expected_markers(source: str) -> list[tuple[int, str, int | None]]:
    """(line, code, column or None) for every marker, in order."""
    found = []
    for number, line in enumerate(source.splitlines(), start=1):
        match = MARKER.search(line)
        if match:
            for marker in re.split(r"[,\s]+", match.group("markers")):
                code, _, column = marker.partition(":")
                found.append((number, code, int(column) if column else None))
    return sorted(found, key=lambda m: (m[0], m[1], m[2] or 0))


AUDIT_MARKER = re.compile(r"^class (?P<name>\w+)\b.*#\s*audit:\s*(?P<verdict>[a-z-]+)\s*$")


def expected_audit_verdicts(source: str) -> dict[str, str]:
    """The verdict `autograd-lint audit` must give each Function, by class name: a trailing
    `# audit: wrong-gradient` (or verified, ste, inconclusive) on the line of its top-level `class`."""
    return {
        match.group("name"): match.group("verdict")
        for match in (AUDIT_MARKER.match(line) for line in source.splitlines())
        if match
    }
