"""AGL200 gradient-mismatch: `autograd-lint audit` ran a Function's backward against numerical derivatives
and they differ.

Computed by `confirm.audit` from running the code under torch; this class is its registry entry (for
selection, noqa, its page and the output formats), and the engine never runs it.
"""

from __future__ import annotations

from ..core.diagnostic import GRADIENT_MISMATCH_CODE, GRADIENT_MISMATCH_NAME, Severity
from ..core.rule import AuditRule


class GradientMismatch(AuditRule):
    code = GRADIENT_MISMATCH_CODE
    name = GRADIENT_MISMATCH_NAME
    severity = Severity.ERROR
    summary = "`autograd-lint audit`: backward's gradient differs from the numerical derivative of forward"
