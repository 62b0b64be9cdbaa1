"""Confirm mode runs code from the tree being linted: what contains it, tested from the harness's side.

rlimits, the environment it sees, where its writes land, that an interrupted linter (Ctrl-C or
SIGTERM, through a real process) leaves no temp directory and no process behind, that the verdict
cannot be forged by printing or by writing to the result pipe, and that daemonizing grandchildren,
`/proc/<ppid>` and the network are contained: in both sandbox modes (namespaces, and the process
fallback forced with AUTOGRAD_LINT_SANDBOX=process).
"""

from __future__ import annotations

import json
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from autograd_lint import lint_source
from autograd_lint.confirm import session
from autograd_lint.confirm.harness import runtime_prelude
from autograd_lint.confirm.runner import (
    DEVICE_VARIABLE,
    KEPT_ENVIRONMENT,
    OUTPUT_CAP_BYTES,
    WORLD_SIZE_VARIABLE,
    RunLimits,
    run_harness,
)
from autograd_lint.confirm.sandbox import NAMESPACES, SANDBOX_SWITCH, current_sandbox, sandbox_description
from autograd_lint.confirm.session import confirm_diagnostics, run_scripts
from autograd_lint.confirm.warm_worker import WARM_WORKER_SWITCH, WarmWorker, warm_workers, worker_for

REPO = Path(__file__).resolve().parent.parent
# What a harness script starts with: the runtime imported and the result channel handed to it.
PRELUDE = runtime_prelude() + "\n"

REPORT_SELF = """
import json, os, resource, tempfile, pathlib
limits = {name: resource.getrlimit(getattr(resource, name)) for name in ("RLIMIT_AS", "RLIMIT_DATA", "RLIMIT_CPU", "RLIMIT_FSIZE", "RLIMIT_CORE")}
_agl_probes.report("not-reproduced", json.dumps({
    "environ": dict(os.environ), "limits": limits, "cwd": os.getcwd(), "home": str(pathlib.Path.home()),
    "tmp": tempfile.gettempdir(), "proc_limits": pathlib.Path("/proc/self/limits").read_text(),
}))
"""


@pytest.fixture
def private_tmp(tmp_path, monkeypatch):
    root = tmp_path / "tmp"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    return root


@pytest.fixture(params=["namespaces", "process"])
def sandbox(request, monkeypatch):
    """Each test runs in namespace mode (required: a machine without namespaces fails it) and in the
    process fallback, forced as the README documents."""
    monkeypatch.setenv(SANDBOX_SWITCH, request.param)
    return request.param


def harness_view(private_tmp, monkeypatch, timeout=30, memory_mb=2048) -> dict:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "hunter2")
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_secret")
    monkeypatch.setenv("PYTHONPATH", "/somewhere/else")
    result = run_harness(PRELUDE + REPORT_SELF, RunLimits(sys.executable, timeout=timeout, memory_mb=memory_mb))
    assert result.verdict == "not-reproduced", result.evidence
    assert os.listdir(private_tmp) == []
    return json.loads(result.evidence)


def test_harness_runs_under_data_cpu_and_file_size_limits(sandbox, private_tmp, monkeypatch):
    view = harness_view(private_tmp, monkeypatch, timeout=30, memory_mb=2048)
    assert view["limits"]["RLIMIT_DATA"] == [2048 * 1024 * 1024] * 2
    # The address space is left as the linter's (CUDA cannot initialize under a cap of a few GB).
    assert view["limits"]["RLIMIT_AS"] == list(resource.getrlimit(resource.RLIMIT_AS))
    proc_limits = {line[:26].strip(): line[26:].split() for line in view["proc_limits"].splitlines()[1:]}
    if resource.getrlimit(resource.RLIMIT_AS)[0] == resource.RLIM_INFINITY:
        assert proc_limits["Max address space"] == ["unlimited", "unlimited", "bytes"]
    assert proc_limits["Max data size"] == ["2147483648", "2147483648", "bytes"]
    assert view["limits"]["RLIMIT_CPU"] == [35, 36]  # the wall timeout plus a margin; SIGXCPU, then SIGKILL
    assert view["limits"]["RLIMIT_FSIZE"] == [OUTPUT_CAP_BYTES] * 2
    assert view["limits"]["RLIMIT_CORE"] == [0, 0]


def test_cpu_time_limit_stops_a_harness_the_wall_clock_would_not(sandbox, private_tmp):
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


def test_environment_is_scrubbed(sandbox, private_tmp, monkeypatch):
    view = harness_view(private_tmp, monkeypatch)
    environ = view["environ"]
    assert "AWS_SECRET_ACCESS_KEY" not in environ and "GITHUB_TOKEN" not in environ and "PYTHONPATH" not in environ
    allowed = set(KEPT_ENVIRONMENT) | {
        DEVICE_VARIABLE,
        WORLD_SIZE_VARIABLE,
        "HOME",
        "TMPDIR",
        "PYTHONDONTWRITEBYTECODE",
        "OMP_NUM_THREADS",
        "MKL_NUM_THREADS",
        "LC_CTYPE",
    }
    assert set(environ) <= allowed, sorted(set(environ) - allowed)
    assert environ["PATH"] == os.environ["PATH"]
    # The default device: the harness builds its tensors on the CPU and sees no GPU.
    assert (environ[DEVICE_VARIABLE], environ["CUDA_VISIBLE_DEVICES"], environ[WORLD_SIZE_VARIABLE]) == ("cpu", "", "1")
    # HOME, the temp directory and the working directory are the harness's own temp directory.
    assert view["home"] == view["cwd"] == view["tmp"] == environ["HOME"] == environ["TMPDIR"]
    assert Path(view["cwd"]).name.startswith("autograd-lint-confirm-")
    assert Path(view["cwd"]).parent == private_tmp


