"""Where a run's folder lives: under the temporary folder when its path is short, else under a short base.

multiprocessing puts its forkserver and Manager sockets in the run's TMPDIR, and a unix socket path is limited
to 108 bytes (``sun_path``): with a long TMPDIR every forkserver run of a correct program would fail with
"AF_UNIX path too long". The run's folder is therefore made under a base short enough for the longest socket
path multiprocessing builds in it, whatever TMPDIR the grader was given."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

SUN_PATH_MAX = 107  # bytes of a unix socket path, without the terminating NUL (Linux: sun_path is 108)
RUN_PREFIX = "grader-run-"
# What the run's folder adds below its base, at most: "/grader-run-XXXXXXXX" (mkdtemp's 8 random letters),
# then multiprocessing's "/tmp/pymp-XXXXXXXX/listener-XXXXXXXX" (util.get_temp_dir + arbitrary_address).
_BELOW_BASE = len("/" + RUN_PREFIX + "x" * 8) + len("/tmp/pymp-xxxxxxxx/listener-xxxxxxxx")
_MARGIN = 8  # a few bytes to spare for a Python that names its sockets a little longer
SHORT_BASES = ("/tmp", "/var/tmp", "/dev/shm")


def fits(base: str | os.PathLike[str]) -> bool:
    """Whether every socket path multiprocessing makes in a run folder under `base` fits in sun_path."""
    return len(os.fsencode(os.path.abspath(base))) + _BELOW_BASE + _MARGIN <= SUN_PATH_MAX


def _usable(base: str) -> bool:
    return os.path.isdir(base) and os.access(base, os.W_OK | os.X_OK)


def base(preferred: Path | None = None) -> Path:
    """The folder under which run folders are made: `preferred` (else the temporary folder) if its path is short
    enough, else the first short, writable one of SHORT_BASES (the temporary folder again when none is)."""
    default = str(preferred) if preferred is not None else tempfile.gettempdir()
    if fits(default):
        return Path(default)
    for candidate in SHORT_BASES:
        if fits(candidate) and _usable(candidate):
            return Path(candidate)
    return Path(default)


def make(preferred: Path | None = None) -> Path:
    """A new private run folder (mode 0700, as mkdtemp makes it) with a short path, under `preferred` when that
    is short enough (a batch's private folder for the student)."""
    return Path(tempfile.mkdtemp(prefix=RUN_PREFIX, dir=base(preferred)))
