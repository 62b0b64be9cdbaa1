"""The `autograd-lint` command line: exit codes, selection, output formats, stdin, `rule`, file discovery."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from snippets import EXPLANATION, MESSAGE, SNIPPET, TWO_FINDINGS
from snippets import parse_text_output as codes_and_positions

import autograd_lint
from autograd_lint.cli import main
from autograd_lint.rules import RULES

REPO = Path(__file__).resolve().parents[1]
CLEAN = "x = 1\n"


# A registered rule other than AGL002 that does not fire on SNIPPET.
OTHER = "AGL003"
SCRIPT = Path(sys.executable).parent / "autograd-lint"


def invoke(args, input=None):
    return CliRunner().invoke(main, args, input=input)


def lines(text: str) -> list[str]:
    return text.splitlines()


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.py").write_text(SNIPPET)
    (tmp_path / "clean.py").write_text(CLEAN)
    return tmp_path


# --- exit codes ---------------------------------------------------------------------------------


def test_clean_file_exits_0(project):
    result = invoke(["clean.py"])
    assert result.exit_code == 0
    assert result.stdout == ""
    assert result.stderr == "All checks passed! (1 file checked)\n"


def test_finding_exits_1_with_text_line(project):
    result = invoke(["bad.py"])
    assert result.exit_code == 1
    assert result.stdout == f"bad.py:11:9: AGL002 {MESSAGE}\n"


def test_missing_path_exits_2_and_other_paths_are_still_linted(project):
    result = invoke(["bad.py", "missing.py", "clean.py"])
    assert result.exit_code == 2
    assert result.stdout == f"bad.py:11:9: AGL002 {MESSAGE}\n"
    errors = [line for line in lines(result.stderr) if "missing.py" in line]
    assert errors == ["autograd-lint: error: missing.py: no such file or directory"]
    assert "2 files checked" in result.stderr


def test_paths_in_error_lines_and_show_files_cannot_drive_the_terminal(project):
    hostile = "title\x1b]0;pwned\x07.py"
    missing = invoke(["bad.py", "missing" + hostile])
    assert [line for line in lines(missing.stderr) if "missing" in line] == [
        "autograd-lint: error: missingtitle\u241b]0;pwned\u2407.py: no such file or directory"
    ]
    (project / hostile).write_text(CLEAN)
    shown = invoke(["--show-files", "."])
    assert "\x1b" not in shown.stdout and "\x07" not in shown.stdout
    assert "title\u241b]0;pwned\u2407.py" in lines(shown.stdout)


def test_unknown_rule_code_in_select_exits_2(project):
    result = invoke(["--select", "AGL999x", "bad.py"])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert len(lines(result.stderr)) == 1
    assert result.stderr.startswith("autograd-lint: error: --select: unknown rule code or prefix 'AGL999x'")


@pytest.mark.parametrize("option", ["--ignore", "--extend-select"])
def test_unknown_rule_code_in_ignore_or_extend_select_exits_2(project, option):
    result = invoke([option, "XYZ1", "bad.py"])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert len(lines(result.stderr)) == 1
    assert result.stderr.startswith(f"autograd-lint: error: {option}: unknown rule code or prefix 'XYZ1'")


def test_bad_config_exits_2(project):
    (project / "pyproject.toml").write_text('[tool.autograd-lint]\nselect = ["NOPE1"]\n')
    result = invoke(["bad.py"])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert len(lines(result.stderr)) == 1
    assert "'NOPE1'" in result.stderr and "pyproject.toml" in result.stderr


def test_exit_zero_turns_findings_into_0(project):
    result = invoke(["--exit-zero", "bad.py"])
    assert result.exit_code == 0
    assert result.stdout == f"bad.py:11:9: AGL002 {MESSAGE}\n"


def test_exit_zero_does_not_hide_errors(project):
    result = invoke(["--exit-zero", "bad.py", "missing.py"])
    assert result.exit_code == 2
    assert "bad.py:11:9: AGL002" in result.stdout


def test_syntax_error_alone_exits_1(project):
    (project / "broken.py").write_text("def f(:\n    pass\n")
    result = invoke(["broken.py"])
    assert result.exit_code == 1
    assert result.stdout == "broken.py:1:7: AGL000 SyntaxError: invalid syntax\n"


def test_internal_rule_error_is_reported_as_agl999_and_exits_2(project, monkeypatch):
    def explode(self, function_class, module):
        raise ValueError("boom")

    monkeypatch.setattr(RULES["AGL002"], "check_class", explode)
    result = invoke(["--select", "AGL002", "bad.py"])
    assert result.exit_code == 2
    assert result.stdout == "bad.py:1:1: AGL999 rule AGL002 failed on this file: ValueError: boom\n"
    assert "Traceback" not in result.stdout + result.stderr


# --- selection -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, reported",
    [
        ([], True),
        (["--select", "AGL002"], True),
        (["--select", "agl002"], True),
        (["--select", OTHER], False),
        (["--select", "AGL00"], True),
        (["--select", "AGL"], True),
        (["--select", "ALL"], True),
        (["--select", f"{OTHER},AGL002"], True),
        (["--select", f"{OTHER}, AGL002"], True),
        (["--select", OTHER, "--select", "AGL002"], True),
        (["--ignore", "AGL002"], False),
        (["--ignore", "AGL00"], False),
        (["--ignore", f"{OTHER},AGL002"], False),
        (["--ignore", OTHER], True),
        (["--select", "ALL", "--ignore", "AGL002"], False),
        (["--select", "AGL00", "--ignore", "AGL002"], False),
        (["--select", OTHER, "--extend-select", "AGL002"], True),
        (["--select", OTHER, "--extend-select", "AGL00"], True),
        (["--select", OTHER, "--extend-select", "ALL"], True),
        (["--select", OTHER, "--extend-select", f"{OTHER},AGL002"], True),
        (["--extend-select", "AGL002", "--ignore", "AGL002"], False),
    ],
)
def test_select_ignore_extend_select(project, args, reported):
    result = invoke([*args, "bad.py"])
    if reported:
        assert result.exit_code == 1, result.stderr
        assert result.stdout == f"bad.py:11:9: AGL002 {MESSAGE}\n"
    else:
        assert result.exit_code == 0, result.stderr
        assert result.stdout == ""


# --- output formats ------------------------------------------------------------------------------


def test_json_output_fields_and_values(project):
    result = invoke(["--output-format", "json", "bad.py", "clean.py"])
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data == [
        {
            "code": "AGL002",
            "name": "backward-arity-mismatch",
            "severity": "error",
            "message": MESSAGE,
            "explanation": EXPLANATION,
            "url": None,
            "path": "bad.py",
            "cell": None,
            "line": 11,
            "column": 9,
            "end_line": 11,
            "end_column": 29,
        }
    ]
    assert list(data[0]) == [
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
        "url",
    ]


def test_json_output_clean_is_empty_list(project):
    result = invoke(["--output-format", "json", "clean.py"])
    assert result.exit_code == 0
    assert json.loads(result.stdout) == []


def test_json_output_keeps_stdout_pure_json_with_errors(project):
    result = invoke(["--output-format", "json", "bad.py", "missing.py"])
    assert result.exit_code == 2
    assert [d["path"] for d in json.loads(result.stdout)] == ["bad.py"]
    assert "missing.py" in result.stderr


def test_statistics_text(project):
    (project / "bad2.py").write_text(SNIPPET)
    result = invoke(["--statistics", "bad.py", "bad2.py", "clean.py"])
    assert result.exit_code == 1
    assert result.stdout == "    2\tAGL002\tbackward-arity-mismatch\n"
    assert "Found 2 diagnostics (2 errors) in 3 files checked." in result.stderr


def test_statistics_json(project):
    (project / "bad2.py").write_text(SNIPPET)
    result = invoke(["--statistics", "--output-format", "json", "bad.py", "bad2.py"])
    assert result.exit_code == 1
    assert json.loads(result.stdout) == [{"code": "AGL002", "name": "backward-arity-mismatch", "count": 2}]


def test_statistics_with_no_findings(project):
    result = invoke(["--statistics", "clean.py"])
    assert result.exit_code == 0
    assert result.stdout == ""


def test_summary_goes_to_stderr_not_stdout(project):
    result = invoke(["bad.py", "clean.py"])
    assert result.exit_code == 1
    assert result.stderr == "Found 1 diagnostic (1 error) in 2 files checked.\n"
    assert "Found" not in result.stdout
    assert lines(result.stdout) == [f"bad.py:11:9: AGL002 {MESSAGE}"]


@pytest.mark.parametrize("flag", ["-q", "--quiet"])
def test_quiet_prints_no_summary(project, flag):
    result = invoke([flag, "bad.py"])
    assert result.exit_code == 1
    assert result.stderr == ""
    assert result.stdout == f"bad.py:11:9: AGL002 {MESSAGE}\n"
    clean = invoke([flag, "clean.py"])
    assert clean.exit_code == 0
    assert clean.stderr == "" and clean.stdout == ""


def test_quiet_still_reports_file_errors(project):
    result = invoke(["-q", "missing.py"])
    assert result.exit_code == 2
    assert lines(result.stderr) == ["autograd-lint: error: missing.py: no such file or directory"]


def test_text_line_format(project):
    (project / "two.py").write_text(TWO_FINDINGS)
    result = invoke(["-q", "two.py"])
    assert lines(result.stdout) == [
        "two.py:8:9: AGL002 A.backward returns 1 value but forward takes 2 inputs",
        "two.py:17:9: AGL002 B.backward returns 2 values but forward takes 3 inputs",
    ]


# --- stdin -----------------------------------------------------------------------------------------


def test_stdin_without_filename_reports_dash(project):
    result = invoke(["-"], input=SNIPPET)
    assert result.exit_code == 1
    assert result.stdout == f"-:11:9: AGL002 {MESSAGE}\n"
    assert "1 file checked" in result.stderr


def test_stdin_with_stdin_filename_reports_that_path(project):
    result = invoke(["-", "--stdin-filename", "pkg/model.py"], input=SNIPPET)
    assert result.exit_code == 1
    assert result.stdout == f"pkg/model.py:11:9: AGL002 {MESSAGE}\n"


def test_stdin_clean(project):
    result = invoke(["-", "--stdin-filename", "x.py"], input=CLEAN)
    assert result.exit_code == 0
    assert result.stdout == ""


def test_stdin_json_path(project):
    result = invoke(["--output-format", "json", "-", "--stdin-filename", "src/m.py"], input=SNIPPET)
    assert [(d["path"], d["line"], d["column"]) for d in json.loads(result.stdout)] == [("src/m.py", 11, 9)]


def test_stdin_together_with_files_is_sorted(project):
    result = invoke(["-q", "bad.py", "-", "--stdin-filename", "a_first.py"], input=SNIPPET)
    assert result.exit_code == 1
    assert [line.split(":")[0] for line in lines(result.stdout)] == ["a_first.py", "bad.py"]


# --- version ---------------------------------------------------------------------------------------


def test_version(project):
    result = invoke(["--version"])
    assert result.exit_code == 0
    assert result.stdout == f"autograd-lint, version {autograd_lint.__version__}\n"
    assert autograd_lint.__version__ == "0.1.0"


# --- the `rule` subcommand -------------------------------------------------------------------------


def test_rule_prints_page():
    result = invoke(["rule", "AGL002"])
    assert result.exit_code == 0
    assert result.stdout.startswith("# AGL002 backward-arity-mismatch\n")
    assert "## Bad" in result.stdout and "## Fix" in result.stdout


def test_rule_code_is_case_insensitive():
    assert invoke(["rule", "agl002"]).stdout == invoke(["rule", "AGL002"]).stdout


def test_rule_all_prints_every_page():
    result = invoke(["rule", "--all"])
    assert result.exit_code == 0
    headings = [line.split()[1] for line in lines(result.stdout) if line.startswith("# AGL")]
    assert headings == list(RULES)
    assert "AGL002" in headings
    assert result.stdout.startswith(f"# {next(iter(RULES))} ")


def test_rule_unknown_code_exits_2_with_one_line():
    result = invoke(["rule", "AGL999x"])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert len(lines(result.stderr)) == 1
    assert result.stderr.startswith("autograd-lint: error: unknown rule code 'AGL999x'")


def test_rule_prefix_is_not_a_code():
    result = invoke(["rule", "AGL00"])
    assert result.exit_code == 2
    assert "unknown rule code 'AGL00'" in result.stderr


@pytest.mark.parametrize("args", [["rule"], ["rule", "--all", "AGL002"]])
def test_rule_needs_exactly_one_of_code_or_all(args):
    result = invoke(args)
    assert result.exit_code == 2
    assert lines(result.stderr) == ["autograd-lint: error: give a rule CODE or --all"]


def test_rule_json():
    result = invoke(["rule", "--output-format", "json", "AGL002"])
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert set(data) == {"code", "name", "severity", "summary", "explanation"}
    assert data["code"] == "AGL002"
    assert data["name"] == "backward-arity-mismatch"
    assert data["severity"] == "error"
    assert data["summary"] == "backward returns a different number of gradients than forward takes inputs"
    assert data["explanation"].startswith("# AGL002 backward-arity-mismatch")


def test_rule_all_json():
    result = invoke(["rule", "--all", "--output-format", "json"])
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert [entry["code"] for entry in data] == list(RULES)


# --- file discovery --------------------------------------------------------------------------------


@pytest.fixture
def tree(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "good.py").write_text(SNIPPET)
    (tmp_path / "pkg" / "sub").mkdir(parents=True)
    (tmp_path / "pkg" / "sub" / "deep.py").write_text(SNIPPET)
    (tmp_path / "pkg" / "notes.txt").write_text(SNIPPET)
    for name in (".git", "venv", ".venv", "build", "dist", "__pycache__", "node_modules", "pkg/__pycache__"):
        (tmp_path / name).mkdir(parents=True, exist_ok=True)
        (tmp_path / name / "hidden.py").write_text(SNIPPET)
    (tmp_path / "myenv").mkdir()
    (tmp_path / "myenv" / "pyvenv.cfg").write_text("home = /usr/bin\n")
    (tmp_path / "myenv" / "lib").mkdir()
    (tmp_path / "myenv" / "lib" / "hidden.py").write_text(SNIPPET)
    return tmp_path


def test_directory_walk_skips_excluded_dirs(tree):
    result = invoke(["-q", "."])
    assert result.exit_code == 1
    assert codes_and_positions(result.stdout) == [
        ("good.py", 11, 9, "AGL002"),
        (os.path.join("pkg", "sub", "deep.py"), 11, 9, "AGL002"),
    ]


def test_default_path_is_current_directory(tree):
    result = invoke([])
    assert result.exit_code == 1
    assert [p for p, *_ in codes_and_positions(result.stdout)] == ["good.py", os.path.join("pkg", "sub", "deep.py")]
    assert "2 files checked" in result.stderr


@pytest.mark.parametrize(
    "path",
    [
        ".git/hidden.py",
        "venv/hidden.py",
        "build/hidden.py",
        "dist/hidden.py",
        "__pycache__/hidden.py",
        "node_modules/hidden.py",
        "myenv/lib/hidden.py",
    ],
)
def test_file_named_explicitly_in_excluded_dir_is_linted(tree, path):
    result = invoke(["-q", path])
    assert result.exit_code == 1
    assert result.stdout == f"{path}:11:9: AGL002 {MESSAGE}\n"


def test_excluded_directory_named_explicitly_is_walked(tree):
    result = invoke(["-q", "build"])
    assert result.exit_code == 1
    assert codes_and_positions(result.stdout) == [(os.path.join("build", "hidden.py"), 11, 9, "AGL002")]


def test_same_file_twice_is_reported_once(tree):
    result = invoke(["-q", "good.py", "good.py", "./good.py"])
    assert result.exit_code == 1
    assert lines(result.stdout) == [f"good.py:11:9: AGL002 {MESSAGE}"]


def test_explicit_non_python_suffix_is_linted_as_python(tree):
    result = invoke(["-q", "pkg/notes.txt"])
    assert result.exit_code == 1
    assert result.stdout == f"pkg/notes.txt:11:9: AGL002 {MESSAGE}\n"


def test_output_sorted_by_path_line_column_and_stable(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "b.py").write_text(TWO_FINDINGS)
    (tmp_path / "a.py").write_text(SNIPPET)
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "z.py").write_text(TWO_FINDINGS)
    first = invoke(["-q", "b.py", "a", "a.py"])
    second = invoke(["-q", "b.py", "a", "a.py"])
    assert first.exit_code == 1
    assert codes_and_positions(first.stdout) == [
        ("a.py", 11, 9, "AGL002"),
        (os.path.join("a", "z.py"), 8, 9, "AGL002"),
        (os.path.join("a", "z.py"), 17, 9, "AGL002"),
        ("b.py", 8, 9, "AGL002"),
        ("b.py", 17, 9, "AGL002"),
    ]
    assert first.stdout == second.stdout
    reordered = invoke(["-q", "a.py", "a", "b.py"])
    assert reordered.stdout == first.stdout


# --- real processes --------------------------------------------------------------------------------


def run_process(argv, cwd, input=None):
    return subprocess.run(argv, cwd=cwd, input=input, capture_output=True, text=True, timeout=120)


def test_python_dash_m(tmp_path):
    (tmp_path / "bad.py").write_text(SNIPPET)
    proc = run_process([sys.executable, "-m", "autograd_lint", "bad.py"], tmp_path)
    assert proc.returncode == 1
    assert proc.stdout == f"bad.py:11:9: AGL002 {MESSAGE}\n"
    assert proc.stderr == "Found 1 diagnostic (1 error) in 1 file checked.\n"


def test_python_dash_m_version(tmp_path):
    proc = run_process([sys.executable, "-m", "autograd_lint", "--version"], tmp_path)
    assert proc.returncode == 0
    assert autograd_lint.__version__ in proc.stdout


def test_console_script(tmp_path):
    assert SCRIPT.is_file(), f"console script not installed next to {sys.executable}"
    (tmp_path / "clean.py").write_text(CLEAN)
    (tmp_path / "bad.py").write_text(SNIPPET)
    clean = run_process([str(SCRIPT), "clean.py"], tmp_path)
    assert clean.returncode == 0
    assert clean.stdout == ""
    assert clean.stderr == "All checks passed! (1 file checked)\n"
    bad = run_process([str(SCRIPT), "--output-format", "json", "bad.py"], tmp_path)
    assert bad.returncode == 1
    assert [(d["code"], d["line"], d["column"]) for d in json.loads(bad.stdout)] == [("AGL002", 11, 9)]


def test_console_script_stdin(tmp_path):
    proc = run_process([str(SCRIPT), "-", "--stdin-filename", "from_stdin.py"], tmp_path, input=SNIPPET)
    assert proc.returncode == 1
    assert proc.stdout == f"from_stdin.py:11:9: AGL002 {MESSAGE}\n"


def test_console_script_rule(tmp_path):
    proc = run_process([str(SCRIPT), "rule", "AGL002"], tmp_path)
    assert proc.returncode == 0
    assert proc.stdout.startswith("# AGL002 backward-arity-mismatch\n")


def _user_mistakes(root: Path) -> dict[str, list[str]]:
    (root / "bad.py").write_text(SNIPPET)
    (root / "undecodable.py").write_bytes(b"x = '\xff\xfe'\n")
    (root / "broken.toml").write_text("[tool.autograd-lint\n")
    return {
        "missing path": ["bad.py", "missing.py"],
        "unknown select": ["--select", "AGL999x", "bad.py"],
        "unknown ignore": ["--ignore", "NOPE", "bad.py"],
        "missing config": ["--config", "nope/pyproject.toml", "bad.py"],
        "invalid toml config": ["--config", "broken.toml", "bad.py"],
        "undecodable file": ["bad.py", "undecodable.py"],
        "unknown output format": ["--output-format", "xml", "bad.py"],
        "unknown option": ["--frobnicate", "bad.py"],
        "unknown rule": ["rule", "AGL999x"],
        "rule without code": ["rule"],
    }


@pytest.mark.parametrize(
    "mistake",
    [
        "missing path",
        "unknown select",
        "unknown ignore",
        "missing config",
        "invalid toml config",
        "undecodable file",
        "unknown output format",
        "unknown option",
        "unknown rule",
        "rule without code",
    ],
)
def test_no_traceback_for_user_mistakes(tmp_path, mistake):
    args = _user_mistakes(tmp_path)[mistake]
    proc = run_process([sys.executable, "-m", "autograd_lint", *args], tmp_path)
    assert "Traceback" not in proc.stderr
    assert "Traceback" not in proc.stdout
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip(), "a user mistake must be explained on stderr"


# --- commands and help -----------------------------------------------------------------------------


@pytest.mark.parametrize("args", [["--help"], ["-h"], ["help"]])
def test_help_lists_the_options_and_the_other_commands(tmp_path, monkeypatch, args):
    monkeypatch.chdir(tmp_path)
    result = invoke(args)
    assert result.exit_code == 0
    assert "--select TEXT" in result.stdout
    commands = result.stdout.split("Commands (autograd-lint COMMAND --help for one):\n", 1)[1]
    assert [
        line.split()[0] for line in commands.splitlines() if line.startswith("  ") and not line.startswith("   ")
    ] == [
        "audit",
        "clean",
        "rule",
        "help",
    ]


def test_help_for_a_command_and_an_unknown_one(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rule_help = invoke(["help", "rule"])
    assert rule_help.exit_code == 0
    assert rule_help.stdout == invoke(["rule", "--help"]).stdout
    unknown = invoke(["help", "nope"])
    assert unknown.exit_code == 2
    assert (
        unknown.stderr
        == "autograd-lint: error: help: unknown command 'nope' (commands: check, audit, clean, rule, help)\n"
    )


def test_a_directory_named_help_is_linted_as_dot_slash_help(tmp_path):
    (tmp_path / "help").mkdir()
    (tmp_path / "help" / "bad.py").write_text(SNIPPET)
    proc = run_process([sys.executable, "-m", "autograd_lint", "./help"], tmp_path)
    assert proc.returncode == 1
    assert proc.stdout == f"help/bad.py:11:9: AGL002 {MESSAGE}\n"
    shown = run_process([sys.executable, "-m", "autograd_lint", "help"], tmp_path)
    assert shown.returncode == 0 and "Commands (autograd-lint COMMAND --help for one):" in shown.stdout


@pytest.mark.parametrize("code, name", [("AGL000", "syntax-error"), ("agl999", "internal-error")])
def test_rule_explains_the_reserved_codes(code, name):
    result = invoke(["rule", code])
    assert result.exit_code == 0
    assert result.stdout.startswith(f"# {code.upper()} {name}\n")
    data = json.loads(invoke(["rule", "--output-format", "json", code]).stdout)
    assert (data["code"], data["name"], data["severity"]) == (code.upper(), name, "error")
    assert data["explanation"] == result.stdout
    proc = run_process([sys.executable, "-m", "autograd_lint", "rule", code], Path.cwd())
    assert (proc.returncode, proc.stdout) == (0, result.stdout)


# --- --exclude / --extend-exclude ------------------------------------------------------------------


@pytest.fixture
def excludes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for relative in ("a.py", "gen/g.py", "src/gen/h.py", "src/m.py", "build/b.py"):
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text(CLEAN)
    (tmp_path / "pyproject.toml").write_text('[tool.autograd-lint]\nextend-exclude = ["a.py"]\n')
    return tmp_path


@pytest.mark.parametrize(
    "args, shown",
    [
        ([], ["gen/g.py", "src/gen/h.py", "src/m.py"]),
        (["--exclude", "gen"], ["build/b.py", "src/m.py"]),  # replaces the defaults (build), keeps extend-exclude
        (["--exclude", "gen,build", "--exclude", "m.py"], []),
        (["--extend-exclude", "gen"], ["src/m.py"]),  # adds to the configured a.py and the defaults
        (["--extend-exclude", "src/gen"], ["gen/g.py", "src/m.py"]),  # a slash: relative to the project root
    ],
)
def test_exclude_and_extend_exclude_on_the_command_line(excludes, args, shown):
    result = invoke(["--show-files", *args, "."])
    assert result.exit_code == 0
    assert [Path(line).as_posix() for line in lines(result.stdout)] == shown


def test_extend_exclude_with_a_slash_is_relative_to_the_current_directory(excludes, monkeypatch):
    monkeypatch.chdir(excludes / "src")
    result = invoke(["--show-files", "--extend-exclude", "gen/*.py", "."])
    assert [Path(line).as_posix() for line in lines(result.stdout)] == ["m.py"]


def test_exclude_in_a_subprocess(excludes):
    proc = run_process(
        [sys.executable, "-m", "autograd_lint", "--show-files", "--exclude", "gen", "--extend-exclude", "build", "."],
        excludes,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["src/m.py"]


# --- --show-settings --------------------------------------------------------------------------------


def test_show_settings(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pyproject.toml").write_text(
        '[tool.autograd-lint]\nselect = ["AGL00"]\nignore = ["AGL003"]\nextend-exclude = ["gen"]\n'
        '[tool.autograd-lint.per-file-ignores]\n"tests/*" = ["AGL002"]\n'
    )
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "t.py").write_text(SNIPPET)
    result = invoke(["--show-settings", "--extend-select", "AGL100", "--exclude", "build", "--no-cache", "tests/t.py"])
    assert result.exit_code == 0
    assert result.stdout == (
        "path = tests/t.py\n"
        f"config-file = {tmp_path / 'pyproject.toml'}\n"
        f"project-root = {tmp_path}\n"
        'select = ["AGL00"]\n'
        'extend-select = ["AGL100"]\n'
        'ignore = ["AGL003"]\n'
        'per-file-ignores = {"tests/*" = ["AGL002"]}\n'
        'exclude = ["build"]\n'
        'extend-exclude = ["gen"]\n'
        "respect-gitignore = true\n"
        "force-exclude = false\n"
        "cache-dir = none (--no-cache)\n"
        "output-format = text\n"
        'rules = ["AGL001", "AGL004", "AGL005", "AGL006", "AGL007", "AGL008", "AGL009", "AGL100"]\n'
    )
    assert result.stderr == ""


def test_show_settings_without_configuration_in_a_subprocess(tmp_path):
    proc = run_process([sys.executable, "-m", "autograd_lint", "--show-settings", "--output-format", "json"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    settings = dict(line.split(" = ", 1) for line in proc.stdout.splitlines())
    assert settings["path"] == "."
    assert settings["config-file"] == "none (built-in defaults)"
    assert settings["select"] == "default (every rule but the opt-in ones)"
    assert settings["cache-dir"] == str(tmp_path / ".autograd_lint_cache")
    assert settings["output-format"] == "json"
    assert json.loads(settings["rules"]) == [code for code in RULES if code not in autograd_lint.rules.OPT_IN]


# --- --add-noqa ---------------------------------------------------------------------------------------


def test_add_noqa_then_the_run_is_clean_and_a_second_run_adds_nothing(project):
    (project / "two.py").write_text(TWO_FINDINGS.replace("        return g\n", "        return g  # noqa: E501\n", 1))
    (project / "dotted.py").write_text(SNIPPET.replace("return g * ctx.scale", "return g * \\\n            ctx.scale"))
    (project / "string.py").write_text(
        SNIPPET.replace("return g * ctx.scale", 'return g * ctx.scale if """\nx""" else g')
    )
    before = invoke(["--output-format", "json", "."])
    assert before.exit_code == 1
    assert [(d["path"], d["line"]) for d in json.loads(before.stdout)] == [
        ("bad.py", 11),
        ("dotted.py", 11),
        ("string.py", 11),
        ("two.py", 8),
        ("two.py", 17),
    ]
    result = invoke(["--add-noqa", "."])
    assert result.exit_code == 0
    assert result.stdout == ""
    assert result.stderr == "Added 5 noqa directives.\n"
    assert (project / "bad.py").read_text() == SNIPPET.replace(
        "return g * ctx.scale", "return g * ctx.scale  # noqa: AGL002"
    )
    assert (project / "two.py").read_text().splitlines()[7] == "        return g  # noqa: E501, AGL002"  # merged
    assert (project / "dotted.py").read_text().splitlines()[10:12] == [
        "        return g * \\",
        "            ctx.scale  # noqa: AGL002",  # where noqa is read for a continued line
    ]
    assert (project / "string.py").read_text().splitlines()[10:12] == [
        '        return g * ctx.scale if """',
        'x""" else g  # noqa: AGL002',  # the end of the multi-line string
    ]
    assert (project / "clean.py").read_text() == CLEAN
    after = invoke(["."])
    assert after.exit_code == 0, after.stdout
    assert after.stderr == "All checks passed! (5 files checked)\n"
    again = invoke(["--add-noqa", "."])
    assert (again.exit_code, again.stderr) == (0, "Added 0 noqa directives.\n")


