"""A student's daily loop: `grader list` with progress, progressive `grader hint`, `grader reset` and
`grader watch` (re-check on save)."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from typing import TYPE_CHECKING

from grader.commands import progress
from grader.course import Exercise, course_root, load_course, select

if TYPE_CHECKING:
    from rich.console import Console

EXIT_USAGE = 2
STATUS_STYLE = {"passed": "green", "failed": "red", progress.NOT_TRIED: "dim"}
# rich, pytest (grader.judging.session) and the renderers are imported by the commands that use them:
# `grader hint` needs none of them, and a student waits for every import.


def _console() -> Console:
    from rich.console import Console

    from grader.render import terminal

    return Console(no_color=not terminal.use_color(), highlight=False)


def cmd_list(args: argparse.Namespace) -> int:
    """Every exercise with its status from the last check, its points, and overall progress."""
    from rich.table import Table

    root = course_root()
    state = progress.load(root)
    course = load_course()
    table = Table(show_edge=False, box=None, pad_edge=False)
    for column in ("#", "exercise", "status", "points", "file"):
        table.add_column(column)
    done = 0
    for exercise in course:
        entry = state.of(exercise.number)
        done += entry.status == "passed"
        points = f"{entry.score:g}/{exercise.points:g}" if entry.status != progress.NOT_TRIED else f"{exercise.points:g}"
        style = STATUS_STYLE.get(entry.status, "")
        table.add_row(str(exercise.number), exercise.title, f"[{style}]{entry.status}[/{style}]", points,
                      f"exercises/{exercise.filename}")
    console = _console()
    console.print(table)
    console.print(f"\nprogress: {done}/{len(course)} exercises passed")
    return 0


def _exercise(number: int) -> Exercise | None:
    """The exercise with this number, or None after one line on stderr naming the numbers there are."""
    try:
        return select([number])[0]
    except ValueError as exc:
        print(f"grader: {exc}", file=sys.stderr)
        return None


def cmd_hint(args: argparse.Namespace) -> int:
    """The next hint each time it is asked (all of them with --all), remembered per exercise."""
    exercise = _exercise(args.number)
    if exercise is None:
        return EXIT_USAGE
    root = course_root()
    state = progress.load(root)
    entry = state.of(exercise.number)
    shown = len(exercise.hints) if args.all else min(entry.hints_shown + 1, len(exercise.hints))
    print(f"Exercise {exercise.number}: {exercise.title}")
    for index, text in enumerate(exercise.hints[:shown], 1):
        print(f"  hint {index}/{len(exercise.hints)}: {text}")
    if shown < len(exercise.hints):
        print("  (ask again for the next hint)")
    entry.hints_shown = max(entry.hints_shown, shown)
    progress.save(root, state)
    return 0


def original_stub(root: Path, exercise: Exercise) -> str | None:
    """The stub as the course shipped it: the file as it was first added to the course's git history."""
    import subprocess

    relative = f"exercises/{exercise.filename}"
    try:
        first = subprocess.run(["git", "-C", str(root), "log", "--diff-filter=A", "--format=%H", "--", relative],
                               capture_output=True, text=True, timeout=20, check=True).stdout.split()
        if not first:
            return None
        return subprocess.run(["git", "-C", str(root), "show", f"{first[-1]}:{relative}"],
                              capture_output=True, text=True, timeout=20, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None


def cmd_reset(args: argparse.Namespace) -> int:
    """Restore the stub, after asking, keeping the student's version as a backup."""
    import shutil

    exercise = _exercise(args.number)
    if exercise is None:
        return EXIT_USAGE
    root = course_root()
    stub = original_stub(root, exercise)
    target = root / "exercises" / exercise.filename
    if stub is None:
        print(f"grader: cannot find the original of {exercise.filename} (is this a git checkout of the course?)",
              file=sys.stderr)
        return 2
    if not args.yes:
        if not sys.stdin.isatty():
            print(f"nothing changed: no terminal to ask whether to restore exercises/{exercise.filename}; "
                  f"confirm with `grader reset {exercise.number} --yes`")
            return 1
        answer = input(f"Restore exercises/{exercise.filename} to the original stub? Your version is kept "
                       "as a backup. [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing changed")
            return 1
    backup = None
    if target.exists():
        backup = root / ".grader" / "backups" / f"{target.stem}.{time.strftime('%Y%m%d-%H%M%S')}.py"
        backup.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(target, backup)
    target.write_text(stub)
    state = progress.load(root)
    state.exercises.pop(str(exercise.number), None)
    progress.save(root, state)
    print(f"restored exercises/{exercise.filename}" + (f"; your version is in {backup}" if backup else ""))
    return 0


def _fingerprint(path: Path) -> bytes | None:
    """The file's content, or None when it is missing: what was last checked, to notice a missed save."""
    try:
        return path.read_bytes()
    except OSError:
        return None


def cmd_watch(args: argparse.Namespace) -> int:
    """Re-check when a file under exercises/ is saved; Ctrl-C ends it cleanly."""
    from watchfiles import watch

    from grader.judging import session
    from grader.judging.request import Request
    from grader.render import terminal

    root = course_root()
    course = load_course()
    chosen = _exercise(args.number) if args.number is not None else None
    if args.number is not None and chosen is None:
        return EXIT_USAGE
    report_dir = getattr(args, "report_dir", None) or Path("feedback")
    watched = [chosen] if chosen is not None else course
    console = _console()
    # What each exercise held when it was last checked (or when watching began): a save that lands
    # between two reads of the file watcher (while a check runs, or before the watcher is up) is
    # still seen on the next poll, because the content differs from this.
    checked = {e.number: _fingerprint(root / "exercises" / e.filename) for e in watched}

    def waiting() -> None:
        console.print(f"[dim]watching exercises/ for changes (Ctrl-C to stop) at {time.strftime('%H:%M:%S')}[/dim]")

    def check(exercise: Exercise) -> None:
        checked[exercise.number] = _fingerprint(root / "exercises" / exercise.filename)
        console.clear()
        with console.status(f"checking exercise {exercise.number}..."):
            report = session.judge(Request.build([exercise]))
        sys.stdout.write(terminal.render(report))
        from grader.render import html  # the pages, rewritten after every check like `grader check` does

        try:
            html.write_reports(report, report_dir, keep_others=True)
        except OSError as exc:
            print(f"grader: could not write the HTML report to {report_dir}: {exc}", file=sys.stderr)
        state = progress.load(root)
        state.record(report)
        progress.save(root, state)

    started = False
    try:
        # yield_on_timeout: the first (empty) yield comes once the watcher is live, so the first check
        # runs only when no save can be lost; later empty yields are polls for missed saves.
        for _ in watch(root / "exercises", debounce=200, step=50, rust_timeout=500, yield_on_timeout=True):
            if not started:
                started = True
                if chosen is not None:
                    check(chosen)
                waiting()
                continue
            # The events only wake us: what is checked is every exercise whose content is not what was
            # last checked. One save can reach us twice (as an event and through a poll that read it
            # first), and an editor may write a file in several steps: neither checks the same code twice.
            due = [e for e in watched if _fingerprint(root / "exercises" / e.filename) != checked[e.number]]
            for exercise in due:
                check(exercise)
            if due:
                waiting()
    except KeyboardInterrupt:
        pass
    console.print("stopped watching")
    return 0
