"""Which containment a harness runs under (see launcher.py), decided once per run, and hiding the linter
from its harnesses while they run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

LAUNCHER = Path(__file__).with_name("launcher.py")
# A testing and debugging switch: `process` forces the fallback (so that CI exercises it), `namespaces`
# forbids it (every harness is inconclusive with the reason if namespaces cannot be set up), `auto`
# (or unset) probes.
SANDBOX_SWITCH = "AUTOGRAD_LINT_SANDBOX"
NAMESPACES = "namespaces (user, pid, mount, net)"
_IS_LINUX = sys.platform.startswith("linux")


@dataclass(frozen=True)
class Sandbox:
    mode: str  # the launcher's mode: namespaces, subreaper or group
    description: str


def launcher_command(config: dict) -> list[str]:
    # The linter's own interpreter (the harness's may be any, but this one is known to be 3.10+);
    # -I -S: no site, no user site, no PYTHON* variables, not the script's directory on sys.path.
    return [sys.executable, "-I", "-S", str(LAUNCHER), json.dumps(config)]


def current_sandbox() -> Sandbox:
    switch = os.environ.get(SANDBOX_SWITCH, "auto").strip().lower()
    if switch == "process":
        return _process_sandbox(f"turned off by {SANDBOX_SWITCH}=process")
    if switch == "namespaces":
        return Sandbox("namespaces", NAMESPACES)
    return _probed_sandbox()


def sandbox_description() -> str:
    """One line for the user: the containment `--confirm` runs harnesses under on this machine."""
    return current_sandbox().description


_probe_lock = threading.Lock()
_probed: Sandbox | None = None


def _probed_sandbox() -> Sandbox:
    global _probed
    with _probe_lock:
        if _probed is None:
            problem = _namespace_problem()
            _probed = Sandbox("namespaces", NAMESPACES) if problem is None else _process_sandbox(problem)
        return _probed


def _process_sandbox(why_not_namespaces: str) -> Sandbox:
    if _IS_LINUX:
        return Sandbox("subreaper", f"process (subreaper; no namespaces: {why_not_namespaces})")
    return Sandbox("group", f"process group (no namespaces or subreaper on {sys.platform})")


def _namespace_problem() -> str | None:
    """None if the launcher can set up the namespaces here, else why not (in a few words)."""
    if not _IS_LINUX:
        return "not Linux"
    status_read, status_write = os.pipe()
    try:
        config = {"mode": "probe", "status_fd": status_write, "linter_pid": os.getpid(), "harness_fds": []}
        try:
            subprocess.run(
                launcher_command(config),
                pass_fds=(status_write,),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=30,
                cwd="/",
                env={},
            )
        except (OSError, subprocess.SubprocessError) as error:
            return f"the probe failed: {error}"
        os.close(status_write)
        status_write = -1
        status = first_json_line(_read_all(status_read))
    finally:
        os.close(status_read)
        if status_write >= 0:
            os.close(status_write)
    if status.get("ok") is True:
        return None
    return str(status.get("error") or "the probe did not answer")


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks)


def first_json_line(data: bytes) -> dict:
    for line in data.splitlines():
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return {}


# --- the linter, non-dumpable while harnesses run ----------------------------------------------------
# A non-dumpable process's /proc entries (environ, cwd, fd, mem) belong to root, so a harness of the
# same user cannot read the linter's environment or follow its working directory. Root is not stopped.

PR_GET_DUMPABLE, PR_SET_DUMPABLE = 3, 4
_hidden_lock = threading.Lock()
_hidden_count = 0
_dumpable_before = 1


def _prctl(option: int, value: int = 0) -> int:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    result: int = libc.prctl(option, ctypes.c_ulong(value), ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0))
    return result


@contextmanager
def linter_hidden():
    """The linter is non-dumpable while at least one harness runs (Linux); restored after the last."""
    global _hidden_count, _dumpable_before
    with _hidden_lock:
        if _hidden_count == 0 and _IS_LINUX:
            _dumpable_before = _prctl(PR_GET_DUMPABLE)
            _prctl(PR_SET_DUMPABLE, 0)
        _hidden_count += 1
    try:
        yield
    finally:
        with _hidden_lock:
            _hidden_count -= 1
            if _hidden_count == 0 and _IS_LINUX and _dumpable_before > 0:
                _prctl(PR_SET_DUMPABLE, _dumpable_before)
