"""`grader batch --engine ray` on a local Ray cluster of 2 workers started for the batch: the same grades.csv as
the local engine, a Ray worker killed mid-grading costs a retry and never a student (each graded exactly once),
and no process (Ray's or a grading's) nor private folder is left after the command.

Kept few and small (3 students of the fixture class, ex01 only, fork): a Ray cluster takes seconds to start."""
from __future__ import annotations

import contextlib
import csv
import io
import os
import queue
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import psutil
import pytest

from conftest import default_sigint, marked_processes, wait_until_gone
from grader.commands import batch, cli
from grader.gradebook import book as gradebook
from grader.gradebook import ray_engine, workers

pytest.importorskip("ray")

CLASS = Path(__file__).resolve().parent / "fixtures" / "class"
NAMES = ["alice", "bob", "heidi"]
EX01 = {"alice": "10", "bob": "5", "heidi": "5"}  # as tests/test_batch.py's EXPECTED: solutions, stubs, a half fix


def small_class(tmp: Path, names: list[str] = NAMES) -> Path:
    """A copy of some students of the fixture class (alice, bob and heidi)."""
    folder = tmp / "class"
    folder.mkdir()
    for name in names:
        shutil.copytree(CLASS / name, folder / name)
    return folder


def ray_batch(folder: Path, out: Path, marker: str, tmpdir: Path) -> subprocess.Popen[bytes]:
    """`grader batch --engine ray -j 2` in a process of its own, its processes marked, with a TMPDIR too deep
    for Ray's sockets (the engine must put them elsewhere)."""
    env = {**os.environ, "BATCH_TEST_MARKER": marker, "TMPDIR": str(tmpdir)}
    env.pop("RAY_ADDRESS", None)
    return subprocess.Popen([sys.executable, "-m", "grader", "batch", str(folder), "--out", str(out), "-j", "2",
                             "--exercises", "1", "--start-method", "fork", "--engine", "ray"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=default_sigint)


def deep_tmpdir(tmp_path: Path) -> Path:
    """A temporary folder whose path leaves no room for Ray's socket paths (AF_UNIX: 107 bytes)."""
    folder = tmp_path / ("deep-" + "t" * 60)
    folder.mkdir()
    assert len(str(folder)) + ray_engine.GRADING_ROOM > ray_engine.AF_UNIX_LIMIT
    return folder


def rows(out: Path) -> dict[str, dict[str, str]]:
    with open(out / "grades.csv", newline="") as f:
        return {row["student"]: row for row in csv.DictReader(f)}


def test_ray_engine_grades_like_the_local_engine(tmp_path: Path) -> None:
    folder = small_class(tmp_path)
    local = batch.run_batch(batch.BatchOptions(folder, tmp_path / "local", numbers=[1], workers=2,
                                               start_method="fork"), progress_stream=io.StringIO(), terminal=False)
    assert not local.problems
    marker, tmpdir = secrets.token_hex(8), deep_tmpdir(tmp_path)
    private = Path("/tmp") / f"grader-ray-tasks-{os.getuid()}"  # the gradings' folders (TMPDIR is too deep)
    before = set(private.iterdir()) if private.is_dir() else set()
    process = ray_batch(folder, tmp_path / "ray", marker, tmpdir)
    stdout, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, (stdout, stderr)
    assert (tmp_path / "ray" / "grades.csv").read_text() == (tmp_path / "local" / "grades.csv").read_text()
    assert {name: row["ex01"] for name, row in rows(tmp_path / "ray").items()} == EX01
    for name in NAMES:  # the same folder per student: the reports, the files graded, the verdicts
        ray_files = sorted(p.relative_to(tmp_path / "ray").as_posix() for p in (tmp_path / "ray" / name).rglob("*"))
        local_files = sorted(p.relative_to(tmp_path / "local").as_posix()
                             for p in (tmp_path / "local" / name).rglob("*"))
        assert ray_files == local_files
        assert _verdicts(tmp_path / "ray" / name) == _verdicts(tmp_path / "local" / name)
    assert wait_until_gone(marker, 30) == [], "a process of the Ray cluster or of a grading was left behind"
    left = [f for batch in set(private.iterdir()) - before for f in batch.rglob("*") if not f.is_dir()]
    assert left == [], "a grading's files were left behind on the node"
    assert list(tmpdir.iterdir()) == [], "the cluster's temporary folder was left behind, or put in a deep TMPDIR"
    assert not (tmp_path / "ray" / gradebook.STAGING).exists()


def _verdicts(folder: Path) -> list[tuple[str, str, float]]:
    """Each check of a student's result: its id, outcome and points (its reason names the buyers that won the
    race this time: which ones is the scheduler's choice)."""
    result = gradebook.read_result(folder)
    assert result is not None and result.report is not None
    return [(c["id"], c["outcome"], c["points"]) for e in result.report["exercises"] for c in e["checks"]]


def test_a_ray_worker_killed_mid_grading_costs_a_retry_not_a_student(tmp_path: Path) -> None:
    folder = small_class(tmp_path)
    marker = secrets.token_hex(8)
    process = ray_batch(folder, tmp_path / "out", marker, deep_tmpdir(tmp_path))
    lines: queue.Queue[bytes] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in process.stdout], daemon=True)
    reader.start()
    killed, deadline = None, time.monotonic() + 300
    while killed is None and process.poll() is None and time.monotonic() < deadline:
        killed = _kill_a_worker_mid_grading(marker)
        time.sleep(0.05)
    assert killed is not None, "no Ray worker was seen grading"
    assert lines.qsize() < len(NAMES), "killed while a student was still being graded"
    assert process.wait(timeout=600) == 0, process.stderr.read()
    reader.join(10)
    told = b"".join(lines.queue).decode()
    for name in NAMES:
        assert sum(f"] {name}: " in line for line in told.splitlines()) == 1, told
    book = rows(tmp_path / "out")
    assert {name: row["ex01"] for name, row in book.items()} == EX01, "graded again, once, after the kill"
    assert {row["status"] for row in book.values()} == {"ok"}, book
    assert wait_until_gone(marker, 30) == [], "the killed worker's grading, or the cluster, was left behind"


