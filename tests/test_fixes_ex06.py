"""Exercise 6: the stub hangs in both scenarios, each explained by the put() or get() that waits forever; the
solution and every correct fix pass (under fork, spawn and forkserver); every wrong fix fails the check it should,
for its reason."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

import pytest

from conftest import NOT_JUDGED, ROOT, by_check, fixes, line_of, outcomes, summary
from grader.results import FAILED, PASSED, SKIPPED, Report

STUB = ROOT / "exercises" / "ex06_queue_timeouts.py"
SOLUTION = ROOT / "solutions" / "ex06_queue_timeouts.py"
CHECKS = {"check_ends_when_consumers_leave", "check_ends_when_producers_finish", "check_nothing_lost_or_twice",
          "check_waits_patience", "check_right_exceptions"}
ENDED_FIRST = NOT_JUDGED  # the hang is said once, by the check of that run's end
UNCAUGHT = "q.get(timeout=0.5) at line 30 (consumer) raised queue.Empty, and your code did not catch it"
# fix file stem -> {check that must fail: a piece of its reason}; the checks not named must pass.
WRONG: dict[str, dict[str, str]] = {
    "wrong_get_timeout_only": {
        "check_ends_when_consumers_leave": "is blocked in q.put() at line 18 (producer): the queue is full and every "
                                           "consumer has left (each after its shift of 2 jobs)",
        "check_waits_patience": ENDED_FIRST,
        "check_right_exceptions": ENDED_FIRST,
    },
    "wrong_put_timeout_only": {
        "check_ends_when_producers_finish": "are blocked in q.get() at line 29 (consumer): no job comes any more",
        "check_nothing_lost_or_twice": ENDED_FIRST,
        "check_waits_patience": ENDED_FIRST,
        "check_right_exceptions": ENDED_FIRST,
    },
    "wrong_get_nowait": {
        "check_waits_patience": "gave up after q.get(False) raised queue.Empty at line 30 (consumer) after waiting only",
    },
    "wrong_put_nowait": {
        "check_waits_patience": "gave up after its put() raised queue.Full at line 19 (producer) after waiting only",
    },
    "wrong_except_timeout_error": {"check_right_exceptions": UNCAUGHT},
    "wrong_catch_full_in_consumer": {"check_right_exceptions": UNCAUGHT},
    "wrong_retry_on_full": {
        "check_ends_when_consumers_leave": "and each time it tried again",
        "check_waits_patience": ENDED_FIRST,
        "check_right_exceptions": ENDED_FIRST,
    },
}

# Checks a wrong fix may fail as well, depending on timing (then for the reason WRONG gives): a consumer that does
# not wait loses jobs only if it finds the queue empty before the producers are done, which is likely, not certain.
MAY_ALSO_FAIL: dict[str, dict[str, str]] = {
    "wrong_get_nowait": {"check_nothing_lost_or_twice": "but no consumer was left to take it"},
}

Grade = Callable[..., Report]


def test_the_corpus_is_complete() -> None:
    """Every wrong fix has its expected failures listed; there are enough wrong and correct fixes."""
    assert {p.stem for p in fixes(6, "wrong")} == set(WRONG)
    assert len(WRONG) >= 5
    assert len(fixes(6, "correct")) >= 3


def test_stub_fails_for_its_reason(grade: Grade) -> None:
    """The stub hangs in both scenarios: the producer in put() once the consumers left, the consumers in get()
    once the producers are done; nothing else can be judged."""
    report = grade(6, STUB)
    results = by_check(report)
    assert set(results) == CHECKS
    # each scenario's hang is said by its own check; the checks judging those runs are not judged
    assert set(outcomes(report).values()) == {FAILED, SKIPPED}, summary(report)
    assert {c.depends_on for c in report.all_checks() if c.outcome == SKIPPED} <= {
        results["check_ends_when_consumers_leave"].id, results["check_ends_when_producers_finish"].id}
    put, get = line_of(STUB, "q.put(job)"), line_of(STUB, "job = q.get()")
    leave = results["check_ends_when_consumers_leave"]
    assert re.search(rf"producer 1(?: of \d+)? is blocked in q\.put\(\) at line {put} \(producer\): the queue is "
                     r"full and every consumer has left", leave.message), leave.message
    assert "Give put() a timeout" in leave.message
    assert [loc.line for loc in leave.locations] == [put]
    finish = results["check_ends_when_producers_finish"]
    assert f"are blocked in q.get() at line {get} (consumer): no job comes any more" in finish.message, finish.message
    assert "Give get() a timeout" in finish.message
    assert put not in [loc.line for loc in finish.locations] and get in [loc.line for loc in finish.locations]
    for check_id in ("check_nothing_lost_or_twice", "check_waits_patience", "check_right_exceptions"):
        assert ENDED_FIRST in results[check_id].message, results[check_id].message
    assert report.exit_code() == 1


@pytest.mark.parametrize("path", [SOLUTION, *fixes(6, "correct")], ids=lambda p: p.stem)
def test_correct_fix_passes(path: Path, graded: Grade) -> None:
    """The solution and every correct fix (short waits up to a deadline, positional timeouts...) pass every check."""
    report = graded(6, path)
    assert set(outcomes(report)) == CHECKS
    assert set(outcomes(report).values()) == {PASSED}, summary(report)


@pytest.mark.parametrize("path", fixes(6, "wrong"), ids=lambda p: p.stem)
def test_wrong_fix_fails_for_its_reason(path: Path, graded: Grade) -> None:
    """The listed checks fail with their reasons; every other check passes (or fails for its listed reason)."""
    report = graded(6, path)
    results = by_check(report)
    assert set(results) == CHECKS
    maybe = MAY_ALSO_FAIL.get(path.stem, {})
    for check_id, result in results.items():
        if check_id in WRONG[path.stem]:
            wanted = SKIPPED if WRONG[path.stem][check_id] == NOT_JUDGED else FAILED  # the hang is said once
            assert result.outcome == wanted, (check_id, summary(report))
            assert WRONG[path.stem][check_id] in result.message, (check_id, result.message)
        elif check_id in maybe and result.outcome == FAILED:
            assert maybe[check_id] in result.message, (check_id, result.message)
        else:
            assert result.outcome == PASSED, (check_id, summary(report))
    assert report.exit_code() == 1


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
@pytest.mark.parametrize("path", [SOLUTION, *fixes(6, "correct")], ids=lambda p: p.stem)
def test_correct_fix_passes_under_other_start_methods(path: Path, method: str, grade: Grade) -> None:
    """No false failure under spawn and forkserver either."""
    report = grade(6, path, start_method=method)
    assert set(outcomes(report).values()) == {PASSED}, summary(report)


@pytest.mark.parametrize("stem, check_id", [("wrong_get_nowait", "check_waits_patience"),
                                            ("wrong_put_nowait", "check_waits_patience"),
                                            ("wrong_get_timeout_only", "check_ends_when_consumers_leave")])
def test_wrong_fixes_fail_under_spawn_too(stem: str, check_id: str, grade: Grade) -> None:
    """Giving up on a slow side, and a put() that waits forever, show under spawn as well."""
    report = grade(6, ROOT / "tests" / "fixes" / "ex06" / f"{stem}.py", start_method="spawn")
    assert outcomes(report)[check_id] == FAILED, summary(report)
    assert WRONG[stem][check_id] in by_check(report)[check_id].message
