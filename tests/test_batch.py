"""`grader batch` and `grader merge` over a fixture class (tests/fixtures/class): the gradebook is exactly right,
a second run regrades nothing, --force and changed files regrade, a killed batch resumes to the same
gradebook and leaves no process behind, shards merged equal the unsharded run, and the summary page.

The fixture class (14 entries and a stray file): alice (solutions), bob (stubs), carol.zip (solutions, flat),
dave.zip (two solutions in a top folder), erin (empty), frank (ex01 hangs: waits for a file that never
comes), grace (ex01's main process crashes with SIGSEGV), heidi (ex01 locks only the read; ex02 stub), ivan
(ex01 joins each buyer at once), judy (ex01 never releases the lock when sold out: a deadlock), ken (files
nested, a stale copy deeper, junk in __MACOSX/ and .backup/), laura.zip (top folder with spaces, junk in
__MACOSX/), mallory.zip (not a zip), "o'neil & co" (ex01 only), instructions.txt (not a student)."""
from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import queue
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import pytest

from conftest import ROOT, default_sigint, wait_until_gone
from grader.commands import batch, cli
from grader.gradebook import book as gradebook, submissions, workers
from grader.judging import session
from grader.gradebook import summary

CLASS = Path(__file__).resolve().parent / "fixtures" / "class"
LAB = [1, 2, 3, 4]  # the class handed in the first four exercises
FINGERPRINT = "fixture-grader"  # pinned: helpers editing the grader meanwhile must not make a rerun regrade
STUDENTS = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "ken", "laura",
            "mallory", "o'neil & co"]
STUB = "below full"  # a stub's score: it fails at least one check of its exercise (the course self-check says so)
FULL = 10
MISSING_34 = "missing ex03_daemon_worker.py, ex04_double_acquire.py"
# student -> (ex01, ex02, ex03, ex04, status)
EXPECTED = {
    "alice": (10, FULL, FULL, FULL, "ok"),
    "bob": (5, STUB, STUB, STUB, "ok"),
    "carol": (10, FULL, FULL, FULL, "ok"),
    "dave": (10, FULL, 0, 0, MISSING_34),
    "erin": (0, 0, 0, 0, "no exercise files"),
    "frank": (0, FULL, FULL, FULL, "ok"),
    "grace": (0, FULL, FULL, FULL, "ok"),
    "heidi": (5, STUB, FULL, FULL, "ok"),
    "ivan": (8, FULL, FULL, FULL, "ok"),
    "judy": (0, FULL, FULL, FULL, "ok"),
    "ken": (10, FULL, FULL, FULL, "ok"),
    "laura": (10, FULL, FULL, FULL, "ok"),
    "mallory": (0, 0, 0, 0, "unreadable zip (File is not a zip file)"),
    "o'neil & co": (10, 0, 0, 0, "missing ex02_sentinels.py, ex03_daemon_worker.py, ex04_double_acquire.py"),
}
EX01_CHECKS = ["check_no_ticket_is_oversold", "check_file_matches_sales", "check_all_tickets_sold",
               "check_every_buyer_finishes", "check_buyers_are_concurrent"]
# student -> (ex01 checks that fail, a words of the reason of the first)
EX01_FAILURES = {
    "bob": (["check_no_ticket_is_oversold", "check_file_matches_sales"], "got a ticket"),
    "heidi": (["check_no_ticket_is_oversold", "check_file_matches_sales"], "got a ticket"),
    "ivan": (["check_buyers_are_concurrent"], "never ran at the same time"),
    # one cause, said once: by the check that judges it (the run ends) or the first; the others are not judged
    "frank": (["check_every_buyer_finishes"], "did not end"),
    "grace": (["check_every_buyer_finishes"], "SIGSEGV"),
    "judy": (["check_every_buyer_finishes"], "did not end"),
    "erin": (["check_no_ticket_is_oversold"], "is missing"),
}
NOT_JUDGED_EX01 = {"frank", "grace", "judy", "erin"}


def options(out: Path, submissions: Path = CLASS, **kw: object) -> batch.BatchOptions:
    kw.setdefault("numbers", LAB)
    return batch.BatchOptions(submissions=submissions, out=out, workers=2, fingerprint=FINGERPRINT,
                              **kw)  # type: ignore[arg-type]


