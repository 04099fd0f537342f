"""Batch grading for instructors: every student of a class folder graded in parallel, each in a worker process
of its own and in a temporary copy of their files, into a gradebook (grades.csv, results.json, a class summary
page and a folder per student) that a second run resumes and that shards graded on several machines merge into.

`grader batch SUBMISSIONS --out OUT [-j N] [--exercises 1,3] [--force] [--shard I/N]`
`grader merge OUT1 OUT2 ... --out OUT`

A student's result is written atomically into OUT/<student>/ as soon as they are graded, with a content hash
of their exercise files and of the grader: a rerun skips every student whose hash did not change, so a batch
that was interrupted (Ctrl-C, a killed process) resumes where it stopped. The gradebook files are replaced
atomically at the end of a batch, never left half-written."""
from __future__ import annotations

import argparse
import contextlib
import csv
import hashlib
import importlib
import io
import json
import multiprocessing
import multiprocessing.connection
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback
import zipfile
import zlib
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterator

import grader
from grader.course import Exercise
from grader.results import ERROR, CheckResult, ExerciseResult, Report

FORMAT = "grader-batch"
FORMAT_VERSION = 1
RESULT_FILE = "result.json"
FILES_DIR = "files"
STAGING = ".staging"
LOCK = ".lock"
TEMP_PREFIX = "grader-batch-"
GRADEBOOK_FILES = ("grades.csv", "results.json", "index.html")
RESERVED_NAMES = {*GRADEBOOK_FILES, STAGING}
FILE_LIMIT = 4 * 1024 * 1024  # bytes kept of one exercise file: the harness refuses anything over 2 MB itself
SKIPPED_DIRS = {"__MACOSX", "__pycache__", "node_modules", "venv", ".venv"}
DEFAULT_TIME_LIMIT = 600.0
POLL = 0.2
# The parts of the grader whose change can change a grade (a change elsewhere, e.g. in a renderer, does not).
_GRADING_EXCLUDED = ("render/", "templates/", "cli.py", "batch.py", "ci.py", "__main__.py")

EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE = 0, 1, 2


class BatchError(Exception):
    """A usage problem of a batch or a merge, told to the instructor in one line (exit code 2)."""


# ---- submissions: discovery, collection of exercise files, content hash ----------------------------------------
@dataclass(frozen=True)
class Submission:
    """One entry of the class folder: a student's folder or .zip."""

    name: str
    path: Path
    kind: str  # "folder" or "zip"


@dataclass
class Collected:
    """A submission's exercise files copied flat into `folder`, where each was found, and what to tell about it."""

    folder: Path
    found: dict[str, str] = field(default_factory=dict)  # file name -> path inside the submission
    digests: dict[str, str] = field(default_factory=dict)  # file name -> sha256 of what was copied
    notes: list[str] = field(default_factory=list)  # worth knowing, not a problem
    problems: list[str] = field(default_factory=list)  # the status column: why the grade may surprise


def discover(folder: Path, out: Path | None = None) -> tuple[list[Submission], list[str]]:
    """The students of a class folder (a folder or a .zip each, sorted by name) and the entries ignored."""
    entries, ignored = [], []
    for entry in sorted(folder.iterdir(), key=lambda p: p.name):
        if entry.name.startswith(".") or entry.name == "__MACOSX":
            continue
        if out is not None and entry.resolve() == out.resolve():
            continue
        if entry.is_dir():
            entries.append((entry.name, entry, "folder"))
        elif entry.is_file() and entry.suffix.lower() == ".zip":
            entries.append((entry.name[: -len(".zip")], entry, "zip"))
        else:
            ignored.append(entry.name)
    counts: dict[str, int] = {}
    for name, _, _ in entries:
        counts[name] = counts.get(name, 0) + 1
    students = [Submission(_safe_name(name if counts[name] == 1 else path.name), path, kind)
                for name, path, kind in entries]
    return students, ignored


def _safe_name(name: str) -> str:
    """A student's folder name in the gradebook: never one of the gradebook's own files."""
    return f"student-{name}" if name in RESERVED_NAMES or not name.strip(". ") else name


def collect(submission: Submission, exercises: list[Exercise], dest: Path) -> Collected:
    """Copy the submission's exercise files, found by name anywhere inside it, flat into `dest`."""
    dest.mkdir(parents=True, exist_ok=True)
    collected = Collected(dest)
    wanted = {e.filename for e in exercises}
    if submission.kind == "zip":
        _collect_zip(submission.path, wanted, collected)
    else:
        _collect_folder(submission.path, wanted, collected)
    missing = [e.filename for e in exercises if e.filename not in collected.found]
    if len(missing) == len(exercises) and not any(p.startswith("unreadable") for p in collected.problems):
        collected.problems.append("no exercise files")
    elif missing and len(missing) < len(exercises):
        collected.problems.append("missing " + ", ".join(missing))
    return collected


