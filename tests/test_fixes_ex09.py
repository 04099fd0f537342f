"""Exercise 9: the stub fails for its reason (a failing task kills its worker before task_done(), so q.join()
waits forever); the solution and every correct fix pass (under fork, spawn and forkserver); every wrong fix
fails the checks it should, for its reason, and passes the others."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest

from conftest import ROOT, assert_fails_exactly, by_check, fixes, line_of, outcomes, summary
from grader.results import FAILED, PASSED, Report

STUB = ROOT / "exercises" / "ex09_joinable_queue.py"
SOLUTION = ROOT / "solutions" / "ex09_joinable_queue.py"
CHECKS = {"check_join_returns", "check_task_done_once_per_task", "check_every_task_handled_once",
          "check_workers_survive_failures"}
NOT_JUDGED = "can only be judged once main() has returned"
# fix file stem -> {check that must fail: a piece of its reason}; the checks not named must pass.
WRONG: dict[str, dict[str, str]] = {
    "wrong_finally_without_except": {
        "check_join_returns": "every worker had died, each with the exception of a failing task",
        "check_every_task_handled_once": NOT_JUDGED,
        "check_workers_survive_failures": "died with ValueError: invalid task",
    },
    "wrong_except_without_task_done": {
        "check_join_returns": "and the worker went on without calling task_done() for it",
        "check_task_done_once_per_task": "and the worker went on without calling task_done() for it",
        "check_every_task_handled_once": NOT_JUDGED,
    },
    "wrong_task_done_before_work": {
        "check_task_done_once_per_task": "had finished. The task counts as done while it is still being worked on",
        "check_every_task_handled_once": "are missing",
    },
    "wrong_not_daemon": {"check_join_returns": "is not a daemon and waits for tasks forever"},
    "wrong_join_workers": {
        "check_join_returns": "The workers loop forever, so joining one never returns",
        "check_every_task_handled_once": NOT_JUDGED,
    },
    "wrong_stop_after_failure": {
        "check_join_returns": "every worker had ended (returned from worker()) after a failing task",
        "check_every_task_handled_once": NOT_JUDGED,
        "check_workers_survive_failures": "ended (returned from worker()) right after handle(",
    },
    "wrong_catch_outside_loop": {
        "check_join_returns": "and the worker returned from worker() without calling task_done() for it",
        "check_task_done_once_per_task": "and the worker returned from worker() without calling task_done() for it",
        "check_every_task_handled_once": NOT_JUDGED,
        "check_workers_survive_failures": "ended (returned from worker()) right after handle(",
    },
}


Grade = Callable[..., Report]


def test_the_corpus_is_complete() -> None:
    """Every wrong fix has its expected failures listed, and there are at least three correct fixes."""
    assert {p.stem for p in fixes(9, "wrong")} == set(WRONG)
    assert len(fixes(9, "correct")) >= 3


def test_stub_fails_for_its_reason(grade: Grade) -> None:
    """The failing task kills its worker before task_done(): join() waits forever, and each check says why."""
    report = grade(9, STUB)
    results = by_check(report)
    assert set(results) == CHECKS
    assert set(outcomes(report).values()) == {FAILED}, summary(report)
    handle_line, join_line = line_of(STUB, "results[task] = handle(task)"), line_of(STUB, "queue.join()")
    join = results["check_join_returns"]
    assert f"main() waits forever in q.join() at line {join_line} (main)" in join.message, join.message
    assert "the worker died with that exception before it called task_done()" in join.message, join.message
    assert (join_line, "waits here forever") in {(loc.line, loc.label) for loc in join.locations}
    assert (handle_line, "raises: the worker dies here") in {(loc.line, loc.label) for loc in join.locations}
    done = results["check_task_done_once_per_task"]
    assert "raised ValueError('invalid task" in done.message, done.message
    assert NOT_JUDGED in results["check_every_task_handled_once"].message
    survive = results["check_workers_survive_failures"]
    assert "died with ValueError: invalid task" in survive.message, survive.message
    assert [loc.line for loc in survive.locations] == [handle_line]
    assert report.exit_code() == 1


@pytest.mark.parametrize("path", [SOLUTION, *fixes(9, "correct")], ids=lambda p: p.stem)
def test_correct_fix_passes(path: Path, graded: Grade) -> None:
    """The solution and every correct fix (finally, suppress, sentinels and joined workers...) pass every check."""
    report = graded(9, path)
    assert set(outcomes(report)) == CHECKS
    assert set(outcomes(report).values()) == {PASSED}, summary(report)


@pytest.mark.parametrize("path", fixes(9, "wrong"), ids=lambda p: p.stem)
def test_wrong_fix_fails_for_its_reason(path: Path, graded: Grade) -> None:
    """The listed checks fail with their reasons; every other check passes."""
    report = graded(9, path)
    assert_fails_exactly(report, CHECKS, WRONG[path.stem])


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
@pytest.mark.parametrize("path", [SOLUTION, *fixes(9, "correct")], ids=lambda p: p.stem)
def test_correct_fix_passes_under_other_start_methods(path: Path, method: str, grade: Grade) -> None:
    """No false failure under spawn and forkserver either."""
    report = grade(9, path, start_method=method)
    assert set(outcomes(report).values()) == {PASSED}, summary(report)


@pytest.mark.parametrize("stem", ["wrong_task_done_before_work", "wrong_not_daemon"])
def test_wrong_fixes_fail_under_spawn_too(stem: str, grade: Grade) -> None:
    """An early task_done() and non-daemon workers show under spawn as well."""
    report = grade(9, ROOT / "tests" / "fixes" / "ex09" / f"{stem}.py", start_method="spawn")
    results = by_check(report)
    for check_id, reason in WRONG[stem].items():
        assert results[check_id].outcome == FAILED, summary(report)
        assert reason in results[check_id].message, (check_id, results[check_id].message)
