"""Line breaks as CPython and libcst count lines: `\r\n`, `\r` and `\n`, not the other characters
`str.splitlines` breaks at (a form feed or `\x1c` inside a line must not start a new one)."""

from __future__ import annotations

import re

LINE_BREAK = re.compile(r"\r\n|\r|\n")


def line_starts(text: str) -> list[int]:
    """The offset in `text` where each of its lines starts."""
    return [0, *(match.end() for match in LINE_BREAK.finditer(text))]
