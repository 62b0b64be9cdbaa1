"""The one record every rule, output format and integration speaks: a located finding."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import Enum


class Severity(str, Enum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True, order=True)
class Diagnostic:
    """A finding. Lines and columns are 1-based; the end is exclusive, as in ruff and SARIF.

    `message` says what is wrong here, in this code, in one short line (what `text` prints); `explanation`
    says why it matters (the consequence, torch's error) and how to fix it (what `full` adds under it).
    In a notebook, `cell` is the cell (1-based, counting every cell as Jupyter shows them) and the line and
    column are inside that cell; `cell` is None for a Python file.
    """

    path: str
    line: int
    column: int
    code: str
    name: str
    severity: Severity
    message: str
    end_line: int
    end_column: int
    explanation: str = ""
    cell: int | None = None

    def sort_key(self) -> tuple:
        return (self.path, self.cell or 0, self.line, self.column, self.code, self.message)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["severity"] = self.severity.value
        return {key: data[key] for key in JSON_FIELDS}


JSON_FIELDS = (
    "code",
    "name",
    "severity",
    "message",
    "explanation",
    "path",
    "cell",
    "line",
    "column",
    "end_line",
    "end_column",
)

# What `--confirm` concludes about a finding, in the order the output lists them; a runner result carries one,
# and the formats and statistics print them.
VERDICTS = ("confirmed", "not-reproduced", "inconclusive")


@dataclass(frozen=True)
class FileError:
    """A file that could not be linted at all (unreadable, undecodable, vanished)."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


SYNTAX_ERROR_CODE, SYNTAX_ERROR_NAME = "AGL000", "syntax-error"
INTERNAL_ERROR_CODE, INTERNAL_ERROR_NAME = "AGL999", "internal-error"
# Reported whatever the selection and never silenced by noqa: the file was not (fully) checked.
UNSUPPRESSIBLE = frozenset({SYNTAX_ERROR_CODE, INTERNAL_ERROR_CODE})
# Reported by `autograd-lint audit`, which runs every Function under torch, never by the linter's engine.
GRADIENT_MISMATCH_CODE, GRADIENT_MISMATCH_NAME = "AGL200", "gradient-mismatch"
AUDIT_CODES = frozenset({GRADIENT_MISMATCH_CODE})
# The two codes without a rule module or page: (name, summary, explanation).
SPECIAL_RULES = {
    SYNTAX_ERROR_CODE: (
        SYNTAX_ERROR_NAME,
        "the file could not be parsed, so it was not checked",
        "The file is not valid Python for the parser autograd-lint uses (CPython's own, then libcst's); "
        "nothing else in it was checked. This code cannot be deselected or silenced with noqa.",
    ),
    INTERNAL_ERROR_CODE: (
        INTERNAL_ERROR_NAME,
        "a rule failed on this file: a bug in autograd-lint",
        "A rule raised an exception on this file, so the file was not fully checked. This is a bug in "
        "autograd-lint: run with --verbose for the traceback and please report it.",
    ),
}
