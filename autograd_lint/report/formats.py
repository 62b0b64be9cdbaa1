"""Machine-readable reports: JSON, JSON lines, SARIF 2.1.0, GitHub workflow commands, GitLab code quality.

Every format speaks about the same diagnostics; paths in the CI formats (SARIF, GitHub, GitLab) are
relative to the repository root (the nearest directory with `.git` above the current one), because
that is what code scanning, workflow annotations and merge-request widgets resolve them against.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from ..core.diagnostic import SPECIAL_RULES, Diagnostic, FileError, Severity
from ..core.lines import LINE_BREAK
from ..io.discovery import git_root
from ..io.reading import ModuleSource, SourceError, module_source, read_bytes
from ..rules import OPT_IN, RULES
from ..version import __version__
from .escaping import escape_controls
from .pages import rule_page

TOOL_NAME = "autograd-lint"
INFORMATION_URI = "https://pypi.org/project/autograd-lint/"
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"


@dataclass
class Sources:
    """Source lines of reported files (a notebook's per cell), read once; stdin's text is handed in."""

    texts: dict[str, str] = field(default_factory=dict)
    _modules: dict[str, ModuleSource] = field(default_factory=dict)
    _lines: dict[tuple[str, int | None], list[str]] = field(default_factory=dict)

    def lines(self, path: str, cell: int | None = None) -> list[str]:
        """The lines a diagnostic's line numbers count: the file's, or those of its notebook cell."""
        if (path, cell) not in self._lines:
            if path not in self._modules:
                try:
                    data = self.texts[path] if path in self.texts else read_bytes(path)
                    self._modules[path] = module_source(path, data)
                except SourceError:
                    self._modules[path] = ModuleSource("")
            # Python's line breaks only: str.splitlines also breaks at form feeds and C1 controls, which
            # would shift every line after them away from the line numbers the parser reports.
            lines = LINE_BREAK.split(self._modules[path].shown_text(cell))
            self._lines[(path, cell)] = lines[:-1] if lines and not lines[-1] else lines
        return self._lines[(path, cell)]

    def file_region(self, d: Diagnostic) -> tuple[int, int, int, int]:
        """(line, column, end line, end column) in the file itself: the diagnostic's own, or in a notebook
        where the cell's characters sit in the .ipynb's JSON text (what a diff or code scanning shows)."""
        self.lines(d.path, d.cell)
        notebook = self._modules[d.path].notebook
        if notebook is None or d.cell is None:
            return d.line, d.column, d.end_line, d.end_column
        start = notebook.file_position(d.cell, d.line, d.column)
        end = notebook.file_position(d.cell, d.end_line, d.end_column)
        return (*start, *end) if start and end else (d.line, d.column, d.end_line, d.end_column)

    def line(self, path: str, number: int, cell: int | None = None) -> str:
        lines = self.lines(path, cell)
        return lines[number - 1] if 0 < number <= len(lines) else ""

    def span_text(self, d: Diagnostic) -> str:
        """The flagged source text (whitespace collapsed), or the whole line for a zero-width point."""
        lines = self.lines(d.path, d.cell)
        if not 0 < d.line <= len(lines):
            return ""
        if (d.end_line, d.end_column) <= (d.line, d.column):
            return " ".join(lines[d.line - 1].split())
        end_line = min(d.end_line, len(lines))
        chunk = lines[d.line - 1 : end_line]
        if len(chunk) == 1:
            chunk = [chunk[0][d.column - 1 : d.end_column - 1]]
        else:
            chunk[0] = chunk[0][d.column - 1 :]
            if end_line == d.end_line:
                chunk[-1] = chunk[-1][: d.end_column - 1]
        return " ".join(" ".join(chunk).split())


def confirm_dict(result) -> dict:
    return {"verdict": result.verdict, "evidence": result.evidence, "seconds": result.seconds}


def documentation_link(code: str, documentation_url: str | None) -> str | None:
    """The rule's page at the configured `documentation-url` template (`{code}`, `{name}` filled in), or
    None: without a template, and for AGL000/AGL999, which have no page."""
    if documentation_url is None or code not in RULES:
        return None
    return documentation_url.format(code=code, name=RULES[code].name)


def _entry(d: Diagnostic, verdicts: dict, documentation_url: str | None) -> dict:
    # `url` is always there, null without a link, as in ruff's JSON.
    entry = {**d.to_dict(), "url": documentation_link(d.code, documentation_url)}
    if d in verdicts:
        entry["confirm"] = confirm_dict(verdicts[d])
    return entry


def render_json(diagnostics: list[Diagnostic], verdicts: dict, documentation_url: str | None = None) -> str:
    return json.dumps([_entry(d, verdicts, documentation_url) for d in diagnostics], indent=2) + "\n"


def render_json_lines(diagnostics: list[Diagnostic], verdicts: dict, documentation_url: str | None = None) -> str:
    return "".join(json.dumps(_entry(d, verdicts, documentation_url)) + "\n" for d in diagnostics)


# --- paths -----------------------------------------------------------------------------------------


def repository_root(cwd: str | None = None) -> str:
    cwd = os.path.abspath(cwd or os.getcwd())
    return git_root(cwd) or cwd


def repository_path(path: str, root: str) -> str | None:
    """`path` relative to `root` with forward slashes, or None when it lies outside `root`."""
    if path == "-":
        return path
    absolute = os.path.abspath(path)
    try:
        relative = os.path.relpath(absolute, root)
    except ValueError:
        return None
    if relative == os.pardir or relative.startswith(os.pardir + os.sep):
        return None
    return Path(relative).as_posix()


def _display_path(path: str, root: str) -> str:
    relative = repository_path(path, root)
    return relative if relative is not None else Path(os.path.abspath(path)).as_posix()


# --- SARIF 2.1.0 ----------------------------------------------------------------------------------


def _page_description(code: str) -> tuple[str, str]:
    """(first paragraph of the rule's page, the whole page): its full description and its help."""
    page = rule_page(code)
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", page) if p.strip()]
    body = [p for p in paragraphs if not p.startswith(("#", "**"))]  # headings, the status and severity lines
    first = " ".join(body[0].split()) if body else RULES[code].summary
    return first, page


def _truncate(text: str, limit: int = 1024) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def sarif_rules(documentation_url: str | None = None) -> list[dict]:
    descriptors = []
    for code, rule in RULES.items():
        full, page = _page_description(code)
        descriptor = {
            "id": code,
            "name": rule.name,
            "shortDescription": {"text": _truncate(rule.summary)},
            "fullDescription": {"text": _truncate(full), "markdown": _truncate(full)},
            "help": {"text": page, "markdown": page},
            "defaultConfiguration": {"level": rule.severity.value, "enabled": code not in OPT_IN},
            "properties": {"tags": ["autograd", "correctness"], "problem.severity": rule.severity.value},
        }
        link = documentation_link(code, documentation_url)
        if link is not None:
            descriptor["helpUri"] = link
        descriptors.append(descriptor)
    for code, (name, short, full) in SPECIAL_RULES.items():
        descriptors.append(
            {
                "id": code,
                "name": name,
                "shortDescription": {"text": short},
                "fullDescription": {"text": full},
                "help": {"text": full},
                "defaultConfiguration": {"level": "error"},
                "properties": {"tags": ["autograd-lint"], "problem.severity": "error"},
            }
        )
    return descriptors


def cell_location(d: Diagnostic) -> str:
    """`cell 3:2:5: ` for a notebook finding (where it is in the cell, as the text format says), else ''."""
    return "" if d.cell is None else f"cell {d.cell}:{d.line}:{d.column}: "


def _artifact_location(path: str, root: str) -> dict:
    relative = repository_path(path, root)
    if relative is None:
        return {"uri": Path(os.path.abspath(path)).as_uri()}
    # A file name that is not valid UTF-8 keeps its bytes (%FF), as Path.as_uri does.
    return {"uri": quote(relative, safe="/", errors="surrogateescape"), "uriBaseId": "%SRCROOT%"}


def render_sarif(
    diagnostics: list[Diagnostic],
    verdicts: dict,
    errors: list[FileError],
    root: str,
    sources: Sources | None = None,
    documentation_url: str | None = None,
) -> str:
    """SARIF 2.1.0. A notebook finding's region is where its text is in the .ipynb file; its cell and the
    position inside the cell are in `properties.notebookCell`."""
    rules = sarif_rules(documentation_url)
    index = {rule["id"]: position for position, rule in enumerate(rules)}
    sources = sources or Sources()
    results = []
    for d in diagnostics:
        start_line, start_column, end_line, end_column = sources.file_region(d)
        result = {
            "ruleId": d.code,
            "ruleIndex": index[d.code],
            "level": "warning" if d.severity is Severity.WARNING else "error",
            "message": {"text": d.message},
            "locations": [
                {
                    "physicalLocation": {
                        "artifactLocation": _artifact_location(d.path, root),
                        "region": {
                            "startLine": start_line,
                            "startColumn": start_column,
                            "endLine": end_line,
                            "endColumn": end_column,
                        },
                    }
                }
            ],
        }
        # Code scanning shows `message.text`; the explanation travels beside it (and the rule's help explains).
        properties: dict[str, object] = {"explanation": d.explanation} if d.explanation else {}
        if d.cell is not None:
            properties["notebookCell"] = {
                "cell": d.cell,
                "startLine": d.line,
                "startColumn": d.column,
                "endLine": d.end_line,
                "endColumn": d.end_column,
            }
        if d in verdicts:
            properties["confirm"] = confirm_dict(verdicts[d])
        if properties:
            result["properties"] = properties
        results.append(result)
    notifications = [
        {
            "level": "error",
            "message": {"text": str(error)},
            "locations": [{"physicalLocation": {"artifactLocation": _artifact_location(error.path, root)}}],
        }
        for error in errors
    ]
    internal_error = any(d.code == "AGL999" for d in diagnostics)
    log = {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": TOOL_NAME,
                        "version": __version__,
                        "semanticVersion": __version__,
                        "informationUri": INFORMATION_URI,
                        "rules": rules,
                    }
                },
                "invocations": [
                    {
                        "executionSuccessful": not errors and not internal_error,
                        "toolExecutionNotifications": notifications,
                    }
                ],
                "originalUriBaseIds": {"%SRCROOT%": {"uri": Path(root).as_uri().rstrip("/") + "/"}},
                # libcst columns count code points, not the UTF-16 units SARIF assumes by default.
                "columnKind": "unicodeCodePoints",
                "results": results,
            }
        ],
    }
    return json.dumps(log, indent=2) + "\n"


