"""Hostile and broken submissions (tests/hostile/CASE/): each fails with a reason a student understands,
the grader survives with bounded memory, no process survives, and nothing outside the run changes."""
from __future__ import annotations

import csv
import glob
import io
import json
import os
import shutil
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterator

import psutil
import pytest

from hostile_support import (HOSTILE, NEEDS_BWRAP, NEEDS_HIDING, NEEDS_OWN_UID, NEEDS_SEPARATION, REASONS, ROOT,
                             RUN_TIMEOUT, checkout_digest, shared_uid_reason, submission, tagged_processes,
                             tree_digest, unhidden_reason, unprotected_reason, unseparated_reason)
from grader.running import isolation
from grader.judging import session
from grader.course import find_exercise
from grader.results import FAILED, SKIPPED

@pytest.fixture(autouse=True)
def checkout_known_to_the_attacker(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the course lives, as an attacker knows it (the course repository is public): a submission that
    cannot import the grader (hidden from its run) still aims at the real files."""
    monkeypatch.setenv("HOSTILE_CHECKOUT", str(ROOT))


@pytest.fixture
def canary() -> Path:
    path = Path.home() / ".grader-canary"
    path.write_text(secrets.token_hex(16))
    yield path
    path.unlink(missing_ok=True)


@pytest.fixture
def listener(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """A TCP server on loopback; the 'network' case tries to phone home to it."""
    received: list[bytes] = []
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    monkeypatch.setenv("HOSTILE_TEST_PORT", str(server.getsockname()[1]))
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            with conn:
                received.append(conn.recv(100) or b"(connected)")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield received
    stop.set()
    thread.join()
    server.close()


def test_every_case_has_a_folder_or_a_builder() -> None:
    assert {p.name for p in HOSTILE.iterdir()} | {"symlink_out", "huge_source"} == set(REASONS)


@pytest.mark.parametrize("case", sorted(REASONS))
def test_hostile_submission_fails_and_nothing_escapes(case: str, tmp_path: Path, canary: Path,
                                                      listener: list[bytes], monkeypatch: pytest.MonkeyPatch) -> None:
    if case in NEEDS_BWRAP and unprotected_reason():
        pytest.skip(unprotected_reason())
    if case in NEEDS_HIDING and unhidden_reason():
        pytest.skip(unhidden_reason())
    if case in NEEDS_SEPARATION and unseparated_reason():
        pytest.skip(unseparated_reason())
    if case in NEEDS_OWN_UID and shared_uid_reason():
        pytest.skip(shared_uid_reason())
    marker = f"HOSTILE_RUN_MARKER={secrets.token_hex(8)}"
    monkeypatch.setenv("HOSTILE_RUN_MARKER", marker.split("=", 1)[1])
    protected = [ROOT / "grader", ROOT / "solutions"]
    before = tree_digest(*protected)
    canary_text = canary.read_text()
    rss_before = psutil.Process().memory_info().rss
    started = time.monotonic()

    report = session.grade([find_exercise(1)], submission(case, tmp_path))

    elapsed = time.monotonic() - started
    checks = report.all_checks()
    assert report.exit_code() == 1, [(c.outcome, c.message, c.traceback) for c in checks]
    failed = [c for c in checks if c.outcome == FAILED]
    assert failed and all(c.outcome in (FAILED, "passed", SKIPPED) for c in checks)
    assert all(c.depends_on in {f.id for f in failed} for c in checks if c.outcome == SKIPPED)
    assert any(piece in c.message for c in failed for piece in REASONS[case]), [c.message for c in failed]
    assert not any("Traceback" in c.message for c in checks)
    assert elapsed < RUN_TIMEOUT + 2 + 3, elapsed  # + 3 s for pytest's own start in this process
    assert tagged_processes(marker) == []
    assert [p for p in psutil.Process().children(recursive=True) if p.status() != psutil.STATUS_ZOMBIE] == []
    assert psutil.Process().memory_info().rss - rss_before < 300 * 1024**2
    assert listener == []
    if isolation.detect().read_only:
        assert tree_digest(*protected) == before
        assert canary.read_text() == canary_text


@pytest.fixture
def fresh_isolation() -> Iterator[None]:
    """isolation.detect() is cached per process: forget it around a test that forces a level."""
    isolation.detect.cache_clear()
    yield
    isolation.detect.cache_clear()


@pytest.mark.parametrize("level", ["default", "net", "none"])
def test_a_submission_cannot_change_the_checkout(level: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 fresh_isolation: None) -> None:
    """The README's test command, run as root in CI with or without bubblewrap: a submission that rewrites
    grader modules, the probe's bytecode, the solutions, course.toml, .git and site-packages changes nothing."""
    if level != "default":
        monkeypatch.setenv("GRADER_ISOLATION", level)
    reason = unprotected_reason()
    if reason:
        pytest.skip(reason)
    before = checkout_digest()

    report = session.grade([find_exercise(1)], submission("rewrites_checkout", tmp_path))

    assert checkout_digest() == before
    failed = [c for c in report.all_checks() if c.outcome == FAILED]
    assert report.exit_code() == 1 and any("got a ticket" in c.message for c in failed), [c.message for c in failed]


@pytest.mark.parametrize("command", ["ci", "check"])
@pytest.mark.parametrize("level", ["default", "net", "none"])
def test_code_planted_for_later_is_never_loaded(level: str, command: str, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch, fresh_isolation: None) -> None:
    """`grader ci` with every output, or `grader check` with its JSON and HTML, on a submission that appends to
    renderers, plants .pyc files that match the other renderers' sources, a .pth in site-packages and a
    sitecustomize.py beside the package: the command that judged it loads none of them and reports the truth.
    Where the level protects the checkout nothing is planted at all; where it does not (none, as the grader's own
    user) the command runs a copy of the package, the plants land in it, and still none of them is loaded
    (everything was imported before student code ran). A later command would load them there: see the README."""
    from grader.running import privileges

    env = {**os.environ, "HOSTILE_PLANT_MARKER": str(tmp_path / "planted.txt"),
           "GITHUB_OUTPUT": str(tmp_path / "github_output")}
    if level != "default":
        monkeypatch.setenv("GRADER_ISOLATION", level)
        env["GRADER_ISOLATION"] = level
    protected = unprotected_reason() is None
    root = ROOT
    if not protected:  # the plants would really land in the checkout: give the command a copy to run
        root = tmp_path / "checkout"
        shutil.copytree(ROOT / "grader", root / "grader")
        shutil.copytree(ROOT / "exercises", root / "exercises")
        (tmp_path / "site").mkdir()
        env["HOSTILE_SITE"] = str(tmp_path / "site")  # not the real site-packages: nothing reads this folder
    env["HOSTILE_CHECKOUT"] = str(root)
    before = checkout_digest(root)
    folder = submission("plants_modules", tmp_path)
    code = f"import sys; sys.path.insert(0, {str(root)!r}); from grader.commands.cli import main; sys.exit(main())"
    outputs = {"ci": ["--junit", str(tmp_path / "junit.xml"), "--gradescope", str(tmp_path / "results.json"),
                      "--classroom"],
               "check": ["--json", str(tmp_path / "results.json"), "--report-dir", str(tmp_path / "feedback")]}

    done = subprocess.run([sys.executable, "-c", code, command, "1", "--submission", str(folder), "--start-method",
                           "fork", *outputs[command]], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)

    assert done.returncode == 1, done.stdout + done.stderr
    marker = tmp_path / "planted.txt"
    assert not marker.exists(), marker.read_text()
    assert "got a ticket" in done.stdout and "all 10/10 passed" not in done.stdout, done.stdout
    results = json.loads((tmp_path / "results.json").read_text())
    if command == "ci":
        assert 0 < len(results["tests"]) and results["score"] < 10
        assert 'failures="0"' not in (tmp_path / "junit.xml").read_text()
        assert "result=" in (tmp_path / "github_output").read_text()
    else:
        checks = [c for e in results["exercises"] for c in e["checks"]]
        assert any(c["outcome"] == FAILED for c in checks)
        page = (tmp_path / "feedback" / "ex01.html").read_text() if (tmp_path / "feedback" / "ex01.html").exists() \
            else "".join(p.read_text() for p in (tmp_path / "feedback").glob("*.html"))
        assert "got a ticket" in page  # (the page quotes the submission's source: the payload's text is in it)
    if protected:
        assert checkout_digest(root) == before
    elif privileges.run_identity() is None:  # student code had the grader's rights: the plants did land
        assert "HOSTILE_PLANT_MARKER" in (root / "grader" / "render" / "junit.py").read_text()
        assert (root / "sitecustomize.py").exists()
        assert checkout_digest(root) != before


def _zip(path: Path, members: dict[str, bytes]) -> None:
    import zipfile

    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def test_in_a_batch_hostile_students_change_nothing_for_the_others(tmp_path: Path) -> None:
    """A class where one honest student sits among hostile and broken submissions: the honest result is the
    same as when graded alone, and every hostile one gets a failing result, never a lost one."""
    from grader.commands import batch

    solution = (ROOT / "solutions" / "ex01_oversold_ticket.py").read_bytes()
    klass = tmp_path / "class"
    (klass / "honest").mkdir(parents=True)
    (klass / "honest" / "ex01_oversold_ticket.py").write_bytes(solution)
    # writes_outside only where the level protects the checkout: elsewhere it would really rewrite it
    hostile = ("kills_parent", "fork_bomb", "endless_output", *(() if unprotected_reason() else ("writes_outside",)))
    for case in hostile:
        submission(case, klass)
    _zip(klass / "traversal.zip", {"../../ex01_oversold_ticket.py": solution, "x/README.txt": b"hi"})
    _zip(klass / "bomb.zip", {"top/ex01_oversold_ticket.py": b"#" * (200 * 1024 * 1024)})  # 200 MB of '#'
    (klass / "empty").mkdir()
    (klass / "misnamed").mkdir()
    (klass / "misnamed" / "ex1_oversold.py").write_bytes(solution)
    out = tmp_path / "out"
    options = batch.BatchOptions(submissions=klass, out=out, numbers=[1], workers=2, start_method="fork")
    batch.run_batch(options, progress_stream=io.StringIO(), terminal=False)
    rows = {row["student"]: row for row in csv.DictReader((out / "grades.csv").open())}
    assert set(rows) == {"honest", *hostile, "traversal", "bomb", "empty", "misnamed"}
    alone = session.grade([find_exercise(1)], klass / "honest")
    assert float(rows["honest"]["total"]) == alone.score == 10
    for student, row in rows.items():
        if student != "honest":
            assert float(row["total"]) < 10, (student, row)
    assert not (tmp_path / "ex01_oversold_ticket.py").exists() and not (klass.parent / "ex01_oversold_ticket.py").exists()


def _grader_command(*args: str) -> list[str]:
    return [sys.executable, "-c", "import sys; from grader.commands.cli import main; sys.exit(main())", *args]


@pytest.mark.parametrize("level, sig", [("default", signal.SIGKILL), ("none", signal.SIGKILL),
                                        ("default", signal.SIGTERM)])
def test_a_killed_grader_leaves_no_process_of_the_run(level: str, sig: signal.Signals, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch, fresh_isolation: None) -> None:
    """`grader check` killed (a cancelled CI job, a killed worker) during a hang: 2 s later no process of the run
    is left (parent-death signals, the keeper as pid 1 or subreaper); SIGTERM is handled like Ctrl-C."""
    if level == "none":
        monkeypatch.setenv("GRADER_ISOLATION", "none")
    marker = secrets.token_hex(8)
    monkeypatch.setenv("HOSTILE_RUN_MARKER", marker)
    folder = submission("busy_child", tmp_path)
    grader = subprocess.Popen(_grader_command("check", "1", "--submission", str(folder)), stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, cwd=ROOT)
    try:
        deadline = time.monotonic() + 60
        while len([p for p in tagged_processes(f"HOSTILE_RUN_MARKER={marker}") if p != grader.pid]) < 3:
            assert grader.poll() is None and time.monotonic() < deadline, "the run never started"
            time.sleep(0.05)
        grader.send_signal(sig)
        code = grader.wait(timeout=30)
    finally:
        if grader.poll() is None:
            grader.kill()
            grader.wait()
    time.sleep(2)
    assert tagged_processes(f"HOSTILE_RUN_MARKER={marker}") == []
    if sig == signal.SIGTERM:
        assert code == 128 + signal.SIGTERM and b"stopped by SIGTERM" in grader.stderr.read()
    grader.stderr.close()


_VICTIM = """
import pathlib, time
pathlib.Path("secret.txt").write_text("mine")
deadline = time.monotonic() + 25
while not pathlib.Path("stop").exists() and time.monotonic() < deadline:
    time.sleep(0.05)
"""

_INTRUDER = """
import glob, os, pathlib
found = []
for path in glob.glob(os.environ["VICTIM_PATTERN"]):
    try:
        found.append(pathlib.Path(path).read_text())
    except OSError:
        pass
    try:
        pathlib.Path(path).write_text("owned")
    except OSError:
        pass
print("found", found)
"""


def test_a_run_cannot_read_or_write_another_runs_folder(monkeypatch: pytest.MonkeyPatch, fresh_isolation: None) -> None:
    """Two runs at once, as in `grader batch -j 2`: the second cannot read or rewrite the first one's files (its
    own uid's folders, mode 0700, or bubblewrap's private /tmp)."""
    from grader.running import runner

    reason = unprotected_reason()
    if reason:
        pytest.skip(reason)
    pattern = str(Path(tempfile.gettempdir()) / "grader-run-*" / "work" / "secret.txt")
    victim_outcome: list[runner.RunOutcome] = []
    victim = threading.Thread(target=lambda: victim_outcome.append(runner.run(runner.RunSpec(
        argv=["-c", _VICTIM], timeout=30, exit_grace=None))))
    victim.start()
    try:
        deadline = time.monotonic() + 30
        while not glob.glob(pattern) and time.monotonic() < deadline:  # we are root or its owner: we see it
            time.sleep(0.05)
        assert glob.glob(pattern), "the victim's run never started"
        monkeypatch.setenv("VICTIM_PATTERN", pattern)
        intruder = runner.run(runner.RunSpec(argv=["-c", _INTRUDER], timeout=30))
    finally:
        for secret in glob.glob(pattern):
            Path(secret).with_name("stop").write_text("")
        victim.join()
    assert intruder.output["main"]["out"] == "found []\n", intruder.output
    assert victim_outcome[0].files.get("secret.txt") == "mine"
