"""Rendering diagnostics for people (text) and programs (JSON)."""

from __future__ import annotations

import json
from collections import Counter

from .diagnostic import Diagnostic

FORMATS = ("text", "json")


def render(diagnostics: list[Diagnostic], output_format: str, verdicts: dict | None = None) -> str:
    """Diagnostics as text lines or a JSON array; with confirm verdicts under / inside each."""
    verdicts = verdicts or {}
    if output_format == "json":
        entries = []
        for d in diagnostics:
            entry = d.to_dict()
            if d in verdicts:
                result = verdicts[d]
                entry["confirm"] = {"verdict": result.verdict, "evidence": result.evidence, "seconds": result.seconds}
            entries.append(entry)
        return json.dumps(entries, indent=2) + "\n"
    lines = []
    for d in diagnostics:
        lines.append(f"{d.path}:{d.line}:{d.column}: {d.code} {d.message}\n")
        if d in verdicts:
            result = verdicts[d]
            lines.append(f"    {result.verdict} ({result.seconds:g} s): {result.evidence}\n")
    return "".join(lines)


def statistics(diagnostics: list[Diagnostic]) -> list[tuple[str, str, int]]:
    """(code, name, count), most frequent first, then by code."""
    counts = Counter((d.code, d.name) for d in diagnostics)
    return sorted(((code, name, n) for (code, name), n in counts.items()), key=lambda row: (-row[2], row[0]))


def render_statistics(diagnostics: list[Diagnostic], output_format: str) -> str:
    rows = statistics(diagnostics)
    if output_format == "json":
        return json.dumps([{"code": c, "name": n, "count": k} for c, n, k in rows], indent=2) + "\n"
    return "".join(f"{count:>5}\t{code}\t{name}\n" for code, name, count in rows)


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
