"""Exercise 4: the stub fails for both of its bugs, each check for its own reason; the solution and every
correct fix pass (under fork, spawn and forkserver); every wrong fix fails the check it should, for its reason."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

import pytest

from conftest import NOT_JUDGED, ROOT, assert_fails_exactly, by_check, fixes, line_of, outcomes, summary
from grader.results import FAILED, PASSED, SKIPPED, Report

STUB = ROOT / "exercises" / "ex04_double_acquire.py"
SOLUTION = ROOT / "solutions" / "ex04_double_acquire.py"
CHECKS = {"check_program_ends", "check_no_double_acquire", "check_final_balance_exact",
          "check_withdraw_releases_lock", "check_refusal_changes_nothing"}
DOUBLE_ACQUIRE = re.compile(r"client \d+(?: of \d+)?(?: \(trial \d+\))? blocks acquiring the lock at line \d+ \(read_balance\) while it "
                            r"already holds it since line \d+ \(deposit\)")
# fix file stem -> {check that must fail: a piece of its reason}; the checks not named must pass, so that a
# student who fixed one bug is told about the other one only.
WRONG: dict[str, dict[str, str]] = {
    "wrong_no_lock": {"check_final_balance_exact": "never held a shared multiprocessing lock"},
    "wrong_only_deposit_fixed": {
        "check_program_ends": "withdraw() raised InsufficientFunds while holding the lock",
        "check_final_balance_exact": NOT_JUDGED,  # the hang is said once, by check_program_ends
        "check_withdraw_releases_lock": "raised InsufficientFunds at line 47 while it still held the lock",
    },
    "wrong_only_withdraw_fixed": {
        "check_program_ends": "a Lock is not reentrant",
        "check_no_double_acquire": "while it already holds it since line 35 (deposit)",
        "check_final_balance_exact": NOT_JUDGED,  # the hang is said once, by check_program_ends
    },
    "wrong_lock_only_read": {"check_final_balance_exact": "The lock covers only part of the critical section"},
    "wrong_read_before_lock": {"check_final_balance_exact": "The lock is in the wrong place: client"},
    "wrong_lock_per_call": {"check_final_balance_exact": "they held two different locks"},
    "wrong_write_before_check": {
        "check_final_balance_exact": "a withdrawal that was refused took money anyway",
        "check_refusal_changes_nothing": "a refused withdrawal must change nothing",
    },
    "wrong_release_in_client": {
        "check_withdraw_releases_lock": "raised InsufficientFunds at line 47 while it still held the lock",
    },
    "wrong_no_release_on_success": {"check_withdraw_releases_lock": "returned while it still held the lock"},
    "wrong_release_twice": {
        "check_program_ends": "ValueError: semaphore or lock released too many times",
        "check_final_balance_exact": NOT_JUDGED,  # the hang is said once, by check_program_ends
        "check_withdraw_releases_lock": "when it no longer held it",
        "check_refusal_changes_nothing": "raised ValueError",
    },
    "wrong_threading_lock": {"check_final_balance_exact": "deposit(s) were lost"},
}


Grade = Callable[..., Report]


def test_the_corpus_is_complete() -> None:
    """Every wrong fix has its expected failures listed, and there are at least three correct fixes."""
    assert {p.stem for p in fixes(4, "wrong")} == set(WRONG)
    assert len(fixes(4, "correct")) >= 3


def test_stub_fails_for_both_bugs(grade: Grade) -> None:
    """The deposit bug is explained as a double acquire; the withdraw bug on its own, by the direct calls."""
    report = grade(4, STUB)
    results = by_check(report)
    assert set(results) == CHECKS
    assert results["check_no_double_acquire"].outcome == FAILED
    assert DOUBLE_ACQUIRE.search(results["check_no_double_acquire"].message), results["check_no_double_acquire"]
    assert results["check_program_ends"].outcome == FAILED
    assert DOUBLE_ACQUIRE.search(results["check_program_ends"].message), results["check_program_ends"]
    balance = results["check_final_balance_exact"]  # the hang is said once, by check_program_ends
    assert balance.outcome == SKIPPED and balance.depends_on == results["check_program_ends"].id, balance
    lock = results["check_withdraw_releases_lock"]
    assert lock.outcome == FAILED
    acquire, raise_ = line_of(STUB, "    lock.acquire()"), line_of(STUB, "raise InsufficientFunds(")
    assert (f"raised InsufficientFunds at line {raise_} while it still held the lock it took at line {acquire}"
            in lock.message), lock.message
    assert {(loc.line, loc.label) for loc in lock.locations} >= {(acquire, "acquires the lock"),
                                                               (raise_, "raises InsufficientFunds holding the lock")}
    assert results["check_refusal_changes_nothing"].outcome == PASSED  # the stub refuses correctly
    assert report.exit_code() == 1


@pytest.mark.parametrize("path", [SOLUTION, *fixes(4, "correct")], ids=lambda p: p.stem)
def test_correct_fix_passes(path: Path, graded: Grade) -> None:
    """The solution and every correct fix (an RLock, a Manager's RLock, try/finally...) pass every check."""
    report = graded(4, path)
    assert set(outcomes(report)) == CHECKS
    assert set(outcomes(report).values()) == {PASSED}, summary(report)


@pytest.mark.parametrize("path", fixes(4, "wrong"), ids=lambda p: p.stem)
def test_wrong_fix_fails_for_its_reason(path: Path, graded: Grade) -> None:
    """The listed checks fail with their reasons; every other check passes."""
    report = graded(4, path)
    assert_fails_exactly(report, CHECKS, WRONG[path.stem])


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
@pytest.mark.parametrize("path", [SOLUTION, *fixes(4, "correct")], ids=lambda p: p.stem)
def test_correct_fix_passes_under_other_start_methods(path: Path, method: str, grade: Grade) -> None:
    """No false failure under spawn and forkserver either."""
    report = grade(4, path, start_method=method)
    assert set(outcomes(report).values()) == {PASSED}, summary(report)


@pytest.mark.parametrize("stem, check_id", [("wrong_lock_only_read", "check_final_balance_exact"),
                                            ("wrong_only_deposit_fixed", "check_program_ends")])
def test_wrong_fixes_fail_under_spawn_too(stem: str, check_id: str, grade: Grade) -> None:
    """Lost updates and a lock left held by an ended process show under spawn as well."""
    report = grade(4, ROOT / "tests" / "fixes" / "ex04" / f"{stem}.py", start_method="spawn")
    assert outcomes(report)[check_id] == FAILED, summary(report)
    assert WRONG[stem][check_id] in by_check(report)[check_id].message