def run(out: Path, submissions: Path = CLASS, **kw: object) -> batch.BatchSummary:
    return batch.run_batch(options(out, submissions, **kw), progress_stream=io.StringIO(), terminal=False)


def rows(out: Path) -> dict[str, dict[str, str]]:
    with open(out / "grades.csv", newline="") as f:
        return {row["student"]: row for row in csv.DictReader(f)}


def small_class(tmp: Path, names: list[str]) -> Path:
    """A copy of some students of the fixture class."""
    folder = tmp / "class"
    folder.mkdir()
    for entry in CLASS.iterdir():
        if entry.name in names or entry.name.removesuffix(".zip") in names:
            (shutil.copytree if entry.is_dir() else shutil.copyfile)(entry, folder / entry.name)
    return folder


KILL_SCRIPT = """
import io, sys
from pathlib import Path
from grader.commands import batch
options = batch.BatchOptions(submissions=Path(sys.argv[1]), out=Path(sys.argv[2]), numbers=[1, 2, 3, 4], workers=2,
                             fingerprint=sys.argv[3])
batch.run_batch(options, progress_stream=sys.stdout, terminal=False)
"""


@pytest.fixture(scope="module")
def resumed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """The whole class graded by a batch killed (SIGKILL) after a few students, then resumed."""
    out = tmp_path_factory.mktemp("resumed") / "out"
    marker = secrets.token_hex(8)
    env = {**os.environ, "BATCH_TEST_MARKER": marker}
    process = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(CLASS), str(out), FINGERPRINT], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while len(list(out.glob(f"*/{gradebook.RESULT_FILE}"))) < 4 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    process.kill()
    process.wait()
    killed_with = sorted(p.parent.name for p in out.glob(f"*/{gradebook.RESULT_FILE}"))
    facts = {"out": out, "killed_with": killed_with, "left_after_kill": wait_until_gone(marker),
             "gradebook_after_kill": [name for name in gradebook.GRADEBOOK_FILES if (out / name).exists()],
             "stderr": process.stderr.read().decode() if process.stderr else ""}
    facts["summary"] = run(out)
    return facts


def test_killed_batch_resumes_where_it_stopped(resumed: dict[str, object]) -> None:
    killed_with = resumed["killed_with"]
    assert 4 <= len(killed_with) < len(STUDENTS), (killed_with, resumed["stderr"])
    assert resumed["left_after_kill"] == [], "killing the batch must take its workers and student runs with it"
    assert resumed["gradebook_after_kill"] == [], "an interrupted batch writes no gradebook"
    summary = resumed["summary"]
    assert sorted(summary.reused) == killed_with
    assert sorted(summary.graded) == sorted(set(STUDENTS) - set(killed_with))


def test_gradebook_is_exactly_right(resumed: dict[str, object]) -> None:
    out = resumed["out"]
    book = rows(out)
    assert list(book) == sorted(STUDENTS)
    header = (out / "grades.csv").read_text().splitlines()[0]
    assert header == "id,student,ex01,ex02,ex03,ex04,total,penalty,final,max,status"
    for name, (*scores, status) in EXPECTED.items():
        row = book[name]
        assert row["status"] == status, name
        assert row["max"] == "40"
        got = [float(row[f"ex{n:02d}"]) for n in (1, 2, 3, 4)]
        for n, (want, value) in enumerate(zip(scores, got), 1):
            assert (value < FULL) if want == STUB else (value == want), (name, n, value)
        assert float(row["total"]) == sum(got), name
    assert resumed["summary"].ignored == ["instructions.txt"]


def test_reasons_point_at_each_students_mistake(resumed: dict[str, object]) -> None:
    data = json.loads((resumed["out"] / "results.json").read_text())
    students = {s["name"]: s for s in data["students"]}
    for name, (failing, words) in EX01_FAILURES.items():
        checks = students[name]["report"]["exercises"][0]["checks"]
        failed = [c["id"].split("::")[1] for c in checks if c["outcome"] == "failed"]
        assert failed == failing, name
        assert words in checks[EX01_CHECKS.index(failing[0])]["message"], name
        if name in NOT_JUDGED_EX01:
            assert {c["outcome"] for c in checks if c["id"].split("::")[1] not in failing} == {"skipped"}, name
    missing = students["erin"]["report"]["exercises"][0]["checks"][0]["message"]
    assert missing.startswith("ex01_oversold_ticket.py is missing"), "no temporary path in a reason"
    assert students["ken"]["found"]["ex01_oversold_ticket.py"] == "homework/ex01_oversold_ticket.py"
    assert "ignored homework/old/ex01_oversold_ticket.py" in students["ken"]["notes"][0]
    assert students["laura"]["found"]["ex01_oversold_ticket.py"] == "Laura Smith - Lab 3/ex01_oversold_ticket.py"
    assert all(not s["grader_problem"] for s in students.values())


