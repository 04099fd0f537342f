"""The LMS side of a batch: Canvas, Moodle, GitHub Classroom and Gradescope downloads built here as each LMS
hands them out, matched to a roster, graded (ex01 only, under fork) and exported in the files Canvas and Moodle
import; assignments with due dates, late penalties and extensions; grades.csv for spreadsheets."""
from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import zipfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from conftest import ROOT
from grader.commands import batch, cli
from grader.course import find_exercise
from grader.gradebook import book as gradebook, submissions, summary
from grader.lms import assignments, downloads, export
from grader.lms.batching import LmsOptions
from grader.lms.roster import Roster, RosterError, load_roster, sortable

EX01 = "ex01_oversold_ticket.py"
SOLUTION = ROOT / "solutions" / EX01
HALF = Path(__file__).resolve().parent / "fixtures" / "class" / "heidi" / EX01  # locks only the read: 5/10
ROSTER = """id,name,email,section,canvas_id,sis_user_id,sis_login_id,username,id_number,github
s001,Alice Smith,alice@uni.example,A,101,SIS-1,asmith,asmith,N001,alice-gh
s002,Bob Jones,bob@uni.example,B,102,SIS-2,bjones,bjones,N002,bobby
s003,Zoë Müller,zoe@uni.example,A,103,SIS-3,zmuller,zmuller,N003,zoem
"""


def write_roster(tmp: Path) -> Path:
    path = tmp / "roster.csv"
    path.write_text(ROSTER, encoding="utf-8")
    return path


def grade(source: Path, out: Path, **lms: object) -> batch.BatchSummary:
    """A small batch: ex01 only, two workers, fork."""
    options = batch.BatchOptions(submissions=source, out=out, numbers=[1], workers=2, start_method="fork",
                                 fingerprint="lms-test", lms=LmsOptions(**lms))  # type: ignore[arg-type]
    return batch.run_batch(options, progress_stream=io.StringIO(), terminal=False)


def read_csv(path: Path) -> list[list[str]]:
    return list(csv.reader(path.read_text(encoding="utf-8-sig").splitlines()))


def canvas_download(tmp: Path) -> Path:
    """Canvas's "Download Submissions" zip: flat prefixed files; Alice uploaded ex01 twice (the -1 is the later),
    Bob handed in late, and Canvas's zip has no folders."""
    folder = tmp / "canvas"
    folder.mkdir()
    shutil.copyfile(HALF, folder / f"smithalice_101_9001_{EX01}")
    shutil.copyfile(SOLUTION, folder / f"smithalice_101_9001_{EX01.replace('.py', '-1.py')}")
    shutil.copyfile(HALF, folder / f"jonesbob_LATE_102_9002_{EX01}")
    (folder / "jonesbob_LATE_102_9002_notes.txt").write_text("my notes")
    archive = tmp / "submissions.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for path in sorted(folder.iterdir()):
            z.write(path, path.name)
    return archive


def test_a_canvas_download_is_graded_and_exported_for_canvas_and_moodle(tmp_path: Path) -> None:
    roster = write_roster(tmp_path)
    out = tmp_path / "book"
    summary = grade(canvas_download(tmp_path), out, roster=roster)
    assert summary.found.lms == "canvas" and summary.found.unmatched == []
    assert [p.id for p in summary.found.absent] == ["s003"]
    rows = {row[0]: row for row in read_csv(out / "grades.csv")[1:]}
    assert set(rows) == {"s001", "s002"}
    header = read_csv(out / "grades.csv")[0]
    assert header == ["id", "student", "ex01", "total", "penalty", "final", "max", "status"]
    assert rows["s001"][2] == "10", "the resubmitted file (-1) is the one graded"
    assert rows["s002"][2] == "5"
    alice = gradebook.read_result(out / "s001")
    assert alice.found == {EX01: f"smithalice_101_9001_{EX01.replace('.py', '-1.py')}"}
    assert alice.student["student"]["email"] == "alice@uni.example" and alice.student["late"] is False
    assert gradebook.read_result(out / "s002").student["late"] is True

    # Canvas: the gradebook import's five identity columns and one column per assignment
    assert cli.main(["export", str(out), "--to", "canvas", "--roster", str(roster), "--column", "Lab 0"]) == 1
    table = read_csv(out / "canvas.csv")
    assert table[0] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", "Lab 0"]
    assert table[1][0].strip() == "Points Possible" and table[1][5] == "10"
    by_id = {row[1]: row for row in table[2:]}
    assert by_id["101"] == ["Smith, Alice", "101", "SIS-1", "asmith", "A", "10"]
    assert by_id["102"][5] == "5"
    assert by_id["103"][5] == "", "a student without a submission: an empty grade (Canvas changes nothing)"

    # Moodle: one column Moodle maps to a user (email, ID number or username) and the grade
    moodle = tmp_path / "moodle.csv"
    assert cli.main(["export", str(out), "--to", "moodle", "--out", str(moodle), "--column", "Lab 0", "--bom"]) == 0
    assert moodle.read_bytes().startswith("\ufeff".encode())
    table = read_csv(moodle)
    assert table[0] == ["First name", "Last name", "ID number", "Username", "Email address", "Lab 0"]
    assert ["Alice", "Smith", "N001", "asmith", "alice@uni.example", "10"] in table


