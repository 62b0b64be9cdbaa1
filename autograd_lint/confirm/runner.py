"""Running one harness: under a launcher (launcher.py: namespaces, or a subreaper, whatever this machine
allows) in a fresh temp directory, with a wall timeout, rlimits on memory, CPU time and file size, a
scrubbed environment and capped output; everything it started is killed when it is done or out of time.

The verdict comes back on a pipe of its own, never from the harness's output: the harness is given the
pipe's descriptor and a per-run secret (read from another pipe, then closed, so that it is neither in
argv nor in the environment), and the only message accepted is one that carries the secret.
"""

from __future__ import annotations

import fcntl
import hmac
import json
import os
import secrets
import select
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ..core.diagnostic import VERDICTS
from .sandbox import (
    current_sandbox,
    first_json_line,
    launcher_command,
    linter_hidden,
    sandbox_description,  # noqa: F401 - the one line `--confirm` prints about its containment
)

OUTPUT_CAP_BYTES = 1 << 20  # what a harness may print; more is cut off by RLIMIT_FSIZE
EVIDENCE_CAP_CHARACTERS = 64 * 1024  # longer evidence (a huge exception message) is cut, with a note
RESULT_CAP_BYTES = 1 << 20  # what the result pipe may carry (the cut evidence, JSON-escaped, fits); the rest is dropped
# Variables the child keeps: what finding an interpreter and torch needs, nothing secret.
KEPT_ENVIRONMENT = (
    "PATH",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "LD_LIBRARY_PATH",
    "VIRTUAL_ENV",
    "PYTHONHASHSEED",
    "CUDA_VISIBLE_DEVICES",  # which GPUs --device cuda may use; with --device cpu the harness sees none
)
# The device harnesses build their tensors on (read by the bootstrap and runtime/probes.py), set only in
# the harness's environment.
DEVICE_VARIABLE = "AUTOGRAD_LINT_DEVICE"
# The ranks of the gloo group a harness starts where code asks for one (runtime/probes.py's harness_group).
WORLD_SIZE_VARIABLE = "AUTOGRAD_LINT_WORLD_SIZE"
STOP_GRACE_SECONDS = 5.0  # how long a launcher may take to kill what it started before it is killed itself
# The package harness scripts import (runtime/), copied into each harness's temp directory under a name of its
# own: the --python interpreter may lack autograd-lint, or have another version of it installed.
RUNTIME_SOURCE = Path(__file__).resolve().parent / "runtime"
RUNTIME_NAME = "autograd_lint_runtime"
RUNTIME_FOLDER = "runtime"  # beside harness.py; the bootstrap puts it first on sys.path


@dataclass(frozen=True)
class RunLimits:
    python: str
    timeout: float = 20.0
    memory_mb: int = 4096  # the data segment's limit, and with device "cuda" the GPU memory's too
    device: str = "cpu"
    world_size: int = 1  # of the process group a harness starts where code asks for one


@dataclass(frozen=True)
class RunResult:
    verdict: str
    evidence: str
    seconds: float


# The launchers running now, so that an interrupted run (Ctrl-C, SIGTERM) can stop them all; once
# cancelled, no new harness starts.
_live: set[subprocess.Popen] = set()
_live_lock = threading.Lock()
_cancelled = threading.Event()


def cancel_all() -> None:
    """Stop every running harness (its launcher kills everything it started), and start no new one
    until `allow_runs`."""
    with _live_lock:
        _cancelled.set()
        running = list(_live)
    for process in running:
        _signal(process, signal.SIGTERM)


def allow_runs() -> None:
    _cancelled.clear()


CANCELLED = RunResult("inconclusive", "cancelled: the run was interrupted", 0.0)


def cancelled() -> bool:
    return _cancelled.is_set()


@contextmanager
def stopped_when_cancelled(process: subprocess.Popen):
    """While inside, `cancel_all` sends `process` (a launcher) SIGTERM."""
    with _live_lock:
        _live.add(process)
    try:
        if _cancelled.is_set():  # cancelled while it was starting: cancel_all did not see it
            _signal(process, signal.SIGTERM)
        yield
    finally:
        with _live_lock:
            _live.discard(process)


