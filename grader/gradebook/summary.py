"""The class summary page of a batch (OUT/index.html): a sortable table of every student's scores, the pass
rate of every check, a histogram of the total scores (inline SVG) and the most common failure reasons with
the students who hit them. One self-contained page, rendered with jinja2 (autoescaped: names and reasons
come from students)."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import jinja2

from grader.gradebook.book import Gradebook, StudentResult, iter_failures

HISTOGRAM_BINS = 10
TOP_REASONS = 12
REASONS_SHOWN = 6  # above the fold; the others one click away
BAR_WIDTH, BAR_GAP, CHART_HEIGHT = 44, 6, 160
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_PARENTHESES = re.compile(r"\s*\([^()]*\)")
_REPEATED = re.compile(r"([A-Za-z][\w' ]*#(?: of #)?)(?:, \1)+")  # "buyer # of #, buyer # of #"


@dataclass
class Cell:
    """One exercise's score in a student's row; a file not handed in is a short mark, its detail on hover."""

    score: float | None
    missing: bool = False
    title: str = ""


@dataclass
class Row:
    """One student in the table: compact (one line), with the long texts on hover."""

    name: str
    href: str
    scores: list[float | None]
    total: float | None
    status: str
    ok: bool
    cells: list[Cell] = field(default_factory=list)
    short: str = "ok"  # the status in a few words (the whole of it is the cell's title)
    who: str = ""  # the roster's name and email, on hover
    penalty: float = 0.0
    final: float | None = None


@dataclass
class CheckRate:
    """How many graded students passed one check."""

    exercise: int
    title: str
    points: float
    passed: int = 0
    graded: int = 0

    @property
    def percent(self) -> int:
        """The pass rate, in whole percent."""
        return round(100 * self.passed / self.graded) if self.graded else 0


@dataclass
class Bar:
    """One bar of the score histogram, with its geometry in the SVG."""

    label: str
    count: int
    x: int
    y: float
    height: float


@dataclass
class Reason:
    """A failure reason shared by several students: the exercise, the checks it failed, one of its messages
    and who hit it (a missing file or a crash fails every check of an exercise with one reason: listed once)."""

    exercise: int
    message: str
    checks: list[str] = field(default_factory=list)
    students: list[Row] = field(default_factory=list)


def render(book: Gradebook) -> str:
    """The whole page: the distribution and the most common reasons first, then one compact row per student."""
    rows = [_row(s, book) for s in book.students]
    by_name = {r.name: r for r in rows}
    maximum = sum(e["points"] for e in book.exercises)
    scored = [s.score for s in book.students if s.score is not None]
    return _environment().get_template("batch_index.j2").render(
        book=book, rows=rows, checks=check_rates(book), bars=histogram(scored, maximum), maximum=maximum,
        chart_height=CHART_HEIGHT, bar_width=BAR_WIDTH, chart_width=HISTOGRAM_BINS * (BAR_WIDTH + BAR_GAP) + 40,
        unscored=len(book.students) - len(scored), reasons=common_reasons(book, by_name),
        mean=sum(scored) / len(scored) if scored else None, late=any(s.penalty for s in book.students),
        assignment=book.assignment or {}, reasons_shown=REASONS_SHOWN)


def _row(student: StudentResult, book: Gradebook) -> Row:
    """A student's row: link to their report, one cell per exercise (a mark for a file not handed in), the total
    and the status in a few words."""
    page = "index.html" if student.has_html else ("report.txt" if student.report else "result.json")
    nothing = "no exercise files" in student.problems or any(p.startswith("unreadable") for p in student.problems)
    cells = []
    for exercise in book.exercises:
        filename = f"{exercise['name']}.py"
        missing = nothing or (bool(student.found) and filename not in student.found) or \
            any(p.startswith("missing ") and filename in p for p in student.problems)
        unreadable = next((p for p in student.problems if p.startswith("unreadable")), "")
        title = (f"{filename}: {unreadable}" if unreadable else f"{filename} was not handed in") if missing else \
            exercise.get("title", "")
        cells.append(Cell(student.scores.get(str(exercise["number"])), missing, title))
    person = student.student.get("student") or {}
    who = " · ".join(filter(None, [person.get("name"), person.get("email"), person.get("section")]))
    status = "; ".join(filter(None, [student.status, student.late]))
    return Row(student.name, f"{quote(student.name)}/{page}", [c.score for c in cells], student.score, status,
               student.status == "ok", cells, _short(student, sum(c.missing for c in cells)), who, student.penalty,
               student.final)


def _short(student: StudentResult, missing: int) -> str:
    """The status in a few words: what is missing counted, other problems cut, a late penalty noted."""
    parts = [f"{missing} missing" if missing and "no exercise files" not in student.problems else ""]
    for problem in student.problems:
        if not problem.startswith("missing "):
            parts.append(problem if len(problem) <= 32 else problem[:31] + "…")
    if student.penalty:
        parts.append("late")
    return ", ".join(filter(None, parts)) or "ok"


def check_rates(book: Gradebook) -> list[CheckRate]:
    """Every check that some student's report has, in the order of the reports, with its pass rate."""
    rates: dict[str, CheckRate] = {}
    for student in book.students:
        for exercise in (student.report or {}).get("exercises", []):
            for check in exercise["checks"]:
                rate = rates.setdefault(check["id"], CheckRate(exercise["number"], check["title"], check["max_points"]))
                rate.graded += 1
                rate.passed += check["outcome"] == "passed"
    return sorted(rates.values(), key=lambda r: r.exercise)


