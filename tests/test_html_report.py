"""The HTML feedback (grader.render.html): what a page shows, that it is strict HTML5, self-contained and
inert whatever the student's code prints or names, from hand-built reports and from real gradings."""
from __future__ import annotations

import importlib.util
import re
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Iterator

import html5lib
import pytest

from conftest import ROOT, grade_file, outcomes
from grader.commands import cli
from grader.render import html
from grader.checks import ex01
from grader.results import (ERROR, FAILED, PASSED, CheckResult, Evidence, ExerciseResult, Location, ProcessStack, Report,
                            RunResult)

NS = "{http://www.w3.org/1999/xhtml}"
SVG = "{http://www.w3.org/2000/svg}"
SCRIPT_PAYLOAD = "<script>document.documentElement.setAttribute('data-pwned','script')</script>"
IMG_PAYLOAD = "</pre><img src=x onerror=\"document.documentElement.setAttribute('data-pwned','img')\">"
QUOTED_FOLDER = "sub \"quoted\" 'name' <b>"
STUDENT_SOURCE = """\
import json
from multiprocessing import Lock, Process


def buy_ticket(db_path, lock):
    # </pre><script>alert('source')</script>
    data = json.load(open(db_path))
    if data["count"] <= 0:
        return False
    data["count"] -= 1
    json.dump(data, open(db_path, "w"))
    return True


def buyer(db_path, lock):
    buy_ticket(db_path, lock)


def main(db_path, buyers):
    lock = Lock()
    processes = [Process(target=buyer, args=(db_path, lock)) for _ in range(buyers)]
    for p in processes:
        p.start()
    for p in processes:
        p.join()
"""
STACK_TEXT = """\
Current thread 0x00007f3c929dfb80 (most recent call first):
  File "/usr/lib/python3.11/multiprocessing/synchronize.py", line 95 in __enter__
  File "/tmp/grader-run-x/work/ex01_oversold_ticket.py", line 7 in buy_ticket
  File "/tmp/grader-run-x/work/ex01_oversold_ticket.py", line 16 in buyer
  File "/usr/lib/python3.11/multiprocessing/process.py", line 108 in run
  File "/usr/lib/python3.11/multiprocessing/process.py", line 314 in _bootstrap
"""


# ---- material ------------------------------------------------------------------------------------------------
def _ev(t: float, pid: int, ev: str, **fields: Any) -> dict[str, Any]:
    return {"t": 100.0 + t, "pid": pid, "tid": 1, "ev": ev, **fields}


def _where(line: int, func: str = "buy_ticket") -> dict[str, Any]:
    return {"file": "ex01_oversold_ticket.py", "line": line, "func": func}


def _processes(labels: dict[int, str], exited: dict[int, float | None], codes: dict[int, int | None] | None = None,
               daemons: frozenset[int] = frozenset()) -> list[dict[str, Any]]:
    return [{"pid": pid, "label": label, "target": "__main__" if pid == 2 else "buyer", "daemon": pid in daemons,
             "parent": None if pid == 2 else 2, "started": 100.0 + 0.001 * pid,
             "exited": None if exited.get(pid) is None else 100.0 + exited[pid], "code": (codes or {}).get(pid, 0),
             "spawn_where": None if pid == 2 else _where(22, "main")} for pid, label in labels.items()]