class Forker(Protocol):
    """What runs a harness in a process forked from it (warm_worker.WarmWorker)."""

    def run(self, workdir: str, script: str, limits: RunLimits, started: float) -> RunResult | None:
        """The result of `script` run in `workdir`, or None if it could not take it (nothing of it ran)."""


def run_harness(script: str, limits: RunLimits, forker: Forker | None = None) -> RunResult:
    """Run one harness script in a temp directory of its own: forked by `forker` if there is one and it
    takes it, else under a launcher of its own."""
    started = time.monotonic()
    if _cancelled.is_set():
        return CANCELLED
    workdir = tempfile.mkdtemp(prefix="autograd-lint-confirm-")
    try:
        if forker is not None:
            result = forker.run(workdir, script, limits, started)
            if result is not None:
                return result  # else the worker could not take it (nothing ran): it runs as without one
        return _run_in(workdir, script, limits, started)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@dataclass
class RunPipes:
    """The descriptors of one run: the secret (harness reads it first), the result and the launcher's status."""

    secret_read: int
    result_read: int
    result_write: int
    status_read: int
    status_write: int

    @classmethod
    def open(cls, secret: str) -> RunPipes:
        secret_read, secret_write = os.pipe()
        os.write(secret_write, secret.encode())
        os.close(secret_write)
        return cls(secret_read, *os.pipe(), *os.pipe())

    def close_childs_ends(self) -> None:
        for name in ("secret_read", "result_write", "status_write"):
            if getattr(self, name) >= 0:
                os.close(getattr(self, name))
                setattr(self, name, -1)

    def close(self) -> None:
        self.close_childs_ends()
        os.close(self.result_read)
        os.close(self.status_read)


def install_runtime(folder: str) -> None:
    """Copy the runtime package into `folder` as RUNTIME_NAME (only its sources, so that the harness sees
    exactly the recipes of the linter that built its script)."""
    shutil.copytree(
        RUNTIME_SOURCE,
        os.path.join(folder, RUNTIME_NAME),
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
        dirs_exist_ok=True,
    )


