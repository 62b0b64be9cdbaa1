"""Jupyter notebooks: discovered like ruff, linted as their code cells joined, reported by cell."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from snippets import SNIPPET

import autograd_lint.engine
from autograd_lint import Config, lint_paths, lint_source
from autograd_lint.cli import main
from autograd_lint.io.notebook import read_notebook
from autograd_lint.io.reading import SourceError

REPO = Path(__file__).resolve().parent.parent
EVERY_RULE = Config(select=("ALL",))

SCALE = """\
class Scale(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, factor=2.0):
        ctx.factor = factor
        return x * factor

    @staticmethod
    def backward(ctx, g):
        return g * ctx.factor
"""
SCALE_MESSAGE_START = "Scale.backward returns 1 value but forward takes 2 inputs"
NO_PROPERTY_NAME = "Expecting property name enclosed in double quotes"
ACTIVATION = 'def no_back(x):\n    """ReLU by hand."""\n    return x * (x > 0).float()\n'


def notebook(*cells: tuple[str, str], nbformat: int = 4, metadata: dict | None = None) -> str:
    """A notebook's JSON as Jupyter writes it: sources as lists of lines, one space of indentation."""
    made = []
    for kind, text in cells:
        cell = {"cell_type": kind, "metadata": {}, "source": text.splitlines(keepends=True)}
        if kind == "code":
            cell.update(execution_count=None, outputs=[])
        made.append(cell)
    metadata = metadata or {"language_info": {"name": "python"}}
    document = {"cells": made, "metadata": metadata, "nbformat": nbformat, "nbformat_minor": 5}
    return json.dumps(document, indent=1) + "\n"


PROTOTYPE = notebook(
    ("markdown", "# Scale layer\nPrototype."),
    ("code", "!pip install -q torch\nimport torch\n"),
    ("code", SCALE),
    ("markdown", "Use it."),
    ("code", "%%time\nx = torch.ones(3, requires_grad=True)\ny = Scale.apply(x, 3.0)\ny.sum().backward()\n"),
)


def cells_of(diagnostics) -> list[tuple[int | None, int, int, str]]:
    return [(d.cell, d.line, d.column, d.code) for d in diagnostics]


def invoke(args, input=None):
    return CliRunner().invoke(main, args, input=input)


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "proto.ipynb").write_text(PROTOTYPE)
    return tmp_path


# --- reading: code cells, IPython syntax, cell numbers -------------------------------------------------


def test_cells_are_numbered_over_all_cells_and_joined_into_one_module():
    read = read_notebook(PROTOTYPE)
    assert [(cell.number, cell.first_line) for cell in read.cells] == [(2, 1), (3, 3), (5, 12)]
    assert read.source.splitlines()[:3] == ["pass", "import torch", "class Scale(torch.autograd.Function):"]
    assert read.cell_position(12) == (5, 1) and read.cell_position(11) == (3, 9)
    assert read.module_line(5, 3) == 14


def test_a_function_in_one_cell_and_its_call_in_a_later_one_are_linted_as_one_module():
    # AGL002 decides forward's default from the call sites: only cell 5 passes `factor`.
    [d] = lint_source(PROTOTYPE, "proto.ipynb")
    assert cells_of([d]) == [(3, 9, 9, "AGL002")]
    assert (d.end_line, d.end_column) == (9, 30)
    assert d.message == SCALE_MESSAGE_START
    assert d.explanation.startswith("Counted at the call `Scale.apply(x, 3.0)`.")
    without_the_call = notebook(
        ("code", "import torch\n"), ("code", SCALE), ("code", "y = Scale.apply(torch.ones(3))\n")
    )
    assert lint_source(without_the_call, "proto.ipynb") == []


@pytest.mark.parametrize(
    "line, replaced",
    [
        ("%timeit f(x)", "pass"),
        ("!pip install torch", "pass"),
        ("torch.relu?", "pass"),
        ("??torch.relu", "pass"),
        ("files = !ls", "files = None"),
        ("t = %timeit -o f(x)", "t = None"),
        ("pip install torch", "pass"),  # an automagic
        ("cd ..", "pass"),
    ],
)
def test_ipython_lines_become_pass_on_the_same_line(line, replaced):
    read = read_notebook(notebook(("code", f"x = 1\n{line}\ny = 2\n")))
    assert read.cells[0].lines == ("x = 1", replaced, "y = 2")
    assert read.syntax_errors == ()


