"""A witness for exercise 1's race: the reason tells the interleaving that broke the invariant (who read what,
where, when, with or without the lock); a lock in the wrong place is named by its unprotected line; and the
timeline in Chromium draws the overlap and every unprotected access in red, whether a lock was held or not."""
from __future__ import annotations

import json
import re
from pathlib import Path

import html5lib
import pytest

from conftest import FIXES, ROOT, line_of
from grader.render import html, timeline
from grader.results import FAILED, Report

RELEASED_EARLY = FIXES / "ex01" / "wrong_lock_released_before_write.py"
LOCK_ONLY_WRITE = FIXES / "ex01" / "wrong_lock_only_write.py"
STUB = ROOT / "exercises" / "ex01_oversold_ticket.py"
WITNESS = re.compile(r"(?P<a>buyer \d+ of \d+ \(trial \d+\)) read count=(?P<n>\d+) at line (?P<line>\d+) "
                     r"(?P<lock>holding|without holding) the lock \([\d.]+ ms\); (?P<b>buyer \d+ of \d+ \(trial \d+\)) "
                     r"read count=(?P=n) at line (?P=line) .*before (?P=a) wrote it back at line (?P<write>\d+) "
                     r"(holding|without holding) the lock \([\d.]+ ms\): both sold: \d+ sales of \d+ ticket\(s\)\.",
                     re.IGNORECASE)


def _oversold(report: Report):  # noqa: ANN202 - a CheckResult
    result = next(c for c in report.all_checks() if c.id.endswith("check_no_ticket_is_oversold"))
    assert result.outcome == FAILED, result
    return result


def test_the_stub_shows_two_buyers_reading_the_same_count(graded) -> None:
    result = _oversold(graded(1, STUB))
    seen = WITNESS.search(result.message)
    assert seen, result.message
    assert seen["a"] != seen["b"] and seen["lock"].lower() == "without holding"
    assert "(pid" not in result.message  # one name per process, numbered in its trial: "buyer 3 of 10 (trial 1)"
    # expected and actual state the invariant and the state, so that a student can check one against the other
    invariant = re.fullmatch(r"at most (\d+) sold, and the file's count = (\d+) − sold", result.expected or "")
    state = re.fullmatch(r"(\d+) sold, count (-?\d+)", result.actual or "")
    assert invariant and state and invariant[1] == invariant[2], (result.expected, result.actual)
    assert int(state[1]) > int(invariant[1])  # oversold: the actual visibly breaks the expected
    assert int(seen["line"]) == line_of(STUB, "    data = load(db_path)")
    assert int(seen["write"]) == line_of(STUB, "    save(db_path, data)")


def test_a_lock_released_before_the_write_names_the_unprotected_line(graded) -> None:
    result = _oversold(graded(1, RELEASED_EARLY))
    write = line_of(RELEASED_EARLY, "    save(db_path, data)")
    assert "The lock covers only part of the critical section" in result.message, result.message
    assert f"writing the count back at line {write} without it" in result.message
    assert f"took it at line {line_of(RELEASED_EARLY, 'lock.acquire()')}" in result.message
    assert f"released it at line {line_of(RELEASED_EARLY, 'lock.release()')}" in result.message
    assert result.locations[0].line == write and result.locations[0].label == "write outside the lock"
    assert "def buy_ticket" not in result.message
    seen = WITNESS.search(result.message)
    assert seen and seen["lock"].lower() == "holding" and int(seen["write"]) == write, result.message


def test_a_decision_before_the_lock_names_the_unprotected_read(graded) -> None:
    result = _oversold(graded(1, LOCK_ONLY_WRITE))
    read = line_of(LOCK_ONLY_WRITE, "data = load(db_path)")
    assert f"read the count at line {read} before taking the lock at line {line_of(LOCK_ONLY_WRITE, 'with lock:')}" \
        in result.message, result.message
    assert result.locations[0].line == read and result.locations[0].label == "read outside the lock"


PROBE = """<script>(function () {
  var overlap = document.querySelector('svg.timeline rect.overlap');
  var bar = document.querySelector('svg.timeline path.mark.unlocked');
  var r = {overlaps: document.querySelectorAll('svg.timeline rect.overlap').length,
           bars: document.querySelectorAll('svg.timeline path.mark.unlocked').length,
           overlapFill: overlap ? getComputedStyle(overlap).fill : null,
           barStroke: bar ? getComputedStyle(bar).stroke : null,
           barHeight: bar ? bar.getBoundingClientRect().height : 0,
           note: (document.querySelector('.overlap-note') || {}).textContent || ''};
  var out = document.createElement('pre'); out.id = 'test-probe'; out.textContent = JSON.stringify(r);
  document.body.appendChild(out);
})();</script>"""


