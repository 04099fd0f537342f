"""Isolation of student runs on Linux: with bubblewrap, everything but the run's own folder is read-only,
the solutions, the check modules, the course's history and the home folder are hidden, /tmp and /dev/shm are
private (and size-limited), and there is no network; without it, new network, pid and mount namespaces (own
/proc) where the kernel allows them, in which mountns.py makes the same read-only view before the keeper starts
(hidden folders covered, a minimal /dev, no capability left to student code: the "net" level; NET_OPEN where the
kernel refuses the mounts, and the reports say files were not protected); else nothing. Orthogonal to the level: when the grader is root, student
code runs as an unprivileged uid of its own (see privileges.py), so the checkout is never writable by it.

Every level dies with the grader: bwrap --die-with-parent, setpriv --pdeathsig before unshare, and the
keeper's own parent-death signal.

GRADER_ISOLATION=bwrap|net|none forces a level (for tests and debugging)."""
from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from grader.running import limits, privileges, rundir
from grader.running.privileges import Identity

PACKAGE_DIR = Path(__file__).resolve().parent.parent  # the grader package


@dataclass(frozen=True)
class Isolation:
    """A level of isolation: its name, the words the report uses, and the command prefix that applies it."""

    name: str
    description: str
    read_only: bool = False  # the machine's files read-only to student code (bwrap; net where mounts work)

    def wrap(self, argv: list[str], run_root: Path, hidden: list[Path]) -> list[str]:
        """`argv` run under this isolation; `run_root` stays writable, `hidden` paths appear empty."""
        if self.name == "bwrap":
            prefix = ["bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--unshare-net",
                      "--unshare-pid", "--unshare-ipc", "--as-pid-1", "--die-with-parent",
                      *_private_scratch()]
            hide = _hideable([*hidden, Path(tempfile.gettempdir())])
            for path in hide:  # a private /tmp stays writable by everyone, as the real one
                private_tmp = path == Path("/tmp") and _private_scratch()  # bwrap >= 0.5: --perms, --size
                prefix += [*(["--perms", "1777", "--size", str(DISK_LIMIT)] if private_tmp else []), "--tmpfs", str(path)]
            # What the run needs from inside a hidden folder (a virtualenv in the home folder, the probe in a
            # checkout under /tmp) comes back read-only on top of the empty folder.
            for needed in _needed():
                if any(h in needed.parents for h in hide) and needed.exists():
                    prefix += ["--ro-bind", str(needed), str(needed)]
            prefix += ["--bind", str(run_root), str(run_root)]
            return [*prefix, "--", *argv]
        if self.name == "net":
            view = _read_only_view(argv, run_root, hidden) if self.read_only else []
            return [*_dies_with_parent(), "unshare", *_NET_UNSHARE, "--", *view, *argv]
        return argv


MOUNTNS = Path(__file__).resolve().parent / "mountns.py"


def _read_only_view(argv: list[str], run_root: Path | None, hidden: list[Path]) -> list[str]:
    """The command that makes the net level's read-only view (mountns.py) before `argv`, the keeper: the run's folder
    writable, `hidden` covered, what the run needs bound back. It drops every capability unless the keeper
    drops to an unprivileged uid itself (its --user option), which needs root's."""
    options = ["--shm", str(SHM_SIZE), "--scratch-size", str(DISK_LIMIT)]
    keeper_options = argv[:argv.index("--")] if "--" in argv else argv
    if "--user" not in keeper_options:
        options.append("--drop-caps")
    if run_root is not None:
        options += ["--writable", str(run_root), "--error-file", str(run_root / "meta" / "probe-error-isolation.txt")]
    temp = Path(tempfile.gettempdir()).resolve()
    keep = [*_needed(), *([run_root] if run_root is not None else [])]
    # As bubblewrap: whatever the caller hides, the temporary folder (every other run's folder) is hidden.
    for path in _hideable([*hidden, temp, rundir.base()]):
        kind = "--scratch" if path in (Path("/tmp"), temp) else "--hide"
        options += [kind, str(path)]
    for needed in keep:
        options += ["--need", str(needed)]
    return [sys.executable, "-I", "-S", str(MOUNTNS), *options, "--"]