def race_evidence(locked: bool = False) -> Evidence:
    """Two buyers inside buy_ticket at the same time, both told they got the ticket (or, locked, one after the
    other: the second waits for the lock inside the call, and gets its ticket after the first released it)."""
    labels = {2: "the main process", 3: "buyer 1 (pid 3)", 4: "buyer 2 (pid 4)"}
    events = [_ev(0.0, 2, "proc_start", name="MainProcess", target="__main__", daemon=False),
              _ev(0.001, 2, "spawn", child=3, daemon=False, target="buyer", where=_where(22, "main")),
              _ev(0.002, 2, "spawn", child=4, daemon=False, target="buyer", where=_where(22, "main")),
              _ev(0.010, 3, "call", func="buy_ticket", where=_where(16, "buyer")),
              _ev(0.012, 4, "call", func="buy_ticket", where=_where(16, "buyer"))]
    if locked:
        events += [_ev(0.013, 3, "acquired", lock="lock-1", kind="Lock", where=_where(6)),
                   _ev(0.030, 3, "released", lock="lock-1", kind="Lock", where=_where(6)),
                   _ev(0.0302, 4, "acquired", lock="lock-1", kind="Lock", where=_where(6)),
                   _ev(0.031, 3, "return", func="buy_ticket", value={"type": "bool", "repr": "True", "value": True}),
                   _ev(0.045, 4, "released", lock="lock-1", kind="Lock", where=_where(6))]
    else:
        events += [_ev(0.031, 3, "return", func="buy_ticket", value={"type": "bool", "repr": "True", "value": True})]
    events += [_ev(0.046, 4, "return", func="buy_ticket", value={"type": "bool", "repr": "True", "value": True}),
               _ev(0.050, 3, "proc_exit", code=0), _ev(0.051, 4, "proc_exit", code=0)]
    return Evidence(status="exited", duration=0.2, events=events, processes=_processes(labels, {3: 0.050, 4: 0.051}),
                    output={"buyer 1 (pid 3)": {"out": "buyer 3: got a ticket\n"}}, files={"tickets-0.json": '{"count": -1}'})


def hang_evidence() -> Evidence:
    """Buyer 1 took the lock and crashed holding it; buyer 2 waits for it for ever; the main process joins."""
    labels = {2: "the main process", 3: "buyer 1 (pid 3)", 4: "buyer 2 (pid 4)"}
    events = [_ev(0.0, 2, "proc_start", name="MainProcess", target="__main__", daemon=False),
              _ev(0.001, 2, "spawn", child=3, daemon=False, target="buyer", where=_where(22, "main")),
              _ev(0.002, 2, "spawn", child=4, daemon=False, target="buyer", where=_where(22, "main")),
              _ev(0.010, 3, "acquire_wait", lock="lock-1", kind="Lock", where=_where(7)),
              _ev(0.011, 3, "acquired", lock="lock-1", kind="Lock", where=_where(7)),
              _ev(0.012, 4, "acquire_wait", lock="lock-1", kind="Lock", where=_where(7)),
              _ev(0.020, 3, "proc_exit", code=1)]
    return Evidence(status="deadlock", duration=1.5, events=events,
                    processes=_processes(labels, {3: 0.020}, {3: 1, 4: None}),
                    stacks=[ProcessStack(4, "buyer 2 (pid 4)", STACK_TEXT)],
                    output={"buyer 1 (pid 3)": {"err": "Traceback (most recent call last):\nKeyError: 'count'\n"}})


def hostile_evidence() -> Evidence:
    """Every text the student controls carries markup: labels, output, items, stacks, file names."""
    evil_label = f"{IMG_PAYLOAD} 1 (pid 3)"
    events = [_ev(0.0, 2, "proc_start", name="MainProcess", target="__main__", daemon=False),
              _ev(0.001, 2, "spawn", child=3, daemon=True, target=IMG_PAYLOAD, where=_where(22, "main")),
              _ev(0.005, 3, "q_put", queue="queue-q", item={"type": "str", "repr": repr(SCRIPT_PAYLOAD)},
                  where={"file": SCRIPT_PAYLOAD, "line": 3, "func": IMG_PAYLOAD}),
              _ev(0.006, 3, "q_get", queue="queue-q", item={"type": "str", "repr": repr(IMG_PAYLOAD)}, where=_where(5)),
              _ev(0.009, 3, "proc_exit", code=0)]
    return Evidence(
        status="exited", duration=0.1, events=events,
        processes=_processes({2: "the main process", 3: evil_label}, {3: 0.009}, daemons=frozenset({3})),
        output={"main program": {"out": SCRIPT_PAYLOAD + "\n" + IMG_PAYLOAD, "err": IMG_PAYLOAD},
                evil_label: {"out": "x" * 50_000 + SCRIPT_PAYLOAD}},
        stacks=[ProcessStack(3, evil_label, f'Thread 0x1 (most recent call first):\n  File "/tmp/{QUOTED_FOLDER}/'
                             f'ex01_oversold_ticket.py", line 5 in {SCRIPT_PAYLOAD}\n  <{IMG_PAYLOAD}>\n')],
        files={SCRIPT_PAYLOAD: IMG_PAYLOAD})


