"""The flake test: the reference solutions pass every check, every time. Each exercise whose check module
exists is graded GRADER_FLAKE_N times (default 10) under the default start method, each time with a fresh
seed, and once under each other start method; a single failure or grader error fails the test and names
the command that replays it. Slow: the README's `pytest` deselects it (pyproject's addopts), and .ci/run runs
it after the rest with `pytest -m slow`."""
from __future__ import annotations

import importlib.util
import multiprocessing
import os
from pathlib import Path

import pytest

from conftest import ROOT
from grader.judging import session
from grader.course import Exercise, load_course
from grader.results import PASSED

pytestmark = pytest.mark.slow

SOLUTIONS = ROOT / "solutions"
DEFAULT_METHOD = multiprocessing.get_all_start_methods()[0]  # the first is the platform's default
OTHER_METHODS = [m for m in session.START_METHODS if m != DEFAULT_METHOD]


def _repeats() -> int:
    """How many times each solution is graded under the default start method (env GRADER_FLAKE_N)."""
    return max(1, int(os.environ.get("GRADER_FLAKE_N", "10")))


def _checked_exercises() -> list[Exercise]:
    """The exercises whose check module exists (the course grows one module at a time)."""
    return [e for e in load_course() if importlib.util.find_spec(e.checks) is not None]


def _failures(exercise: Exercise, start_method: str | None) -> tuple[int, list[str]]:
    """Grade the solution once with a fresh seed: (checks run, one line per check that did not pass)."""
    report = session.grade([exercise], SOLUTIONS, start_method=start_method)
    checks = report.all_checks()
    bad = [f"{c.id} {c.outcome} under {report.start_method}: {c.message} (replay: {report.command})"
           for c in checks if c.outcome != PASSED]
    return len(checks), bad


def test_there_are_checks_to_repeat() -> None:
    assert 1 in {e.number for e in _checked_exercises()}


@pytest.mark.parametrize("exercise", _checked_exercises(), ids=lambda e: f"ex{e.number:02d}")
def test_the_solution_passes_every_time(exercise: Exercise, capsys: pytest.CaptureFixture[str]) -> None:
    plan: list[str | None] = [None] * _repeats() + list(OTHER_METHODS)
    checks_run, failures = 0, []
    for method in plan:
        count, bad = _failures(exercise, method)
        checks_run += count
        failures += bad
    with capsys.disabled():
        print(f"\nex{exercise.number:02d}: {len(plan)} gradings of {Path(exercise.filename).name} "
              f"({_repeats()} under {DEFAULT_METHOD}, 1 under each of {', '.join(OTHER_METHODS)}), {checks_run} checks, "
              f"{len(failures)} failures")
    assert checks_run > 0
    assert failures == [], "\n".join(failures)