def test_python_that_looks_like_ipython_is_left_alone():
    code = "time = (\n    3\n    % 2)\ns = '''\n%d items\n!x\n'''\n"
    read = read_notebook(notebook(("code", code + "%time f()\n")))
    assert read.cells[0].lines == (*code.splitlines(), "pass")
    assert read.syntax_errors == ()


def test_a_magic_inside_a_block_keeps_the_block():
    read = read_notebook(notebook(("code", "for i in range(3):\n    %time f(i)\n")))
    assert read.cells[0].lines == ("for i in range(3):", "    pass")
    assert read.syntax_errors == ()


def test_cell_magics_with_a_python_body_are_linted_others_are_skipped_as_ruff_does():
    source = notebook(
        ("code", "import torch\n" + SCALE),
        ("code", "%%bash\nScale.apply(x, 3.0)\n"),
        ("code", "%%writefile other.py\ny = Scale.apply(x, 3.0)\n"),
    )
    assert lint_source(source, "nb.ipynb") == []
    timed = notebook(("code", "import torch\n" + SCALE), ("code", "%%timeit\ny = Scale.apply(x, 3.0)\n"))
    assert cells_of(lint_source(timed, "nb.ipynb")) == [(1, 10, 9, "AGL002")]


def test_markdown_and_raw_cells_are_not_code():
    source = notebook(("markdown", "x = Scale.apply(x, 3.0)"), ("raw", "def f(:"), ("code", "import torch\n" + SCALE))
    assert lint_source(source, "nb.ipynb") == []


def test_nbformat_3_worksheets_are_read():
    document = {
        "nbformat": 3,
        "metadata": {},
        "worksheets": [
            {
                "cells": [
                    {"cell_type": "heading", "source": "Title"},
                    {"cell_type": "code", "input": ["import torch\n", *SCALE.splitlines(keepends=True)]},
                ]
            },
            {"cells": [{"cell_type": "code", "input": "y = Scale.apply(x, 3.0)"}]},
        ],
    }
    assert cells_of(lint_source(json.dumps(document), "old.ipynb")) == [(2, 10, 9, "AGL002")]


def test_a_notebook_in_another_language_has_nothing_to_lint():
    source = notebook(("code", "library(ggplot2)\n"), metadata={"language_info": {"name": "R"}})
    assert lint_source(source, "analysis.ipynb") == []


# --- syntax errors, noqa --------------------------------------------------------------------------------


def test_a_cell_that_is_not_python_is_one_syntax_error_there_and_the_others_are_linted():
    source = notebook(
        ("code", "import torch\n" + SCALE),
        ("markdown", "half-written:"),
        ("code", "def clip(x, limit:\n    return x\n"),
        ("code", "y = Scale.apply(x, 3.0)\n"),
    )
    diagnostics = lint_source(source, "nb.ipynb")
    assert cells_of(diagnostics) == [(1, 10, 9, "AGL002"), (3, 1, 9, "AGL000")]
    assert diagnostics[1].message == "SyntaxError: '(' was never closed"


def test_noqa_in_a_cell_silences_its_line():
    quiet = PROTOTYPE.replace("return g * ctx.factor", "return g * ctx.factor  # noqa: AGL002")
    assert lint_source(quiet, "proto.ipynb") == []
    other = PROTOTYPE.replace("return g * ctx.factor", "return g * ctx.factor  # noqa: AGL001")
    assert cells_of(lint_source(other, "proto.ipynb")) == [(3, 9, 9, "AGL002")]


def test_messages_that_name_a_line_name_it_in_its_cell():
    source = notebook(
        ("markdown", "# decay"),
        ("code", "import torch\n"),
        (
            "code",
            "class GradDecay(torch.autograd.Function):\n    alpha = 0\n\n    @staticmethod\n"
            "    def forward(ctx, x):\n        return x.view_as(x)\n\n    @staticmethod\n"
            "    def backward(ctx, g):\n        return GradDecay.alpha * g\n",
        ),
        ("code", "def grad_decay(x, alpha):\n    GradDecay.alpha = alpha\n    return GradDecay.apply(x)\n"),
    )
    [d] = lint_source(source, "nb.ipynb", EVERY_RULE)
    assert cells_of([d]) == [(3, 10, 16, "AGL001")]
    assert "set for each application of GradDecay (line 2 of cell 4)" in d.explanation


