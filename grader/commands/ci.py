"""Autograding in CI: `grader ci` grades one submission like `grader check` (same exit codes) and writes what CI
systems read: JUnit XML (--junit), Gradescope's results.json (--gradescope), GitHub Classroom's step output
(--classroom); on GitHub Actions also a Markdown summary ($GITHUB_STEP_SUMMARY) and an error annotation at the
student's line for each failed check. `grader gradescope-bundle OUT.zip` writes Gradescope's autograder zip.

The grading runs in a worker process with a time limit: a crash or a hang of the grading itself still yields
every check (as a grader error), so the CI systems always get a complete set of results."""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

from grader.commands.arguments import exercise_number
from grader.gradebook import book as gradebook, submissions, workers
from grader.judging.request import METHOD_CHOICES, Request
from grader.results import Report

EXIT_USAGE = 2
DEFAULT_TIME_LIMIT = 540.0  # under GitHub Classroom's default 10 minutes per grading step
ANNOTATION_LIMIT = 3000
ANNOTATIONS_PER_STEP = 10  # GitHub shows at most 10 error annotations of one step and drops the rest silently


def add_arguments(commands: Any) -> None:
    """Register `ci` and `gradescope-bundle` with the grader's command line."""
    ci = commands.add_parser("ci", help="grade in CI: exit code as check, plus JUnit, Gradescope, Classroom output")
    ci.add_argument("numbers", nargs="*", type=exercise_number, metavar="N")
    ci.add_argument("--submission", type=Path, help="the submission folder (exercise files found anywhere inside)")
    ci.add_argument("--junit", type=Path, metavar="PATH", help="write JUnit XML here")
    ci.add_argument("--gradescope", type=Path, metavar="PATH", help="write Gradescope's results.json here")
    ci.add_argument("--classroom", action="store_true",
                    help="set the step output `result` ($GITHUB_OUTPUT) for GitHub Classroom's grading reporter")
    ci.add_argument("--seed", type=int, help="replay the runs of an earlier check")
    ci.add_argument("--start-method", choices=METHOD_CHOICES, default="all",
                       help="multiprocessing start method(s) for student code (default: all three; a check "
                            "passes only under every one)")
    ci.add_argument("--time-limit", type=float, default=DEFAULT_TIME_LIMIT, metavar="S",
                    help="stop grading after S seconds; every check still gets a result "
                         f"(default {DEFAULT_TIME_LIMIT:g})")
    ci.add_argument("--assignment", metavar="NAME", help="grade this assignment of course.toml: its exercises, "
                                                         "its checks hidden until the due date, its late policy")
    ci.add_argument("--submission-metadata", type=Path, metavar="FILE",
                    help="Gradescope's submission_metadata.json: the submission time and due date (late penalty)")
    bundle = commands.add_parser("gradescope-bundle", help="write the Gradescope autograder zip")
    bundle.add_argument("path", type=Path, metavar="OUT.zip")
    bundle.add_argument("numbers", nargs="*", type=exercise_number, metavar="N",
                        help="the exercises the autograder grades (default: all)")
    bundle.add_argument("--assignment", metavar="NAME", help="grade this assignment of course.toml")


def cmd_ci(args: argparse.Namespace) -> int:
    """Grade, print the terminal report, write every output asked for; exit 0, 1 or 2 as `grader check`."""
    from grader.judging import session
    from grader.course import course_root
    from grader.lms import student_view
    from grader.lms.assignments import find_assignment
    from grader.render import terminal

    try:
        assignment = find_assignment(args.assignment) if args.assignment else None
        exercises = session.select(args.numbers or (list(assignment.exercises) if assignment else []))
    except ValueError as exc:
        print(f"grader: {exc}", file=sys.stderr)
        return EXIT_USAGE
    request = Request.build(exercises, args.submission, args.seed, args.start_method,
                            shown=f"{args.submission or course_root() / 'exercises'}{os.sep}")
    folder = request.submission
    if not folder.is_dir():
        print(f"grader: --submission {folder}: no such folder", file=sys.stderr)
        # CI systems still get every check (as errors): a reporter cannot sum a result without tests
        failed = workers.failed_report(request, f"The submission folder {folder} does not exist.")
        write_outputs(student_view.view(failed, assignment, {}).shown, args)
        return EXIT_USAGE
    report = grade(request, args.time_limit)
    seen = student_view.view(report, assignment, student_view.read_gradescope_metadata(args.submission_metadata))
    sys.stdout.write(terminal.render(seen.shown))
    write_outputs(seen.shown, args, seen)
    return report.exit_code()


