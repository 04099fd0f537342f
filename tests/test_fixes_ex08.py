"""Exercise 8: the stub (a lock around the slow scoring too) fails the granularity checks and passes the
others; the solution and every correct fix pass (under fork, spawn and forkserver); every wrong fix fails the
check it should, for its reason."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest

from conftest import NOT_JUDGED, ROOT, assert_fails_exactly, by_check, fixes, line_of, outcomes, summary
from grader.results import FAILED, PASSED, Report

STUB = ROOT / "exercises" / "ex08_lock_granularity.py"
SOLUTION = ROOT / "solutions" / "ex08_lock_granularity.py"
CHECKS = {"check_workers_finish", "check_total_exact", "check_scoring_outside_lock", "check_scoring_parallel"}
UNDER_LOCK = "Every worker called score() while it held the lock"
# fix file stem -> {check that must fail: a piece of its reason}; the checks not named must pass.
WRONG: dict[str, dict[str, str]] = {
    "wrong_no_lock": {"check_total_exact": "never held a shared multiprocessing lock"},
    "wrong_lock_only_read": {"check_total_exact": "The lock covers only part of the critical section"},
    "wrong_lock_per_worker": {"check_total_exact": "so they held two different locks"},
    "wrong_join_each": {"check_scoring_parallel": "The worker processes never ran at the same time"},
    "wrong_forgot_release": {
        "check_workers_finish": "a Lock is not reentrant",
        "check_total_exact": NOT_JUDGED,  # the hang is said once, by check_workers_finish
        "check_scoring_outside_lock": NOT_JUDGED,
        "check_scoring_parallel": NOT_JUDGED,
    },
    "wrong_coarse_whole_loop": {
        "check_scoring_outside_lock": "while it held the lock it took at line 38 (worker)",
        "check_scoring_parallel": UNDER_LOCK,
    },
}


Grade = Callable[..., Report]


def test_the_corpus_is_complete() -> None:
    """Every wrong fix has its expected failures listed, and there are at least three correct fixes."""
    assert {p.stem for p in fixes(8, "wrong")} == set(WRONG)
    assert len(fixes(8, "correct")) >= 3


def test_stub_fails_for_its_coarse_lock(grade: Grade) -> None:
    """The stub's total is right, but it scores under the lock: both granularity checks say so, with its lines."""
    report = grade(8, STUB)
    results = by_check(report)
    assert set(results) == CHECKS
    assert results["check_workers_finish"].outcome == PASSED
    assert results["check_total_exact"].outcome == PASSED
    outside = results["check_scoring_outside_lock"]
    assert outside.outcome == FAILED, summary(report)
    lock, score = line_of(STUB, "with lock:"), line_of(STUB, "points = score(document)")
    assert (f"called score() at line {score} (worker) while it held the lock it took at line {lock} (worker)"
            in outside.message), outside.message
    assert {(loc.line, loc.label) for loc in outside.locations} == {(lock, "acquires the lock"),
                                                                    (score, "score() under the lock")}
    parallel = results["check_scoring_parallel"]
    assert parallel.outcome == FAILED
    assert "no two workers' score() calls ever overlapped" in parallel.message and UNDER_LOCK in parallel.message
    assert report.exit_code() == 1


@pytest.mark.parametrize("path", [SOLUTION, *fixes(8, "correct")], ids=lambda p: p.stem)
def test_correct_fix_passes(path: Path, graded: Grade) -> None:
    """The solution and every correct fix (try/finally, a batch total, a Manager's lock, an RLock...) pass."""
    report = graded(8, path)
    assert set(outcomes(report)) == CHECKS
    assert set(outcomes(report).values()) == {PASSED}, summary(report)


@pytest.mark.parametrize("path", fixes(8, "wrong"), ids=lambda p: p.stem)
def test_wrong_fix_fails_for_its_reason(path: Path, graded: Grade) -> None:
    """The listed checks fail with their reasons; every other check passes."""
    report = graded(8, path)
    assert_fails_exactly(report, CHECKS, WRONG[path.stem])


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
@pytest.mark.parametrize("path", [SOLUTION, *fixes(8, "correct")], ids=lambda p: p.stem)
def test_correct_fix_passes_under_other_start_methods(path: Path, method: str, grade: Grade) -> None:
    """No false failure under spawn and forkserver either."""
    report = grade(8, path, start_method=method)
    assert set(outcomes(report).values()) == {PASSED}, summary(report)


@pytest.mark.parametrize("stem, check_id", [("wrong_no_lock", "check_total_exact"),
                                            ("wrong_coarse_whole_loop", "check_scoring_parallel")])
def test_wrong_fixes_fail_under_spawn_too(stem: str, check_id: str, grade: Grade) -> None:
    """Lost updates and scoring serialised by the lock show under spawn as well."""
    report = grade(8, ROOT / "tests" / "fixes" / "ex08" / f"{stem}.py", start_method="spawn")
    assert outcomes(report)[check_id] == FAILED, summary(report)
    assert WRONG[stem][check_id] in by_check(report)[check_id].message
