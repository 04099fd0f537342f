"""Start methods named: a lock made at the top level of the file is named by its line under spawn (each child
re-imported the module and made its own), and under --start-method all a check failing under some methods
only says which, with how they differ said once per exercise."""
from __future__ import annotations

import json
from pathlib import Path

import html5lib

from conftest import line_of
from grader.judging import session, startmethods
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


MODULE_QUEUE = Path(__file__).parent / "fixtures" / "ex02_module_level_queue.py"


def test_a_module_level_queue_under_spawn_is_named_by_its_line(grade) -> None:
    """Each spawned child re-imports the module and waits on a queue of its own: the hang is explained, and the
    queue's line named once, with what each child got."""
    report = grade(2, MODULE_QUEUE, start_method="spawn")
    line = line_of(MODULE_QUEUE, "JOBS = Queue()")
    saying = [c for c in report.all_checks() if "again in each child" in c.message]
    assert len(saying) == 1, [(c.title, c.outcome, c.message) for c in report.all_checks()]
    check = saying[0]
    assert check.outcome == FAILED and "did not end" in check.message
    assert f"the queue or locks made at the top level of your file (line {line}, 2 locks" in check.message
    assert "were made again in each child, so each child got a queue (or locks) of its own" in check.message
    assert check.locations[0].line == line and check.locations[0].label == "made again in every child"


def _made(pid: int, ev: str, line: int, **fields: object) -> dict:
    if ev == "file_read":
        return {"t": 1.0, "pid": pid, "ev": ev, "frames": [{"line": line, "func": "<module>"}], **fields}
    return {"t": 1.0, "pid": pid, "ev": ev, "kind": "Lock", "where": {"line": line, "func": "<module>"}, **fields}


def test_a_file_opened_at_import_by_each_child_is_named_with_the_locks() -> None:
    """A file of the run read at the top level by a child is named by its line and path, after a lock's line;
    what the main process made at import, and what a function made, say nothing."""
    events = [{"t": 0.0, "pid": 1, "ev": "proc_start", "target": "__main__"},
              _made(1, "lock_new", 3), _made(1, "file_read", 9, path="stock.txt"),
              _made(2, "file_read", 9, path="stock.txt"), _made(2, "lock_new", 5),
              _made(3, "file_read", 9, path="stock.txt"), _made(3, "lock_new", 5),
              {"t": 1.0, "pid": 2, "ev": "lock_new", "kind": "Lock", "where": {"line": 20, "func": "worker"}}]
    assert startmethods.explain(events, "fork", "ex.py") == ("", [])
    sentence, locations = startmethods.explain(events, "forkserver", "ex.py")
    assert sentence.startswith("Under forkserver, every child process starts a fresh interpreter and re-imports your "
                               "module: the lock made at the top level of your file (line 5); and the file stock.txt "
                               "opened at the top level of your file (line 9) were made again in each child, so each "
                               "child got a lock of its own and a file object of its own (with its own position in the "
                               "file) and none was shared."), sentence
    assert [(loc.line, loc.label) for loc in locations] == [(5, "made again in every child"),
                                                            (9, "made again in every child")]
    alone, _ = startmethods.explain([e for e in events if e["ev"] != "lock_new"], "spawn", "ex.py")
    assert "the file stock.txt opened at the top level of your file (line 9) was opened again in each child" in alone


def test_under_all_the_module_level_lock_fails_under_spawn_and_forkserver_only(grade) -> None:
    """End to end: the heading names the failing methods, the message says what differs (the line each child
    made again), and the general paragraph about start methods is not added on top."""
    report = grade(5, MODULE_LOCK, start_method="all")
    failing = [c for c in report.all_checks() if c.outcome == FAILED]
    assert failing, [(c.title, c.outcome, c.message) for c in report.all_checks()]
    for check in failing:
        assert (check.failed_under, check.passed_under) == (["spawn", "forkserver"], ["fork"]), check.message
        assert check.message.startswith("Under spawn and forkserver only (it passes under fork): ")
    saying = [c for c in failing if "was made again in each child" in c.message]
    assert len(saying) == 1
    assert session.METHOD_DIFFERENCES["spawn"] not in saying[0].message
    assert "✘ FAILED under spawn and forkserver only" in terminal.render(report, color=False)
