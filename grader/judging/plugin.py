"""The pytest plugin that turns check modules into grader results (registered through the pytest11 entry
point). It stays inert in ordinary pytest runs: only tests marked ``grader_check`` produce results.

A grading session hands pytest a `Judge` (the request, one start method, and the list its results go to) as a
plugin instance; run standalone (`pytest --pyargs grader.checks.ex01 -p grader.judging.plugin
--grader-submission DIR`), this module builds the Judge from its command-line options."""
from __future__ import annotations

import traceback
from pathlib import Path
from typing import Any, Generator

import pytest

from grader.course import find_exercise
from grader.judging import startmethods
from grader.judging.causes import Causes, Stated, not_judged
from grader.judging.evidence import Run
from grader.judging.harness import CheckFailed, Student, require_metadata_agrees
from grader.judging.request import DEFAULT_METHOD, Request
from grader.results import ERROR, FAILED, PASSED, CheckResult, CriticalSection, RunResult

JUDGE_KEY = pytest.StashKey["Judge"]()
BLOCKED_KEY = pytest.StashKey[tuple[str, Stated]]()  # on a check not judged: its prerequisite, who said it


class Judge:
    """The grading's side of one pytest session: what was asked, and the verdicts as pytest reports them."""

    def __init__(self, request: Request, start_method: str | None, matrix_rerun: bool = False) -> None:
        """Judge `request`'s submission under `start_method` (None: the platform's); with `matrix_rerun`, a
        further start method of --start-method all that runs only the trials that can differ."""
        self.request = request
        self.start_method = start_method
        self.matrix_rerun = matrix_rerun
        self.results: list[CheckResult] = []
        self.runs: list[RunResult] = []  # each run a check was judged from, once
        self.critical_sections: dict[int, CriticalSection] = {}  # declared by the check modules
        self._judged: list[tuple[Run, str]] = []  # each judged Run (kept, so never mistaken for a new one), its id
        self.causes = Causes()  # the prerequisite failures seen so far: each said once

    def pytest_configure(self, config: pytest.Config) -> None:
        """Make this judge the one the `student` fixture reads."""
        config.stash[JUDGE_KEY] = self
        config.addinivalue_line("markers", "grader_check(title, points, hint, depends): a check of the grader")

    @pytest.hookimpl(tryfirst=True)
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        """Every check module collected agrees with course.toml: each entry there names one of its checks."""
        for module in dict.fromkeys(item.module for item in items if isinstance(item, pytest.Function)):
            require_metadata_agrees(module)

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        """A check whose prerequisite already failed (its exercise's file did not load...) is not even run."""
        marker = item.get_closest_marker("grader_check")
        exercise = getattr(item.module, "EXERCISE", None)  # type: ignore[attr-defined]
        if marker is None or exercise is None:
            return
        blocked = self.causes.blocking(exercise, tuple(marker.kwargs.get("depends", ())))
        if blocked is not None:
            item.stash[BLOCKED_KEY] = blocked
            pytest.skip("not judged: a prerequisite failed")

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, None, None]:
        """Forget the run a previous check showed: a passing check shows only the run it names itself."""
        student = _student_of(item)
        if student is not None:
            student.shown = None
        yield

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
        """One result per check: from its call, or from its setup when that failed."""
        outcome = yield
        marker = item.get_closest_marker("grader_check")
        if marker is None:
            return
        report = outcome.get_result()
        blocked = item.stash.get(BLOCKED_KEY, None)
        if blocked is not None:
            if report.when == "setup":
                result = self._result(item, marker, call, report, judged=False)
                not_judged(result, blocked[1], blocked[0])
                self.results.append(result)
            return
        failed_here = call.excinfo is not None and report.when in ("setup", "call")
        if failed_here or (report.when == "call" and report.passed):
            result = self._result(item, marker, call, report)
            error = call.excinfo.value if call.excinfo is not None else None
            self.causes.record(result, error if isinstance(error, CheckFailed) else None,
                               tuple(marker.kwargs.get("depends", ())))
            self.results.append(result)

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        """One cause said once, by the check that judges it; the others point at it, not judged."""
        self.causes.settle()

    def _result(self, item: pytest.Item, marker: pytest.Mark, call: pytest.CallInfo[None],
                report: pytest.TestReport, judged: bool = True) -> CheckResult:
        """One CheckResult from pytest's report: failed for CheckFailed, error for anything else raised."""
        exercise = find_exercise(item.module.EXERCISE)  # type: ignore[attr-defined]
        title, points, hint = marker.kwargs["title"], float(marker.kwargs["points"]), marker.kwargs.get("hint", "")
        result = CheckResult(
            id=f"ex{exercise.number:02d}::{item.name}", exercise=exercise.number, title=title,
            outcome=PASSED, points=points, max_points=points, hint=hint,
            seed=self.request.seed, duration=round(report.duration, 3),
        )
        error = call.excinfo.value if call.excinfo is not None and judged else None
        if isinstance(error, CheckFailed):
            result.outcome, result.points, result.message = FAILED, 0.0, error.message
            result.expected, result.actual, result.locations = error.expected, error.actual, error.locations
            run = error.run
        elif error is not None and call.excinfo is not None:
            result.outcome, result.points = ERROR, 0.0
            result.message = (getattr(error, "for_student", None)
                              or f"The grader itself failed in this check ({type(error).__name__}): this is not your fault.")
            result.traceback = "".join(traceback.format_exception(call.excinfo.type, error, call.excinfo.tb))[-8000:]
            run = None
        else:
            student = _student_of(item)
            run = student.shown if student is not None else None
        if run is not None:
            result.run = self._run_id(run, exercise.number)
            if result.outcome == FAILED:
                self._name_the_start_method(result, run)
        section = getattr(item.module, "CRITICAL_SECTION", None)
        if isinstance(section, CriticalSection):
            self.critical_sections[exercise.number] = section
        return result

    def _name_the_start_method(self, result: CheckResult, run: Run) -> None:
        """Under spawn or forkserver, state made at the top level of the file is made again in every child: say
        which line, once per exercise."""
        note, locations = startmethods.explain(run.outcome.events, self.start_method, run.student_file)
        if note and self.causes.first_time(result.exercise, note):
            result.message = f"{result.message} {note}"
            result.locations = locations + result.locations

    def _run_id(self, run: Run, exercise: int) -> str:
        """The id of a run a check was judged from; its evidence is read and kept the first time only."""
        known = next((run_id for judged, run_id in self._judged if judged is run), None)
        if known is not None:
            return known
        method = self.start_method or DEFAULT_METHOD
        run_id = f"ex{exercise:02d}/{method}/{sum(r.id.startswith(f'ex{exercise:02d}/') for r in self.runs) + 1}"
        self._judged.append((run, run_id))
        self.runs.append(RunResult(run_id, method, run.label, run.evidence()))
        return run_id


