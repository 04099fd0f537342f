"""The process tree of a student run: finding every descendant (even those that called setsid()), telling
a deadlocked tree from a busy one, dumping stacks, and killing and reaping the whole tree."""
from __future__ import annotations

import ctypes
import os
import platform
import signal
import time
from dataclasses import dataclass, field
from typing import Callable

import psutil

PR_SET_CHILD_SUBREAPER = 36

# Syscalls that block with no timeout, by architecture: (number, index of the argument that, when 0 or
# negative, means "forever"), or (number, None) when the call itself never times out.
_FOREVER: dict[str, dict[int, int | None]] = {
    "x86_64": {
        0: None, 19: None, 45: None, 47: None,  # read, readv, recvfrom, recvmsg
        61: None, 247: None,  # wait4, waitid
        43: None, 288: None, 34: None,  # accept, accept4, pause
        73: None,  # flock
        7: 2, 271: 2, 23: 4, 270: 4, 232: 3, 281: 3,  # poll, ppoll, select, pselect6, epoll_wait, epoll_pwait
        202: 3,  # futex: the timeout pointer
        130: None,  # rt_sigsuspend
    },
    "aarch64": {
        63: None, 65: None, 207: None, 212: None,  # read, readv, recvfrom, recvmsg
        260: None, 95: None, 202: None, 242: None, 32: None,  # wait4, waitid, accept, accept4, flock
        73: 2, 72: 4, 22: 3,  # ppoll, pselect6, epoll_pwait
        98: 3, 133: None,  # futex, rt_sigsuspend
    },
}
_FUTEX = {"x86_64": 202, "aarch64": 98}
_FUTEX_WAITS = {0, 9, 6, 11}  # FUTEX_WAIT, FUTEX_WAIT_BITSET, FUTEX_LOCK_PI, FUTEX_WAIT_REQUEUE_PI
_POLL_TIMEOUT_IS_INT = {"x86_64": {7, 232, 281}, "aarch64": {22}}


def become_subreaper() -> bool:
    """Make this process the child subreaper, so orphans of student code (setsid, double fork) come to us."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def descendants(root_pid: int, exclude: set[int] | frozenset[int] = frozenset()) -> list[psutil.Process]:
    """Every living descendant of `root_pid`, skipping the subtrees of `exclude` (the grader's own children)."""
    try:
        children = psutil.Process(root_pid).children(recursive=False)
    except psutil.Error:
        return []
    found: list[psutil.Process] = []
    pending = [c for c in children if c.pid not in exclude]
    while pending:
        proc = pending.pop()
        found.append(proc)
        try:
            pending.extend(proc.children(recursive=False))
        except psutil.Error:
            continue
    return found


@dataclass
class TreeSample:
    """One look at the tree: which processes, their CPU time, and whether every thread is blocked for good."""

    pids: frozenset[int]
    cpu: float
    all_blocked: bool
    living: int


def _thread_blocked_forever(task_dir: str, arch: str) -> bool:
    """Whether one thread sits in a syscall that can only return when another process acts."""
    try:
        with open(os.path.join(task_dir, "syscall")) as f:
            fields = f.read().split()
    except OSError:
        return True  # the thread is gone
    if not fields or fields[0] in ("running", "-1"):
        return False
    number = int(fields[0])
    table = _FOREVER.get(arch, {})
    if number not in table:
        return False
    args = [int(a, 16) for a in fields[1:7]]
    if number == _FUTEX.get(arch) and (args[1] & 0x7F) not in _FUTEX_WAITS:
        return False
    index = table[number]
    if index is None:
        return True
    value = args[index]
    if number in _POLL_TIMEOUT_IS_INT.get(arch, set()):
        return value >= 0x80000000  # a negative int timeout: wait forever
    return value == 0  # a NULL timeout pointer


def read_stat(pid: int) -> tuple[str, float] | None:
    """A process's state letter and CPU seconds from /proc/PID/stat in one read, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rfind(b")") + 2:].split()
    try:
        return fields[0].decode(), (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS
    except (IndexError, ValueError):
        return None


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def sample(procs: list[psutil.Process], servers: frozenset[int] | set[int] = frozenset()) -> TreeSample:
    """CPU time and blocked state of a list of processes (zombies and stopped ones count as blocked).

    `servers` are namespace pids of multiprocessing Manager servers: they poll with a timeout but act only
    when a client calls, so a sleeping one counts as blocked."""
    def stat(proc: psutil.Process) -> tuple[str, float] | None:
        try:
            times = proc.cpu_times()
            return _STATE_LETTER.get(proc.status(), "R"), times.user + times.system
        except psutil.Error:
            return None

    return _sample([(p.pid, stat(p)) for p in procs], servers)


_STATE_LETTER = {psutil.STATUS_ZOMBIE: "Z", psutil.STATUS_DEAD: "X", psutil.STATUS_STOPPED: "T",
                 psutil.STATUS_SLEEPING: "S", psutil.STATUS_DISK_SLEEP: "D"}


def sample_pids(pids: list[int], servers: frozenset[int] | set[int] = frozenset()) -> TreeSample:
    """`sample` on Linux, read straight from /proc: the runner takes one every poll of every run, and
    psutil's objects cost several reads of the same file each."""
    return _sample([(pid, read_stat(pid)) for pid in pids], servers)


def _sample(stats: list[tuple[int, tuple[str, float] | None]], servers: frozenset[int] | set[int]) -> TreeSample:
    """The tree's sample from each process's (state letter, CPU seconds), None for one that is gone."""
    arch = platform.machine()
    cpu = 0.0
    blocked = arch in _FOREVER
    living = 0
    for pid, stat in stats:
        if stat is None:
            continue
        state, seconds = stat
        cpu += seconds
        if state in ("Z", "X", "x", "T"):
            continue
        living += 1
        if not blocked:
            continue
        if state not in ("S", "D"):
            blocked = False
            continue
        if servers and ns_pid(pid) in servers:
            continue
        task_root = f"/proc/{pid}/task"
        try:
            tasks = os.listdir(task_root)
        except OSError:
            continue
        if not all(_thread_blocked_forever(os.path.join(task_root, t), arch) for t in tasks):
            blocked = False
    return TreeSample(frozenset(pid for pid, _ in stats), cpu, blocked and living > 0, living)


@dataclass
class DeadlockWatch:
    """Calls a deadlock when every thread of the tree stays blocked with no timeout and no CPU is used."""

    quiet: float = 0.35
    since: float | None = None
    last: TreeSample | None = field(default=None)

    def update(self, now: float, current: TreeSample) -> bool:
        steady = (
            current.all_blocked
            and self.last is not None
            and self.last.all_blocked
            and self.last.pids == current.pids
            and abs(self.last.cpu - current.cpu) < 1e-9
        )
        if not steady:
            self.since = now if current.all_blocked else None
            self.last = current
            return False
        if self.since is None:
            self.since = now
        self.last = current
        return now - self.since >= self.quiet


def catches_sigusr1(pid: int) -> bool:
    """Whether a process has a handler for SIGUSR1 (else the signal would kill it instead of dumping stacks)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("SigCgt:"):
                    return bool(int(line.split()[1], 16) & (1 << (signal.SIGUSR1 - 1)))
    except (OSError, ValueError):
        pass
    return False


def ns_pid(pid: int) -> int:
    """A process's pid as seen inside its own pid namespace (what the probe records), from our host pid (the
    host pid itself once the process has ended)."""
    inside = live_ns_pid(pid)
    return pid if inside is None else inside


def live_ns_pid(pid: int) -> int | None:
    """A process's pid inside its own pid namespace; None when it has ended (nothing to tell it by)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("NSpid:"):
                    return int(line.split()[-1])
    except (OSError, ValueError):
        return None
    return pid