def _pick(name: str, candidates: list[str], collected: Collected) -> str:
    """Of several files with the same name, the one nearest the top (then the first by path); say so."""
    chosen = min(candidates, key=lambda rel: (rel.count("/"), rel))
    if len(candidates) > 1:
        others = ", ".join(sorted(c for c in candidates if c != chosen))
        collected.notes.append(f"{len(candidates)} files named {name}: graded {chosen}, ignored {others}")
    return chosen


def _collect_folder(root: Path, wanted: set[str], collected: Collected) -> None:
    """Find the wanted files anywhere in a folder (hidden and junk folders skipped, links never followed)."""
    candidates: dict[str, list[str]] = {}
    for folder, dirs, files in os.walk(root, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in SKIPPED_DIRS)
        for name in files:
            if name in wanted:
                rel = Path(folder, name).relative_to(root).as_posix()
                candidates.setdefault(name, []).append(rel)
    for name, paths in sorted(candidates.items()):
        rel = _pick(name, paths, collected)
        _copy_member(root, rel, collected.folder / name, collected)
        if name in collected.digests:
            collected.found[name] = rel


def _copy_member(root: Path, rel: str, target: Path, collected: Collected) -> None:
    """Copy one file of a folder submission; a link out of the submission stays a link (the harness refuses it)."""
    source = root / rel
    if source.is_symlink():
        resolved = source.resolve()
        inside = resolved.is_file() and (root.resolve() == resolved.parent or root.resolve() in resolved.parents)
        if not inside:
            os.symlink(resolved, target)
            collected.digests[target.name] = "link:" + hashlib.sha256(str(resolved).encode()).hexdigest()
            collected.notes.append(f"{rel} is a link to {resolved}, outside the submission")
            return
        source = resolved
    if not source.is_file():  # a named pipe or a device would block or flood the grader: never open one
        collected.notes.append(f"{rel} is not a regular file: not graded")
        return
    with open(source, "rb") as f:
        data = f.read(FILE_LIMIT)
    target.write_bytes(data)
    collected.digests[target.name] = hashlib.sha256(data).hexdigest()


def _collect_zip(path: Path, wanted: set[str], collected: Collected) -> None:
    """Read the exercise files out of a zip without extracting anything else (no path ever comes from the zip)."""
    try:
        with zipfile.ZipFile(path) as archive:
            candidates: dict[str, list[zipfile.ZipInfo]] = {}
            for info in archive.infolist():
                parts = PurePosixPath(info.filename.replace("\\", "/")).parts
                if info.is_dir() or not parts or any(p.startswith(".") or p in SKIPPED_DIRS for p in parts[:-1]):
                    continue
                if parts[-1] in wanted:
                    candidates.setdefault(parts[-1], []).append(info)
            for name, infos in sorted(candidates.items()):
                by_path = {i.filename.replace("\\", "/"): i for i in infos}
                rel = _pick(name, list(by_path), collected)
                with archive.open(by_path[rel]) as member:
                    data = member.read(FILE_LIMIT)
                (collected.folder / name).write_bytes(data)
                collected.digests[name] = hashlib.sha256(data).hexdigest()
                collected.found[name] = rel
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, RuntimeError, NotImplementedError, EOFError,
            ValueError, zlib.error) as exc:
        collected.problems.append(f"unreadable zip ({exc})")


def grader_fingerprint(package: Path | None = None) -> str:
    """A hash of everything in the grader that can change a grade: its version, checks, probe and core."""
    package = package or Path(grader.__file__).parent
    digest = hashlib.sha256(grader.__version__.encode())
    for path in sorted(package.rglob("*")):
        rel = path.relative_to(package).as_posix()
        if path.suffix not in (".py", ".toml") or "__pycache__" in rel or rel.startswith(_GRADING_EXCLUDED):
            continue
        digest.update(rel.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def content_hash(collected: Collected, settings: dict[str, Any]) -> str:
    """What a result depends on: the files graded (and what was wrong with them) and the batch's settings."""
    data = {"files": collected.digests, "problems": collected.problems, "settings": settings}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:24]


def student_seed(base: int, name: str, digest: str) -> int:
    """The seed of a student's runs: the same files graded in the same batch get the same runs everywhere."""
    return int.from_bytes(hashlib.sha256(f"{base}/{name}/{digest}".encode()).digest()[:4], "big") % 2**31 or 1


def shard(students: list[Submission], index: int, count: int) -> list[Submission]:
    """The deterministic share `index` (1-based) of `count`: every count-th student by name."""
    ordered = sorted(students, key=lambda s: s.name)
    return [s for i, s in enumerate(ordered) if i % count == index - 1]


# ---- grading one folder, in this process or in a worker process -------------------------------------------
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


def failed_report(exercises: list[Exercise], folder: Path, seed: int, start_method: str | None,
                  why: str, details: str = "") -> Report:
    """A report where every check of every exercise is a grader error: grading stopped before any verdict."""
    from grader import session

    report = Report(seed=seed, start_method=start_method or "default", submission=str(folder),
                    grader_version=grader.__version__,
                    command=session.replay_command([e.number for e in exercises], seed, folder, start_method))
    for exercise in exercises:
        checks = planned_checks(exercise)
        for check in checks:
            check.message = f"{why} This is not your fault."
            check.traceback = details[-4000:] or None
            check.seed = seed
        report.exercises.append(ExerciseResult(exercise.number, exercise.name, exercise.title,
                                               str(folder / exercise.filename), checks))
    return report


