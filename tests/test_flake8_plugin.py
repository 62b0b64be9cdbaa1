"""autograd-lint as a flake8 plugin: the same findings at the same columns, selected and silenced the flake8 way."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import libcst
import pytest
from snippets import MESSAGE, SNIPPET, TWO_FINDINGS

from autograd_lint.core.diagnostic import AUDIT_CODES
from autograd_lint.core.noqa import NOQA_RULES
from autograd_lint.report.flake8_plugin import AutogradLintChecker
from autograd_lint.rules import OPT_IN, RULES, SECOND_DERIVATIVE_RULES

REPO = Path(__file__).resolve().parents[1]


def run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=300)


def flake8(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    # --isolated: no user or project flake8 configuration, only these options.
    return run([sys.executable, "-m", "flake8", "--isolated", *args], cwd)


def autograd_lint(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return run([sys.executable, "-m", "autograd_lint", *args], cwd)


def test_entry_point_is_registered_under_agl():
    found = [ep for ep in entry_points(group="flake8.extension") if ep.name == "AGL"]
    assert len(found) == 1
    assert found[0].value == "autograd_lint.report.flake8_plugin:AutogradLintChecker"
    assert found[0].load() is AutogradLintChecker


def test_flake8_lists_the_plugin():
    proc = flake8("--version", cwd=REPO)
    assert proc.returncode == 0
    assert "autograd-lint: 0.1.0" in proc.stdout


def test_checker_yields_0_based_columns_and_code_first_messages():
    checker = AutogradLintChecker(ast.parse(SNIPPET), "bad.py", SNIPPET.splitlines(keepends=True))
    assert list(checker.run()) == [(11, 8, f"AGL002 {MESSAGE}", AutogradLintChecker)]


def test_checker_escapes_control_characters_quoted_from_the_source():
    source = SNIPPET.replace("ctx.scale = scale", 'ctx.save_for_backward(x, "\x1b]0;pwned\x07")')
    found = list(AutogradLintChecker(ast.parse(source), "bad.py", source.splitlines(keepends=True)).run())
    assert found[0][:3] == (7, 33, 'AGL012 save_for_backward is given `"␛]0;pwned␇"` (a str), not a tensor')


def test_flake8_over_the_fixtures_matches_autograd_lint_line_for_line():
    """The issue's acceptance test: real flake8 and the CLI agree on path, line, column, code and message."""
    f8 = flake8("--select", "AGL", "fixtures/", cwd=REPO)
    cli = autograd_lint("--select", "ALL", "--output-format", "json", "fixtures/", cwd=REPO)
    assert cli.returncode == 1, cli.stderr
    assert f8.returncode == 1, f8.stderr
    # flake8 reads only .py files: the notebook fixtures are the CLI's alone; the noqa checks (AGL100, AGL101)
    # are the CLI's too, since flake8 applies noqa itself.
    entries = [d for d in json.loads(cli.stdout) if d["cell"] is None and d["code"] not in NOQA_RULES]
    expected = sorted(f"{d['path']}:{d['line']}:{d['column']}: {d['code']} {d['message']}" for d in entries)
    assert sorted(f8.stdout.splitlines()) == expected
    # Every rule has a buggy fixture; the noqa checks' fixtures are the CLI's alone, and only `audit` reports AGL200.
    assert {d["code"] for d in entries} == set(RULES) - NOQA_RULES - AUDIT_CODES
    assert len(expected) > 40
    # flake8's default line format is the CLI's text format.
    text = autograd_lint("-q", "--select", "ALL", "fixtures/", cwd=REPO)
    shown = [line.split(" ", 2) for line in text.stdout.splitlines() if ".ipynb:cell " not in line]
    assert sorted(" ".join(parts) for parts in shown if parts[1] not in NOQA_RULES) == expected


def test_flake8_leaves_the_opt_in_rules_off_unless_selected():
    """flake8's default selection is autograd-lint's: the opt-in rules are in its default ignore list."""
    default = [line for line in flake8("fixtures/", cwd=REPO).stdout.splitlines() if ": AGL" in line]
    codes = {line.split(": ", 1)[1].split()[0] for line in default}
    assert codes == set(RULES) - OPT_IN - AUDIT_CODES
    cli = autograd_lint("-q", "fixtures/", cwd=REPO).stdout.splitlines()
    cli = [line for line in cli if ".ipynb:cell " not in line]  # flake8 reads only .py files
    # AGL010 joins the CLI's default run in modules that take second derivatives; flake8 cannot tell.
    assert sorted(default) == sorted(
        line for line in cli if not any(f": {c} " in line for c in SECOND_DERIVATIVE_RULES)
    )
    extended = flake8("--extend-select", "AGL004", "fixtures/agl004/", cwd=REPO).stdout
    assert ": AGL004 " in extended


@pytest.fixture
def project(tmp_path):
    (tmp_path / "bad.py").write_text(SNIPPET)
    (tmp_path / "two.py").write_text(TWO_FINDINGS)
    (tmp_path / "clean.py").write_text("x = 1\n")
    return tmp_path


def reported(proc: subprocess.CompletedProcess) -> list[tuple[str, int, int, str]]:
    found = []
    for line in proc.stdout.splitlines():
        path, row, col, rest = line.split(":", 3)
        found.append((Path(path).name, int(row), int(col), rest.split()[0]))
    return sorted(found)


def test_plugin_is_on_by_default_and_exit_codes(project):
    proc = flake8("bad.py", cwd=project)
    assert proc.returncode == 1
    assert f"bad.py:11:9: AGL002 {MESSAGE}" in proc.stdout.splitlines()
    assert "bad.py:1:1: F401 'torch' imported but unused" in proc.stdout.splitlines()  # next to flake8's own
    clean = flake8("clean.py", cwd=project)
    assert clean.returncode == 0 and clean.stdout == ""


