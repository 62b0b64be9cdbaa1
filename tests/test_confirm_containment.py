"""Confirm mode runs code from the tree being linted: what contains it, tested from the harness's side.

rlimits, the environment it sees, where its writes land, and that an interrupted linter (Ctrl-C or
SIGTERM, through a real process) leaves no temp directory and no process behind.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from autograd_lint.confirm.harness import PROBES
from autograd_lint.confirm.runner import KEPT_ENVIRONMENT, OUTPUT_CAP_BYTES, RunLimits, run_harness

REPORT_SELF = """
import json, os, resource, tempfile, pathlib
limits = {name: resource.getrlimit(getattr(resource, name)) for name in ("RLIMIT_AS", "RLIMIT_CPU", "RLIMIT_FSIZE", "RLIMIT_CORE")}
_agl_report("not-reproduced", json.dumps({
    "environ": dict(os.environ), "limits": limits, "cwd": os.getcwd(), "home": str(pathlib.Path.home()),
    "tmp": tempfile.gettempdir(),
}))
"""


@pytest.fixture
def private_tmp(tmp_path, monkeypatch):
    root = tmp_path / "tmp"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    return root


def harness_view(private_tmp, monkeypatch, timeout=30, memory_mb=2048) -> dict:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "hunter2")
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_secret")
    monkeypatch.setenv("PYTHONPATH", "/somewhere/else")
    result = run_harness(PROBES + REPORT_SELF, RunLimits(sys.executable, timeout=timeout, memory_mb=memory_mb))
    assert result.verdict == "not-reproduced", result.evidence
    assert os.listdir(private_tmp) == []
    return json.loads(result.evidence)


def test_harness_runs_under_address_space_cpu_and_file_size_limits(private_tmp, monkeypatch):
    view = harness_view(private_tmp, monkeypatch, timeout=30, memory_mb=2048)
    assert view["limits"]["RLIMIT_AS"] == [2048 * 1024 * 1024] * 2
    assert view["limits"]["RLIMIT_CPU"] == [35, 36]  # the wall timeout plus a margin; SIGXCPU, then SIGKILL
    assert view["limits"]["RLIMIT_FSIZE"] == [OUTPUT_CAP_BYTES] * 2
    assert view["limits"]["RLIMIT_CORE"] == [0, 0]


def test_cpu_time_limit_stops_a_harness_the_wall_clock_would_not(private_tmp):
    # The soft limit is lowered to 1 s (CPU time over the wall timeout needs several busy threads,
    # which a loaded machine cannot be relied on to run); the runner's hard limit stays.
    body = (
        "import resource\n_, hard = resource.getrlimit(resource.RLIMIT_CPU)\n"
        "resource.setrlimit(resource.RLIMIT_CPU, (1, hard))\nwhile True:\n    pass\n"
    )
    result = run_harness(body, RunLimits(sys.executable, timeout=60))
    assert result.verdict == "inconclusive"
    assert result.evidence == "CPU time limit exceeded"
    assert result.seconds < 30
    assert os.listdir(private_tmp) == []


def test_environment_is_scrubbed(private_tmp, monkeypatch):
    view = harness_view(private_tmp, monkeypatch)
    environ = view["environ"]
    assert "AWS_SECRET_ACCESS_KEY" not in environ and "GITHUB_TOKEN" not in environ and "PYTHONPATH" not in environ
    allowed = set(KEPT_ENVIRONMENT) | {"HOME", "TMPDIR", "PYTHONDONTWRITEBYTECODE", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "LC_CTYPE"}
    assert set(environ) <= allowed, sorted(set(environ) - allowed)
    assert environ["PATH"] == os.environ["PATH"]
    # HOME, the temp directory and the working directory are the harness's own temp directory.
    assert view["home"] == view["cwd"] == view["tmp"] == environ["HOME"] == environ["TMPDIR"]
    assert Path(view["cwd"]).name.startswith("autograd-lint-confirm-")
    assert Path(view["cwd"]).parent == private_tmp


def test_writes_to_cwd_home_and_tmp_do_not_survive(private_tmp, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    body = PROBES + textwrap.dedent(
        """
        import os, pathlib, tempfile
        open("in_cwd.txt", "w").write("x")
        (pathlib.Path.home() / ".cache" / "torch").mkdir(parents=True)
        (pathlib.Path.home() / ".cache" / "torch" / "cached.bin").write_bytes(b"x")
        with tempfile.NamedTemporaryFile(delete=False) as handle:
            handle.write(b"x")
        _agl_report("not-reproduced", "wrote")
        """
    )
    before = set(os.listdir(tmp_path))
    result = run_harness(body, RunLimits(sys.executable, timeout=30))
    assert (result.verdict, result.evidence) == ("not-reproduced", "wrote")
    assert os.listdir(private_tmp) == []
    assert set(os.listdir(tmp_path)) == before  # the linter's working directory is untouched
    assert not (Path.home() / ".cache" / "torch" / "cached.bin").exists()


def test_harness_output_is_capped(private_tmp):
    body = "import sys\nsys.stdout.write('x' * (4 << 20))\nsys.stdout.flush()\n"
    result = run_harness(body, RunLimits(sys.executable, timeout=30))
    assert result.verdict == "inconclusive" and result.evidence.startswith("output limit")
    assert os.listdir(private_tmp) == []


# --- the linter interrupted mid-confirm, through a real process --------------------------------------

HANGING_MODULE = """\
import torch
from torch.autograd import Function


class Hang(Function):
    @staticmethod
    def forward(ctx, x, scale):
        while True:
            pass

    @staticmethod
    def backward(ctx, g):
        return g
"""


def processes_mentioning(text: str) -> list[str]:
    out = subprocess.run(["ps", "-ww", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if text in line and "ps -eo" not in line]


@pytest.mark.parametrize("signum, exit_code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupted_confirm_kills_harnesses_and_removes_temp_dirs(tmp_path, signum, exit_code):
    temp_root = tmp_path / "tmp"
    temp_root.mkdir()
    (tmp_path / "hang_a.py").write_text(HANGING_MODULE)
    (tmp_path / "hang_b.py").write_text(HANGING_MODULE.replace("Hang", "HangToo"))
    environment = {**os.environ, "TMPDIR": str(temp_root)}
    linter = subprocess.Popen(
        [sys.executable, "-m", "autograd_lint", "--no-cache", "--confirm", "--confirm-timeout", "300", "-j", "2",
         "hang_a.py", "hang_b.py"],
        cwd=tmp_path, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,  # its own process group: the terminal's Ctrl-C goes to the whole group
    )
    try:
        deadline = time.monotonic() + 180
        while not processes_mentioning(str(temp_root)):  # a harness is running
            assert linter.poll() is None, linter.communicate()
            assert time.monotonic() < deadline, "no harness started"
            time.sleep(0.2)
        time.sleep(1)
        os.killpg(linter.pid, signum) if signum == signal.SIGINT else linter.send_signal(signum)
        stdout, stderr = linter.communicate(timeout=60)
    finally:
        if linter.poll() is None:
            os.killpg(linter.pid, signal.SIGKILL)
            linter.wait()
        leftovers = processes_mentioning(str(temp_root))
        for line in leftovers:  # so that a failure leaves nothing running either
            os.kill(int(line.split()[0]), signal.SIGKILL)
    assert linter.returncode == exit_code, stderr
    assert stderr == "autograd-lint: error: interrupted\n"
    assert stdout == ""
    assert os.listdir(temp_root) == []
    assert processes_mentioning(str(temp_root)) == []
