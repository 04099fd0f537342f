"""One root cause, said once: a file that does not load, or a run that never ends, is reported by the first
check that meets it; the checks depending on it are *not judged* (one line pointing at that check) in every
renderer, and the points stay exact."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from conftest import ROOT, grade_file
from grader.judging.causes import Causes
from grader.judging.harness import CLEAN, ENDS, LOADS, CheckFailed
from grader.render import classroom, gradescope, html, jsonfile, junit, terminal
from grader.results import FAILED, SKIPPED, CheckResult, Report

SYNTAX_ERROR = "import json\n\ndef load(db_path)\n    return 1\n"
MISSING_FUNCTION = '"""Exercise 3, without its functions."""\nVALUE = 1\n'


@pytest.fixture(scope="module")
def broken(tmp_path_factory: pytest.TempPathFactory) -> Report:
    """Exercise 1 graded from a file that Python cannot read."""
    folder = tmp_path_factory.mktemp("syntax")
    source = folder / "broken.py"
    source.write_text(SYNTAX_ERROR)
    return grade_file(1, source, folder)


def test_a_syntax_error_is_said_once_and_the_rest_is_not_judged(broken: Report) -> None:
    checks = broken.all_checks()
    failed = [c for c in checks if c.outcome == FAILED]
    assert len(failed) == 1 and "SyntaxError at line 3" in failed[0].message, [(c.outcome, c.message) for c in checks]
    assert failed[0].hint == ""  # the check's own hint is about races, not about a syntax error
    skipped = [c for c in checks if c.outcome == SKIPPED]
    assert len(skipped) == len(checks) - 1
    for check in skipped:
        assert check.message.startswith("Not judged:") and failed[0].title in check.message
        assert "SyntaxError" not in check.message and check.depends_on == failed[0].id
        assert check.points == 0 and check.max_points > 0 and check.hint == ""
    assert broken.max_score == 10 and broken.score == 0
    assert broken.exit_code() == 1


def test_every_renderer_says_not_judged(broken: Report) -> None:
    text = terminal.render(broken, color=False)
    assert text.count("Python cannot read") == 1 and text.count("not judged") == 4 + 1  # four checks and the footer
    data = json.loads(jsonfile.render(broken))
    outcomes = [c["outcome"] for e in data["exercises"] for c in e["checks"]]
    assert outcomes.count("skipped") == 4 and data["max_score"] == 10
    suite = ET.fromstring(junit.render(broken)).find("testsuite")
    assert suite is not None and suite.get("skipped") == "4" and suite.get("failures") == "1"
    assert len(suite.findall("testcase/skipped")) == 4
    scope = gradescope.render(broken)
    assert [t["status"] for t in scope["tests"]].count("failed") == 5
    assert sum(t["output"].count("Python cannot read") for t in scope["tests"]) == 1
    assert sum(t["max_score"] for t in scope["tests"]) == 10
    room = classroom.render(broken)
    # one test per point (the reporter's two totals agree): every one of the 10 fails, the not judged included
    assert room["status"] == "fail" and [t["status"] for t in room["tests"]] == ["fail"] * 10
    assert sum(t["message"].count("Python cannot read") for t in room["tests"]) == 1
    page = html.render_exercise(broken, broken.exercises[0])
    assert page.count("not judged") >= 4 and "ended normally" not in page
    assert "your file did not load" in page


def test_a_missing_function_is_said_once(tmp_path: Path) -> None:
    source = tmp_path / "empty.py"
    source.write_text(MISSING_FUNCTION)
    report = grade_file(3, source, tmp_path)
    failed = [c for c in report.all_checks() if c.outcome == FAILED]
    assert len(failed) == 1 and "has no `" in failed[0].message
    assert {c.outcome for c in report.all_checks()} == {FAILED, SKIPPED}


def test_the_deadlock_paragraph_of_exercise_4_appears_once(graded) -> None:
    report = graded(4, ROOT / "exercises" / "ex04_double_acquire.py")
    paragraph = "The main process waits in join()"
    saying = [c for c in report.all_checks() if paragraph in c.message]
    assert len(saying) == 1, [(c.title, c.outcome, c.message) for c in report.all_checks()]
    balance = next(c for c in report.all_checks() if c.id.endswith("check_final_balance_exact"))
    assert balance.outcome == SKIPPED and saying[0].title in balance.message and balance.points == 0


def _failed(number: int, message: str) -> CheckResult:
    return CheckResult(id=f"ex01::check_{number}", exercise=1, title=f"check {number}", outcome=FAILED, points=0.0,
                       max_points=2.0, message=message, hint="a hint")


def test_the_check_that_judges_a_prerequisite_says_it_whatever_the_order() -> None:
    causes = Causes()
    hang = "The ticket sale did not end: buyer 2 of 10 waits for the lock at line 7, which buyer 1 took and kept."
    first, owner, other = _failed(1, hang), _failed(2, hang), _failed(3, "The buyers never ran at the same time.")
    causes.record(first, CheckFailed(hang, prerequisite=ENDS), (LOADS, ENDS, CLEAN))
    causes.record(owner, CheckFailed(hang, prerequisite=ENDS), (LOADS, CLEAN))  # judges=ENDS
    causes.record(other, CheckFailed(other.message), (LOADS, ENDS, CLEAN))
    causes.settle()
    assert (first.outcome, first.points, first.depends_on) == (SKIPPED, 0.0, owner.id)
    assert first.message == "Not judged: the run it judges did not run to the end, as “check 2” says."
    assert owner.outcome == FAILED and owner.message == hang and owner.hint == "a hint"
    assert other.outcome == FAILED  # another cause is said too


def test_a_reason_repeated_after_a_lead_sentence_is_said_once() -> None:
    causes = Causes()
    reason = "main(40, 4, 5) raised ValueError: semaphore or lock released too many times, at line 12 (decrement)."
    first, second = _failed(1, reason), _failed(2, "The final value can only be judged once it ends. " + reason)
    for result in (first, second):
        causes.record(result, CheckFailed(result.message), (LOADS, ENDS, CLEAN))
    causes.settle()
    assert first.outcome == FAILED and second.outcome == SKIPPED and second.depends_on == first.id