def grade_folder(exercises: list[Exercise], folder: Path, seed: int, start_method: str | None) -> Report:
    """session.grade (an exercise whose checks cannot run becomes errors there, never sinking the rest)."""
    from grader import session

    return session.grade(exercises, folder, seed, start_method)


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


def hide_from_students(paths: list[Path]) -> None:
    """In this worker only: student runs under bubblewrap must not see `paths` either (workaround for the core).

    isolation.hidden_paths hides the solutions, the checks and the home folder, but not the class folder, the
    gradebook, nor the other students' copies and run folders in the temporary folder: without this, a
    submission could read (and run) another student's file while the batch grades them side by side."""
    from grader import isolation

    original = isolation.hidden_paths
    extra = [p.resolve() for p in paths]

    def hidden_paths(course_root: Path | None) -> list[Path]:
        """The core's hidden paths, and the batch's."""
        return [*original(course_root), *extra]

    isolation.hidden_paths = hidden_paths  # type: ignore[assignment]


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


def _context() -> Any:
    """fork where it exists (a worker starts in milliseconds with everything imported), else spawn."""
    return multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")


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


def _kill_worker(job: Job) -> None:
    """Freeze, then kill the worker and every process under it (student runs included), and collect it."""
    import psutil

    from grader import proctree

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

    from grader import proctree

    try:
        strays = [c for c in psutil.Process().children() if c.pid not in before and c.pid not in workers]
    except psutil.Error:
        return
    if strays:
        proctree.kill_tree(lambda: [p for s in strays for p in [s, *proctree.descendants(s.pid)]])
    proctree.reap_orphans(before | workers)


def run_jobs(jobs: list[Job], workers: int, time_limit: float, on_end: Callable[[JobEnd], None],
             tick: Callable[[], None] = lambda: None) -> None:
    """Run every job in a worker process of its own, `workers` at a time; a job over `time_limit` is killed.

    Ctrl-C (KeyboardInterrupt) kills every running worker with its whole tree before it propagates."""
    import psutil

    from grader import proctree

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


def _ending(job: Job, elapsed: float, timed_out: bool) -> JobEnd:
    """How a job's worker ended, with the traceback it left if it failed."""
    error = job.error_path.read_text(errors="replace") if job.error_path.exists() else ""
    job.error_path.unlink(missing_ok=True)
    return JobEnd(job, None if timed_out else job.process.exitcode, timed_out, round(elapsed, 3), error)


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


def _write_report_file(target: Callable[..., Report], args: tuple[Any, ...], path: str) -> None:
    """Worker body for `grade_isolated`: grade, then hand the report back through a file."""
    report = target(*args)
    atomic_write(Path(path), json.dumps(report.to_dict(), default=str))


def grade_isolated(exercises: list[Exercise], folder: Path, seed: int, start_method: str | None,
                   time_limit: float = DEFAULT_TIME_LIMIT) -> Report:
    """grade_folder in a worker process: a crash or a hang of the grading itself still yields every check."""
    with tempfile.TemporaryDirectory(prefix="grader-ci-") as tmp:
        out = Path(tmp) / "report.json"
        job = Job("submission", _write_report_file, (grade_folder, (exercises, folder, seed, start_method), str(out)),
                  Path(tmp) / "error.txt")
        ends: list[JobEnd] = []
        run_jobs([job], 1, time_limit, ends.append)
        if out.exists():
            return Report.from_dict(json.loads(out.read_text()))
        end = ends[0]
        return failed_report(exercises, folder, seed, start_method,
                             f"The grading stopped before this check could run ({why_stopped(end, time_limit)}).",
                             end.error)


# ---- one student's result -----------------------------------------------------------------------------------
@dataclass
class StudentResult:
    """What the gradebook knows of one student: where their work came from, its hash, status and scores."""

    name: str
    entry: str
    kind: str
    digest: str
    status: str = "ok"
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    grader_problem: bool = False  # the grader, not the student, is why the grade may be wrong
    retry: bool = False  # no verdict at all (the worker crashed or was stopped): grade again next time
    seed: int = 0
    duration: float = 0.0
    scores: dict[str, float] = field(default_factory=dict)  # "1" -> points, for each exercise graded
    score: float | None = None
    max_score: float = 0.0
    found: dict[str, str] = field(default_factory=dict)
    report: dict[str, Any] | None = None  # the results model, without the bulky evidence
    has_html: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "StudentResult":
        """Rebuild from plain data (unknown keys ignored)."""
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def lean(data: dict[str, Any]) -> dict[str, Any]:
    """A report's plain data without the runs' events, output and stacks (those stay in the student's folder)."""

    def check(values: dict[str, Any]) -> dict[str, Any]:
        """One check without its bulky evidence."""
        evidence = values.get("evidence")
        kept = {k: evidence.get(k) for k in ("status", "duration", "isolation")} if evidence else evidence
        return {**values, "evidence": kept}

    exercises = [{**e, "checks": [check(c) for c in e["checks"]]} for e in data["exercises"]]
    return {**data, "exercises": exercises}


