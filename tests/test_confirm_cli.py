"""Confirm mode as CI uses it, through the command line (CliRunner and real processes), under real torch.

A --python that cannot run harnesses is one error line and exit 2 before any harness; --confirmed-only
keeps findings whose harness could not reach a verdict (--drop-inconclusive drops them); the summary
and --statistics count verdicts; verdicts are cached; harnesses import the user's package as its tests
would (relative imports resolve, a missing third-party module is named); progress stays off stdout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import autograd_lint.confirm.session as session
from autograd_lint.cli import _ConfirmProgress, main
from autograd_lint.confirm.sandbox import sandbox_description

ROOT = Path(__file__).resolve().parent.parent


def start_line(python) -> str:
    """The line `--confirm` starts with: the torch that runs the harnesses and the containment they run under."""
    return f"confirm: torch {torch.__version__} on cpu in {python}; sandbox: {sandbox_description()}"


ARITY = "returns 1 value but forward takes 2 inputs"
# A package whose Function reaches its helpers through all three forms of relative import, and whose
# `__main__` block (which the harness must never run) would leave a marker file.
PROJECT = {
    "pyproject.toml": "[tool.autograd-lint]\n",
    "src/mylib/__init__.py": "from .nn.layers import ScaleGrad\n",
    "src/mylib/core.py": "EPS = 0.0\n",
    "src/mylib/nn/__init__.py": "",
    "src/mylib/nn/utils.py": "ONE = 1.0\n\n\ndef scale_of(scale):\n    return scale * ONE\n",
    "src/mylib/nn/layers.py": """
        import torch
        from torch.autograd import Function

        from . import utils
        from .utils import scale_of
        from ..core import EPS


        class ScaleGrad(Function):
            @staticmethod
            def forward(ctx, x, scale):
                ctx.scale = scale_of(scale) * utils.ONE + EPS
                return x.clone()

            @staticmethod
            def backward(ctx, grad_output):
                return grad_output * ctx.scale


        if __name__ == "__main__":
            open(MARKER, "w").write("the main block ran")
        """,
    # flash_attn needs CUDA: never in a CPU test environment.
    "src/mylib/nn/attention_helpers.py": "import flash_attn\n\n\ndef attend(x):\n    return x.clone()\n",
    "src/mylib/nn/attention.py": """
        from torch.autograd import Function

        from .attention_helpers import attend


        class Attend(Function):
            @staticmethod
            def forward(ctx, x, scale):
                ctx.scale = scale
                return attend(x)

            @staticmethod
            def backward(ctx, grad_output):
                return grad_output * ctx.scale
        """,
    "src/mylib/nn/lazy.py": """
        from torch.autograd import Function


        class LazyAttend(Function):
            @staticmethod
            def forward(ctx, x, scale):
                import flash_attn

                ctx.scale = scale
                return flash_attn.attend(x)

            @staticmethod
            def backward(ctx, grad_output):
                return grad_output * ctx.scale
        """,
    "scripts/hang.py": """
        from torch.autograd import Function


        class Hang(Function):
            @staticmethod
            def forward(ctx, x, scale):
                while True:
                    pass

            @staticmethod
            def backward(ctx, grad_output):
                return grad_output
        """,
    # Needs a GPU: the harness runs with none (--device cpu), so no verdict can come from it.
    "scripts/on_gpu.py": """
        from torch.autograd import Function


        class ScaleOnGpu(Function):
            @staticmethod
            def forward(ctx, x, scale):
                ctx.scale = scale
                return x.cuda() * scale

            @staticmethod
            def backward(ctx, grad_output):
                return grad_output * ctx.scale
        """,
    # Marked non-differentiable through a list the rule does not follow: a finding torch refutes.
    "scripts/mask.py": """
        import torch
        from torch.autograd import Function


        class ReLUWithMask(Function):
            @staticmethod
            def forward(ctx, x):
                mask = (x > 0).float()
                frozen = [mask]
                ctx.mark_non_differentiable(frozen[0])
                return torch.relu(x), mask

            @staticmethod
            def backward(ctx, grad_output, grad_mask):
                return grad_output
        """,
}
LAYERS, ATTENTION, LAZY = "src/mylib/nn/layers.py", "src/mylib/nn/attention.py", "src/mylib/nn/lazy.py"
HANG, MASK, ON_GPU = "scripts/hang.py", "scripts/mask.py", "scripts/on_gpu.py"
MISSING = "missing dependency: No module named 'flash_attn'"


@pytest.fixture
def project(tmp_path, monkeypatch):
    for name, text in PROJECT.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n").replace("MARKER", repr(str(tmp_path / "marker"))))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def invoke(args: list[str]):
    return CliRunner().invoke(main, args, catch_exceptions=False)


@pytest.fixture
def harness_runs(monkeypatch):
    """The scripts of the harnesses run (the interpreter's preflight apart), through the real runner."""
    scripts: list[str] = []
    real = session.run_harness

    def counting(script, limits):
        if script != session._PREFLIGHT:
            scripts.append(script)
        return real(script, limits)

    monkeypatch.setattr(session, "run_harness", counting)
    return scripts


# --- a confirm environment that cannot run ---------------------------------------------------------


def executable(path: Path, text: str) -> str:
    path.write_text(text)
    path.chmod(0o755)
    return str(path)


def plain_file(path: Path) -> str:
    path.write_text("#!/bin/sh\n")
    return str(path)


BROKEN_PYTHONS = {
    "missing": (lambda tmp: str(tmp / "nowhere" / "python"), "no such file"),
    "not executable": (lambda tmp: plain_file(tmp / "python.txt"), "not an executable file"),
    # An interpreter without torch: this one without its site-packages.
    "no torch": (
        lambda tmp: executable(tmp / "python-no-torch", f'#!/bin/sh\nexec {sys.executable} -S "$@"\n'),
        "`import torch` failed: ModuleNotFoundError: No module named 'torch'",
    ),
    "exits 1": (
        lambda tmp: executable(tmp / "python-exits", "#!/bin/sh\nexit 1\n"),
        "running `import torch` there: the interpreter exited with status 1 before a verdict",
    ),
    "crashes": (
        lambda tmp: executable(tmp / "python-crashes", "#!/bin/sh\nkill -SEGV $$\n"),
        "running `import torch` there: the interpreter was killed by SIGSEGV before a verdict",
    ),
}


@pytest.mark.parametrize("case", BROKEN_PYTHONS)
def test_a_python_that_cannot_confirm_is_one_error_line_and_exit_2(case, project, tmp_path, monkeypatch):
    make, reason = BROKEN_PYTHONS[case]
    python = make(tmp_path)

    def no_harness(*args, **kwargs):
        raise AssertionError("a harness ran although the interpreter cannot run them")

    monkeypatch.setattr(session, "confirm_diagnostics", no_harness)
    for flags in (["--confirm"], ["--confirmed-only"], ["--drop-inconclusive", "--output-format", "json"]):
        result = invoke([*flags, "--python", python, LAYERS])
        assert result.exit_code == 2
        assert result.stderr == f"autograd-lint: error: confirm cannot run with --python {python}: {reason}\n"
        assert result.stdout == ""


def test_the_issues_command_with_a_broken_python_fails_in_a_real_process(tmp_path):
    no_torch, reason = BROKEN_PYTHONS["no torch"][0](tmp_path), BROKEN_PYTHONS["no torch"][1]
    for python, expected in (("/nonexistent/python", "no such file"), (no_torch, reason)):
        proc = subprocess.run(
            [sys.executable, "-m", "autograd_lint", "--confirmed-only", "--python", python, "fixtures/motivating/"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 2
        assert proc.stderr == f"autograd-lint: error: confirm cannot run with --python {python}: {expected}\n"
        assert proc.stdout == ""


def test_device_cuda_where_torch_cannot_initialize_cuda_is_one_error_line_and_exit_2(project, monkeypatch):
    # This torch is a CPU build: the preflight, run under the harnesses' limits, cannot cap GPU memory.
    assert torch.version.cuda is None
    monkeypatch.setattr(session, "confirm_diagnostics", lambda *args, **kwargs: pytest.fail("a harness ran"))
    result = invoke(["--confirm", "--device", "cuda", LAYERS])
    assert result.exit_code == 2
    assert result.stderr == (
        f"autograd-lint: error: confirm cannot run with --device cuda: {sys.executable} cannot initialize CUDA "
        "(AssertionError: Torch not compiled with CUDA enabled)\n"
    )
    assert result.stdout == ""


def test_a_relative_python_is_relative_to_the_current_directory(project):
    (project / "bin").mkdir()
    executable(project / "bin" / "python", f'#!/bin/sh\nexec {sys.executable} "$@"\n')
    result = invoke(["--confirm", "--no-cache", "--python", "bin/python", "--show-progress", MASK])
    assert result.exit_code == 1, result.stderr
    python = project / "bin" / "python"
    assert result.stderr.splitlines()[0] == start_line(python)


# --- --confirmed-only, the summary and JSON, in a real process ------------------------------------------


def test_confirmed_only_keeps_what_could_not_be_confirmed_with_its_reason(project):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "autograd_lint",
            "--confirmed-only",
            "--no-cache",
            "--confirm-timeout",
            "8",
            "-j",
            "2",
            "--output-format",
            "json",
            ".",
        ],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])},
    )
    assert proc.returncode == 1, proc.stderr
    entries = {(e["path"], e["code"]): e["confirm"] for e in json.loads(proc.stdout)}
    assert set(entries) == {
        (LAYERS, "AGL002"),
        (ATTENTION, "AGL002"),
        (LAZY, "AGL002"),
        (HANG, "AGL002"),
        (ON_GPU, "AGL002"),
    }
    assert entries[(LAYERS, "AGL002")]["verdict"] == "confirmed"
    torch_says = "ScaleGradBackward returned an incorrect number of gradients (expected 2, got 1)"
    assert torch_says in entries[(LAYERS, "AGL002")]["evidence"]
    assert entries[(ATTENTION, "AGL002")]["verdict"] == "inconclusive"
    # Files are named as Python names modules: from the project root on sys.path (src/, above the package).
    assert entries[(ATTENTION, "AGL002")]["evidence"] == f"{MISSING} (imported by mylib/nn/attention_helpers.py)"
    assert entries[(LAZY, "AGL002")]["verdict"] == "inconclusive"
    assert entries[(LAZY, "AGL002")]["evidence"] == f"{MISSING} (imported by mylib/nn/lazy.py)"
    assert entries[(HANG, "AGL002")]["verdict"] == "inconclusive"
    assert entries[(HANG, "AGL002")]["evidence"] == "timeout: the harness ran longer than 8 s and was killed"
    assert entries[(ON_GPU, "AGL002")] | {"seconds": 0} == {
        "verdict": "inconclusive",
        "evidence": "needs a CUDA device (on_gpu.py:8 initializes CUDA; confirm ran on the CPU)",
        "seconds": 0,
    }
    # The summary on stderr counts every verdict, the refuted finding's as not shown; no progress there.
    assert proc.stderr == start_line(sys.executable) + "\n" + (
        "Found 5 diagnostics (5 errors) in 11 files checked. "
        "Confirm: 1 confirmed, 1 not reproduced (not shown), 4 inconclusive.\n"
    )
    assert not (project / "marker").exists()  # layers.py's __main__ block never ran