def test_every_student_gets_a_folder_with_the_report_and_the_files_graded(resumed: dict[str, object]) -> None:
    out = resumed["out"]
    for name in STUDENTS:
        folder = out / name
        result = json.loads((folder / gradebook.RESULT_FILE).read_text())
        report = json.loads((folder / "report.json").read_text())
        assert result["digest"] and result["score"] == report["score"]
        assert "points" in (folder / "report.txt").read_text()
        for exercise in report["exercises"]:
            assert exercise["file"] == f"{name}/files/{Path(exercise['file']).name}"
        command = shlex.split(report["command"])
        assert command[command.index("--submission") + 1] == f"{name}/files"
        assert command[command.index("--seed") + 1] == str(result["seed"])
    assert (out / "dave" / "files" / "ex01_oversold_ticket.py").read_bytes() == \
        zipfile.ZipFile(CLASS / "dave.zip").read("dave-homework/ex01_oversold_ticket.py")
    assert sorted(p.name for p in (out / "erin" / "files").iterdir()) == []
    assert not (out / gradebook.STAGING).exists()


def test_second_run_regrades_nothing(resumed: dict[str, object]) -> None:
    out = resumed["out"]
    before = {name: (out / name).read_bytes() for name in gradebook.GRADEBOOK_FILES[:2]}
    again = run(out)
    assert again.graded == [] and sorted(again.reused) == sorted(STUDENTS)
    assert {name: (out / name).read_bytes() for name in gradebook.GRADEBOOK_FILES[:2]} == before
    assert again.duration < 20


def test_shards_merged_equal_the_unsharded_run(resumed: dict[str, object], tmp_path: Path) -> None:
    first, second = run(tmp_path / "shard1", shard=(1, 2)), run(tmp_path / "shard2", shard=(2, 2))
    names = sorted(first.graded + second.graded)
    assert names == sorted(STUDENTS) and not set(first.graded) & set(second.graded)
    assert abs(len(first.graded) - len(second.graded)) <= 1
    assert cli.main(["merge", str(tmp_path / "shard1"), str(tmp_path / "shard2"), "--out", str(tmp_path / "all")]) == 0
    whole = resumed["out"]
    assert (tmp_path / "all" / "grades.csv").read_text() == (whole / "grades.csv").read_text()
    merged, unsharded = (json.loads((d / "results.json").read_text()) for d in (tmp_path / "all", whole))
    assert merged["shard"] is None and merged["settings"] == unsharded["settings"]
    assert _verdicts(merged) == _verdicts(unsharded)
    assert sorted(p.name for p in (tmp_path / "all").iterdir() if p.is_dir()) == sorted(STUDENTS)
    assert cli.main(["merge", str(tmp_path / "shard1"), "--out", str(tmp_path / "half")]) == 1, "a missing shard"


def _verdicts(results: dict) -> dict[str, list[tuple[str, str, float]]]:
    return {s["name"]: [(c["id"], c["outcome"], c["points"]) for e in s["report"]["exercises"] for c in e["checks"]]
            for s in results["students"]}


def test_summary_page(resumed: dict[str, object]) -> None:
    html5lib = pytest.importorskip("html5lib")
    text = (resumed["out"] / "index.html").read_text()
    document = html5lib.parse(text, namespaceHTMLElements=False)
    table = document.find(".//table[@id='students']")
    names = [row.find("th").findtext("a") for row in table.find("tbody").findall("tr")]
    assert names == sorted(STUDENTS)
    links = [row.find("th/a").get("href") for row in table.find("tbody").findall("tr")]
    assert "o%27neil%20%26%20co/index.html" in links or "o%27neil%20%26%20co/report.txt" in links
    assert "o&#39;neil &amp; co" in text and "o'neil & co" not in text, "a student's name is escaped"
    bars = [e for e in document.iter() if str(e.tag).endswith("rect")]
    assert len(bars) == summary.HISTOGRAM_BINS
    checks = document.find(".//table[@id='checks']")
    assert len(checks.find("tbody").findall("tr")) == sum(len(workers.planned_checks(e)) for e in session.select(LAB))
    first = document.findall(".//ol[@class='reasons']/li")[0]
    assert "Exercise 3, 4 student(s)" in "".join(first.itertext())
    assert [a.text for a in first.findall(".//a")] == ["dave", "erin", "mallory", "o'neil & co"]


