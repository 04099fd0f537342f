"""`grader export GRADEBOOK --to canvas|moodle|csv`: a gradebook's final scores as the file each LMS imports.

- canvas: the Gradebook import CSV (Grades > Import): Student, ID, SIS User ID, SIS Login ID, Section, then one
  column per assignment; Canvas matches rows by ID (its user id) or the SIS ids, and columns by assignment name.
  A "Points Possible" row follows the header, as in Canvas's own export. An empty grade changes nothing.
- moodle: the CSV of Moodle's gradebook import (Grades > Import > CSV file): First name, Last name, ID number,
  Username, Email address and one grade column; map "Email address" (or ID number, or Username) to the user.
- csv: one row per student with the raw score, the late penalty and the final score.

Students are identified by the roster (--roster, or the one the batch matched) and the ids the LMS download gave."""
from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from grader.gradebook.book import BatchError, Gradebook, StudentResult, atomic_write
from grader.lms.assignments import Assignment, AssignmentError, find_assignment, lateness, load_extensions
from grader.lms.roster import Person, Roster, RosterError, load_roster

FORMATS = ("canvas", "moodle", "csv")
CANVAS_HEADER = ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"]
MOODLE_HEADER = ["First name", "Last name", "ID number", "Username", "Email address"]
EXIT_OK, EXIT_WARNINGS, EXIT_USAGE = 0, 1, 2


@dataclass
class Row:
    """One student's grade for the export: who they are (as far as known) and their scores."""

    person: Person
    raw: float | None
    penalty: float
    maximum: float
    status: str = ""

    @property
    def final(self) -> float | None:
        return None if self.raw is None else max(0.0, round(self.raw - self.penalty, 6))


@dataclass
class Export:
    """The rows of an export and the warnings for the instructor (students the LMS cannot match, and so on)."""

    column: str
    maximum: float
    rows: list[Row] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def read_gradebook(folder: Path) -> Gradebook:
    """The gradebook `grader batch --out` wrote; BatchError when the folder holds none."""
    try:
        return Gradebook.from_dict(json.loads((folder / "results.json").read_text(encoding="utf-8")))
    except OSError:
        raise BatchError(f"{folder}: no results.json (give the folder `grader batch --out` wrote)") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise BatchError(f"{folder}/results.json cannot be read: {exc}") from None


def person_of(student: StudentResult, roster: Roster | None) -> Person | None:
    """Who a gradebook student is: the roster row (matched now, or when the batch ran), else the LMS's ids."""
    meta = student.student
    known = {k: str(v) for k, v in meta.items() if isinstance(v, str) and v}
    matched = meta.get("student") or {}
    if roster is not None:
        return roster.match(id=matched.get("id") or known.get("id", ""),
                            **{k: v for k, v in known.items() if k != "id"}) or \
            roster.match(id=student.name, username=student.name, email=student.name, name=student.name)
    if matched:
        return Person(**matched)
    return Person(id=str(meta.get("id") or student.name), name=str(meta.get("name") or ""),
                  email=str(meta.get("email") or ""), canvas_id=str(meta.get("canvas_id") or ""),
                  github=str(meta.get("github") or ""))


def build(book: Gradebook, roster: Roster | None, assignment: Assignment | None, extensions: Path | None,
          column: str | None) -> Export:
    """The export's rows: the assignment's exercises summed, its late penalty taken, roster students without a
    submission given an empty grade (and a warning)."""
    numbers = [e["number"] for e in book.exercises]
    if assignment is not None:
        missing = sorted(set(assignment.exercises) - set(numbers))
        if missing:
            raise AssignmentError(f"the gradebook has no grades for exercise(s) {', '.join(map(str, missing))} of "
                                  f"{assignment.name}: grade it with `grader batch --assignment {assignment.name}`")
        numbers = list(assignment.exercises)
    points = {e["number"]: e["points"] for e in book.exercises}
    maximum = sum(points[n] for n in numbers)
    name = column or (assignment.title or assignment.name if assignment else (book.assignment or {}).get("title")
                      or (book.assignment or {}).get("name") or "grader")
    own = load_extensions(extensions, assignment) if extensions and assignment else {}
    export = Export(name, maximum)
    seen = set()
    for student in book.students:
        person = person_of(student, roster)
        if person is None:
            export.warnings.append(f"{student.name} is not on the roster: left out")
            continue
        seen.add(person.id)
        raw = None if student.score is None else sum(student.scores.get(str(n), 0.0) for n in numbers)
        if assignment is not None:
            due = next((own[k] for k in (person.id, student.name, person.email) if k and k in own), assignment.due)
            late = lateness(assignment, student.student, due)
            penalty = round((raw or 0) * late.percent / 100, 6)
            status = "; ".join(filter(None, [student.status, late.note]))
        else:
            penalty, status = student.penalty, "; ".join(filter(None, [student.status, student.late]))
        export.rows.append(Row(person, raw, penalty, maximum, status))
    for person in roster.people if roster else []:
        if person.id not in seen:
            export.rows.append(Row(person, None, 0.0, maximum, "no submission"))
            export.warnings.append(f"{person.id} ({person.name or person.email}) handed in nothing: empty grade")
    return export


