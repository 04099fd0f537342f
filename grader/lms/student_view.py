"""What `grader ci` shows a student for an assignment: the report with the checks hidden until the due date
redacted, and the late penalty from the submission time Gradescope gives (submission_metadata.json: created_at,
and the assignment's due_date there, which already holds the student's extension)."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from grader.lms import hidden as hiding
from grader.lms.assignments import Assignment, AssignmentError, Lateness, lateness, load_assignments, parse_time
from grader.results import Report


@dataclass
class StudentView:
    """The full report, the one students may read, the hidden checks and the late penalty."""

    full: Report
    shown: Report
    hidden: set[str] = field(default_factory=set)
    late: Lateness = field(default_factory=lambda: Lateness(0, 0.0))

    @property
    def penalty(self) -> float:
        """Points taken off the score for late work."""
        return round(self.full.score * self.late.percent / 100, 6)


def read_gradescope_metadata(path: Path | None) -> dict[str, Any]:
    """Gradescope's /autograder/submission_metadata.json ({} when there is none or it cannot be read)."""
    if path is None:
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def view(report: Report, assignment: Assignment | None, metadata: dict[str, Any],
         now: datetime | None = None) -> StudentView:
    """The student's view of a report: hidden checks by course.toml's assignments, lateness by the metadata."""
    assignments = load_assignments()
    if assignment is not None and assignment not in assignments:
        assignments.append(assignment)
    due = assignment.due if assignment else None
    gradescope_due = (metadata.get("assignment") or {}).get("due_date")
    if gradescope_due:
        try:
            due = parse_time(gradescope_due, "Gradescope's due_date")
        except AssignmentError:
            pass
    if due is not None:  # the due date that counts for this student (an extension on Gradescope moves it)
        assignments = [_with_due(a, due) if a == assignment else a for a in assignments]
    ids = hiding.hidden_ids(report, assignments, now)
    shown = hiding.redact(report, assignments, now)
    late = lateness(assignment, {"submitted_at": metadata.get("created_at") or ""}, due) if assignment else \
        Lateness(0, 0.0)
    return StudentView(report, shown, ids, late)


def _with_due(assignment: Assignment, due: datetime) -> Assignment:
    """The assignment with this student's due date."""
    from dataclasses import replace

    return replace(assignment, due=due)
