"""Rendering diagnostics for people (`text`, `full`) and programs (the formats in `formats.py`)."""

from __future__ import annotations

import json
import textwrap
import unicodedata
from collections import Counter

import click

from ..core.diagnostic import VERDICTS, Diagnostic, FileError, Severity
from .escaping import escape_controls, escaped_width
from .formats import (
    Sources,
    render_github,
    render_gitlab,
    render_json,
    render_json_lines,
    render_sarif,
    repository_root,
)

FORMATS = ("text", "full", "json", "json-lines", "sarif", "github", "gitlab")
HUMAN_FORMATS = ("text", "full")
STATISTICS_FORMATS = ("text", "full", "json", "json-lines")


def render(
    diagnostics: list[Diagnostic],
    output_format: str,
    verdicts: dict | None = None,
    *,
    errors: list[FileError] | None = None,
    sources: Sources | None = None,
    color: bool = False,
    root: str | None = None,
    documentation_url: str | None = None,
) -> str:
    """The report in `output_format`; with confirm verdicts under / inside each finding.

    `sources` supplies the source lines `full` shows and `gitlab` fingerprints (stdin's text among
    them); `errors` are the files that could not be read (SARIF lists them as notifications); `root`
    is what CI paths are relative to (default: the enclosing git repository, else the current directory);
    `documentation_url` is the configured link template for each rule's page (JSON `url`, SARIF `helpUri`).
    """
    verdicts = verdicts or {}
    sources = sources or Sources()
    if output_format == "json":
        return render_json(diagnostics, verdicts, documentation_url)
    if output_format == "json-lines":
        return render_json_lines(diagnostics, verdicts, documentation_url)
    if output_format in ("sarif", "github", "gitlab"):
        root = root or repository_root()
        if output_format == "sarif":
            return render_sarif(diagnostics, verdicts, errors or [], root, sources, documentation_url)
        if output_format == "github":
            return render_github(diagnostics, verdicts, root, sources)
        return render_gitlab(diagnostics, verdicts, root, sources)
    if output_format == "full":
        return "".join(_full(d, verdicts, sources, color) for d in diagnostics)
    if output_format != "text":
        raise ValueError(f"unknown output format {output_format!r}")
    lines = []
    for d in diagnostics:
        lines.append(_header(d, color) + "\n")
        if d in verdicts:
            lines.append(_verdict(verdicts[d], color))
    return "".join(lines)


# --- text and full ---------------------------------------------------------------------------------


def _style(text: str, color: bool, **style) -> str:
    return click.style(text, **style) if color else text


def _code_color(d: Diagnostic) -> str:
    return "yellow" if d.severity is Severity.WARNING else "red"


def _header(d: Diagnostic, color: bool) -> str:
    """`path:line:col: CODE message`, as ruff's concise format (path bold, code coloured on a terminal);
    `path:cell N:line:col: ...` in a notebook, as ruff prints it."""
    path, message = escape_controls(d.path), escape_controls(d.message)
    cell = "" if d.cell is None else f"cell {d.cell}"
    if not color:
        return f"{path}:{cell + ':' if cell else ''}{d.line}:{d.column}: {d.code} {message}"
    colon = _style(":", color, fg="cyan")
    return (
        f"{_style(path, color, bold=True)}{colon}{cell + colon if cell else ''}{d.line}{colon}{d.column}{colon} "
        f"{_style(d.code, color, fg=_code_color(d), bold=True)} {message}"
    )


def _verdict(result, color: bool) -> str:
    colour = {"confirmed": "red", "not-reproduced": "green"}.get(result.verdict, "yellow")
    verdict = _style(escape_controls(result.verdict), color, fg=colour, bold=True)
    return f"    {verdict} ({result.seconds:g} s): {escape_controls(result.evidence)}\n"


EXPLANATION_WIDTH = 100


def _explanation(d: Diagnostic) -> str:
    """`  = explanation`, wrapped, as ruff's `full` prints its `= help:` lines under the source."""
    if not d.explanation:
        return ""
    wrapped = textwrap.wrap(
        escape_controls(d.explanation), EXPLANATION_WIDTH - 4, break_long_words=False, break_on_hyphens=False
    )
    return "".join(f"  {'=' if n == 0 else ' '} {line}\n" for n, line in enumerate(wrapped))


TAB_WIDTH = 4
MAX_SNIPPET_LINES = 8


def _width(character: str) -> int:
    if character == "\t":
        return TAB_WIDTH
    escaped = escaped_width(character)
    if escaped is not None:
        return escaped
    if unicodedata.combining(character):
        return 0
    return 2 if unicodedata.east_asian_width(character) in ("W", "F") else 1


def _shown(text: str) -> str:
    return escape_controls(text).replace("\t", " " * TAB_WIDTH)


def _caret_span(text: str, start: int, end: int) -> tuple[int, int]:
    """Display offsets of characters [start, end) of `text` (tabs and wide characters counted)."""
    before = sum(_width(c) for c in text[:start])
    return before, max(1, sum(_width(c) for c in text[start:end]))


