"""`# noqa` on the reported line (flake8 syntax) and the file-level `# autograd-lint: noqa`."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from snippets import SNIPPET, checked

from autograd_lint import lint_source
from autograd_lint.cli import main

RETURN = "        return g * ctx.scale"


def with_comment(comment: str) -> str:
    """SNIPPET with `comment` at the end of the reported line (11, the `return`)."""
    source = SNIPPET.replace(RETURN, f"{RETURN}  {comment}")
    assert source != SNIPPET
    return source


def found(source: str) -> list[tuple[str, int, int]]:
    return [(d.code, d.line, d.column) for d in lint_source(source)]


REPORTED = [("AGL002", 11, 9)]


def test_unsuppressed_baseline():
    assert found(SNIPPET) == REPORTED


@pytest.mark.parametrize(
    "comment",
    [
        "# noqa",
        "#noqa",
        "# NOQA",
        "# noqa: AGL002",
        "# NOQA:AGL002",
        "# noqa:AGL002",
        "# noqa: agl002",
        "# noqa: AGL0",
        "# noqa: AGL",
        "# noqa: AGL001, AGL002",
        "# noqa: AGL001,AGL002",
        "# noqa: AGL001 AGL002",
        "# noqa: AGL002 -- arity checked at runtime",
        "# type: ignore  # noqa: AGL002",
    ],
)
def test_line_noqa_suppresses(comment):
    assert found(with_comment(comment)) == []


@pytest.mark.parametrize(
    "comment",
    [
        "# noqa: AGL001",
        "# noqa: AGL003, AGL004",
        "# noqa: E501",
        "# noqa: AGL0021",
        "# noqa: AGL1",
        "# not a noqa comment",
    ],
)
def test_line_noqa_for_other_codes_does_not_suppress(comment):
    assert found(with_comment(comment)) == REPORTED


def test_noqa_must_be_on_the_reported_line():
    on_def = SNIPPET.replace("    def backward(ctx, g):", "    def backward(ctx, g):  # noqa: AGL002")
    on_class = SNIPPET.replace("class Scale(Function):", "class Scale(Function):  # noqa")
    on_import = SNIPPET.replace("import torch\n", "import torch  # noqa\n")
    for source in (on_def, on_class, on_import):
        assert "noqa" in source
        assert found(source) == REPORTED


def test_noqa_on_the_line_after_does_not_suppress():
    source = SNIPPET + "# noqa\n"
    assert found(source) == REPORTED


def test_noqa_on_first_line_of_a_multiline_return():
    multiline = SNIPPET.replace(RETURN, "        return (  # noqa: AGL002\n            g * ctx.scale\n        )")
    assert found(multiline) == []
    on_last_line = SNIPPET.replace(RETURN, "        return (\n            g * ctx.scale\n        )  # noqa: AGL002")
    assert found(on_last_line) == REPORTED


@pytest.mark.parametrize(
    "header",
    [
        "# autograd-lint: noqa",
        "#autograd-lint:noqa",
        "# AUTOGRAD-LINT: NOQA",
        "# autograd-lint: noqa: AGL002",
        "# autograd-lint: noqa: AGL001, AGL002",
        "# autograd-lint: noqa: AGL0",
    ],
)
def test_file_level_noqa_suppresses(header):
    assert found(f"{header}\n{SNIPPET}") == []


def test_file_level_noqa_anywhere_in_the_file():
    assert found(f"{SNIPPET}# autograd-lint: noqa\n") == []


@pytest.mark.parametrize("header", ["# autograd-lint: noqa: AGL001", "# autograd-lint: noqa: AGL003"])
def test_file_level_noqa_for_other_codes_does_not_suppress(header):
    assert found(f"{header}\n{SNIPPET}") == [("AGL002", 12, 9)]


def test_file_level_noqa_must_be_on_its_own_line():
    # Trailing a statement it is a plain comment (ruff's `# ruff: noqa` works the same way).
    assert found(f"x = 1  # autograd-lint: noqa\n{SNIPPET}") == [("AGL002", 12, 9)]


def test_flake8_file_level_noqa_is_not_ours():
    assert found(f"# flake8: noqa\n{SNIPPET}") == [("AGL002", 12, 9)]


def test_noqa_inside_a_string_literal_is_not_a_comment():
    # flake8 and ruff read noqa from comment tokens only.
    source = SNIPPET.replace(RETURN, '        return g * ctx.scale if "# noqa" else None')
    assert found(source) == REPORTED


def test_file_level_noqa_inside_a_docstring_is_not_a_comment():
    source = SNIPPET.replace(
        "class Scale(Function):\n",
        'class Scale(Function):\n    """Usage notes:\n# autograd-lint: noqa\n    """\n',
    )
    assert found(source) == [("AGL002", 14, 9)]