def _number(value: float | None) -> str:
    """A grade as the LMS reads it: 7.5, 10, or empty (no change) when there is none."""
    return "" if value is None else f"{value:g}"


def canvas(export: Export) -> str:
    """Canvas's gradebook import CSV."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow([*CANVAS_HEADER, export.column])
    writer.writerow(["    Points Possible", "", "", "", "", _number(export.maximum)])
    for row in export.rows:
        person = row.person
        if not (person.canvas_id or person.sis_user_id or person.sis_login_id):
            export.warnings.append(f"{person.id}: no Canvas ID, SIS User ID or SIS Login ID (give them in the "
                                   "roster): Canvas cannot match this row")
        writer.writerow([_canvas_name(person), person.canvas_id, person.sis_user_id, person.sis_login_id,
                         person.section, _number(row.final)])
    return buffer.getvalue()


def _canvas_name(person: Person) -> str:
    """The Student column as Canvas writes it: 'Last, First' (only shown; rows match by the ids)."""
    name = person.name or person.id
    if "," in name or " " not in name.strip():
        return name
    first, _, last = name.strip().rpartition(" ")
    return f"{last}, {first}"


def moodle(export: Export) -> str:
    """Moodle's CSV grade import: the user's identities and one grade column."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([*MOODLE_HEADER, export.column])
    for row in export.rows:
        person = row.person
        if not (person.id_number or person.username or person.email):
            export.warnings.append(f"{person.id}: no ID number, username or email (give one in the roster): "
                                   "Moodle cannot match this row")
        first, last = _split_name(person.name)
        writer.writerow([first, last, person.id_number, person.username, person.email, _number(row.final)])
    return buffer.getvalue()


def _split_name(name: str) -> tuple[str, str]:
    """First and last name ('Smith, John' or 'John Smith')."""
    if "," in name:
        last, _, first = name.partition(",")
        return first.strip(), last.strip()
    first, _, last = name.strip().rpartition(" ")
    return (first, last) if first else (name.strip(), "")


def plain_csv(export: Export) -> str:
    """One row per student: who, the raw score, the late penalty, the final score, the maximum and the status."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["id", "name", "email", "section", "raw", "penalty", "final", "max", "status"])
    for row in export.rows:
        person = row.person
        writer.writerow([person.id, person.name, person.email, person.section, _number(row.raw),
                         _number(row.penalty), _number(row.final), _number(row.maximum), row.status])
    return buffer.getvalue()


WRITERS: dict[str, Callable[[Export], str]] = {"canvas": canvas, "moodle": moodle, "csv": plain_csv}


def add_arguments(commands: Any) -> None:
    """Register `export` with the grader's command line."""
    export = commands.add_parser("export", help="write a gradebook's grades as Canvas, Moodle or plain CSV")
    export.add_argument("gradebook", type=Path, metavar="GRADEBOOK", help="the folder `grader batch --out` wrote")
    export.add_argument("--to", choices=FORMATS, required=True, help="the LMS that imports the file")
    export.add_argument("--roster", type=Path, metavar="FILE", help="CSV of the class (id, name, email, section, "
                                                                     "canvas_id, sis_user_id, username, id_number...)")
    export.add_argument("--assignment", metavar="NAME", help="only this assignment of course.toml: its exercises, "
                                                             "with its late policy")
    export.add_argument("--extensions", type=Path, metavar="FILE", help="CSV of per-student due dates")
    export.add_argument("--column", metavar="TITLE", help="the grade column's title (default: the assignment's)")
    export.add_argument("--out", type=Path, metavar="FILE", help="write here (default: GRADEBOOK/<lms>.csv)")
    export.add_argument("--bom", action="store_true", help="start the file with a byte order mark (Excel)")


def cmd_export(args: argparse.Namespace) -> int:
    """0 written, 1 written with warnings (rows the LMS cannot match, students without a grade), 2 usage error."""
    try:
        book = read_gradebook(args.gradebook)
        roster = Roster(load_roster(args.roster)) if args.roster else None
        assignment = find_assignment(args.assignment) if args.assignment else None
        export = build(book, roster, assignment, args.extensions, args.column)
    except (BatchError, RosterError, AssignmentError) as exc:
        print(f"grader: {exc}", file=sys.stderr)
        return EXIT_USAGE
    text = WRITERS[args.to](export)
    out = args.out or args.gradebook / f"{args.to}.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, ("\ufeff" if args.bom else "") + text)
    for warning in export.warnings:
        print(f"grader: warning: {warning}", file=sys.stderr)
    graded = sum(r.final is not None for r in export.rows)
    print(f"wrote {out}: {graded} grades of {len(export.rows)} students for {args.to} ({export.column!r}, "
          f"out of {export.maximum:g})")
    return EXIT_WARNINGS if export.warnings else EXIT_OK


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {"export": cmd_export}
