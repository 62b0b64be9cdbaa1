"""Every fixture module produces exactly the diagnostics its inline markers name: no more, no fewer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fixture_markers import expected_markers
from snippets import EVERY_RULE

from autograd_lint import lint_source
from autograd_lint.core.rule import MESSAGE_LIMIT

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
FIXTURE_FILES = sorted(FIXTURES.rglob("*.py"))
NOTEBOOK_FILES = sorted(FIXTURES.rglob("*.ipynb"))


def test_fixture_corpus_is_present():
    buggy = [p for p in FIXTURE_FILES if expected_markers(p.read_text())]
    clean = [p for p in FIXTURE_FILES if p.name.startswith("clean_") or p.name.endswith("_fixed.py")]
    assert len(buggy) >= 40 and len(clean) >= 30


@pytest.mark.parametrize("path", FIXTURE_FILES, ids=lambda p: str(p.relative_to(FIXTURES)))
def test_fixture_diagnostics_match_markers(path: Path):
    source = path.read_text()
    expected = expected_markers(source)
    assert all(column is not None for _, _, column in expected), "fixture markers give the column"
    reported = sorted((d.line, d.code, d.column) for d in lint_source(source, str(path), EVERY_RULE))
    assert reported == expected
    if path.name.startswith("clean_"):
        assert reported == []


def notebook_markers(path: Path) -> list[tuple[int, int, str, int | None]]:
    """(cell, line in the cell, code, column) for every marker in a notebook's code cells; cells are
    counted over all cells, markdown included, as Jupyter shows them."""
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    return sorted(
        (number, line, code, column)
        for number, cell in enumerate(cells, start=1)
        if cell["cell_type"] == "code"
        for line, code, column in expected_markers("".join(cell["source"]))
    )


def test_notebook_fixtures_are_present():
    assert len([p for p in NOTEBOOK_FILES if notebook_markers(p)]) >= 3
    assert any(p.name.startswith("clean_") for p in NOTEBOOK_FILES)


@pytest.mark.parametrize("path", NOTEBOOK_FILES, ids=lambda p: str(p.relative_to(FIXTURES)))
def test_notebook_fixture_diagnostics_match_markers_in_their_cells(path: Path):
    expected = notebook_markers(path)
    assert all(column is not None for *_, column in expected), "fixture markers give the column"
    reported = sorted((d.cell, d.line, d.code, d.column) for d in lint_source(path.read_bytes(), str(path), EVERY_RULE))
    assert reported == expected
    if path.name.startswith("clean_"):
        assert reported == []


def test_every_fixture_message_is_short_and_explained():
    """ruff's habit: the line says what is wrong here; the consequence and the fix are the explanation."""
    checked = 0
    for path in [*FIXTURE_FILES, *NOTEBOOK_FILES]:
        for d in lint_source(path.read_bytes(), str(path), EVERY_RULE):
            where = f"{path.relative_to(FIXTURES)}:{d.line} {d.code}"
            assert len(d.message) <= MESSAGE_LIMIT, f"{where}: {len(d.message)} characters: {d.message}"
            assert "\n" not in d.message, where
            assert len(d.explanation) > len(d.message), f"{where}: {d.explanation!r}"
            assert d.explanation[0].isupper() or d.explanation[0] == "`", f"{where}: {d.explanation!r}"
            assert d.explanation.endswith("."), f"{where}: {d.explanation!r}"
            checked += 1
    assert checked >= 250