def exercise_report(folder: Path, judged: list[tuple[CheckResult, Evidence | None]]) -> Report:
    """Exercise 1 of a submission in `folder` (the student's file written there), with these checks; checks
    given the same Evidence object were judged from one run."""
    folder.mkdir(parents=True, exist_ok=True)
    source = folder / "ex01_oversold_ticket.py"
    source.write_text(STUDENT_SOURCE)
    runs: list[RunResult] = []
    for result, evidence in judged:
        if evidence is not None:
            run = next((r for r in runs if r.evidence is evidence), None)
            if run is None:
                run = RunResult(f"ex01/fork/{len(runs) + 1}", "fork", "", evidence)
                runs.append(run)
            result.run = run.id
    exercise = ExerciseResult(1, "ex01_oversold_ticket", "The oversold ticket", str(source), [c for c, _ in judged],
                              critical_section=ex01.CRITICAL_SECTION)
    return Report(seed=42, start_method="fork", submission=str(folder), grader_version="test",
                  command=f"grader check 1 --seed 42 --submission '{folder}'", exercises=[exercise], runs=runs)


def check(name: str, outcome: str, evidence: Evidence | None, **fields: Any) -> tuple[CheckResult, Evidence | None]:
    points = 3.0
    return CheckResult(id=f"ex01::{name}", exercise=1, title=fields.pop("title", name.replace("_", " ")), outcome=outcome,
                       points=points if outcome == PASSED else 0.0, max_points=points, seed=42, **fields), evidence


def race_report(folder: Path, locked: bool = False, outcome: str = FAILED) -> Report:
    evidence = race_evidence(locked)
    return exercise_report(folder, [
        check("check_no_ticket_is_oversold", outcome, evidence, title="No ticket is sold twice",
              message="With 1 ticket(s) and 2 buyers, 2 buyers got a ticket: the read-decide-write at line 5 is not a "
                      "critical section.", expected="at most 1 sold", actual="2 sold",
              hint="Hold the lock around the whole read-decide-write.", locations=[Location("ex01_oversold_ticket.py", 5, "buy_ticket")]),
        check("check_every_buyer_finishes", PASSED, evidence, title="Every buyer finishes"),
    ])


def hang_report(folder: Path) -> Report:
    evidence = hang_evidence()
    return exercise_report(folder, [
        check("check_every_buyer_finishes", FAILED, evidence, title="Every buyer finishes",
              message="The ticket sale did not end: buyer 2 (pid 4) waits for the lock at line 7 (buy_ticket), which "
                      "buyer 1 (pid 3) took and never released.",
              locations=[Location("ex01_oversold_ticket.py", 7, "blocked here")]),
        check("check_all_tickets_sold", ERROR, None, title="Every ticket is sold",
              message="The grader itself failed in this check (KeyError): this is not your fault.",
              traceback="Traceback (most recent call last):\nKeyError: '<script>'"),
    ])