def histogram(scores: list[float], maximum: float, bins: int = HISTOGRAM_BINS) -> list[Bar]:
    """Total scores in `bins` equal ranges of 0..maximum (the last range includes the maximum)."""
    width = maximum / bins if maximum else 1
    counts = [0] * bins
    for score in scores:
        counts[min(bins - 1, int(score // width)) if width else 0] += 1
    tallest = max(counts, default=0) or 1
    bars = []
    for index, count in enumerate(counts):
        low, high = index * width, (index + 1) * width
        label = f"{low:g}–{high:g}" if index == bins - 1 else f"{low:g}–<{high:g}"
        height = (CHART_HEIGHT - 42) * count / tallest  # room above the tallest bar for its count
        bars.append(Bar(label, count, 30 + index * (BAR_WIDTH + BAR_GAP), CHART_HEIGHT - 20 - height, height))
    return bars


def reason_key(message: str) -> str:
    """A failure message with its particulars (numbers, pids, lists of processes) taken out."""
    text = _PARENTHESES.sub("", _NUMBER.sub("#", message))
    return _REPEATED.sub(r"\1, …", text).strip()


def common_reasons(book: Gradebook, rows: dict[str, Row], top: int = TOP_REASONS) -> list[Reason]:
    """The most common reasons (per exercise) among failed and errored checks, with the students who hit them."""
    groups: dict[tuple[int, str], Reason] = {}
    for student, check in iter_failures(book):
        key = (check["exercise"], reason_key(check.get("message", "")))
        reason = groups.setdefault(key, Reason(check["exercise"], check.get("message", "")))
        if check["title"] not in reason.checks:
            reason.checks.append(check["title"])
        if rows[student.name] not in reason.students:
            reason.students.append(rows[student.name])
    ordered = sorted(groups.values(), key=lambda r: (-len(r.students), r.exercise, r.message))
    return ordered[:top]


def _environment() -> jinja2.Environment:
    """The package's templates, autoescaped (student names and reasons are student text)."""
    env = jinja2.Environment(loader=jinja2.PackageLoader("grader", "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["points"] = _points
    return env


def _points(value: Any) -> str:
    """A score as shown: 7.5, 10, or nothing."""
    return "" if value is None else f"{float(value):g}"
