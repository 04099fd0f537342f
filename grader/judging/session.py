"""One grading session: run the check modules of some exercises with pytest (in this process, with only
our plugins loaded) and assemble the results model."""
from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import tempfile
import time
from pathlib import Path

import pytest

import grader
from grader.course import Exercise, load_course
from grader.judging import startmethods
from grader.judging.plugin import Judge
from grader.judging.request import ALL_METHODS, DEFAULT_METHOD, START_METHODS, Request, new_seed  # noqa: F401
from grader.results import ERROR, FAILED, PASSED, CheckResult, ExerciseResult, Report


METHOD_DIFFERENCES = {
    "fork": "Under fork a child starts as a copy of its parent, inheriting every object, even ones that were "
            "never passed to it.",
    "spawn": "Under spawn (macOS, Windows) a child starts a fresh interpreter and re-imports your module: it "
             "needs the `if __name__ == \"__main__\":` guard, targets and arguments that can be pickled (no "
             "lambdas, local functions or threading locks), and it does not see module globals changed after import.",
    "forkserver": "Under forkserver (Linux from Python 3.14) children are forked from a server started early: "
                  "like spawn, they need the `__main__` guard and picklable targets and arguments.",
}


def grade(
    exercises: list[Exercise],
    submission: Path | None = None,
    seed: int | None = None,
    start_method: str | None = None,
) -> Report:
    """Run every check of `exercises` against the submission folder (default: the course's exercises/);
    start_method "all" runs them under fork, spawn and forkserver and keeps the worst verdict of each."""
    return judge(Request.build(exercises, submission, seed, start_method))


def judge(request: Request) -> Report:
    """Every check the request asks for, one pytest session per start method; the report names its files
    and its replay command as the request says."""
    started = time.monotonic()
    reports = [_grade_once(request, method) for method in request.start_methods]
    report = reports[0] if len(reports) == 1 else merge_start_methods(reports)
    report.start_method = request.method_label
    report.command = request.replay_command()
    report.duration = round(time.monotonic() - started, 3)
    return report


def merge_start_methods(reports: list[Report]) -> Report:
    """One report from one per start method: a check passes only if it passed under every method, and a
    failure under some methods only says so and explains how they differ."""
    merged = dataclasses.replace(reports[0], exercises=[dataclasses.replace(e, checks=list(e.checks))
                                                        for e in reports[0].exercises])
    for e_index, exercise in enumerate(merged.exercises):
        explained = False  # how the start methods differ is said once per exercise
        for c_index, check in enumerate(exercise.checks):
            verdicts = {r.start_method: r.exercises[e_index].checks[c_index] for r in reports
                        if c_index < len(r.exercises[e_index].checks)}
            failing = [m for m, c in verdicts.items() if c.outcome != PASSED]
            if not failing:
                continue
            worst = verdicts[failing[0]]
            exercise.checks[c_index] = worst
            passing = [m for m in verdicts if m not in failing]
            if passing and worst.outcome == FAILED:
                differences = "" if explained or startmethods.REIMPORTED in worst.message else (
                    " " + " ".join(METHOD_DIFFERENCES[m] for m in failing))
                explained = True
                worst.message = (f"Under {' and '.join(failing)} only (it passes under {' and '.join(passing)}): "
                                 f"{worst.message}{differences}")
    every_run = {run.id: run for report in reports for run in report.runs}
    merged.runs = [every_run[i] for i in dict.fromkeys(c.run for c in merged.all_checks() if c.run)]
    return merged


def _grade_once(request: Request, start_method: str | None) -> Report:
    """One pytest session over the check modules of the request's exercises, under one start method."""
    exercises = list(request.exercises)
    with tempfile.TemporaryDirectory(prefix="grader-session-", dir=request.temp_root) as tmp:
        args = [
            "--pyargs", *[e.checks for e in exercises],
            "-p", "grader.judging.plugin", "-p", "pytest_timeout",
            "-c", os.devnull, "--rootdir", tmp, "-p", "no:cacheprovider",
            "-p", "no:unraisableexception",  # its gc.collect() at the end of every session costs 50 ms
            "-o", "python_files=*.py", "-o", "python_functions=check_*", "-o", "timeout_method=signal",
            "-q", "--tb=no",
        ]
        judge = Judge(request, start_method)
        captured = io.StringIO()
        interrupted = _Interrupted()
        previous = os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD")
        os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"  # only our plugins: nothing else in the venv interferes
        try:
            with contextlib.redirect_stdout(captured):
                code = pytest.main(args, plugins=[judge, interrupted])
        finally:
            if previous is None:
                os.environ.pop("PYTEST_DISABLE_PLUGIN_AUTOLOAD", None)
            else:
                os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = previous
    if interrupted.seen:
        raise KeyboardInterrupt  # Ctrl-C: stop here, not report every check as a grader error
    broke = code not in (0, 1)
    if broke and len(exercises) > 1:
        # One exercise's broken check module must not cost the others their verdicts.
        parts = [_grade_once(dataclasses.replace(request, exercises=(e,)), start_method) for e in exercises]
        merged = parts[0]
        merged.exercises = [x for part in parts for x in part.exercises]
        merged.runs = [run for part in parts for run in part.runs]
        return merged
    checks = [] if broke else judge.results
    report = Report(seed=request.seed, start_method=start_method or DEFAULT_METHOD,
                    submission=request.submission_name, grader_version=grader.__version__, command="",
                    runs=[] if broke else judge.runs)
    for exercise in exercises:
        mine = [c for c in checks if c.exercise == exercise.number]
        if not mine:
            mine = [_missing_checks(exercise, request.seed, captured.getvalue())]
        report.exercises.append(ExerciseResult(exercise.number, exercise.name, exercise.title,
                                               request.report_file(exercise), mine,
                                               judge.critical_sections.get(exercise.number)))
    return report


class _Interrupted:
    """A pytest plugin that notices Ctrl-C: pytest.main() catches KeyboardInterrupt and returns exit code 2,
    the same code as for a check module that cannot be collected, so the code alone cannot tell them apart."""

    def __init__(self) -> None:
        self.seen = False

    def pytest_keyboard_interrupt(self, excinfo: pytest.ExceptionInfo[BaseException]) -> None:
        """Called by pytest when a KeyboardInterrupt (or pytest.exit) ended the session."""
        self.seen = self.seen or excinfo.errisinstance(KeyboardInterrupt)


def _missing_checks(exercise: Exercise, seed: int, log: str) -> CheckResult:
    return CheckResult(
        id=f"ex{exercise.number:02d}::collect", exercise=exercise.number, title="The checks could be loaded",
        outcome=ERROR, points=0.0, max_points=exercise.points, seed=seed,
        message="The grader could not load the checks of this exercise: this is not your fault.",
        traceback=log[-4000:],
    )


def select(numbers: list[int]) -> list[Exercise]:
    """The exercises with these numbers (all when empty); ValueError names an unknown number."""
    course = load_course()
    if not numbers:
        return course
    known = {e.number: e for e in course}
    unknown = [n for n in numbers if n not in known]
    if unknown:
        raise ValueError(f"no exercise {', '.join(map(str, unknown))}: the course has {', '.join(map(str, known))}")
    return [known[n] for n in dict.fromkeys(numbers)]