def harness_environment(home: str, limits: RunLimits) -> dict[str, str]:
    """The scrubbed environment a harness (or the warm worker that forks it) starts with."""
    environment = {key: os.environ[key] for key in KEPT_ENVIRONMENT if key in os.environ}
    environment.update(HOME=home, TMPDIR=home, PYTHONDONTWRITEBYTECODE="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    environment[DEVICE_VARIABLE] = limits.device
    environment[WORLD_SIZE_VARIABLE] = str(limits.world_size)
    if limits.device == "cpu":
        # No GPU is visible: code that needs one fails the same way on every machine (and is reported as
        # needing a CUDA device), and no harness uses a GPU without the GPU memory cap.
        environment["CUDA_VISIBLE_DEVICES"] = ""
    return environment


def interpreter(limits: RunLimits) -> str:
    """--python as the launcher is to run it: the launcher runs in a temp directory, so a relative path is
    made absolute here (Python finds its virtual environment from argv[0])."""
    return os.path.abspath(limits.python) if os.sep in limits.python else limits.python


def write_harness(workdir: str, script: str) -> str:
    """The script and the runtime package in the harness's temp directory; the script's path."""
    script_path = os.path.join(workdir, "harness.py")
    with open(script_path, "w", encoding="utf-8") as handle:
        handle.write(script)
    install_runtime(os.path.join(workdir, RUNTIME_FOLDER))
    return script_path


def _run_in(workdir: str, script: str, limits: RunLimits, started: float) -> RunResult:
    script_path = write_harness(workdir, script)
    stdout_path, stderr_path = os.path.join(workdir, "stdout"), os.path.join(workdir, "stderr")
    environment = harness_environment(workdir, limits)
    secret = secrets.token_hex(16)
    pipes = RunPipes.open(secret)
    python = interpreter(limits)
    harness_argv = [
        python,
        "-I",
        "-c",
        _BOOTSTRAP,
        script_path,
        str(pipes.secret_read),
        str(pipes.result_write),
        *map(str, rlimits(limits)),
    ]
    config = {
        "mode": current_sandbox().mode,
        "python": python,
        "argv": harness_argv,
        "status_fd": pipes.status_write,
        "harness_fds": [pipes.secret_read, pipes.result_write],
        "linter_pid": os.getpid(),
    }
    try:
        with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err, linter_hidden():
            try:
                process = subprocess.Popen(
                    launcher_command(config),
                    cwd=workdir,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    env=environment,
                    pass_fds=(pipes.secret_read, pipes.result_write, pipes.status_write),
                    start_new_session=True,  # its own process group: the last resort kills that group
                )
            except OSError as error:
                return RunResult("inconclusive", f"cannot start the harness's launcher: {error.strerror or error}", 0.0)
            pipes.close_childs_ends()  # so that the pipes' end of file means the launcher and harness are gone
            try:
                with stopped_when_cancelled(process):
                    collected = collect(
                        pipes, time.monotonic() + limits.timeout, lambda: _signal(process, signal.SIGTERM)
                    )
            finally:
                # The last resort, and the only cleanup in `group` mode: the launcher's process group. The
                # launcher is not reaped yet, so its process group id cannot have been reused.
                try:
                    os.killpg(process.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
                process.wait()
            result = drain_result(pipes, collected.result)
        if _cancelled.is_set():
            return CANCELLED
    finally:
        pipes.close()
    return outcome(result, collected.status, collected.timed_out, secret, stderr_path, limits, started)


def outcome(
    result: bytes, status: dict, timed_out: bool, secret: str, stderr_path: str, limits: RunLimits, started: float
) -> RunResult:
    """The run's result: the verdict that came with the secret, else why none came."""
    seconds = round(time.monotonic() - started, 2)
    reported = _verdict(result, secret)
    if reported is not None:
        verdict, evidence = reported
        if verdict == "inconclusive" and _is_memory_failure(evidence):
            evidence = _memory_limit(limits, evidence)
        return RunResult(verdict, evidence, seconds)
    if timed_out:
        timeout = f"timeout: the harness ran longer than {limits.timeout:g} s and was killed"
        return RunResult("inconclusive", timeout, seconds)
    return RunResult("inconclusive", _failure_reason(status, _tail(stderr_path), limits), seconds)


@dataclass
class Collected:
    result: bytearray  # what came on the result pipe so far
    status: dict  # the launcher's (or the warm worker's supervisor's) status line
    timed_out: bool
    ended: bool  # the status pipe was closed: whoever ran the harness is done with it


def collect(pipes: RunPipes, deadline: float, stop: Callable[[], None]) -> Collected:
    """What came from the run, once the status pipe is closed or STOP_GRACE_SECONDS after `stop` was called
    (at the deadline, or when cancelled) if it is not: the caller then kills what is left."""
    received = {pipes.result_read: bytearray(), pipes.status_read: bytearray()}
    still_open = set(received)
    poller = select.poll()  # not select.select: descriptors past 1024 in a large parallel run
    for fd in received:
        poller.register(fd, select.POLLIN)
    timed_out = False
    stop_by = None  # once told to stop: when it is killed if it has not
    while pipes.status_read in still_open:
        now = time.monotonic()
        if stop_by is None and (now >= deadline or _cancelled.is_set()):
            timed_out = now >= deadline
            stop()
            stop_by = now + STOP_GRACE_SECONDS
        if stop_by is not None and now >= stop_by:
            break
        # A short wait at most, so that cancel_all is noticed even if a launcher does not react to it.
        wait = min((stop_by or deadline) - now, 0.25)
        for fd, _ in poller.poll(max(wait, 0) * 1000):
            if not _read_into(fd, received[fd], still_open):
                poller.unregister(fd)
    status = first_json_line(bytes(received[pipes.status_read]))
    return Collected(received[pipes.result_read], status, timed_out, pipes.status_read not in still_open)


def drain_result(pipes: RunPipes, result: bytearray) -> bytes:
    """`result` and what else the harness wrote before it died (a leftover writer must not block us)."""
    fcntl.fcntl(pipes.result_read, fcntl.F_SETFL, fcntl.fcntl(pipes.result_read, fcntl.F_GETFL) | os.O_NONBLOCK)
    still_open = {pipes.result_read}
    while _read_into(pipes.result_read, result, still_open):
        pass
    return bytes(result)


def _read_into(fd: int, buffer: bytearray, still_open: set[int]) -> bool:
    """Read what is there into `buffer` (up to the cap); False at end of file or if nothing is there."""
    try:
        chunk = os.read(fd, 65536)
    except BlockingIOError:
        return False
    if not chunk:
        still_open.discard(fd)
        return False
    buffer += chunk[: max(0, RESULT_CAP_BYTES - len(buffer))]
    return True


def _signal(process: subprocess.Popen, signum: int) -> None:
    try:
        process.send_signal(signum)
    except (ProcessLookupError, PermissionError):
        pass


def _verdict(data: bytes, secret: str) -> tuple[str, str] | None:
    """The harness's report: the first message on the result pipe that carries this run's secret."""
    for line in data.splitlines():
        try:
            message = json.loads(line)
        except ValueError:
            continue
        if (
            isinstance(message, dict)
            and hmac.compare_digest(str(message.get("secret", "")).encode(), secret.encode())
            and message.get("verdict") in VERDICTS
            and isinstance(message.get("evidence"), str)
        ):
            return message["verdict"], message["evidence"]
    return None


# The child limits itself before any harness code runs (a preexec_fn is unsafe with the parent's worker
# threads), reads the run's secret and closes that pipe, and hands the script (as `_agl_channel`, which it
# passes on to runtime/probes.py's `start`) a function that sends a verdict with the secret on the result
# pipe, which exec'd programs do not inherit. The runtime package the runner copied beside the script comes
# first on sys.path.
# Memory is capped by RLIMIT_DATA, not RLIMIT_AS: CUDA reserves far more address space than it uses and
# cannot initialize under an address-space cap of a few GB, while the data limit counts what the process
# can actually fill (the heap and, since Linux 4.7, private writable mappings: malloc's large mmap'd
# chunks, torch's allocations, thread stacks), not the GPU driver's reservations or shared libraries' code.
# With --device cuda, torch's caching allocator is capped at the same size on the GPU (as a fraction of the
# first visible device's memory, since that is what set_per_process_memory_fraction takes); a GPU that
# cannot be initialized is a verdict of its own, before any code under test runs.
# The CPU limit's soft value sends SIGXCPU (reported as such), its hard one a second later SIGKILL.
# `-I` keeps the user's site-packages out of sys.path and PYTHON* out. A harness script that ends
# without a verdict is a recipe's bug: exit status 70 and a line on stderr say so.
HARNESS_MAIN = """
import os, resource, runpy, sys
EVIDENCE_CAP = %d
def run_harness_here(path, secret_fd, result_fd, memory, cpu, size):
    secret = os.read(secret_fd, 64).decode()
    os.close(secret_fd)
    os.set_inheritable(result_fd, False)
    for limit, soft, hard in ((resource.RLIMIT_DATA, memory, memory), (resource.RLIMIT_CPU, cpu, cpu + 1),
                              (resource.RLIMIT_FSIZE, size, size), (resource.RLIMIT_CORE, 0, 0)):
        resource.setrlimit(limit, (soft, hard))
    def send(verdict, evidence, _fd=result_fd, _secret=secret):
        import json
        evidence = str(evidence)
        if len(evidence) > EVIDENCE_CAP:
            evidence = evidence[:EVIDENCE_CAP] + f" ... ({len(evidence) - EVIDENCE_CAP} more characters cut)"
        data = memoryview((json.dumps({"secret": _secret, "verdict": verdict, "evidence": evidence}) + "\\n").encode())
        while data:
            data = data[os.write(_fd, data):]
        os.close(_fd)
    del secret, secret_fd, result_fd
    if os.environ.get(%r) == "cuda":
        try:
            import torch
            torch.cuda.set_per_process_memory_fraction(min(1.0, memory / torch.cuda.get_device_properties(0).total_memory))
        except ImportError:
            pass  # the harness itself reports a missing torch
        except Exception as exc:
            send("inconclusive", f"%s({type(exc).__name__}: {exc})")
            os._exit(0)
    sys.argv = [path]
    sys.path.insert(0, os.path.join(os.path.dirname(path), %r))
    runpy.run_path(path, init_globals={"_agl_channel": send}, run_name="__autograd_lint_harness__")
    sys.stderr.write("autograd-lint: the harness script ended without a verdict\\n")
    sys.stderr.flush()
    os._exit(70)
"""
CUDA_CANNOT_INITIALIZE = "needs a CUDA device: CUDA cannot be initialized "
HARNESS_MAIN = HARNESS_MAIN % (EVIDENCE_CAP_CHARACTERS, DEVICE_VARIABLE, CUDA_CANNOT_INITIALIZE, RUNTIME_FOLDER)
_BOOTSTRAP = HARNESS_MAIN + "run_harness_here(sys.argv[1], *map(int, sys.argv[2:7]))\n"
_NO_VERDICT_EXIT = 70
_PIPE_GONE_EXIT = 71  # runtime/probes.py's report, when sending the verdict fails


def rlimits(limits: RunLimits) -> tuple[int, int, int]:
    return limits.memory_mb * 1024 * 1024, int(limits.timeout) + 5, OUTPUT_CAP_BYTES


def _tail(path: str, limit: int = 64 * 1024) -> str:
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - limit))
            return handle.read().decode("utf-8", "replace")
    except OSError:
        return ""