def moodle_download(tmp: Path) -> Path:
    """Moodle's "Download all submissions" with folders per submission (names with accents and spaces)."""
    folder = tmp / "moodle"
    alice = folder / "Alice Smith_1234567_assignsubmission_file_"
    alice.mkdir(parents=True)
    shutil.copyfile(SOLUTION, alice / EX01)
    zoe = folder / "Zoë Müller_7654321_assignsubmission_file_" / "lab" / "src"
    zoe.mkdir(parents=True)
    shutil.copyfile(HALF, zoe / EX01)
    (folder / "Zoë Müller_7654321_onlinetext_").mkdir()
    (folder / "Zoë Müller_7654321_onlinetext_" / "onlinetext.html").write_text("<p>done</p>")
    return folder


def test_a_moodle_download_is_graded_under_the_rosters_ids(tmp_path: Path) -> None:
    roster = write_roster(tmp_path)
    out = tmp_path / "book"
    summary = grade(moodle_download(tmp_path), out, roster=roster)
    assert summary.found.lms == "moodle"
    rows = {row[0]: row for row in read_csv(out / "grades.csv")[1:]}
    assert {k: v[2] for k, v in rows.items()} == {"s001": "10", "s003": "5"}
    zoe = gradebook.read_result(out / "s003")
    assert zoe.student["moodle_participant"] == "7654321" and zoe.student["student"]["id_number"] == "N003"
    assert cli.main(["export", str(out), "--to", "csv", "--column", "Lab 0"]) == 0
    table = read_csv(out / "csv.csv")
    assert table[0] == ["id", "name", "email", "section", "raw", "penalty", "final", "max", "status"]
    assert ["s003", "Zoë Müller", "zoe@uni.example", "A", "5", "0", "5", "10", "ok"] in table


def git(repo: Path, *args: str, when: str = "2027-03-01T12:00:00+01:00") -> None:
    env = {**os.environ, "GIT_AUTHOR_DATE": when, "GIT_COMMITTER_DATE": when, "GIT_AUTHOR_NAME": "s",
           "GIT_AUTHOR_EMAIL": "s@x", "GIT_COMMITTER_NAME": "s", "GIT_COMMITTER_EMAIL": "s@x"}
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, env=env)


def classroom_folder(tmp: Path) -> Path:
    """A folder of GitHub Classroom clones `lab1-<login>`; Bob's last commit came a day and a bit late."""
    folder = tmp / "classroom"
    for login, source, when in (("alice-gh", SOLUTION, "2027-03-01T12:00:00+01:00"),
                                ("bobby", HALF, "2027-03-03T08:00:00+01:00")):
        repo = folder / f"lab1-{login}"
        repo.mkdir(parents=True)
        shutil.copyfile(source, repo / EX01)
        git(repo, "init", "-q")
        git(repo, "add", ".")
        git(repo, "commit", "-q", "-m", "hand in", when=when)
    return folder


def test_a_classroom_folder_is_read_with_commit_times(tmp_path: Path) -> None:
    found = downloads.discover(classroom_folder(tmp_path), tmp_path / "out", Roster(load_roster(write_roster(tmp_path))))
    assert found.lms == "classroom" and [s.name for s in found.students] == ["s001", "s002"]
    bob = found.students[1]
    assert bob.meta["github"] == "bobby" and bob.meta["submitted_at"].startswith("2027-03-03T08:00:00")
    collected = submissions.collect(bob, [find_exercise(1)], tmp_path / "files")
    assert collected.found == {EX01: EX01}
    lab = assignments.Assignment("lab1", (1,), due=assignments.parse_time("2027-03-01T23:59:00+01:00", "due"),
                                 late=assignments.LatePolicy(per_day=10, cap=50))
    late = assignments.lateness(lab, bob.meta, lab.due)
    assert (late.days, late.percent) == (2, 20)  # 1 day and 8 hours: two started days


