"""Exercise 1: every correct fix passes, every wrong fix fails the check it should, for its reason."""
from __future__ import annotations

from pathlib import Path

import pytest

from conftest import fixes, outcomes
from grader.results import FAILED, PASSED

# fix file stem -> (the check that must fail, a piece of its reason)
WRONG = {
    "wrong_lock_only_read": ("check_no_ticket_is_oversold", "read the same count"),
    "wrong_lock_only_write": ("check_no_ticket_is_oversold", "read the same count"),
    "wrong_lock_per_call": ("check_no_ticket_is_oversold", "not a critical section"),
    "wrong_lock_released_before_write": ("check_no_ticket_is_oversold",
                                         "The lock covers only part of the critical section"),
    "wrong_no_recheck": ("check_file_matches_sales", "tickets were sold that did not exist"),
    "wrong_no_release_when_sold_out": ("check_every_buyer_finishes", "never released"),
    "wrong_serial_join": ("check_buyers_are_concurrent", "Joining each process right after starting it"),
    "wrong_threading_lock": ("check_no_ticket_is_oversold", "got a ticket"),
    # windows opened by timing instead of a lock (issue 10): a timed wait, a clock, a timed join
    "wrong_staggered_event_wait": ("check_no_ticket_is_oversold", "not a critical section"),
    "wrong_staggered_clock": ("check_no_ticket_is_oversold", "not a critical section"),
    "wrong_join_with_timeout": ("check_no_ticket_is_oversold", "not a critical section"),
    # a window with no sleep in it, right after a sleep: open only when two buyers finish paying together
    "wrong_pay_first_no_lock": ("check_file_matches_sales", "one update was lost"),
}


def test_the_corpus_is_complete() -> None:
    assert {p.stem for p in fixes(1, "wrong")} == set(WRONG)
    assert len(fixes(1, "correct")) >= 3


@pytest.mark.parametrize("path", fixes(1, "wrong"), ids=lambda p: p.stem)
def test_wrong_fix_fails_for_its_reason(path: Path, graded) -> None:
    check_id, reason = WRONG[path.stem]
    report = graded(1, path)
    result = {c.id.split("::")[1]: c for c in report.all_checks()}[check_id]
    assert result.outcome == FAILED, result
    assert reason in result.message, result.message
    assert report.exit_code() == 1


@pytest.mark.parametrize("path", fixes(1, "correct"), ids=lambda p: p.stem)
def test_correct_fix_passes(path: Path, graded) -> None:
    report = graded(1, path)
    assert set(outcomes(report).values()) == {PASSED}, [(c.title, c.message) for c in report.all_checks()]


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
@pytest.mark.parametrize("path", fixes(1, "correct")[:2], ids=lambda p: p.stem)
def test_correct_fix_passes_under_other_start_methods(path: Path, method: str, grade) -> None:
    report = grade(1, path, start_method=method)
    assert set(outcomes(report).values()) == {PASSED}, [(c.title, c.message) for c in report.all_checks()]


def test_wrong_fixes_fail_under_spawn_too(grade) -> None:
    """Races hardly ever show by themselves under spawn: the gate and the delays make them show."""
    report = grade(1, Path(__file__).parent / "fixes" / "ex01" / "wrong_lock_only_read.py", start_method="spawn")
    assert outcomes(report)["check_no_ticket_is_oversold"] == FAILED
