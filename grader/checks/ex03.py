"""Checks of exercise 3, the daemon heartbeat worker. Two supervised runs, each judged by several checks:

- "work raises": main() called by the driver with do_work replaced by the grader's stand-in, which waits (in
  real time) until the heartbeat wrote a few lines, then raises. It shows that the heartbeat wrote while the
  work ran, which processes main() started and whether they were daemons at start(), and whether the program
  still ends when do_work raises (after the step the driver exits, so Python joins non-daemonic children
  exactly as at the end of a whole program).
- "program": ``python ex03_daemon_worker.py`` itself, do_work included, with time.sleep scaled: the normal
  path of the whole program must end, and nothing it started may go on writing after it ended.

Verdicts come from the run's status (a program Python keeps alive at exit is stopped after the runner's
exit grace), the probe's process events (daemon flag as it was at start()) and line counts of the log."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from grader.checks.common import waited_at_exit, whole_program_ends
from grader.running import runner
from grader.judging.evidence import Proc, Run, Step, explain_hang
from grader.judging.harness import CLEAN, ENDS, CheckFailed, Student, check, crashed_children, scheduled
from grader.probe import grader_events

EXERCISE = 3
CONTRACT: dict[str, list[str] | None] = {
    "heartbeat": ["path", "interval"], "do_work": ["seconds"], "main": ["path", "seconds"],
}
WORK_LOG = "heartbeat-work.log"  # the log of the run in which do_work raises
PROGRAM_LOG = "heartbeat.log"  # main()'s default path, the log of the whole program
LINES = 3  # lines the stand-in for do_work waits for: proof that the heartbeat writes while the work runs
WAIT = 5.0  # seconds (real time) the stand-in waits for them at most
EXIT_GRACE = 3.0  # the runner's default: how long Python may wait at exit before the run counts as kept alive
# How long Python may wait at exit for a non-daemonic child before the run counts as kept alive: such a child
# is already the bug here, and the heartbeat never ends by itself. A correct program (nothing to wait for)
# keeps the whole EXIT_GRACE for its shutdown, so this shortens only the wait for a wrong one.
WAITING_GRACE = 1.0
PROGRAM_SLEEP_SCALE = 0.1  # the whole program: do_work's 0.5 s become 50 ms, the heartbeat's 0.05 s 5 ms
ALREADY_STARTED = "process has already started"
DAEMON_ADVICE = ("Make the worker a daemon from its start: a process is daemonic only if it is marked so before "
                 "start(), through the `daemon` parameter of Process or its `daemon` attribute; afterwards it is "
                 "too late.")


@dataclass
class Runs:
    """The two supervised runs every check judges."""

    raising: Run
    program: Run


@pytest.fixture(scope="module")
def runs(student: Student) -> Runs:
    """Run main() with a do_work that raises, then the whole program, once for every check."""
    replace = {"do_work": {"path": WORK_LOG, "lines": LINES, "max_seconds": WAIT, "raise": True}}
    step = {"call": "main", "args": [WORK_LOG, 0.5], "label": "do_work raises"}
    raising = student.run_steps("work raises", [step], contract=CONTRACT, replace=replace,
                                watch_files=[WORK_LOG], exit_grace=EXIT_GRACE, waiting_grace=WAITING_GRACE,
                                timeout=WAIT + 10, **scheduled())
    program = student.run_program("program", watch_files=[PROGRAM_LOG], sleep_scale=PROGRAM_SLEEP_SCALE,
                                  exit_grace=EXIT_GRACE, waiting_grace=WAITING_GRACE, timeout=10, **scheduled())
    return Runs(raising, program)


# ---- readings -----------------------------------------------------------------------------------
def _step(run: Run) -> Step | None:
    """The one call of main() of a run_steps run."""
    return run.steps[0] if run.steps else None


def _workers(run: Run) -> list[Proc]:
    """Processes the main process started with multiprocessing (not bare os.fork() children), in start order."""
    main_pid = run.main.pid if run.main else None
    procs = [p for p in run.processes.values()
             if not p.is_main and p.target != "os.fork" and (p.parent == main_pid or p.spawn_where)]
    return sorted(procs, key=lambda p: p.started or 0)


def _runs_what(proc: Proc) -> str:
    """What a worker runs, as the student wrote it: 'heartbeat()' or 'Heartbeat.run()'."""
    return f"{proc.target}()" if proc.target and proc.target != "Process.run" else "its target"


def _started_at(run: Run, proc: Proc) -> str:
    """', started at line 37 (main),' or nothing when the probe did not see where."""
    return f", started at {run.describe_where(proc.spawn_where)}," if proc.spawn_where else ""


def _error_line(step: Step | None) -> dict[str, Any] | None:
    """The student's innermost line of the exception main() raised, if it raised."""
    if step is None or step.error is None:
        return None
    frames = step.error.get("frames") or []
    return frames[-1] if frames else None


