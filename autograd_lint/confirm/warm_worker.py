"""The warm worker: torch imported once, each harness in a process forked from it.

A worker serves one (interpreter, device, world size, sandbox mode) for as long as a `warm_workers()` scope
lasts (a confirm or audit run). It is started exactly as a harness is, under a launcher (launcher.py: its own
namespaces, or a subreaper), with the scrubbed environment, so the launcher's guarantees hold for it and for
everything it forks: when the worker ends, the linter dies or is interrupted, everything is killed.

For each harness the linter makes the temp directory, the script and three pipes as for a run of its own
(the secret, the result and the status), and hands the worker the pipes' descriptors over a Unix socket
(SCM_RIGHTS) with the directory and the limits. The worker forks a supervisor at once and closes its copies,
so it never holds one run's descriptors while it forks another's, and never reads a secret or a verdict.
The supervisor is a child subreaper: it forks the harness, waits for it, kills every descendant left (a
daemonized grandchild too), then writes the harness's exit status on the status pipe, as a launcher does.
The harness, in the fork, enters its temp directory (working directory, HOME, TMPDIR, stdout and stderr
files), then runs the same code as a harness of its own launcher (runner.HARNESS_MAIN): its rlimits set
after the fork (RLIMIT_CPU counts from zero in a new process), its secret read from its pipe. Every
process the worker forks is non-dumpable (it stays so without an exec), so one harness cannot open another's
/proc entries (memory, descriptors) or ptrace it. The worker imports torch but never initializes CUDA: a
fork of a process that did could not use it, while a fork of one that did not initializes it itself.

The wall-clock timeout stays the linter's: it asks the worker to stop that harness (SIGTERM to its
supervisor, which kills its tree), and kills the whole worker if the status pipe is not closed within the
grace period. If the worker cannot start (no torch, a crash), harnesses run each under a launcher of its own
for the rest of the scope, which also says why; AUTOGRAD_LINT_WARM_WORKER=0 turns the worker off.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from itertools import count

from .runner import (
    CANCELLED,
    HARNESS_MAIN,
    STOP_GRACE_SECONDS,
    RunLimits,
    RunPipes,
    RunResult,
    cancelled,
    collect,
    drain_result,
    harness_environment,
    interpreter,
    outcome,
    rlimits,
    stopped_when_cancelled,
    write_harness,
)
from .sandbox import LAUNCHER, current_sandbox, first_json_line, launcher_command, linter_hidden

WARM_WORKER_SWITCH = "AUTOGRAD_LINT_WARM_WORKER"  # "0": every harness under a launcher of its own
START_TIMEOUT_SECONDS = 60.0  # a cold `import torch` on a loaded machine, as for the preflight
SEND_TIMEOUT_SECONDS = 5.0

# Run as `python -I -c WORKER_MAIN control_fd launcher.py workdir` (workdir only names the worker in `ps`).
WORKER_MAIN = (
    HARNESS_MAIN
    + """
import atexit, importlib.util, json, select, signal, socket, traceback
control = socket.socket(fileno=int(sys.argv[1]))
spec = importlib.util.spec_from_file_location("_agl_launcher", sys.argv[2])
launcher = importlib.util.module_from_spec(spec)
spec.loader.exec_module(launcher)
launcher._prctl("dumpable", launcher.PR_SET_DUMPABLE, 0)
launcher._prctl("child subreaper", launcher.PR_SET_CHILD_SUBREAPER, 1)
signal.signal(signal.SIGTERM, launcher._terminate)
try:
    import torch
except BaseException as exc:
    control.send(json.dumps({"error": f"{type(exc).__name__}: {exc}"}).encode())
    os._exit(1)
control.send(json.dumps({"ready": str(torch.__version__)}).encode())


def harness(workdir, secret_fd, result_fd, limits):
    "The forked harness: as one of its own launcher's, in its temp directory. Never returns."
    code = 1
    try:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.chdir(workdir)
        os.environ["HOME"] = os.environ["TMPDIR"] = workdir
        if "tempfile" in sys.modules:
            sys.modules["tempfile"].tempdir = None  # found again, from TMPDIR
        for fd, name in ((1, "stdout"), (2, "stderr")):
            opened = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.dup2(opened, fd)
            os.close(opened)
        run_harness_here(os.path.join(workdir, "harness.py"), secret_fd, result_fd, *limits)
    except SystemExit as exit:  # as the interpreter ends on it
        if exit.code is None or isinstance(exit.code, int):
            code = exit.code or 0
        else:
            sys.stderr.write(f"{exit.code}\\n")
    except BaseException:
        traceback.print_exc()
    try:
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code)


