"""Batch grading for instructors: every student of a class folder graded in parallel, each in a worker process
of its own and in a temporary copy of their files, into a gradebook (grades.csv, results.json, a class summary
page and a folder per student) that a second run resumes and that shards graded on several machines merge into.

`grader batch SUBMISSIONS --out OUT [-j N] [--exercises 1,3] [--force] [--shard I/N] [--engine ray [--address A]]`
`grader merge OUT1 OUT2 ... --out OUT`

A student's result is written atomically into OUT/<student>/ as soon as they are graded, with a content hash
of their exercise files and of the grader: a rerun skips every student whose hash did not change, so a batch
that was interrupted (Ctrl-C, a killed process) resumes where it stopped. The gradebook files are replaced
atomically at the end of a batch, never left half-written."""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import psutil

from grader.course import Exercise
from grader.gradebook.book import (FILES_DIR, RESULT_FILE, STAGING, BatchError, Gradebook, StudentResult, atomic_write,
                              exclusive, exercise_meta, install, merge, read_result, summarize, write_gradebook)
from grader.results import Report
from grader.gradebook import engines
from grader.gradebook.fingerprint import grader_fingerprint
from grader.gradebook.summary import render as summary_page
from grader.gradebook.submissions import Collected, Submission, collect, content_hash, shard, student_seed
from grader.gradebook.workers import DEFAULT_TIME_LIMIT, Job, JobEnd, default_workers, planned_checks, why_stopped
from grader.judging.request import METHOD_CHOICES, Request
from grader.lms import batching as lms

TEMP_PREFIX = "grader-batch-"
EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE = 0, 1, 2


# ---- grading one student, in a worker process ---------------------------------------------------------------------
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


def student_request(task: StudentTask) -> Request:
    """The grading of one student: their private copy, named in reasons by bare file names, in the report as
    kept in the gradebook (<student>/files/), replayed from the gradebook folder; their runs keep their
    temporary files in the student's private folder and see neither the other students' private folders, nor
    the class folder, nor the gradebook."""
    from grader.judging import session

    own = task.collected.folder.parent
    kept = f"{task.submission.name}/{FILES_DIR}"
    exercises = session.select(task.numbers)
    others = [d.resolve() for d in own.parent.iterdir() if d != own]
    return Request.build(exercises, task.collected.folder, task.seed, task.start_method,
                         name=str(task.submission.path), shown="", replay_submission=kept,
                         files={e.filename: f"{kept}/{e.filename}" for e in exercises},
                         hidden=(*others, task.submission.path.parent.resolve(), task.out.resolve()),
                         temp_root=own / "tmp")


def grade_student(task: StudentTask) -> None:
    """Worker body: grade one student and write OUT/<student>/ through a staging folder (result.json last)."""
    from grader.judging import session

    request = student_request(task)
    request.temp_root.mkdir(exist_ok=True)  # type: ignore[union-attr]
    started = time.monotonic()
    report = session.judge(request)
    result = new_result(task)
    result.duration = round(time.monotonic() - started, 3)
    holder = Path(tempfile.mkdtemp(prefix=f"{task.submission.name}-", dir=task.out / STAGING))
    _write_student(holder, task, report, result)
    install(holder / task.submission.name, task.out / task.submission.name)
    holder.rmdir()


def _write_student(holder: Path, task: StudentTask, report: Report, result: StudentResult) -> None:
    """The student's folder, holder/<student>/: the files graded, the reports (HTML, text, JSON) and result.json,
    written last. The report names the files as seen from the gradebook (<student>/files/...), as they are seen
    from the holder."""
    from grader.render import terminal

    stage = holder / task.submission.name
    stage.mkdir()
    shutil.copytree(task.collected.folder, stage / FILES_DIR, symlinks=True)
    with contextlib.chdir(holder):
        result.has_html = _write_html(report, Path(task.submission.name))
        atomic_write(Path(task.submission.name, "report.txt"), terminal.render(report, color=False), durable=False)
    data = report.to_dict()  # once: it copies every event of every run
    summarize(result, report, data)
    atomic_write(stage / "report.json", json.dumps(data, separators=(",", ":"), default=str), durable=False)
    atomic_write(stage / RESULT_FILE, json.dumps(result.to_dict(), indent=1))


def new_result(task: StudentTask) -> StudentResult:
    """A result with what is known before grading: the entry, the hash, the files and their notes."""
    collected = task.collected
    return StudentResult(name=task.submission.name, entry=str(task.submission.path), kind=task.submission.kind,
                         digest=task.digest, problems=list(collected.problems), notes=list(collected.notes),
                         seed=task.seed, found=dict(collected.found), student=dict(task.submission.meta))


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