def _grader_raised(step: Step | None) -> bool:
    """Whether main() ended with the grader's own exception from the stand-in for do_work."""
    return bool(step and step.error and step.error.get("error") == "RuntimeError"
                and "on purpose" in str(step.error.get("message", "")))


def _daemon_after_start(step: Step | None) -> bool:
    """Whether main() raised multiprocessing's complaint about setting daemon on a started process."""
    return bool(step and step.error and step.error.get("error") == "AssertionError"
                and ALREADY_STARTED in str(step.error.get("message", "")))


# ---- explanations -------------------------------------------------------------------------------
def _kept_alive(run: Run, when: str) -> CheckFailed:
    """The program did not end: name the non-daemonic children Python waited for at exit, and their start()."""
    waiting_procs = waited_at_exit(run)
    if run.outcome.status != runner.KEPT_ALIVE or not waiting_procs:
        return _stuck(run, when)
    proc = waiting_procs[0]
    others = f" (and {len(waiting_procs) - 1} more like it)" if len(waiting_procs) > 1 else ""
    return CheckFailed(
        f"{when}, the main process's code was done, but the program did not end: Python waits at exit for every "
        f"non-daemonic child, and {proc.label}{others}{_started_at(run, proc)} runs {_runs_what(proc)} forever. "
        f"The grader stopped it after waiting {WAITING_GRACE:g} s. {DAEMON_ADVICE} When the main process's code ends, "
        "normally or with an exception, its daemonic children are terminated.",
        expected="the program ends when main() ends", actual=f"kept alive by non-daemon {proc.label}",
        locations=run.location(proc.spawn_where, "started as a non-daemon process"), run=run)


def _stuck(run: Run, when: str) -> CheckFailed:
    """The program never got to its end: say where the main process was (joining a heartbeat, typically)."""
    sentences, locations = explain_hang(run)
    main = [s for s in sentences if s.startswith("the main process")]  # explain_hang's sentence for main
    text = " ".join(main or sentences)
    if main and " join() " in main[0]:
        text += (" join() waits until the worker ends, and a heartbeat never ends by itself: do not join it; "
                 "a daemon is terminated when the main process's code ends.")
    return CheckFailed(f"{when}, the program did not end: {text}", locations=locations[:1] if main else locations,
                       run=run, prerequisite=ENDS)


def _thread_instead(run: Run) -> dict[str, Any] | None:
    """A thread the student started to run the heartbeat (instead of a worker process), if any."""
    return next((e for e in run.events(grader_events.THREAD_SPAWN) if e.get("target") == "heartbeat"), None)


# ---- checks -------------------------------------------------------------------------------------
@check(judges=ENDS)
def check_program_ends_after_work(student: Student, runs: Runs) -> None:
    """The whole program, run as the course runs it, must end by itself once main() returns."""
    whole_program_ends(student, runs.program, _kept_alive, "do its work")


@check()
def check_heartbeat_writes_during_work(student: Student, runs: Runs) -> None:
    """The grader's do_work waits for heartbeat lines: they prove the worker runs alongside the work."""
    run = runs.raising
    step = _step(run)
    started, ended = run.first(grader_events.WORK_START), run.first(grader_events.WORK_END)
    if started is None:
        if step is not None and step.error is not None:
            where = _error_line(step)
            raise CheckFailed(
                f"main() raised {step.error['error']} ({step.error['message']})"
                + (f" at {run.describe_where(where)}" if where else "")
                + " before it called do_work(): the heartbeat never had work to accompany.",
                locations=run.location(where, step.error["error"]), run=run)
        raise CheckFailed("main() never called do_work(seconds): the program's main job must run while the "
                          "heartbeat writes.", run=run)
    if ended is None:
        raise _kept_alive(run, "While do_work() ran")
    seen = int(ended.get("lines_seen", 0))
    if seen >= LINES:
        student.show(run)
        return
    crashed = crashed_children(run, _workers(run))
    if crashed:
        proc, last_line = crashed[0]
        raise CheckFailed(f"{proc.label} crashed while do_work() ran: {last_line}. Its traceback is in the report.",
                          locations=run.location(proc.spawn_where, "started here"), run=run)
    running = [p for p in _workers(run) if p.started is not None and p.started <= ended["t"]]
    why = ("no line of heartbeat reached the file" if running
           else "no worker process had been started while do_work() ran: start the heartbeat before the work")
    raise CheckFailed(
        f"The grader's do_work() waited {WAIT:g} s for the heartbeat to append {LINES} lines to {WORK_LOG}, the "
        f"path main() was given, and saw {seen}: {why}. The heartbeat must append one line every `interval` "
        "seconds to the path it is given while do_work() runs.",
        expected=f"at least {LINES} lines during the work", actual=f"{seen} line(s)",
        locations=run.location(_error_line(step), "do_work() is called here"), run=run)


