"""Running one harness: a child process in a fresh temp directory, with a wall timeout, rlimits on
memory, CPU time and file size, a scrubbed environment, capped output, and its whole process group
killed when it is done or out of time."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass

RESULT_PREFIX = "AGL_CONFIRM "
OUTPUT_CAP_BYTES = 1 << 20  # what a harness may print; more is cut off by RLIMIT_FSIZE
# Variables the child keeps: what finding an interpreter and torch needs, nothing secret.
KEPT_ENVIRONMENT = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "LD_LIBRARY_PATH", "VIRTUAL_ENV", "PYTHONHASHSEED")


@dataclass(frozen=True)
class RunLimits:
    python: str
    timeout: float = 20.0
    memory_mb: int = 4096


@dataclass(frozen=True)
class RunResult:
    verdict: str
    evidence: str
    seconds: float


# The harness processes running now, so that an interrupted run (Ctrl-C, SIGTERM) can kill them all;
# once cancelled, no new harness starts.
_live: set[subprocess.Popen] = set()
_live_lock = threading.Lock()
_cancelled = threading.Event()


def cancel_all() -> None:
    """Kill every running harness's process group, and start no new one until `allow_runs`."""
    with _live_lock:
        _cancelled.set()
        running = list(_live)
    for process in running:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def allow_runs() -> None:
    _cancelled.clear()


CANCELLED = RunResult("inconclusive", "cancelled: the run was interrupted", 0.0)


def run_harness(script: str, limits: RunLimits) -> RunResult:
    started = time.monotonic()
    if _cancelled.is_set():
        return CANCELLED
    workdir = tempfile.mkdtemp(prefix="autograd-lint-confirm-")
    try:
        return _run_in(workdir, script, limits, started)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _run_in(workdir: str, script: str, limits: RunLimits, started: float) -> RunResult:
    script_path = os.path.join(workdir, "harness.py")
    with open(script_path, "w", encoding="utf-8") as handle:
        handle.write(script)
    stdout_path, stderr_path = os.path.join(workdir, "stdout"), os.path.join(workdir, "stderr")
    environment = {key: os.environ[key] for key in KEPT_ENVIRONMENT if key in os.environ}
    environment.update(HOME=workdir, TMPDIR=workdir, PYTHONDONTWRITEBYTECODE="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
        try:
            process = subprocess.Popen(
                [limits.python, "-I", "-c", _BOOTSTRAP, script_path, *map(str, _rlimits(limits))],
                cwd=workdir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env=environment,
                start_new_session=True,  # its own process group, so everything it starts can be killed
            )
        except OSError as error:
            return RunResult("inconclusive", f"cannot start {limits.python}: {error.strerror or error}", 0.0)
        with _live_lock:
            _live.add(process)
        timed_out = False
        try:
            if _cancelled.is_set():  # cancelled while it was starting: cancel_all did not see it
                return CANCELLED
            process.wait(timeout=limits.timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:
            _kill_group(process)
            with _live_lock:
                _live.discard(process)
        if _cancelled.is_set():
            return CANCELLED
    seconds = round(time.monotonic() - started, 2)
    stdout = _tail(stdout_path)
    stderr = _tail(stderr_path)
    if timed_out:
        return RunResult("inconclusive", f"timeout: the harness ran longer than {limits.timeout:g} s and was killed", seconds)
    result = _parse_result(stdout)
    if result is not None:
        return RunResult(result["verdict"], result["evidence"], seconds)
    return RunResult("inconclusive", _failure_reason(process.returncode, stderr, limits), seconds)


# The CPU limit's soft value sends SIGXCPU (reported as such), its hard one a second later SIGKILL.
# The child limits itself before any harness code runs (a preexec_fn is unsafe with the
# parent's worker threads). `-I` keeps the user's site-packages out of sys.path and PYTHON* out.
_BOOTSTRAP = """
import resource, runpy, sys
path, memory, cpu, size = sys.argv[1], *map(int, sys.argv[2:5])
for limit, soft, hard in ((resource.RLIMIT_AS, memory, memory), (resource.RLIMIT_CPU, cpu, cpu + 1),
                          (resource.RLIMIT_FSIZE, size, size), (resource.RLIMIT_CORE, 0, 0)):
    resource.setrlimit(limit, (soft, hard))
sys.argv = [path]
runpy.run_path(path, run_name="__autograd_lint_harness__")
"""


def _rlimits(limits: RunLimits) -> tuple[int, int, int]:
    return limits.memory_mb * 1024 * 1024, int(limits.timeout) + 5, OUTPUT_CAP_BYTES


def _kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass


def _tail(path: str, limit: int = 64 * 1024) -> str:
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - limit))
            return handle.read().decode("utf-8", "replace")
    except OSError:
        return ""


def _parse_result(stdout: str) -> dict | None:
    for line in reversed(stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            try:
                data = json.loads(line[len(RESULT_PREFIX):])
            except json.JSONDecodeError:
                return None
            if data.get("verdict") in ("confirmed", "not-reproduced", "inconclusive"):
                return data
    return None


def _failure_reason(returncode: int | None, stderr: str, limits: RunLimits) -> str:
    last = next((line.strip() for line in reversed(stderr.splitlines()) if line.strip()), "")
    if "No module named 'torch'" in stderr:
        return f"no torch in {limits.python} (install autograd-lint[confirm] there, or pass --python)"
    if "File too large" in stderr:  # Python ignores SIGXFSZ: the write past RLIMIT_FSIZE fails instead
        return f"output limit: the harness printed more than {OUTPUT_CAP_BYTES // 1024} KiB"
    if "MemoryError" in stderr or "std::bad_alloc" in stderr or "DefaultCPUAllocator: can't allocate memory" in stderr:
        return f"memory limit: the harness needed more than {limits.memory_mb} MB"
    if returncode is not None and returncode < 0:
        name = signal.Signals(-returncode).name if -returncode in signal.Signals._value2member_map_ else str(-returncode)
        if name == "SIGXFSZ":
            return f"output limit: the harness printed more than {OUTPUT_CAP_BYTES // 1024} KiB"
        if name == "SIGXCPU":
            return "CPU time limit exceeded"
        return f"the harness was killed by {name}" + (f" ({last})" if last else "")
    if "ImportError" in last or "ModuleNotFoundError" in last:
        return f"import error: {last}"
    if last:
        return f"the harness failed before a verdict: {last}"
    return f"the harness exited with status {returncode} without a verdict"
