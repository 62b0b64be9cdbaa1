"""CLI ergonomics for integrations: exit codes in every format, --output-file, --show-files, --force-exclude,
.gitignore, --per-file-ignores, colour and NO_COLOR, `rule --output-format`."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from snippets import MESSAGE, SNIPPET, parse_text_output

from autograd_lint import Config, lint_paths
from autograd_lint.cli import main
from autograd_lint.report.output import FORMATS
from autograd_lint.report.pages import rule_page
from autograd_lint.rules import RULES

CLEAN = "x = 1\n"
LINE = f"bad.py:11:9: AGL002 {MESSAGE}"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def invoke(args, input=None, env=None):
    return CliRunner().invoke(main, args, input=input, env=env)


def paths_of(stdout: str) -> list[str]:
    return [Path(path).as_posix() for path, *_ in parse_text_output(stdout)]


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.py").write_text(SNIPPET)
    (tmp_path / "clean.py").write_text(CLEAN)
    return tmp_path


def write_config(directory: Path, body: str) -> None:
    (directory / "pyproject.toml").write_text("[tool.autograd-lint]\n" + body)


# --- exit codes: 0 clean, 1 findings, 2 errors, in every format and mode ----------------------------


SCENARIOS = {
    "clean": (["clean.py"], 0),
    "findings": (["bad.py", "clean.py"], 1),
    "findings with --exit-zero": (["--exit-zero", "bad.py"], 0),
    "missing path": (["bad.py", "missing.py"], 2),
    "missing path with --exit-zero": (["--exit-zero", "missing.py"], 2),
    "unknown rule code": (["--select", "NOPE1", "bad.py"], 2),
    "statistics with findings": (["--statistics", "bad.py"], 1),
}


@pytest.mark.parametrize("output_format", FORMATS)
@pytest.mark.parametrize("scenario", list(SCENARIOS))
@pytest.mark.parametrize("to_file", [False, True], ids=["stdout", "output-file"])
def test_exit_codes_in_every_format(project, output_format, scenario, to_file):
    args, expected = SCENARIOS[scenario]
    if "--statistics" in args and output_format not in ("text", "full", "json", "json-lines"):
        expected = 2  # statistics are a table or JSON; asking for SARIF statistics is a usage error
    extra = ["--output-file", "report.out"] if to_file else []
    result = invoke(["--output-format", output_format, *extra, *args])
    assert result.exit_code == expected, result.stderr


def test_internal_error_exits_2_in_every_format(project, monkeypatch):
    def explode(self, function_class, module):
        raise ValueError("boom")

    monkeypatch.setattr(RULES["AGL002"], "check_class", explode)
    for output_format in FORMATS:
        result = invoke(["--output-format", output_format, "bad.py"])
        assert result.exit_code == 2, output_format
        assert "AGL999" in result.stdout


def test_statistics_json_lines(project):
    (project / "bad2.py").write_text(SNIPPET)
    result = invoke(["--statistics", "--output-format", "json-lines", "bad.py", "bad2.py"])
    assert result.exit_code == 1
    assert [json.loads(line) for line in result.stdout.splitlines()] == [
        {"code": "AGL002", "name": "backward-arity-mismatch", "count": 2}
    ]


@pytest.mark.parametrize("output_format", ["sarif", "github", "gitlab"])
def test_statistics_in_a_ci_format_is_a_usage_error(project, output_format):
    result = invoke(["--statistics", "--output-format", output_format, "bad.py"])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.startswith(f"autograd-lint: error: --statistics prints text or JSON, not {output_format}")


# --- --output-file ------------------------------------------------------------------------------------


def test_output_file_gets_the_report_and_stderr_the_summary(project):
    result = invoke(["--output-format", "json", "--output-file", "out/report.json", "bad.py", "clean.py"])
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == "Found 1 diagnostic (1 error) in 2 files checked.\n"
    report = json.loads((project / "out" / "report.json").read_text())
    assert [(d["path"], d["line"], d["column"], d["code"]) for d in report] == [("bad.py", 11, 9, "AGL002")]


def test_short_output_file_option_and_text_format(project):
    result = invoke(["-o", "report.txt", "bad.py"])
    assert result.exit_code == 1
    assert result.stdout == ""
    assert (project / "report.txt").read_text() == LINE + "\n"


def test_output_file_is_written_even_when_clean(project):
    (project / "report.json").write_text("stale")
    result = invoke(["--output-format", "sarif", "-o", "report.json", "clean.py"])
    assert result.exit_code == 0
    assert json.loads((project / "report.json").read_text())["runs"][0]["results"] == []
    assert result.stderr == "All checks passed! (1 file checked)\n"


def test_output_file_quiet_has_no_summary(project):
    result = invoke(["-q", "-o", "report.txt", "bad.py"])
    assert result.exit_code == 1
    assert result.stderr == ""


def test_unwritable_output_file_exits_2_with_one_line(project):
    result = invoke(["-o", "bad.py/report.txt", "bad.py"])
    assert result.exit_code == 2
    assert result.stdout == ""
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert errors == [errors[0]] and errors[0].startswith(
        "autograd-lint: error: bad.py/report.txt: cannot write the report"
    )


def test_machine_formats_on_stdout_print_no_summary(project):
    for output_format in ("json", "json-lines", "sarif", "github", "gitlab"):
        result = invoke(["--output-format", output_format, "bad.py"])
        assert result.stderr == "", output_format


# --- --show-files -------------------------------------------------------------------------------------


@pytest.fixture
def tree(project):
    for relative in (
        "pkg/a.py",
        "pkg/b.pyi",
        "pkg/notes.txt",
        "build/gen.py",
        "generated/x.py",
        "pkg/keep_pb2.py",
        "pkg/drop_pb2.py",
    ):
        target = project / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(SNIPPET)
    (project / ".gitignore").write_text("generated/\n*_pb2.py\n!keep_pb2.py\n")
    (project / ".git").mkdir()  # .gitignore files count inside a git repository
    return project


def test_show_files_lists_what_would_be_linted_and_exits_0(tree):
    result = invoke(["--show-files"])
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == ["bad.py", "clean.py", "pkg/a.py", "pkg/b.pyi", "pkg/keep_pb2.py"]
    assert result.stderr == ""


def test_show_files_matches_what_is_linted(tree):
    shown = invoke(["--show-files", "."]).stdout.splitlines()
    linted = lint_paths(["."], Config(root=str(tree)))
    assert linted.files_checked == len(shown)
    assert {Path(d.path).as_posix() for d in linted.diagnostics} <= set(shown)


def test_show_files_with_explicit_paths_stdin_and_missing(tree):
    result = invoke(["--show-files", "pkg", "bad.py", "-", "--stdin-filename", "z_stdin.py"])
    assert result.exit_code == 0
    assert result.stdout.splitlines() == ["bad.py", "pkg/a.py", "pkg/b.pyi", "pkg/keep_pb2.py", "z_stdin.py"]
    missing = invoke(["--show-files", "bad.py", "missing.py"])
    assert missing.exit_code == 2
    assert missing.stdout == "bad.py\n"
    assert missing.stderr == "autograd-lint: error: missing.py: no such file or directory\n"


# --- .gitignore -----------------------------------------------------------------------------------------


def test_gitignore_is_respected_by_default(tree):
    result = invoke(["-q", "."])
    assert result.exit_code == 1
    assert paths_of(result.stdout) == ["bad.py", "pkg/a.py", "pkg/b.pyi", "pkg/keep_pb2.py"]


def test_no_respect_gitignore_flag(tree):
    result = invoke(["-q", "--no-respect-gitignore", "."])
    assert paths_of(result.stdout) == [
        "bad.py",
        "generated/x.py",
        "pkg/a.py",
        "pkg/b.pyi",
        "pkg/drop_pb2.py",
        "pkg/keep_pb2.py",
    ]


def test_respect_gitignore_config_key_and_flag_override(tree):
    write_config(tree, "respect-gitignore = false\n")
    assert "generated/x.py" in paths_of(invoke(["-q", "."]).stdout)
    assert "generated/x.py" not in paths_of(invoke(["-q", "--respect-gitignore", "."]).stdout)


def test_respect_gitignore_config_must_be_a_boolean(tree):
    write_config(tree, 'respect-gitignore = "no"\n')
    result = invoke(["-q", "."])
    assert result.exit_code == 2
    assert "respect-gitignore must be true or false" in result.stderr


def test_gitignored_file_or_directory_named_explicitly_is_linted(tree):
    (tree / "generated" / "y_pb2.py").write_text(SNIPPET)  # ignored on its own account, not its directory's
    result = invoke(["-q", "pkg/drop_pb2.py", "generated"])
    assert paths_of(result.stdout) == ["generated/x.py", "pkg/drop_pb2.py"]


def test_nested_gitignore_is_relative_to_its_directory_and_can_re_include(tree):
    (tree / "pkg" / ".gitignore").write_text("/a.py\n!drop_pb2.py\n")
    (tree / "pkg" / "sub").mkdir()
    (tree / "pkg" / "sub" / "a.py").write_text(SNIPPET)
    result = invoke(["-q", "."])
    assert paths_of(result.stdout) == ["bad.py", "pkg/b.pyi", "pkg/drop_pb2.py", "pkg/keep_pb2.py", "pkg/sub/a.py"]


def test_gitignore_above_the_walked_directory_and_git_info_exclude_apply(tree):
    (tree / ".gitignore").write_text("pkg/b.pyi\n")
    (tree / ".git" / "info").mkdir()
    (tree / ".git" / "info" / "exclude").write_text("a.py\n")
    result = invoke(["-q", "pkg"])
    assert paths_of(result.stdout) == ["pkg/drop_pb2.py", "pkg/keep_pb2.py"]


def test_gitignore_means_nothing_outside_a_git_repository(tree):
    (tree / ".git").rmdir()
    result = invoke(["-q", "."])
    assert paths_of(result.stdout) == [
        "bad.py",
        "generated/x.py",
        "pkg/a.py",
        "pkg/b.pyi",
        "pkg/drop_pb2.py",
        "pkg/keep_pb2.py",
    ]


def test_git_worktree_file_marks_a_repository_too(tree):
    (tree / ".git").rmdir()
    (tree / ".git").write_text("gitdir: /elsewhere/.git/worktrees/x\n")
    assert paths_of(invoke(["-q", "."]).stdout) == ["bad.py", "pkg/a.py", "pkg/b.pyi", "pkg/keep_pb2.py"]


def test_library_walk_respects_gitignore_too(tree):
    found = lint_paths(["."], Config(root=str(tree)))
    assert {Path(d.path).as_posix() for d in found.diagnostics} == {
        "bad.py",
        "pkg/a.py",
        "pkg/b.pyi",
        "pkg/keep_pb2.py",
    }
    everything = lint_paths(["."], Config(root=str(tree), respect_gitignore=False))
    assert "generated/x.py" in {Path(d.path).as_posix() for d in everything.diagnostics}


# --- --force-exclude ------------------------------------------------------------------------------------


def test_explicit_file_in_excluded_directory_is_linted_without_force_exclude(tree):
    result = invoke(["-q", "build/gen.py"])
    assert result.exit_code == 1


def test_force_exclude_skips_explicit_files_in_excluded_directories(tree):
    result = invoke(["--force-exclude", "build/gen.py", "clean.py"])
    assert result.exit_code == 0
    assert result.stdout == ""
    assert result.stderr == "All checks passed! (1 file checked)\n"


def test_force_exclude_with_only_excluded_paths_lints_nothing_not_the_current_directory(tree):
    # pre-commit names each file; when every one is excluded the run must not fall back to `.`.
    result = invoke(["--force-exclude", "build/gen.py"])
    assert result.exit_code == 0
    assert result.stdout == ""
    assert result.stderr == "All checks passed! (0 files checked)\n"
    assert invoke(["--show-files", "--force-exclude", "build/gen.py"]).stdout == ""


def test_force_exclude_applies_configured_patterns_and_directories(tree):
    write_config(tree, 'extend-exclude = ["pkg/a.py", "legacy"]\n')
    (tree / "legacy").mkdir()
    (tree / "legacy" / "old.py").write_text(SNIPPET)
    named = ["pkg/a.py", "legacy/old.py", "legacy", "bad.py"]
    assert paths_of(invoke(["-q", *named]).stdout) == ["bad.py", "legacy/old.py", "pkg/a.py"]
    assert paths_of(invoke(["-q", "--force-exclude", *named]).stdout) == ["bad.py"]


def test_force_exclude_skips_files_inside_a_virtual_environment(tree):
    (tree / "env" / "lib").mkdir(parents=True)
    (tree / "env" / "pyvenv.cfg").write_text("home = /usr/bin\n")
    (tree / "env" / "lib" / "m.py").write_text(SNIPPET)
    assert invoke(["-q", "env/lib/m.py"]).exit_code == 1
    assert invoke(["-q", "--force-exclude", "env/lib/m.py"]).exit_code == 0


def test_force_exclude_config_key_and_no_force_exclude(tree):
    write_config(tree, "force-exclude = true\n")
    assert invoke(["-q", "build/gen.py"]).exit_code == 0
    assert invoke(["-q", "--no-force-exclude", "build/gen.py"]).exit_code == 1


def test_force_exclude_applies_to_stdin_filename(tree):
    excluded = invoke(["--force-exclude", "-", "--stdin-filename", "build/x.py"], input=SNIPPET)
    assert excluded.exit_code == 0
    assert excluded.stdout == ""
    kept = invoke(["--force-exclude", "-", "--stdin-filename", "src/x.py"], input=SNIPPET)
    assert kept.exit_code == 1
    assert kept.stdout.startswith("src/x.py:11:9: AGL002")


def test_force_exclude_does_not_exclude_the_project_root_itself(tree):
    result = invoke(["-q", "--force-exclude", "."])
    assert paths_of(result.stdout) == ["bad.py", "pkg/a.py", "pkg/b.pyi", "pkg/keep_pb2.py"]


# --- --per-file-ignores ---------------------------------------------------------------------------------


def test_per_file_ignores_on_the_command_line(tree):
    assert paths_of(invoke(["-q", "--per-file-ignores", "pkg/*:AGL002", "."]).stdout) == ["bad.py"]
    assert paths_of(invoke(["-q", "--per-file-ignores", "a.py:AGL00", "."]).stdout) == [
        "bad.py",
        "pkg/b.pyi",
        "pkg/keep_pb2.py",
    ]


def test_per_file_ignores_repeatable_and_comma_separated(tree):
    result = invoke(
        ["-q", "--per-file-ignores", "bad.py:AGL001,AGL002", "--per-file-ignores", "*.pyi:AGL002", "bad.py", "pkg"]
    )
    assert paths_of(result.stdout) == ["pkg/a.py", "pkg/keep_pb2.py"]


def test_per_file_ignores_merge_with_the_config(tree):
    write_config(tree, '[tool.autograd-lint.per-file-ignores]\n"bad.py" = ["AGL001"]\n"*_pb2.py" = ["AGL002"]\n')
    assert paths_of(invoke(["-q", "."]).stdout) == ["bad.py", "pkg/a.py", "pkg/b.pyi"]
    merged = invoke(["-q", "--per-file-ignores", "bad.py:AGL002", "--per-file-ignores", "a.py:AGL002", "."])
    assert paths_of(merged.stdout) == ["pkg/b.pyi"]


def test_per_file_ignores_with_a_slash_are_relative_to_the_current_directory(tree, monkeypatch):
    write_config(tree, "ignore = []\n")  # the config, and so the root patterns are matched at, is tree/
    monkeypatch.chdir(tree / "pkg")
    result = invoke(["-q", "--per-file-ignores", "a.py:AGL002", "--per-file-ignores", "sub/*:AGL002", "."])
    assert paths_of(result.stdout) == ["b.pyi", "keep_pb2.py"]
    (tree / "pkg" / "sub").mkdir()
    (tree / "pkg" / "sub" / "m.py").write_text(SNIPPET)
    # `sub/*` from pkg/ means pkg/sub/*, not the project's sub/.
    result = invoke(["-q", "--per-file-ignores", "sub/*:AGL002", "sub"])
    assert result.exit_code == 0 and result.stdout == ""


@pytest.mark.parametrize("entry", ["bad.py", "bad.py:", ":AGL002", "bad.py:NOPE1", "bad.py:,"])
def test_bad_per_file_ignores_entry_exits_2(project, entry):
    result = invoke(["--per-file-ignores", entry, "bad.py"])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith("autograd-lint: error: --per-file-ignores:")


# --- colour -----------------------------------------------------------------------------------------------


def coloured_line() -> str:
    colon = click.style(":", fg="cyan")
    return (
        f"{click.style('bad.py', bold=True)}{colon}11{colon}9{colon} "
        f"{click.style('AGL002', fg='red', bold=True)} {MESSAGE}\n"
    )


def test_color_always_colours_text(project):
    result = invoke(["-q", "--color", "always", "bad.py"])
    assert result.exit_code == 1
    assert result.stdout == coloured_line()
    assert ANSI.sub("", result.stdout) == LINE + "\n"


def test_color_always_colours_full_and_warnings_yellow(project):
    (project / "relu.py").write_text("def relu(x):\n    return x * (x > 0).float()\n")
    # AGL003 (a warning) is opt-in.
    result = invoke(["-q", "--extend-select", "AGL003", "--color", "always", "--output-format", "full", "relu.py"])
    assert click.style("AGL003", fg="yellow", bold=True) in result.stdout
    assert click.style("^" * 19, fg="yellow", bold=True) in result.stdout
    plain = invoke(["-q", "--extend-select", "AGL003", "--output-format", "full", "relu.py"]).stdout
    assert ANSI.sub("", result.stdout) == plain


def test_no_colour_when_not_a_terminal_or_never(project):
    assert "\x1b[" not in invoke(["-q", "bad.py"]).stdout
    assert "\x1b[" not in invoke(["-q", "--color", "never", "bad.py"]).stdout
    assert "\x1b[" not in invoke(["-q", "--color", "auto", "bad.py"]).stdout


def test_color_always_never_colours_machine_formats_or_files(project):
    for output_format in ("json", "json-lines", "sarif", "github", "gitlab"):
        assert "\x1b[" not in invoke(["--color", "always", "--output-format", output_format, "bad.py"]).stdout
    invoke(["--color", "always", "-o", "report.txt", "bad.py"])
    assert (project / "report.txt").read_text() == LINE + "\n"


def test_color_rejects_unknown_values(project):
    result = invoke(["--color", "sometimes", "bad.py"])
    assert result.exit_code == 2


def run_on_terminal(args: list[str], cwd: Path, env: dict[str, str]) -> tuple[int, str]:
    """Run the real command with stdout on a pseudo-terminal; (exit code, what the terminal got)."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "autograd_lint", *args],
        cwd=cwd,
        env=env,
        stdout=follower,
        stderr=subprocess.DEVNULL,
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    return proc.wait(timeout=120), b"".join(chunks).decode().replace("\r\n", "\n")