def supervise(request, secret_fd, result_fd, status_fd):
    "The supervisor: the harness's status once its every descendant is gone. Never returns."
    try:
        status = None
        try:
            control.close()
            launcher._prctl("child subreaper", launcher.PR_SET_CHILD_SUBREAPER, 1)
            pid = os.fork()
            if pid == 0:
                os.close(status_fd)
                harness(request["workdir"], secret_fd, result_fd, request["limits"])
            os.close(secret_fd)
            os.close(result_fd)
            status = launcher._status_of(launcher._wait_for(pid))
        except launcher.Terminated:  # the linter's timeout
            pass
        launcher._kill_descendants()
        if status is not None:
            launcher._report(status_fd, **status)
    finally:
        os._exit(0)


supervisors = {}
poller = select.poll()
poller.register(control, select.POLLIN)
while True:
    ready = poller.poll(1000)
    while True:  # reap ended supervisors (and orphans of one that was killed)
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            break
        supervisors = {run: p for run, p in supervisors.items() if p != pid}
    if not ready:
        continue
    message, fds, _, _ = socket.recv_fds(control, 65536, 3)
    if not message:
        os._exit(0)  # the linter closed its end: the launcher kills whatever is left
    request = json.loads(message)
    if "kill" in request:
        if request["kill"] in supervisors:
            os.kill(supervisors[request["kill"]], signal.SIGTERM)
        continue
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        supervise(request, *fds)
    supervisors[request["run"]] = pid
    for fd in fds:
        os.close(fd)