# --- malformed notebooks ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content, error",
    [
        ("{not json", f"not a notebook: invalid JSON: {NO_PROPERTY_NAME} at line 1 column 2"),
        ('{"nbformat": 4, "metadata": {}}', 'not a notebook: the notebook has no "cells" list'),
        ('{"nbformat": 4, "cells": {}}', 'not a notebook: the notebook has an object as its "cells" list'),
        (
            '{"nbformat": 4, "cells": [{"cell_type": "code", "source": 7}]}',
            'not a notebook: cell 1\'s "source" is a number, not a string or a list of strings',
        ),
        (
            '{"nbformat": 4, "cells": [{"cell_type": "code", "source": ["x = 1", 2]}]}',
            'not a notebook: cell 1\'s "source" is a list, not a string or a list of strings',
        ),
        ('{"nbformat": 4, "cells": ["x = 1"]}', "not a notebook: cell 1 is a string, not an object"),
        ("[]", "not a notebook: the JSON is a list, not an object"),
        ('{"nbformat": 2, "cells": []}', "unsupported notebook format 2 (nbformat 4 and 3 are read)"),
        ('{"nbformat": "4", "cells": []}', 'not a notebook: "nbformat" is a string, not an integer'),
        ('{"nbformat": 4.0, "cells": []}', 'not a notebook: "nbformat" is a number, not an integer'),
        (b"\xff\xfe{\x00", f"not a notebook: invalid JSON: {NO_PROPERTY_NAME} at line 1 column 2"),  # UTF-16
    ],
)
def test_a_malformed_notebook_is_one_error_line_and_the_run_goes_on(project, content, error):
    (project / "bad.ipynb").write_bytes(content if isinstance(content, bytes) else content.encode())
    (project / "bad.py").write_text(SNIPPET)
    result = invoke(["bad.ipynb", "bad.py", "proto.ipynb"])
    assert result.exit_code == 2
    assert result.stderr.splitlines()[0] == f"autograd-lint: error: bad.ipynb: {error}"
    assert [line.split(": ")[0] for line in result.stdout.splitlines()] == ["bad.py:11:9", "proto.ipynb:cell 3:9:9"]
    with pytest.raises(SourceError, match="not a notebook|unsupported"):
        lint_source(content, "bad.ipynb")