def hostile_report(folder: Path) -> Report:
    evidence = hostile_evidence()
    return exercise_report(folder, [
        check("check_no_ticket_is_oversold", FAILED, evidence, title=f"Title {SCRIPT_PAYLOAD}",
              message=f"Your code printed {SCRIPT_PAYLOAD} and {IMG_PAYLOAD} at line 3 and line 999.",
              expected=SCRIPT_PAYLOAD, actual=IMG_PAYLOAD, hint=IMG_PAYLOAD,
              locations=[Location("ex01_oversold_ticket.py", 3, SCRIPT_PAYLOAD)]),
    ])


def parse(page: str) -> ET.Element:
    """Parse with html5lib in strict mode: any parse error fails the test."""
    return html5lib.HTMLParser(strict=True, namespaceHTMLElements=True).parse(page)


def text_of(element: ET.Element) -> str:
    """An element's text with white space collapsed, as a reader sees it."""
    return " ".join("".join(element.itertext()).split())


def texts(root: ET.Element) -> str:
    return " ".join(text_of(el) for el in root.iter(f"{NS}body"))


def by_class(root: ET.Element, tag: str, css: str) -> list[ET.Element]:
    return [el for el in root.iter(tag) if css in (el.get("class") or "").split()]


@pytest.fixture
def pages(tmp_path: Path) -> Iterator[dict[str, str]]:
    """The exercise page of every hand-built report."""
    reports = {"race": race_report(tmp_path / "race"), "locked": race_report(tmp_path / "locked", locked=True),
               "hang": hang_report(tmp_path / "hang"), "hostile": hostile_report(tmp_path / QUOTED_FOLDER)}
    yield {name: html.render_exercise(r, r.exercises[0]) for name, r in reports.items()}


# ---- hand-built reports -------------------------------------------------------------------------------------------
def test_every_page_is_strict_html5(pages: dict[str, str], tmp_path: Path) -> None:
    for name, page in pages.items():
        assert page.startswith("<!DOCTYPE html>"), name
        parse(page)
    parse(html.render(race_report(tmp_path / "index")))


def test_a_check_shows_verdict_reason_expected_actual_hint_points_and_links_its_lines(pages: dict[str, str]) -> None:
    root = parse(pages["race"])
    failed, passed = by_class(root, f"{NS}article", "check")
    words = text_of(failed)
    assert "✘" in words and "failed" in words and "0/3 points" in words
    assert "2 buyers got a ticket" in words and "at most 1 sold" in words and "2 sold" in words
    assert "Hint:" in words and "whole read-decide-write" in words
    assert "✔" in text_of(passed) and "passed" in text_of(passed)
    links = [a.get("href") for a in failed.iter(f"{NS}a")]
    assert "#L5" in links, "the reason's 'line 5' and the location link to the student's line"
    line5 = next(tr for tr in root.iter(f"{NS}tr") if tr.get("id") == "L5")
    assert "involved" in line5.get("class", "") and "#check-1" in [a.get("href") for a in line5.iter(f"{NS}a")]


def test_the_race_is_drawn_red_and_named_in_the_reason(pages: dict[str, str]) -> None:
    root = parse(pages["race"])
    svg = next(root.iter(f"{SVG}svg"))
    lanes = by_class(svg, f"{SVG}g", "lane")
    assert len(lanes) == 3, "one lane per process: the main process and two buyers"
    overlaps = by_class(svg, f"{SVG}rect", "overlap")
    assert {o.get("data-pid") or _lane_of(svg, o) for o in overlaps} == {"3", "4"}
    note = text_of(by_class(root, f"{NS}p", "overlap-note")[0])
    assert "buyer 1 (pid 3) and buyer 2 (pid 4) were both inside buy_ticket() at the same time" in note


def _lane_of(svg: ET.Element, element: ET.Element) -> str:
    return next(g.get("data-pid", "") for g in by_class(svg, f"{SVG}g", "lane") if element in list(g.iter()))


