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
from grader.course import Exercise, select  # noqa: F401 - select: where callers found it first
from grader.judging import startmethods
from grader.judging.plugin import Judge
from grader.judging.request import ALL_METHODS, DEFAULT_METHOD, START_METHODS, Request, new_seed  # noqa: F401
from grader.results import ERROR, FAILED, PASSED, CheckResult, ExerciseResult, Report
from grader.running import isolation


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


# What a grading session does not need of pytest: rewriting asserts (python_files=*.py would rewrite every
# module of the grader imported after the hook, uncached when bytecode is not written; the checks raise
# CheckFailed, never a bare assert) and plugins whose imports cost start-up (pdb for --pdb, doctest...).
SESSION_SPEEDUPS = ("--assert=plain", "-p", "no:debugging", "-p", "no:doctest", "-p", "no:pastebin",
                    "-p", "no:junitxml", "-p", "no:legacypath", "-p", "no:stepwise", "-p", "no:setuponly",
                    "-p", "no:setupplan")


def judge(request: Request) -> Report:
    """Every check the request asks for; the report names its files and its replay command as the request says.

    Under several start methods (--start-method all) every trial runs under the first; the others run again
    only the trials that can differ between start methods (Student.trials), and only for exercises with a
    check that passed under the first: a check that failed keeps that verdict whatever the reruns say, so a
    hang or a stub costs one method, not three."""
    started = time.monotonic()
    full, *reruns = request.start_methods
    reports = [_grade_once(request, full)]
    passed = tuple(e for e in request.exercises
                   if any(c.outcome == PASSED for x in reports[0].exercises if x.number == e.number for c in x.checks))
    if reruns and passed:
        again = dataclasses.replace(request, exercises=passed)
        reports += [_grade_once(again, method, matrix_rerun=True) for method in reruns]
    report = reports[0] if len(request.start_methods) == 1 else merge_start_methods(reports, frozenset(reruns))
    report.start_method = request.method_label
    report.command = request.replay_command()
    report.duration = round(time.monotonic() - started, 3)
    return report


def merge_start_methods(reports: list[Report], reruns: frozenset[str] = frozenset()) -> Report:
    """One report from one per start method: a check passes only if it passed under every method, and a
    failure under some methods only says so and explains how they differ. `reruns` ran fewer trials (and
    perhaps fewer exercises): a failure under the full set that they did not repeat is not "under X only"."""
    merged = dataclasses.replace(reports[0], exercises=[dataclasses.replace(e, checks=list(e.checks))
                                                        for e in reports[0].exercises])
    for exercise in merged.exercises:
        mine = [next((x for x in r.exercises if x.number == exercise.number), None) for r in reports]
        explained = False  # how the start methods differ is said once per exercise
        for c_index, check in enumerate(exercise.checks):
            verdicts = {r.start_method: x.checks[c_index] for r, x in zip(reports, mine)
                        if x is not None and c_index < len(x.checks)}
            failing = [m for m, c in verdicts.items() if c.outcome != PASSED]
            if not failing:
                continue
            worst = verdicts[failing[0]]
            exercise.checks[c_index] = worst
            passing = [m for m in verdicts if m not in failing]
            fewer_trials = any(m in reruns for m in passing) and any(m not in reruns for m in failing)
            if passing and worst.outcome == FAILED and not fewer_trials:
                differences = "" if explained or startmethods.REIMPORTED in worst.message else (
                    " " + " ".join(METHOD_DIFFERENCES[m] for m in failing))
                explained = True
                worst.failed_under, worst.passed_under = list(failing), list(passing)
                worst.message = (f"Under {' and '.join(failing)} only (it passes under {' and '.join(passing)}): "
                                 f"{worst.message}{differences}")
    every_run = {run.id: run for report in reports for run in report.runs}
    merged.runs = [every_run[i] for i in dict.fromkeys(c.run for c in merged.all_checks() if c.run)]
    return merged


def _grade_once(request: Request, start_method: str | None, matrix_rerun: bool = False) -> Report:
    """One pytest session over the check modules of the request's exercises, under one start method (with
    `matrix_rerun`, only the trials that can differ between start methods)."""
    exercises = list(request.exercises)
    with tempfile.TemporaryDirectory(prefix="grader-session-", dir=request.temp_root) as tmp:
        args = [
            "--pyargs", *[e.checks for e in exercises],
            "-p", "grader.judging.plugin", "-p", "pytest_timeout",
            "-c", os.devnull, "--rootdir", tmp, "-p", "no:cacheprovider",
            "-p", "no:unraisableexception",  # its gc.collect() at the end of every session costs 50 ms
            *SESSION_SPEEDUPS,
            "-o", "python_files=*.py", "-o", "python_functions=check_*", "-o", "timeout_method=signal",
            "-q", "--tb=no",
        ]
        judge = Judge(request, start_method, matrix_rerun)
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
        parts = [_grade_once(dataclasses.replace(request, exercises=(e,)), start_method, matrix_rerun)
                 for e in exercises]
        merged = parts[0]
        merged.exercises = [x for part in parts for x in part.exercises]
        merged.runs = [run for part in parts for run in part.runs]
        return merged
    checks = [] if broke else judge.results
    report = Report(seed=request.seed, start_method=start_method or DEFAULT_METHOD,
                    submission=request.submission_name, grader_version=grader.__version__, command="",
                    runs=[] if broke else judge.runs,
                    isolation=isolation.in_force(isolation.named(request.isolation)))
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