def _kill_a_worker_mid_grading(marker: str) -> int | None:
    """SIGKILL a Ray worker (of this test's batch) whose grading host is grading a student: its pid."""
    for pid in marked_processes(marker):
        with contextlib.suppress(psutil.Error):
            worker = psutil.Process(pid)
            if not " ".join(worker.cmdline()).startswith("ray::GradingHost"):
                continue
            hosts = [c for c in worker.children() if ray_engine.PROGRAM in " ".join(c.cmdline())]
            if any(host.children() for host in hosts):
                os.kill(pid, signal.SIGKILL)
                return pid
    return None


def test_ctrl_c_stops_a_ray_batch_and_leaves_a_gradebook_that_resumes(tmp_path: Path) -> None:
    folder = small_class(tmp_path, ["erin", "frank"])  # erin: no files, told at once; frank: ex01 hangs
    marker = secrets.token_hex(8)
    process = ray_batch(folder, tmp_path / "out", marker, deep_tmpdir(tmp_path))
    lines: queue.Queue[bytes] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in process.stdout], daemon=True)
    reader.start()
    told, deadline = [], time.monotonic() + 300
    while not any(b"erin" in line for line in told) and time.monotonic() < deadline:
        with contextlib.suppress(queue.Empty):
            told.append(lines.get(timeout=0.1))
    assert process.poll() is None and not (tmp_path / "out" / "frank").exists(), b"".join(told)
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=120) == 130
    assert b"run the same command again to resume" in process.stderr.read()
    assert wait_until_gone(marker, 30) == [], "Ctrl-C left a process of the cluster or of frank's grading"
    result = gradebook.read_result(tmp_path / "out" / "erin")
    assert result is not None and result.status == "no exercise files", "erin is kept: a rerun reuses her"
    assert not (tmp_path / "out" / "frank").exists() and not (tmp_path / "out" / "grades.csv").exists()


def test_the_driver_installs_a_returned_folder_and_refuses_a_path_out_of_it(tmp_path: Path) -> None:
    (tmp_path / gradebook.STAGING).mkdir()
    task = SimpleNamespace(submission=SimpleNamespace(name="alice"), out=tmp_path)
    job = workers.Job("alice", print, (task,), tmp_path / "error")
    result = {"name": "alice", "entry": "class/alice", "kind": "folder", "digest": "d1"}
    returned = {"result": result, "files": {"report.txt": b"10/10", "files/ex01_tickets.py": b"x = 1"},
                "links": {}, "elapsed": 1.5, "fingerprint": "this grader"}
    end = ray_engine._install(job, returned, "this grader")
    assert (end.exitcode, end.error, end.elapsed) == (0, "", 1.5)
    assert (tmp_path / "alice" / "report.txt").read_bytes() == b"10/10"
    assert (tmp_path / "alice" / "files" / "ex01_tickets.py").read_bytes() == b"x = 1"
    assert gradebook.read_result(tmp_path / "alice") == gradebook.StudentResult(**result)
    for rel in ("../bob/result.json", "/etc/passwd", "files/../../x"):
        end = ray_engine._install(job, {**returned, "files": {rel: b"{}"}}, "this grader")
        assert end.exitcode is None and "outside its folder" in end.error, rel
    end = ray_engine._install(job, returned, "another grader")
    assert end.exitcode is None and "runs another grader" in end.error
    assert sorted(p.name for p in tmp_path.iterdir()) == [gradebook.STAGING, "alice"]
    assert list((tmp_path / gradebook.STAGING).iterdir()) == []


def test_without_ray_or_with_an_address_but_no_ray_engine_the_batch_says_so(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    folder = small_class(tmp_path, ["erin"])
    base = ["batch", str(folder), "--out", str(tmp_path / "out"), "--exercises", "1"]
    assert cli.main([*base, "--address", "ray://head:10001"]) == 2
    assert "--address is the Ray cluster of --engine ray" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    assert cli.main([*base, "--engine", "ray"]) == 2
    assert "--engine ray needs Ray: pip install 'grader[ray]'" in capsys.readouterr().err
    assert not (tmp_path / "out" / "erin").exists()
