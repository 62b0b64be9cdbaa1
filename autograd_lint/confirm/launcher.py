"""The process between the linter and one harness; runner.py runs this file as a script.

It starts with the scrubbed environment and the harness's temp directory as its working directory,
so that nothing of the linter's is one `/proc/<ppid>` away, and it owns the harness's cleanup:

- `namespaces`: new user, mount, network and PID namespaces (the network one with its loopback interface
  up and no other). Its child is the namespace's init (PID 1):
  it mounts a /proc that shows only the namespace, drops every capability (the harness runs as the
  linter's user, with no privilege inside the namespace either, so it cannot unmount that /proc), then
  starts the harness and waits for it. When init exits, the kernel kills every process left in the
  namespace, whatever session or process group it moved to.
- `subreaper`: the launcher becomes a child subreaper (orphaned descendants are reparented to it, not
  to PID 1), starts the harness, and when it ends kills every descendant, re-scanning until none is left.
- `group`: no namespaces and no subreaper (not Linux): it starts the harness and waits; the linter kills
  the process group afterwards.
- `probe`: sets up the namespaces and init, then reports whether that worked (runner.py asks once per run).

The launcher is non-dumpable, so that the harness cannot open its /proc entries (its descriptors
include the status pipe). On SIGTERM (the linter's timeout or Ctrl-C, or the linter dying: the parent
death signal) it kills everything it started. It writes one JSON line to the status descriptor:
{"exit": N}, {"signal": N}, {"cannot_start": reason}, {"error": reason} or, for a probe, {"ok": true}.
Only the standard library: it runs under the linter's interpreter with -I -S.
"""

import ctypes
import errno
import json
import os
import signal
import sys
import time

CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x00020000, 0x10000000, 0x20000000, 0x40000000
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REC, MS_PRIVATE = 2, 4, 8, 1 << 14, 1 << 18
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_CAPBSET_DROP, PR_SET_SECUREBITS = 1, 4, 24, 28
PR_SET_CHILD_SUBREAPER, PR_SET_NO_NEW_PRIVS, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 36, 38, 47, 4
SECBIT_NOROOT, SECBIT_NOROOT_LOCKED = 1, 2
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1

_libc = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


class Terminated(Exception):
    """SIGTERM: stop the harness and everything it started."""


def _terminate(signum, frame):
    raise Terminated()


def _call(what, result):
    if result != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"{what}: {os.strerror(error)}")


def _linux_libc() -> ctypes.CDLL:
    if _libc is None:
        raise OSError(errno.ENOSYS, "the harness's namespaces need Linux")
    return _libc


def _prctl(what, option, value=0):
    _call(
        what,
        _linux_libc().prctl(option, ctypes.c_ulong(value), ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0)),
    )


def _write_file(path, text):
    with open(path, "w") as handle:
        handle.write(text)


def _reason(error):
    if isinstance(error, OSError) and error.filename is None and error.strerror:
        return error.strerror
    return f"{type(error).__name__}: {error}" if not isinstance(error, OSError) else str(error)


def _report(status_fd, **status):
    try:
        os.write(status_fd, (json.dumps(status) + "\n").encode())
    except OSError:
        pass


def _spawn(config, status_fd, drop_root=False):
    """Fork and exec the harness; if exec fails, the child says why on the status pipe. With `drop_root`,
    a harness of root runs without any capability (outside namespaces, non-dumpable does not stop root)."""
    pid = os.fork()
    if pid == 0:
        try:
            if drop_root and os.geteuid() == 0 and _libc is not None:
                try:
                    _drop_privileges()
                except OSError as error:
                    _report(status_fd, error=_reason(error))
                    os._exit(127)
            for name in ("SIGPIPE", "SIGXFSZ"):  # what Python ignores, as subprocess restores it
                if hasattr(signal, name):
                    signal.signal(getattr(signal, name), signal.SIG_DFL)
            os.execvp(config["python"], config["argv"])  # a bare name is looked up on PATH
        except OSError as error:
            _report(status_fd, cannot_start=error.strerror or str(error))
        finally:
            os._exit(127)
    for fd in config["harness_fds"]:  # only the harness holds the result pipe and the secret
        os.close(fd)
    return pid


def _status_of(wait_status):
    if os.WIFSIGNALED(wait_status):
        return {"signal": os.WTERMSIG(wait_status)}
    return {"exit": os.waitstatus_to_exitcode(wait_status)}


def _wait_for(pid):
    """Wait for `pid`, reaping whatever else (reparented orphans) ends first."""
    while True:
        done, wait_status = os.waitpid(-1, 0)
        if done == pid:
            return wait_status


# --- namespaces -------------------------------------------------------------------------------------


def _enter_namespaces():
    uid, gid = os.getuid(), os.getgid()
    _call("unshare", _linux_libc().unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID))
    # The linter's user and group map to themselves: inside, the harness has the same identity as
    # outside (its files are the user's); init drops every capability before it starts the harness.
    _write_file("/proc/self/setgroups", "deny")
    _write_file("/proc/self/uid_map", f"{uid} {uid} 1")
    _write_file("/proc/self/gid_map", f"{gid} {gid} 1")
    _call("making mounts private", _linux_libc().mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None))
    _bring_up_loopback()
    # Only now: a non-dumpable process's /proc/self files belong to root, so it could not write the maps.
    _prctl("dumpable", PR_SET_DUMPABLE, 0)


