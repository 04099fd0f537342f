"""The outputs as their consumers read them, on synthetic results (no grading): GitHub Classroom's reporter
(its two totals reproduced from its code), GitHub's 10 annotations per step, grades.csv for spreadsheets."""
from __future__ import annotations

import base64
import json

import pytest

from grader.commands import ci
from grader.render import classroom, gradescope
from grader.results import ERROR, FAILED, PASSED, CheckResult, ExerciseResult, Location, Report


def report(points: list[list[tuple[str, float, float]]], message: str = "The tickets were oversold.") -> Report:
    """A report with one exercise per list and one check per (outcome, points, max_points)."""
    exercises = []
    for number, checks in enumerate(points, 1):
        exercise = ExerciseResult(number, f"ex{number:02d}_x", f"Exercise {number}", f"ex{number:02d}_x.py")
        for index, (outcome, earned, maximum) in enumerate(checks):
            exercise.checks.append(CheckResult(
                id=f"ex{number:02d}::check_{index}", exercise=number, title=f"Check {index}", outcome=outcome,
                points=earned, max_points=maximum, message="" if outcome == PASSED else message, hint="Use a lock.",
                locations=[Location(f"ex{number:02d}_x.py", 10 + index)], seed=7))
        exercises.append(exercise)
    return Report(seed=7, start_method="fork", submission=".", grader_version="test", command="grader check 1",
                  exercises=exercises)


def reporter_totals(document: dict) -> tuple[float, float]:
    """The two totals autograding-grading-reporter prints for one runner: the sum of the tests' scores (what
    notify-classroom records) and passed/total × max_score (what its console and summary table print)."""
    tests = document["tests"]
    recorded = sum(t["score"] for t in tests)
    passed = sum(t["status"] == "pass" for t in tests)
    printed = passed / len(tests) * (document["max_score"] or 1)
    return recorded, printed


def decoded(document: dict) -> dict:
    """The document as the reporter decodes the step output."""
    return json.loads(base64.b64decode(classroom.encode(document)).decode("utf-8"))


@pytest.mark.parametrize("points", [
    [[(FAILED, 0, 3), (FAILED, 0, 3), (PASSED, 2, 2), (PASSED, 1, 1), (PASSED, 1, 1)]],  # checks worth 1 to 3
    [[(PASSED, 3, 3), (FAILED, 0, 2)], [(ERROR, 0, 5), (PASSED, 10, 10)]],
    [[(PASSED, 1.5, 1.5), (FAILED, 0, 0.5), (PASSED, 0.25, 0.25)]],  # fractional points
    [[(PASSED, 2, 2), (PASSED, 0, 0), (FAILED, 0, 4)]],  # a check worth nothing
])
def test_both_totals_of_the_classroom_reporter_agree_with_the_grader(points: list) -> None:
    graded = report(points)
    document = decoded(classroom.render(graded))
    recorded, printed = reporter_totals(document)
    assert document["max_score"] == graded.max_score
    assert recorded == pytest.approx(graded.score) and printed == pytest.approx(graded.score)


def test_one_test_per_check_when_points_cannot_be_split() -> None:
    """Odd fractions would need thousands of tests: then one test per check, the recorded score still right."""
    graded = report([[(PASSED, 1 / 997, 1 / 997), (FAILED, 0, 5)]])
    document = decoded(classroom.render(graded))
    assert len(document["tests"]) == 2 and reporter_totals(document)[0] == pytest.approx(graded.score)


def test_a_huge_non_ascii_crash_stays_under_the_cap_in_utf8() -> None:
    crash = "Der Käufer ist abgestürzt: 💥 " + "ü€😀" * 60_000
    graded = report([[(ERROR, 0, 3)] * 10, [(FAILED, 0, 2), (PASSED, 5, 5)]], message=crash)
    document = classroom.render(graded)
    value = classroom.encode(document)
    assert len(value) <= classroom.RESULT_LIMIT
    raw = base64.b64decode(value)
    assert b"\\u00fc" not in raw and "abgestürzt".encode() in raw  # UTF-8, not ensure_ascii escapes
    first = json.loads(raw)["tests"][0]["message"]
    assert first.startswith("Der Käufer ist abgestürzt") and "[cut: the whole message is in the job summary" in first
    assert "grader check 1 --seed 7" in first
    recorded, printed = reporter_totals(json.loads(raw))
    assert recorded == printed == graded.score == 5


