"""Grading in worker processes: each job runs in a process of its own, a few at a time, and one that crashes,
hangs past its time limit or is interrupted is killed with its whole tree; what it leaves (a result, a traceback)
is handed back. `grade_isolated` grades one folder this way, so a broken grading still yields every check."""
from __future__ import annotations

import importlib
import json
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import tempfile
import time
import traceback
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import grader
from grader.course import Exercise
from grader.gradebook.book import atomic_write
from grader.judging.request import Request
from grader.results import ERROR, CheckResult, ExerciseResult, Report

DEFAULT_TIME_LIMIT = 600.0
POLL = 0.2


@dataclass
class Job:
    """One unit of work for a worker process: grade one student (or, for `grader ci`, one submission)."""

    key: str
    target: Callable[..., None]
    args: tuple[Any, ...]
    error_path: Path
    process: Any = None
    started: float = 0.0


@dataclass
class JobEnd:
    """How a worker ended: its exit code, whether it was stopped for taking too long, and its traceback."""

    job: Job
    exitcode: int | None
    timed_out: bool
    elapsed: float
    error: str = ""


def run_jobs(jobs: list[Job], workers: int, time_limit: float, on_end: Callable[[JobEnd], None],
             tick: Callable[[], None] = lambda: None) -> None:
    """Run every job in a worker process of its own, `workers` at a time; a job over `time_limit` is killed.

    Ctrl-C (KeyboardInterrupt) kills every running worker with its whole tree before it propagates."""
    import psutil

    from grader.running import preload, proctree

    preload.before_student_code()  # this process renders after its workers ran student code
    proctree.become_subreaper()
    before = {c.pid for c in psutil.Process().children()}
    pending, running = deque(jobs), {}
    context = _context()
    try:
        while pending or running:
            while pending and len(running) < workers:
                job = pending.popleft()
                _start(job, context)
                running[job.process.sentinel] = job
            ready = multiprocessing.connection.wait(list(running), timeout=POLL)
            for sentinel, job in list(running.items()):
                elapsed = time.monotonic() - job.started
                if sentinel in ready:
                    job.process.join()
                elif elapsed > time_limit:
                    _kill_worker(job)
                else:
                    continue
                del running[sentinel]
                _kill_strays(before, {j.process.pid for j in running.values()})
                on_end(_ending(job, elapsed, sentinel not in ready))
            tick()
    finally:
        for job in running.values():
            _kill_worker(job)
        if running:
            _kill_strays(before, set())


def _start(job: Job, context: Any) -> None:
    """Start a job's worker process (output flushed first, so that the fork does not repeat it)."""
    sys.stdout.flush()
    sys.stderr.flush()
    job.error_path.unlink(missing_ok=True)
    job.process = context.Process(target=_worker_entry, args=(os.getpid(), str(job.error_path), job.target, job.args),
                                  name=f"grader-worker {job.key}")
    job.started = time.monotonic()
    job.process.start()


def _worker_entry(parent: int, error_path: str, target: Callable[..., None], args: tuple[Any, ...]) -> None:
    """The first code of a worker: Ctrl-C is the batch's business, and a failure leaves its traceback behind."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _die_with_parent(parent)
    try:
        target(*args)
    except BaseException:  # noqa: BLE001 - anything at all: the parent reports it for this student only
        Path(error_path).write_text(traceback.format_exc())
        os._exit(1)


def _die_with_parent(parent: int) -> None:
    """Ask the kernel to kill this worker when the batch dies (even by SIGKILL), so no worker is ever orphaned."""
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:
        os._exit(1)


def _context() -> Any:
    """fork where it exists (a worker starts in milliseconds with everything imported), else spawn."""
    return multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")


def _ending(job: Job, elapsed: float, timed_out: bool) -> JobEnd:
    """How a job's worker ended, with the traceback it left if it failed."""
    error = job.error_path.read_text(errors="replace") if job.error_path.exists() else ""
    job.error_path.unlink(missing_ok=True)
    return JobEnd(job, None if timed_out else job.process.exitcode, timed_out, round(elapsed, 3), error)