def _bring_up_loopback():
    """`lo` up in the new network namespace, its only interface: code under test that starts a one-process
    torch.distributed group (gloo binds 127.0.0.1) can run, and nothing outside the namespace is reachable."""
    import fcntl  # Linux only: the other modes never come here
    import socket
    import struct

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH22x", b"lo", 0)  # struct ifreq: the name, then ifr_flags (40 bytes in all)
        flags = struct.unpack_from("16sH", fcntl.ioctl(sock, SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack("16sH22x", b"lo", flags | IFF_UP))


def _drop_privileges():
    """No capability can come back, even to a harness running as root (uid 0 maps to the real root)."""
    try:
        with open("/proc/sys/kernel/cap_last_cap") as handle:
            last = int(handle.read())
    except (OSError, ValueError):
        last = 63
    for capability in range(last + 1):
        _prctl("dropping capabilities", PR_CAPBSET_DROP, capability)
    _prctl("clearing ambient capabilities", PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
    _prctl("locking out root's capabilities", PR_SET_SECUREBITS, SECBIT_NOROOT | SECBIT_NOROOT_LOCKED)
    _prctl("no_new_privs", PR_SET_NO_NEW_PRIVS, 1)


def _init(config, status_fd, probe):
    """PID 1 of the namespace: never returns."""
    try:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # PID 1 ignores signals without a handler from inside
        _prctl("parent death signal", PR_SET_PDEATHSIG, signal.SIGKILL)
        _call("mounting /proc", _linux_libc().mount(b"proc", b"/proc", b"proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None))
        _prctl("dumpable", PR_SET_DUMPABLE, 0)
        _drop_privileges()
        if probe:
            _report(status_fd, ok=True)
            os._exit(0)
        harness = _spawn(config, status_fd)
        _report(status_fd, **_status_of(_wait_for(harness)))
    except BaseException as error:  # noqa: BLE001 - whatever it is, the linter gets it as the reason
        _report(status_fd, error=_reason(error))
        os._exit(1)
    os._exit(0)  # the kernel now kills every process left in the namespace


def _run_in_namespaces(config, status_fd, probe):
    _enter_namespaces()
    init = os.fork()
    if init == 0:
        _init(config, status_fd, probe)
    for fd in config["harness_fds"]:
        os.close(fd)
    try:
        wait_status = _wait_for(init)
    except Terminated:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        os.kill(init, signal.SIGKILL)  # from outside the namespace, this reaches its init
        _wait_for(init)
        return
    if wait_status != 0:  # init reported what went wrong, unless it was killed
        _report(status_fd, error=f"the namespace's init ended with {_status_of(wait_status)}")


# --- subreaper and process group --------------------------------------------------------------------


def _descendants():
    """{pid: whether it is a zombie} for every descendant."""
    children: dict[int, list[tuple[int, bool]]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as handle:
                fields = handle.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        children.setdefault(int(fields[1]), []).append((int(name), fields[0] == b"Z"))
    found, stack = {}, [os.getpid()]
    while stack:
        for child, zombie in children.get(stack.pop(), ()):
            found[child] = zombie
            stack.append(child)
    return found


def _reap_all():
    while True:
        try:
            if os.waitpid(-1, os.WNOHANG)[0] == 0:
                return
        except ChildProcessError:
            return


def _kill_descendants():
    """SIGKILL every live descendant until none is left, reaped too: the orphans of those killed come to us
    (a zombie left behind would be reparented to an init that may never reap it, and its pid stay taken)."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        _reap_all()
        descendants = _descendants()
        if not descendants:
            return
        for pid, zombie in descendants.items():
            if not zombie:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        time.sleep(0.001)


def _run_with_subreaper(config, status_fd):
    _prctl("child subreaper", PR_SET_CHILD_SUBREAPER, 1)
    _prctl("dumpable", PR_SET_DUMPABLE, 0)
    harness = _spawn(config, status_fd, drop_root=True)
    try:
        _report(status_fd, **_status_of(_wait_for(harness)))
    except Terminated:
        pass
    finally:
        _kill_descendants()


def _run_in_group(config, status_fd):
    harness = _spawn(config, status_fd, drop_root=True)
    try:
        _report(status_fd, **_status_of(_wait_for(harness)))
    except Terminated:
        os.kill(harness, signal.SIGKILL)


def main():
    config = json.loads(sys.argv[1])
    status_fd, mode = config["status_fd"], config["mode"]
    os.set_inheritable(status_fd, False)  # the harness never gets it
    signal.signal(signal.SIGTERM, _terminate)
    try:
        if _libc is not None:
            _prctl("parent death signal", PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != config["linter_pid"]:  # the linter died before the death signal was set
            return
        if mode in ("namespaces", "probe"):
            _run_in_namespaces(config, status_fd, probe=mode == "probe")
        elif mode == "subreaper":
            _run_with_subreaper(config, status_fd)
        else:
            _run_in_group(config, status_fd)
    except Terminated:
        pass
    except OSError as error:
        _report(status_fd, error=_reason(error))


if __name__ == "__main__":
    main()