def test_writes_to_cwd_home_and_tmp_do_not_survive(sandbox, private_tmp, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    body = PRELUDE + textwrap.dedent(
        """
        import os, pathlib, tempfile
        open("in_cwd.txt", "w").write("x")
        (pathlib.Path.home() / ".cache" / "torch").mkdir(parents=True)
        (pathlib.Path.home() / ".cache" / "torch" / "cached.bin").write_bytes(b"x")
        with tempfile.NamedTemporaryFile(delete=False) as handle:
            handle.write(b"x")
        _agl_probes.report("not-reproduced", "wrote")
        """
    )
    before = set(os.listdir(tmp_path))
    result = run_harness(body, RunLimits(sys.executable, timeout=30))
    assert (result.verdict, result.evidence) == ("not-reproduced", "wrote")
    assert os.listdir(private_tmp) == []
    assert set(os.listdir(tmp_path)) == before  # the linter's working directory is untouched
    assert not (Path.home() / ".cache" / "torch" / "cached.bin").exists()


def test_harness_output_is_capped(sandbox, private_tmp):
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
def test_interrupted_confirm_kills_harnesses_and_removes_temp_dirs(sandbox, tmp_path, signum, exit_code):
    temp_root = tmp_path / "tmp"
    temp_root.mkdir()
    (tmp_path / "hang_a.py").write_text(HANGING_MODULE)
    (tmp_path / "hang_b.py").write_text(HANGING_MODULE.replace("Hang", "HangToo"))
    environment = {**os.environ, "TMPDIR": str(temp_root)}
    linter = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "autograd_lint",
            "--no-cache",
            "--confirm",
            "--confirm-timeout",
            "300",
            "-j",
            "2",
            "hang_a.py",
            "hang_b.py",
        ],
        cwd=tmp_path,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: the terminal's Ctrl-C goes to the whole group
        preexec_fn=deliver_interrupts,
    )
    try:
        deadline = time.monotonic() + 180
        # Both harnesses are running: two temp directories at once (the interpreter's preflight has one, alone).
        while len(os.listdir(temp_root)) < 2 or not processes_mentioning(str(temp_root)):
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
    start, *rest = stderr.splitlines()
    assert re.fullmatch(rf"confirm: torch \S+ on cpu in \S+; sandbox: {sandbox}\b.*", start), start
    assert rest == ["autograd-lint: error: interrupted"]
    assert stdout == ""
    assert os.listdir(temp_root) == []
    assert processes_mentioning(str(temp_root)) == []


