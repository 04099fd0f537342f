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


def test_the_documented_standalone_pytest_run_judges_a_submission(tmp_path: Path) -> None:
    """The README's contract: the check modules run under plain pytest with the plugin, from its options."""
    import subprocess
    import sys

    (tmp_path / "ex01_oversold_ticket.py").write_text((ROOT / "exercises" / "ex01_oversold_ticket.py").read_text())
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "--pyargs", "grader.checks.ex01", "-p",
                           "grader.judging.plugin", "-o", "python_functions=check_*", "-p", "no:cacheprovider",
                           "--grader-submission", str(tmp_path), "--grader-seed", "5"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "check_no_ticket_is_oversold" in done.stdout and "2 failed, 3 passed" in done.stdout


def test_a_request_names_the_files_and_the_replay_as_asked(tmp_path: Path) -> None:
    from grader.judging.request import Request

    exercise = find_exercise(1)
    request = Request.build([exercise], tmp_path, seed=3, start_method="all", shown="",
                            replay_submission="ann/files", files={exercise.filename: "ann/files/x.py"})
    assert request.shown_as(exercise) == exercise.filename and request.report_file(exercise) == "ann/files/x.py"
    assert request.replay_command() == "grader check 1 --seed 3 --submission ann/files --start-method all"
    assert request.start_methods == session.START_METHODS
    plain = Request.build([exercise])
    assert plain.submission.name == "exercises" and plain.start_methods == (None,) and plain.seed > 0
    assert "--submission" not in plain.replay_command()


def test_a_report_keeps_each_run_once_and_its_checks_name_it() -> None:
    """Checks judged from one run name it by id; the run and its evidence are kept once, through JSON too."""
    import json

    from grader.results import Report

    report = session.grade([find_exercise(1)], ROOT / "solutions", seed=3, start_method="fork")
    named = [c.run for c in report.all_checks()]
    assert all(named) and len(set(named)) < len(named), "several checks judged from one run"
    assert sorted({r.id for r in report.runs}) == sorted(set(named)) and len(report.runs) == len(set(named))
    assert all(r.start_method == "fork" and r.status == "exited" for r in report.runs)
    again = Report.from_dict(json.loads(json.dumps(report.to_dict(), default=str)))
    assert [again.evidence_of(c).events for c in again.all_checks()] == \
        [report.evidence_of(c).events for c in report.all_checks()]


def test_results_of_version_1_are_still_read() -> None:
    """A version-1 report (a copy of the evidence in every check) reads as runs the checks name."""
    from grader.results import RESULTS_VERSION, Report

    check = {"id": "ex01::check_x", "exercise": 1, "title": "x", "outcome": "failed", "points": 0, "max_points": 1,
             "evidence": {"status": "deadlock", "stacks": [{"pid": 3, "label": "buyer", "text": "File"}]}}
    data = {"seed": 1, "start_method": "fork", "submission": ".", "grader_version": "0", "command": "grader check 1",
            "version": 1, "exercises": [{"number": 1, "name": "ex01", "title": "t", "file": "ex01.py",
                                         "checks": [check]}]}
    report = Report.from_dict(data)
    (read,) = report.all_checks()
    evidence = report.evidence_of(read)
    assert evidence is not None and evidence.status == "deadlock" and evidence.stacks[0].label == "buyer"
    assert report.version == RESULTS_VERSION == 2


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
    merged = session.merge_start_methods(reports, reruns=frozenset({"spawn", "forkserver"}))
    check = merged.exercises[0].checks[0]
    assert check.outcome == FAILED and check.message == "Two buyers bought the last ticket."


def test_a_failure_only_in_the_reruns_says_which_start_methods() -> None:
    """The rerun trials are a subset of fork's: failing there and passing under fork is a real difference."""
    reports = [_one_check_report("fork", PASSED), _one_check_report("spawn", FAILED),
               _one_check_report("forkserver", FAILED)]
    merged = session.merge_start_methods(reports, reruns=frozenset({"spawn", "forkserver"}))
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
    merged = session.merge_start_methods(reports, reruns=frozenset({"spawn", "forkserver"}))
    first, second = merged.exercises
    assert first.checks[0].outcome == FAILED and first.checks[0].message.startswith("Under spawn only")
    assert second.checks[0].outcome == FAILED and second.checks[0].message == "Two buyers bought the last ticket."
