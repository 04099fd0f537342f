"""Start methods named: a lock made at the top level of the file is named by its line under spawn (each child
re-imported the module and made its own), and under --start-method all a check failing under some methods
only says which, with how they differ said once per exercise."""
from __future__ import annotations

import json
from pathlib import Path

import html5lib

from conftest import line_of
from grader.judging import session
from grader.render import html, jsonfile, terminal
from grader.results import FAILED, PASSED, CheckResult, ExerciseResult, Report

MODULE_LOCK = Path(__file__).parent / "fixtures" / "ex05_module_level_lock.py"


def test_a_module_level_lock_under_spawn_is_named_by_its_line(grade) -> None:
    report = grade(5, MODULE_LOCK, start_method="spawn")
    line = line_of(MODULE_LOCK, "LOCK = Lock()")
    saying = [c for c in report.all_checks() if "was made again in each child" in c.message]
    assert len(saying) == 1, [(c.title, c.outcome, c.message) for c in report.all_checks()]  # said once
    check = saying[0]
    assert check.outcome == FAILED
    assert f"the lock made at the top level of your file (line {line})" in check.message
    assert "re-imports your module" in check.message and "a lock of its own" in check.message
    assert check.locations[0].line == line and check.locations[0].label == "made again in every child"


def _report(method: str, outcomes: list[str]) -> Report:
    checks = [CheckResult(id=f"ex05::check_{i}", exercise=5, title=f"check {i}", outcome=o, points=0.0,
                          max_points=1.0, message=f"reason {i}." if o == FAILED else "") for i, o in enumerate(outcomes)]
    return Report(seed=1, start_method=method, submission="s", grader_version="0", command="c",
                  exercises=[ExerciseResult(5, "ex05", "t", "f", checks)])


def test_under_all_a_failure_names_its_start_methods_and_the_difference_once() -> None:
    merged = session.merge_start_methods([_report("fork", [PASSED, PASSED]), _report("spawn", [FAILED, FAILED]),
                                          _report("forkserver", [PASSED, FAILED])])
    first, second = merged.exercises[0].checks
    assert first.message.startswith("Under spawn only (it passes under fork and forkserver): reason 0.")
    assert second.message.startswith("Under spawn and forkserver only (it passes under fork): reason 1.")
    assert session.METHOD_DIFFERENCES["spawn"] in first.message
    assert session.METHOD_DIFFERENCES["spawn"] not in second.message  # said once per exercise


def test_the_heading_names_the_start_methods_in_terminal_html_and_json() -> None:
    """The heading of a check failing under some start methods only says which, in every format a student reads;
    a check that failed under every method says nothing of start methods."""
    merged = session.merge_start_methods([_report("fork", [PASSED, FAILED]), _report("spawn", [FAILED, FAILED]),
                                          _report("forkserver", [PASSED, FAILED])])
    first, second = merged.exercises[0].checks
    assert (first.failed_under, first.passed_under) == (["spawn"], ["fork", "forkserver"])
    assert (second.failed_under, second.passed_under) == ([], [])

    text = terminal.render(merged, color=False)
    assert "✘ FAILED under spawn only  check 0" in text
    assert "✘ FAILED  check 1" in text

    page = html5lib.HTMLParser(strict=True, namespaceHTMLElements=False).parse(
        html.render_exercise(merged, merged.exercises[0]))
    headings = [" ".join("".join(h.itertext()).split()) for h in page.iter("h3") if "check-" in h.get("id", "")]
    assert headings[0].startswith("✘ failed under spawn only check 0"), headings
    assert "under" not in headings[1], headings

    data = json.loads(jsonfile.render(merged))
    checks = data["exercises"][0]["checks"]
    assert checks[0]["failed_under"] == ["spawn"] and checks[0]["passed_under"] == ["fork", "forkserver"]
    assert Report.from_dict(data).exercises[0].checks[0].start_method_words() == "under spawn only"