def test_canvas_names_late_marks_and_resubmissions(tmp_path: Path) -> None:
    folder = tmp_path / "dl"
    folder.mkdir()
    for name in ("smithjohn_LATE_12345_67890_ex01_oversold_ticket-2.py", "smithjohn_12345_67890_ex01_oversold_ticket-1.py",
                 "smithjohn_12345_67890_ex02_sentinels.py", "smithjohn_99999_11111_ex01_oversold_ticket.py",
                 "readme.txt"):
        (folder / name).write_text("x = 1\n")
    found = downloads.discover(folder, tmp_path / "out")
    assert found.lms == "canvas" and found.ignored == ["readme.txt"]
    assert [s.name for s in found.students] == ["smithjohn-12345", "smithjohn-99999"]
    john = found.students[0]
    assert john.meta["late"] is True and john.meta["canvas_id"] == "12345"
    assert dict(john.files) == {"ex01_oversold_ticket.py": str(folder / "smithjohn_LATE_12345_67890_ex01_oversold_ticket-2.py"),
                                "ex02_sentinels.py": str(folder / "smithjohn_12345_67890_ex02_sentinels.py")}
    assert downloads.canvas_original_name("ex01_oversold_ticket-10.py") == ("ex01_oversold_ticket.py", 10)
    assert sortable("Zoë Müller") == "mullerzoe" and sortable("Müller, Zoë") == "mullerzoe"


def test_gradescope_export_metadata(tmp_path: Path) -> None:
    folder = tmp_path / "export" / "assignment_42_export"
    (folder / "submission_111").mkdir(parents=True)
    (folder / "submission_222").mkdir()
    shutil.copyfile(SOLUTION, folder / "submission_111" / EX01)
    (folder / downloads.GRADESCOPE_METADATA).write_text("""---
submission_111:
  :submitters:
  - :name: Alice Smith
    :sid: 's001'
    :email: alice@uni.example
  :created_at: 2027-03-02 10:00:00.123456789 +0100
  :score: 0.0
  :results:
    :tests:
    - :name: 'Exercise 1: not a submitter'
      :score: 3.0
submission_222:
  :submitters:
  - :name: Bob Jones
    :sid: s002
    :email: bob@uni.example
  - :name: Zoë Müller
    :sid: s003
    :email: zoe@uni.example
  :created_at: 2027-03-01 10:00:00.000000000 +0100
""")
    found = downloads.discover(tmp_path / "export", tmp_path / "out")
    assert found.lms == "gradescope" and [s.name for s in found.students] == ["s001", "s002"]
    alice, bob = found.students
    assert alice.meta["submitted_at"] == "2027-03-02T10:00:00+01:00" and bob.meta["group"] == ["Zoë Müller"]


