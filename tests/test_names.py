"""Names a student recognises: one name per process, numbered in its trial, never a namespace pid; thread
addresses and grader frames kept out of sight (shown on demand); the sentence that mentions a traceback
links to it."""
from __future__ import annotations

import re
from pathlib import Path

import html5lib

from conftest import ROOT, grade_file
from grader.render import html
from test_html_browser import CRASHING

STUB_4 = ROOT / "exercises" / "ex04_double_acquire.py"


def test_a_hang_names_processes_and_threads_without_pids_or_addresses(graded) -> None:
    report = graded(4, STUB_4)
    messages = " ".join(c.message for c in report.all_checks())
    assert re.search(r"[Cc]lient \d of 4 blocks acquiring the lock", messages), messages
    assert "(pid " not in messages
    page = html5lib.parse(html.render_exercise(report, report.exercises[0]), namespaceHTMLElements=False)
    headers = [p.text or "" for p in page.iter("p") if p.get("class") == "thread-header"]
    assert headers and all(h.startswith("Thread ") and "0x" not in h for h in headers), headers
    raw = [d for d in page.iter("details") if d.get("class") == "thread-raw"]
    assert raw and all("0x" in "".join(d.itertext()) for d in raw)  # the address is there, on demand
    library = [d for d in page.iter("details") if "library frame" in "".join(d.itertext())]
    assert library and all(d.get("open") is None for d in library)  # grader and library frames folded


def test_the_traceback_sentence_links_to_the_traceback(tmp_path: Path) -> None:
    source = tmp_path / "crashing.py"
    source.write_text(CRASHING)
    report = grade_file(1, source, tmp_path)
    check = next(c for c in report.all_checks() if c.id.endswith("check_every_buyer_finishes"))
    assert "its full traceback is in the report" in check.message and "(pid " not in check.message
    named = re.match(r"(Buyer \d+ of \d+(?: \(trial \d+\))?) crashed", check.message)
    assert named, check.message
    page = html5lib.parse(html.render_exercise(report, report.exercises[0]), namespaceHTMLElements=False)
    link = next(a for a in page.iter("a") if "".join(a.itertext()) == "its full traceback is in the report")
    target = next(d for d in page.iter("details") if d.get("id") == link.get("href")[1:])
    assert target.get("open") is not None
    assert "".join(target.find("summary").itertext()).lower() == named[1].lower()
    assert "RuntimeError: sold out" in "".join(target.itertext())
    assert re.search(rf"Process Process-\d+, {re.escape(named[1])}:", "".join(target.itertext()), re.IGNORECASE)