def test_noqa_does_not_silence_syntax_errors():
    assert found("def f(:  # noqa\n    pass\n") == [("AGL000", 1, 7)]
    assert found("# autograd-lint: noqa\ndef f(:\n    pass\n") == [("AGL000", 2, 7)]


def test_noqa_does_not_silence_internal_errors(monkeypatch):
    from autograd_lint.rules import RULES

    def explode(self, function_class, module):
        raise RuntimeError("rule bug")

    monkeypatch.setattr(RULES["AGL002"], "check_class", explode)
    source = "# autograd-lint: noqa\n" + with_comment("# noqa")
    assert [(d.code, d.line, d.column, d.message) for d in lint_source(source)] == [
        ("AGL999", 1, 1, "rule AGL002 failed on this file: RuntimeError: rule bug")
    ]


def test_noqa_with_crlf_line_endings():
    source = with_comment("# noqa: AGL002").replace("\n", "\r\n")
    assert found(source) == []
    assert found(SNIPPET.replace("\n", "\r\n")) == REPORTED


def test_noqa_through_the_cli(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "kept.py").write_text(with_comment("# noqa: AGL001"))
    (tmp_path / "silenced.py").write_text(with_comment("# NOQA:AGL002"))
    (tmp_path / "file_level.py").write_text("# autograd-lint: noqa: AGL002\n" + SNIPPET)
    result = CliRunner().invoke(main, ["kept.py", "silenced.py", "file_level.py"])
    assert result.exit_code == 1
    assert [line.split(": ")[0] for line in result.stdout.splitlines()] == ["kept.py:11:9"]
    assert "Found 1 diagnostic (1 error) in 3 files checked." in result.stderr


# --- where a noqa goes when the reported line cannot end in a comment (ruff's mapping) ---------------


def test_noqa_at_the_end_of_a_multiline_string_covers_the_lines_it_spans():
    source = SNIPPET.replace(RETURN, '        return g * ctx.scale if """\n""" else 1  # noqa: AGL002')
    assert found(source) == []
    assert found(source.replace("  # noqa: AGL002", "")) == REPORTED


def test_noqa_after_a_backslash_continuation_covers_the_continued_lines():
    source = SNIPPET.replace(RETURN, "        return g * \\\n            ctx.scale  # noqa: AGL002")
    assert found(source) == []
    assert found(source.replace("  # noqa: AGL002", "")) == REPORTED


# --- AGL100 unused-noqa and AGL101 blanket-noqa together (each alone: tests/rules/test_agl100.py, test_agl101.py) ---


def test_noqa_checks_are_off_by_default():
    assert checked(with_comment("# noqa")) == []
    assert checked("x = 1  # noqa: AGL002\n") == []


def test_noqa_checks_through_the_cli_and_a_subprocess(tmp_path, monkeypatch):
    import os
    import subprocess
    import sys

    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.py").write_text(with_comment("# noqa") + "import os  # noqa\ny = 1  # noqa: AGL013\n")
    result = CliRunner().invoke(main, ["--extend-select", "AGL100,AGL101", "m.py"])
    expected = [
        "m.py:11:31: AGL101 `# noqa` without codes hides AGL002 here",
        "m.py:13:8: AGL100 unused `noqa` directive (unused: `AGL013`)",
    ]
    assert result.exit_code == 1
    assert result.stdout.splitlines() == expected
    proc = subprocess.run(
        [sys.executable, "-m", "autograd_lint", "-q", "--extend-select", "AGL1", "m.py"],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=120,
    )
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout.splitlines() == expected
