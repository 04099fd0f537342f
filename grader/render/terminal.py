"""The terminal summary: a verdict per check, the reason, the student's line with context, the hint.

Rendered with rich; plain text when NO_COLOR is set or output is not a terminal."""
from __future__ import annotations

import io
import os
import shutil
import sys
import textwrap
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from grader.render.source import excerpt, read_source
from grader.results import ERROR, FAILED, PASSED, SKIPPED, CheckResult, ExerciseResult, Report, describe_schedule

SYMBOLS = {PASSED: ("✔", "green"), FAILED: ("✘", "red"), ERROR: ("!", "magenta"), SKIPPED: ("–", "yellow")}
WORDS = {PASSED: "passed", FAILED: "FAILED", ERROR: "GRADER ERROR", SKIPPED: "not judged"}


def use_color() -> bool:
    return "NO_COLOR" not in os.environ and sys.stdout.isatty()


def render(report: Report, color: bool | None = None) -> str:
    """The whole summary as text (with ANSI styles when `color`)."""
    color = use_color() if color is None else color
    width = shutil.get_terminal_size((100, 24)).columns if color else 100
    console = Console(file=io.StringIO(), force_terminal=color, no_color=not color, width=width,
                      highlight=False, emoji=False)
    for exercise in report.exercises:
        _exercise(console, exercise, report)
    _footer(console, report)
    return console.file.getvalue()  # type: ignore[attr-defined]


def _exercise(console: Console, exercise: ExerciseResult, report: Report) -> None:
    style = "green" if exercise.passed else "red"
    console.print(f"[bold]Exercise {exercise.number}: {escape(exercise.title)}[/bold]  "
                  f"[{style}]{exercise.score:g}/{exercise.max_score:g} points[/{style}]  [dim]{escape(exercise.file)}[/dim]")
    lines = read_source(exercise.file)
    for check in exercise.checks:
        _check(console, check, lines, Path(exercise.file).name)
    seen: set[str] = set()
    for check in exercise.checks:  # how the interleavings were chosen, once per run
        run = report.run_of(check)
        if run is not None and run.id not in seen and run.evidence.schedule:
            seen.add(run.id)
            console.print(f"[dim]{escape(_wrap(describe_schedule(run.evidence.schedule), console.width))}[/dim]")
    console.print()


def _check(console: Console, check: CheckResult, lines: list[str], filename: str) -> None:
    symbol, style = SYMBOLS.get(check.outcome, ("?", "yellow"))
    methods = check.start_method_words()
    word = WORDS.get(check.outcome, check.outcome) + (f" {methods}" if methods else "")
    console.print(f"  [{style}]{symbol} {word}[/{style}]  {escape(check.title)} "
                  f"[dim]({check.points:g}/{check.max_points:g})[/dim]")
    if check.outcome == PASSED:
        return
    console.print(escape(_wrap(check.message, console.width)))
    if check.expected is not None or check.actual is not None:
        console.print(f"      [dim]expected:[/dim] {escape(str(check.expected))}   [dim]actual:[/dim] {escape(str(check.actual))}")
    for location in check.locations[:3]:
        label = f"  [dim]<- {escape(location.label)}[/dim]" if location.label else ""
        console.print(f"      [cyan]{escape(filename)}:{location.line}[/cyan]{label}")
        for number, text in excerpt(lines, location.line):
            marker = ">" if number == location.line else " "
            console.print(f"      [dim]{marker} {number:4d} |[/dim] {escape(text)}", soft_wrap=True)
    if check.hint and check.outcome == FAILED:
        console.print(escape(_wrap("hint: " + check.hint, console.width)).replace("hint:", "[yellow]hint:[/yellow]", 1))
    if check.outcome == ERROR and check.traceback:
        console.print(f"[dim]{escape(check.traceback[-1500:])}[/dim]")


def _wrap(text: str, width: int) -> str:
    """Indented under its check, wrapped to the screen: long reasons stay readable."""
    return textwrap.fill(text, width=max(40, width - 2), initial_indent="      ", subsequent_indent="      ",
                         break_on_hyphens=False)


def _footer(console: Console, report: Report) -> None:
    checks = report.all_checks()
    passed = sum(c.outcome == PASSED for c in checks)
    failed = sum(c.outcome == FAILED for c in checks)
    errors = sum(c.outcome == ERROR for c in checks)
    not_judged = sum(c.outcome == SKIPPED for c in checks)
    style = "green" if report.exit_code() == 0 else "red"
    summary = (f"{passed} passed, {failed} failed" + (f", {not_judged} not judged" if not_judged else "")
               + (f", {errors} grader errors" if errors else ""))
    console.print(f"[{style}][bold]{summary}[/bold][/{style}]  score {report.score:g}/{report.max_score:g}  "
                  f"[dim]seed {report.seed}, {report.duration:.1f} s[/dim]")
    if failed or errors:
        # Never wrapped: a command broken inside an argument fails when pasted back.
        console.print(f"[dim]replay exactly: {escape(report.command)}[/dim]", soft_wrap=True)