def test_confirmed_only_exits_1_for_an_inconclusive_finding_and_drop_inconclusive_drops_it(project):
    first = invoke(["--confirmed-only", "--no-cache", "--confirm-timeout", "6", HANG, MASK])
    assert first.exit_code == 1
    assert first.stdout.splitlines()[0].startswith(f"{HANG}:12:9: AGL002 Hang.backward {ARITY}")
    assert first.stdout.splitlines()[1].startswith("    inconclusive (")
    assert first.stdout.splitlines()[1].endswith("): timeout: the harness ran longer than 6 s and was killed")
    assert len(first.stdout.splitlines()) == 2
    assert first.stderr == start_line(sys.executable) + "\n" + (
        "Found 1 diagnostic (1 error) in 2 files checked. "
        "Confirm: 0 confirmed, 1 not reproduced (not shown), 1 inconclusive.\n"
    )
    dropped = invoke(["--drop-inconclusive", "--no-cache", "--confirm-timeout", "6", HANG, MASK])
    assert dropped.exit_code == 0
    assert dropped.stdout == ""
    assert dropped.stderr == start_line(sys.executable) + "\n" + (
        "All checks passed! (2 files checked) "
        "Confirm: 0 confirmed, 1 not reproduced (not shown), 1 inconclusive (not shown).\n"
    )


