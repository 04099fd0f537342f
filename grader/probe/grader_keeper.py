"""The keeper: the first process of a student run, started as pid 1 of a new pid namespace where the kernel
allows one. Usage: ``python -I grader_keeper.py STATUS_FILE [--user UID:GID] [--limit NAME=N]... [--shm BYTES] [--hide DIR]...
-- COMMAND...``.

It runs COMMAND (the student's main program), reaps every orphan of the run, and writes the main
program's exit status to STATUS_FILE the moment it ends. As the namespace's init it cannot be killed by
student code from inside (the kernel drops such signals), and orphans come to it, never to the grader:
a student process that kills its parent can no longer reach the grader. When the grader kills it, the
kernel kills everything left in the namespace.

With --user (the grader runs as root) COMMAND runs as that unprivileged uid/gid with no supplementary groups,
umask 077 and the --limit hard limits (nproc, fsize, nofile...), which an unprivileged process cannot raise:
RLIMIT_NPROC counts every thread of the uid, which is the run's own. The keeper stays root, out of the reach of
the student's signals. It dies with its parent (PR_SET_PDEATHSIG): when the grader is killed, the run ends.

It stays blocked in waitpid(): a keeper that polled would look like activity to the grader's deadlock watch.
With --shm (own mount namespace, as root), /dev/shm becomes a private tmpfs of that size; each --hide folder
is covered by an empty read-only tmpfs.
Standard library only; it imports nothing from grader.
"""
from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
from typing import Any

PR_SET_CHILD_SUBREAPER = 36
PR_SET_PDEATHSIG = 1
MS_RDONLY, MS_NOSUID, MS_NODEV = 1, 2, 4
_LIMITS = {"nproc": "RLIMIT_NPROC", "fsize": "RLIMIT_FSIZE", "nofile": "RLIMIT_NOFILE", "core": "RLIMIT_CORE"}


def _write_status(path: str, returncode: int) -> None:
    """Atomically, so that the grader never reads half a status."""
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump({"returncode": returncode}, f)
    os.replace(tmp, path)


def _prctl(option: int, value: int) -> bool:
    try:
        return ctypes.CDLL(None).prctl(option, value, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _descendants(root: int) -> list[int]:
    """Every descendant of `root`, from /proc (orphans of the run are ours as the subreaper)."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                data = f.read()
            children.setdefault(int(data[data.rfind(b")") + 2:].split()[1]), []).append(int(name))
        except (OSError, IndexError, ValueError):
            continue
    found, pending = [], list(children.get(root, []))
    while pending:
        pid = pending.pop()
        found.append(pid)
        pending.extend(children.get(pid, []))
    return found


def _kill_descendants() -> None:
    for _ in range(5):
        pids = _descendants(os.getpid())
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


def _end_the_run(user: tuple[int, int] | None) -> None:
    """The grader died (our parent-death signal): kill every process of the run, then go."""
    _kill_descendants()
    if user is not None and os.fork() == 0:  # the run's uid is its own: whatever escaped our tree dies too
        try:
            os.setgroups([])
            os.setgid(user[1])
            os.setuid(user[0])
            os.kill(-1, signal.SIGKILL)
        finally:
            os._exit(0)
    os._exit(1)


class Options:
    """The keeper's command line."""

    def __init__(self, status_path: str) -> None:
        self.status_path = status_path
        self.user: tuple[int, int] | None = None
        self.limits: dict[str, int] = {}
        self.shm: int | None = None
        self.hide: list[str] = []
        self.command: list[str] = []


def _parse(args: list[str]) -> Options | None:
    if not args:
        return None
    options, rest = Options(args[0]), args[1:]
    try:
        while rest and rest[0] != "--":
            option, value, rest = rest[0], rest[1] if len(rest) > 1 else "", rest[2:]
            if option == "--user":
                uid, _, gid = value.partition(":")
                options.user = (int(uid), int(gid or uid))
            elif option == "--limit":
                name, _, number = value.partition("=")
                options.limits[name] = int(number)
            elif option == "--shm":
                options.shm = int(value)
            elif option == "--hide":
                options.hide.append(value)
            else:
                return None
    except ValueError:
        return None
    if len(rest) < 2:
        return None
    options.command = rest[1:]
    return options


def _hide(paths: list[str]) -> None:
    """Cover each folder with an empty read-only tmpfs (root in our own mount namespace): the solutions, the
    checks, the tests, the course's history."""
    libc = ctypes.CDLL(None, use_errno=True)
    for path in paths:
        libc.mount(b"tmpfs", path.encode(), b"tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV, b"size=4k,mode=755")


def _private_shm(size: int) -> None:
    """A private, size-limited /dev/shm, when we may mount (root in our own mount namespace)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount(b"tmpfs", b"/dev/shm", b"tmpfs", 0, f"size={size},mode=1777".encode())


def _child_setup(limits: dict[str, int]) -> Any:
    """Runs in the child between fork and exec (the keeper has one thread: this is safe)."""
    import resource

    def setup() -> None:
        for name, value in limits.items():
            which = getattr(resource, _LIMITS.get(name, ""), None)
            if which is not None:
                try:
                    resource.setrlimit(which, (value, value))
                except (ValueError, OSError):
                    pass

    return setup


def main() -> int:
    options = _parse(sys.argv[1:])
    if options is None:
        print("usage: grader_keeper.py STATUS_FILE [--user UID:GID] [--limit NAME=N]... [--shm BYTES] [--hide DIR]... "
              "-- COMMAND...", file=sys.stderr)
        return 2
    status_path, user, limits, command = options.status_path, options.user, options.limits, options.command
    if options.shm is not None:
        _private_shm(options.shm)
    if options.hide:
        _hide(options.hide)
    if os.getpid() != 1:
        # No pid namespace here: be the subreaper at least, so that orphans still come to us, and end the run
        # ourselves when the grader dies.
        _prctl(PR_SET_CHILD_SUBREAPER, 1)
        signal.signal(signal.SIGUSR2, lambda signum, frame: _end_the_run(user))
        _prctl(PR_SET_PDEATHSIG, signal.SIGUSR2)
    else:  # pid 1: our death ends the namespace
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    extra: dict[str, Any] = {}
    if user is not None:
        extra = {"user": user[0], "group": user[1], "extra_groups": [], "umask": 0o077}
    main_child = subprocess.Popen(command, restore_signals=True, preexec_fn=_child_setup(limits) if limits else None,
                                  **extra)
    # Ignored only after the start: an ignored signal would be inherited by the student's program.
    # Only the grader, from outside, ends the keeper (with SIGKILL).
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1):
        signal.signal(sig, signal.SIG_IGN)
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            return 0  # nothing left to reap: the run is over
        except InterruptedError:
            continue
        if pid == main_child.pid:
            main_child.returncode = os.waitstatus_to_exitcode(status)
            _write_status(status_path, main_child.returncode)


if __name__ == "__main__":
    sys.exit(main())