def _kill_worker(job: Job) -> None:
    """Freeze, then kill the worker and every process under it (student runs included), and collect it."""
    import psutil

    from grader.running import proctree

    pid = job.process.pid
    try:
        procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    except psutil.Error:
        procs = []
    for sig in (signal.SIGSTOP, signal.SIGKILL):
        for proc in procs:
            try:
                os.kill(proc.pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
    job.process.join(5)
    proctree.reap_orphans({p.pid for p in multiprocessing.active_children()})


def _kill_strays(before: set[int], workers: set[int]) -> None:
    """Kill and collect any process handed to us (we are child subreaper) by a worker that died: none may stay."""
    import psutil

    from grader.running import proctree

    try:
        strays = [c for c in psutil.Process().children() if c.pid not in before and c.pid not in workers]
    except psutil.Error:
        return
    if strays:
        proctree.kill_tree(lambda: [p for s in strays for p in [s, *proctree.descendants(s.pid)]])
    proctree.reap_orphans(before | workers)


def why_stopped(end: JobEnd, time_limit: float) -> str:
    """In plain words, why a worker gave no result."""
    if end.timed_out:
        return f"grading was stopped after {time_limit:g} s"
    if end.error:
        return "the grader failed: " + end.error.strip().splitlines()[-1][:200]
    code = end.exitcode
    how = f"killed by signal {signal.Signals(-code).name}" if code and code < 0 and -code in signal.valid_signals() \
        else f"exit code {code}"
    return f"grading crashed ({how})"


def cpu_count() -> int:
    """The CPUs this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


STUDENT_CPUS_PER_GRADING = 2  # a grading keeps about two CPUs busy: the grader's supervision and the student's tree


def default_workers() -> int:
    """Gradings at once by default: as many as the CPUs hold without oversubscribing them, so that no student's
    run is judged on a machine slowed by the batch itself (a correct program must never fail from load)."""
    return max(1, cpu_count() // STUDENT_CPUS_PER_GRADING)


def grade_isolated(request: Request, time_limit: float = DEFAULT_TIME_LIMIT) -> Report:
    """The request graded in a worker process: a crash or a hang of the grading itself still yields every check."""
    from grader.judging import session

    with tempfile.TemporaryDirectory(prefix="grader-ci-") as tmp:
        out = Path(tmp) / "report.json"
        job = Job("submission", _write_report_file, (session.judge, (request,), str(out)), Path(tmp) / "error.txt")
        ends: list[JobEnd] = []
        run_jobs([job], 1, time_limit, ends.append)
        if out.exists():
            return Report.from_dict(json.loads(out.read_text()))
        end = ends[0]
        return failed_report(request, f"The grading stopped before this check could run "
                                      f"({why_stopped(end, time_limit)}).", end.error)


def _write_report_file(target: Callable[..., Report], args: tuple[Any, ...], path: str) -> None:
    """Worker body for `grade_isolated`: grade, then hand the report back through a file."""
    report = target(*args)
    atomic_write(Path(path), json.dumps(report.to_dict(), default=str))


def failed_report(request: Request, why: str, details: str = "") -> Report:
    """A report where every check of every exercise is a grader error: grading stopped before any verdict."""
    report = Report(seed=request.seed, start_method=request.method_label, submission=request.submission_name,
                    grader_version=grader.__version__, command=request.replay_command())
    for exercise in request.exercises:
        checks = planned_checks(exercise)
        for check in checks:
            check.message = f"{why} This is not your fault."
            check.traceback = details[-4000:] or None
            check.seed = request.seed
        report.exercises.append(ExerciseResult(exercise.number, exercise.name, exercise.title,
                                               request.report_file(exercise), checks))
    return report


def planned_checks(exercise: Exercise) -> list[CheckResult]:
    """The checks of an exercise as they would be reported, without running any (their titles and points)."""
    try:
        module = importlib.import_module(exercise.checks)
    except Exception:  # noqa: BLE001 - a check module that cannot even be imported: one placeholder stands in
        return [CheckResult(id=f"ex{exercise.number:02d}::collect", exercise=exercise.number,
                            title="The checks could be loaded", outcome=ERROR, points=0.0,
                            max_points=float(exercise.points))]
    checks = []
    for name, value in vars(module).items():
        marks = [m for m in getattr(value, "pytestmark", []) if getattr(m, "name", "") == "grader_check"]
        if name.startswith("check_") and callable(value) and marks:
            kwargs = marks[0].kwargs
            checks.append(CheckResult(id=f"ex{exercise.number:02d}::{name}", exercise=exercise.number,
                                      title=kwargs["title"], outcome=ERROR, points=0.0,
                                      max_points=float(kwargs["points"]), hint=kwargs.get("hint", "")))
    return checks