# --- GitHub Actions workflow commands --------------------------------------------------------------


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def render_github(diagnostics: list[Diagnostic], verdicts: dict, root: str, sources: Sources | None = None) -> str:
    """`::error file=…,line=…,col=…,endLine=…,endColumn=…,title=…::message`, one per finding. In a notebook
    the annotation is where the code is in the .ipynb file and the message starts with `cell N:line:col: `.

    The Actions log shows these lines and the pull request shows the annotations, both to people:
    control characters from the source or a harness are escaped, as in `text`.
    """
    sources = sources or Sources()
    lines = []
    for d in diagnostics:
        command = "warning" if d.severity is Severity.WARNING else "error"
        line, column, end_line, end_column = sources.file_region(d)
        properties = {
            "file": _display_path(d.path, root),
            "line": line,
            "col": column,
            "endLine": end_line,
            "endColumn": end_column,
            "title": f"{d.code} {d.name}",
        }
        message = cell_location(d) + d.message
        if d in verdicts:
            result = verdicts[d]
            message += f"\n\n--confirm: {result.verdict} ({result.seconds:g} s): {result.evidence}"
        rendered = ",".join(
            f"{key}={_escape_property(escape_controls(str(value)))}" for key, value in properties.items()
        )
        lines.append(f"::{command} {rendered}::{_escape_data(escape_controls(message))}\n")
    return "".join(lines)


