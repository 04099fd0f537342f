"""The gradebook a batch writes (grades.csv, results.json, index.html and one folder per student), the results it
is made of, how its files are replaced without ever being seen half-written, and how shards' gradebooks merge."""
from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import grader
from grader.atomic import atomic_write
from grader.course import Exercise
from grader.results import ERROR, Report

FORMAT = "grader-batch"
FORMAT_VERSION = 1
RESULT_FILE = "result.json"
FILES_DIR = "files"
STAGING = ".staging"
LOCK = ".lock"
GRADEBOOK_FILES = ("grades.csv", "results.json", "index.html")
RESERVED_NAMES = {*GRADEBOOK_FILES, STAGING}


class BatchError(Exception):
    """A usage problem of a batch or a merge, told to the instructor in one line (exit code 2)."""


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
    student: dict[str, Any] = field(default_factory=dict)  # who and when, as the LMS and the roster said
    penalty: float = 0.0  # points taken off for late work (grader.lms.assignments)
    late: str = ""  # why, in words

    @property
    def id(self) -> str:
        """The student's id as the roster (else the LMS download, else the class folder) gives it."""
        return str((self.student.get("student") or {}).get("id") or self.name)

    @property
    def final(self) -> float | None:
        """The score after the late penalty."""
        return None if self.score is None else max(0.0, round(self.score - self.penalty, 6))

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

    def run(values: dict[str, Any]) -> dict[str, Any]:
        """One run without its bulky evidence."""
        evidence = values.get("evidence") or {}
        return {**values, "evidence": {k: evidence.get(k) for k in ("status", "duration", "isolation")}}

    return {**data, "runs": [run(r) for r in data.get("runs", [])]}


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


def read_result(folder: Path) -> StudentResult | None:
    """A student's stored result, or None when there is none (or it cannot be read: then grade again)."""
    try:
        return StudentResult.from_dict(json.loads((folder / RESULT_FILE).read_text()))
    except (OSError, ValueError, TypeError):
        return None


@dataclass
class Gradebook:
    """A class's grades: the exercises, one result per student, and how they were graded."""

    exercises: list[dict[str, Any]]
    students: list[StudentResult]
    settings: dict[str, Any]
    shard: dict[str, int] | None = None
    grader_version: str = grader.__version__
    assignment: dict[str, Any] | None = None  # grader.lms.assignments.Assignment.to_dict(), when one was graded

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return {"format": FORMAT, "version": FORMAT_VERSION, "grader_version": self.grader_version,
                "settings": self.settings, "shard": self.shard, "exercises": self.exercises,
                "assignment": self.assignment, "students": [s.to_dict() for s in self.students]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Gradebook":
        """Rebuild from plain data (unknown keys ignored)."""
        if data.get("format") != FORMAT:
            raise BatchError("not a gradebook written by `grader batch` (results.json has no format 'grader-batch')")
        return cls(exercises=data["exercises"], students=[StudentResult.from_dict(s) for s in data["students"]],
                   settings=data["settings"], shard=data.get("shard"), grader_version=data.get("grader_version", ""),
                   assignment=data.get("assignment"))


def exercise_meta(exercises: list[Exercise]) -> list[dict[str, Any]]:
    """The exercises as the gradebook records them (plain data)."""
    return [{"number": e.number, "name": e.name, "title": e.title, "points": e.points} for e in exercises]


def iter_failures(book: Gradebook) -> Iterator[tuple[StudentResult, dict[str, Any]]]:
    """Every (student, check) that did not pass, for the summary's most common reasons."""
    for student in book.students:
        for exercise in (student.report or {}).get("exercises", []):
            for check in exercise["checks"]:
                if check["outcome"] not in ("passed", "skipped"):  # a check not judged repeats no reason
                    yield student, check


def grades_csv(book: Gradebook) -> str:
    """One row per student: the raw id (the roster's, else the folder's; never altered, so that it matches), the
    gradebook folder, each exercise's score, the total before and the penalty for late work, the final score,
    the maximum and a status column."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    numbers = [e["number"] for e in book.exercises]
    writer.writerow(["id", "student", *[f"ex{n:02d}" for n in numbers], "total", "penalty", "final", "max",
                     "status"])
    for student in book.students:
        scores = [_number(student.scores.get(str(n))) for n in numbers]
        maximum = sum(e["points"] for e in book.exercises)
        status = "; ".join(filter(None, [student.status, student.late]))
        writer.writerow([student.id, student.name, *scores, _number(student.score), _number(student.penalty),
                         _number(student.final), _number(maximum), status])
    return buffer.getvalue()


def _number(value: float | None) -> str:
    """A score as the CSV shows it: 7.5, 10, or empty when there is none."""
    return "" if value is None else f"{value:g}"


def write_gradebook(out: Path, book: Gradebook, summary_page: Callable[[Gradebook], str], bom: bool = False) -> None:
    """grades.csv (with a byte order mark when `bom`: Excel then reads it as UTF-8), results.json and index.html
    (the class summary page), each replaced atomically."""
    book.students.sort(key=lambda s: s.name)
    atomic_write(out / "grades.csv", ("\ufeff" if bom else "") + grades_csv(book))
    atomic_write(out / "results.json", json.dumps(book.to_dict(), indent=1, default=str))
    atomic_write(out / "index.html", summary_page(book))


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


def merge(inputs: list[Path], out: Path, summary_page: Callable[[Gradebook], str]) -> tuple[Gradebook, list[str]]:
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
    merged = Gradebook(first.exercises, [s for s, _ in students.values()], first.settings, None, first.grader_version,
                       first.assignment)
    with exclusive(out):
        _copy_students(students, out)
        write_gradebook(out, merged, summary_page)
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
