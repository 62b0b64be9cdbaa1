"""AGL101 blanket-noqa: a `# noqa` without codes silences every rule on its line (ruff's PGH004).

Computed by `noqa.apply_noqa` once every other rule has run on the file; this class is its registry entry.
"""

from __future__ import annotations

from ..core.diagnostic import Severity
from ..core.noqa import BLANKET_NOQA
from ..core.rule import NoqaRule


class BlanketNoqa(NoqaRule):
    code = BLANKET_NOQA
    name = "blanket-noqa"
    severity = Severity.WARNING
    summary = "`# noqa` without codes that hides a finding of this linter: it silences every rule on the line"
