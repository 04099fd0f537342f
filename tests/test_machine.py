"""Verdicts do not depend on the machine (issue 10): a long TMPDIR, a machine too busy to start the student's
processes in time. Each test runs real checks, so they stay few."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT
from grader.course import find_exercise
from grader.judging.evidence import Run
from grader.judging.harness import CheckFailed, MachineTooBusy, Student
from grader.running import rundir, startup
from grader.running.startup import SPAWNED_CHILD_MARK

LONG = 100  # characters of the TMPDIR the tests give the grader


def _long_tmpdir(tmp_path: Path) -> Path:
    """A folder whose path is LONG characters long (a CI runner's or a home folder's can be)."""
    head = str(tmp_path) + "/"
    path = Path(head + "t" * (LONG - len(head)))
    path.mkdir()
    assert len(str(path)) == LONG
    return path


def test_run_folders_fit_unix_sockets_whatever_the_tmpdir() -> None:
    assert not rundir.fits("/" + "t" * (LONG - 1))
    assert rundir.fits("/tmp")
    assert rundir.fits(rundir.base()) or not any(rundir.fits(b) for b in rundir.SHORT_BASES)


@pytest.mark.parametrize("isolation", ["bwrap", "net", "none"])
def test_solutions_pass_under_forkserver_with_a_long_tmpdir(tmp_path: Path, isolation: str) -> None:
    if isolation == "bwrap" and subprocess.run(["which", "bwrap"], capture_output=True).returncode != 0:
        pytest.skip("bubblewrap is not installed")
    long_tmp = _long_tmpdir(tmp_path)
    results = tmp_path / "results.json"
    env = {**os.environ, "TMPDIR": str(long_tmp), "GRADER_ISOLATION": isolation}
    done = subprocess.run(
        [sys.executable, "-m", "grader", "check", "1", "2", "--submission", str(ROOT / "solutions"),
         "--start-method", "forkserver", "--json", str(results), "--report-dir", str(tmp_path / "feedback")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    checks = [c for e in json.loads(results.read_text())["exercises"] for c in e["checks"]]
    assert checks and {c["outcome"] for c in checks} == {"passed"}, checks
    assert "AF_UNIX" not in done.stdout
    assert not list(long_tmp.iterdir()) or all(not p.name.startswith(rundir.RUN_PREFIX) for p in long_tmp.iterdir())


# ---- a machine too busy to start the student's processes in time -------------------------------------------
ONE_SALE = [{"call": "main", "args": ["tickets.json", 3], "label": "1 ticket, 3 buyers"}]


def _ticket_sale(start_method: str, **rules: object) -> Run:
    """The reference solution of exercise 1 selling one ticket to three buyers, under `rules`."""
    exercise = find_exercise(1)
    student = Student(exercise=exercise, file=ROOT / "solutions" / exercise.filename, shown_as=exercise.filename,
                      seed=7, start_method=start_method)
    return student.run_steps("sale", ONE_SALE, contract={"main": ["db_path", "buyers"]}, spy=["buyer"],
                             files={"tickets.json": json.dumps({"count": 1})}, **rules)


@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_a_time_limit_that_runs_out_while_processes_start_is_a_grader_error(start_method: str) -> None:
    """Every buyer takes longer to start than the run may last: the verdict is the machine's, not a failure."""
    with pytest.raises(MachineTooBusy) as raised:
        _ticket_sale(start_method, startup_delay=30.0, timeout=2.0)
    assert raised.value.starting  # buyers still starting (under load, some may not even be spawned yet)
    assert not isinstance(raised.value, CheckFailed)
    assert "too busy to judge this run; run it again" in MachineTooBusy.for_student


def test_startup_watch_knows_who_has_not_reached_student_code() -> None:
    """The main program and spawned children start until the probe marks them; a fork child runs at once."""
    main = ["python", "-s", "driver.py", "plan.json"]
    cmdlines = {10: main, 11: ["python", "-c", "from multiprocessing.spawn import spawn_main", SPAWNED_CHILD_MARK],
                12: main, 13: ["python", "-c", "from multiprocessing.resource_tracker import main"], 14: main}
    watch = startup.StartupWatch(main, cmdlines.get, lambda pid: pid - 9)  # probe pids 1..5 (a pid namespace)
    assert watch.starting([10, 11, 13]) == [1, 2]  # the main program and a spawned child; never the tracker
    watch.see({"ev": "proc_start", "pid": 1, "target": "__main__"})
    watch.see({"ev": "proc_start", "pid": 3, "target": "os.fork"})  # a fork child: runs at once...
    watch.see({"ev": "proc_start", "pid": 5, "target": "os.fork"})
    assert watch.starting([10, 11, 12, 13, 14]) == [2]
    watch.see({"ev": "proc_start", "pid": 3, "target": "buyer"})  # ...unless it is a multiprocessing child
    watch.see({"ev": "proc_start", "pid": 2, "target": "buyer"})  # bootstrapped, not yet through the gate
    assert watch.starting([10, 11, 12, 13, 14]) == [2, 3]
    watch.see({"ev": "proc_run", "pid": 2})
    watch.see({"ev": "proc_run", "pid": 3})
    assert watch.starting([10, 11, 12, 13, 14]) == []


def test_batch_grades_no_more_students_at_once_than_the_cores_hold() -> None:
    from grader.gradebook import workers

    # a grading keeps about two CPUs busy (the grader and the student's tree): never more of them than fit
    assert 1 <= workers.default_workers() and workers.default_workers() * 2 <= max(2, workers.cpu_count())


def test_a_helper_seen_before_its_exec_is_not_starting_for_ever() -> None:
    """The forkserver and the resource tracker show the main program's command line until they exec."""
    main = ["python", "-s", "driver.py", "plan.json"]
    cmdlines = {20: main}
    watch = startup.StartupWatch(main, cmdlines.get, lambda pid: pid)
    assert watch.starting([20]) == [20]  # between fork and exec: it may be a spawned child
    cmdlines[20] = ["python", "-c", "from multiprocessing.forkserver import main; main(3, 4, [])"]
    assert watch.starting([20]) == []


def test_a_process_asleep_before_student_code_is_stuck_not_starting() -> None:
    """A slow start is runnable or reading from disk; one asleep with its CPU time still is stuck in the
    student's program (a Manager shut down under a child unpickling its proxy) and is judged as blocked."""
    main = ["python", "-s", "driver.py", "plan.json"]
    spawned = ["python", "-c", "from multiprocessing.spawn import spawn_main", SPAWNED_CHILD_MARK]
    stats = {30: ("S", 0.10), 31: ("R", 0.10)}
    now = [100.0]
    watch = startup.StartupWatch(main, {30: spawned, 31: spawned}.get, lambda pid: pid, stats.get,
                                 clock=lambda: now[0])
    assert watch.starting([30, 31]) == [30, 31]
    now[0] += startup.STALLED_AFTER / 2
    stats[30] = ("S", 0.12)  # asleep between two reads of its imports: it used CPU, it is starting
    assert watch.starting([30, 31]) == [30, 31]
    now[0] += startup.STALLED_AFTER + 0.1
    assert watch.starting([30, 31]) == [31]  # 30 slept without CPU: stuck; 31 waits for a CPU: starting
    stats[30] = ("R", 0.12)
    assert watch.starting([30, 31]) == [30, 31]  # it moves again
