"""Never crash, never lose a finding: the bad-input catalogue, internal-error isolation, a real-code
sweep over installed packages, and determinism across runs, jobs and file order.

(The catalogue's other entries live in test_bad_input.py: syntax errors, Python 2 print, NUL bytes,
nested parentheses, invalid UTF-8, coding cookies, BOM, CRLF, empty and comment-only files, directory
named x.py, unreadable file, dangling symlinks; bad pyproject.toml files in test_config.py.)
"""

from __future__ import annotations

import ast
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import _pytest
import click
import libcst
import pytest
import torch
from snippets import SNIPPET
from snippets import parse_text_output as located

import autograd_lint.api
import autograd_lint.io.reading
from autograd_lint import lint_paths, lint_source
from autograd_lint.core.diagnostic import Severity
from autograd_lint.core.rule import Rule
from autograd_lint.rules import RULES

MESSAGE_START = "Scale.backward returns 1 value but forward takes 2 inputs"
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def run_linter(args, cwd, timeout=300, **kwargs):
    return subprocess.run(
        [sys.executable, "-m", "autograd_lint", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        **kwargs,
    )


from test_bad_input import GOOD, invoke, project  # noqa: E402,F401 - the same two good files; `project` is a fixture

# --- line endings and whitespace -------------------------------------------------------------------


def test_lone_cr_line_endings(project):
    (project / "cr.py").write_bytes(SNIPPET.replace("\n", "\r").encode())
    result = invoke(["-q", "cr.py", "a_good.py"])
    assert result.exit_code == 1
    assert located(result.stdout) == [GOOD[0], ("cr.py", 11, 9, "AGL002")]


def test_mixed_line_endings(project):
    lines = SNIPPET.splitlines()
    mixed = "".join(line + ("\r\n", "\r", "\n")[i % 3] for i, line in enumerate(lines))
    (project / "mixed.py").write_bytes(mixed.encode())
    # Lines as CPython counts them in such a file (where the `return` is by its own parser).
    [line] = [node.lineno for node in ast.walk(ast.parse(mixed)) if isinstance(node, ast.Return)][-1:]
    assert located(invoke(["-q", "mixed.py"]).stdout) == [("mixed.py", line, 9, "AGL002")]


def test_tabs_and_form_feeds(project):
    tabbed = SNIPPET.replace("        ", "\t\t").replace("    ", "\t")
    source = "\f\n" + tabbed.replace("class Scale", "\fclass Scale")
    (project / "tabs.py").write_text(source)
    result = invoke(["-q", "--output-format", "json", "tabs.py"])
    assert result.exit_code == 1, result.output
    [entry] = json.loads(result.stdout)
    assert (entry["code"], entry["line"], entry["column"]) == ("AGL002", 12, 3)  # two tabs, then `return`


def test_only_comments_and_blank_lines(project):
    (project / "comments.py").write_text("# one\n\n    # indented comment\n#\n")
    result = invoke(["comments.py"])
    assert (result.exit_code, result.stdout, result.stderr) == (0, "", "All checks passed! (1 file checked)\n")


# --- big and deep ----------------------------------------------------------------------------------


def test_ten_megabyte_generated_file(project):
    # The shape of a generated data module: a Function, then 10 MB of data.
    data = ("0123456789abcdef" * 4 + "\n") * 160_000
    (project / "generated.py").write_text(SNIPPET + f'DATA = """\n{data}"""\n')
    assert (project / "generated.py").stat().st_size > 10_000_000
    result = lint_paths(["generated.py", "a_good.py"])
    assert [(d.path, d.line, d.code) for d in result.diagnostics] == [
        ("a_good.py", 11, "AGL002"),
        ("generated.py", 11, "AGL002"),
    ]
    assert result.errors == []


def chained(operator: str, count: int) -> str:
    return f" {operator} ".join(["x"] * count)


@pytest.mark.parametrize("operator", ["*", "and"])
def test_a_thousand_chained_operators_inside_a_function(operator):
    # Deeper than the default recursion limit lets libcst and the rules go: still checked, no AGL999.
    source = SNIPPET.replace("return g * ctx.scale", f"y = {chained(operator, 1000)}\n        return g * ctx.scale")
    source += f"\n\ndef act(x):\n    return {chained(operator, 1000)}\n"
    assert [(d.code, d.line) for d in lint_source(source)] == [("AGL002", 12)]


def test_deepest_chain_python_accepts_is_checked_and_a_deeper_one_is_a_syntax_error():
    accepted = SNIPPET + f"\nLONG = {chained('+', 2000)}\n"
    assert [d.code for d in lint_source(accepted)] == ["AGL002"]
    [diagnostic] = lint_source(SNIPPET + f"\nLONG = {chained('+', 20000)}\n")
    assert diagnostic.code == "AGL000" and "recursion" in diagnostic.message


@pytest.mark.parametrize(
    "nested",
    [
        "x = " + "[" * 150 + "]" * 150,
        "x = " + "-" * 900 + "y",
        "x = " + "not " * 900 + "y",
        "f = " + "lambda: " * 500 + "0",
        "x = a" + ".b" * 1000,
        "x = f" + "()" * 1000,
        "".join("    " * i + "if x:\n" for i in range(99)) + "    " * 99 + "pass",
    ],
    ids=["brackets", "unary-minus", "not", "lambdas", "attributes", "calls", "indentation"],
)
def test_deep_nesting_is_checked_without_internal_error(nested):
    diagnostics = lint_source(SNIPPET + "\n" + nested + "\n")
    assert [d.code for d in diagnostics] == ["AGL002"], diagnostics


def test_too_deep_for_python_is_a_syntax_error_through_a_real_process(tmp_path):
    (tmp_path / "deep.py").write_text("x = " + " + ".join(["a"] * 50_000) + "\n")
    (tmp_path / "good.py").write_text(SNIPPET)
    proc = run_linter(["-q", "deep.py", "good.py"], tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert [(path, code) for path, _, _, code in located(proc.stdout)] == [("deep.py", "AGL000"), ("good.py", "AGL002")]
    assert proc.stderr == ""


def test_valid_code_that_libcst_cannot_parse_is_not_called_a_syntax_error():
    # 5,000 implicitly concatenated strings: CPython accepts them, libcst's parser gives up.
    source = SNIPPET + "\nTEXT = " + " ".join(["'a'"] * 5000) + "\n"
    [diagnostic] = lint_source(source)
    assert diagnostic.code == "AGL999"
    assert diagnostic.message.startswith("libcst cannot parse this file, which Python accepts (")
    assert diagnostic.message.endswith("); it was not checked")


@pytest.mark.parametrize("ending", ["\n", "\r\n"])
def test_blank_line_ending_in_a_backslash(ending):
    # Found by the fuzzer: CPython joins it to the next line, libcst's tokenizer rejected the file.
    source = SNIPPET.replace("        return g", "\t \t  \\\n        return g").replace("\n", ending)
    assert [(d.code, d.line, d.column) for d in lint_source(source)] == [("AGL002", 12, 9)]


def test_except_as_in_backward():
    # Found by the fuzzer: `except ... as name` in backward made AGL002 and AGL011 fail (AGL999).
    source = SNIPPET.replace(
        "        return g * ctx.scale",
        "        try:\n            pass\n        except ValueError as error:\n            pass\n        return g * ctx.scale",
    )
    assert [(d.code, d.line) for d in lint_source(source)] == [("AGL002", 15)]


# --- Python 2 --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "source, message",
    [
        ("exec 'x = 1'\n", "Missing parentheses in call to 'exec'"),
        ("x = `1`\n", "invalid syntax"),
        ("x = 0777\n", "leading zeros"),
        ("raise ValueError, 'x'\n", "invalid syntax"),
    ],
)
def test_python2_syntax_is_a_syntax_error(project, source, message):
    (project / "py2.py").write_text(source)
    result = invoke(["-q", "py2.py", "a_good.py"])
    assert result.exit_code == 1
    [finding] = [line for line in result.stdout.splitlines() if line.startswith("py2.py:")]
    assert " AGL000 SyntaxError: " in finding and message in finding
    assert located(result.stdout)[0] == GOOD[0]


# --- encodings -------------------------------------------------------------------------------------


def test_a_codec_that_fails_unusually_is_a_file_error(project):
    # `undefined` raises UnicodeError (not UnicodeDecodeError) for any input: it used to crash the run.
    (project / "undefined.py").write_text("# -*- coding: undefined -*-\nx = 1\n")
    result = invoke(["-q", "undefined.py", "a_good.py"])
    assert result.exit_code == 2
    assert located(result.stdout) == [GOOD[0]]
    assert result.stderr.startswith("autograd-lint: error: undefined.py: cannot decode as undefined: ")
    assert len(result.stderr.splitlines()) == 1


@pytest.mark.parametrize("output_format", ["text", "full", "json", "json-lines", "github", "gitlab"])
def test_file_name_that_is_not_utf8(tmp_path, output_format):
    name = os.fsdecode(b"caf\xe9.py")  # a Latin-1 file name on a UTF-8 system
    (tmp_path / name).write_text(SNIPPET)
    proc = subprocess.run(
        [sys.executable, "-m", "autograd_lint", "--output-format", output_format, "."],
        cwd=tmp_path,
        capture_output=True,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stderr
    assert b"Traceback" not in proc.stderr
    assert b"caf" in proc.stdout and b"AGL002" in proc.stdout


# --- paths that are not what they seem ---------------------------------------------------------------


def test_file_deleted_between_discovery_and_reading(project, monkeypatch):
    (project / "m_gone.py").write_text(SNIPPET)
    real_discover = autograd_lint.api.discover

    def discover_then_delete(*args, **kwargs):
        for path in real_discover(*args, **kwargs):
            if os.path.basename(path) == "m_gone.py":
                os.remove(path)
            yield path

    monkeypatch.setattr(autograd_lint.api, "discover", discover_then_delete)
    result = invoke(["-q", "--no-cache", "."])
    assert result.exit_code == 2
    assert located(result.stdout) == GOOD
    assert result.stderr == "autograd-lint: error: m_gone.py: file vanished before it could be read\n"


def test_file_made_unreadable_between_discovery_and_reading(project, monkeypatch):
    (project / "m_locked.py").write_text(SNIPPET)
    real_discover = autograd_lint.api.discover
    real_open = os.open
    locked: set[str] = set()

    def denying_open(file, *args, **kwargs):
        if os.path.basename(os.fspath(file)) in locked:  # chmod 0 does not stop root: fail as it would
            raise PermissionError(13, "Permission denied", os.fspath(file))
        return real_open(file, *args, **kwargs)

    def discover_then_lock(*args, **kwargs):
        for path in real_discover(*args, **kwargs):
            if os.path.basename(path) == "m_locked.py":
                os.chmod(path, 0)
                locked.add("m_locked.py")
            yield path

    monkeypatch.setattr(autograd_lint.api, "discover", discover_then_lock)
    monkeypatch.setattr(autograd_lint.io.reading.os, "open", denying_open)
    try:
        result = invoke(["-q", "--no-cache", "."])
    finally:
        os.chmod(project / "m_locked.py", 0o644)
    assert result.exit_code == 2
    assert located(result.stdout) == GOOD
    assert result.stderr == "autograd-lint: error: m_locked.py: cannot read: Permission denied\n"


def test_symlink_loops(project):
    os.symlink("m_loop.py", project / "m_loop.py")  # a file link to itself
    (project / "pkg").mkdir()
    (project / "pkg" / "inner.py").write_text(SNIPPET)
    os.symlink("..", project / "pkg" / "up")  # a directory link back up: never followed by the walk
    result = invoke(["-q", "--no-cache", "."])
    assert result.exit_code == 2
    assert located(result.stdout) == [GOOD[0], (os.path.join("pkg", "inner.py"), 11, 9, "AGL002"), GOOD[1]]
    assert result.stderr == "autograd-lint: error: m_loop.py: cannot read: Too many levels of symbolic links\n"


@pytest.mark.parametrize("named", [True, False], ids=["named", "walked"])
def test_fifo_is_refused_without_blocking(tmp_path, named):
    (tmp_path / "good.py").write_text(SNIPPET)
    os.mkfifo(tmp_path / "pipe.py")  # nobody writes: reading it would block forever
    proc = run_linter(["-q", "--no-cache", *(["pipe.py", "good.py"] if named else ["."])], tmp_path, timeout=60)
    assert proc.returncode == 2
    assert located(proc.stdout) == [("good.py", 11, 9, "AGL002")]
    assert proc.stderr == "autograd-lint: error: pipe.py: cannot read: not a regular file (a FIFO)\n"


def test_device_named_on_the_command_line(project):
    result = invoke(["-q", "/dev/zero", "a_good.py"])  # would never end if read
    assert result.exit_code == 2
    assert located(result.stdout) == [GOOD[0]]
    assert result.stderr == "autograd-lint: error: /dev/zero: cannot read: not a regular file (a device)\n"


def test_directory_that_cannot_be_listed_is_reported(project, monkeypatch):
    (project / "sealed").mkdir()
    (project / "sealed" / "hidden.py").write_text(SNIPPET)
    real_scandir = os.scandir

    def denying_scandir(path="."):
        if os.path.basename(os.fspath(path)) == "sealed":  # chmod 0 does not stop root
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", denying_scandir)
    result = invoke(["-q", "--no-cache", "."])
    assert result.exit_code == 2
    assert located(result.stdout) == GOOD
    assert result.stderr == "autograd-lint: error: sealed: cannot list directory: Permission denied\n"


# --- bad pyproject.toml files the config tests do not cover -----------------------------------------


@pytest.mark.parametrize(
    "content, message",
    [
        (
            b"[tool.autograd-lint]\nselect = ['AGL001'] # caf\xe9\n",
            "invalid TOML: not UTF-8 (invalid continuation byte at byte",
        ),
        (b"tool = 5\n[project]\nname = 'x'\n", None),
    ],
    ids=["not-utf8", "tool-not-a-table"],
)
def test_odd_pyproject_files(project, content, message):
    (project / "pyproject.toml").write_bytes(content)
    result = invoke(["-q", "a_good.py"])
    if message is None:  # not ours: ignored, as a pyproject.toml without the section is
        assert result.exit_code == 1 and located(result.stdout) == [GOOD[0]]
        explicit = invoke(["-q", "--config", "pyproject.toml", "a_good.py"])
        assert explicit.exit_code == 2
        assert explicit.stderr == "autograd-lint: error: pyproject.toml: [tool] must be a table\n"
    else:
        assert result.exit_code == 2
        [line] = result.stderr.splitlines()
        assert line.startswith("autograd-lint: error: ") and message in line
        assert result.stdout == ""


# --- internal errors: one rule on one file -----------------------------------------------------------


class RaisingRule(Rule):
    """A test rule: raises on files whose name starts with `boom`, finds nothing elsewhere."""

    code, name, severity, summary = "AGL990", "raises-on-boom", Severity.ERROR, "test rule"

    def check(self, module):
        if os.path.basename(module.path).startswith("boom"):
            raise ZeroDivisionError("planted failure")
        return iter(())


@pytest.fixture
def raising_rule(monkeypatch):
    monkeypatch.setitem(RULES._modules, "AGL990", "agl990_raises_on_boom")
    monkeypatch.setitem(RULES._loaded, "AGL990", RaisingRule)


def test_one_rule_failing_on_one_file_is_one_agl999_and_everything_else_runs(project, raising_rule):
    (project / "boom.py").write_text(SNIPPET)
    result = invoke(["--no-cache", "a_good.py", "boom.py", "z_good.py"])
    assert result.exit_code == 2
    assert located(result.stdout) == [GOOD[0], ("boom.py", 1, 1, "AGL999"), ("boom.py", 11, 9, "AGL002"), GOOD[1]]
    assert "boom.py:1:1: AGL999 rule AGL990 failed on this file: ZeroDivisionError: planted failure\n" in result.stdout
    assert "Traceback" not in result.output
    assert result.stderr == "Found 4 diagnostics (4 errors) in 3 files checked.\n"


def test_verbose_shows_the_traceback(project, raising_rule):
    (project / "boom.py").write_text(SNIPPET)
    result = invoke(["--no-cache", "--verbose", "boom.py"])
    assert result.exit_code == 2
    assert "Traceback (most recent call last):" in result.stdout
    assert 'raise ZeroDivisionError("planted failure")' in result.stdout
    assert "\nZeroDivisionError: planted failure\n" in result.stdout


def test_a_rule_whose_prefilter_raises_or_that_cannot_load(project, monkeypatch):
    class BrokenTrigger(RaisingRule):
        code = "AGL991"

        @classmethod
        def text_cues(cls):
            raise RuntimeError("bad regex")

    monkeypatch.setitem(RULES._modules, "AGL991", "agl991_broken_trigger")
    monkeypatch.setitem(RULES._loaded, "AGL991", BrokenTrigger)
    monkeypatch.setitem(RULES._modules, "AGL992", "agl992_not_importable")  # no such module
    result = invoke(["--no-cache", "-q", "a_good.py"])
    assert result.exit_code == 2
    assert result.stdout.splitlines() == [
        "a_good.py:1:1: AGL999 rule AGL991 failed on this file: RuntimeError: bad regex",
        "a_good.py:1:1: AGL999 rule AGL992 failed on this file: ModuleNotFoundError: No module named "
        "'autograd_lint.rules.agl992_not_importable'",
        f"a_good.py:11:9: AGL002 {MESSAGE_START}" + result.stdout.splitlines()[2].split(MESSAGE_START, 1)[1],
    ]


# The same through a real process linting in a pool (-j 2): a rule that raises on one file, and one
# that kills the worker process on another (as a crash in native code would).
PLANTED = textwrap.dedent(
    """
    import os, sys
    from autograd_lint.rules import RULES
    from autograd_lint.core.rule import Rule
    from autograd_lint.core.diagnostic import Severity

    PARENT = os.getpid()

    class Planted(Rule):
        code, name, severity, summary = "AGL990", "planted", Severity.ERROR, "test rule"

        def check(self, module):
            name = os.path.basename(module.path)
            if name.startswith("boom"):
                raise ZeroDivisionError("planted failure")
            if name.startswith("crash") and os.getpid() != PARENT:
                os.kill(os.getpid(), 9)
            return iter(())

    RULES._modules["AGL990"] = "agl990_planted"
    RULES._loaded["AGL990"] = Planted
    from autograd_lint.cli import main
    sys.argv = ["autograd-lint", *sys.argv[1:]]
    main()
    """
)


def test_isolation_in_a_worker_pool_through_a_real_process(tmp_path):
    names = ["boom.py", "crash.py"] + [f"good_{i}.py" for i in range(10)]
    for name in names:
        (tmp_path / name).write_text(SNIPPET)
    proc = subprocess.run(
        [sys.executable, "-c", PLANTED, "-q", "--no-cache", "-j", "2", "."],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr
    found = located(proc.stdout)
    assert [f for f in found if f[3] == "AGL002"] == [
        (name, 11, 9, "AGL002") for name in sorted(names) if name != "crash.py"
    ]
    assert [f for f in found if f[3] == "AGL999"] == [("boom.py", 1, 1, "AGL999"), ("crash.py", 1, 1, "AGL999")]
    assert (
        "crash.py:1:1: AGL999 the process linting this file died (a crash in native code, or killed); it was not checked"
        in proc.stdout
    )
    assert proc.stderr == ""


def test_ctrl_c_while_linting_is_one_line_and_exit_130(tmp_path):
    # A rule that never ends, so that the interrupt lands mid-lint, in a pool of workers.
    hanging = PLANTED.replace('raise ZeroDivisionError("planted failure")', "import time; time.sleep(600)")
    for i in range(10):
        (tmp_path / f"boom_{i}.py").write_text(SNIPPET)
    linter = subprocess.Popen(
        [sys.executable, "-c", hanging, "-q", "--no-cache", "-j", "2", "."],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=deliver_interrupts,
    )
    try:
        import time

        time.sleep(8)
        os.killpg(linter.pid, signal.SIGINT)
        stdout, stderr = linter.communicate(timeout=60)
    finally:
        if linter.poll() is None:
            os.killpg(linter.pid, signal.SIGKILL)
            linter.wait()
    assert (linter.returncode, stdout, stderr) == (130, "", "autograd-lint: error: interrupted\n")


# --- a sweep over installed packages ---------------------------------------------------------------

SITE = Path(torch.__file__).resolve().parent.parent
SWEEP = sorted(
    [
        *Path(torch.__file__).parent.glob("autograd/*.py"),
        Path(torch.__file__).parent / "nn" / "modules" / "activation.py",
        *Path(torch.__file__).parent.glob("ao/quantization/fake_quantize.py"),
        *Path(click.__file__).parent.glob("*.py"),
        *Path(libcst.__file__).parent.glob("_nodes/*.py"),
        *Path(_pytest.__file__).parent.glob("[a-f]*.py"),
    ]
)


def test_installed_packages_lint_without_internal_errors():
    """The full sweep (every .py in site-packages, every rule) is in the README; this pins a fixed subset:
    torch's autograd (real Functions), its activations, click, libcst's nodes and part of pytest."""
    assert len(SWEEP) >= 45
    result = lint_paths([str(path) for path in SWEEP], prefilter=False)
    assert result.errors == []
    assert result.files_checked == len(SWEEP)
    assert [d for d in result.diagnostics if d.code in ("AGL999", "AGL000")] == []


# --- determinism -----------------------------------------------------------------------------------


def test_output_is_identical_across_runs_jobs_and_file_order(tmp_path):
    paths = [str(FIXTURES / name) for name in ("agl002", "motivating")]
    runs = {
        "serial": ["-j", "1", *paths],
        "serial again": ["-j", "1", *paths],
        "two jobs": ["-j", "2", *paths],
        "two jobs, reversed": ["-j", "2", *reversed(paths)],
        "files listed one by one, shuffled": [
            "-j",
            "2",
            *sorted((str(p) for d in paths for p in Path(d).glob("*.py")), key=lambda s: s[::-1]),
        ],
    }
    outputs = {}
    for label, args in runs.items():
        proc = run_linter(["--no-cache", "--output-format", "json", *args], tmp_path)
        assert proc.returncode == 1, (label, proc.stderr)
        outputs[label] = proc.stdout
    assert len(json.loads(outputs["serial"])) >= 10
    assert {label: output == outputs["serial"] for label, output in outputs.items()} == dict.fromkeys(runs, True)


def deliver_interrupts() -> None:
    """In the linter's process before it starts: SIGINT handled as a terminal delivers it. A test run started in
    the background (`nohup pytest ... &`) hands its children SIGINT ignored, which Python then keeps ignoring."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