def test_force_and_changed_files_regrade(tmp_path: Path) -> None:
    folder = small_class(tmp_path, ["erin", "mallory", "o'neil & co"])
    out = tmp_path / "out"
    assert sorted(run(out, folder, numbers=[1]).graded) == ["erin", "mallory", "o'neil & co"]
    assert sorted(run(out, folder, numbers=[1], force=True).graded) == ["erin", "mallory", "o'neil & co"]
    with open(folder / "o'neil & co" / "ex01_oversold_ticket.py", "a") as f:
        f.write("\n# a late comment\n")
    again = run(out, folder, numbers=[1])
    assert again.graded == ["o'neil & co"] and sorted(again.reused) == ["erin", "mallory"]
    newer = batch.run_batch(batch.BatchOptions(folder, out, [1], 2, fingerprint="another grader"),
                            progress_stream=io.StringIO(), terminal=False)
    assert len(newer.graded) == 3, "a new grader regrades everyone"
    assert len(run(out, folder, numbers=[1, 2]).graded) == 3, "other exercises: everyone again"


def test_a_student_whose_grading_is_stopped_gets_a_result_and_is_retried(tmp_path: Path) -> None:
    folder = small_class(tmp_path, ["frank", "erin"])
    out = tmp_path / "out"
    marker = secrets.token_hex(8)
    os.environ["BATCH_TEST_MARKER"] = marker
    try:
        summary_ = run(out, folder, numbers=[1], time_limit=8)
    finally:
        del os.environ["BATCH_TEST_MARKER"]
    assert wait_until_gone(marker) == []
    book = rows(out)
    assert book["frank"]["status"] == "grading was stopped after 8 s" and book["frank"]["total"] == ""
    assert book["erin"]["status"] == "no exercise files" and book["erin"]["total"] == "0"
    assert [s.name for s in summary_.problems] == ["frank"]
    assert run(out, folder, numbers=[1], time_limit=8).graded == ["frank"], "no verdict: graded again"


def test_ctrl_c_stops_the_batch_and_leaves_nothing_running(tmp_path: Path) -> None:
    folder = small_class(tmp_path, ["erin", "frank"])
    out = tmp_path / "out"
    marker = secrets.token_hex(8)
    process = subprocess.Popen([sys.executable, "-m", "grader", "batch", str(folder), "--out", str(out), "-j", "2",
                                "--start-method", "fork",
                                "--exercises", "1"], env={**os.environ, "BATCH_TEST_MARKER": marker},
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path, preexec_fn=default_sigint)
    # Ctrl-C once the batch has told erin's grade (frank's hanging ex01 keeps his grading going for
    # seconds more): read its lines in a thread, so that a silent batch fails at the deadline.
    lines: queue.Queue[bytes] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in process.stdout], daemon=True)
    reader.start()
    told, deadline = [], time.monotonic() + 120
    while not any(b"erin" in line for line in told) and time.monotonic() < deadline:
        with contextlib.suppress(queue.Empty):
            told.append(lines.get(timeout=0.1))
    assert process.poll() is None and not (out / "frank").exists(), b"".join(told)
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=60) == 130, process.stderr.read()
    reader.join(10)
    stdout = b"".join(told) + b"".join(lines.queue)
    assert b"run the same command again to resume" in process.stderr.read()
    assert b"[1/2] erin: 0/10, no exercise files" in stdout, "a line per finished student when not a terminal"
    assert wait_until_gone(marker) == []
    assert not (out / "grades.csv").exists() and not (out / "frank").exists()


