"""Text for a terminal that the text itself cannot drive.

Messages quote the linted source, `full` prints its lines and confirm verdicts quote what a harness
printed: a string literal with `\\x1b]0;title\\x07` (set the window title) or `\\x1b[?1049h` (switch to the
alternate screen) would otherwise reach the terminal raw, and a bidi override (U+202E) can make the
source shown read differently from the code (Trojan Source). Every human-readable format (`text`,
`full`, `github`) passes what it did not write itself through `escape_controls`; machine formats keep
the exact text (their encoders escape it).

As ruff does in its code frames, C0 controls and DEL are shown as their Unicode control pictures
(ESC as `␛`, BEL as `␇`): one column each, so carets stay under their span. C1 controls and the bidi
controls have no picture and are shown as Python writes them in a string (`\\x9b`, `\\u202e`).
"""

from __future__ import annotations

import re

_BIDI_CONTROLS = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"

# Tab and newline are layout, not control: `full` expands tabs itself, and a --verbose traceback spans lines.
_ESCAPES: dict[str, str] = {chr(code): chr(0x2400 + code) for code in range(0x20) if chr(code) not in "\t\n"}
_ESCAPES["\x7f"] = "\u2421"
_ESCAPES.update({chr(code): f"\\x{code:02x}" for code in range(0x80, 0xA0)})
_ESCAPES.update({character: f"\\u{ord(character):04x}" for character in _BIDI_CONTROLS})

_CONTROL = re.compile("[" + re.escape("".join(_ESCAPES)) + "]")


def escape_controls(text: str) -> str:
    """`text` with every terminal control character and bidi control replaced by a visible form."""
    return _CONTROL.sub(lambda match: _ESCAPES[match.group()], text)


def escaped_width(character: str) -> int | None:
    """How many columns `character` takes once escaped, or None when it is shown as itself."""
    shown = _ESCAPES.get(character)
    return None if shown is None else len(shown)