def test_add_noqa_keeps_line_endings_and_encoding(project):
    latin = "# -*- coding: latin-1 -*-\n# café\n" + SNIPPET
    (project / "latin.py").write_bytes(latin.replace("\n", "\r\n").encode("latin-1"))
    (project / "bom.py").write_bytes(b"\xef\xbb\xbf" + SNIPPET.encode())
    result = invoke(["--add-noqa", "latin.py", "bom.py"])
    assert (result.exit_code, result.stderr) == (0, "Added 2 noqa directives.\n")
    fixed = latin.replace("return g * ctx.scale", "return g * ctx.scale  # noqa: AGL002")
    assert (project / "latin.py").read_bytes() == fixed.replace("\n", "\r\n").encode("latin-1")
    assert (project / "bom.py").read_bytes() == b"\xef\xbb\xbf" + SNIPPET.replace(
        "return g * ctx.scale", "return g * ctx.scale  # noqa: AGL002"
    ).encode()


def test_add_noqa_never_touches_a_file_with_a_syntax_error(project):
    broken = SNIPPET + "def f(:\n"
    (project / "broken.py").write_text(broken)
    result = invoke(["--add-noqa", "broken.py", "bad.py"])
    assert result.exit_code == 0
    assert lines(result.stderr) == [
        "autograd-lint: warning: broken.py: not changed: syntax error at 12:7",
        "Added 1 noqa directive.",
    ]
    assert (project / "broken.py").read_text() == broken


