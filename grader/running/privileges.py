"""Privilege separation of student runs: when the grader runs as root (CI, Docker, Gradescope), student code
runs as an unprivileged uid/gid of its own, a different one per run, so that it can write nothing but its run's
folder (the grader, its virtualenv and the course belong to root) and cannot read or signal a classmate's run.

The grader stays root; the keeper (root, grader/probe/grader_keeper.py) drops to the run's identity for the
student's program. The run's folder is root's, mode 0711; the folders the student writes (work/, tmp/ and the
probe's own outputs) belong to the run's uid, mode 0700. After the run, every process of that uid is killed and
whatever it left in /tmp and /dev/shm is removed (those are shared with the host unless bubblewrap hides them).
"""
from __future__ import annotations

import contextlib
import functools
import os
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

# Where run uids are taken from when the kernel maps them (it does outside user namespaces): far above the
# uids of real accounts and of the usual container ranges, and below 2**31 (some tools treat uids as signed).
HIGH_BASE = 0x3A000000
HIGH_SPAN = 1 << 24
PROBE_DIR = Path(__file__).resolve().parent.parent / "probe"
SHARED_SCRATCH = (Path("/tmp"), Path("/dev/shm"))  # world-writable places a dropped uid can still write


@dataclass(frozen=True)
class Identity:
    """The unprivileged uid/gid one run's student code runs as."""

    uid: int
    gid: int

    def keeper_args(self) -> list[str]:
        return ["--user", f"{self.uid}:{self.gid}"]


def _mapped_ranges() -> list[tuple[int, int]]:
    """The uid ranges this (possibly nested) user namespace maps, as (first, count)."""
    try:
        lines = Path("/proc/self/uid_map").read_text().splitlines()
    except OSError:
        return [(0, 1 << 32)]
    ranges = []
    for line in lines:
        inside, _outside, count = (int(x) for x in line.split())
        ranges.append((inside, count))
    return ranges


def _choose() -> Identity:
    """A uid nobody else uses: random in a high range (collisions among concurrent runs: ~1 in 16 million)."""
    ranges = _mapped_ranges()
    if any(first <= HIGH_BASE and HIGH_BASE + HIGH_SPAN <= first + count for first, count in ranges):
        uid = HIGH_BASE + secrets.randbelow(HIGH_SPAN)
    else:  # a container mapping few uids (rootless Docker, podman): the upper half of its largest range
        first, count = max(ranges, key=lambda r: r[1])
        low = first + max(count // 2, 1000 if count > 2000 else 1)
        uid = low + secrets.randbelow(max(first + count - 1 - low, 1))
    return Identity(uid, uid)


@functools.cache
def _can_run_python(uid: int, gid: int) -> bool:
    """Whether an unprivileged uid can run this Python and read the probe (a checkout under a private home
    folder, /root, is not readable by others): tried once per grader process."""
    try:
        probe = subprocess.run(
            [sys.executable, "-s", "-c", f"import sys; sys.path.insert(0, {str(PROBE_DIR)!r}); import grader_probe"],
            capture_output=True, timeout=20, cwd="/", env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
            user=uid, group=gid, extra_groups=[])
        return probe.returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def run_identity() -> Identity | None:
    """The identity for a new run: a fresh unprivileged uid when the grader is root, else None (a normal user
    already cannot write root's files; the namespace level protects the user's own)."""
    if not sys.platform.startswith("linux") or os.geteuid() != 0 or os.environ.get("GRADER_NO_UID_DROP") == "1":
        return None
    identity = _choose()
    # The check uses a fixed uid of the same range, so that it is made once per process, not once per run.
    if not _can_run_python(*((HIGH_BASE - 1,) * 2 if identity.uid >= HIGH_BASE else (identity.uid, identity.gid))):
        if os.environ.get("GRADER_REQUIRE_UID_DROP") == "1":  # Gradescope: never student code as root
            raise RuntimeError(f"student code would run as root: an unprivileged uid cannot run {sys.executable} "
                               f"or read {PROBE_DIR} (make them readable by all: chmod -R a+rX)")
        return None
    return identity


def _reachable(folder: Path) -> bool:
    """Whether another uid can reach into `folder` (it and every folder above it searchable)."""
    try:
        return all(p.stat().st_mode & 0o001 for p in (folder, *folder.parents))
    except OSError:
        return False


def runs_parent(identity: Identity | None, preferred: Path | None = None) -> Path | None:
    """Where the run folders go: `preferred` (else the temporary folder) as usual, unless the run's uid could not
    reach it (a batch's private folder, mode 0700): then a folder of this grader process in /tmp, mode 0711
    (searchable, not listable; each run in it is private to its uid anyway)."""
    if identity is None or _reachable(preferred or Path(tempfile.gettempdir())):
        return preferred
    return Path(_private_runs_folder())


def _private_runs_folder() -> str:
    """/tmp/grader-runs-EUID, made once and kept (like /tmp/.X11-unix), checked to be ours and not a link."""
    folder = f"/tmp/grader-runs-{os.geteuid()}"
    with contextlib.suppress(FileExistsError):
        os.mkdir(folder, 0o711)
    info = os.lstat(folder)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o022:
        raise RuntimeError(f"{folder} is not the grader's own folder (made by another user?): remove it")
    os.chmod(folder, 0o711)
    return folder


def hand_over(root: Path, writable: list[Path], identity: Identity | None) -> Identity | None:
    """Give the run's folder to its identity: `root` stays root's (mode 0711: no listing), each of `writable`
    and everything below it becomes the run uid's, mode 0700 for folders, so no other run can look in.
    Returns the identity to run as: None when the run's folder cannot be reached by another uid."""
    if identity is None or not _reachable(root.parent):
        return None
    os.chmod(root, 0o711)
    for top in writable:
        for folder, dirs, files in os.walk(top):
            os.chown(folder, identity.uid, identity.gid)
            os.chmod(folder, 0o700)
            for name in files:
                os.chown(os.path.join(folder, name), identity.uid, identity.gid, follow_symlinks=False)
    return identity


def _uid_of(pid: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"Uid:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def processes_of(identity: Identity) -> list[int]:
    """Every process on the machine whose real uid is the run's: the run's, wherever it went (setsid, a
    double fork, a cleared environment)."""
    me = str(os.getpid())
    return [int(name) for name in os.listdir("/proc")
            if name.isdigit() and name != me and _uid_of(name) == identity.uid]


def sweep(identity: Identity | None) -> int:
    """After a run: kill what is left of its uid and remove what it left in /tmp and /dev/shm. Returns the
    number of processes killed."""
    if identity is None:
        return 0
    killed = 0
    for _ in range(5):  # a process may fork while we look: look again until none is left
        pids = processes_of(identity)
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except OSError:
                continue
    for entry in scratch_entries(identity.uid):
        try:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                os.unlink(entry.path)
        except OSError:
            continue
    return killed


def scratch_entries(uid: int) -> list[os.DirEntry[str]]:
    """What `uid` owns at the top of /tmp and /dev/shm (links not followed): the places outside its run folder
    where a dropped uid can still write, counted against its disk limit and removed after its run."""
    owned: list[os.DirEntry[str]] = []
    for scratch in SHARED_SCRATCH:
        try:
            entries = list(os.scandir(scratch))
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.stat(follow_symlinks=False).st_uid == uid:
                    owned.append(entry)
            except OSError:
                continue
    return owned
