"""Grading sessions: --start-method all keeps the worst verdict and says which methods failed; one broken
check module costs only its own exercise."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from conftest import ROOT
from grader.judging import session
from grader.course import find_exercise
from grader.results import ERROR, FAILED, PASSED, CheckResult, ExerciseResult, Report

LAMBDA_TARGET = (ROOT / "solutions" / "ex01_oversold_ticket.py").read_text().replace(
    "Process(target=buyer, args=(db_path, lock))", "Process(target=lambda: buyer(db_path, lock))")


def test_all_methods_fail_a_program_that_only_works_under_fork(tmp_path: Path) -> None:
    """A lambda target pickles under no method but fork: the verdict says so and explains spawn."""
    (tmp_path / "ex01_oversold_ticket.py").write_text(LAMBDA_TARGET)
    report = session.grade([find_exercise(1)], tmp_path, seed=7, start_method="all")
    assert report.start_method == "all" and "--start-method all" in report.command
    failed = [c for c in report.all_checks() if c.outcome == FAILED]
    assert failed and all(c.points == 0 for c in failed)
    message = failed[0].message
    assert message.startswith("Under spawn and forkserver only (it passes under fork)")
    assert "pickle" in message and "re-imports your module" in message


def test_all_methods_pass_a_correct_solution() -> None:
    report = session.grade([find_exercise(4)], ROOT / "solutions", start_method="all")
    assert {c.outcome for c in report.all_checks()} == {PASSED}
    assert report.exit_code() == 0


def test_a_broken_check_module_costs_only_its_exercise(monkeypatch) -> None:
    broken = dataclasses.replace(find_exercise(2), checks="grader.checks.no_such_module")
    report = session.grade([find_exercise(1), broken], ROOT / "solutions", seed=3)
    first, second = report.exercises
    assert {c.outcome for c in first.checks} == {PASSED}
    assert [c.outcome for c in second.checks] == [ERROR]
    assert "not your fault" in second.checks[0].message
    assert report.exit_code() == 2


def _one_check_report(method: str, outcome: str) -> Report:
    check = CheckResult(id="ex01::check_x", exercise=1, title="x", outcome=outcome, points=0.0, max_points=1.0,
                        message="Two buyers bought the last ticket.")
    return Report(seed=1, start_method=method, submission="s", grader_version="0", command="c",
                  exercises=[ExerciseResult(1, "ex01_oversold_ticket", "t", "f", [check])])


def test_a_failure_under_the_full_method_is_not_said_to_pass_where_fewer_trials_ran() -> None:
    """spawn and forkserver re-run only the trials that can differ: a race found in fork's full set that their
    subset missed is no start-method difference, and the verdict must not claim one."""
    reports = [_one_check_report("fork", FAILED), _one_check_report("spawn", PASSED),
               _one_check_report("forkserver", PASSED)]
    merged = session.merge_start_methods(reports, "grader check 1", reruns=frozenset({"spawn", "forkserver"}))
    check = merged.exercises[0].checks[0]
    assert check.outcome == FAILED and check.message == "Two buyers bought the last ticket."


def test_a_failure_only_in_the_reruns_says_which_start_methods() -> None:
    """The rerun trials are a subset of fork's: failing there and passing under fork is a real difference."""
    reports = [_one_check_report("fork", PASSED), _one_check_report("spawn", FAILED),
               _one_check_report("forkserver", FAILED)]
    merged = session.merge_start_methods(reports, "grader check 1", reruns=frozenset({"spawn", "forkserver"}))
    check = merged.exercises[0].checks[0]
    assert check.outcome == FAILED
    assert check.message.startswith("Under spawn and forkserver only (it passes under fork)")


def test_reruns_that_leave_out_an_exercise_keep_its_full_verdict() -> None:
    """Exercises whose every check failed under fork are not re-run: the merge takes them from fork alone."""
    fork = _one_check_report("fork", PASSED)
    stub = ExerciseResult(2, "ex02_shapes", "t", "f", [dataclasses.replace(fork.exercises[0].checks[0], exercise=2,
                                                                           id="ex02::check_y", outcome=FAILED)])
    fork.exercises.append(stub)
    reports = [fork, _one_check_report("spawn", FAILED), _one_check_report("forkserver", PASSED)]
    merged = session.merge_start_methods(reports, "grader check 1 2", reruns=frozenset({"spawn", "forkserver"}))
    first, second = merged.exercises
    assert first.checks[0].outcome == FAILED and first.checks[0].message.startswith("Under spawn only")
    assert second.checks[0].outcome == FAILED and second.checks[0].message == "Two buyers bought the last ticket."
