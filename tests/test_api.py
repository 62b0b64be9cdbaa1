"""The library API: lint_source, lint_paths, Config, Diagnostic; and that it works without torch."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
from snippets import EXPLANATION, MESSAGE, SNIPPET, TWO_FINDINGS

import autograd_lint
from autograd_lint import Config, Diagnostic, FileError, LintResult, Severity, lint_paths, lint_source
from autograd_lint.io.reading import SourceError


def test_lint_source_returns_diagnostic_with_fields():
    diagnostics = lint_source(SNIPPET)
    assert diagnostics == [
        Diagnostic(
            path="<string>",
            line=11,
            column=9,
            code="AGL002",
            name="backward-arity-mismatch",
            severity=Severity.ERROR,
            message=MESSAGE,
            end_line=11,
            end_column=29,
            explanation=EXPLANATION,
        )
    ]
    [d] = diagnostics
    assert isinstance(d, Diagnostic)
    assert d.severity is Severity.ERROR and d.severity.value == "error"


def test_lint_source_path_is_reported():
    [d] = lint_source(SNIPPET, path="pkg/ops.py")
    assert (d.path, d.line, d.column, d.code) == ("pkg/ops.py", 11, 9, "AGL002")


def test_lint_source_bytes():
    [d] = lint_source(SNIPPET.encode("utf-8"))
    assert (d.path, d.line, d.column, d.end_line, d.end_column, d.code) == ("<string>", 11, 9, 11, 29, "AGL002")
    assert lint_source(SNIPPET.encode("utf-8")) == lint_source(SNIPPET)


def test_lint_source_bytes_undecodable_raises_source_error():
    with pytest.raises(SourceError, match="cannot decode"):
        lint_source(b"x = 1\ny = 2\nz = '\xff'\n")


def test_lint_source_clean():
    assert lint_source("x = 1\n") == []
    assert lint_source("") == []


def test_lint_source_syntax_error_diagnostic():
    [d] = lint_source("def f(:\n    pass\n", path="broken.py")
    assert (d.path, d.line, d.column, d.end_line, d.end_column) == ("broken.py", 1, 7, 1, 7)
    assert (d.code, d.name, d.severity) == ("AGL000", "syntax-error", Severity.ERROR)
    assert d.message == "SyntaxError: invalid syntax"


def test_to_dict():
    [d] = lint_source(SNIPPET, path="m.py")
    assert d.to_dict() == {
        "code": "AGL002",
        "name": "backward-arity-mismatch",
        "severity": "error",
        "message": MESSAGE,
        "explanation": EXPLANATION,
        "path": "m.py",
        "cell": None,
        "line": 11,
        "column": 9,
        "end_line": 11,
        "end_column": 29,
    }


def test_diagnostics_are_immutable():
    [d] = lint_source(SNIPPET)
    with pytest.raises(AttributeError):
        d.line = 3  # type: ignore[misc]


def test_lint_source_sorted_by_line():
    assert [(d.line, d.column) for d in lint_source(TWO_FINDINGS)] == [(8, 9), (17, 9)]


def test_config_select_other_rule_deselects_agl002():
    assert lint_source(SNIPPET, config=Config(select=("AGL001",))) == []
    assert lint_source(SNIPPET, config=Config(select=("AGL003",))) == []


def test_config_selection_variants():
    assert [d.code for d in lint_source(SNIPPET, config=Config(select=("AGL002",)))] == ["AGL002"]
    assert [d.code for d in lint_source(SNIPPET, config=Config(select=("AGL0",)))] == ["AGL002"]
    assert [d.code for d in lint_source(SNIPPET, config=Config(select=("ALL",)))] == ["AGL002"]
    assert lint_source(SNIPPET, config=Config(ignore=("AGL002",))) == []
    assert [d.code for d in lint_source(SNIPPET, config=Config(select=("AGL003",), extend_select=("AGL002",)))] == [
        "AGL002"
    ]
    assert lint_source(SNIPPET, config=Config(select=())) == []


def test_config_per_file_ignores_in_lint_source(tmp_path):
    config = Config(per_file_ignores={"tests/*": ("AGL002",)}, root=str(tmp_path))
    assert lint_source(SNIPPET, path=str(tmp_path / "tests" / "t.py"), config=config) == []
    assert [d.line for d in lint_source(SNIPPET, path=str(tmp_path / "src" / "m.py"), config=config)] == [11]


@pytest.fixture
def tree(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "b.py").write_text(TWO_FINDINGS)
    (tmp_path / "a.py").write_text(SNIPPET)
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "m.py").write_text(SNIPPET)
    (tmp_path / "pkg" / "clean.py").write_text("x = 1\n")
    (tmp_path / "build").mkdir()
    (tmp_path / "build" / "skipped.py").write_text(SNIPPET)
    return tmp_path


def positions(result: LintResult) -> list[tuple[str, int, int, str]]:
    return [(os.path.normpath(d.path), d.line, d.column, d.code) for d in result.diagnostics]


EXPECTED_TREE = [
    ("a.py", 11, 9, "AGL002"),
    ("b.py", 8, 9, "AGL002"),
    ("b.py", 17, 9, "AGL002"),
    (os.path.join("pkg", "m.py"), 11, 9, "AGL002"),
]


def test_lint_paths_sorted(tree):
    result = lint_paths(["pkg", "b.py", "a.py"])
    assert isinstance(result, LintResult)
    assert positions(result) == EXPECTED_TREE
    assert result.files_checked == 5
    assert result.errors == []


def test_lint_paths_walk_and_deterministic(tree):
    first = lint_paths(["."])
    second = lint_paths(["."])
    assert positions(first) == EXPECTED_TREE
    assert first.files_checked == 5  # a, b, pkg/__init__, pkg/m, pkg/clean; build/ is excluded
    assert first.diagnostics == second.diagnostics
    assert lint_paths(["a.py", "pkg", "b.py"]).diagnostics == lint_paths(["b.py", "pkg", "a.py"]).diagnostics


def test_lint_paths_missing_path_is_a_file_error(tree):
    result = lint_paths(["a.py", "missing.py"])
    assert positions(result) == [("a.py", 11, 9, "AGL002")]
    assert result.errors == [FileError("missing.py", "no such file or directory")]
    assert str(result.errors[0]) == "missing.py: no such file or directory"
    assert result.files_checked == 1


def test_lint_paths_with_config(tree):
    result = lint_paths(["."], Config(select=("AGL003",)))
    assert result.diagnostics == []
    assert result.files_checked == 5
    result = lint_paths(["."], Config(extend_exclude=("pkg",)))
    assert positions(result) == EXPECTED_TREE[:3]


def test_public_names():
    assert set(autograd_lint.__all__) >= {
        "Config",
        "ConfigError",
        "Diagnostic",
        "FileError",
        "LintResult",
        "Severity",
        "lint_paths",
        "lint_source",
        "load_config",
        "__version__",
    }


NO_TORCH = textwrap.dedent(
    """
    import sys

    class BlockTorch:
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ImportError("torch is blocked in this test")
            return None

    sys.meta_path.insert(0, BlockTorch())
    try:
        import torch  # noqa: F401
    except ImportError:
        pass
    else:
        raise SystemExit("the torch blocker did not work")

    import autograd_lint
    from autograd_lint.cli import main  # the CLI must import without torch too

    source = sys.stdin.read()
    found = [(d.code, d.line, d.column) for d in autograd_lint.lint_source(source)]
    assert found == [("AGL002", 11, 9)], found
    assert not any(name == "torch" or name.startswith("torch.") for name in sys.modules), sorted(sys.modules)
    print("OK", found)
    """
)


def test_works_without_torch(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-c", NO_TORCH], input=SNIPPET, cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "OK [('AGL002', 11, 9)]"


def test_cli_works_with_a_broken_torch(tmp_path):
    # A `torch` that fails on import (a broken install) must not matter to a static linter.
    (tmp_path / "torch").mkdir()
    (tmp_path / "torch" / "__init__.py").write_text("raise RuntimeError('broken torch install')\n")
    (tmp_path / "bad.py").write_text(SNIPPET)
    # The broken torch first; the package under test (this checkout, from PYTHONPATH) after it.
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")])))
    proc = subprocess.run(
        [sys.executable, "-m", "autograd_lint", "-q", "bad.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout == f"bad.py:11:9: AGL002 {MESSAGE}\n"
    assert proc.stderr == ""