def _drawn_in_chromium(report: Report, tmp_path: Path, bar_kind: str = "unlocked") -> dict:
    """What headless Chromium computes for the exercise page's red marks (skips without Chromium)."""
    browser = pytest.importorskip("test_html_browser")
    if browser.BROWSER is None:
        pytest.skip("no Chromium installed")
    tmp_path.mkdir(parents=True, exist_ok=True)
    page = tmp_path / "page.html"
    page.write_text(html.render_exercise(report, report.exercises[0]))
    text = page.read_text()
    start = text.index('<meta http-equiv="Content-Security-Policy"')
    text = text[:start] + text[text.index(">", start) + 1:]
    copy = tmp_path / "probe-page.html"
    copy.write_text(text.replace("</body>", PROBE.replace("mark.unlocked", f"mark.{bar_kind}") + "</body>"))
    tree = html5lib.parse(browser._browse(tmp_path, copy, "--dump-dom"), namespaceHTMLElements=False)
    found = next(el for el in tree.iter("pre") if el.get("id") == "test-probe")
    return json.loads(found.text)


RED = {"rgb(224, 0, 15)", "rgb(255, 59, 59)"}  # --overlap, light and dark


def test_chromium_draws_the_misplaced_lock_in_red(graded, tmp_path: Path) -> None:
    seen = _drawn_in_chromium(graded(1, RELEASED_EARLY), tmp_path)
    assert seen["overlaps"] >= 2 and seen["overlapFill"] in RED, seen
    assert seen["bars"] >= 1 and seen["barStroke"] in RED and seen["barHeight"] > 10, seen
    assert "Each red bar is a read or write of the shared file made without holding the lock" in seen["note"]


def test_chromium_draws_ex08_inline_and_ex02_late_items_in_red(graded, tmp_path: Path) -> None:
    """The red of exercise 8's inline read-modify-write and of exercise 2's items put after a consumer stopped,
    as Chromium renders them."""
    inline = _drawn_in_chromium(graded(8, FIXES / "ex08" / "wrong_lock_only_read.py"), tmp_path / "ex08")
    assert inline["overlaps"] >= 2 and inline["overlapFill"] in RED, inline
    assert inline["bars"] >= 1 and inline["barStroke"] in RED and inline["barHeight"] > 10, inline
    late = _drawn_in_chromium(graded(2, FIXES / "ex02" / "wrong_sentinels_before_join.py"), tmp_path / "ex02", "late")
    assert late["bars"] >= 1 and late["barStroke"] in RED and late["barHeight"] > 10, late
    assert "never taken off the queue" in late["note"], late


EX08_INLINE_READ_LOCKED = FIXES / "ex08" / "wrong_lock_only_read.py"
EX08_WITNESS = re.compile(r"(?P<a>Worker \d+ of \d+ \(trial \d+\)) read total=(?P<n>\d+) at line (?P<line>\d+) "
                          r"holding the lock \([\d.]+ ms\); (?P<b>worker \d+ of \d+ \(trial \d+\)) read total=(?P=n) at "
                          r"line (?P=line) holding the lock \([\d.]+ ms\), before (?P=a) wrote it back at line "
                          r"(?P<write>\d+) without holding the lock \([\d.]+ ms\): both added their score, and the "
                          r"second write overwrote the first\.", re.IGNORECASE)


def test_ex08_inline_read_modify_write_has_its_witness_and_red_overlap(graded) -> None:
    """Exercise 8 with the read-modify-write written out in worker (no add_to_total call) and the lock around
    the read only: the reason tells who read the same total where, and the unprotected write's line; the
    timeline draws the overlap and the unlocked writes in red at that line."""
    report = graded(8, EX08_INLINE_READ_LOCKED)
    result = next(c for c in report.all_checks() if c.id.endswith("check_total_exact"))
    assert result.outcome == FAILED, result
    seen = EX08_WITNESS.search(result.message)
    assert seen, result.message
    read = line_of(EX08_INLINE_READ_LOCKED, "            data = load(path)")
    write = line_of(EX08_INLINE_READ_LOCKED, "        save(path, data)")
    assert int(seen["line"]) == read and int(seen["write"]) == write and seen["a"].lower() != seen["b"].lower()
    assert f"before writing the total back at line {write} without it" in result.message
    assert result.locations[0].line == write and result.locations[0].label == "write outside the lock"
    page = html5lib.parse(html.render_exercise(report, report.exercises[0]), namespaceHTMLElements=False)
    svg = [el for el in page.iter() if isinstance(el.tag, str)]
    overlaps = [el for el in svg if el.tag.endswith("rect") and "overlap" in (el.get("class") or "").split()]
    bars = [el for el in svg if el.tag.endswith("path") and (el.get("class") or "").split()[:2] == ["mark", "unlocked"]]
    assert overlaps and bars
    titles = ["".join(bar.itertext()) for bar in bars if "".join(bar.itertext())]  # each bar's <title> (not the legend's)
    odd = [t for t in titles if not ("writes total-" in t and f" at line {write} without holding the lock" in t)]
    assert titles and not odd, odd
    note = "".join(next(p for p in page.iter("p") if p.get("class") == "overlap-note").itertext())
    assert "were both inside their read-modify-write of the shared file at the same time" in note
    assert "and both wrote it back" in note


