"""The grading host program of the Ray engine (`python -m grader.commands.ray_host PARENT`, started by each
GradingHost actor of grader/gradebook/ray_engine.py): a clean single-threaded Python with the grader, pytest and
the checks imported, that forks one grading per request line and grades that student with the local batch
engine, whole (time limit, process tree killed, a crash turned into a result). It belongs with the batch
command whose machinery it runs; the engine only knows its module name."""
from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import sys
import traceback
from pathlib import Path
from typing import Any

from grader.commands import batch
from grader.gradebook.book import FILES_DIR, STAGING, Gradebook
from grader.gradebook.submissions import Collected, Submission


# ---- the grading host program, and one student's grading forked from it -------------------------------------------
def serve(parent: int) -> int:
    """`python -m grader.commands.ray_host PARENT`: import once what every grading needs, then for each
    request line on stdin fork a grading (this program is single-threaded: fork is safe here), wait for it and
    reply {"exitcode": N}. Dies with the Ray worker PARENT, and its grading with it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the batch's business; the batch ends us
    _die_with(parent)  # SIGTERM, default action: we die, and the grading is told by its own parent-death signal
    from grader.judging import session

    batch.preload([e.number for e in session.select([])])
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = grade_one(request["spec"], Path(request["own"]), Path(request["out"]), os.getppid())
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        sys.stdout.write(json.dumps({"exitcode": os.waitstatus_to_exitcode(status)}) + "\n")
        sys.stdout.flush()
    return 0


def grade_one(spec: dict[str, Any], own: Path, out: Path, host: int) -> int:
    """One student graded by the local engine (time limit, process tree, crash turned into a result) into
    OUT/<student>/; the forked grading's first code: its own signals, output and parent-death signal."""
    signal.signal(signal.SIGTERM, _stop)
    _die_with(host)
    log = os.open(own / "grading.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)  # the host's requests are not ours to read, nor its replies ours to write
    os.dup2(log, 1)
    os.dup2(log, 2)
    collected = Collected(own / FILES_DIR, spec["found"], spec["digests"], spec["notes"], spec["problems"])
    submission = Submission(spec["name"], Path(spec["entry"]), spec["kind"])
    task = batch.StudentTask(submission, collected, spec["digest"], spec["seed"], spec["numbers"],
                             spec["start_method"], out)
    options = batch.BatchOptions(submissions=submission.path.parent, out=out, numbers=spec["numbers"], workers=1,
                                 start_method=spec["start_method"], time_limit=spec["time_limit"])
    (out / STAGING).mkdir()
    summary = batch.BatchSummary(Gradebook([], [], {}))
    try:
        batch._grade_all([task], options, summary, batch.Progress(1, io.StringIO(), terminal=False))
    except KeyboardInterrupt:
        return 130
    except BaseException:  # noqa: BLE001 - told to the driver through the log: this student has no verdict
        traceback.print_exc()
        sys.stderr.flush()
        return 1
    return 0


def _stop(signum: int, frame: Any) -> None:
    """SIGTERM (the host died with its worker, or the grading ran past its margin): stop now, tree killed."""
    raise KeyboardInterrupt


def _die_with(parent: int) -> None:
    """Be sent SIGTERM when `parent` dies, even by SIGKILL; exit at once if it already has."""
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:
        os._exit(1)


if __name__ == "__main__":
    sys.exit(serve(int(sys.argv[1])))