# A normal user needs a user namespace for the others (the student is then "root" in it, with the user's own
# rights outside: files stay unprotected at this level, processes and network do not).
_NET_UNSHARE = (*(("--user", "--map-root-user") if hasattr(os, "geteuid") and os.geteuid() != 0 else ()),
                "--net", "--pid", "--mount", "--mount-proc", "--fork", "--kill-child")

NONE = Isolation("none", "none: student code ran with the grader's user rights and network access")
NET = Isolation("net", "network, pid and mount namespaces: no network; the machine's files read-only except the run's "
                      "folder, solutions, checks, tests, the course's history, the home folder and /tmp hidden, a "
                      "minimal /dev; student code without any capability (bubblewrap is not installed)",
                read_only=True)
NET_OPEN = Isolation("net", "network and pid namespaces: no network; files were not protected (bubblewrap is not "
                            "installed, and this machine refused the read-only view)")
BWRAP = Isolation("bwrap", "bubblewrap: read-only file system except the run's folder, solutions and checks "
                           "hidden, no network, own pid namespace", read_only=True)


def _needed() -> list[Path]:
    """What the student's Python needs to see: itself, its prefixes and the probe."""
    return [Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve(), Path(sys.executable).resolve(),
            PACKAGE_DIR / "probe"]


def _hideable(paths: list[Path]) -> list[Path]:
    """Paths that can be hidden: folders that are not themselves, or inside, what the run needs (those that
    merely contain it are hidden, and what is needed is bound back into them)."""
    keep: list[Path] = []
    for path in paths:
        path = path.resolve()
        if not path.is_dir() or path == Path("/") or path in keep:
            continue
        if any(n == path or n in path.parents for n in _needed()):  # needed itself, or inside it
            continue
        keep.append(path)
    return sorted(keep, key=lambda p: len(p.parts))


def _dies_with_parent() -> list[str]:
    """A prefix that makes the next command die with the grader (setpriv from util-linux), when available."""
    return ["setpriv", "--pdeathsig", "KILL", "--"] if _setpriv_has_pdeathsig() else []


@functools.lru_cache(maxsize=1)
def _setpriv_has_pdeathsig() -> bool:
    return bool(shutil.which("setpriv")) and _works(["setpriv", "--pdeathsig", "KILL", "--"])


SHM_SIZE = 128 * 1024 * 1024  # bytes of /dev/shm a run may fill (named semaphores and shared memory)


