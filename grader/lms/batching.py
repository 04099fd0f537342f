"""What `grader batch` asks of the LMS side: the students of a download matched to the roster, the assignment's
exercises, and each student's late penalty against their own due date."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from grader.gradebook.book import Gradebook
from grader.lms.assignments import Assignment, find_assignment, lateness, load_extensions
from grader.lms.downloads import Discovered, discover
from grader.lms.roster import Roster, load_roster


@dataclass(frozen=True)
class LmsOptions:
    """The batch's LMS options: a roster, an assignment from course.toml and a file of extensions."""

    roster: Path | None = None
    assignment: str | None = None
    extensions: Path | None = None


def assignment_of(options: LmsOptions) -> Assignment | None:
    """The assignment named (AssignmentError when course.toml has none of that name)."""
    return find_assignment(options.assignment) if options.assignment else None


def students_of(source: Path, out: Path, options: LmsOptions) -> Discovered:
    """The students of an LMS download or class folder, matched to the roster when there is one."""
    roster = Roster(load_roster(options.roster)) if options.roster else None
    return discover(source, out, roster)


def apply_lateness(book: Gradebook, assignment: Assignment | None, extensions: Path | None) -> None:
    """Each student's penalty for late work, from the LMS's submission time and their (extended) due date."""
    if assignment is None:
        return
    book.assignment = assignment.to_dict()
    own: dict[str, datetime] = load_extensions(extensions, assignment) if extensions else {}
    for student in book.students:
        person = student.student.get("student") or {}
        keys = [student.id, student.name, person.get("email", ""), student.student.get("email", "")]
        due = next((own[k] for k in keys if k and k in own), assignment.due)
        late = lateness(assignment, student.student, due)
        student.penalty = round((student.score or 0) * late.percent / 100, 6)
        student.late = late.note + (f": -{late.percent:g}%" if late.percent else "")
