"""The rule pages in rules/ are the reference `autograd-lint rule` prints; their examples are executable claims."""

from __future__ import annotations

import re

import pytest
from fixture_markers import expected_markers
from snippets import EVERY_RULE

from autograd_lint import lint_source
from autograd_lint.core.diagnostic import AUDIT_CODES
from autograd_lint.report.pages import page_path, rule_page
from autograd_lint.rules import OPT_IN, RULES

# The audit's codes come from running the code under torch: tests/rules/test_agl200.py audits their examples.
LINTED_RULES = [code for code in RULES if code not in AUDIT_CODES]
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


# What a reader of an installed page cannot open: the development catalog and the review beside the repository.
OUTSIDE_REFERENCES = re.compile(r"catalog|\.\./|shared/|pitfalls\.md|dev-corpus|\bP\d\d\b")


@pytest.mark.parametrize("code", list(RULES))
def test_page_stands_alone(code):
    assert OUTSIDE_REFERENCES.findall(rule_page(code)) == []


@pytest.mark.parametrize("code", LINTED_RULES)
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


def _published_status():
    """benchmarks/ecosystem.py's status-line builder and the figures it last published."""
    import importlib.util
    import json
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    spec = importlib.util.spec_from_file_location("ecosystem", root / "benchmarks" / "ecosystem.py")
    ecosystem = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("ecosystem", ecosystem)  # its dataclasses look their module up there
    spec.loader.exec_module(sys.modules["ecosystem"])
    ecosystem = sys.modules["ecosystem"]
    return ecosystem, json.loads((root / "benchmarks" / "ecosystem_results.json").read_text()), root


@pytest.mark.parametrize("code", list(RULES))
def test_page_states_its_default_status_and_measured_precision(code):
    ecosystem, results, _ = _published_status()
    line = ecosystem.status_line(code, results)
    assert line in rule_page(code).splitlines()
    assert ("**Default:** yes" in line) is (code not in OPT_IN)


def test_readme_rules_table_is_generated_from_the_rules():
    ecosystem, results, root = _published_status()
    readme = (root / "README.md").read_text().splitlines()
    start = readme.index(ecosystem.RULES_TABLE_HEADER[0])
    table = readme[start : start + len(ecosystem.RULES_TABLE_HEADER) + len(RULES)]
    assert table == ecosystem.rules_table(results), (
        "run `python benchmarks/ecosystem.py CORPUS --publish` (or fix the rule)"
    )
    assert [row.split(" | ")[0][2:] for row in table[2:]] == list(RULES)


def test_a_rule_not_measured_yet_says_so_in_its_page_and_the_table():
    """What `benchmarks/ecosystem.py --docs-only` writes for a new rule, before the corpus was at hand."""
    ecosystem, results, _ = _published_status()
    unmeasured = {**results, "rules": {code: counts for code, counts in results["rules"].items() if code != "AGL002"}}
    assert ecosystem.status_line("AGL002", unmeasured) == (
        "**Default:** yes · **Measured on real repositories:** not yet (benchmarks/ecosystem.py)"
    )
    row = next(row for row in ecosystem.rules_table(unmeasured) if row.startswith("| AGL002 "))
    assert row.split(" | ")[4] == "not measured yet"
