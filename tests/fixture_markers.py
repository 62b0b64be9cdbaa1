"""Expected diagnostics written inline: a trailing `# AGL001` comment marks a line that must be reported."""

from __future__ import annotations

import re

MARKER = re.compile(r"#\s*(?P<codes>AGL\d{3}(?:[,\s]+AGL\d{3})*)\s*$")


def expected_markers(source: str) -> list[tuple[int, str]]:
    """(line, code) for every marker, in order."""
    found = []
    for number, line in enumerate(source.splitlines(), start=1):
        match = MARKER.search(line)
        if match:
            for code in re.split(r"[,\s]+", match.group("codes")):
                found.append((number, code))
    return sorted(found)
