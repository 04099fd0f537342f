"""Which grader graded a stored result: a hash of everything in the grader that can change a grade, so that
a batch grades again what another grader graded, on this machine or on another node of a cluster."""
from __future__ import annotations

import hashlib
from pathlib import Path

import grader

# The grader's files that cannot change a grade: reports, the command line, batch and CI plumbing.
GRADING_EXCLUDED = ("render/", "templates/", "lms/", "cli.py", "batch.py", "gradebook.py", "submissions.py", "workers.py",
                     "ci.py", "__main__.py")


def grader_fingerprint(package: Path | None = None) -> str:
    """A hash of everything in the grader that can change a grade: its version, checks, probe and core."""
    package = package or Path(grader.__file__).parent
    digest = hashlib.sha256(grader.__version__.encode())
    for path in sorted(package.rglob("*")):
        rel = path.relative_to(package).as_posix()
        if path.suffix not in (".py", ".toml") or "__pycache__" in rel or rel.startswith(GRADING_EXCLUDED):
            continue
        digest.update(rel.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]