# What Python, torch's CPU allocator, the dynamic loader and OpenMP say when RLIMIT_DATA refuses memory.
_MEMORY_FAILURES = (
    "MemoryError",
    "DefaultCPUAllocator: can't allocate memory",
    "std::bad_alloc",
    "Cannot allocate memory",  # ENOMEM from mmap, fork or a thread stack (torch adds "Error code 12")
    "failed to map segment from shared object",  # a library too large to load (import torch)
    "can't start new thread",
    "unable to allocate necessary resources",  # OpenMP's worker threads
)


def _is_memory_failure(text: str) -> bool:
    return any(marker in text for marker in _MEMORY_FAILURES)


def _memory_limit(limits: RunLimits, detail: str) -> str:
    return f"memory limit: the harness needed more than {limits.memory_mb} MB ({detail.strip()})"


def _failure_reason(status: dict, stderr: str, limits: RunLimits) -> str:
    """Why a harness gave no verdict, from the launcher's status and the harness's stderr."""
    if "cannot_start" in status:
        return f"cannot start {limits.python}: {status['cannot_start']}"
    if "error" in status:
        return f"the sandbox could not start the harness: {status['error']}"
    last = next((line.strip() for line in reversed(stderr.splitlines()) if line.strip()), "")
    if "No module named 'torch'" in stderr:
        return f"no torch in {limits.python} (install autograd-lint[confirm] there, or pass --python)"
    if "File too large" in stderr:  # Python ignores SIGXFSZ: the write past RLIMIT_FSIZE fails instead
        return f"output limit: the harness printed more than {OUTPUT_CAP_BYTES // 1024} KiB"
    if _is_memory_failure(stderr):
        return _memory_limit(limits, last)
    if "signal" in status:
        number = status["signal"]
        name = signal.Signals(number).name if number in signal.Signals._value2member_map_ else str(number)
        if name == "SIGXFSZ":
            return f"output limit: the harness printed more than {OUTPUT_CAP_BYTES // 1024} KiB"
        if name == "SIGXCPU":
            return "CPU time limit exceeded"
        return f"the code under test was killed by {name} before a verdict" + (f" ({last})" if last else "")
    code = status.get("exit")
    if code is None:
        return "the harness's launcher or warm worker ended without a status"
    if code == _NO_VERDICT_EXIT and "the harness script ended without a verdict" in last:
        return "internal error: the harness script ended without a verdict"
    if code == _PIPE_GONE_EXIT and "the result pipe is gone" in last:
        return "the code under test closed the harness's result pipe before the verdict"
    if "ImportError" in last or "ModuleNotFoundError" in last:
        return f"import error: {last}"
    if "Traceback (most recent call last)" in stderr and last:
        return f"the harness failed before a verdict: {last}"
    return f"the code under test exited with status {code} before a verdict"