def test_at_most_ten_error_annotations_and_the_rest_in_the_summary() -> None:
    graded = report([[(FAILED, 0, 1)] * 8, [(FAILED, 0, 1)] * 8, [(PASSED, 1, 1)]])
    commands = ci.capped_annotations(ci.annotations(graded))
    errors = [c for c in commands if c.startswith("::error ")]
    notices = [c for c in commands if c.startswith("::notice ")]
    assert len(errors) == 10 and len(notices) == 1 and "6 more failed checks" in notices[0]
    overflow = ci.overflow_summary(graded, len(ci.annotations(graded)))
    listed = [line for line in overflow.splitlines() if line.startswith("- ")]
    assert len(listed) == 6 and "Exercise 2: **Check 7** (`ex02_x.py:17`)" in listed[-1]
    assert ci.overflow_summary(report([[(FAILED, 0, 1)] * 3]), 3) == ""


def test_gradescope_speaks_of_gradescope_not_of_a_local_replay() -> None:
    graded = report([[(FAILED, 0, 3), (PASSED, 2, 2)]], message="x" * 20_000)
    graded.command = "grader check 1 --seed 7 --submission /autograder/submission --start-method fork"
    results = gradescope.render(graded)
    text = results["output"] + "".join(t["output"] for t in results["tests"])
    assert "/autograder" not in text and "full report" not in text
    assert "Graded on Gradescope" in results["output"]
    assert "`grader check 1 --seed 7 --start-method fork` in your course folder" in results["output"]
    failed = results["tests"][0]["output"]
    assert len(failed) <= gradescope.OUTPUT_LIMIT and failed.rstrip().endswith("to see the whole run ...]")


# ---- checks hidden until the due date, late work on Gradescope ----------------------------------------------
def hidden_lab(due: str = "2027-03-01T23:59:00+00:00"):
    from grader.lms.assignments import Assignment, LatePolicy, parse_time

    return Assignment("lab", (1,), due=parse_time(due, "due"), late=LatePolicy(per_day=10, cap=50),
                      hidden=("ex01::check_1",))


def test_a_hidden_check_says_nothing_before_the_due_date_in_any_student_output() -> None:
    from datetime import datetime, timezone

    from grader.lms import student_view
    from grader.render import junit, terminal

    graded = report([[(PASSED, 2, 2), (FAILED, 0, 3)]], message="SECRET: the buyers never overlapped")
    graded.exercises[0].checks[1].title = "SECRET title"
    before = datetime(2027, 2, 1, tzinfo=timezone.utc)
    seen = student_view.view(graded, hidden_lab(), {}, now=before)
    assert seen.hidden == {"ex01::check_1"} and seen.shown.score == graded.score
    outputs = [terminal.render(seen.shown, color=False), junit.render(seen.shown), ci.step_summary(seen.shown),
               "\n".join(ci.annotations(seen.shown)), json.dumps(classroom.render(seen.shown), ensure_ascii=False)]
    for text in outputs:
        assert "SECRET" not in text and "Use a lock" not in text
        assert "Hidden check 1" in text
    results = gradescope.render(seen.full, hidden=seen.hidden)
    visibility = {t["name"]: t["visibility"] for t in results["tests"]}
    assert visibility == {"Exercise 1: Check 0": "visible", "Exercise 1: SECRET title": "after_due_date"}
    assert "SECRET" not in results["output"] and "1 more checks are shown after the due date" in results["output"]
    after = student_view.view(graded, hidden_lab(), {}, now=datetime(2027, 3, 2, tzinfo=timezone.utc))
    assert after.hidden == set() and after.shown is graded


def test_gradescope_takes_the_late_penalty_from_its_submission_metadata() -> None:
    from grader.lms import student_view

    graded = report([[(PASSED, 2, 2), (PASSED, 8, 8)]])
    metadata = {"created_at": "2027-03-04T10:00:00.000000+00:00",
                "assignment": {"due_date": "2027-03-03T23:59:00.000000+00:00", "title": "Lab"}}
    seen = student_view.view(graded, hidden_lab(), metadata)  # the due date on Gradescope (an extension) counts
    assert (seen.late.days, seen.late.percent, seen.penalty) == (1, 10, 1)
    results = gradescope.render(seen.full, penalty=seen.penalty, late_note=seen.late.note)
    assert results["score"] == 9 and "1 day(s) late; 1 points taken off, score 9" in results["output"]
    on_time = student_view.view(graded, hidden_lab(), {"created_at": "2027-03-01T10:00:00+00:00"})
    assert on_time.penalty == 0


def test_a_course_with_many_points_still_fits_the_cap_with_totals_that_agree() -> None:
    """300 checks of 5 points: 1500 point-tests would not fit in 64 KiB; one test per check then does."""
    graded = report([[(FAILED, 0, 5)] * 30 + [(PASSED, 5, 5)] * 30 for _ in range(5)], message="ü" * 3000)
    document = classroom.render(graded)
    assert len(classroom.encode(document)) <= classroom.RESULT_LIMIT
    recorded, printed = reporter_totals(decoded(document))
    assert recorded == pytest.approx(graded.score) and printed == pytest.approx(graded.score)
