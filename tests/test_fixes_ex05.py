"""Exercise 5: the stub fails for its lost updates and its unused lock; the solution and every correct fix pass
(under fork, spawn and forkserver); every wrong fix fails the check it should, for its reason."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

import pytest

from conftest import NOT_JUDGED, ROOT, assert_fails_exactly, by_check, fixes, line_of, outcomes, summary
from grader.results import FAILED, PASSED, Report

STUB = ROOT / "exercises" / "ex05_manager_counter.py"
SOLUTION = ROOT / "solutions" / "ex05_manager_counter.py"
CHECKS = {"check_program_ends", "check_final_value_exact", "check_lock_is_shared", "check_workers_concurrent"}
LOST = re.compile(r"main\(40, 4, 5\): 4 workers made 5 sales each, so main\(\) must return 40 - 20 = 20, but it "
                  r"returned \d+: \d+ sale\(s\) were lost\. For instance, worker \d+ of \d+ \(trial \d+\) read (\d+) at "
                  r"line \d+ without holding a lock \([\d.]+ ms\); worker \d+ of \d+ \(trial \d+\) read \1 at line \d+ "
                  r"without holding a lock \([\d.]+ ms\), before .* both decrements counted as one")
FINISHED_FIRST = NOT_JUDGED  # the hang is said once, by check_program_ends
# fix file stem -> {check that must fail: a piece of its reason}; the checks not named must pass.
WRONG: dict[str, dict[str, str]] = {
    "wrong_lock_only_read": {"check_final_value_exact": "the lock does not cover the whole read-modify-write"},
    "wrong_lock_only_write": {"check_final_value_exact": "the lock does not cover the whole read-modify-write"},
    "wrong_lock_per_worker": {
        "check_final_value_exact": "a lock protects nothing unless every process uses the same lock object",
        "check_lock_is_shared": "the 4 workers held 4 different locks",
    },
    "wrong_threading_lock": {
        "check_final_value_exact": "The workers held a threading lock",
        "check_lock_is_shared": "the workers held a threading lock",
    },
    "wrong_serial_join": {"check_workers_concurrent": "each started only after the previous one had ended"},
    "wrong_no_release": {
        "check_program_ends": "while it already holds it since line 9 (decrement)",
        "check_final_value_exact": FINISHED_FIRST,
        "check_lock_is_shared": FINISHED_FIRST,
        "check_workers_concurrent": FINISHED_FIRST,
    },
    "wrong_plain_dict": {"check_final_value_exact": "the counter never changed"},
}

Grade = Callable[..., Report]


def test_the_corpus_is_complete() -> None:
    """Every wrong fix has its expected failures listed; there are enough wrong and correct fixes."""
    assert {p.stem for p in fixes(5, "wrong")} == set(WRONG)
    assert len(WRONG) >= 5
    assert len(fixes(5, "correct")) >= 3


def test_stub_fails_for_its_reason(grade: Grade) -> None:
    """The stub loses sales (shown by two workers writing the same value) and never uses its lock."""
    report = grade(5, STUB)
    results = by_check(report)
    assert set(results) == CHECKS
    final = results["check_final_value_exact"]
    assert final.outcome == FAILED
    assert LOST.search(final.message), final.message
    assert "The workers never held a lock" in final.message
    assert [loc.line for loc in final.locations] == [line_of(STUB, "def decrement(")]
    shared = results["check_lock_is_shared"]
    assert shared.outcome == FAILED
    assert "no worker held any lock while it ran decrement()" in shared.message, shared.message
    assert results["check_program_ends"].outcome == PASSED
    assert results["check_workers_concurrent"].outcome == PASSED
    assert report.exit_code() == 1


@pytest.mark.parametrize("path", [SOLUTION, *fixes(5, "correct")], ids=lambda p: p.stem)
def test_correct_fix_passes(path: Path, graded: Grade) -> None:
    """The solution and every correct fix (a multiprocessing Lock, an RLock, try/finally...) pass every check."""
    report = graded(5, path)
    assert set(outcomes(report)) == CHECKS
    assert set(outcomes(report).values()) == {PASSED}, summary(report)


@pytest.mark.parametrize("path", fixes(5, "wrong"), ids=lambda p: p.stem)
def test_wrong_fix_fails_for_its_reason(path: Path, graded: Grade) -> None:
    """The listed checks fail with their reasons; every other check passes."""
    report = graded(5, path)
    assert_fails_exactly(report, CHECKS, WRONG[path.stem])


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
@pytest.mark.parametrize("path", [SOLUTION, *fixes(5, "correct")], ids=lambda p: p.stem)
def test_correct_fix_passes_under_other_start_methods(path: Path, method: str, grade: Grade) -> None:
    """No false failure under spawn and forkserver either."""
    report = grade(5, path, start_method=method)
    assert set(outcomes(report).values()) == {PASSED}, summary(report)


@pytest.mark.parametrize("stem, check_id", [("wrong_lock_only_write", "check_final_value_exact"),
                                            ("wrong_lock_per_worker", "check_lock_is_shared")])
def test_wrong_fixes_fail_under_spawn_too(stem: str, check_id: str, grade: Grade) -> None:
    """Lost updates and unshared locks show under spawn as well."""
    report = grade(5, ROOT / "tests" / "fixes" / "ex05" / f"{stem}.py", start_method="spawn")
    assert outcomes(report)[check_id] == FAILED, summary(report)
    assert WRONG[stem][check_id] in by_check(report)[check_id].message
