"""The class summary page (OUT/index.html) of a 60-student class, in headless Chromium at 1280×800: one compact
row per student, a file not handed in as a short mark with its detail on hover, the score distribution and the
most common failure reasons above the fold, nothing wider than the window. The gradebook is built synthetically
(no grading)."""
from __future__ import annotations

import json
import random
from pathlib import Path

import html5lib
import pytest

from test_html_browser import BROWSER, _browse
from grader.gradebook import book as gradebook, summary

pytestmark = pytest.mark.skipif(BROWSER is None, reason="no Chromium or Chrome installed (apt-get install chromium)")
VIEWPORT = (1280, 800)
EXERCISES = [(1, "ex01_oversold_ticket", 10), (2, "ex02_sentinels", 10), (3, "ex03_daemon_worker", 10),
             (4, "ex04_double_acquire", 10)]
REASONS = ["Two buyers got a ticket when only 1 was left: 101 tickets sold for 100 (buyers 3, 7).",
           "The program did not end within 10 s: the consumers wait in q.get() for an item that never comes.",
           "The heartbeat worker kept the program alive after main() returned: it is not a daemon.",
           "deposit() waits forever for the lock it already holds (a Lock is not reentrant)."]
PROBE = """<script>(function () {
  var rows = Array.prototype.map.call(document.querySelectorAll('#students tbody tr'), function (tr) {
    return tr.getBoundingClientRect().height; });
  var top = function (selector) { var e = document.querySelector(selector); return e ? e.getBoundingClientRect().top : null; };
  var bottom = function (selector) { var e = document.querySelector(selector); return e ? e.getBoundingClientRect().bottom : null; };
  var r = {width: document.documentElement.scrollWidth, viewport: document.documentElement.clientWidth,
           height: window.innerHeight, rows: rows, histogramBottom: bottom('svg[role=img]'),
           firstReasonBottom: bottom('ol.reasons li'), studentsTop: top('#students'),
           missing: Array.prototype.map.call(document.querySelectorAll('#students td.missing'), function (td) {
             return [td.textContent.trim(), td.getAttribute('title')]; }),
           statusTitles: Array.prototype.map.call(document.querySelectorAll('#students td.status'), function (td) {
             return [td.textContent.trim(), td.getAttribute('title'), td.scrollWidth > td.clientWidth]; })};
  var out = document.createElement('pre'); out.id = 'test-probe'; out.textContent = JSON.stringify(r);
  document.body.appendChild(out);
})();</script>"""


def class_of_sixty(extra: int = 0) -> gradebook.Gradebook:
    """60 students of one assignment: most hand in everything, some miss a file, a few have long problems
    (`extra` more exercises, all handed in, for a wider table)."""
    chance = random.Random(14)
    exercises_of_class = EXERCISES + [(n, f"ex{n:02d}_more", 10) for n in range(5, 5 + extra)]
    students = []
    for index in range(60):
        name = f"student-{index:02d}-{chance.choice(['Ana', 'Bjørn', 'Chloé', 'Dmitri', 'Eun-ji'])}"
        missing = {3} if index % 7 == 0 else ({2, 4} if index % 11 == 0 else set())
        exercises, scores = [], {}
        for number, exercise, points in exercises_of_class:
            if number in missing:
                scores[str(number)] = 0.0
                checks = [{"id": f"ex{number:02d}::check_file", "exercise": number, "title": "The file is there",
                           "outcome": "failed", "max_points": points, "points": 0,
                           "message": f"{exercise}.py is missing"}]
            else:
                failed = chance.random() < 0.35
                scores[str(number)] = float(points - 3 * failed)
                checks = [{"id": f"ex{number:02d}::check_main", "exercise": number, "title": f"Exercise {number} works",
                           "outcome": "failed" if failed else "passed", "max_points": 3, "points": 0 if failed else 3,
                           "message": REASONS[(number - 1) % 4] if failed else ""}]
            exercises.append({"number": number, "name": exercise, "title": exercise, "checks": checks})
        problems = ["missing " + ", ".join(f"{EXERCISES[n - 1][1]}.py" for n in sorted(missing))] if missing else []
        if index == 5:
            problems.append("unreadable zip (Bad magic number for central directory, the upload was cut short)")
        found = {f"{e}.py": f"{e}.py" for n, e, _ in exercises_of_class if n not in missing}
        score = sum(scores.values())
        students.append(gradebook.StudentResult(
            name=name, entry=name, kind="folder", digest="d", status="; ".join(problems) or "ok", problems=problems,
            scores=scores, score=score, max_score=10 * len(exercises_of_class), found=found,
            report={"exercises": exercises},
            penalty=4.0 if index % 9 == 0 else 0.0, late="2 day(s) late: -10%" if index % 9 == 0 else "",
            student={"student": {"id": name, "name": name.split("-")[-1] + " Example", "email": f"{name}@uni.example"}}))
    meta = [{"number": n, "name": e, "title": e, "points": p} for n, e, p in exercises_of_class]
    return gradebook.Gradebook(meta, students, {"seed": 0, "exercises": [m["number"] for m in meta]},
                               assignment={"name": "lab1", "title": "Lab 1", "due": "2027-03-01T23:59:00+01:00"})


@pytest.mark.parametrize("extra", [0, 6])
def test_a_class_of_sixty_reads_at_a_glance_at_1280_px(extra: int, tmp_path: Path) -> None:
    out = tmp_path / "book"
    out.mkdir()
    gradebook.write_gradebook(out, class_of_sixty(extra), summary.render)
    page = out / "probe.html"
    page.write_text((out / "index.html").read_text().replace("</body>", PROBE + "</body>"))
    dom = _browse(tmp_path, page, "--dump-dom", size=VIEWPORT)
    tree = html5lib.parse(dom, namespaceHTMLElements=False)
    found = next((el for el in tree.iter("pre") if el.get("id") == "test-probe"), None)
    assert found is not None, f"the probe did not run in the browser:\n{dom[-2000:]}"
    facts = json.loads(found.text)
    assert facts["width"] <= facts["viewport"], "the page is wider than a 1280 px window"
    assert len(facts["rows"]) == 60 and max(facts["rows"]) <= 30, "one compact line per student"
    assert facts["histogramBottom"] <= facts["height"] and facts["firstReasonBottom"] <= facts["height"], \
        "the distribution and the most common reason are above the fold"
    assert facts["studentsTop"] > facts["histogramBottom"]
    missing = facts["missing"]
    # every 7th student misses ex03, every 11th but the first ex02 and ex04; student 5's zip cannot be read
    assert len(missing) == 9 + 5 * 2 + 4 + extra
    assert all(mark == "–" for mark, _ in missing)
    assert sum(title.endswith(".py was not handed in") for _, title in missing) == 19
    assert sum(": unreadable zip (Bad magic number" in title for _, title in missing) == 4 + extra
    statuses = {text: title for text, title, _ in facts["statusTitles"]}
    assert "1 missing" in statuses and statuses["1 missing"] == "missing ex03_daemon_worker.py"
    cut = [row for row in facts["statusTitles"] if row[1].startswith("unreadable zip")]
    assert cut and cut[0][0].endswith("…") and "the upload was cut short" in cut[0][1]
