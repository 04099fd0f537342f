"""Isolation of student runs on Linux: with bubblewrap, everything but the run's own folder is read-only,
the solutions, the check modules and the home folder are hidden, and there is no network; without it, a
new network namespace where the kernel allows one; else nothing (student code runs with the user's rights).

GRADER_ISOLATION=bwrap|net|none forces a level (for tests and debugging)."""
from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from grader.running import rundir

PACKAGE_DIR = Path(__file__).resolve().parent.parent  # the grader package


@dataclass(frozen=True)
class Isolation:
    """A level of isolation: its name, the words the report uses, and the command prefix that applies it."""

    name: str
    description: str

    def wrap(self, argv: list[str], run_root: Path, hidden: list[Path]) -> list[str]:
        """`argv` run under this isolation; `run_root` stays writable, `hidden` paths appear empty."""
        if self.name == "bwrap":
            prefix = ["bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--unshare-net",
                      "--unshare-pid", "--as-pid-1", "--die-with-parent"]
            for path in _hideable(hidden):
                prefix += ["--tmpfs", str(path)]
            prefix += ["--bind", str(run_root), str(run_root)]
            return [*prefix, "--", *argv]
        if self.name == "net":
            return ["unshare", "--net", "--pid", "--fork", "--kill-child", "--", *argv]
        return argv


NONE = Isolation("none", "none: student code ran with the grader's user rights and network access")
NET = Isolation("net", "network and pid namespaces: no network; files were not protected (bubblewrap is not "
                      "installed)")
BWRAP = Isolation("bwrap", "bubblewrap: read-only file system except the run's folder, solutions and checks "
                           "hidden, no network, own pid namespace")


def _hideable(paths: list[Path]) -> list[Path]:
    """Paths that can be hidden without hiding the Python that runs the student code or the probe."""
    needed = [Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve(), Path(sys.executable).resolve(),
              PACKAGE_DIR / "probe"]
    keep = []
    for path in paths:
        path = path.resolve()
        if not path.is_dir():
            continue
        if any(n == path or path in n.parents for n in needed):
            continue
        keep.append(path)
    return keep


def _works(argv: list[str]) -> bool:
    try:
        return subprocess.run([*argv, "true"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


@functools.lru_cache(maxsize=1)
def detect() -> Isolation:
    """The strongest isolation this machine allows (tried once per grader process)."""
    forced = os.environ.get("GRADER_ISOLATION")
    if forced:
        return {"bwrap": BWRAP, "net": NET}.get(forced, NONE)
    if not sys.platform.startswith("linux"):
        return NONE
    if shutil.which("bwrap") and _works(["bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--unshare-net", "--"]):
        return BWRAP
    if shutil.which("unshare") and _works(["unshare", "--net", "--pid", "--fork", "--kill-child", "--"]):
        return NET
    return NONE


def named(level: str | None) -> Isolation:
    """The level called `level` ("bwrap", "net", "none"), or the strongest this machine allows when None."""
    return detect() if level is None else {"bwrap": BWRAP, "net": NET}.get(level, NONE)


def hidden_paths(course_root: Path | None, temp_root: Path | None = None) -> list[Path]:
    """What student code must not see: the solutions, the check modules, the user's home folder."""
    # The temporary folder holds every other run's folder (other students' files in a batch); so does the
    # short base the runs are made under when TMPDIR is too long for unix sockets.
    paths = [PACKAGE_DIR / "checks", Path.home(), temp_root or Path(tempfile.gettempdir())]
    if rundir.base() not in paths:
        paths.append(rundir.base())
    if course_root is not None:
        paths += [course_root / "solutions", course_root / "tests"]
    return paths