def test_a_lock_that_serialises_the_buyers_draws_no_red_even_when_the_check_failed(pages: dict[str, str]) -> None:
    root = parse(pages["locked"])
    svg = next(root.iter(f"{SVG}svg"))
    assert not by_class(svg, f"{SVG}rect", "overlap")
    assert len(by_class(svg, f"{SVG}rect", "hold")) == 2
    assert not by_class(root, f"{NS}p", "overlap-note")


def test_a_passing_check_draws_no_red_even_when_calls_overlap(tmp_path: Path) -> None:
    """A file lock or a Manager lock is not recorded: a buyer waiting for it sits inside buy_ticket."""
    report = race_report(tmp_path, outcome=PASSED)
    root = parse(html.render_exercise(report, report.exercises[0]))
    assert not by_class(next(root.iter(f"{SVG}svg")), f"{SVG}rect", "overlap")


def test_a_hang_shows_each_stack_with_the_students_frames_first_and_library_frames_folded(pages: dict[str, str]) -> None:
    root = parse(pages["hang"])
    stack = by_class(root, f"{NS}article", "stack")[0]
    summary = text_of(by_class(stack, f"{NS}p", "stopped-at")[0])
    assert "line 7" in summary and "buy_ticket" in summary and "__enter__" in summary
    mine = by_class(stack, f"{NS}li", "mine")
    assert [text_of(li).split(" in ")[0] for li in mine] == [
        "ex01_oversold_ticket.py, line 7", "ex01_oversold_ticket.py, line 16"]
    folded = by_class(stack, f"{NS}li", "library")
    assert len(folded) == 2 and all(li.find(f"{NS}details") is not None for li in folded)
    assert "synchronize.py" in text_of(folded[0])
    svg = next(root.iter(f"{SVG}svg"))
    assert by_class(svg, f"{SVG}g", "stop"), "the moment the grader stopped the run is drawn"
    assert len(by_class(svg, f"{SVG}rect", "wait")) == 1, "buyer 2 waits for the lock until the stop"
    assert by_class(svg, f"{SVG}rect", "never-released"), "buyer 1's hold never ends"
    assert by_class(svg, f"{SVG}path", "crash"), "buyer 1 crashed"
    line7 = next(tr for tr in root.iter(f"{NS}tr") if tr.get("id") == "L7")
    assert "buyer 2 (pid 4) was here when the grader stopped the run" in text_of(line7)


def test_sentinels_queue_traffic_and_daemons_are_marked(tmp_path: Path) -> None:
    """The main process puts the sentinel, the consumer stops on it; the producer's items are plain puts."""
    labels = {2: "the main process", 3: "producer 1 (pid 3)", 4: "consumer 1 (pid 4)", 5: "heartbeat 1 (pid 5)"}
    item = {"type": "int", "repr": "0", "value": 0}
    none = {"type": "NoneType", "repr": "None", "value": None}
    events = [_ev(0.0, 2, "proc_start", name="MainProcess", target="__main__", daemon=False),
              _ev(0.01, 3, "q_put", queue="queue-q", item=item, where=_where(3, "producer")),
              _ev(0.02, 4, "q_get_wait", queue="queue-q", where=_where(5, "consumer")),
              _ev(0.021, 4, "q_get", queue="queue-q", item=item, where=_where(5, "consumer")),
              _ev(0.03, 3, "proc_exit", code=0),
              _ev(0.04, 2, "q_put", queue="queue-q", item=none, where=_where(12, "main")),
              _ev(0.05, 4, "q_get_wait", queue="queue-q", where=_where(5, "consumer")),
              _ev(0.051, 4, "q_get", queue="queue-q", item=none, where=_where(5, "consumer")),
              _ev(0.06, 4, "proc_exit", code=0)]
    evidence = Evidence(status="exited", duration=0.1, events=events,
                        processes=_processes(labels, {3: 0.03, 4: 0.06}, daemons=frozenset({5})))
    report = exercise_report(tmp_path, [check("check_program_ends", PASSED, evidence)])
    root = parse(html.render_exercise(report, report.exercises[0]))
    svg = next(root.iter(f"{SVG}svg"))
    lanes = {g.get("data-pid"): g for g in by_class(svg, f"{SVG}g", "lane")}
    marks = {pid: sorted(" ".join(p.get("class", "").split()[1:]) for p in by_class(g, f"{SVG}path", "mark"))
             for pid, g in lanes.items()}
    assert marks["3"] == ["put"] and marks["4"] == ["get", "get sentinel"] and marks["2"] == ["put sentinel"]
    assert "daemon" in lanes["5"].get("class", "").split() and "· daemon" in text_of(lanes["5"])
    assert by_class(lanes["5"], f"{SVG}rect", "daemon"), "a daemon's lifetime is drawn dashed"