def test_terminal_gets_colour_unless_no_color_is_set(project):
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR")}
    code, shown = run_on_terminal(["-q", "bad.py"], project, env)
    assert code == 1
    assert shown == coloured_line()
    code, shown = run_on_terminal(["-q", "bad.py"], project, {**env, "NO_COLOR": "1"})
    assert code == 1
    assert shown == LINE + "\n"
    code, shown = run_on_terminal(["-q", "--color", "never", "bad.py"], project, env)
    assert shown == LINE + "\n"
    # An explicit --color always wins over NO_COLOR, as no-color.org asks of command-line flags.
    code, shown = run_on_terminal(["-q", "--color", "always", "bad.py"], project, {**env, "NO_COLOR": "1"})
    assert shown == coloured_line()


def test_piped_output_is_never_coloured(project):
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    proc = subprocess.run(
        [sys.executable, "-m", "autograd_lint", "-q", "bad.py"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    assert proc.stdout == LINE + "\n"


# --- `rule --output-format` --------------------------------------------------------------------------------


def test_rule_json_explanation_is_the_page():
    result = invoke(["rule", "AGL001", "--output-format", "json"])
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["code"] == "AGL001"
    assert data["explanation"] == rule_page("AGL001")


def test_rule_only_offers_text_and_json():
    result = invoke(["rule", "AGL001", "--output-format", "sarif"])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "'sarif' is not one of 'text', 'json'" in result.stderr