def grade(request: Request, time_limit: float) -> Report:
    """Grade a copy of the submission's exercise files in a worker; the report points at the student's own files."""
    folder = request.submission
    with tempfile.TemporaryDirectory(prefix="grader-ci-") as tmp:
        submission = submissions.Submission(folder.name, folder, "folder")
        collected = submissions.collect(submission, list(request.exercises), Path(tmp) / "files")
        files = {e.filename: str(folder / collected.found.get(e.filename, e.filename)) for e in request.exercises}
        copy = dataclasses.replace(request, submission=collected.folder, name=str(folder), files=files)
        return workers.grade_isolated(copy, time_limit)


def write_outputs(report: Report, args: argparse.Namespace, seen: Any = None) -> None:
    """JUnit, Gradescope and Classroom files as asked, and GitHub's summary and annotations on GitHub Actions.
    `report` is what students may read; `seen` (grader.lms.student_view.StudentView) gives Gradescope the whole
    report with its hidden checks and late penalty."""
    from grader.render import classroom, gradescope, junit

    if args.junit is not None:
        gradebook.atomic_write(_parent(args.junit), junit.render(report))
    if args.gradescope is not None:
        document = gradescope.render(report) if seen is None else gradescope.render(
            seen.full, hidden=seen.hidden, penalty=seen.penalty, late_note=seen.late.note)
        gradebook.atomic_write(_parent(args.gradescope), json.dumps(document, indent=1))
    if args.classroom:
        line = classroom.write_output(classroom.render(report), os.environ.get("GITHUB_OUTPUT"))
        if not os.environ.get("GITHUB_OUTPUT"):
            sys.stdout.write(line)
    if os.environ.get("GITHUB_ACTIONS"):
        commands = annotations(report)
        for command in capped_annotations(commands):
            print(command)
        summary_path = os.environ.get("GITHUB_STEP_SUMMARY")
        if summary_path:
            with open(summary_path, "a", encoding="utf-8") as f:
                f.write(step_summary(report) + overflow_summary(report, len(commands)))