@functools.lru_cache(maxsize=1)
def _private_scratch() -> tuple[str, ...]:
    """bwrap options for a private, size-limited /dev/shm, writable by every uid as the real one."""
    try:
        version = subprocess.run(["bwrap", "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        version = ""
    numbers = [int(n) for n in re.findall(r"\d+", version)[:2]]
    if numbers >= [0, 5]:  # --perms and --size came with 0.5: without them /dev/shm stays the host's
        return ("--perms", "1777", "--size", str(SHM_SIZE), "--tmpfs", "/dev/shm")
    return ()


def keeper_options(identity: Identity | None, level: Isolation, writable: list[Path],
                   hidden: list[Path] = []) -> list[str]:  # noqa: B006 - never mutated
    """The keeper's options for a run: the unprivileged identity and its hard limits when there is one; where the
    keeper may mount (root in the net level's mount namespace, when the read-only view was refused) a private
    /dev/shm and empty folders over the hidden ones that hold nothing the run needs (the solutions, the checks,
    the tests, .git). With the read-only view, mountns.py does both."""
    options: list[str] = []
    if identity is None:
        return options
    # RLIMIT_NPROC counts every thread of the uid: the run's own, since the uid is.
    options += [*identity.keeper_args(), "--limit", f"nproc={THREAD_LIMIT}", "--limit", f"fsize={FILE_SIZE_LIMIT}"]
    if level.name == "net" and not level.read_only:
        options += ["--shm", str(SHM_SIZE)]
        keep = [*_needed(), *writable]
        for path in _hideable(hidden):
            if not any(path == k or path in k.parents for k in keep):
                options += ["--hide", str(path)]
    return options


THREAD_LIMIT = 512  # threads and processes of one run, together (only enforced once the uid is dropped)
FILE_SIZE_LIMIT = 64 * 1024 * 1024  # bytes of one file (RLIMIT_FSIZE)
DISK_LIMIT = limits.DISK_LIMIT


def describe(level: Isolation, identity: Identity | None) -> str:
    """The isolation in force for one run, in the words of the report (results.json, JUnit, summaries)."""
    if identity is None:
        return level.description
    dropped = "student code ran as an unprivileged uid of its own, not as root: the grader's and the course's files " \
              "were read-only to it"
    if level.name == "net" and level.read_only:
        return f"{level.description.replace('student code without any capability', 'no capability')}; {dropped}"
    if level.name == "net":
        return f"network, pid and mount namespaces: no network, solutions, checks and tests hidden; {dropped}"
    if level.name == "none":
        return f"no namespaces (network open, solutions readable); {dropped}"
    return f"{level.description}; {dropped}"


def in_force(level: Isolation | None = None) -> str:
    """The isolation this grader process gives student runs (at `level`, else the strongest the machine allows):
    its short name, then its description."""
    level = level or detect()
    identity = privileges.run_identity()
    return f"{level_name(level, identity)}: {describe(level, identity)}"


def level_name(level: Isolation, identity: Identity | None) -> str:
    """A short machine-readable name of the isolation in force: bwrap, net or none, +uid when dropped."""
    return level.name + ("+uid" if identity is not None else "")


def _works(argv: list[str]) -> bool:
    """Whether `argv true` succeeds, from / (a working folder the view covers, in /tmp, would fail it)."""
    try:
        return subprocess.run([*argv, "true"], capture_output=True, timeout=10, cwd="/").returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


@functools.lru_cache(maxsize=1)
def detect() -> Isolation:
    """The strongest isolation this machine allows (tried once per grader process)."""
    forced = os.environ.get("GRADER_ISOLATION")
    if forced:
        return named(forced)
    if not sys.platform.startswith("linux"):
        return NONE
    if shutil.which("bwrap") and _works(["bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--unshare-net", "--"]):
        return BWRAP
    return (shutil.which("unshare") and _net()) or NONE


@functools.lru_cache(maxsize=1)
def _net() -> Isolation | None:
    """NET where the read-only view can be made here (tried once per grader process, as a run makes it), else
    NET_OPEN where the namespaces can (files not protected, and said so in every report), else None."""
    if _works(["unshare", *_NET_UNSHARE, "--", *_read_only_view(["--"], None, hidden_paths(None))]):
        return NET
    return NET_OPEN if _works(["unshare", *_NET_UNSHARE, "--"]) else None


def named(level: str | None) -> Isolation:
    """The level called `level` ("bwrap", "net", "none"), or the strongest this machine allows when None."""
    if level is None:
        return detect()
    return {"bwrap": BWRAP}.get(level) or ((_net() or NET_OPEN) if level == "net" else NONE)


def hidden_paths(course_root: Path | None, temp_root: Path | None = None) -> list[Path]:
    """What student code must not see: the solutions, the check modules, the user's home folder, the course's
    history (`git show HEAD:solutions/...`)."""
    # The temporary folder holds every other run's folder (other students' files in a batch); so does the
    # short base the runs are made under when TMPDIR is too long for unix sockets.
    paths = [PACKAGE_DIR / "checks", Path.home(), temp_root or Path(tempfile.gettempdir()), PACKAGE_DIR.parent / ".git"]
    if rundir.base() not in paths:
        paths.append(rundir.base())
    if course_root is not None:
        paths += [course_root / "solutions", course_root / "tests", course_root / ".git"]
    return paths