# ---- progress -----------------------------------------------------------------------------------------------------
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


# ---- a batch ------------------------------------------------------------------------------------------------------
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
    lms: lms.LmsOptions = field(default_factory=lms.LmsOptions)  # roster, assignment, extensions
    bom: bool = False  # grades.csv starts with a byte order mark (for Excel)
    engine: str = "local"  # where the gradings run (grader.gradebook.engines)
    address: str | None = None  # of the Ray cluster to join (engine "ray"); None: RAY_ADDRESS, else one of our own


@dataclass
class BatchSummary:
    """What a batch did: how many students it graded, reused and could not grade, and the gradebook."""

    book: Gradebook
    graded: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    duration: float = 0.0
    found: Any = None  # grader.lms.downloads.Discovered: the LMS, who is not on the roster, who handed nothing

    @property
    def problems(self) -> list[StudentResult]:
        """The students without a reliable grade because of the grader (not of their code)."""
        return [s for s in self.book.students if s.grader_problem]


def run_batch(options: BatchOptions, progress_stream: Any = None, terminal: bool | None = None) -> BatchSummary:
    """Grade every student of options.submissions (or a shard of them) into options.out."""
    from grader.judging import session

    started = time.monotonic()
    assignment = lms.assignment_of(options.lms)
    exercises = session.select(options.numbers or (list(assignment.exercises) if assignment else []))
    _check_folders(options)
    for exercise in exercises:  # imported once here, so that every worker starts with them loaded
        planned_checks(exercise)
    found = lms.students_of(options.submissions, options.out, options.lms)
    students, ignored = found.students, found.ignored
    if options.shard:
        students = shard(students, *options.shard)
    settings = {"exercises": [e.number for e in exercises], "seed": options.seed, "start_method": options.start_method,
                "grader": options.fingerprint or grader_fingerprint()}
    summary = BatchSummary(Gradebook(exercise_meta(exercises), [], settings,
                                     _shard_info(options.shard)), ignored=ignored, found=found)
    _remove_stale_copies()
    with exclusive(options.out), tempfile.TemporaryDirectory(prefix=f"{TEMP_PREFIX}{os.getpid()}-") as tmp:
        (options.out / STAGING).mkdir(exist_ok=True)
        tasks = _plan(students, exercises, settings, options, Path(tmp), summary)
        _grade_all(tasks, options, summary, Progress(len(tasks), progress_stream, terminal))
        summary.book.students = [r for s in students if (r := read_result(options.out / s.name)) is not None]
        lms.apply_lateness(summary.book, assignment, options.lms.extensions)
        write_gradebook(options.out, summary.book, summary_page, options.bom)
        shutil.rmtree(options.out / STAGING, ignore_errors=True)
    summary.duration = round(time.monotonic() - started, 3)
    return summary


def _remove_stale_copies() -> None:
    """Remove the temporary copies left by a batch that was killed (its pid is gone): students' files."""
    for folder in Path(tempfile.gettempdir()).glob(f"{TEMP_PREFIX}*"):
        pid = folder.name.removeprefix(TEMP_PREFIX).split("-", 1)[0]
        if pid.isdigit() and not psutil.pid_exists(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)



def _check_folders(options: BatchOptions) -> None:
    """Refuse, in one line, folders that cannot work: no class folder, a gradebook inside it."""
    if not options.submissions.is_dir() and not (options.submissions.is_file()
                                                 and options.submissions.suffix.lower() == ".zip"):
        raise BatchError(f"{options.submissions}: no such folder (nor an LMS download .zip)")
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
        engine = engines.select(options.engine, options.address)
        engine(jobs, options.workers or default_workers(), options.time_limit, ended, progress.tick)
    finally:
        progress.close()


def preload(numbers: list[int]) -> None:
    """Import once, in the batch process, what every worker needs (pytest, the plugin, the renderers, the
    check modules): forked workers inherit it, instead of paying about 0.2 s of imports per student."""
    import importlib

    from grader.judging import plugin, session  # noqa: F401 - the plugin brings the harness and the runner
    from grader.render import terminal  # noqa: F401
    from grader.running import preload

    preload.before_student_code()  # what the renderers load late, loaded before any student code

    with contextlib.suppress(ImportError):
        from grader.render import html  # noqa: F401
    for exercise in session.select(numbers):
        with contextlib.suppress(Exception):  # a broken check module is reported by the grading itself
            importlib.import_module(exercise.checks)


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