def test_no_student_found_is_exit_2_saying_what_was_seen(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "dl"
    folder.mkdir()
    (folder / "grades.xlsx").write_text("")
    (folder / "notes.txt").write_text("")
    assert cli.main(["batch", str(folder), "--out", str(tmp_path / "out"), "--exercises", "1"]) == 2
    error = capsys.readouterr().err
    assert "no student found" in error and "grades.xlsx, notes.txt" in error


def test_a_zip_cannot_write_outside_its_download_folder(tmp_path: Path) -> None:
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("../../escaped.py", "x = 1\n")
        z.writestr("/abs/escaped.py", "x = 1\n")
        z.writestr(f"smithjohn_1_2_{EX01}", "x = 1\n")
    target = downloads.unpack(archive, tmp_path / "out")
    assert not (tmp_path / "escaped.py").exists() and not list(tmp_path.glob("out/escaped.py"))
    assert sorted(p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file()) == \
        ["abs/escaped.py", f"smithjohn_1_2_{EX01}"]
    assert downloads.unpack(archive, tmp_path / "out") == target, "the same download is unpacked once"
    with zipfile.ZipFile(archive, "a") as z:
        z.writestr(f"smithjohn_1_2_{EX01.replace('.py', '-1.py')}", "x = 2\n")
    again = downloads.unpack(archive, tmp_path / "out")
    assert again != target and not target.exists() and len(list(again.iterdir())) == 3


def test_roster_matching_and_errors(tmp_path: Path) -> None:
    roster = Roster(load_roster(write_roster(tmp_path)))
    assert roster.match(name="zoe muller").id == "s003"
    assert roster.match(sortable="jonesbob").id == "s002"
    assert roster.match(email="ALICE@uni.example").id == "s001"
    assert roster.match(name="Nobody") is None
    bad = tmp_path / "bad.csv"
    bad.write_text("name,section\nA,B\n")
    with pytest.raises(RosterError, match="needs an 'id' or an 'email' column"):
        load_roster(bad)
    bad.write_text("id,name\nx,A\nx,B\n")
    with pytest.raises(RosterError, match="the id x is there twice"):
        load_roster(bad)


def test_late_policies_caps_and_extensions(tmp_path: Path) -> None:
    due = datetime(2027, 3, 1, 23, 59, tzinfo=timezone.utc)
    lab = assignments.Assignment("lab1", (1,), due=due, late=assignments.LatePolicy(per_day=10, cap=30))

    def late(**meta: object) -> tuple[int, float]:
        found = assignments.lateness(lab, meta, due)
        return found.days, found.percent

    assert late(submitted_at=(due - timedelta(minutes=1)).isoformat()) == (0, 0)
    assert late(submitted_at=(due + timedelta(minutes=1)).isoformat()) == (1, 10)
    assert late(submitted_at=(due + timedelta(days=9)).isoformat()) == (9, 30)  # capped
    assert late(late=True) == (1, 10)  # Canvas's LATE mark without a time
    assert late() == (0, 0)
    free = assignments.Assignment("lab3", (1,), due=due)
    assert assignments.lateness(free, {"submitted_at": (due + timedelta(days=3)).isoformat()}, due).percent == 0
    extensions = tmp_path / "extensions.csv"
    extensions.write_text("student,days\ns002,3\n")
    own = assignments.load_extensions(extensions, lab)
    assert own == {"s002": due + timedelta(days=3)}
    assert assignments.lateness(lab, {"late": True}, own["s002"]).percent == 0  # Canvas marks late; extended
    bad = tmp_path / "bad.toml"
    bad.write_text('[[assignment]]\nname = "x"\nexercises = [1]\nlate = { per_day = 200 }\n')
    with pytest.raises(assignments.AssignmentError, match="late must be"):
        assignments.load_assignments(bad)


def synthetic_book(students: list[tuple[str, float, dict]]) -> gradebook.Gradebook:
    """A gradebook of ex01 and ex02 without grading: (name, score of each, LMS meta)."""
    exercises = [{"number": 1, "name": "ex01", "title": "", "points": 10},
                 {"number": 2, "name": "ex02", "title": "", "points": 10}]
    results = [gradebook.StudentResult(name=name, entry=name, kind="folder", digest="d", score=2 * score,
                                       max_score=20, scores={"1": score, "2": score}, student=meta)
               for name, score, meta in students]
    return gradebook.Gradebook(exercises, results, {"seed": 0, "exercises": [1, 2]})


def test_grades_csv_keeps_raw_ids_shows_the_penalty_and_can_start_with_a_bom(tmp_path: Path) -> None:
    from grader.lms.batching import apply_lateness

    due = datetime(2027, 3, 1, tzinfo=timezone.utc)
    book = synthetic_book([("=cmd|x", 10, {}), ("late", 10, {"submitted_at": "2027-03-02T12:00:00+00:00"})])
    lab = assignments.Assignment("lab", (1, 2), due=due, late=assignments.LatePolicy(per_day=10, cap=50))
    apply_lateness(book, lab, None)
    gradebook.write_gradebook(tmp_path, book, summary.render, bom=True)
    raw = (tmp_path / "grades.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    rows = {row["id"]: row for row in csv.DictReader(raw.decode("utf-8-sig").splitlines())}
    assert set(rows) == {"=cmd|x", "late"}, "ids are never altered: an LMS matches them as they are"
    assert (rows["late"]["total"], rows["late"]["penalty"], rows["late"]["final"]) == ("20", "4", "16")
    assert "2 day(s) late: -20%" in rows["late"]["status"]
    assert json.loads((tmp_path / "results.json").read_text())["assignment"]["name"] == "lab"


def test_export_of_an_assignment_sums_its_exercises_only() -> None:
    book = synthetic_book([("s001", 7, {"student": {"id": "s001", "name": "Alice Smith", "canvas_id": "101"}})])
    lab = assignments.Assignment("lab", (2,), title="Lab two")
    built = export.build(book, None, lab, None, None)
    assert built.column == "Lab two" and built.maximum == 10 and built.rows[0].final == 7
    assert export.canvas(built).splitlines()[2] == '"Smith, Alice",101,,,,7'
    with pytest.raises(assignments.AssignmentError, match="no grades for exercise"):
        export.build(book, None, assignments.Assignment("x", (3,)), None, None)


def test_grader_ci_for_an_assignment_on_gradescope_takes_the_late_penalty(tmp_path: Path) -> None:
    """`grader ci --assignment lab1` as run_autograder calls it, with Gradescope's submission_metadata.json."""
    import sys

    submission = tmp_path / "submission"
    submission.mkdir()
    shutil.copyfile(SOLUTION, submission / EX01)
    metadata = tmp_path / "submission_metadata.json"
    metadata.write_text(json.dumps({"created_at": "2027-03-03T00:30:00.000000+01:00", "users": [],
                                    "assignment": {"due_date": None, "title": "Lab 1"}}))
    results = tmp_path / "results" / "results.json"
    environment = {k: v for k, v in os.environ.items() if not k.startswith("GITHUB_")}
    done = subprocess.run([sys.executable, "-m", "grader", "ci", "1", "--assignment", "lab1", "--submission",
                           str(submission), "--submission-metadata", str(metadata), "--gradescope", str(results),
                           "--start-method", "fork"], capture_output=True, text=True, env=environment, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    document = json.loads(results.read_text())
    assert document["score"] == 8 and sum(t["score"] for t in document["tests"]) == 10
    assert "2 day(s) late; 2 points taken off, score 8" in document["output"]
    unknown = subprocess.run([sys.executable, "-m", "grader", "ci", "--assignment", "nope"], capture_output=True,
                             text=True, env=environment, timeout=60)
    assert unknown.returncode == 2 and "no assignment 'nope' in course.toml (there are: lab1, lab2, lab3)" in unknown.stderr


def test_canvas_gradebook_export_works_as_a_roster(tmp_path: Path) -> None:
    path = tmp_path / "canvas-export.csv"
    path.write_text("\ufeffStudent,ID,SIS User ID,SIS Login ID,Section,Lab 1 (5531)\n"
                    "    Points Possible,,,,,40\n"
                    '"Smith, Alice",101,SIS-1,asmith,A,\n'
                    '"Jones, Bob",102,,bjones,B,\n', encoding="utf-8")
    people = load_roster(path)
    assert [(p.id, p.name, p.canvas_id, p.sis_login_id, p.section) for p in people] == [
        ("SIS-1", "Smith, Alice", "101", "asmith", "A"), ("bjones", "Jones, Bob", "102", "bjones", "B")]
    assert Roster(people).match(sortable="smithalice").id == "SIS-1"


def test_a_zip_handed_in_on_canvas_and_moodles_flat_files_are_searched(tmp_path: Path) -> None:
    canvas = tmp_path / "canvas"
    canvas.mkdir()
    with zipfile.ZipFile(canvas / "smithalice_101_9001_lab1.zip", "w") as z:
        z.write(SOLUTION, f"lab1/{EX01}")
    (alice,) = downloads.discover(canvas, tmp_path / "out").students
    collected = submissions.collect(alice, [find_exercise(1)], tmp_path / "a")
    assert collected.found == {EX01: f"lab1/{EX01}"} and (tmp_path / "a" / EX01).read_bytes() == SOLUTION.read_bytes()
    moodle = tmp_path / "moodle"
    moodle.mkdir()
    shutil.copyfile(HALF, moodle / f"Bob Jones_555_assignsubmission_file_{EX01}")
    found = downloads.discover(moodle, tmp_path / "out")
    assert found.lms == "moodle" and [s.name for s in found.students] == ["Bob Jones"]
    collected = submissions.collect(found.students[0], [find_exercise(1), find_exercise(2)], tmp_path / "b")
    assert set(collected.found) == {EX01} and collected.problems == ["missing ex02_sentinels.py"]
