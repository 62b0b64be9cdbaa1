"""AGL100 unused-noqa: a `# noqa: AGLnnn` for a rule that ran and reported nothing on that line (ruff's RUF100).

Computed by `noqa.apply_noqa` once every other rule has run on the file; this class is its registry entry.
"""

from __future__ import annotations

from ..core.diagnostic import Severity
from ..core.noqa import UNUSED_NOQA
from ..core.rule import NoqaRule


class UnusedNoqa(NoqaRule):
    code = UNUSED_NOQA
    name = "unused-noqa"
    severity = Severity.WARNING
    summary = "a `# noqa` code of this linter that silences nothing on its line, or that names no rule"