def summarize(result: StudentResult, report: Report, data: dict[str, Any] | None = None) -> None:
    """Fill the scores and the status of a student's result from their report (`data`: its to_dict())."""
    result.scores = {str(e.number): e.score for e in report.exercises}
    result.score, result.max_score = report.score, report.max_score
    broken = [e for e in report.exercises if any(c.outcome == ERROR for c in e.checks)]
    if broken:
        result.grader_problem = True
        result.problems.append("grader error in " + ", ".join(f"ex{e.number:02d}" for e in broken))
    result.status = "; ".join(result.problems) or "ok"
    result.report = lean(data if data is not None else report.to_dict())


@dataclass
class StudentTask:
    """What a worker needs to grade one student and write their folder of the gradebook."""

    submission: Submission
    collected: Collected
    digest: str
    seed: int
    numbers: list[int]
    start_method: str | None
    out: Path


def grade_student(task: StudentTask) -> None:
    """Worker body: grade one student and write OUT/<student>/ through a staging folder (result.json last)."""
    from grader import session

    exercises = session.select(task.numbers)
    _keep_to_own_folder(task)
    started = time.monotonic()
    report = grade_folder(exercises, task.collected.folder, task.seed, task.start_method)
    result = new_result(task)
    result.duration = round(time.monotonic() - started, 3)
    stage = Path(tempfile.mkdtemp(prefix=f"{task.submission.name}-", dir=task.out / STAGING))
    _write_student(stage, task, report, result)
    install(stage, task.out / task.submission.name)


def _write_student(stage: Path, task: StudentTask, report: Report, result: StudentResult) -> None:
    """The student's folder: the files graded, the reports (HTML, text, JSON) and result.json, written last."""
    from grader.render import terminal

    files = stage / FILES_DIR
    shutil.copytree(task.collected.folder, files, symlinks=True)
    relative = f"{task.submission.name}/{FILES_DIR}"
    report.submission = str(task.submission.path)
    report.command = _replay(report, relative)
    rename_paths(report, task.collected.folder, "")
    for exercise in report.exercises:  # the kept copies (the renderers quote their lines): the temporary one goes
        exercise.file = f"{FILES_DIR}/{Path(exercise.file).name}"
    with contextlib.chdir(stage):  # the reports name the files as seen from the student's folder, where they live
        result.has_html = _write_html(report, Path("."))
        atomic_write(Path("report.txt"), terminal.render(report, color=False), durable=False)
    for exercise in report.exercises:  # relative to the gradebook: it can move, and shards compare and merge
        exercise.file = f"{relative}/{Path(exercise.file).name}"
    data = report.to_dict()  # once: it copies every event of every run
    summarize(result, report, data)
    atomic_write(stage / "report.json", json.dumps(data, separators=(",", ":"), default=str), durable=False)
    atomic_write(stage / RESULT_FILE, json.dumps(result.to_dict(), indent=1))


def _keep_to_own_folder(task: StudentTask) -> None:
    """Every temporary file of this student's grading (runs, plans) goes into their private folder, and their
    runs see neither the other students' private folders, nor the class folder, nor the gradebook."""
    own = task.collected.folder.parent
    (own / "tmp").mkdir(exist_ok=True)
    tempfile.tempdir = str(own / "tmp")
    others = [d for d in own.parent.iterdir() if d != own]
    hide_from_students([*others, task.submission.path.parent, task.out])


def new_result(task: StudentTask) -> StudentResult:
    """A result with what is known before grading: the entry, the hash, the files and their notes."""
    collected = task.collected
    return StudentResult(name=task.submission.name, entry=str(task.submission.path), kind=task.submission.kind,
                         digest=task.digest, problems=list(collected.problems), notes=list(collected.notes),
                         seed=task.seed, found=dict(collected.found))


def rename_paths(report: Report, folder: Path, shown: str) -> None:
    """Reasons name the student's file as the checks saw it, in the temporary copy: name it as `shown` instead."""
    prefixes = {str(folder) + os.sep}
    with contextlib.suppress(ValueError):  # another drive (Windows): no relative form
        prefixes.add(os.path.relpath(folder) + os.sep)
    for check in report.all_checks():
        for prefix in prefixes:
            check.message = check.message.replace(prefix, shown)


def _replay(report: Report, files: str) -> str:
    """The command that replays a student's grading from the gradebook folder, on the copies kept there."""
    from grader import session

    return session.replay_command([e.number for e in report.exercises], report.seed, Path(files),
                                  None if report.start_method == "default" else report.start_method)


def _write_html(report: Report, folder: Path) -> bool:
    """The student's HTML report, when the HTML renderer is there (it is optional: the gradebook stands without)."""
    try:
        from grader.render import html
    except ImportError:
        return False
    try:
        html.write_reports(report, folder)
    except Exception:  # noqa: BLE001 - a renderer's failure must not cost the student their grade
        (folder / "html-error.txt").write_text(traceback.format_exc())
        return False
    return True


