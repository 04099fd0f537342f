"""Exercise 10: the stub fails for its reason (the counting runs in threads of the main process, one GIL) while
its count stays exact; the solution and every correct fix pass (under fork, spawn and forkserver); every wrong
fix fails the checks it should, for its reason, and passes the others."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest

from conftest import NOT_JUDGED, ROOT, assert_fails_exactly, by_check, fixes, line_of, outcomes, summary
from grader.results import FAILED, PASSED, SKIPPED, Report

STUB = ROOT / "exercises" / "ex10_gil_cpu_bound.py"
SOLUTION = ROOT / "solutions" / "ex10_gil_cpu_bound.py"
CHECKS = {"check_result_exact", "check_work_runs_in_processes", "check_processes_compute_together"}
THREADS = "every time in the main process, in several threads. In CPython the GIL"
PICKLE = "use a function defined at the top level of the module, never a lambda"
# fix file stem -> {check that must fail: a piece of its reason}; the checks not named must pass.
WRONG: dict[str, dict[str, str]] = {
    "wrong_list_argument": {"check_result_exact": "Processes do not share memory"},
    "wrong_dummy_pool": {"check_work_runs_in_processes": THREADS, "check_processes_compute_together": NOT_JUDGED},
    "wrong_pool_of_one": {
        "check_work_runs_in_processes": "every call of count_primes() ran in one process, worker 1",
        "check_processes_compute_together": NOT_JUDGED,  # one process did it all: said once
    },
    "wrong_serial_join": {"check_processes_compute_together": "the processes ran one after another"},
    "wrong_empty_before_join": {"check_result_exact": "q.empty() and qsize() are snapshots"},
    "wrong_map_lambda": {"check_result_exact": PICKLE, "check_work_runs_in_processes": PICKLE,
                         "check_processes_compute_together": NOT_JUDGED},
}


Grade = Callable[..., Report]


def test_the_corpus_is_complete() -> None:
    """Every wrong fix has its expected failures listed, and there are at least three correct fixes."""
    assert {p.stem for p in fixes(10, "wrong")} == set(WRONG)
    assert len(fixes(10, "correct")) >= 3


def test_stub_fails_for_its_reason(grade: Grade) -> None:
    """Threads count exactly, but in one process: both process checks fail, pointing at the thread's start()."""
    report = grade(10, STUB)
    results = by_check(report)
    assert set(results) == CHECKS
    assert results["check_result_exact"].outcome == PASSED, summary(report)  # the threads' count is right
    start = line_of(STUB, "t.start()")
    together = results["check_processes_compute_together"]  # the same cause, said once
    assert together.outcome == SKIPPED and together.depends_on == results["check_work_runs_in_processes"].id
    for check_id in ("check_work_runs_in_processes",):
        result = results[check_id]
        assert result.outcome == FAILED, summary(report)
        assert "count_primes() ran 3 time(s), every time in the main process, in 3 threads" in result.message, result
        assert "the GIL lets one thread of a process run Python code at a time" in result.message
        assert [(loc.line, loc.label) for loc in result.locations] == [(start, "a thread does the counting")]
    assert report.exit_code() == 1


@pytest.mark.parametrize("path", [SOLUTION, *fixes(10, "correct")], ids=lambda p: p.stem)
def test_correct_fix_passes(path: Path, graded: Grade) -> None:
    """The solution and every correct fix (a Pool, Processes and a Queue, a Manager list...) pass every check."""
    report = graded(10, path)
    assert set(outcomes(report)) == CHECKS
    assert set(outcomes(report).values()) == {PASSED}, summary(report)


@pytest.mark.parametrize("path", fixes(10, "wrong"), ids=lambda p: p.stem)
def test_wrong_fix_fails_for_its_reason(path: Path, graded: Grade) -> None:
    """The listed checks fail with their reasons; every other check passes."""
    report = graded(10, path)
    assert_fails_exactly(report, CHECKS, WRONG[path.stem])


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
@pytest.mark.parametrize("path", [SOLUTION, *fixes(10, "correct")], ids=lambda p: p.stem)
def test_correct_fix_passes_under_other_start_methods(path: Path, method: str, grade: Grade) -> None:
    """No false failure under spawn and forkserver either."""
    report = grade(10, path, start_method=method)
    assert set(outcomes(report).values()) == {PASSED}, summary(report)


@pytest.mark.parametrize("stem", ["wrong_list_argument", "wrong_serial_join"])
def test_wrong_fixes_fail_under_spawn_too(stem: str, grade: Grade) -> None:
    """Counts lost in a child's own list, and processes run one at a time, show under spawn as well."""
    report = grade(10, ROOT / "tests" / "fixes" / "ex10" / f"{stem}.py", start_method="spawn")
    results = by_check(report)
    for check_id, reason in WRONG[stem].items():
        assert results[check_id].outcome == FAILED, summary(report)
        assert reason in results[check_id].message, (check_id, results[check_id].message)