def test_noqa_with_the_code_silences_one_line_under_flake8(project):
    lines = TWO_FINDINGS.splitlines()
    lines[7] += "  # noqa: AGL002"
    lines[16] += "  # noqa: E501"  # another code: not silenced
    (project / "two.py").write_text("\n".join(lines) + "\n")
    proc = flake8("--select", "AGL", "two.py", cwd=project)
    assert reported(proc) == [("two.py", 17, 9, "AGL002")]


def test_flake8_file_level_noqa(project):
    # `# flake8: noqa` is flake8's own switch (autograd-lint spells it `# autograd-lint: noqa`).
    (project / "bad.py").write_text("# flake8: noqa\n" + SNIPPET)
    assert flake8("--select", "AGL", "bad.py", cwd=project).stdout == ""
    assert autograd_lint("-q", "bad.py", cwd=project).returncode == 1


def test_noqa_checks_are_left_to_flake8(project):
    # flake8 applies noqa after the plugin, so the plugin cannot know which comments were used: AGL100 and
    # AGL101 are the CLI's (flake8-noqa checks the comments under flake8).
    hidden = SNIPPET.replace("return g * ctx.scale", "return g * ctx.scale  # noqa")  # a bare noqa hides AGL002
    (project / "noqa.py").write_text("x = 1  # noqa: AGL002\n" + hidden)
    assert flake8("--select", "AGL", "noqa.py", cwd=project).stdout == ""
    cli = autograd_lint("-q", "--select", "ALL", "noqa.py", cwd=project)
    assert [line.split(" ", 2)[:2] for line in cli.stdout.splitlines()] == [
        ["noqa.py:1:8:", "AGL100"],
        ["noqa.py:12:31:", "AGL101"],
    ]


@pytest.mark.parametrize(
    "options",
    [
        ["--select", "AGL", "--ignore", "AGL002"],
        ["--select", "AGL", "--extend-ignore", "AGL00"],
        ["--select", "AGL001,AGL003"],
        ["--select", "F,E"],
    ],
)
def test_flake8_selection_options_deselect_agl(project, options):
    proc = flake8(*options, "bad.py", "two.py", cwd=project)
    assert "AGL" not in proc.stdout
    assert proc.returncode == (1 if proc.stdout else 0)


def test_flake8_select_one_agl_code(project):
    assert reported(flake8("--select", "AGL002", "bad.py", cwd=project)) == [("bad.py", 11, 9, "AGL002")]
    assert flake8("--select", "AGL001", "bad.py", cwd=project).returncode == 0


def test_flake8_per_file_ignores(project):
    proc = flake8("--select", "AGL", "--per-file-ignores", "two.py:AGL002", "bad.py", "two.py", cwd=project)
    assert reported(proc) == [("bad.py", 11, 9, "AGL002")]
    proc = flake8("--select", "AGL", "--per-file-ignores", "bad.py:AGL", "bad.py", "two.py", cwd=project)
    assert reported(proc) == [("two.py", 8, 9, "AGL002"), ("two.py", 17, 9, "AGL002")]


def test_flake8_config_file_is_honoured(project):
    (project / "setup.cfg").write_text("[flake8]\nselect = AGL\nper-file-ignores =\n    bad.py: AGL002\n")
    proc = run([sys.executable, "-m", "flake8", "."], project)
    assert reported(proc) == [("two.py", 8, 9, "AGL002"), ("two.py", 17, 9, "AGL002")]


def test_autograd_lint_config_does_not_apply_under_flake8(project):
    (project / "pyproject.toml").write_text('[tool.autograd-lint]\nignore = ["AGL002"]\n')
    assert autograd_lint("-q", "bad.py", cwd=project).returncode == 0
    assert reported(flake8("--select", "AGL", "bad.py", cwd=project)) == [("bad.py", 11, 9, "AGL002")]


def test_syntax_error_is_flake8s_e999_not_agl000(project):
    (project / "broken.py").write_text("def f(:\n    pass\n")
    proc = flake8("--select", "AGL,E999", "broken.py", cwd=project)
    assert [code for *_, code in reported(proc)] == ["E999"]
    checker = AutogradLintChecker(None, "broken.py", ["def f(:\n", "    pass\n"])
    assert list(checker.run()) == []


def test_code_only_libcst_rejects_is_reported_as_agl999(monkeypatch):
    """A file CPython accepts but libcst cannot parse was not checked: flake8 has no E999 for it, so say so
    (as an internal limit, not as a syntax error in valid code)."""

    def reject(source, *args, **kwargs):
        raise libcst.ParserSyntaxError("unsupported syntax", lines=source.splitlines(True), raw_line=11, raw_column=8)

    monkeypatch.setattr(libcst, "parse_module", reject)
    checker = AutogradLintChecker(ast.parse(SNIPPET), "bad.py", SNIPPET.splitlines(keepends=True))
    message = (
        "AGL999 libcst cannot parse this file, which Python accepts (unsupported syntax at line 11); it was not checked"
    )
    assert list(checker.run()) == [(1, 0, message, AutogradLintChecker)]


def test_stdin_display_name(project):
    proc = subprocess.run(
        [sys.executable, "-m", "flake8", "--isolated", "--select", "AGL", "--stdin-display-name", "pkg/m.py", "-"],
        cwd=project,
        input=SNIPPET,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.stdout == f"pkg/m.py:11:9: AGL002 {MESSAGE}\n"