def test_confirmed_only_keeps_findings_no_harness_covers(project, harness_runs):
    (project / "broken.py").write_text("def f(:\n    pass\n")
    result = invoke(["--confirmed-only", "--no-cache", "broken.py"])
    assert result.exit_code == 1
    assert result.stdout == "broken.py:1:7: AGL000 SyntaxError: invalid syntax\n"
    assert harness_runs == []


# --- the verdict cache and --statistics -------------------------------------------------------------------


def test_verdicts_are_cached_until_the_finding_or_its_package_changes(project, harness_runs):
    paths = [LAYERS, ATTENTION, MASK]
    first = invoke(["--confirm", *paths])
    assert first.exit_code == 1
    assert len(harness_runs) == 3
    assert first.stderr == start_line(sys.executable) + "\n" + (
        "Found 3 diagnostics (2 errors, 1 warning) in 3 files checked. "
        "Confirm: 1 confirmed, 1 not reproduced, 1 inconclusive.\n"
    )
    verdict_lines = [line for line in first.stdout.splitlines() if line.startswith("    ")]

    # Unchanged: confirmed and not-reproduced come from the cache; inconclusive runs again (its cause may be gone).
    harness_runs.clear()
    second = invoke(["--confirm", "--show-progress", *paths])
    assert second.exit_code == 1
    assert len(harness_runs) == 1 and "class Attend" in harness_runs[0]
    assert [line for line in second.stdout.splitlines() if line.startswith("    ")][::2] == verdict_lines[::2]
    progress = second.stderr.splitlines()
    assert progress[0] == start_line(sys.executable)
    assert progress[1].startswith("confirm: 0/1 harnesses run (2 cached), ") and progress[1].endswith(" s")
    assert progress[-2].startswith("confirm: 1/1 harnesses run (2 cached), ")
    assert progress[-1] == first.stderr.splitlines()[-1]

    # A helper the harness imports changed: the package's findings run again, the script's stays cached.
    harness_runs.clear()
    utils = project / "src/mylib/nn/utils.py"
    utils.write_text(utils.read_text() + "# tuned\n")
    statistics = invoke(["--confirm", "--statistics", *paths])
    assert sorted(script.count("class Attend") for script in harness_runs) == [0, 1]
    assert statistics.stdout == (
        "    2\tAGL002\tbackward-arity-mismatch\t1 confirmed\t0 not reproduced\t1 inconclusive\n"
        "    1\tAGL018\tfloat-output-not-marked\t0 confirmed\t1 not reproduced\t0 inconclusive\n"
    )
    as_json = invoke(["--confirm", "--statistics", "--output-format", "json", "--drop-inconclusive", *paths])
    assert json.loads(as_json.stdout) == [
        {
            "code": "AGL002",
            "name": "backward-arity-mismatch",
            "count": 1,
            "confirm": {"confirmed": 1, "not-reproduced": 0, "inconclusive": 0},
        },
    ]

    harness_runs.clear()
    assert invoke(["--confirm", "--no-cache", MASK]).exit_code == 1
    assert len(harness_runs) == 1