def test_add_noqa_leaves_notebooks_unchanged_with_a_warning(project):
    notebook = REPO / "fixtures" / "notebooks" / "buggy_prototype_scaled_matmul.ipynb"
    (project / "proto.ipynb").write_bytes(notebook.read_bytes())
    result = invoke(["--add-noqa", "proto.ipynb", "bad.py"])
    assert result.exit_code == 0
    assert lines(result.stderr) == [
        "autograd-lint: warning: proto.ipynb: not changed: --add-noqa does not edit notebooks; add `# noqa: CODE` in the cell",
        "Added 1 noqa directive.",
    ]
    assert (project / "proto.ipynb").read_bytes() == notebook.read_bytes()


def test_add_noqa_refuses_stdin_and_reports_unreadable_paths(project):
    refused = invoke(["--add-noqa", "-"], input=SNIPPET)
    assert (refused.exit_code, refused.stderr) == (
        2,
        "autograd-lint: error: --add-noqa rewrites files: it cannot take stdin (-)\n",
    )
    missing = invoke(["--add-noqa", "bad.py", "missing.py"])
    assert missing.exit_code == 2
    assert lines(missing.stderr) == [
        "autograd-lint: error: missing.py: no such file or directory",
        "Added 1 noqa directive.",
    ]


def test_add_noqa_in_a_subprocess_respects_the_selection(tmp_path):
    (tmp_path / "bad.py").write_text(SNIPPET + "x = 1  # noqa\n")
    proc = run_process([sys.executable, "-m", "autograd_lint", "--add-noqa", "--select", "ALL", "."], tmp_path)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "Added 1 noqa directive.\n")
    # The bare noqa hides nothing of ours (AGL101 does not report it) and is left alone: only findings get a comment.
    assert (tmp_path / "bad.py").read_text().splitlines()[10:] == [
        "        return g * ctx.scale  # noqa: AGL002",
        "x = 1  # noqa",
    ]
    relint = run_process([sys.executable, "-m", "autograd_lint", "-q", "--select", "ALL", "."], tmp_path)
    assert (relint.returncode, relint.stdout) == (0, "")


# --- --statistics order ------------------------------------------------------------------------------


def test_statistics_most_frequent_first_then_by_code(project):
    from autograd_lint.report.pages import rule_page

    twice = rule_page("AGL013").split("## Bad\n```python\n", 1)[1].split("```", 1)[0]
    (project / "s1.py").write_text(twice)
    (project / "s2.py").write_text(twice)
    result = invoke(["--statistics", "bad.py", "s1.py", "s2.py"])
    assert result.stdout == "    2\tAGL013\tsave-for-backward-twice\n    1\tAGL002\tbackward-arity-mismatch\n"