# ---- the parts, without grading ------------------------------------------------------------------------------
def test_discover_names_students_and_ignores_the_rest(tmp_path: Path) -> None:
    for name in ("bob", "carol", ".git", "__MACOSX", "grades.csv"):
        (tmp_path / name).mkdir()
    for name in ("bob.zip", "dan.ZIP", "notes.txt", ".DS_Store"):
        (tmp_path / name).write_bytes(b"")
    students, ignored = submissions.discover(tmp_path)
    assert [(s.name, s.kind) for s in students] == [
        ("bob", "folder"), ("bob.zip", "zip"), ("carol", "folder"), ("dan", "zip"), ("student-grades.csv", "folder")]
    assert ignored == ["notes.txt"]


def test_collect_reads_only_the_exercise_files_and_never_follows_links_out(tmp_path: Path) -> None:
    exercises = session.select(LAB)
    sub = tmp_path / "sub"
    (sub / "deep" / "er").mkdir(parents=True)
    (sub / "deep" / "er" / "ex02_sentinels.py").write_text("x = 2\n")
    secret = tmp_path / "secret.py"
    secret.write_text("SECRET = 1\n")
    (sub / "ex01_oversold_ticket.py").symlink_to(secret)
    (sub / "inside.py").write_text("y = 4\n")
    (sub / "ex04_double_acquire.py").symlink_to(sub / "inside.py")
    got = submissions.collect(submissions.Submission("sub", sub, "folder"), exercises, tmp_path / "copy")
    assert got.found == {"ex01_oversold_ticket.py": "ex01_oversold_ticket.py",
                         "ex02_sentinels.py": "deep/er/ex02_sentinels.py",
                         "ex04_double_acquire.py": "ex04_double_acquire.py"}
    assert (got.folder / "ex01_oversold_ticket.py").is_symlink(), "a link out stays a link: the harness refuses it"
    assert "outside the submission" in got.notes[0]
    assert (got.folder / "ex04_double_acquire.py").read_text() == "y = 4\n", "a link inside the submission is followed"
    assert got.problems == ["missing ex03_daemon_worker.py"]


def test_collect_from_a_zip_caps_sizes_and_skips_junk(tmp_path: Path) -> None:
    path = tmp_path / "s.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("top/ex01_oversold_ticket.py", "a" * (submissions.FILE_LIMIT + 10))
        archive.writestr("__MACOSX/top/ex02_sentinels.py", "junk")
        archive.writestr("top/.hidden/ex03_daemon_worker.py", "junk")
        archive.writestr("../../ex04_double_acquire.py", "print('no path ever comes from the zip')\n")
    got = submissions.collect(submissions.Submission("s", path, "zip"), session.select(LAB), tmp_path / "copy")
    assert sorted(got.found) == ["ex01_oversold_ticket.py"], "junk, hidden folders and paths out of the zip skipped"
    assert (got.folder / "ex01_oversold_ticket.py").stat().st_size == submissions.FILE_LIMIT
    assert sorted(p.name for p in (tmp_path / "copy").iterdir()) == sorted(got.found)
    assert not (tmp_path.parent / "ex04_double_acquire.py").exists()


def test_shards_partition_the_class_deterministically() -> None:
    students = [submissions.Submission(n, Path(n), "folder") for n in "qwertyuiopasd"]
    parts = [submissions.shard(list(reversed(students)), i, 3) for i in (1, 2, 3)]
    assert sorted(s.name for part in parts for s in part) == sorted("qwertyuiopasd")
    assert parts == [submissions.shard(students, i, 3) for i in (1, 2, 3)]
    assert [len(p) for p in parts] == [5, 4, 4]


def test_the_grader_fingerprint_follows_the_grading_code_only(tmp_path: Path) -> None:
    package = tmp_path / "grader"
    shutil.copytree(ROOT / "grader", package, ignore=shutil.ignore_patterns("__pycache__"))
    before = batch.grader_fingerprint(package)
    (package / "render" / "summary.py").write_text("# a renderer does not change a grade\n")
    assert batch.grader_fingerprint(package) == before
    with open(package / "checks" / "ex01.py", "a") as f:
        f.write("\n# a check does\n")
    assert batch.grader_fingerprint(package) != before