# ---- the command line ---------------------------------------------------------------------------------------------
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
    batch.add_argument("submissions", type=Path, metavar="SUBMISSIONS",
                       help="folder with one entry per student, or a Canvas, Moodle, GitHub Classroom or Gradescope "
                            "download (folder or .zip)")
    batch.add_argument("--out", type=Path, required=True, help="the gradebook folder (created, or resumed)")
    batch.add_argument("-j", "--jobs", type=_positive, default=0, metavar="N",
                       help="students graded at once (default: half the CPUs, at least 1: no oversubscription)")
    batch.add_argument("--exercises", type=_exercise_list, default=[], metavar="1,3", help="only these exercises")
    batch.add_argument("--force", action="store_true", help="grade every student again, even when unchanged")
    batch.add_argument("--shard", type=_shard_arg, metavar="I/N", help="grade only share I of N (for a CI matrix)")
    batch.add_argument("--seed", type=int, default=0, help="base seed of the students' runs (default 0)")
    batch.add_argument("--start-method", choices=METHOD_CHOICES, default="all",
                       help="multiprocessing start method(s) for student code (default: all three; a check "
                            "passes only under every one)")
    batch.add_argument("--time-limit", type=float, default=DEFAULT_TIME_LIMIT, metavar="S",
                       help=f"stop grading a student after S seconds (default {DEFAULT_TIME_LIMIT:g})")
    batch.add_argument("--roster", type=Path, metavar="FILE",
                       help="CSV of the class (id, name, email, section, LMS ids): names students by their id")
    batch.add_argument("--assignment", metavar="NAME", help="grade this assignment of course.toml: its exercises, "
                                                            "due date and late policy")
    batch.add_argument("--extensions", type=Path, metavar="FILE", help="CSV of per-student due dates "
                                                                       "(student, due or days)")
    batch.add_argument("--bom", action="store_true", help="start grades.csv with a byte order mark (Excel on Windows)")
    batch.add_argument("--engine", choices=engines.ENGINES, default="local",
                       help="where the gradings run: local worker processes (default), or a Ray cluster")
    batch.add_argument("--address", metavar="ADDR", help="--engine ray: join the Ray cluster at ADDR (default: "
                       "RAY_ADDRESS, else a cluster of -j CPUs started and stopped with the batch)")
    merge_cmd = commands.add_parser("merge", help="join the gradebooks of batch shards into one")
    merge_cmd.add_argument("inputs", type=Path, nargs="+", metavar="OUT", help="gradebook folders of the shards")
    merge_cmd.add_argument("--out", type=Path, required=True, help="the merged gradebook folder")


def cmd_batch(args: argparse.Namespace) -> int:
    """`grader batch`: 0 every student graded, 1 some could not be (see the status column), 2 usage error."""
    options = BatchOptions(args.submissions, args.out, args.exercises, args.jobs, args.force, args.shard, args.seed,
                           args.start_method, args.time_limit,
                           lms=lms.LmsOptions(args.roster, args.assignment, args.extensions), bom=args.bom,
                           engine=args.engine, address=args.address)
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
        print(f"ignored (not a student's submission): {', '.join(summary.ignored)}")
    found = summary.found
    if found is not None and found.lms != "folders":
        print(f"read as a {found.lms} download")
    if found is not None and found.unmatched:
        print(f"not on the roster (graded under the LMS's name): {', '.join(found.unmatched)}")
    if found is not None and found.absent:
        print(f"on the roster without a submission: {', '.join(p.id for p in found.absent)}")
    print(f"gradebook: {options.out / 'grades.csv'}   summary: {options.out / 'index.html'}")


def cmd_merge(args: argparse.Namespace) -> int:
    """`grader merge`: 0 merged, 1 merged with a shard missing, 2 usage error."""
    try:
        book, warnings = merge(args.inputs, args.out, summary_page)
    except BatchError as exc:
        print(f"grader: {exc}", file=sys.stderr)
        return EXIT_USAGE
    for warning in warnings:
        print(f"grader: warning: {warning}", file=sys.stderr)
    print(f"merged {len(args.inputs)} gradebooks: {len(book.students)} students into {args.out / 'grades.csv'}")
    return EXIT_PROBLEMS if warnings else EXIT_OK


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {"batch": cmd_batch, "merge": cmd_merge}
