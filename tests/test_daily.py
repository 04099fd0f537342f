"""A student's daily loop: list with progress, progressive hints, reset with a backup, watch mode."""
from __future__ import annotations

import os
import queue
import secrets
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from conftest import ROOT, default_sigint, marked_processes, wait_until_gone
from grader.course import load_course


@pytest.fixture
def course(tmp_path: Path) -> Path:
    """A fresh clone of the course, as a student has it."""
    clone = tmp_path / "course"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    return clone


def grader(course: Path, *args: str, **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "grader", *args], cwd=course, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "NO_COLOR": "1", "COLUMNS": "160"}, **kwargs)


def test_list_shows_progress_after_a_check(course: Path) -> None:
    assert "not tried" in grader(course, "list").stdout
    assert grader(course, "check", "1").returncode == 1
    listing = grader(course, "list").stdout
    first = next(line for line in listing.splitlines() if line.startswith("1 "))
    assert "failed" in first and "5/10" in first
    assert f"progress: 0/{len(load_course())} exercises passed" in listing


def test_hints_come_one_at_a_time_and_are_remembered(course: Path) -> None:
    first = grader(course, "hint", "1").stdout
    assert "hint 1/3" in first and "hint 2/3" not in first
    second = grader(course, "hint", "1").stdout
    assert "hint 2/3" in second and "hint 3/3" not in second
    assert "hint 3/3" in grader(course, "hint", "1", "--all").stdout


def test_reset_restores_the_stub_and_keeps_a_backup(course: Path) -> None:
    target = course / "exercises" / "ex01_oversold_ticket.py"
    original = target.read_text()
    target.write_text(original + "# my attempt\n")
    refused = grader(course, "reset", "1", input="n\n")
    assert "nothing changed" in refused.stdout and target.read_text().endswith("# my attempt\n")
    assert "grader reset 1 --yes" in refused.stdout  # no terminal to ask: it says how to confirm
    done = grader(course, "reset", "1", "--yes")
    assert done.returncode == 0, done.stderr
    assert target.read_text() == original
    backups = list((course / ".grader" / "backups").glob("ex01_oversold_ticket.*.py"))
    assert len(backups) == 1 and backups[0].read_text().endswith("# my attempt\n")


def test_watch_rechecks_on_save_and_stops_cleanly(course: Path) -> None:
    env = {**os.environ, "NO_COLOR": "1", "PYTHONUNBUFFERED": "1"}
    watcher = subprocess.Popen([sys.executable, "-m", "grader", "watch", "1"], cwd=course, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, preexec_fn=default_sigint)
    lines: list[str] = []
    # Read in a thread, so that a watcher that falls silent fails the test at the deadline instead of
    # blocking readline() until pytest-timeout.
    output: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [output.put(line) for line in watcher.stdout], daemon=True).start()

    def wait_for(text: str, count: int, limit: float = 60) -> None:
        deadline = time.monotonic() + limit
        while sum(text in line for line in lines) < count:
            left = deadline - time.monotonic()
            assert left > 0, f"no {text!r} #{count} within {limit} s:\n" + "".join(lines)
            try:
                lines.append(output.get(timeout=left))
            except queue.Empty:
                pass

    try:
        wait_for("watching exercises/", 1)
        assert any("FAILED" in line for line in lines)
        solution = (ROOT / "solutions" / "ex01_oversold_ticket.py").read_text()
        (course / "exercises" / "ex01_oversold_ticket.py").write_text(solution)
        wait_for("watching exercises/", 2)
        assert any("5 passed, 0 failed" in line for line in lines), "".join(lines)
        page = (course / "feedback" / "ex01.html").read_text()  # rewritten after every check, as by `check`
        assert "10/10 points" in page and "5/10 points" not in page
        watcher.send_signal(signal.SIGINT)
        assert watcher.wait(timeout=30) == 0
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.wait()
    assert not [p for p in psutil.Process().children(recursive=True) if p.status() != psutil.STATUS_ZOMBIE]


def test_ctrl_c_during_a_check_stops_the_grader_and_its_student_processes(course: Path) -> None:
    """pytest turns Ctrl-C into a return value: the grader must still stop, say so, and exit 130, never
    report the interrupted checks as grader errors."""
    marker = secrets.token_hex(8)
    checker = subprocess.Popen([sys.executable, "-m", "grader", "check", "1"], cwd=course,
                               env={**os.environ, "NO_COLOR": "1", "BATCH_TEST_MARKER": marker},
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=default_sigint)
    try:
        deadline = time.monotonic() + 60
        while len(marked_processes(marker)) < 2 and time.monotonic() < deadline:  # the grader, and one it started
            time.sleep(0.02)
        assert checker.poll() is None, "the check ended before a student process was seen"
        checker.send_signal(signal.SIGINT)
        stdout, stderr = checker.communicate(timeout=60)
    finally:
        if checker.poll() is None:
            checker.kill()
            checker.wait()
    assert checker.returncode == 130, (stdout, stderr)
    assert b"grader: interrupted" in stderr
    assert b"not your fault" not in stdout + stderr
    assert wait_until_gone(marker) == []