EX05_LOCK_ONLY_READ = FIXES / "ex05" / "wrong_lock_only_read.py"
EX05_PAIR = re.compile(r"For instance, (?P<a>worker \d+ of \d+ \(trial \d+\)) read (?P<v>\d+) at line (?P<ra>\d+) "
                       r"holding a lock \([\d.]+ ms\); (?P<b>worker \d+ of \d+ \(trial \d+\)) read (?P=v) at line "
                       r"(?P<rb>\d+) holding a lock \([\d.]+ ms\), before (?P=a) wrote (?P<w>\d+) at line (?P<wa>\d+) "
                       r"without holding a lock \([\d.]+ ms\); then (?P=b) wrote (?P=w) at line (?P<wb>\d+) without "
                       r"holding a lock \([\d.]+ ms\): both decrements counted as one", re.IGNORECASE)


def test_ex05_two_workers_writing_the_same_value_are_told_and_drawn_in_red(graded) -> None:
    """Exercise 5 with the lock around the read only: the reason names two workers that read the same value
    through the Manager, each at the read's line holding the lock, before either wrote it back at the write's
    line without it; the timeline draws their overlap in red although the lock's holds never overlap."""
    report = graded(5, EX05_LOCK_ONLY_READ)
    result = next(c for c in report.all_checks() if c.id.endswith("check_final_value_exact"))
    assert result.outcome == FAILED, result
    seen = EX05_PAIR.search(result.message)
    assert seen and seen["a"].lower() != seen["b"].lower(), result.message
    read, write = line_of(EX05_LOCK_ONLY_READ, 'value = counter["value"]'), line_of(EX05_LOCK_ONLY_READ, 'counter["value"] = ')
    assert int(seen["ra"]) == int(seen["rb"]) == read and int(seen["wa"]) == int(seen["wb"]) == write
    assert int(seen["w"]) == int(seen["v"]) - 1  # each took one off the same value
    page = html5lib.parse(html.render_exercise(report, report.exercises[0]), namespaceHTMLElements=False)
    overlaps = [el for el in page.iter() if isinstance(el.tag, str) and el.tag.endswith("rect")
                and "overlap" in (el.get("class") or "").split()]
    assert overlaps
    note = "".join(next(p for p in page.iter("p") if p.get("class") == "overlap-note").itertext())
    assert re.search(r"were both inside decrement\(\) at the same time \(from [\d.]+ m?s to [\d.]+ m?s\) and both "
                     r"returned (\d+): each wrote \1 after reading the same value", note), note


SENTINELS_EARLY = FIXES / "ex02" / "wrong_sentinels_before_join.py"


def test_ex02_items_put_after_a_consumer_stopped_are_drawn_in_red(graded) -> None:
    """Exercise 2 with the sentinels put before the producers are joined: the timeline marks in red each item a
    producer put after a consumer had taken its sentinel and that nobody took, and says so under the check;
    the solution's run, drawn the same way, has no such mark."""
    report = graded(2, SENTINELS_EARLY)
    result = next(c for c in report.all_checks() if c.id.endswith("check_every_item_consumed_once"))
    assert result.outcome == FAILED, result
    page = html5lib.parse(html.render_exercise(report, report.exercises[0]), namespaceHTMLElements=False)
    bars = [el for el in page.iter() if isinstance(el.tag, str) and el.tag.endswith("path")
            and (el.get("class") or "").split()[:2] == ["mark", "late"] and "".join(el.itertext())]
    assert bars
    producer = line_of(SENTINELS_EARLY, "        q.put(item)")
    odd = [text for text in ("".join(bar.itertext()) for bar in bars)
           if not re.search(rf"puts .+ at line {producer} \(producer\) after consumer \d+(?: of \d+)? \(trial \d+\) "
                            r"had stopped taking \((on its sentinel|it took nothing after that|it had ended)\): "
                            r"never taken off the queue", text)]
    assert not odd, odd
    note = "".join(next(p for p in page.iter("p") if p.get("class") == "overlap-note").itertext())
    assert re.search(r"In red on the timeline: producer \d+(?: of \d+)? \(trial \d+\) puts .+ after consumer .+ had "
                     r"stopped taking \(on its sentinel\): never taken off the queue", note), note

    solution = graded(2, ROOT / "solutions" / "ex02_sentinels.py")
    drawn = timeline.build(solution.runs[0].evidence, show_late=True)
    assert not [m for m in drawn.marks if m.kind == "late"]
