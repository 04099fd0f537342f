"""Assignments: the exercises graded together, when they are due, what late work costs, and which checks stay
hidden from students until the due date. They are named in course.toml:

    [[assignment]]
    name = "lab1"
    title = "Lab 1: races and locks"
    exercises = [1, 2, 3, 4]
    due = "2026-10-05T23:59:00+02:00"
    late = { per_day = 10, cap = 50 }     # percent of the points earned, per day or part of one; or "none"
    hidden = ["ex01::check_buyers_are_concurrent"]   # shown to students only after the due date

A per-student extensions file (CSV: student, due or days) moves one student's due date."""
from __future__ import annotations

import csv
import math
import tomllib
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from grader.course import METADATA

DAY = timedelta(days=1)


class AssignmentError(ValueError):
    """An assignment, a due date or an extensions file that cannot be used, said in one line."""


@dataclass(frozen=True)
class LatePolicy:
    """What late work costs: `per_day` percent of the points earned per started day late, at most `cap` percent
    (100: late work can lose everything); per_day 0 is no penalty."""

    per_day: float = 0.0
    cap: float = 100.0

    def percent(self, days: int) -> float:
        """The penalty, in percent of the points earned, of work `days` days late."""
        return min(self.cap, self.per_day * max(days, 0))


@dataclass(frozen=True)
class Assignment:
    """Exercises graded together, with a due date, a late policy and checks hidden until the due date."""

    name: str
    exercises: tuple[int, ...]
    title: str = ""
    due: datetime | None = None
    late: LatePolicy = field(default_factory=LatePolicy)
    hidden: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Plain data, as the gradebook records it."""
        return {"name": self.name, "title": self.title, "exercises": list(self.exercises),
                "due": self.due.isoformat() if self.due else None,
                "late": {"per_day": self.late.per_day, "cap": self.late.cap}, "hidden": list(self.hidden)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Assignment":
        """Rebuild from the plain data of to_dict or course.toml; AssignmentError when it cannot be one."""
        name = str(data.get("name", "")).strip()
        if not name:
            raise AssignmentError("an [[assignment]] without a name")
        try:
            exercises = tuple(int(n) for n in data.get("exercises", ()))
        except (TypeError, ValueError):
            raise AssignmentError(f"assignment {name}: exercises must be exercise numbers") from None
        if not exercises:
            raise AssignmentError(f"assignment {name}: no exercises")
        return cls(name=name, exercises=exercises, title=str(data.get("title", "")),
                   due=parse_time(data["due"], f"assignment {name}: due") if data.get("due") else None,
                   late=_policy(data.get("late"), name), hidden=tuple(str(h) for h in data.get("hidden", ())))

    def is_hidden(self, check_id: str, now: datetime | None = None) -> bool:
        """Whether a check is still hidden from students (before the due date; always when there is none)."""
        if check_id not in self.hidden:
            return False
        return self.due is None or (now or datetime.now(timezone.utc)) < self.due


def _policy(value: Any, name: str) -> LatePolicy:
    """The late policy of course.toml: a table {per_day, cap}, or "none"."""
    if value is None or value == "none":
        return LatePolicy()
    if isinstance(value, dict):
        try:
            policy = LatePolicy(float(value.get("per_day", 0)), float(value.get("cap", 100)))
        except (TypeError, ValueError):
            policy = LatePolicy(-1)
        if 0 <= policy.per_day <= 100 and 0 <= policy.cap <= 100:
            return policy
    raise AssignmentError(f"assignment {name}: late must be \"none\" or {{ per_day = 10, cap = 50 }} (percent)")


def parse_time(text: Any, what: str) -> datetime:
    """An ISO 8601 time (a TOML datetime too); one without a zone is taken as UTC."""
    if isinstance(text, datetime):
        value = text
    else:
        try:
            value = datetime.fromisoformat(str(text).strip().replace("Z", "+00:00"))
        except ValueError:
            raise AssignmentError(f"{what}: {text!r} is not a time such as 2026-10-05T23:59:00+02:00") from None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def load_assignments(path: Path = METADATA) -> list[Assignment]:
    """The assignments of course.toml (none when it names none)."""
    with open(path, "rb") as f:
        data = tomllib.load(f)
    assignments = [Assignment.from_dict(a) for a in data.get("assignment", [])]
    names = [a.name for a in assignments]
    if len(set(names)) != len(names):
        raise AssignmentError("two assignments have the same name in course.toml")
    return assignments


def find_assignment(name: str, path: Path = METADATA) -> Assignment:
    """The assignment with this name; AssignmentError naming the ones there are."""
    assignments = load_assignments(path)
    for assignment in assignments:
        if assignment.name == name:
            return assignment
    known = ", ".join(a.name for a in assignments) or "none"
    raise AssignmentError(f"no assignment {name!r} in course.toml (there are: {known})")


def load_extensions(path: Path, assignment: Assignment) -> dict[str, datetime]:
    """A CSV of extensions (columns student and due, or student and days): each student's own due date."""
    try:
        rows = list(csv.DictReader(path.read_text(encoding="utf-8-sig").splitlines()))
    except (OSError, UnicodeDecodeError) as exc:
        raise AssignmentError(f"extensions {path}: cannot be read ({exc})") from None
    due = {}
    for number, row in enumerate(rows, 2):
        row = {(k or "").strip().lower(): (v or "").strip() for k, v in row.items()}
        student = row.get("student") or row.get("id") or row.get("email")
        if not student:
            raise AssignmentError(f"extensions {path}, line {number}: no student")
        if row.get("due"):
            due[student] = parse_time(row["due"], f"extensions {path}, line {number}")
        elif row.get("days"):
            if assignment.due is None:
                raise AssignmentError(f"extensions {path}: days given, but {assignment.name} has no due date")
            try:
                due[student] = assignment.due + float(row["days"]) * DAY
            except ValueError:
                raise AssignmentError(f"extensions {path}, line {number}: days {row['days']!r}") from None
        else:
            raise AssignmentError(f"extensions {path}, line {number}: give a due time or a number of days")
    return due


@dataclass(frozen=True)
class Lateness:
    """How late one student handed in, and what it costs."""

    days: int
    percent: float
    note: str = ""


def lateness(assignment: Assignment | None, meta: dict[str, Any], due: datetime | None) -> Lateness:
    """A student's lateness from what the LMS said (a submission time; or Canvas's LATE mark, which has no time:
    counted as one day late) against their due date (theirs when they have an extension)."""
    if assignment is None or due is None:
        return Lateness(0, 0.0)
    submitted = meta.get("submitted_at") or ""
    if submitted:
        try:
            when = parse_time(submitted, "submitted_at")
        except AssignmentError:
            return Lateness(0, 0.0, f"submission time {submitted!r} not understood: no penalty")
        days = math.ceil((when - due) / DAY) if when > due else 0
        note = f"{days} day(s) late" if days else ""
    elif meta.get("late"):
        extended = assignment.due is not None and due > assignment.due
        if extended:
            return Lateness(0, 0.0, "marked late by Canvas, but has an extension (no time given): no penalty")
        days, note = 1, "marked late by Canvas (no time given): counted as 1 day late"
    else:
        return Lateness(0, 0.0)
    return Lateness(days, assignment.late.percent(days), note)