def test_a_killed_linter_takes_its_harnesses_with_it(sandbox, tmp_path):
    # SIGKILL of the linter skips its cleanup; the launchers notice their parent die (a parent death
    # signal) and kill everything they started. Only the temp directories stay.
    temp_root = tmp_path / "tmp"
    temp_root.mkdir()
    linter_source = (
        f"import sys, tempfile\ntempfile.tempdir = {str(temp_root)!r}\n"
        "from autograd_lint.confirm.runner import RunLimits, run_harness\n"
        "body = 'import os, time\\nif os.fork() == 0:\\n    os.setsid()\\n    time.sleep(300)\\ntime.sleep(300)\\n'\n"
        "run_harness(body, RunLimits(sys.executable, timeout=300))\n"
    )
    linter = subprocess.Popen([sys.executable, "-c", linter_source], env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        deadline = time.monotonic() + 60
        while len([line for line in processes_mentioning(str(temp_root)) if "harness.py" in line]) < 2:
            assert linter.poll() is None and time.monotonic() < deadline, "the harness did not fork"
            time.sleep(0.1)
        linter.kill()
        linter.wait()
        deadline = time.monotonic() + 30  # asynchronous: wait for the launcher's cleanup, not for a time
        while processes_mentioning(str(temp_root)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert processes_mentioning(str(temp_root)) == []
    finally:
        if linter.poll() is None:
            linter.kill()
        for line in processes_mentioning(str(temp_root)):
            os.kill(int(line.split()[0]), signal.SIGKILL)


# --- both sandbox modes ---------------------------------------------------------------------------


def run_body(body: str, timeout: float = 30, memory_mb: int = 4096):
    return run_harness(PRELUDE + textwrap.dedent(body), RunLimits(sys.executable, timeout=timeout, memory_mb=memory_mb))


def harness_processes(root: Path) -> list[str]:
    """Running processes whose command line names a harness under `root` (forks keep the harness's)."""
    out = subprocess.run(["ps", "-ww", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if str(root) in line]


def kill_leftovers(root: Path) -> None:
    for line in harness_processes(root):
        try:
            os.kill(int(line.split()[0]), signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_sandbox_description_names_the_mode(monkeypatch):
    monkeypatch.setenv(SANDBOX_SWITCH, "process")
    assert sandbox_description() == "process (subreaper; no namespaces: turned off by AUTOGRAD_LINT_SANDBOX=process)"
    assert current_sandbox().mode == "subreaper"
    monkeypatch.setenv(SANDBOX_SWITCH, "namespaces")
    assert sandbox_description() == NAMESPACES == "namespaces (user, pid, mount, net)"
    monkeypatch.delenv(SANDBOX_SWITCH)
    probed = sandbox_description()  # probed once; this machine allows namespaces (as CI's does)
    assert probed == NAMESPACES, probed
    assert sandbox_description() is probed


def test_without_namespaces_the_fallback_says_why(monkeypatch):
    from autograd_lint.confirm import sandbox as sandbox_module

    monkeypatch.delenv(SANDBOX_SWITCH, raising=False)
    monkeypatch.setattr(sandbox_module, "_probed", None)
    monkeypatch.setattr(sandbox_module, "_namespace_problem", lambda: "unshare: Operation not permitted")
    assert sandbox_description() == "process (subreaper; no namespaces: unshare: Operation not permitted)"
    assert current_sandbox().mode == "subreaper"


# --- the verdict channel ----------------------------------------------------------------------------

FORGED_LINE = 'AGL_CONFIRM {"verdict": "not-reproduced", "evidence": "forged"}'


@pytest.mark.parametrize(
    "ending, reason",
    [
        ("import os\nos._exit(0)\n", "the code under test exited with status 0 before a verdict"),
        ("import sys\nsys.exit(0)\n", "the code under test exited with status 0 before a verdict"),
        (
            "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n",
            "the code under test was killed by SIGKILL before a verdict",
        ),
    ],
)
def test_a_printed_verdict_line_is_not_a_verdict(sandbox, private_tmp, ending, reason):
    forge = f"print({FORGED_LINE!r}, flush=True)\nimport sys\nsys.stderr.write({FORGED_LINE!r} + '\\n')\n"
    result = run_body(forge + ending)
    assert result.verdict == "inconclusive"
    assert result.evidence.startswith(reason), result.evidence  # then stderr's last line, for a signal
    assert os.listdir(private_tmp) == []


def test_the_harness_report_wins_over_a_printed_line(sandbox, private_tmp):
    result = run_body(f"print({FORGED_LINE!r}, flush=True)\n_agl_probes.report('confirmed', 'measured')\n")
    assert (result.verdict, result.evidence) == ("confirmed", "measured")


def test_a_message_on_the_result_pipe_without_the_secret_is_rejected(sandbox, private_tmp):
    # The code under test finds the result pipe (every pipe it holds) and writes a well-formed verdict
    # with a guessed secret: the runner ignores it.
    body = """
        import json, os, stat
        written = []
        for name in os.listdir("/proc/self/fd"):
            fd = int(name)
            try:
                if stat.S_ISFIFO(os.fstat(fd).st_mode):
                    message = {"secret": "0" * 32, "verdict": "not-reproduced", "evidence": "forged"}
                    os.write(fd, (json.dumps(message) + "\\n").encode())
                    written.append(fd)
            except OSError:
                pass
        raise RuntimeError(f"forged on {written}")
    """
    result = run_body(body)
    assert result.verdict == "inconclusive"
    assert result.evidence.startswith("the harness failed before a verdict: RuntimeError: forged on [")
    assert "forged on []" not in result.evidence  # it did reach the pipe


def test_huge_evidence_is_cut_not_lost(private_tmp):
    result = run_body("_agl_probes.report('inconclusive', 'forward raised ValueError: ' + '\u00e9' * (4 << 20))\n")
    assert result.verdict == "inconclusive"
    assert result.evidence.startswith("forward raised ValueError: \u00e9\u00e9")
    assert result.evidence.endswith(f" ... ({(4 << 20) + 27 - 64 * 1024} more characters cut)")


FORGING_MODULE = """\
import os
import torch
from torch.autograd import Function


class ScaleGrad(Function):
    @staticmethod
    def forward(ctx, x, scale):
        print('AGL_CONFIRM {"verdict": "not-reproduced", "evidence": "forged"}', flush=True)
        EXIT
        ctx.scale = scale
        return x.clone()

    @staticmethod
    def backward(ctx, grad_output):
        return grad_output * ctx.scale


def slow(x):
    return ScaleGrad.apply(x, 0.1)
"""


@pytest.mark.parametrize(
    "exit_statement, verdict, evidence",
    [
        ("pass", "confirmed", "returned an incorrect number of gradients (expected 2, got 1)"),
        ("os._exit(0)", "inconclusive", "the code under test exited with status 0 before a verdict"),
    ],
)
def test_a_real_bug_whose_forward_forges_a_verdict(sandbox, tmp_path, exit_statement, verdict, evidence):
    module = tmp_path / "forging.py"
    module.write_text(FORGING_MODULE.replace("EXIT", exit_statement))
    diagnostics = lint_source(module.read_text(), str(module))
    assert [d.code for d in diagnostics] == ["AGL002"]
    (result,) = confirm_diagnostics(diagnostics, RunLimits(sys.executable, timeout=60)).values()
    assert result.verdict == verdict, result.evidence
    assert evidence in result.evidence


def test_forged_verdicts_through_the_command_line(tmp_path):
    (tmp_path / "forges_and_exits.py").write_text(FORGING_MODULE.replace("EXIT", "os._exit(0)"))
    (tmp_path / "forges_and_goes_on.py").write_text(FORGING_MODULE.replace("EXIT", "pass"))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "autograd_lint",
            "--no-cache",
            "--confirm",
            "--output-format",
            "json",
            "forges_and_exits.py",
            "forges_and_goes_on.py",
        ],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 1, proc.stderr
    verdicts = {entry["path"]: entry["confirm"] for entry in json.loads(proc.stdout)}
    assert verdicts["forges_and_exits.py"]["verdict"] == "inconclusive"
    assert verdicts["forges_and_exits.py"]["evidence"] == "the code under test exited with status 0 before a verdict"
    assert verdicts["forges_and_goes_on.py"]["verdict"] == "confirmed"
    assert "forged" not in proc.stdout.replace("forges_and", "")


# --- processes --------------------------------------------------------------------------------------


@pytest.mark.parametrize("detach", ["os.setsid()", "os.setpgid(0, 0)"])
def test_a_daemonized_grandchild_does_not_outlive_the_harness(sandbox, private_tmp, tmp_path, detach):
    pid_file = tmp_path / "grandchild.pid"
    body = f"""
        import os, time
        if os.fork() == 0:
            {detach}
            if os.fork() == 0:
                with open({str(pid_file) + ".part"!r}, "w") as handle:
                    handle.write(str(os.getpid()))
                os.rename({str(pid_file) + ".part"!r}, {str(pid_file)!r})
                time.sleep(300)
            os._exit(0)
        while not os.path.exists({str(pid_file)!r}):
            time.sleep(0.01)
        _agl_probes.report("not-reproduced", "daemon started")
    """
    try:
        result = run_body(body)
        assert (result.verdict, result.evidence) == ("not-reproduced", "daemon started")
        assert pid_file.exists()
        assert harness_processes(private_tmp) == []
        if sandbox == "process":  # the pid it wrote is its pid here (in a PID namespace it is not)
            with pytest.raises(ProcessLookupError):
                os.kill(int(pid_file.read_text()), 0)
    finally:
        kill_leftovers(private_tmp)


def test_the_twin_rank_of_a_two_process_group_does_not_outlive_the_harness(sandbox, private_tmp):
    # Rank 1 is a fork of the harness (probes.harness_group): here it hangs where rank 0 reports.
    body = """
        import time
        import torch.distributed as dist
        _agl_probes.harness_group()
        if dist.get_rank() == 1:
            time.sleep(300)
        _agl_probes.report("confirmed", f"rank {dist.get_rank()} of {dist.get_world_size()}")
    """
    limits = RunLimits(sys.executable, timeout=60, world_size=2)
    try:
        result = run_harness(PRELUDE + textwrap.dedent(body), limits)
        assert (result.verdict, result.evidence) == ("confirmed", "rank 0 of 2")
        assert harness_processes(private_tmp) == []
    finally:
        kill_leftovers(private_tmp)


def test_a_daemonized_grandchild_of_a_timed_out_harness_is_killed(sandbox, private_tmp):
    body = """
        import os, time
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                time.sleep(300)
            os._exit(0)
        time.sleep(300)
    """
    try:
        result = run_body(body, timeout=3)
        assert result.verdict == "inconclusive" and result.evidence.startswith("timeout:")
        assert harness_processes(private_tmp) == []
    finally:
        kill_leftovers(private_tmp)


# --- what the harness can reach of the linter -------------------------------------------------------

LINTER = """\
import json, os, sys
from autograd_lint.confirm.harness import runtime_prelude
from autograd_lint.confirm.runner import RunLimits, run_harness
result = run_harness(runtime_prelude() + "\\n" + sys.stdin.read(), RunLimits(sys.executable, timeout=60))
print(json.dumps({"pid": os.getpid(), "verdict": result.verdict, "evidence": result.evidence}))
"""

# Up the parent chain from the harness, and across every process it can see: environ and cwd.
WALK_PROC = """
    import json, os
    def read(path):
        try:
            with open(path, "rb") as handle:
                return handle.read().decode("utf-8", "replace")
        except OSError as exc:
            return type(exc).__name__
    chain, pid = {}, os.getppid()
    while pid > 0 and pid not in chain:
        status = read(f"/proc/{pid}/status")
        removed = "not tried"
        try:
            os.remove(f"/proc/{pid}/cwd/precious.txt")
            removed = "removed"
        except OSError as exc:
            removed = type(exc).__name__
        chain[pid] = {"environ": read(f"/proc/{pid}/environ"), "remove": removed}
        pid = int(next((line.split()[1] for line in status.splitlines() if line.startswith("PPid:")), 0))
    visible = sorted(int(name) for name in os.listdir("/proc") if name.isdigit())
    leaked = [p for p in visible if "AGL_TEST_SECRET" in read(f"/proc/{p}/environ")]
    _agl_probes.report("not-reproduced", json.dumps({"chain": chain, "visible": visible, "leaked": leaked}))
"""


def run_linter_process(sandbox: str, cwd: Path, body: str) -> tuple[int, dict]:
    """A real linter process with a secret in its environment (from its start, so /proc shows it)."""
    environment = {**os.environ, "AGL_TEST_SECRET": "hunter2-agl", "PYTHONPATH": str(REPO), SANDBOX_SWITCH: sandbox}
    proc = subprocess.run(
        [sys.executable, "-c", LINTER],
        input=textwrap.dedent(body),
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["verdict"] == "not-reproduced", out["evidence"]
    return out["pid"], json.loads(out["evidence"])


def test_the_linters_environment_and_working_directory_are_out_of_reach(sandbox, tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    (project / "precious.txt").write_text("keep me")
    # The secret is in the linter process's environment only (the old runner's harness read it from
    # /proc/<ppid>/environ, and deleted precious.txt through /proc/<ppid>/cwd).
    linter_pid, view = run_linter_process(sandbox, project, WALK_PROC)
    assert (project / "precious.txt").read_text() == "keep me"
    assert "hunter2-agl" not in json.dumps(view)
    assert view["leaked"] == []
    chain = {int(pid): entry for pid, entry in view["chain"].items()}
    assert all(entry["remove"] != "removed" for entry in chain.values())
    if sandbox == "namespaces":
        # Its own PID namespace: its parent is the namespace's init, nothing outside is visible.
        assert list(chain) == [1] and view["visible"] == [1, 2]
        assert chain[1]["environ"] == "PermissionError"
    else:
        # The launcher, then the linter: both non-dumpable, so their /proc entries are root's.
        assert linter_pid in chain
        assert chain[linter_pid] == {"environ": "PermissionError", "remove": "PermissionError"}
        assert next(iter(chain.values()))["environ"] == "PermissionError"


def test_network(sandbox, private_tmp):
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        result = run_body(f"""
            import socket
            try:
                socket.create_connection(("127.0.0.1", {port}), timeout=10).close()
                outcome = "connected"
            except OSError as exc:
                outcome = f"{{type(exc).__name__}}: {{exc}}"
            _agl_probes.report("not-reproduced", outcome)
        """)
    if sandbox == "namespaces":
        assert result.evidence == "ConnectionRefusedError: [Errno 111] Connection refused"  # its own loopback
    else:
        assert result.evidence == "connected"  # the process fallback does not cut the network (README)


def test_a_namespace_harness_has_loopback_and_nothing_else(monkeypatch, private_tmp):
    """Loopback is up (a one-process torch.distributed group binds 127.0.0.1), the only interface there is,
    and an address outside is unreachable."""
    monkeypatch.setenv(SANDBOX_SWITCH, "namespaces")
    result = run_body("""
        import json, socket
        with socket.socket() as server, socket.socket() as client:
            server.bind(("127.0.0.1", 0))
            server.listen(1)
            client.connect(server.getsockname())
            server.accept()[0].sendall(b"loopback")
            received = client.recv(8).decode()
        try:
            socket.create_connection(("192.0.2.1", 80), timeout=10).close()  # TEST-NET-1
            outside = "connected"
        except OSError as exc:
            outside = str(exc)
        _agl_probes.report("not-reproduced", json.dumps({
            "received": received, "interfaces": [name for _, name in socket.if_nameindex()], "outside": outside,
        }))
    """)
    assert json.loads(result.evidence) == {
        "received": "loopback",
        "interfaces": ["lo"],
        "outside": "[Errno 101] Network is unreachable",
    }


def test_namespace_harness_has_no_capability_and_keeps_its_proc(monkeypatch, private_tmp):
    monkeypatch.setenv(SANDBOX_SWITCH, "namespaces")
    result = run_body("""
        import ctypes, json, os
        status = open("/proc/self/status").read().splitlines()
        capabilities = {line.split(":")[0]: line.split()[1] for line in status if line.startswith("Cap")}
        libc = ctypes.CDLL(None, use_errno=True)
        unmounted = libc.umount2(b"/proc", 2)
        _agl_probes.report("not-reproduced", json.dumps({
            "capabilities": capabilities, "unmount": [unmounted, os.strerror(ctypes.get_errno())],
            "uid": os.getuid(), "gid": os.getgid(), "pid": os.getpid(),
        }))
    """)
    view = json.loads(result.evidence)
    assert set(view["capabilities"].values()) == {"0000000000000000"}, view["capabilities"]
    assert view["unmount"] == [-1, "Operation not permitted"]
    assert (view["uid"], view["gid"], view["pid"]) == (os.getuid(), os.getgid(), 2)


def test_a_sandbox_that_cannot_start_says_why(monkeypatch, private_tmp):
    # The launcher starts, the interpreter it is to run does not exist: the reason comes from the launcher.
    monkeypatch.setenv(SANDBOX_SWITCH, "process")
    result = run_harness("pass\n", RunLimits("/nonexistent/python", timeout=10))
    assert result.verdict == "inconclusive"
    assert result.evidence == "cannot start /nonexistent/python: No such file or directory"
    assert os.listdir(private_tmp) == []


@pytest.mark.parametrize("python", ["relative", "bare name"])
def test_python_relative_to_the_linters_directory_or_on_path(sandbox, private_tmp, tmp_path, monkeypatch, python):
    # The launcher runs in the harness's temp directory; --python means what it means where the linter
    # runs, and the interpreter still finds its virtual environment (torch).
    (tmp_path / "env").symlink_to(Path(sys.prefix), target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    if python == "bare name":
        monkeypatch.setenv("PATH", f"{tmp_path / 'env' / 'bin'}{os.pathsep}{os.environ['PATH']}")
    given = "env/bin/python" if python == "relative" else "python"
    body = PRELUDE + "import torch\n_agl_probes.report('not-reproduced', 'torch ' + torch.__version__)\n"
    result = run_harness(body, RunLimits(given, timeout=60))
    assert (result.verdict, result.evidence) == ("not-reproduced", f"torch {torch_version()}")


def torch_version() -> str:
    from importlib.metadata import version

    return version("torch")  # torch.__version__, without importing torch here


# --- the memory limit, as documented --------------------------------------------------------------


@pytest.mark.parametrize(
    "body, detail",
    [
        # torch's CPU allocator, caught by a recipe and reported as inconclusive
        (
            "import torch\n_agl_probes.run_forward(lambda x: torch.empty(8 << 30, dtype=torch.uint8), [('f(x)', lambda s: [1.0])])\n",
            "forward failed on every synthesized input; last error: RuntimeError: [enforce fail at",
        ),
        # torch's CPU allocator, uncaught
        ("import torch\ntorch.empty(8 << 30, dtype=torch.uint8)\n", "RuntimeError: [enforce fail at"),
        # Python's own allocation, uncaught
        ("block = bytearray(8 << 30)\n", "MemoryError"),
    ],
)
def test_memory_limit_reads_as_documented(private_tmp, body, detail):
    result = run_body(body, memory_mb=1024)
    assert result.verdict == "inconclusive"
    assert result.evidence.startswith(f"memory limit: the harness needed more than 1024 MB ({detail}"), result.evidence


def test_tritons_error_without_a_gpu_reads_as_needing_a_cuda_device(private_tmp):
    # Triton's driver lookup on a machine without a GPU (triton/runtime/driver.py), inside a forward.
    body = """
        def forward(x):
            raise RuntimeError("0 active drivers ([]). There should only be one.")
        _agl_probes.run_forward(forward, [("f(x)", lambda shape: [1.0])])
    """
    result = run_body(body)
    assert (result.verdict, result.evidence) == (
        "inconclusive",
        "needs a CUDA device (forward failed on every synthesized input; last error: RuntimeError: 0 active drivers "
        "([]). There should only be one.)",
    )


def test_the_smallest_limit_loads_torch_and_stops_what_exceeds_it(private_tmp):
    # 256 MB, the smallest --confirm-memory: libtorch's code is not data, so torch loads (it did not under
    # the address-space cap RLIMIT_AS); the error is torch's allocator refusing 512 MB after the import.
    result = run_body("import torch\ntorch.empty(512 << 20, dtype=torch.uint8).fill_(1)\n", memory_mb=256)
    assert result.verdict == "inconclusive"
    assert result.evidence.startswith(
        "memory limit: the harness needed more than 256 MB (RuntimeError: [enforce fail at"
    ), result.evidence


# --- the warm worker: each harness forked from one process that imported torch ------------------------

# The harness's pid, its supervisor's and the worker's (its grandparent): /proc/<pid>/status is readable
# even for a non-dumpable process.
LINEAGE = """
def parent_of(pid):
    with open(f"/proc/{pid}/status") as handle:
        return int(next(line.split()[1] for line in handle if line.startswith("PPid:")))
lineage = [os.getpid(), os.getppid(), parent_of(os.getppid())]
"""


def warm_body(body: str) -> str:
    return PRELUDE + "import json, os\n" + LINEAGE + textwrap.dedent(body)


def test_warm_harnesses_each_get_their_own_limits_directory_and_environment(sandbox, private_tmp, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "hunter2")
    body = warm_body(REPORT_SELF.replace("json.dumps({", 'json.dumps({"lineage": lineage, '))
    with warm_workers():
        first = session.run_harness(body, RunLimits(sys.executable, timeout=30, memory_mb=2048))
        second = session.run_harness(body, RunLimits(sys.executable, timeout=10, memory_mb=1024))
    views = [json.loads(result.evidence) for result in (first, second)]
    # Forked from the same worker, each by a supervisor of its own.
    assert views[0]["lineage"][2] == views[1]["lineage"][2]
    assert len({view["lineage"][0] for view in views} | {view["lineage"][1] for view in views}) == 4
    assert [view["limits"]["RLIMIT_DATA"] for view in views] == [[2048 << 20] * 2, [1024 << 20] * 2]
    assert [view["limits"]["RLIMIT_CPU"] for view in views] == [[35, 36], [15, 16]]
    for view in views:
        assert view["limits"]["RLIMIT_FSIZE"] == [OUTPUT_CAP_BYTES] * 2 and view["limits"]["RLIMIT_CORE"] == [0, 0]
        assert view["home"] == view["cwd"] == view["tmp"] == view["environ"]["HOME"] == view["environ"]["TMPDIR"]
        assert Path(view["cwd"]).name.startswith("autograd-lint-confirm-") and Path(view["cwd"]).parent == private_tmp
        assert "AWS_SECRET_ACCESS_KEY" not in view["environ"] and view["environ"]["CUDA_VISIBLE_DEVICES"] == ""
    assert views[0]["cwd"] != views[1]["cwd"]
    assert os.listdir(private_tmp) == []  # the harnesses' directories, and the worker's once the scope ended


@pytest.mark.parametrize(
    "body, limits, evidence",
    [
        (
            "import resource\n_, hard = resource.getrlimit(resource.RLIMIT_CPU)\n"
            "resource.setrlimit(resource.RLIMIT_CPU, (1, hard))\nwhile True:\n    pass\n",
            {"timeout": 60},
            "CPU time limit exceeded",
        ),
        ("block = bytearray(8 << 30)\n", {"memory_mb": 1024}, "memory limit: the harness needed more than 1024 MB"),
        (
            "import torch\ntorch.empty(512 << 20, dtype=torch.uint8).fill_(1)\n",
            {"memory_mb": 256},
            "memory limit: the harness needed more than 256 MB (RuntimeError: [enforce fail at",
        ),
        ("import sys\nsys.stdout.write('x' * (4 << 20))\nsys.stdout.flush()\n", {}, "output limit"),
        ("while True:\n    pass\n", {"timeout": 2}, "timeout: the harness ran longer than 2 s and was killed"),
    ],
    ids=["cpu", "memory", "memory-after-torch", "file-size", "timeout"],
)
def test_warm_harness_limits_apply_in_the_fork_and_the_next_harness_still_runs(
    sandbox, private_tmp, body, limits, evidence
):
    after = warm_body("_agl_probes.report('not-reproduced', json.dumps(lineage))\n")
    with warm_workers():
        before = json.loads(session.run_harness(after, RunLimits(sys.executable, timeout=30)).evidence)
        stopped = session.run_harness(body, RunLimits(sys.executable, **{"timeout": 30, **limits}))
        following = session.run_harness(after, RunLimits(sys.executable, timeout=30))
    assert stopped.verdict == "inconclusive" and stopped.evidence.startswith(evidence), stopped.evidence
    assert following.verdict == "not-reproduced", following.evidence
    assert json.loads(following.evidence)[2] == before[2]  # the same worker: the stopped harness was alone
    assert os.listdir(private_tmp) == []


SLEEPER = "import os, sys, time\nif os.fork() == 0:\n    os.setsid()\n    os.execv(sys.executable, [sys.executable, '-c', 'import time; time.sleep(300)', {marker!r}])\n"


def test_warm_harness_grandchildren_are_killed_when_it_ends_or_times_out(sandbox, private_tmp, tmp_path):
    marker = str(tmp_path / "sleeper-marker")
    reports = warm_body(SLEEPER.format(marker=marker) + "time.sleep(1)\n_agl_probes.report('not-reproduced', 'x')\n")
    hangs = warm_body(SLEEPER.format(marker=marker) + "time.sleep(300)\n")
    try:
        with warm_workers():
            ended = session.run_harness(reports, RunLimits(sys.executable, timeout=30))
            assert (ended.verdict, processes_mentioning(marker)) == ("not-reproduced", [])
            timed_out = session.run_harness(hangs, RunLimits(sys.executable, timeout=3))
            assert timed_out.evidence.startswith("timeout:") and processes_mentioning(marker) == []
    finally:
        kill_leftovers(tmp_path)


def test_warm_harness_cannot_reach_another_harness_secret_or_result_pipe(sandbox, private_tmp, tmp_path):
    # Two harnesses of one worker at once: the second tries to read the first's memory, environment and
    # descriptors (its secret pipe, its result pipe) and its supervisor's, through /proc.
    pid_file, done = tmp_path / "first.pid", tmp_path / "second.done"
    first = warm_body(f"""
        import pathlib, time
        pathlib.Path({str(pid_file) + ".part"!r}).write_text(str(os.getpid()))
        os.rename({str(pid_file) + ".part"!r}, {str(pid_file)!r})
        while not os.path.exists({str(done)!r}):
            time.sleep(0.01)
        _agl_probes.report("not-reproduced", "the first harness's own verdict")
    """)
    second = warm_body(f"""
        import time
        while not os.path.exists({str(pid_file)!r}):
            time.sleep(0.01)
        target = int(open({str(pid_file)!r}).read())
        reached = {{}}
        def attempt(name, how):
            try:
                how()
                reached[name] = "reached"
            except OSError as exc:
                reached[name] = type(exc).__name__
        for pid in (target, parent_of(target)):
            attempt(f"{{pid}}/mem", lambda: open(f"/proc/{{pid}}/mem", "rb").close())
            attempt(f"{{pid}}/environ", lambda: open(f"/proc/{{pid}}/environ", "rb").read())
            # Its descriptors (the secret's and the result's pipes among them), each opened for writing;
            # as root the listing works (the directory is root's), not the opening.
            try:
                descriptors = os.listdir(f"/proc/{{pid}}/fd")
            except OSError as exc:
                reached[f"{{pid}}/fd"], descriptors = type(exc).__name__, []
            for fd in descriptors:
                attempt(f"{{pid}}/fd/{{fd}}", lambda: os.open(f"/proc/{{pid}}/fd/{{fd}}", os.O_WRONLY))
        open({str(done)!r}, "w").close()
        _agl_probes.report("not-reproduced", json.dumps({{"same worker": lineage[2], "reached": reached}}))
    """)
    results = {}
    run_scripts([("first", first), ("second", second)], RunLimits(sys.executable, timeout=60), 2, results.__setitem__)
    assert (results["first"].verdict, results["first"].evidence) == (
        "not-reproduced",
        "the first harness's own verdict",
    )
    view = json.loads(results["second"].evidence)
    reached = view["reached"]
    assert set(reached.values()) == {"PermissionError"}, reached
    assert {name.split("/", 1)[1] for name in reached} >= {"mem", "environ"}
    assert len({name.split("/", 1)[0] for name in reached}) == 2  # the first harness and its supervisor
    assert len(reached) >= 6  # their descriptors, or the listing of them
    assert os.listdir(private_tmp) == []


def test_a_killed_linter_takes_its_warm_worker_and_harnesses_with_it(sandbox, tmp_path):
    temp_root = tmp_path / "tmp"
    temp_root.mkdir()
    marker = str(tmp_path / "sleeper-marker")
    linter_source = (
        f"import sys, tempfile\ntempfile.tempdir = {str(temp_root)!r}\n"
        "from autograd_lint.confirm.runner import RunLimits\n"
        "from autograd_lint.confirm.session import run_harness\n"
        "from autograd_lint.confirm.warm_worker import warm_workers\n"
        f"body = {SLEEPER.format(marker=marker) + 'time.sleep(300)' + chr(10)!r}\n"
        "with warm_workers():\n    run_harness(body, RunLimits(sys.executable, timeout=300))\n"
    )
    environment = {**os.environ, "PYTHONPATH": str(REPO), SANDBOX_SWITCH: sandbox}
    linter = subprocess.Popen([sys.executable, "-c", linter_source], env=environment)
    try:
        deadline = time.monotonic() + 120
        while not processes_mentioning(marker):
            assert linter.poll() is None and time.monotonic() < deadline, "the harness did not start its sleeper"
            time.sleep(0.1)
        assert processes_mentioning(str(temp_root))  # the worker names its directory in its arguments
        linter.kill()
        linter.wait()
        deadline = time.monotonic() + 30  # asynchronous: wait for the launcher's cleanup, not for a time
        while (processes_mentioning(str(temp_root)) or processes_mentioning(marker)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert processes_mentioning(str(temp_root)) == [] and processes_mentioning(marker) == []
    finally:
        if linter.poll() is None:
            linter.kill()
        kill_leftovers(tmp_path)


def test_a_worker_that_cannot_start_leaves_each_harness_its_own_launcher(monkeypatch, private_tmp):
    monkeypatch.setenv(SANDBOX_SWITCH, "process")
    with warm_workers():
        result = session.run_harness("pass\n", RunLimits("/nonexistent/python", timeout=10))
    assert (result.verdict, result.evidence) == (
        "inconclusive",
        "cannot start /nonexistent/python: No such file or directory",
    )
    assert os.listdir(private_tmp) == []


VERDICT_FIXTURES = ["agl002/buggy_bias_omitted.py", "agl002/buggy_branch_return.py", "motivating/case_c_arity.py"]


def test_verdicts_are_the_same_with_and_without_the_warm_worker(monkeypatch):
    diagnostics = [
        diagnostic
        for name in VERDICT_FIXTURES
        for diagnostic in lint_source((REPO / "fixtures" / name).read_text(), str(REPO / "fixtures" / name))
    ]
    forked = []
    real_run = WarmWorker.run
    monkeypatch.setattr(WarmWorker, "run", lambda self, *args: forked.append(args) or real_run(self, *args))
    limits = RunLimits(sys.executable, timeout=60)
    warm = confirm_diagnostics(diagnostics, limits, jobs=2)
    assert len(forked) == len(diagnostics) >= 3
    monkeypatch.setenv(WARM_WORKER_SWITCH, "0")
    cold = confirm_diagnostics(diagnostics, limits, jobs=2)
    assert len(forked) == len(diagnostics)  # none more: every harness ran under a launcher of its own
    assert {d: (r.verdict, r.evidence) for d, r in warm.items()} == {
        d: (r.verdict, r.evidence) for d, r in cold.items()
    }
    assert {r.verdict for r in warm.values()} == {"confirmed"}


def test_a_harness_that_kills_its_worker_ends_inconclusive_and_a_fresh_worker_serves_the_next(sandbox, private_tmp):
    limits = RunLimits(sys.executable, timeout=30)
    report = warm_body("_agl_probes.report('not-reproduced', 'served')\n")
    with warm_workers():
        first = worker_for(limits)
        killed = session.run_harness(
            warm_body("import signal, time\nos.kill(lineage[2], signal.SIGKILL)\ntime.sleep(60)\n"), limits
        )
        following = session.run_harness(report, limits)
        assert worker_for(limits) not in (None, first)
    assert (killed.verdict, killed.evidence) == (
        "inconclusive",
        "the harness's launcher or warm worker ended without a status",
    )
    assert (following.verdict, following.evidence) == ("not-reproduced", "served")
    assert os.listdir(private_tmp) == []


def deliver_interrupts() -> None:
    """In the linter's process before it starts: SIGINT handled as a terminal delivers it. A test run started in
    the background (`nohup pytest ... &`) hands its children SIGINT ignored, which Python then keeps ignoring."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
