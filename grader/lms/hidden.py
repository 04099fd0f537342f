"""Checks hidden until the due date: before it, every output a student reads (the terminal report, the HTML
pages, GitHub's annotations, step summary and Classroom result, JUnit) shows such a check only as hidden, with
its outcome and points (the total stays true) but not its title, reason, hint, lines or evidence. Gradescope
gets the whole check with visibility "after_due_date": Gradescope itself shows it when the date has passed."""
from __future__ import annotations

import copy
from datetime import datetime

from grader.lms.assignments import Assignment, load_assignments
from grader.results import CheckResult, Report

HIDDEN_TITLE = "Hidden check"
HIDDEN_MESSAGE = "This check is shown after the due date{due}."


def hidden_ids(report: Report, assignments: list[Assignment], now: datetime | None = None) -> set[str]:
    """The checks of the report that are still hidden from students, by any assignment that holds them."""
    ids = {c.id for c in report.all_checks()}
    return {i for a in assignments for i in ids if a.is_hidden(i, now)}


def redact(report: Report, assignments: list[Assignment], now: datetime | None = None) -> Report:
    """A copy of the report as students may read it (the report itself is left alone)."""
    hidden = hidden_ids(report, assignments, now)
    if not hidden:
        return report
    due = {i: a.due for a in assignments for i in a.hidden}
    shown = copy.deepcopy(report)
    for exercise in shown.exercises:
        numbered = 0
        for index, check in enumerate(exercise.checks):
            if check.id in hidden:
                numbered += 1
                exercise.checks[index] = _redacted(check, numbered, due.get(check.id))
    return shown


def _redacted(check: CheckResult, number: int, due: datetime | None) -> CheckResult:
    """One hidden check: its outcome and points, nothing that tells what it checks or why it failed."""
    when = f" ({due.isoformat(timespec='minutes')})" if due else ""
    return CheckResult(id=f"ex{check.exercise:02d}::hidden_{number}", exercise=check.exercise,
                       title=f"{HIDDEN_TITLE} {number}", outcome=check.outcome, points=check.points,
                       max_points=check.max_points, message=HIDDEN_MESSAGE.format(due=when), seed=check.seed,
                       duration=check.duration)


def for_students(report: Report, now: datetime | None = None) -> Report:
    """The report as students may read it, by the assignments of course.toml."""
    return redact(report, load_assignments(), now)