def task_files(pid: int, name: str) -> list[bytes]:
    """The file `name` of each thread of a process (/proc/PID/task/TID/NAME), as read; none when it is gone."""
    found: list[bytes] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/{name}", "rb") as f:
                found.append(f.read())
        except OSError:
            continue
    return found


def stopped(pids: list[int]) -> list[int]:
    """The processes among `pids` that are stopped (SIGSTOP, SIGTSTP: state T) or stopped by a tracer (t), as their
    namespace pids: they do nothing until continued, so a run that waits for them never ends."""
    found = []
    for pid in pids:
        stat = read_stat(pid)
        if stat is not None and stat[0] in ("T", "t"):
            found.append(ns_pid(pid))
    return found


def request_stacks(pids: list[int], stack_dir: str, wait: float = 0.5) -> None:
    """Ask every probed process to dump all its threads' stacks, and wait until the dumps are written."""
    asked = []
    for pid in pids:
        if catches_sigusr1(pid):
            path = os.path.join(stack_dir, f"{ns_pid(pid)}.txt")
            before = os.path.getsize(path) if os.path.exists(path) else 0
            try:
                os.kill(pid, signal.SIGUSR1)
                asked.append((path, before))
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + wait
    while asked and time.monotonic() < deadline:
        if all(os.path.exists(p) and os.path.getsize(p) > b for p, b in asked):
            time.sleep(0.02)  # let a multi-threaded dump finish its last thread
            return
        time.sleep(0.01)


def kill_tree(find: Callable[[], list[psutil.Process]], rounds: int = 200) -> int:
    """Freeze then kill every process `find` returns, again until none is left; reap our own zombies.

    SIGSTOP first, so that a process that forks without end cannot add children faster than we kill.
    Returns how many processes were killed.
    """
    killed: set[int] = set()
    for _ in range(rounds):
        procs = [p for p in find() if is_alive(p)]
        if not procs:
            break
        for sig in (signal.SIGSTOP, signal.SIGKILL):
            for proc in procs:
                try:
                    os.kill(proc.pid, sig)
                    killed.add(proc.pid)
                except (ProcessLookupError, PermissionError):
                    pass
        reap(killed)
        time.sleep(0.005)
    reap(killed)
    return len(killed)


def is_alive(proc: psutil.Process) -> bool:
    """Running or sleeping, not a zombie waiting to be reaped."""
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def reap(pids: set[int] | list[int]) -> None:
    """Collect the exit status of those `pids` that are our children, so that no zombie is left."""
    me = os.getpid()
    for pid in list(pids):
        try:
            if psutil.Process(pid).ppid() != me:
                continue
            os.waitpid(pid, os.WNOHANG)
        except (psutil.Error, ChildProcessError, OSError):
            continue


def reap_orphans(keep: set[int]) -> None:
    """Reap every zombie child of ours that is not in `keep` (orphans re-parented to the subreaper)."""
    for child in psutil.Process().children(recursive=False):
        if child.pid in keep:
            continue
        try:
            if child.status() == psutil.STATUS_ZOMBIE:
                os.waitpid(child.pid, os.WNOHANG)
        except (psutil.Error, ChildProcessError, OSError):
            continue