"""
)


class WorkerUnavailable(Exception):
    """The worker could not start; the message says why."""


class WarmWorker:
    """The linter's side of one worker: start it, run harnesses in it (from any thread), stop it."""

    def __init__(self, limits: RunLimits):
        self.workdir = tempfile.mkdtemp(prefix="autograd-lint-worker-")
        self._lock = threading.Lock()  # one request on the socket at a time
        self._runs = count()
        self.broken = False
        control, worker_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        status_read, status_write = os.pipe()
        python = interpreter(limits)
        argv = [python, "-I", "-c", WORKER_MAIN, str(worker_end.fileno()), str(LAUNCHER), self.workdir]
        config = {
            "mode": current_sandbox().mode,
            "python": python,
            "argv": argv,
            "status_fd": status_write,
            "harness_fds": [worker_end.fileno()],
            "linter_pid": os.getpid(),
        }
        self._control = control
        self._status_read = status_read
        self._held = ExitStack()
        try:
            self._held.enter_context(linter_hidden())  # for as long as the worker lives
            with (
                open(os.path.join(self.workdir, "stdout"), "wb") as out,
                open(os.path.join(self.workdir, "stderr"), "wb") as err,
            ):
                self.process = subprocess.Popen(
                    launcher_command(config),
                    cwd=self.workdir,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    env=harness_environment(self.workdir, limits),
                    pass_fds=(worker_end.fileno(), status_write),
                    start_new_session=True,
                )
        except OSError as error:
            self._release()
            raise WorkerUnavailable(f"cannot start the launcher: {error.strerror or error}") from None
        finally:
            worker_end.close()
            os.close(status_write)
        self._held.enter_context(stopped_when_cancelled(self.process))
        try:
            self.torch_version = self._wait_until_ready()
        except WorkerUnavailable:
            self.close()
            raise

    def _wait_until_ready(self) -> str:
        """torch's version, once the worker imported it; WorkerUnavailable if it cannot (then each harness
        runs under a launcher of its own, which reports why in its verdict)."""
        self._control.settimeout(START_TIMEOUT_SECONDS)
        try:
            answer = first_json_line(self._control.recv(65536))
        except OSError as error:  # a timeout too
            answer = {"error": str(error) or type(error).__name__}
        self._control.settimeout(SEND_TIMEOUT_SECONDS)
        if "ready" not in answer:
            raise WorkerUnavailable(str(answer.get("error", "the worker ended before importing torch")))
        return str(answer["ready"])

    def alive(self) -> bool:
        return not self.broken and self.process.poll() is None

    def run(self, workdir: str, script: str, limits: RunLimits, started: float) -> RunResult | None:
        """The harness's result, or None if the worker could not take it (nothing of it ran)."""
        write_harness(workdir, script)
        secret = secrets.token_hex(16)
        pipes = RunPipes.open(secret)
        run = next(self._runs)
        request = {"run": run, "workdir": workdir, "limits": list(rlimits(limits))}
        try:
            try:
                with self._lock:
                    socket.send_fds(
                        self._control,
                        [json.dumps(request).encode()],
                        [pipes.secret_read, pipes.result_write, pipes.status_write],
                    )
            except OSError:
                self.broken = True
                return None
            pipes.close_childs_ends()  # the status pipe's end of file: the supervisor (or the worker) is gone
            collected = collect(pipes, time.monotonic() + limits.timeout, lambda: self._stop(run))
            if not collected.ended:
                self.kill()  # the worker did not stop the harness within the grace period
            result = drain_result(pipes, collected.result)
        finally:
            pipes.close()
        if cancelled():
            return CANCELLED
        stderr_path = os.path.join(workdir, "stderr")
        return outcome(result, collected.status, collected.timed_out, secret, stderr_path, limits, started)

    def _stop(self, run: int) -> None:
        try:
            with self._lock:
                self._control.send(json.dumps({"kill": run}).encode())
        except OSError:
            self.kill()

    def kill(self) -> None:
        """Kill the worker's launcher, which kills everything in the worker's sandbox."""
        self.broken = True
        try:
            self.process.send_signal(signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass

    def close(self) -> None:
        """Stop the worker (its launcher kills whatever is left) and remove its directory."""
        self.broken = True
        self._control.close()  # the worker's end of file: it exits, and the launcher cleans up
        try:
            self.process.wait(STOP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            self.kill()
            try:
                self.process.wait(STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                pass
        try:  # the last resort, as for a harness's launcher: its process group
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.process.wait()
        self._release()

    def _release(self) -> None:
        self._held.close()
        os.close(self._status_read)
        if self._control.fileno() >= 0:
            self._control.close()
        shutil.rmtree(self.workdir, ignore_errors=True)


# --- the workers of a run --------------------------------------------------------------------------

_scope_lock = threading.Lock()
_scope_depth = 0
_workers: dict[tuple[str, str, int, str], WarmWorker | None] = {}  # None: it cannot start, run without one
_starting: dict[tuple[str, str, int, str], threading.Lock] = {}


def warm_enabled() -> bool:
    return os.environ.get(WARM_WORKER_SWITCH, "1").strip() != "0"


@contextmanager
def warm_workers() -> Iterator[None]:
    """Harnesses run inside use warm workers (started on first use); they are stopped when the outermost
    scope ends."""
    global _scope_depth
    with _scope_lock:
        _scope_depth += 1
    try:
        yield
    finally:
        with _scope_lock:
            _scope_depth -= 1
            ending = list(_workers.values()) if _scope_depth == 0 else []
            if _scope_depth == 0:
                _workers.clear()
        for worker in ending:
            if worker is not None:
                worker.close()


def worker_for(limits: RunLimits) -> WarmWorker | None:
    """The warm worker for these limits, started if need be (a dead one is replaced); None outside a scope,
    when turned off, or when it cannot start."""
    if not warm_enabled():
        return None
    key = (limits.python, limits.device, limits.world_size, current_sandbox().mode)
    with _scope_lock:
        if _scope_depth == 0:
            return None
        starting = _starting.setdefault(key, threading.Lock())
    with starting:  # one start per key, the other threads wait for it
        with _scope_lock:
            worker = _workers.get(key, False)
        if worker is None:
            return None
        if isinstance(worker, WarmWorker):
            if worker.alive():
                return worker
            worker.close()
        try:
            fresh: WarmWorker | None = WarmWorker(limits)
        except WorkerUnavailable:
            fresh = None
        with _scope_lock:
            if _scope_depth == 0:  # the scope ended while it started
                if fresh is not None:
                    fresh.close()
                return None
            _workers[key] = fresh
        return fresh