def _full(d: Diagnostic, verdicts: dict, sources: Sources, color: bool) -> str:
    """The concise header, the flagged lines with a caret line under the span, then the explanation (ruff's `full`)."""
    out = [_header(d, color) + "\n"]
    lines = sources.lines(d.path, d.cell)  # in a notebook, the cell's lines: its line numbers count there
    if 0 < d.line <= len(lines):
        last = min(max(d.end_line, d.line), len(lines))
        numbers: list[int | None] = list(range(d.line, last + 1))
        if len(numbers) > MAX_SNIPPET_LINES:
            half = MAX_SNIPPET_LINES // 2
            numbers = numbers[:half] + [None] + numbers[-half:]
        width = len(str(last))
        bar = _style(" " * (width + 1) + "|", color, fg="blue", bold=True)
        out.append(bar + "\n")
        for number in numbers:
            if number is None:
                out.append(_style("...", color, fg="blue", bold=True) + "\n")
                continue
            text = lines[number - 1]
            gutter = _style(f"{number:>{width}} |", color, fg="blue", bold=True)
            out.append(f"{gutter} {_shown(text)}".rstrip() + "\n")
            start = d.column - 1 if number == d.line else len(text) - len(text.lstrip())
            end = d.end_column - 1 if number == d.end_line else len(text.rstrip())
            if number == d.line and (d.end_line, d.end_column) <= (d.line, d.column):
                end = start + 1  # a point (syntax error): one caret
            offset, length = _caret_span(text, start, max(end, start + 1))
            carets = _style("^" * length, color, fg=_code_color(d), bold=True)
            label = f" {_style(d.code, color, fg=_code_color(d), bold=True)}" if number == numbers[-1] else ""
            out.append(f"{bar} {' ' * offset}{carets}{label}\n")
        out.append(bar + "\n")
    out.append(_explanation(d))
    if d in verdicts:
        out.append(_verdict(verdicts[d], color))
    out.append("\n")
    return "".join(out)


# --- statistics and summary ------------------------------------------------------------------------


def statistics(diagnostics: list[Diagnostic]) -> list[tuple[str, str, int]]:
    """(code, name, count), most frequent first, then by code."""
    counts = Counter((d.code, d.name) for d in diagnostics)
    return sorted(((code, name, n) for (code, name), n in counts.items()), key=lambda row: (-row[2], row[0]))


def render_statistics(diagnostics: list[Diagnostic], output_format: str, verdicts: dict | None = None) -> str:
    rows = statistics(diagnostics)
    if verdicts is not None:
        return _verdict_statistics(diagnostics, rows, output_format, verdicts)
    if output_format == "json":
        return json.dumps([{"code": c, "name": n, "count": k} for c, n, k in rows], indent=2) + "\n"
    if output_format == "json-lines":
        return "".join(json.dumps({"code": c, "name": n, "count": k}) + "\n" for c, n, k in rows)
    return "".join(f"{count:>5}\t{code}\t{name}\n" for code, name, count in rows)


def _verdict_statistics(
    diagnostics: list[Diagnostic], rows: list[tuple[str, str, int]], output_format: str, verdicts: dict
) -> str:
    """--confirm --statistics: each rule's count, then how many of its findings got each verdict."""
    per_rule: dict[str, Counter[str]] = {code: Counter() for code, _, _ in rows}
    for d in diagnostics:
        if d in verdicts:
            per_rule[d.code][verdicts[d].verdict] += 1
    if output_format in ("json", "json-lines"):
        entries = [
            {"code": c, "name": n, "count": k, "confirm": {v: per_rule[c][v] for v in VERDICTS}} for c, n, k in rows
        ]
        if output_format == "json":
            return json.dumps(entries, indent=2) + "\n"
        return "".join(json.dumps(entry) + "\n" for entry in entries)
    return "".join(
        f"{count:>5}\t{code}\t{name}\t"
        + "\t".join(f"{per_rule[code][v]} {v.replace('-', ' ')}" for v in VERDICTS)
        + "\n"
        for code, name, count in rows
    )


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def summary(diagnostics: list[Diagnostic], files: int, unchecked: int = 0) -> str:
    checked = _plural(files, "file") + " checked"
    if unchecked:
        checked += f", {_plural(unchecked, 'file')} could not be read"
    if not diagnostics:
        return f"No findings ({checked})." if unchecked else f"All checks passed! ({checked})"
    by_severity = Counter(d.severity.value for d in diagnostics)
    parts = ", ".join(_plural(by_severity[s], s) for s in ("error", "warning") if by_severity[s])
    return f"Found {_plural(len(diagnostics), 'diagnostic')} ({parts}) in {checked}."


def confirm_summary(verdicts: dict, left_out: tuple[str, ...] = ()) -> str:
    """What follows the summary with --confirm: every verdict counted, those whose findings
    --confirmed-only or --drop-inconclusive left out (`left_out`) marked `not shown`."""
    counts = Counter(result.verdict for result in verdicts.values())
    shown = ", ".join(
        f"{counts[v]} {v.replace('-', ' ')}" + (" (not shown)" if v in left_out and counts[v] else "") for v in VERDICTS
    )
    return f"Confirm: {shown}."