def test_reason_key_drops_the_particulars() -> None:
    one = "With 1 ticket(s) and 10 buyers, 3 buyers got a ticket: buyer 1 (pid 12), buyer 4 (pid 15), buyer 7 (pid 3)."
    two = "With 2 ticket(s) and 6 buyers, 4 buyers got a ticket: buyer 2 (pid 9), buyer 3 (pid 10)."
    assert summary.reason_key(one) == summary.reason_key(two)
    assert summary.reason_key(one) != summary.reason_key("main() raised KeyError ('count') with 1 tickets.")
    three = "With 1 ticket(s) and 10 buyers, 3 buyers got a ticket: buyer 1 of 10 (trial 1), buyer 4 of 10 (trial 1)."
    four = "With 2 ticket(s) and 6 buyers, 4 buyers got a ticket: buyer 2 of 6 (trial 2), buyer 3 of 6 (trial 2)."
    assert summary.reason_key(three) == summary.reason_key(four)


def test_histogram_bins_include_the_maximum() -> None:
    bars = summary.histogram([0, 3.9, 4, 40, 40, 39], 40)
    assert [b.count for b in bars] == [2, 1, 0, 0, 0, 0, 0, 0, 0, 3]
    assert bars[-1].label == "36–40"


@pytest.mark.parametrize("argv", [
    ["batch", "nowhere", "--out", "x"],
    ["batch", str(CLASS), "--out", str(CLASS / "out")],
    ["batch", str(CLASS), "--out", "x", "--exercises", "1,99"],
    ["batch", str(CLASS), "--out", "x", "--shard", "3/2"],
    ["merge", "nowhere", "--out", "x"],
])
def test_usage_errors_exit_2(argv: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    try:
        code = cli.main(argv)
    except SystemExit as exc:  # argparse's own usage errors
        code = exc.code
    assert code == 2
    assert not (tmp_path / "x").exists() and not (CLASS / "out").exists()


def test_one_batch_at_a_time_per_gradebook(tmp_path: Path) -> None:
    folder = small_class(tmp_path, ["erin"])
    with gradebook.exclusive(tmp_path / "out"):
        with pytest.raises(gradebook.BatchError, match="another grader batch"):
            run(tmp_path / "out", folder, numbers=[1])
    assert run(tmp_path / "out", folder, numbers=[1]).graded == ["erin"]


SPY = '''
def main(db_path="ticket.json", buyers=10):
    """Looks for the other students' work while being graded, then does the job (a solution's main)."""
    import glob

    def other_student(path):
        try:
            with open(path, "rb") as f:
                return (HALF1 + HALF2).encode() in f.read()
        except OSError:
            return False

    others = [p for p in glob.glob("/tmp/**/ex01_oversold_ticket.py", recursive=True) if other_student(p)]
    print("SPY", others, os.listdir(OUT) if os.path.isdir(OUT) else [], os.path.exists(CLASS))
    lock = Lock()
'''


def test_a_submission_cannot_see_the_other_students_work(tmp_path: Path) -> None:
    from grader.running import isolation

    if not isolation.detect().read_only:
        pytest.skip("student runs are isolated from each other's files only under a read-only view (bubblewrap, or "
                    "the net level's mount namespace)")
    folder = small_class(tmp_path, ["alice"])
    other = folder / "alice" / "ex01_oversold_ticket.py"
    token = secrets.token_hex(8)  # in alice's file only (the spy's source has it in two halves)
    other.write_text(other.read_text() + f"\n# {token}\n")
    out = tmp_path / "out"
    solution = (ROOT / "solutions" / "ex01_oversold_ticket.py").read_text()
    head = 'def main(db_path="ticket.json", buyers=10):\n    """Start `buyers` buyer processes sharing one lock, and wait for all of them."""\n    lock = Lock()\n'
    assert head in solution
    spy = solution.replace(head, SPY.replace("OUT", repr(str(out))).replace("CLASS", repr(str(folder / "alice")))
                           .replace("HALF1", repr(token[:8])).replace("HALF2", repr(token[8:])))
    (folder / "zed").mkdir()
    (folder / "zed" / "ex01_oversold_ticket.py").write_text(spy)
    assert run(out, folder, numbers=[1]).book.students[1].score == 10
    report = json.loads((out / "zed" / "report.json").read_text())
    judged = report["exercises"][0]["checks"][0]["run"]
    output = next(r for r in report["runs"] if r["id"] == judged)["evidence"]["output"]["main program"]["out"]
    assert "SPY [] [] False" in output, "neither the other students' copies, nor the gradebook, nor the class folder"