# --- progress ------------------------------------------------------------------------------------------------


def test_progress_lines_at_the_start_every_ten_seconds_and_at_the_end(capsys):
    now = [100.0]
    progress = _ConfirmProgress(terminal=False, clock=lambda: now[0])
    for elapsed, done in ((0, 0), (2, 0), (4, 1), (11, 1), (13, 2), (20, 2), (21, 3)):
        now[0] = 100.0 + elapsed
        progress(done, 3, 1)
    assert capsys.readouterr().err.splitlines() == [
        "confirm: 0/3 harnesses run (1 cached), 0 s",
        "confirm: 1/3 harnesses run (1 cached), 11 s",
        "confirm: 3/3 harnesses run (1 cached), 21 s",
    ]


def test_progress_on_a_terminal_rewrites_one_line_and_clears_it(capsys):
    now = [0.0]
    progress = _ConfirmProgress(terminal=True, clock=lambda: now[0])
    progress(0, 2, 0)
    now[0] = 3.0
    progress(1, 2, 0)
    progress(2, 2, 0)
    text = "confirm: 2/2 harnesses run, 3 s"
    assert capsys.readouterr().err == (
        "\rconfirm: 0/2 harnesses run, 0 s\rconfirm: 1/2 harnesses run, 3 s\r" + text + "\r" + " " * len(text) + "\r"
    )


def test_the_harness_runs_the_copy_in_its_package_with_the_project_root_first_on_sys_path(project):
    from autograd_lint import lint_source
    from autograd_lint.confirm.session import _script_for
    from autograd_lint.core.module import ParsedModule
    from autograd_lint.io.module_names import module_name_for_path

    cases = ((LAYERS, project / "src", "__package__ = 'mylib.nn'"), (HANG, project / "scripts", None))
    for path, root, package_line in cases:
        source = (project / path).read_text()
        (diagnostic,) = lint_source(source, path)
        script = _script_for(ParsedModule(source, path, module_name_for_path(path)), diagnostic).splitlines()
        # The project's folder (its pyproject.toml) follows, as `python -m pytest` run there would have it.
        start = f'_agl_probes.start(globals().pop("_agl_channel", None), {str(root)!r}, __file__, {str(project)!r})'
        assert start in script
        assert [line for line in script if line.startswith("__package__")] == ([package_line] if package_line else [])
