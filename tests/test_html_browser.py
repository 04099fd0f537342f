"""The HTML feedback in a real browser: headless Chromium loads the pages of real gradings (a passing one, a
race, a hang, a crash and a hostile one) and the test asserts on the rendered page, not on the HTML text."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

import html5lib
import pytest

from conftest import ROOT, grade_file, outcomes
from grader.render import html
from grader.results import FAILED, PASSED, SKIPPED, Evidence, Report

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
BROWSER = next((found for name in BROWSERS if (found := shutil.which(name))), None)
pytestmark = pytest.mark.skipif(BROWSER is None, reason="no Chromium or Chrome installed (apt-get install chromium): "
                                                        "the HTML report's browser test needs one")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
LAPTOP = (1280, 800)
PWN = "document.documentElement.setAttribute('data-pwned','{}')"
SCRIPT_PAYLOAD = f"<script>{PWN.format('script')}</script>"
IMG_PAYLOAD = f"</pre><img src=x onerror=\"{PWN.format('img')}\">"
QUOTED_FOLDER = "sub \"quoted\" 'name' <b>"
# Runs in a test copy of a page (whose Content-Security-Policy is taken out, so that escaping alone keeps
# the student's text inert) and writes what the browser rendered into the DOM that --dump-dom prints.
PROBE = """<script>(function () {
  var r = {pwned: document.documentElement.getAttribute('data-pwned'), scripts: document.scripts.length,
           images: document.images.length, width: document.documentElement.scrollWidth,
           viewport: document.documentElement.clientWidth};
  r.lanes = Array.prototype.map.call(document.querySelectorAll('svg.timeline'),
                                     function (s) { return s.querySelectorAll('g.lane').length; });
  var overlap = document.querySelector('svg.timeline rect.overlap');
  r.overlapFill = overlap ? getComputedStyle(overlap).fill : null;
  r.overlapWidth = overlap ? overlap.getBoundingClientRect().width : 0;
  r.checks = Array.prototype.map.call(document.querySelectorAll('article.check'), function (a) {
    return {outcome: a.className.replace('check ', ''), verdict: a.querySelector('.verdict').textContent.trim(),
            title: a.querySelector('.check-title').textContent.trim()};
  });
  var out = document.createElement('pre'); out.id = 'test-probe'; out.textContent = JSON.stringify(r);
  document.body.appendChild(out);
})();</script>"""
SOLUTION = ROOT / "solutions" / "ex01_oversold_ticket.py"
CRASHING = '''"""Exercise 1 with a buyer that crashes when the tickets are sold out."""
import json
import os
from multiprocessing import Lock, Process


def load(db_path):
    with open(db_path) as f:
        return json.load(f)


def save(db_path, data):
    tmp_path = f"{db_path}.{os.getpid()}.tmp"
    with open(tmp_path, "w") as f:
        json.dump(data, f)
    os.replace(tmp_path, db_path)


def check_ticket(db_path):
    return load(db_path)["count"]


def buy_ticket(db_path, lock):
    with lock:
        data = load(db_path)
        if data["count"] <= 0:
            return False
        data["count"] -= 1
        save(db_path, data)
        return True


def buyer(db_path, lock):
    if buy_ticket(db_path, lock):
        print("got a ticket")
    else:
        raise RuntimeError("sold out")


def main(db_path, buyers):
    lock = Lock()
    processes = [Process(target=buyer, args=(db_path, lock)) for _ in range(buyers)]
    for p in processes:
        p.start()
    for p in processes:
        p.join()
'''
HOSTILE = CRASHING.replace(
    'raise RuntimeError("sold out")', f'print({SCRIPT_PAYLOAD!r})\n        print({IMG_PAYLOAD!r}, file=__import__("sys").stderr)'
).replace("target=buyer,", "target=renamed,") + f'''

def renamed(db_path, lock):
    buyer(db_path, lock)


renamed.__name__ = {IMG_PAYLOAD!r}
print({SCRIPT_PAYLOAD!r})
'''


def _browse(tmp: Path, page: Path, *extra: str, size: tuple[int, int] = LAPTOP) -> str:
    """Run headless Chromium once on `page` with a new empty profile; stop its whole process group after."""
    profile = Path(os.path.realpath(tmp)) / f"profile-{len(list(tmp.glob('profile-*')))}"
    command = [str(BROWSER), *FLAGS, f"--user-data-dir={profile}", f"--window-size={size[0]},{size[1]}", *extra,
               page.resolve().as_uri()]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=120)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the group we started: helpers it left, if any
        except ProcessLookupError:
            pass
        proc.wait()
    return out.decode("utf-8", "replace")


def _probe_copy(page: Path) -> Path:
    """A copy of the page without its CSP and with the probe script at the end of the body."""
    text = page.read_text()
    start = text.index('<meta http-equiv="Content-Security-Policy"')
    text = text[:start] + text[text.index(">", start) + 1:]
    copy = page.with_name(f"probe-{page.name}")
    copy.write_text(text.replace("</body>", PROBE + "</body>"))
    return copy


def _probe(tmp: Path, page: Path) -> dict[str, Any]:
    dom = _browse(tmp, _probe_copy(page), "--dump-dom")
    tree = html5lib.parse(dom, namespaceHTMLElements=False)
    found = next((el for el in tree.iter("pre") if el.get("id") == "test-probe"), None)
    assert found is not None, f"the probe did not run in the browser:\n{dom[-2000:]}"
    return json.loads(found.text or "{}")


def _runs(report: Report) -> list[Evidence]:
    """The distinct runs of the report's checks, in order (checks judged from one run share it)."""
    runs: list[Evidence] = []
    for check in report.exercises[0].checks:
        evidence = report.evidence_of(check)
        if evidence is not None and not any(r is evidence for r in runs):
            runs.append(evidence)
    return runs


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Report, Path]]:
    """Real gradings of exercise 1, each written as pages: passing, race, hang, crash and hostile."""
    tmp = tmp_path_factory.mktemp("browser")
    sources = {"passing": SOLUTION, "race": ROOT / "exercises" / "ex01_oversold_ticket.py",
               "hang": ROOT / "tests" / "fixes" / "ex01" / "wrong_no_release_when_sold_out.py"}
    for name, text in (("crash", CRASHING), ("hostile", HOSTILE)):
        sources[name] = tmp / "sources" / name / "ex01.py"
        sources[name].parent.mkdir(parents=True)
        sources[name].write_text(text)
    result = {}
    for name, source in sources.items():
        folder = tmp / (QUOTED_FOLDER if name == "hostile" else name)
        report = grade_file(1, source, folder, seed=3)
        result[name] = (report, html.write_reports(report, folder / "feedback").with_name("ex01.html"))
    return result


