"""One grading session: run the check modules of some exercises with pytest (in this process, with only
our plugins loaded) and assemble the results model."""
from __future__ import annotations

import contextlib
import io
import json
import os
import random
import shlex
import tempfile
import time
from pathlib import Path

import pytest

import grader
from grader.course import Exercise, course_root, load_course
from grader.running import isolation
from grader.results import ERROR, FAILED, PASSED, CheckResult, ExerciseResult, Report, check_from_dict


def new_seed() -> int:
    return random.SystemRandom().randrange(1, 2**31)


def replay_command(numbers: list[int], seed: int, submission: Path | None, start_method: str | None) -> str:
    parts = ["grader", "check", *map(str, numbers), "--seed", str(seed)]
    if submission is not None:
        parts += ["--submission", str(submission)]
    if start_method:
        parts += ["--start-method", start_method]
    return shlex.join(parts)


START_METHODS = ("fork", "spawn", "forkserver")
ALL_METHODS = "all"
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
    seed = seed if seed is not None else new_seed()
    if start_method == ALL_METHODS:
        reports = [_grade_once(exercises, submission, seed, method) for method in START_METHODS]
        return merge_start_methods(reports, replay_command([e.number for e in exercises], seed, submission,
                                                           ALL_METHODS))
    return _grade_once(exercises, submission, seed, start_method)


def merge_start_methods(reports: list[Report], command: str) -> Report:
    """One report from one per start method: a check passes only if it passed under every method, and a
    failure under some methods only says so and explains how they differ."""
    merged = Report.from_dict(reports[0].to_dict())
    merged.start_method, merged.command = ALL_METHODS, command
    merged.duration = round(sum(r.duration for r in reports), 3)
    for e_index, exercise in enumerate(merged.exercises):
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
                worst.message = (f"Under {' and '.join(failing)} only (it passes under {' and '.join(passing)}): "
                                 f"{worst.message} {' '.join(METHOD_DIFFERENCES[m] for m in failing)}")
    return merged


def _grade_once(
    exercises: list[Exercise], submission: Path | None, seed: int, start_method: str | None
) -> Report:
    """One pytest session over the check modules of `exercises`, under one start method."""
    folder = submission if submission is not None else course_root() / "exercises"
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="grader-session-") as tmp:
        results_path = Path(tmp) / "results.json"
        args = [
            "--pyargs", *[e.checks for e in exercises],
            "-p", "grader.judging.plugin", "-p", "pytest_timeout",
            "-c", os.devnull, "--rootdir", tmp, "-p", "no:cacheprovider",
            "-p", "no:unraisableexception",  # its gc.collect() at the end of every session costs 50 ms
            "-o", "python_files=*.py", "-o", "python_functions=check_*", "-o", "timeout_method=signal",
            "-q", "--tb=no", "--grader-results", str(results_path), "--grader-seed", str(seed),
            "--grader-submission", str(folder),
        ]
        if start_method:
            args += ["--grader-start-method", start_method]
        captured = io.StringIO()
        interrupted = _Interrupted()
        previous = os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD")
        os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"  # only our plugins: nothing else in the venv interferes
        try:
            with contextlib.redirect_stdout(captured):
                code = pytest.main(args, plugins=[interrupted])
        finally:
            if previous is None:
                os.environ.pop("PYTEST_DISABLE_PLUGIN_AUTOLOAD", None)
            else:
                os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = previous
        if interrupted.seen:
            raise KeyboardInterrupt  # Ctrl-C: stop here, not report every check as a grader error
        broke = code not in (0, 1) or not results_path.exists()
        if broke and len(exercises) > 1:
            # One exercise's broken check module must not cost the others their verdicts.
            parts = [_grade_once([e], submission, seed, start_method) for e in exercises]
            merged = parts[0]
            merged.exercises = [x for part in parts for x in part.exercises]
            merged.command = replay_command([e.number for e in exercises], seed, submission, start_method)
            merged.duration = round(time.monotonic() - started, 3)
            return merged
        data = {"checks": []} if broke else json.loads(results_path.read_text())
    checks = [check_from_dict(c) for c in data["checks"]]
    report = Report(
        seed=seed, start_method=start_method or "default", submission=str(folder),
        grader_version=grader.__version__,
        command=replay_command([e.number for e in exercises], seed, submission, start_method),
        isolation=isolation.in_force(),
    )
    for exercise in exercises:
        mine = [c for c in checks if c.exercise == exercise.number]
        if not mine:
            mine = [_missing_checks(exercise, seed, captured.getvalue())]
        report.exercises.append(ExerciseResult(exercise.number, exercise.name, exercise.title,
                                               str(folder / exercise.filename), mine))
    report.duration = round(time.monotonic() - started, 3)
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