def test_a_grader_error_says_so_and_keeps_the_traceback_folded(pages: dict[str, str]) -> None:
    root = parse(pages["hang"])
    error = by_class(root, f"{NS}article", "error")[0]
    assert "grader error" in text_of(error) and "not your fault" in text_of(error)
    assert error.find(f".//{NS}details/{NS}pre") is not None


def test_student_text_is_escaped_everywhere(pages: dict[str, str]) -> None:
    page = pages["hostile"]
    root = parse(page)
    assert not list(root.iter(f"{NS}script")) and not list(root.iter(f"{NS}img"))
    assert not [el for el in root.iter() for attr in el.attrib if attr.lower().startswith("on")]
    body = texts(root)
    assert SCRIPT_PAYLOAD in body and IMG_PAYLOAD in body, "shown as text, not dropped"
    assert QUOTED_FOLDER in body, "the file name with quotes is shown as it is"
    svg_text = " ".join(text_of(el) for el in root.iter(f"{SVG}svg"))
    assert IMG_PAYLOAD in svg_text and repr(SCRIPT_PAYLOAD) in svg_text
    assert "line 999" in body and 'href="#L999"' not in page, "only lines of the file become links"


def test_long_output_is_cut_in_the_middle_with_a_marker(pages: dict[str, str]) -> None:
    root = parse(pages["hostile"])
    streams = [text_of(pre) for pre in by_class(root, f"{NS}pre", "stream")]
    long = next(s for s in streams if "characters cut" in s)
    cut = 50_000 + len(SCRIPT_PAYLOAD) - html.OUTPUT_HEAD - html.OUTPUT_TAIL
    assert f"[… {cut:,} characters cut …]" in long
    assert long.startswith("x" * 100) and long.endswith(SCRIPT_PAYLOAD), "the end (where a traceback is) is kept"
    assert len(long) < html.OUTPUT_HEAD + html.OUTPUT_TAIL + 100


def test_a_page_is_self_contained_and_scriptless(pages: dict[str, str]) -> None:
    for name, page in pages.items():
        root = parse(page)
        assert not list(root.iter(f"{NS}script")) and not list(root.iter(f"{NS}link")), name
        for el in root.iter():
            for attr in ("src", "href", "action", "srcset"):
                value = el.get(attr)
                if value is not None:
                    assert value.startswith("#") or value == "index.html", (name, el.tag, attr, value)
        assert not re.search(r"url\((?!#)", page), "CSS loads nothing: no url() but the SVG's own patterns"
        assert "@import" not in page and "@font-face" not in page
        assert "Content-Security-Policy" in page and "default-src 'none'" in page