# --- GitLab code quality ---------------------------------------------------------------------------


def _gitlab_severity(d: Diagnostic) -> str:
    if d.code in SPECIAL_RULES:
        return "critical"
    return "minor" if d.severity is Severity.WARNING else "major"


def render_gitlab(diagnostics: list[Diagnostic], verdicts: dict, root: str, sources: Sources) -> str:
    """GitLab's code-quality report: a JSON array of Code Climate issues.

    The fingerprint hashes the path, the code and the flagged source text (not the line number), so a
    finding keeps its identity when code above it moves; identical findings in one file are told apart
    by their order.
    """
    issues = []
    seen: dict[str, int] = {}
    for d in diagnostics:
        path = _display_path(d.path, root)
        basis = "\0".join((path, d.code, sources.span_text(d)))
        occurrence = seen.get(basis, 0)
        seen[basis] = occurrence + 1
        fingerprint = hashlib.sha256(f"{basis}\0{occurrence}".encode("utf-8", "surrogateescape")).hexdigest()
        description = f"{d.code}: {cell_location(d)}{d.message}"
        begin, _, end, _ = sources.file_region(d)  # a notebook's lines are the .ipynb file's
        if d in verdicts:
            result = verdicts[d]
            description += f" [--confirm: {result.verdict}: {result.evidence}]"
        issues.append(
            {
                "description": description,
                "content": {"body": d.explanation},
                "check_name": d.code,
                "fingerprint": fingerprint,
                "severity": _gitlab_severity(d),
                "location": {"path": path, "lines": {"begin": begin, "end": end}},
            }
        )
    return json.dumps(issues, indent=2) + "\n"
