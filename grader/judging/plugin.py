"""The pytest plugin that turns check modules into grader results (registered through the pytest11 entry
point). It stays inert in ordinary pytest runs: only tests marked ``grader_check`` produce results."""
from __future__ import annotations

import dataclasses
import json
import os
import random
import time
import traceback
from pathlib import Path
from typing import Any, Generator

import pytest

from grader.course import course_root, find_exercise
from grader.judging.harness import CheckFailed, Student
from grader.results import ERROR, FAILED, PASSED, CheckResult

RESULTS_KEY = pytest.StashKey[list[CheckResult]]()
STUDENT_KEY = pytest.StashKey[Student]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("grader", "grading concurrency exercises")
    group.addoption("--grader-submission", default=None, help="folder with the student's exercise files")
    group.addoption("--grader-seed", type=int, default=None, help="seed of every run (replays a verdict)")
    group.addoption("--grader-start-method", default=None, help="fork, spawn or forkserver")
    group.addoption("--grader-matrix-rerun", action="store_true",
                    help="a further start method of --start-method all: only the trials that can differ")
    group.addoption("--grader-results", default=None, help="write the check results here as JSON")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "grader_check(title, points, hint): a check of the grader")
    config.stash[RESULTS_KEY] = []
    if config.getoption("--grader-seed") is None:
        config.option.grader_seed = random.SystemRandom().randrange(1, 2**31)


@pytest.fixture(scope="module")
def student(request: pytest.FixtureRequest) -> Student:
    """The student's file for the exercise of this check module (its EXERCISE number)."""
    config = request.config
    exercise = find_exercise(request.module.EXERCISE)
    folder = config.getoption("--grader-submission")
    base = Path(folder) if folder else course_root() / "exercises"
    file = base / exercise.filename
    shown = os.path.relpath(file) if not os.path.relpath(file).startswith("..") else str(file)
    return Student(exercise=exercise, file=file, shown_as=shown, seed=config.getoption("--grader-seed"),
                   start_method=config.getoption("--grader-start-method"),
                   matrix_rerun=config.getoption("--grader-matrix-rerun"))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    student = item.funcargs.get("student") if hasattr(item, "funcargs") else None
    if isinstance(student, Student):
        student.shown = None  # evidence shown by this check only
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    outcome = yield
    marker = item.get_closest_marker("grader_check")
    if marker is None:
        return
    report = outcome.get_result()
    results = item.config.stash[RESULTS_KEY]
    failed_here = call.excinfo is not None and report.when in ("setup", "call")
    if failed_here or (report.when == "call" and report.passed):
        results.append(_result(item, marker, call, report))


def _result(item: pytest.Item, marker: pytest.Mark, call: pytest.CallInfo[None], report: pytest.TestReport) -> CheckResult:
    """One CheckResult from pytest's report: failed for CheckFailed, error for anything else raised."""
    exercise = find_exercise(item.module.EXERCISE)  # type: ignore[attr-defined]
    title, points, hint = marker.kwargs["title"], float(marker.kwargs["points"]), marker.kwargs.get("hint", "")
    student = item.funcargs.get("student") if hasattr(item, "funcargs") else None
    result = CheckResult(
        id=f"ex{exercise.number:02d}::{item.name}", exercise=exercise.number, title=title,
        outcome=PASSED, points=points, max_points=points, hint=hint,
        seed=item.config.getoption("--grader-seed"), duration=round(report.duration, 3),
    )
    error = call.excinfo.value if call.excinfo is not None else None
    if isinstance(error, CheckFailed):
        result.outcome, result.points, result.message = FAILED, 0.0, error.message
        result.expected, result.actual, result.locations = error.expected, error.actual, error.locations
        run = error.run
    elif error is not None and call.excinfo is not None:
        result.outcome, result.points = ERROR, 0.0
        result.message = f"The grader itself failed in this check ({type(error).__name__}): this is not your fault."
        result.traceback = "".join(traceback.format_exception(call.excinfo.type, error, call.excinfo.tb))[-8000:]
        run = None
    else:
        run = student.shown if isinstance(student, Student) else None
    if run is not None:
        result.evidence = run.evidence()
    return result


def pytest_sessionfinish(session: pytest.Session) -> None:
    path = session.config.getoption("--grader-results")
    if not path:
        return
    results = session.config.stash[RESULTS_KEY]
    data = {"seed": session.config.getoption("--grader-seed"), "finished": time.time(), "checks": results}
    tmp = Path(f"{path}.tmp")
    tmp.write_text(json.dumps(data, default=_plain))
    os.replace(tmp, path)


def _plain(value: Any) -> Any:
    """json.dumps's fallback: a dataclass as the dict of its fields, shallowly (json walks the rest, where
    dataclasses.asdict would deep-copy every event of every run, once per check), anything else as text."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    return str(value)
