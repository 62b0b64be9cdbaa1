"""The rule pages in rules/ are the reference `autograd-lint rule` prints; their examples are executable claims."""

from __future__ import annotations

import re

import pytest

from autograd_lint import lint_source
from snippets import EVERY_RULE
from autograd_lint.pages import page_path, rule_page
from autograd_lint.rules import RULES

from fixture_markers import expected_markers

SECTIONS = ("## Why", "## Bad", "## Fix", "## Not flagged", "## Confirm")


def python_block_after(page: str, heading: str) -> str:
    section = page.split(heading + "\n", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match, f"no python block after {heading}"
    return match.group(1)


@pytest.mark.parametrize("code", list(RULES))
def test_page_names_the_rule_and_has_every_section(code):
    page = rule_page(code)
    assert page.startswith(f"# {code} {RULES[code].name}\n")
    assert f"**Severity:** {RULES[code].severity.value}" in page
    positions = [page.index(section) for section in SECTIONS]
    assert positions == sorted(positions)


@pytest.mark.parametrize("code", list(RULES))
def test_bad_example_reports_exactly_its_markers(code):
    bad = python_block_after(rule_page(code), "## Bad")
    markers = [(line, marked) for line, marked, _ in expected_markers(bad)]
    assert markers and {c for _, c in markers} == {code}
    reported = sorted((d.line, d.code) for d in lint_source(bad, str(page_path(code)), EVERY_RULE))
    assert reported == markers


@pytest.mark.parametrize("code", list(RULES))
def test_fix_example_is_silent(code):
    fix = python_block_after(rule_page(code), "## Fix")
    assert lint_source(fix, str(page_path(code)), EVERY_RULE) == []