def test_a_page_has_semantic_headings_light_and_dark_schemes_and_print_styles(pages: dict[str, str]) -> None:
    page = pages["hang"]
    root = parse(page)
    headings = [int(el.tag[-1]) for el in root.iter() if re.fullmatch(rf"{re.escape(NS)}h[1-6]", el.tag)]
    assert headings[0] == 1 and headings.count(1) == 1
    assert all(b - a <= 1 for a, b in zip(headings, headings[1:])), f"no heading level skipped: {headings}"
    assert "prefers-color-scheme: dark" in page and "@media print" in page
    assert not [el for el in root.iter() if (el.get("tabindex") or "0").lstrip("-").isdigit() and int(el.get("tabindex") or 0) > 0]
    svg = next(root.iter(f"{SVG}svg"))
    assert svg.get("role") == "img" and svg.find(f"{SVG}title") is not None and svg.find(f"{SVG}desc") is not None
    words = by_class(root, f"{NS}details", "words")[0]
    assert "buyer 2 (pid 4)" in text_of(words), "the timeline in words: its text alternative"


def test_a_page_renders_whatever_the_evidence_holds(tmp_path: Path) -> None:
    """Events come from student processes: missing fields, odd types and garbage never break the page."""
    odd: list[dict[str, Any]] = [
        {"ev": "q_put"}, {"t": None, "pid": 3, "ev": "q_get"}, "not an event",  # type: ignore[list-item] {"t": float("nan"), "pid": 3, "ev": "acquired"},
        _ev(0.01, 3, "q_put", item="not a dict", where="not a dict", queue=None),
        _ev(0.02, 3, "acquired", lock=None, where={"line": "x"}), _ev(0.03, 3, "released"),
        _ev(0.04, 3, "call", func="buy_ticket"), _ev(0.05, 3, "return", func="buy_ticket", value=None),
        _ev(0.06, 3, "spawn", child="?", where=None), _ev(0.07, 3, "main_done", waiting=[None, {"pid": 9}]),
        _ev(0.08, 3, "self_deadlock", lock=["x"], where={"file": None, "line": 0}), _ev(0.09, 99, "proc_exit", code="1"),
        _ev(0.10, 3, "step_start", step="0", call=None), _ev(0.11, 3, "unknown_kind", blob={"a": [1, 2]}),
    ]
    evidence = Evidence(status="timeout", duration=float("inf"), events=odd,
                        processes=[{"pid": 3}, {"pid": "4", "label": None}, {"label": "no pid"}],
                        output={"x": {"out": None}, "y": {}}, stacks=[ProcessStack(3, "p", "garbage\n  File \"\", line 1 in ")])
    report = exercise_report(tmp_path, [check("check_no_ticket_is_oversold", FAILED, evidence, message="odd"),
                                        check("check_program_ends", FAILED, Evidence(), message="empty evidence")])
    page = html.render_exercise(report, report.exercises[0])
    parse(page)
    assert not re.search(r'="[^"]*(nan|inf)', page), "every coordinate is a number"
    report.exercises[0].file = str(tmp_path / "missing.py")
    assert "could not read" in texts(parse(html.render_exercise(report, report.exercises[0])))


def test_write_reports_writes_a_page_per_exercise_and_an_index_linking_them(tmp_path: Path) -> None:
    report = race_report(tmp_path / "sub")
    second = hang_report(tmp_path / "sub2").exercises[0]
    second.number, second.title = 4, "The double acquire"
    report.exercises.append(second)
    index = html.write_reports(report, tmp_path / "feedback")
    assert index == tmp_path / "feedback" / "index.html"
    assert sorted(p.name for p in index.parent.iterdir()) == ["ex01.html", "ex04.html", "index.html"]
    root = parse(index.read_text())
    assert [a.get("href") for a in root.iter(f"{NS}a") if a.get("href", "").endswith(".html")] == ["ex01.html", "ex04.html"]
    assert "3/12 points" in texts(root) and "grader check 1 --seed 42" in texts(root)