def test_a_malformed_notebook_in_a_real_process_gives_no_traceback(tmp_path):
    (tmp_path / "bad.ipynb").write_bytes(b'{"cells": [{"cell_type": "code", "source": null}]}')
    (tmp_path / "proto.ipynb").write_text(PROTOTYPE)
    proc = subprocess.run(
        [sys.executable, "-m", "autograd_lint", "--no-cache", "."],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.returncode == 2
    assert proc.stdout.startswith(f"proto.ipynb:cell 3:9:9: AGL002 {SCALE_MESSAGE_START}")
    assert proc.stderr.splitlines() == [
        "autograd-lint: error: bad.ipynb: not a notebook: "
        'cell 1\'s "source" is null, not a string or a list of strings',
        "Found 1 diagnostic (1 error) in 1 file checked, 1 file could not be read.",
    ]


# --- discovery, configuration, cache, stdin -----------------------------------------------------------


def test_directory_walks_find_notebooks_and_show_files_lists_them(project):
    (project / "pkg").mkdir()
    (project / "pkg" / "model.py").write_text("x = 1\n")
    (project / "pkg" / "explore.ipynb").write_text(PROTOTYPE)
    (project / "notes.txt").write_text("")
    result = invoke(["--show-files", "."])
    assert result.exit_code == 0
    assert result.stdout.splitlines() == [
        os.path.join("pkg", "explore.ipynb"),
        os.path.join("pkg", "model.py"),
        "proto.ipynb",
    ]
    found = invoke(["-q", "."])
    assert [line.split(": ")[0] for line in found.stdout.splitlines()] == [
        f"{os.path.join('pkg', 'explore.ipynb')}:cell 3:9:9",
        "proto.ipynb:cell 3:9:9",
    ]


def test_excludes_and_per_file_ignores_match_the_notebook_path(project):
    (project / "scratch").mkdir()
    (project / "scratch" / "try.ipynb").write_text(PROTOTYPE)
    (project / "pyproject.toml").write_text('[tool.autograd-lint]\nextend-exclude = ["scratch"]\n')
    assert invoke(["--show-files", "."]).stdout.splitlines() == ["proto.ipynb"]
    assert invoke(["-q", "--per-file-ignores", "*.ipynb:AGL002", "."]).stdout == ""
    assert invoke(["-q", "--per-file-ignores", "proto.ipynb:AGL002", "--force-exclude", "proto.ipynb"]).stdout == ""
    assert invoke(["-q", "--per-file-ignores", "*.py:AGL002", "."]).exit_code == 1


def test_the_cache_keys_notebooks_by_their_bytes(tmp_path, monkeypatch):
    path = tmp_path / "proto.ipynb"
    path.write_text(PROTOTYPE)
    cache = tmp_path / "cache"
    cold = lint_paths([str(path)], cache_dir=cache)
    assert cells_of(cold.diagnostics) == [(3, 9, 9, "AGL002")]

    def no_linting(*args, **kwargs):
        raise AssertionError("a cached notebook was linted again")

    monkeypatch.setattr(autograd_lint.engine, "lint_module", no_linting)
    assert lint_paths([str(path)], cache_dir=cache).diagnostics == cold.diagnostics
    monkeypatch.undo()
    path.write_text(PROTOTYPE.replace("return g * ctx.factor", "return g * ctx.factor, None"))
    assert lint_paths([str(path)], cache_dir=cache).diagnostics == []


def test_stdin_with_a_notebook_filename_is_read_as_a_notebook(project):
    result = invoke(["-", "--stdin-filename", "piped.ipynb", "--output-format", "full"], input=PROTOTYPE)
    assert result.exit_code == 1
    assert result.stdout.splitlines()[0].startswith(f"piped.ipynb:cell 3:9:9: AGL002 {SCALE_MESSAGE_START}")
    assert result.stdout.splitlines()[2] == "9 |         return g * ctx.factor"


# --- every output format ------------------------------------------------------------------------------


def test_text_names_the_cell_as_ruff_does(project):
    result = invoke(["proto.ipynb"])
    assert result.exit_code == 1
    [line] = result.stdout.splitlines()
    assert line.startswith(f"proto.ipynb:cell 3:9:9: AGL002 {SCALE_MESSAGE_START}")


def test_full_shows_the_cells_lines_with_the_cells_line_numbers(project):
    result = invoke(["--output-format", "full", "proto.ipynb"])
    assert result.stdout.splitlines()[1:5] == [
        "  |",
        "9 |         return g * ctx.factor",
        "  |         ^^^^^^^^^^^^^^^^^^^^^ AGL002",
        "  |",
    ]
    assert result.stdout.splitlines()[5].startswith("  = Counted at the call `Scale.apply(x, 3.0)`.")


def test_json_and_json_lines_carry_the_cell_and_null_for_python_files(project):
    (project / "bad.py").write_text(SNIPPET)
    entries = json.loads(invoke(["--output-format", "json", "proto.ipynb", "bad.py"]).stdout)
    assert [(e["path"], e["cell"], e["line"], e["column"], e["end_line"], e["end_column"]) for e in entries] == [
        ("bad.py", None, 11, 9, 11, 29),
        ("proto.ipynb", 3, 9, 9, 9, 30),
    ]
    lines = invoke(["--output-format", "json-lines", "proto.ipynb"]).stdout.splitlines()
    assert [json.loads(line)["cell"] for line in lines] == [3]


def file_line_of(path: Path, text: str) -> tuple[int, int]:
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if text in line:
            return number, line.index(text) + 1
    raise AssertionError(text)


def test_ci_formats_point_at_the_code_in_the_ipynb_file(project):
    line, column = file_line_of(project / "proto.ipynb", "return g * ctx.factor")
    github = invoke(["--output-format", "github", "proto.ipynb"]).stdout
    assert github.startswith(
        f"::error file=proto.ipynb,line={line},col={column},endLine={line},endColumn={column + 21},"
        f"title=AGL002 backward-arity-mismatch::cell 3:9:9: {SCALE_MESSAGE_START}"
    )
    [issue] = json.loads(invoke(["--output-format", "gitlab", "proto.ipynb"]).stdout)
    assert issue["location"] == {"path": "proto.ipynb", "lines": {"begin": line, "end": line}}
    assert issue["description"].startswith(f"AGL002: cell 3:9:9: {SCALE_MESSAGE_START}")
    [result] = json.loads(invoke(["--output-format", "sarif", "proto.ipynb"]).stdout)["runs"][0]["results"]
    location = result["locations"][0]["physicalLocation"]
    assert location["artifactLocation"]["uri"] == "proto.ipynb"
    assert location["region"] == {"startLine": line, "startColumn": column, "endLine": line, "endColumn": column + 21}
    in_cell = {"cell": 3, "startLine": 9, "startColumn": 9, "endLine": 9, "endColumn": 30}
    assert result["properties"]["notebookCell"] == in_cell


def test_file_positions_count_json_escapes(tmp_path):
    # One string for the whole cell, non-ASCII escaped: the annotation's column is the raw text's.
    document = {
        "nbformat": 4,
        "metadata": {},
        "cells": [
            {"cell_type": "code", "source": "import torch\nname = '\u00e9'\n" + SCALE + "y = Scale.apply(x, 3.0)\n"}
        ],
    }
    path = tmp_path / "one_line.ipynb"
    path.write_text(json.dumps(document))
    text = path.read_text()
    github = CliRunner().invoke(main, ["--output-format", "github", str(path)]).stdout
    assert f"line=1,col={text.index('return g * ctx.factor') + 1}," in github


# --- confirm ------------------------------------------------------------------------------------------


def test_confirm_runs_a_notebook_finding_built_from_the_joined_cells(tmp_path):
    """The motivating hand-written ReLU in a notebook cell, confirmed under real torch."""
    (tmp_path / "activation.ipynb").write_text(
        notebook(
            ("markdown", "# ReLU two ways"),
            ("code", "%matplotlib inline\nimport torch\n"),
            ("code", ACTIVATION),
            ("code", "x = torch.randn(8, requires_grad=True)\n%timeit no_back(x)\nno_back(x).sum().backward()\n"),
        )
    )
    proc = subprocess.run(
        [sys.executable, "-m", "autograd_lint", "--no-cache", "--select", "AGL003", "--confirm", "activation.ipynb"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.returncode == 1, proc.stderr
    finding, verdict = proc.stdout.splitlines()
    assert finding.startswith("activation.ipynb:cell 3:3:12: AGL003 `x * (x > 0).float()` is a hand-written activation")
    assert verdict.startswith("    confirmed (")
    assert "-0.0 for inputs" in verdict


def test_file_positions_follow_the_notebooks_own_cells_only(tmp_path):
    # Metadata before the cells with a "cells" list of its own, and an output that quotes code.
    document = {
        "metadata": {"cells": [{"cell_type": "code", "source": ["decoy = 1\n"]}], "language_info": {"name": "python"}},
        "nbformat": 4,
        "cells": [
            {
                "cell_type": "code",
                "outputs": [{"output_type": "stream", "text": ["return g * ctx.factor\n"]}],
                "source": ["import torch\n"],
            },
            {"cell_type": "code", "source": SCALE.splitlines(keepends=True), "outputs": []},
            {"cell_type": "code", "source": ["y = Scale.apply(x, 3.0)\n"]},
        ],
    }
    path = tmp_path / "decoy.ipynb"
    path.write_text(json.dumps(document, indent=1))
    line, column = file_line_of(path, '"        return g * ctx.factor')
    github = CliRunner().invoke(main, ["--output-format", "github", str(path)]).stdout
    assert f",line={line},col={column + 9},endLine={line}," in github  # after the quote and 8 spaces