def _parent(path: Path) -> Path:
    """The path, with its folder created."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


# ---- GitHub Actions -----------------------------------------------------------------------------------------
def _escape_data(text: str) -> str:
    """A workflow command's message, escaped as GitHub's runner expects."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    """A workflow command's property value (file, title), escaped as GitHub's runner expects."""
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def _workspace_path(path: str) -> str:
    """A file as GitHub expects it in an annotation: relative to the workspace (the repository's root)."""
    base = Path(os.environ.get("GITHUB_WORKSPACE") or os.getcwd()).resolve()
    try:
        return Path(path).resolve().relative_to(base).as_posix()
    except ValueError:
        return Path(path).as_posix()


def annotations(report: Report) -> list[str]:
    """One `::error file=...,line=...::` workflow command per failed or errored check, at the student's line."""
    from grader.results import FAILED, PASSED

    commands = []
    for exercise in report.exercises:
        for check in exercise.checks:
            if check.outcome == PASSED:
                continue
            fields = {"file": _workspace_path(exercise.file)}
            if check.locations:
                fields["line"] = str(check.locations[0].line)
            fields["title"] = f"Exercise {exercise.number}: {check.title}"
            text = check.message + (f"\nHint: {check.hint}" if check.hint and check.outcome == FAILED else "")
            props = ",".join(f"{k}={_escape_property(v)}" for k, v in fields.items())
            commands.append(f"::error {props}::{_escape_data(text[:ANNOTATION_LIMIT])}")
    return commands


def capped_annotations(commands: list[str]) -> list[str]:
    """The first ANNOTATIONS_PER_STEP errors, and a notice (its own limit) saying where the others are."""
    if len(commands) <= ANNOTATIONS_PER_STEP:
        return commands
    rest = len(commands) - ANNOTATIONS_PER_STEP
    notice = (f"::notice title=grader::{rest} more failed checks are not annotated (GitHub shows "
              f"{ANNOTATIONS_PER_STEP} per step): every one is listed in the job summary")
    return [*commands[:ANNOTATIONS_PER_STEP], notice]


def overflow_summary(report: Report, annotated: int) -> str:
    """The step summary's list of the failed checks that got no annotation, with their file and line."""
    from grader.results import PASSED

    failed = [(e, c) for e in report.exercises for c in e.checks if c.outcome != PASSED]
    rest = failed[ANNOTATIONS_PER_STEP:] if annotated > ANNOTATIONS_PER_STEP else []
    if not rest:
        return ""
    lines = [f"### Not annotated in the code ({len(rest)})", "",
             f"GitHub shows {ANNOTATIONS_PER_STEP} annotations per step; these failed checks have none:", ""]
    for exercise, check in rest:
        where = _workspace_path(exercise.file) + (f":{check.locations[0].line}" if check.locations else "")
        lines.append(f"- Exercise {exercise.number}: **{_md(check.title)}** (`{where}`)")
    return "\n".join(lines) + "\n\n"


def _md(text: str) -> str:
    """Student-influenced text made inert in Markdown: no HTML, no table breaks."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("|", "\\|")


def step_summary(report: Report) -> str:
    """The Markdown job summary: the score, a table per exercise, then each failure's reason and line."""
    from grader.results import PASSED

    icons = {"passed": "✅", "failed": "❌", "error": "⚠️", "skipped": "➖"}  # skipped: not judged
    lines = [f"## grader: {report.score:g}/{report.max_score:g} points", ""]
    failures = []
    for exercise in report.exercises:
        lines += [f"### Exercise {exercise.number}: {_md(exercise.title)} ({exercise.score:g}/{exercise.max_score:g})",
                  "", "| | Check | Points |", "|---|---|---|"]
        for check in exercise.checks:
            points = f"{check.points:g}/{check.max_points:g}"
            lines.append(f"| {icons.get(check.outcome, '?')} | {_md(check.title)} | {points} |")
            if check.outcome != PASSED:
                failures.append((exercise, check))
        lines.append("")
    if failures:
        lines += ["### Why", ""]
        for exercise, check in failures:
            where = f" (`{_workspace_path(exercise.file)}:{check.locations[0].line}`)" if check.locations else ""
            lines.append(f"- **{_md(check.title)}**{where}: {_md(check.message)}")
        lines += ["", f"Replay exactly: `{report.command}`", ""]
    if report.isolation:
        lines += [f"_Isolation: {_md(report.isolation)}_", ""]
    return "\n".join(lines) + "\n"


def cmd_gradescope_bundle(args: argparse.Namespace) -> int:
    """`grader gradescope-bundle OUT.zip [N ...]`."""
    from grader.judging import session
    from grader.render import gradescope

    from grader.lms.assignments import find_assignment

    try:
        session.select(args.numbers)
        if args.assignment:
            find_assignment(args.assignment)
    except ValueError as exc:
        print(f"grader: {exc}", file=sys.stderr)
        return EXIT_USAGE
    path = gradescope.bundle(_parent(args.path), args.numbers, getattr(args, "assignment", None))
    print(f"wrote {path}: upload it as the autograder of a Gradescope programming assignment")
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {"ci": cmd_ci, "gradescope-bundle": cmd_gradescope_bundle}
