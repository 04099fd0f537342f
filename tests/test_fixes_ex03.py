"""Exercise 3: the stub fails for its reason, the solution and every correct fix pass every check (under fork,
spawn and forkserver), every wrong fix fails the check it should, for its reason."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest

from conftest import ROOT, fixes, outcomes
from grader.results import FAILED, PASSED, Report

Grade = Callable[..., Report]

# fix file stem -> (the check that must fail, a piece of its reason)
WRONG = {
    "wrong_daemon_after_start": ("check_worker_is_daemon_from_start", "process has already started"),
    "wrong_join_timeout": ("check_program_ends_after_work", "Python waits at exit for every non-daemonic child"),
    "wrong_terminate_normal_path": ("check_program_ends_when_work_raises", "When do_work() raised"),
    "wrong_detached_fork": ("check_nothing_outlives_program", "still running"),
    "wrong_detached_grandchild": ("check_nothing_outlives_program", "still running"),
    "wrong_heartbeat_thread": ("check_worker_is_daemon_from_start", "not in a worker process"),
    "wrong_start_after_work": ("check_heartbeat_writes_during_work",
                               "no worker process had been started while do_work() ran"),
    "wrong_join_daemon": ("check_program_ends_after_work", "join() waits until the worker ends"),
}
# Checks a wrong fix must still pass: the other checks must not blame it for what it does right. (A program
# that never ends also fails "Nothing outlives the program": nothing can be said of what it leaves behind.)
STILL_PASSES = {
    "wrong_daemon_after_start": set(),
    "wrong_join_timeout": {"check_heartbeat_writes_during_work"},
    "wrong_terminate_normal_path": {"check_program_ends_after_work", "check_heartbeat_writes_during_work"},
    "wrong_heartbeat_thread": {"check_program_ends_after_work", "check_heartbeat_writes_during_work",
                               "check_program_ends_when_work_raises", "check_nothing_outlives_program"},
    "wrong_start_after_work": {"check_program_ends_after_work", "check_worker_is_daemon_from_start",
                               "check_program_ends_when_work_raises", "check_nothing_outlives_program"},
    "wrong_join_daemon": {"check_heartbeat_writes_during_work", "check_worker_is_daemon_from_start",
                          "check_program_ends_when_work_raises"},
}


def _failures(report: Report) -> list[tuple[str, str, str | None]]:
    """The checks that did not pass, with their messages, for assertion output."""
    return [(c.id, c.outcome, c.message) for c in report.all_checks() if c.outcome != PASSED]


def test_the_corpus_is_complete() -> None:
    """Every wrong fix has its expected verdict here, and there are enough correct fixes."""
    assert {p.stem for p in fixes(3, "wrong")} == set(WRONG)
    assert len(fixes(3, "correct")) >= 3


def test_the_stub_never_exits(grade: Grade) -> None:
    """The stub's non-daemon worker keeps the program alive: the reason names it and its start() line."""
    report = grade(3, ROOT / "exercises" / "ex03_daemon_worker.py")
    results = {c.id.split("::")[1]: c for c in report.all_checks()}
    ends = results["check_program_ends_after_work"]
    assert ends.outcome == FAILED, ends
    assert "Python waits at exit for every non-daemonic child" in ends.message, ends.message
    assert "heartbeat 1" in ends.message and "heartbeat()" in ends.message, ends.message
    assert [loc.line for loc in ends.locations] == [38], ends.locations  # worker.start() in the stub
    daemon = results["check_worker_is_daemon_from_start"]
    assert daemon.outcome == FAILED and "was not a daemon when it started" in daemon.message, daemon.message
    assert results["check_program_ends_when_work_raises"].outcome == FAILED
    assert results["check_heartbeat_writes_during_work"].outcome == PASSED
    assert report.exit_code() == 1


def test_the_solution_passes(grade: Grade) -> None:
    """The course's solution passes every check."""
    report = grade(3, ROOT / "solutions" / "ex03_daemon_worker.py")
    assert set(outcomes(report).values()) == {PASSED}, _failures(report)


@pytest.mark.parametrize("path", fixes(3, "wrong"), ids=lambda p: p.stem)
def test_wrong_fix_fails_for_its_reason(path: Path, graded: Grade) -> None:
    """A wrong fix fails its check with a reason that says why, and passes the checks it does not break."""
    check_id, reason = WRONG[path.stem]
    report = graded(3, path)
    results = {c.id.split("::")[1]: c for c in report.all_checks()}
    result = results[check_id]
    assert result.outcome == FAILED, result
    assert reason in result.message, result.message
    for passing in STILL_PASSES.get(path.stem, set()):
        assert results[passing].outcome == PASSED, (passing, results[passing].message)
    assert report.exit_code() == 1


@pytest.mark.parametrize("path", fixes(3, "correct"), ids=lambda p: p.stem)
def test_correct_fix_passes(path: Path, graded: Grade) -> None:
    """A correct fix passes every check under fork."""
    report = graded(3, path)
    assert set(outcomes(report).values()) == {PASSED}, _failures(report)


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
@pytest.mark.parametrize("path", [ROOT / "solutions" / "ex03_daemon_worker.py", *fixes(3, "correct")],
                         ids=lambda p: p.stem)
def test_correct_fix_passes_under_other_start_methods(path: Path, method: str, grade: Grade) -> None:
    """No false failure when children boot slowly (spawn) or come from a server (forkserver)."""
    report = grade(3, path, start_method=method)
    assert set(outcomes(report).values()) == {PASSED}, _failures(report)


def test_wrong_fixes_fail_under_spawn_too(grade: Grade) -> None:
    """The daemon flag and the hang do not depend on how children start."""
    report = grade(3, ROOT / "tests" / "fixes" / "ex03" / "wrong_terminate_normal_path.py", start_method="spawn")
    assert outcomes(report)["check_program_ends_when_work_raises"] == FAILED
    assert outcomes(report)["check_program_ends_after_work"] == PASSED
