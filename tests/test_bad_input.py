"""Files that are not clean Python text: syntax errors, encodings, line endings, unreadable paths."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner
from snippets import SNIPPET
from snippets import parse_text_output as located

import autograd_lint.io.reading
from autograd_lint import lint_paths, lint_source
from autograd_lint.cli import main
from autograd_lint.io.reading import SourceError

MESSAGE_START = "AGL002 Scale.backward returns 1 value but forward takes 2 inputs"


def invoke(args, input=None):
    return CliRunner().invoke(main, args, input=input)


def error_lines(stderr: str, name: str) -> list[str]:
    return [line for line in stderr.splitlines() if name in line]


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a_good.py").write_text(SNIPPET)
    (tmp_path / "z_good.py").write_text(SNIPPET)
    return tmp_path


GOOD = [("a_good.py", 11, 9, "AGL002"), ("z_good.py", 11, 9, "AGL002")]


# --- syntax errors ---------------------------------------------------------------------------------


def test_syntax_error_among_good_files(project):
    (project / "m_broken.py").write_text("x = 1\n\nif True\n    pass\n")
    result = invoke(["-q", "."])
    assert result.exit_code == 1
    assert located(result.stdout) == [GOOD[0], ("m_broken.py", 3, 8, "AGL000"), GOOD[1]]
    assert "m_broken.py:3:8: AGL000 SyntaxError: expected ':'" in result.stdout.splitlines()
    assert result.stderr == ""


def test_syntax_error_in_json(project):
    (project / "broken.py").write_text("x = 1\ny = 2\nz = (1,\n")
    result = invoke(["--output-format", "json", "broken.py"])
    assert result.exit_code == 1
    assert json.loads(result.stdout) == [
        {
            "code": "AGL000",
            "name": "syntax-error",
            "severity": "error",
            "message": "SyntaxError: '(' was never closed",
            "explanation": (
                "The file is not valid Python for the parser autograd-lint uses (CPython's own, then libcst's); "
                "nothing else in it was checked. This code cannot be deselected or silenced with noqa."
            ),
            "url": None,
            "path": "broken.py",
            "cell": None,
            "line": 3,
            "column": 5,
            "end_line": 3,
            "end_column": 5,
        }
    ]


def test_syntax_error_is_reported_whatever_the_selection(project):
    (project / "broken.py").write_text("def f(:\n    pass\n")
    for args in (["--select", "AGL003"], ["--ignore", "ALL"], ["--ignore", "AGL0"]):
        result = invoke(["-q", *args, "broken.py"])
        assert result.exit_code == 1, args
        assert located(result.stdout) == [("broken.py", 1, 7, "AGL000")]


def test_python2_print_is_a_syntax_error(project):
    (project / "py2.py").write_text('import os\n\nprint "x"\n')
    result = invoke(["-q", "py2.py", "a_good.py"])
    assert result.exit_code == 1
    assert located(result.stdout) == [GOOD[0], ("py2.py", 3, 1, "AGL000")]
    assert "Missing parentheses in call to 'print'" in result.stdout


def test_python2_print_library():
    [diagnostic] = lint_source('print "x"\n')
    assert (diagnostic.code, diagnostic.name, diagnostic.line, diagnostic.column) == ("AGL000", "syntax-error", 1, 1)
    assert diagnostic.message.startswith("SyntaxError: Missing parentheses in call to 'print'")


def test_null_byte_is_a_syntax_error():
    [diagnostic] = lint_source("x = 1\x00\n")
    assert (diagnostic.code, diagnostic.line, diagnostic.column) == ("AGL000", 1, 1)
    assert "null bytes" in diagnostic.message


def test_deeply_nested_source_does_not_crash_the_linter(tmp_path):
    # CPython rejects more than 200 nested parentheses; the linter must say so, not crash.
    (tmp_path / "deep.py").write_text("x = " + "(" * 5000 + ")" * 5000 + "\n")
    (tmp_path / "good.py").write_text(SNIPPET)
    proc = subprocess.run(
        [sys.executable, "-m", "autograd_lint", "-q", "deep.py", "good.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1, f"exit {proc.returncode}, stderr: {proc.stderr[-500:]}"
    found = located(proc.stdout)
    assert [(path, line, code) for path, line, _, code in found] == [
        ("deep.py", 1, "AGL000"),
        ("good.py", 11, "AGL002"),
    ]
    assert "Traceback" not in proc.stderr


# --- decoding --------------------------------------------------------------------------------------


def test_invalid_utf8_in_first_line_is_a_file_error(project):
    (project / "m_bytes.py").write_bytes(b"x = '\xff\xfe'\n")
    result = invoke(["-q", "."])
    assert result.exit_code == 2
    assert located(result.stdout) == GOOD
    errors = error_lines(result.stderr, "m_bytes.py")
    assert len(errors) == 1
    assert errors[0].startswith("autograd-lint: error: m_bytes.py: cannot decode")
    assert "Traceback" not in result.stderr


def test_invalid_utf8_after_line_two_is_a_file_error(project):
    (project / "m_bytes.py").write_bytes(b"x = 1\ny = 2\nz = '\xc3\x28'\n")
    result = invoke(["-q", "a_good.py", "m_bytes.py", "z_good.py"])
    assert result.exit_code == 2
    assert located(result.stdout) == GOOD
    assert error_lines(result.stderr, "m_bytes.py") == [
        "autograd-lint: error: m_bytes.py: cannot decode as utf-8: invalid continuation byte at byte 17"
    ]


def test_undecodable_file_with_exit_zero_still_exits_2(project):
    (project / "m_bytes.py").write_bytes(b"\xff\n")
    result = invoke(["-q", "--exit-zero", "m_bytes.py", "a_good.py"])
    assert result.exit_code == 2
    assert located(result.stdout) == [GOOD[0]]


def test_undecodable_file_in_json_mode(project):
    (project / "m_bytes.py").write_bytes(b"\xff\n")
    result = invoke(["--output-format", "json", "m_bytes.py", "a_good.py"])
    assert result.exit_code == 2
    assert [(d["path"], d["code"]) for d in json.loads(result.stdout)] == [("a_good.py", "AGL002")]
    assert len(error_lines(result.stderr, "m_bytes.py")) == 1


def test_unknown_coding_cookie_is_a_file_error(project):
    (project / "cookie.py").write_text("# -*- coding: klingon -*-\nx = 1\n")
    result = invoke(["-q", "cookie.py", "a_good.py"])
    assert result.exit_code == 2
    assert located(result.stdout) == [GOOD[0]]
    [error] = error_lines(result.stderr, "cookie.py")
    assert error.startswith("autograd-lint: error: cookie.py: ")
    assert "klingon" in error


def test_undecodable_stdin(project):
    result = invoke(["-q", "-", "--stdin-filename", "piped.py"], input=b"x = '\xff'\n")
    assert result.exit_code == 2
    assert result.stdout == ""
    [error] = error_lines(result.stderr, "piped.py")
    assert error.startswith("autograd-lint: error: piped.py: cannot decode")


def test_latin1_coding_cookie(project):
    data = b"# -*- coding: latin-1 -*-\nNAME = 'caf\xe9'\n" + SNIPPET.encode()
    (project / "latin.py").write_bytes(data)
    result = invoke(["-q", "latin.py"])
    assert result.exit_code == 1
    assert located(result.stdout) == [("latin.py", 13, 9, "AGL002")]
    [diagnostic] = lint_source(data)
    assert (diagnostic.code, diagnostic.line, diagnostic.column) == ("AGL002", 13, 9)


def test_latin1_bytes_without_cookie_are_rejected():
    with pytest.raises(SourceError, match="cannot decode"):
        lint_source(b"NAME = 'caf\xe9'\n")


def test_utf8_bom(project):
    data = b"\xef\xbb\xbf" + SNIPPET.encode()
    (project / "bom.py").write_bytes(data)
    result = invoke(["-q", "bom.py"])
    assert result.exit_code == 1
    assert located(result.stdout) == [("bom.py", 11, 9, "AGL002")]
    assert [(d.code, d.line, d.column, d.end_column) for d in lint_source(data)] == [("AGL002", 11, 9, 29)]


def test_utf8_bom_does_not_shift_first_line_columns():
    assert [(d.line, d.column) for d in lint_source(b"\xef\xbb\xbfdef f(:\n")] == [(1, 7)]
    assert [(d.line, d.column) for d in lint_source(b"def f(:\n")] == [(1, 7)]


def test_bom_with_conflicting_cookie_is_a_file_error():
    with pytest.raises(SourceError):
        lint_source(b"\xef\xbb\xbf# coding: latin-1\nx = 1\n")


def test_crlf_line_endings(project):
    crlf = SNIPPET.replace("\n", "\r\n").encode()
    (project / "crlf.py").write_bytes(crlf)
    (project / "lf.py").write_bytes(SNIPPET.encode())
    result = invoke(["-q", "--output-format", "json", "crlf.py", "lf.py"])
    assert result.exit_code == 1
    spans = {d["path"]: (d["line"], d["column"], d["end_line"], d["end_column"]) for d in json.loads(result.stdout)}
    assert spans == {"crlf.py": (11, 9, 11, 29), "lf.py": (11, 9, 11, 29)}


def test_crlf_syntax_error_position():
    assert [(d.code, d.line, d.column) for d in lint_source(b"x = 1\r\ndef f(:\r\n")] == [("AGL000", 2, 7)]


@pytest.mark.parametrize("content", [b"", b"\n", b"# just a comment\n", b"\xef\xbb\xbf", b"   \n\t\n", b"\r\n"])
def test_empty_and_trivial_files(project, content):
    (project / "empty.py").write_bytes(content)
    result = invoke(["empty.py"])
    assert result.exit_code == 0
    assert result.stdout == ""
    assert result.stderr == "All checks passed! (1 file checked)\n"


# --- paths that are not readable files -------------------------------------------------------------


def test_directory_named_like_a_python_file_is_walked_like_any_directory(project):
    # As with ruff and flake8, a directory is walked whatever its name; what is inside is linted.
    (project / "x.py").mkdir()
    (project / "x.py" / "inner.py").write_text(SNIPPET)
    result = invoke(["-q", "a_good.py", "x.py"])
    assert result.exit_code == 1, (result.stdout, result.stderr)
    assert [(path, line, code) for path, line, _, code in located(result.stdout)] == [
        (GOOD[0][0], GOOD[0][1], GOOD[0][3]),
        (os.path.join("x.py", "inner.py"), 11, "AGL002"),
    ]
    assert result.stderr == ""


def test_unreadable_file(project, monkeypatch):
    locked = project / "m_locked.py"
    locked.write_text(SNIPPET)
    locked.chmod(0)
    try:
        if os.access(locked, os.R_OK):
            # Running as root: permissions do not stop reads, so make `open` fail the way it would.
            real_open = os.open

            def denying_open(file, *args, **kwargs):
                if os.path.basename(os.fspath(file)) == "m_locked.py":
                    raise PermissionError(13, "Permission denied", os.fspath(file))
                return real_open(file, *args, **kwargs)

            monkeypatch.setattr(autograd_lint.io.reading.os, "open", denying_open)
        result = invoke(["-q", "a_good.py", "m_locked.py", "z_good.py"])
    finally:
        locked.chmod(0o644)
    assert result.exit_code == 2
    assert located(result.stdout) == GOOD
    assert error_lines(result.stderr, "m_locked.py") == [
        "autograd-lint: error: m_locked.py: cannot read: Permission denied"
    ]


def test_dangling_symlink_named_explicitly(project):
    os.symlink(project / "gone.py", project / "m_link.py")
    result = invoke(["-q", "a_good.py", "m_link.py", "z_good.py"])
    assert result.exit_code == 2
    assert located(result.stdout) == GOOD
    assert error_lines(result.stderr, "m_link.py") == [
        f"autograd-lint: error: m_link.py: broken symbolic link (its target {str(project / 'gone.py')!r} does not exist)"
    ]


def test_dangling_symlink_found_by_the_walk(project):
    os.symlink(project / "gone.py", project / "m_link.py")
    result = lint_paths(["."])
    assert [(os.path.normpath(d.path), d.line) for d in result.diagnostics] == [("a_good.py", 11), ("z_good.py", 11)]
    assert [(os.path.normpath(e.path), e.message) for e in result.errors] == [
        ("m_link.py", f"broken symbolic link (its target {str(project / 'gone.py')!r} does not exist)")
    ]
    assert result.files_checked == 2


def test_file_errors_are_sorted_and_do_not_stop_the_run(project):
    (project / "b_bad.py").write_bytes(b"\xff\n")
    (project / "c_bad.py").write_bytes(b"\xfe\n")
    result = invoke(["-q", "c_bad.py", "z_good.py", "b_bad.py", "a_good.py", "nope.py"])
    assert result.exit_code == 2
    assert located(result.stdout) == GOOD
    assert [line.split(": ")[2] for line in result.stderr.splitlines()] == ["b_bad.py", "c_bad.py", "nope.py"]


def test_syntax_newer_than_the_running_python_is_left_to_libcst():
    # PEP 695 generics are a SyntaxError for CPython 3.11 but valid Python 3.12: not a finding.
    source = "def first[T](items: list[T]) -> T:\n    return items[0]\n"
    assert lint_source(source, "generic.py") == []


def test_missing_path_is_an_error_not_a_finding_even_with_exit_zero(project):
    # Deliberately unlike ruff (E902, exit 1, which --exit-zero hides): nothing in that path was checked.
    result = invoke(["--exit-zero", "a_good.py", "nope.py"])
    assert result.exit_code == 2
    assert error_lines(result.stderr, "nope.py") == ["autograd-lint: error: nope.py: no such file or directory"]