def _bench() -> Any:
    spec = importlib.util.spec_from_file_location("bench_render", ROOT / "bench" / "bench_render.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_busy_run_renders_to_a_page_under_300_kb(tmp_path: Path) -> None:
    report = _bench().busy_report(tmp_path, processes=8, events=2000)
    page = html.render_exercise(report, report.exercises[0])
    assert len(page.encode()) < 300_000
    root = parse(page)
    svgs = list(root.iter(f"{SVG}svg"))
    assert len(by_class([s for s in svgs if "timeline" in s.get("class", "")][0], f"{SVG}g", "lane")) == 8
    assert len(by_class(root, f"{NS}section", "run")) == 1, "three checks judged from one run show it once"


# ---- real gradings ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Report]:
    """Exercise 1 graded for real: the stub (a race) and the reference solution (passes)."""
    tmp = tmp_path_factory.mktemp("real")
    return {"race": grade_file(1, ROOT / "exercises" / "ex01_oversold_ticket.py", tmp, seed=11),
            "passing": grade_file(1, ROOT / "solutions" / "ex01_oversold_ticket.py", tmp, seed=11)}


def test_a_real_race_report_shows_the_oversold_ticket_in_red(real: dict[str, Report]) -> None:
    report = real["race"]
    assert outcomes(report)["check_no_ticket_is_oversold"] == FAILED
    root = parse(html.render_exercise(report, report.exercises[0]))
    assert len(by_class(root, f"{NS}article", "check")) == len(report.exercises[0].checks)
    svg = next(s for s in root.iter(f"{SVG}svg") if "timeline" in s.get("class", ""))
    evidence = report.evidence_of(report.exercises[0].checks[0])
    assert evidence is not None and len(by_class(svg, f"{SVG}g", "lane")) == len(evidence.processes)
    assert by_class(svg, f"{SVG}rect", "overlap")
    note = text_of(by_class(root, f"{NS}p", "overlap-note")[0])
    assert "were both inside buy_ticket() at the same time" in note


def test_a_real_passing_report_has_no_red_and_every_check_passed(real: dict[str, Report]) -> None:
    report = real["passing"]
    assert set(outcomes(report).values()) == {PASSED}
    page = html.render_exercise(report, report.exercises[0])
    root = parse(page)
    assert not by_class(root, f"{SVG}rect", "overlap") and not by_class(root, f"{NS}p", "overlap-note")
    assert len(by_class(root, f"{NS}span", "passed")) >= len(report.exercises[0].checks)
    assert by_class(root, f"{SVG}rect", "hold"), "the solution's lock holds are drawn"


def test_grader_check_writes_the_report_and_prints_its_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    submission = tmp_path / QUOTED_FOLDER
    submission.mkdir()
    shutil.copyfile(ROOT / "solutions" / "ex01_oversold_ticket.py", submission / "ex01_oversold_ticket.py")
    opened: list[str] = []
    monkeypatch.setattr("webbrowser.open", lambda url, *a, **k: opened.append(url) or True)
    monkeypatch.chdir(tmp_path)
    code = cli.main(["check", "1", "--submission", str(submission), "--seed", "5", "--report-dir", "out", "--open"])
    assert code == 0
    printed = capsys.readouterr().out
    assert f"report: {Path('out') / 'ex01.html'}" in printed and str(Path("out") / "index.html") in printed
    assert (tmp_path / "out" / "ex01.html").is_file() and (tmp_path / "out" / "index.html").is_file()
    assert opened == [(tmp_path / "out" / "ex01.html").as_uri()]
    page = (tmp_path / "out" / "ex01.html").read_text()
    parse(page)
    assert "grader check 1 --seed 5" in page and "&lt;b&gt;" in page


def test_grader_check_writes_feedback_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    submission = tmp_path / "sub"
    submission.mkdir()
    shutil.copyfile(ROOT / "exercises" / "ex01_oversold_ticket.py", submission / "ex01_oversold_ticket.py")
    monkeypatch.chdir(tmp_path)
    assert cli.main(["check", "1", "--submission", str(submission)]) == 1
    assert f"report: {Path('feedback') / 'ex01.html'}" in capsys.readouterr().out
    assert (tmp_path / "feedback" / "ex01.html").is_file()