def install(stage: Path, final: Path) -> None:
    """Replace a student's folder by a complete new one: never a mix of two gradings."""
    old = None
    if final.exists():
        old = Path(tempfile.mkdtemp(prefix=f"{final.name}-old-", dir=final.parent / STAGING))
        os.rmdir(old)
        os.replace(final, old)
    os.replace(stage, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def atomic_write(path: Path, text: str, durable: bool = True) -> None:
    """Write a file so that a reader (or a crash) never sees it half-written; `durable` also survives a power cut."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        if durable:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, path)


def read_result(folder: Path) -> StudentResult | None:
    """A student's stored result, or None when there is none (or it cannot be read: then grade again)."""
    try:
        return StudentResult.from_dict(json.loads((folder / RESULT_FILE).read_text()))
    except (OSError, ValueError, TypeError):
        return None


# ---- the gradebook ------------------------------------------------------------------------------------------
@dataclass
class Gradebook:
    """A class's grades: the exercises, one result per student, and how they were graded."""

    exercises: list[dict[str, Any]]
    students: list[StudentResult]
    settings: dict[str, Any]
    shard: dict[str, int] | None = None
    grader_version: str = grader.__version__

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return {"format": FORMAT, "version": FORMAT_VERSION, "grader_version": self.grader_version,
                "settings": self.settings, "shard": self.shard, "exercises": self.exercises,
                "students": [s.to_dict() for s in self.students]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Gradebook":
        """Rebuild from plain data (unknown keys ignored)."""
        if data.get("format") != FORMAT:
            raise BatchError("not a gradebook written by `grader batch` (results.json has no format 'grader-batch')")
        return cls(exercises=data["exercises"], students=[StudentResult.from_dict(s) for s in data["students"]],
                   settings=data["settings"], shard=data.get("shard"), grader_version=data.get("grader_version", ""))


def exercise_meta(exercises: list[Exercise]) -> list[dict[str, Any]]:
    """The exercises as the gradebook records them (plain data)."""
    return [{"number": e.number, "name": e.name, "title": e.title, "points": e.points} for e in exercises]


def grades_csv(book: Gradebook) -> str:
    """One row per student: each exercise's score, the total, the maximum and a status column."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    numbers = [e["number"] for e in book.exercises]
    writer.writerow(["student", *[f"ex{n:02d}" for n in numbers], "total", "max", "status"])
    for student in book.students:
        scores = [_number(student.scores.get(str(n))) for n in numbers]
        maximum = sum(e["points"] for e in book.exercises)
        writer.writerow([_cell(student.name), *scores, _number(student.score), _number(maximum), student.status])
    return buffer.getvalue()


def _cell(text: str) -> str:
    """A name as a spreadsheet cell: one starting like a formula (=, +, -, @) is never run as one."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _number(value: float | None) -> str:
    """A score as the CSV shows it: 7.5, 10, or empty when there is none."""
    return "" if value is None else f"{value:g}"


def write_gradebook(out: Path, book: Gradebook) -> None:
    """grades.csv, results.json and index.html, each replaced atomically."""
    from grader.render import summary

    book.students.sort(key=lambda s: s.name)
    atomic_write(out / "grades.csv", grades_csv(book))
    atomic_write(out / "results.json", json.dumps(book.to_dict(), indent=1, default=str))
    atomic_write(out / "index.html", summary.render(book))


# ---- progress -----------------------------------------------------------------------------------------------
class Progress:
    """A progress bar with counts and time left on a terminal; one line per finished student otherwise."""

    def __init__(self, total: int, stream: Any = None, terminal: bool | None = None) -> None:
        """Start the bar on a terminal; otherwise lines are printed as students finish."""
        self.stream = stream or sys.stdout
        self.total, self.done = total, 0
        self.terminal = self.stream.isatty() if terminal is None else terminal
        self.bar: Any = None
        if self.terminal and total:
            from rich.console import Console
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress as Bar, TextColumn,
                                       TimeElapsedColumn, TimeRemainingColumn)

            self.bar = Bar(TextColumn("grading"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                           TextColumn("left"), TimeRemainingColumn(), console=Console(file=self.stream),
                           auto_refresh=False, redirect_stdout=False, redirect_stderr=False)
            self.task = self.bar.add_task("grading", total=total)
            self.bar.start()

    def finished(self, result: StudentResult, elapsed: float) -> None:
        """One more student graded: a line above the bar (or on its own) and the bar advanced."""
        self.done += 1
        score = "no score" if result.score is None else f"{result.score:g}/{result.max_score:g}"
        line = f"[{self.done}/{self.total}] {result.name}: {score}, {result.status} ({elapsed:.1f} s)"
        if self.bar is not None:
            self.bar.console.print(line, markup=False, highlight=False)
            self.bar.update(self.task, advance=1)
            self.bar.refresh()
        else:
            print(line, file=self.stream, flush=True)

    def tick(self) -> None:
        """Redraw the bar (time left) while no student finishes."""
        if self.bar is not None:
            self.bar.refresh()

    def close(self) -> None:
        """Stop the bar, leaving its last state on screen."""
        if self.bar is not None:
            self.bar.stop()


# ---- a batch ------------------------------------------------------------------------------------------------
@dataclass
class BatchOptions:
    """Everything `grader batch` was asked to do."""

    submissions: Path
    out: Path
    numbers: list[int] = field(default_factory=list)
    workers: int = 0
    force: bool = False
    shard: tuple[int, int] | None = None
    seed: int = 0
    start_method: str | None = None
    time_limit: float = DEFAULT_TIME_LIMIT
    fingerprint: str | None = None  # of the grader; computed when None


@dataclass
class BatchSummary:
    """What a batch did: how many students it graded, reused and could not grade, and the gradebook."""

    book: Gradebook
    graded: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    duration: float = 0.0

    @property
    def problems(self) -> list[StudentResult]:
        """The students without a reliable grade because of the grader (not of their code)."""
        return [s for s in self.book.students if s.grader_problem]


def run_batch(options: BatchOptions, progress_stream: Any = None, terminal: bool | None = None) -> BatchSummary:
    """Grade every student of options.submissions (or a shard of them) into options.out."""
    from grader import session

    started = time.monotonic()
    exercises = session.select(options.numbers)
    _check_folders(options)
    for exercise in exercises:  # imported once here, so that every worker starts with them loaded
        planned_checks(exercise)
    students, ignored = discover(options.submissions, options.out)
    if options.shard:
        students = shard(students, *options.shard)
    settings = {"exercises": [e.number for e in exercises], "seed": options.seed, "start_method": options.start_method,
                "grader": options.fingerprint or grader_fingerprint()}
    summary = BatchSummary(Gradebook(exercise_meta(exercises), [], settings,
                                     _shard_info(options.shard)), ignored=ignored)
    _remove_stale_copies()
    with exclusive(options.out), tempfile.TemporaryDirectory(prefix=f"{TEMP_PREFIX}{os.getpid()}-") as tmp:
        (options.out / STAGING).mkdir(exist_ok=True)
        tasks = _plan(students, exercises, settings, options, Path(tmp), summary)
        _grade_all(tasks, options, summary, Progress(len(tasks), progress_stream, terminal))
        summary.book.students = [r for s in students if (r := read_result(options.out / s.name)) is not None]
        write_gradebook(options.out, summary.book)
        shutil.rmtree(options.out / STAGING, ignore_errors=True)
    summary.duration = round(time.monotonic() - started, 3)
    return summary


def _remove_stale_copies() -> None:
    """Remove the temporary copies left by a batch that was killed (its pid is gone): students' files."""
    for folder in Path(tempfile.gettempdir()).glob(f"{TEMP_PREFIX}*"):
        pid = folder.name.removeprefix(TEMP_PREFIX).split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def _alive(pid: int) -> bool:
    """Whether a process with this pid exists (then its copies may be in use)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def exclusive(out: Path) -> Iterator[None]:
    """Hold the gradebook folder for this batch alone: two batches writing one gradebook would mix it up."""
    out.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # not on POSIX: no lock (the grader's isolation is Linux's anyway)
        yield
        return
    with open(out / LOCK, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BatchError(f"another grader batch or merge is writing {out}: wait for it to finish") from None
        yield


def _check_folders(options: BatchOptions) -> None:
    """Refuse, in one line, folders that cannot work: no class folder, a gradebook inside it."""
    if not options.submissions.is_dir():
        raise BatchError(f"{options.submissions}: no such folder")
    out, subs = options.out.resolve(), options.submissions.resolve()
    if out == subs or subs in out.parents:
        raise BatchError(f"--out {options.out} is inside the submissions folder: put the gradebook elsewhere")
    if options.out.exists() and not options.out.is_dir():
        raise BatchError(f"--out {options.out} exists and is not a folder")


def _shard_info(value: tuple[int, int] | None) -> dict[str, int] | None:
    """The shard as results.json records it."""
    return {"index": value[0], "count": value[1]} if value else None


def _plan(students: list[Submission], exercises: list[Exercise], settings: dict[str, Any], options: BatchOptions,
          tmp: Path, summary: BatchSummary) -> list[StudentTask]:
    """The students to grade now: those without a stored result for the same files and grader (all with --force)."""
    tasks = []
    for index, student in enumerate(students):
        collected = collect(student, exercises, tmp / str(index) / FILES_DIR)  # tmp/i: the student's private folder
        digest = content_hash(collected, settings)
        stored = read_result(options.out / student.name)
        if not options.force and stored is not None and stored.digest == digest and not stored.retry:
            summary.reused.append(student.name)
            continue
        seed = student_seed(options.seed, student.name, digest)
        tasks.append(StudentTask(student, collected, digest, seed, settings["exercises"], options.start_method,
                                 options.out))
    return tasks


def _grade_all(tasks: list[StudentTask], options: BatchOptions, summary: BatchSummary, progress: Progress) -> None:
    """Grade the tasks in worker processes; a worker that crashes or is stopped still leaves a result."""
    by_key = {t.submission.name: t for t in tasks}
    staging = options.out / STAGING

    def ended(end: JobEnd) -> None:
        """A worker ended: keep its result, or record why there is none."""
        task = by_key[end.job.key]
        result = read_result(options.out / task.submission.name) if end.exitcode == 0 else None
        if result is None or result.digest != task.digest:
            result = _no_verdict(task, end, options.time_limit)
        summary.graded.append(task.submission.name)
        progress.finished(result, end.elapsed)

    jobs = [Job(t.submission.name, grade_student, (t,), staging / f"{i}.error") for i, t in enumerate(tasks)]
    if tasks:
        preload(sorted({n for t in tasks for n in t.numbers}))
    try:
        run_jobs(jobs, options.workers or cpu_count(), options.time_limit, ended, progress.tick)
    finally:
        progress.close()


def preload(numbers: list[int]) -> None:
    """Import once, in the batch process, what every worker needs (pytest, the plugin, the renderers, the
    check modules): forked workers inherit it, instead of paying about 0.2 s of imports per student."""
    import importlib

    from grader import plugin, session  # noqa: F401 - the plugin brings the harness and the runner
    from grader.render import terminal  # noqa: F401

    with contextlib.suppress(ImportError):
        from grader.render import html  # noqa: F401
    for exercise in session.select(numbers):
        with contextlib.suppress(Exception):  # a broken check module is reported by the grading itself
            importlib.import_module(exercise.checks)


def cpu_count() -> int:
    """The CPUs this process may use (the default number of workers)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _no_verdict(task: StudentTask, end: JobEnd, time_limit: float) -> StudentResult:
    """The result of a student whose grading gave no verdict: graded again by the next batch."""
    result = new_result(task)
    result.problems.append(why_stopped(end, time_limit))
    result.status, result.grader_problem, result.retry = "; ".join(result.problems), True, True
    result.duration = end.elapsed
    folder = task.out / task.submission.name
    stage = Path(tempfile.mkdtemp(prefix=f"{task.submission.name}-", dir=task.out / STAGING))
    if end.error:
        atomic_write(stage / "error.txt", end.error)
    atomic_write(stage / RESULT_FILE, json.dumps(result.to_dict(), indent=1))
    install(stage, folder)
    return result


# ---- merging shards -----------------------------------------------------------------------------------------
def merge(inputs: list[Path], out: Path) -> tuple[Gradebook, list[str]]:
    """Join the gradebooks of several shards into one; returns it and warnings (e.g. a shard is missing)."""
    books = [_read_book(path) for path in inputs]
    if out.resolve() in {p.resolve() for p in inputs}:
        raise BatchError("--out must be a new folder, not one of the gradebooks being merged")
    first = books[0]
    for path, book in zip(inputs[1:], books[1:]):
        if book.settings != first.settings or book.exercises != first.exercises:
            raise BatchError(f"{path} was graded with other settings (exercises, seed, start method or grader "
                             f"version) than {inputs[0]}: grade every shard with the same command and grader")
    students: dict[str, tuple[StudentResult, Path]] = {}
    for path, book in zip(inputs, books):
        for student in book.students:
            if student.name in students and students[student.name][0].digest != student.digest:
                raise BatchError(f"{student.name} was graded differently in {students[student.name][1]} and {path}")
            if not (path / student.name / RESULT_FILE).is_file():
                raise BatchError(f"{path / student.name} is missing: merge the shards' whole --out folders")
            students[student.name] = (student, path)
    merged = Gradebook(first.exercises, [s for s, _ in students.values()], first.settings, None, first.grader_version)
    with exclusive(out):
        _copy_students(students, out)
        write_gradebook(out, merged)
    return merged, _shard_warnings(books)


def _copy_students(students: dict[str, tuple[StudentResult, Path]], out: Path) -> None:
    """Copy each student's folder from the shard that graded them (through staging: never half a folder)."""
    (out / STAGING).mkdir(exist_ok=True)
    for name, (_, path) in sorted(students.items()):
        stage = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=out / STAGING))
        os.rmdir(stage)
        shutil.copytree(path / name, stage, symlinks=True)
        install(stage, out / name)
    shutil.rmtree(out / STAGING, ignore_errors=True)