def test_the_material_is_what_its_name_says(reports: dict[str, tuple[Report, Path]]) -> None:
    verdicts = {name: outcomes(report) for name, (report, _) in reports.items()}
    assert set(verdicts["passing"].values()) == {PASSED}
    assert verdicts["race"]["check_no_ticket_is_oversold"] == FAILED
    hang = reports["hang"][0]
    judged = next(c for c in hang.exercises[0].checks if c.run is not None)  # one says the hang
    assert hang.evidence_of(judged).status in ("deadlock", "timeout")  # type: ignore[union-attr]
    assert verdicts["crash"]["check_every_buyer_finishes"] == FAILED
    assert set(verdicts["hostile"].values()) == {PASSED}


@pytest.mark.parametrize("name", ["passing", "race", "hang", "crash", "hostile"])
def test_the_rendered_page_shows_checks_verdicts_and_one_lane_per_process(
        reports: dict[str, tuple[Report, Path]], name: str, tmp_path: Path) -> None:
    report, page = reports[name]
    seen = _probe(tmp_path, page)
    checks = report.exercises[0].checks
    assert [c["title"] for c in seen["checks"]] == [c.title for c in checks]
    assert [c["outcome"] for c in seen["checks"]] == [c.outcome for c in checks]
    words = {PASSED: "✔ passed", FAILED: "✘ failed", SKIPPED: "– not judged"}
    assert [c["verdict"] for c in seen["checks"]] == [words[c.outcome] for c in checks], "words and symbol"
    assert seen["lanes"] == [len(run.processes) for run in _runs(report)], "one lane per process"
    assert seen["pwned"] is None and seen["scripts"] == 1 and seen["images"] == 0, "only the test's probe ran"
    assert seen["width"] <= seen["viewport"], "no horizontal scrolling on a laptop screen"
    if name == "race":
        assert seen["overlapFill"] is not None and seen["overlapWidth"] > 0, "the overlap is drawn"
        red, green, blue = (int(v) for v in seen["overlapFill"].removeprefix("rgb(").rstrip(")").split(","))
        assert red > 180 and green < 80 and blue < 80, f"the overlap is red: {seen['overlapFill']}"
    else:
        assert seen["overlapFill"] is None, "no red overlap without a race"


def test_the_hostile_page_renders_inert_with_its_policy_in_place(reports: dict[str, tuple[Report, Path]],
                                                                  tmp_path: Path) -> None:
    report, page = reports["hostile"]
    dom = _browse(tmp_path, page, "--dump-dom")
    tree = html5lib.parse(dom, namespaceHTMLElements=False)
    assert tree.get("data-pwned") is None
    assert not list(tree.iter("script")) and not list(tree.iter("img"))
    text = " ".join("".join(tree.itertext()).split())
    assert SCRIPT_PAYLOAD in text and IMG_PAYLOAD in text and QUOTED_FOLDER in text


def test_a_page_prints_to_pdf(reports: dict[str, tuple[Report, Path]], tmp_path: Path) -> None:
    _, page = reports["race"]
    pdf = Path(os.path.realpath(tmp_path)) / "race.pdf"
    _browse(tmp_path, page, f"--print-to-pdf={pdf}", "--no-pdf-header-footer")
    assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 10_000