def _student_of(item: pytest.Item) -> Student | None:
    """The check's `student` fixture value, if it asked for one."""
    student = getattr(item, "funcargs", {}).get("student")
    return student if isinstance(student, Student) else None


def pytest_addoption(parser: pytest.Parser) -> None:
    """The options of a standalone run (a grading session hands its Judge over instead)."""
    group = parser.getgroup("grader", "grading concurrency exercises")
    group.addoption("--grader-submission", default=None, help="folder with the student's exercise files")
    group.addoption("--grader-seed", type=int, default=None, help="seed of every run (replays a verdict)")
    group.addoption("--grader-start-method", default=None, help="fork, spawn or forkserver")


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    """Standalone: build the Judge from the command line, unless a grading session handed one over."""
    if JUDGE_KEY in config.stash:
        return
    folder = config.getoption("--grader-submission")
    method = config.getoption("--grader-start-method")
    request = Request.build((), Path(folder) if folder else None, config.getoption("--grader-seed"), method)
    config.pluginmanager.register(Judge(request, method), "grader-judge")


@pytest.fixture(scope="module")
def student(request: pytest.FixtureRequest) -> Student:
    """The student's file for the exercise of this check module (its EXERCISE number)."""
    judge = request.config.stash[JUDGE_KEY]
    return Student.of(judge.request, find_exercise(request.module.EXERCISE), judge.start_method, judge.matrix_rerun)