def _read_book(path: Path) -> Gradebook:
    """One shard's gradebook, or a BatchError that says why it cannot be merged."""
    try:
        return Gradebook.from_dict(json.loads((path / "results.json").read_text()))
    except OSError:
        raise BatchError(f"{path}: no results.json (is it a folder written by `grader batch --out`?)") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise BatchError(f"{path}/results.json cannot be read: {exc}") from None


def _shard_warnings(books: list[Gradebook]) -> list[str]:
    """Warnings about shards that are missing or cut differently."""
    shards = [b.shard for b in books if b.shard]
    if not shards:
        return []
    counts = {s["count"] for s in shards}
    if len(counts) > 1:
        return [f"the shards were cut in different numbers ({', '.join(map(str, sorted(counts)))})"]
    count = counts.pop()
    missing = sorted(set(range(1, count + 1)) - {s["index"] for s in shards})
    return [f"shard {i}/{count} is missing: its students are not in the gradebook" for i in missing]


# ---- the command line ---------------------------------------------------------------------------------------
def _exercise_list(text: str) -> list[int]:
    """--exercises 1,3 (or ex01,ex03) as a list of numbers."""
    try:
        return [int(part.strip().removeprefix("ex")) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of exercise numbers such as 1,3") from None


def _shard_arg(text: str) -> tuple[int, int]:
    """--shard I/N with 1 <= I <= N."""
    index, _, count = text.partition("/")
    try:
        value = int(index), int(count)
    except ValueError:
        value = (0, 0)
    if not 1 <= value[0] <= value[1]:
        raise argparse.ArgumentTypeError(f"{text!r}: a shard is I/N with 1 <= I <= N, e.g. 2/4")
    return value


def _positive(text: str) -> int:
    """-j N with N >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def add_arguments(commands: Any) -> None:
    """Register `batch` and `merge` with the grader's command line."""
    batch = commands.add_parser("batch", help="grade a whole class: one folder or .zip per student")
    batch.add_argument("submissions", type=Path, metavar="SUBMISSIONS", help="folder with one entry per student")
    batch.add_argument("--out", type=Path, required=True, help="the gradebook folder (created, or resumed)")
    batch.add_argument("-j", "--jobs", type=_positive, default=0, metavar="N",
                       help="students graded at once (default: the number of CPUs)")
    batch.add_argument("--exercises", type=_exercise_list, default=[], metavar="1,3", help="only these exercises")
    batch.add_argument("--force", action="store_true", help="grade every student again, even when unchanged")
    batch.add_argument("--shard", type=_shard_arg, metavar="I/N", help="grade only share I of N (for a CI matrix)")
    batch.add_argument("--seed", type=int, default=0, help="base seed of the students' runs (default 0)")
    batch.add_argument("--start-method", choices=["fork", "spawn", "forkserver", "all"], default="all",
                       help="multiprocessing start method(s) for student code (default: all three; a check "
                            "passes only under every one)")
    batch.add_argument("--time-limit", type=float, default=DEFAULT_TIME_LIMIT, metavar="S",
                       help=f"stop grading a student after S seconds (default {DEFAULT_TIME_LIMIT:g})")
    merge_cmd = commands.add_parser("merge", help="join the gradebooks of batch shards into one")
    merge_cmd.add_argument("inputs", type=Path, nargs="+", metavar="OUT", help="gradebook folders of the shards")
    merge_cmd.add_argument("--out", type=Path, required=True, help="the merged gradebook folder")


def cmd_batch(args: argparse.Namespace) -> int:
    """`grader batch`: 0 every student graded, 1 some could not be (see the status column), 2 usage error."""
    options = BatchOptions(args.submissions, args.out, args.exercises, args.jobs, args.force, args.shard, args.seed,
                           args.start_method, args.time_limit)
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        summary = run_batch(options)
    except (BatchError, ValueError) as exc:
        print(f"grader: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"grader: batch interrupted; the students graded so far are kept in {args.out}: run the same "
              "command again to resume", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    _print_summary(summary, options)
    return EXIT_PROBLEMS if summary.problems else EXIT_OK


def _interrupt(signum: int, frame: Any) -> None:
    """SIGTERM stops a batch like Ctrl-C: workers killed, finished students kept."""
    raise KeyboardInterrupt


def _print_summary(summary: BatchSummary, options: BatchOptions) -> None:
    """What the batch did, in a few lines, and where the gradebook is."""
    students = summary.book.students
    print(f"{len(students)} students: {len(summary.graded)} graded, {len(summary.reused)} unchanged since the last "
          f"batch (--force grades them again), {len(summary.problems)} without a reliable grade; "
          f"{summary.duration:.1f} s")
    for student in summary.problems:
        print(f"  {student.name}: {student.status}")
    if summary.ignored:
        print(f"ignored (neither a folder nor a .zip): {', '.join(summary.ignored)}")
    print(f"gradebook: {options.out / 'grades.csv'}   summary: {options.out / 'index.html'}")


def cmd_merge(args: argparse.Namespace) -> int:
    """`grader merge`: 0 merged, 1 merged with a shard missing, 2 usage error."""
    try:
        book, warnings = merge(args.inputs, args.out)
    except BatchError as exc:
        print(f"grader: {exc}", file=sys.stderr)
        return EXIT_USAGE
    for warning in warnings:
        print(f"grader: warning: {warning}", file=sys.stderr)
    print(f"merged {len(args.inputs)} gradebooks: {len(book.students)} students into {args.out / 'grades.csv'}")
    return EXIT_PROBLEMS if warnings else EXIT_OK


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {"batch": cmd_batch, "merge": cmd_merge}


def iter_failures(book: Gradebook) -> Iterator[tuple[StudentResult, dict[str, Any]]]:
    """Every (student, check) that did not pass, for the summary's most common reasons."""
    for student in book.students:
        for exercise in (student.report or {}).get("exercises", []):
            for check in exercise["checks"]:
                if check["outcome"] != "passed":
                    yield student, check