@check()
def check_worker_is_daemon_from_start(student: Student, runs: Runs) -> None:
    """The daemon flag counts when start() runs: every worker must carry it from then on."""
    run = runs.raising
    step = _step(run)
    if _daemon_after_start(step):
        where = _error_line(step)
        raise CheckFailed(
            "Your code sets daemon on a process that has already started"
            + (f", at {run.describe_where(where)}" if where else "")
            + f": multiprocessing refuses with AssertionError ('{ALREADY_STARTED}'), so main() stops there and "
            "the worker goes on as a non-daemon process, which keeps the program alive. The daemon flag is "
            f"read at start(). {DAEMON_ADVICE}",
            expected="daemon set before start()", actual="daemon set after start()",
            locations=run.location(where, "daemon set after start()"), run=run)
    if not _workers(run) and not _workers(runs.program):
        raise _no_worker(run)
    for judged in (run, runs.program):
        _require_daemon_workers(judged)
    student.show(run)


def _no_worker(run: Run) -> CheckFailed:
    """main() started no worker process in either run: a heartbeat thread gets its own explanation."""
    thread = _thread_instead(run)
    if thread is not None:
        return CheckFailed(
            f"The heartbeat runs in a thread of the main process (started at "
            f"{run.describe_where(thread.get('where'))}), not in a worker process: the exercise asks for a daemon "
            "*process*, a separate program with its own memory that the main process starts with "
            "multiprocessing.Process.",
            expected="a daemon worker process", actual="a thread",
            locations=run.location(thread.get("where"), "thread started here"), run=run)
    return CheckFailed("main() started no worker process: run heartbeat in a worker process "
                       "(multiprocessing.Process) while do_work() runs.", run=run)


def _require_daemon_workers(run: Run) -> None:
    """Every process main() started must have been a daemon from its start()."""
    for proc in _workers(run):
        if proc.daemon is not True:
            raise CheckFailed(
                f"{proc.label}{_started_at(run, proc)} was not a daemon when it started: it runs "
                f"{_runs_what(proc)} forever, and Python waits at exit for every non-daemonic child. "
                f"{DAEMON_ADVICE}",
                expected="daemon=True at start()", actual="daemon=False at start()",
                locations=run.location(proc.spawn_where, "started as a non-daemon process"), run=run)


@check()
def check_program_ends_when_work_raises(student: Student, runs: Runs) -> None:
    """An exception in do_work must not leave a worker behind that keeps the program alive."""
    run = runs.raising
    step = _step(run)
    if run.hung:
        when = "When do_work() raised"
        if _grader_raised(step):
            where = _error_line(step)
            when += f" (RuntimeError, at {run.describe_where(where)})" if where else ""
            when += " and main() ended with that exception"
        elif step is not None and step.error is not None:
            when = f"After main() raised {step.error['error']} ({step.error['message']})"
        raise _kept_alive(run, when)
    student.show(run)


@check(judges=CLEAN)
def check_nothing_outlives_program(student: Student, runs: Runs) -> None:
    """Once the program ended, no process of it may go on writing (a detached heartbeat does)."""
    for run, log in ((runs.program, PROGRAM_LOG), (runs.raising, WORK_LOG)):
        if run.hung:
            raise _kept_alive(run, "Run as a whole program" if run is runs.program else "When do_work() raised")
        at_exit = run.outcome.lines_at_exit.get(log, 0)
        after = run.outcome.files.get(log, "").count("\n")
        if after > at_exit:
            raise CheckFailed(
                f"{after - at_exit} line(s) were appended to {log} after your program had ended ({at_exit} when "
                f"it ended, {after} afterwards): something it started went on writing. Every process a program "
                "starts must end with it: a daemon does; a detached process (os.fork() + setsid()) does not.",
                expected=f"{at_exit} lines", actual=f"{after} lines", run=run)
    student.show(runs.program)
