"""Checks of exercise 7, threads: join the workers, not the heartbeat. Two supervised runs, each judged by
several checks:

- "jobs": main() called by the driver with several job lists (durations chosen so that a worker left
  unjoined is still running when main() returns), worker() and heartbeat() spied. It shows what main()
  returned, which worker threads were still running when it returned, whether the workers overlapped, and
  whether the program ends once main() is done (after the steps the driver exits, so Python waits for
  non-daemon threads exactly as at the end of a whole program).
- "program": ``python ex07_threads_join.py`` itself, time.sleep scaled: the whole program must end.

Verdicts come from the run's status, the step values, the probe's thread events (daemon flag at start(),
the student's line of start(), thread start and exit) and the spied calls and returns (each with its thread).
"""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from typing import Any

import pytest

from grader.checks.common import any_overlap, too_few_ran, whole_program_ends
from grader.judging.evidence import Run, Step, explain_hang
from grader.judging.harness import ENDS, CheckFailed, Student, check, scheduled
from grader.results import Location
from grader.probe import grader_events

EXERCISE = 7
CONTRACT: dict[str, list[str] | None] = {
    "heartbeat": ["path", "interval"], "worker": ["n", "seconds", "results"], "main": ["path", "durations"],
}
# Job lists (seconds per job, scaled by SLEEP_SCALE): a long job next to short ones, so that a worker that is
# not joined (or joined too early) is still running when main() returns, whichever single worker is joined.
JOBS: tuple[tuple[float, ...], ...] = ((3.0, 0.1, 1.0, 0.2), (0.5, 0.5, 0.5, 0.5, 0.5, 0.5), (0.2, 3.0))
SLEEP_SCALE = 0.02  # 3 s of course time become 60 ms: long next to the main thread's few microseconds
TIMEOUT = 5.0  # a correct run takes a fraction of a second; a program kept alive is stopped after this
PROGRAM_LOG = "heartbeat.log"  # main()'s default path
JOIN_ADVICE = "Start every worker, then join() each of them, and only then return the results."
DAEMON_ADVICE = ("Make the heartbeat a daemon thread from its start: a thread is daemonic only if it is marked "
                 "so before start(), through the `daemon` parameter of Thread or its attribute. A daemon thread is "
                 "stopped when every non-daemon thread has ended; never join it, it never ends.")
_THREAD_HEADER = re.compile(r"^(Current thread|Thread) 0x[0-9a-f]+", re.IGNORECASE)
_FRAME = re.compile(r'^\s*File "(?P<file>[^"]+)", line (?P<line>\d+) in (?P<func>.+)$')


@dataclass
class Runs:
    """The two supervised runs every check judges."""

    jobs: Run
    program: Run


@dataclass
class Thread:
    """A thread the student's code started, as the probe saw it."""

    name: str
    tid: int
    target: str
    daemon: bool | None
    where: dict[str, Any] | None
    started: float
    exited: float | None


@dataclass
class Job:
    """One spied call of worker(): its job number, its thread, when it was called and when it returned."""

    n: Any
    pid: int
    tid: int
    called: float
    returned: float | None
    raised: str | None


def _log(index: int) -> str:
    """The heartbeat log of step `index` of the jobs run."""
    return f"beat-{index}.log"


def _call_text(index: int) -> str:
    """main(...) of step `index` as the student would write it."""
    return f"main({_log(index)!r}, {list(JOBS[index])})"


@pytest.fixture(scope="module")
def runs(student: Student) -> Runs:
    """Run main() with every job list, then the whole program, once for every check."""
    steps = [{"call": "main", "args": [_log(i), list(jobs)], "label": f"{len(jobs)} jobs"} for i, jobs in enumerate(JOBS)]
    jobs = student.run_steps("jobs", steps, contract=CONTRACT, spy=["worker", "heartbeat"],
                             sleep_scale=SLEEP_SCALE, timeout=TIMEOUT, **scheduled())
    program = student.run_program("program", sleep_scale=SLEEP_SCALE, timeout=TIMEOUT, watch_files=[PROGRAM_LOG],
                                  **scheduled())
    return Runs(jobs, program)


# ---- readings -----------------------------------------------------------------------------------
def _threads(run: Run) -> list[Thread]:
    """Every thread the student's code started, with its start and exit (thread idents are reused: a
    thread's start event is the last one of its ident before start() returned)."""
    main = run.main.pid if run.main else None
    starts = run.events(grader_events.THREAD_START, pid=main)
    exits = run.events(grader_events.THREAD_EXIT, pid=main)
    threads = []
    for spawn in run.events(grader_events.THREAD_SPAWN, pid=main):
        start = next((s for s in reversed(starts) if s["tid"] == spawn.get("thread") and s["t"] <= spawn["t"]), None)
        began = start["t"] if start else spawn["t"]
        end = next((e for e in exits if e["tid"] == spawn.get("thread") and e["t"] >= began), None)
        threads.append(Thread(spawn.get("name", ""), spawn.get("thread", 0), spawn.get("target", ""),
                              spawn.get("daemon"), spawn.get("where"), began, end["t"] if end else None))
    return threads


def _jobs(run: Run, step: Step) -> list[Job]:
    """The worker() calls of a step, each paired with its own return (or exception): those made in a thread
    the step's main() started, whenever they ran (a worker thread left running may call worker() only after
    main() has returned, even after the next step began), and those made outside any such thread from the
    step's start to the next step's."""
    def window(t: float) -> int | None:
        """The step running at `t`."""
        return next((s.index for s in reversed(run.steps) if s.start <= t), None)

    threads = _threads(run)
    main = run.main.pid if run.main else None

    def owner(event: dict[str, Any]) -> int | None:
        """The step whose main() started the thread that made `event` (the latest start of its ident
        before it, still running), else the step running when it was made."""
        if event["pid"] == main:
            mine = [t for t in threads if t.tid == event.get("tid") and t.started <= event["t"]
                    and (t.exited is None or event["t"] <= t.exited)]
            if mine:
                return window(max(mine, key=lambda t: t.started).started)
        return window(event["t"])

    jobs: list[Job] = []
    open_: dict[tuple[int, int], list[Job]] = {}
    for event in run.events(grader_events.CALL, grader_events.RETURN, grader_events.RAISE):
        if event.get("func") != "worker":
            continue
        tid = (event["pid"], event.get("tid", 0))
        if event["ev"] == grader_events.CALL:
            if owner(event) != step.index:
                continue
            args = event.get("args") or []
            first = args[0] if args else (event.get("kwargs") or {}).get("n", {})
            n = first.get("value", first.get("repr"))
            job = Job(n, event["pid"], tid[1], event["t"], None, None)
            jobs.append(job)
            open_.setdefault(tid, []).append(job)
        elif open_.get(tid):
            job = open_[tid].pop()
            job.returned = event["t"]
            job.raised = event.get("error") if event["ev"] == grader_events.RAISE else None
    return jobs


def _returned(step: Step) -> tuple[dict[Any, Any] | None, str]:
    """What main() returned, as a dict {job: result} when it can be read back, and its repr."""
    value = step.value or {}
    text = str(value.get("repr", ""))
    braces = text[text.find("{"):text.rfind("}") + 1] if "{" in text else text
    try:
        parsed = ast.literal_eval(braces)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None, text
    if isinstance(parsed, dict):
        return parsed, text
    if isinstance(parsed, (list, tuple)):
        return dict(enumerate(parsed)), text
    return None, text


def _sections(text: str) -> list[list[tuple[str, int, str]]]:
    """A faulthandler dump split into threads, each a list of (file, line, func), innermost first."""
    sections: list[list[tuple[str, int, str]]] = []
    for line in text.splitlines():
        if _THREAD_HEADER.match(line):
            sections.append([])
            continue
        match = _FRAME.match(line)
        if match and sections:
            sections[-1].append((match["file"], int(match["line"]), match["func"].strip()))
    return sections


def _main_thread(run: Run) -> list[tuple[str, int, str]]:
    """The main thread's frames in the main process's last stack dump (its outermost frame is the program's
    module, or Python's threading._shutdown once the program's code is done)."""
    if run.main is None:
        return []
    for frames in reversed(_sections(run.outcome.stacks.get(run.main.pid, ""))):  # the last dump first
        if frames and (frames[-1][2] in ("<module>", "_shutdown") or frames[-1][0].endswith(run.student_file)):
            return frames
    return []


def _waits_at_exit(run: Run) -> bool:
    """Whether the main thread's code was done and Python was waiting for non-daemon threads at exit."""
    frames = _main_thread(run)
    return any(func == "_shutdown" and file.endswith("threading.py") for file, _, func in frames)


def _student_frame(run: Run, frames: list[tuple[str, int, str]]) -> tuple[dict[str, Any] | None, str]:
    """The innermost frame of the student's file in a thread's frames, and the function it was calling."""
    for index, (file, line, func) in enumerate(frames):
        if file.rsplit("/", 1)[-1] == run.student_file:
            called = frames[index - 1][2] if index > 0 else ""
            return {"file": run.student_file, "line": line, "func": func}, called
    return None, ""


def _thread_text(run: Run, thread: Thread) -> str:
    """'the heartbeat thread (Thread-1 (heartbeat), started at line 46 (main))'."""
    role = "heartbeat thread" if thread.target == "heartbeat" else f"thread running {thread.target}()"
    where = f", started at {run.describe_where(thread.where)}" if thread.where else ""
    return f"the {role} ({thread.name}{where})"


def _daemon_error(run: Run) -> tuple[str, dict[str, Any] | None] | None:
    """Python's refusal to set daemon on a thread that had already started, raised in main() (a step's
    exception, or the whole program's traceback): the error as 'RuntimeError (...)', and the student's line."""
    for step in run.steps:
        if step.error and "daemon status" in str(step.error.get("message", "")):
            frames = step.error.get("frames") or []
            return f"{step.error['error']} ({step.error['message']})", frames[-1] if frames else None
    err = run.outcome.output.get("main", {}).get("err", "")
    lines = [line for line in err.splitlines() if "daemon status" in line]
    if not lines:
        return None
    frames = re.findall(r'File "[^"]*?([^"/]+)", line (\d+), in (\S+)', err[:err.find(lines[-1])])
    own = [f for f in frames if f[0] == run.student_file]
    where = {"file": own[-1][0], "line": int(own[-1][1]), "func": own[-1][2]} if own else None
    error, _, message = lines[-1].partition(": ")
    return f"{error.strip()} ('{message.strip()}')", where


# ---- explanations -------------------------------------------------------------------------------
def _still_running(run: Run) -> list[Thread]:
    """Threads the student started that never ended, non-daemon ones first."""
    alive = [t for t in _threads(run) if t.exited is None]
    return sorted(alive, key=lambda t: (t.daemon is not False, t.started))


def _hang(run: Run, when: str) -> CheckFailed:
    """Why the run never ended: daemon set too late, Python waiting at exit for a non-daemon thread, main()
    joining a thread that never ends, or else explain_hang's reading of the stacks."""
    for explain in (_daemon_too_late, _kept_alive, _joins_forever):
        failure = explain(run, when)
        if failure is not None:
            return failure
    sentences, locations = explain_hang(run)
    return CheckFailed(f"{when}, the program did not end: " + " ".join(sentences), locations=locations, run=run,
                       prerequisite=ENDS)


def _daemon_too_late(run: Run, when: str) -> CheckFailed | None:
    """main() set daemon on the heartbeat after start(): Python refused, and the heartbeat stayed non-daemon."""
    daemon_error = _daemon_error(run)
    if daemon_error is None:
        return None
    error, where = daemon_error
    return CheckFailed(
        f"{when}, main() raised {error}" + (f" at {run.describe_where(where)}" if where else "")
        + ": Python refuses to make a thread a daemon once it has started, so the heartbeat went on as a "
        "non-daemon thread, and the program never ended. " + DAEMON_ADVICE,
        expected="daemon set before start()", actual="daemon set after start()",
        locations=run.location(where, "daemon set after start()"), run=run)


def _kept_alive(run: Run, when: str) -> CheckFailed | None:
    """The main thread's code was done and Python waited at exit for a non-daemon thread that never ends."""
    non_daemon = [t for t in _still_running(run) if t.daemon is False]
    if not non_daemon or not _waits_at_exit(run):
        return None
    thread = non_daemon[0]
    alike = len([t for t in non_daemon if t.target == thread.target]) - 1
    others = f" (and {alike} more like it, one per call of main())" if alike else ""
    return CheckFailed(
        f"{when}, the main thread's code was done, but the program did not end: Python waits for every "
        f"non-daemon thread before the program ends, and {_thread_text(run, thread)}{others} runs "
        f"{thread.target}() forever. The grader stopped it after {run.outcome.duration:.0f} s. {DAEMON_ADVICE}",
        expected="the program ends when main() is done", actual=f"kept alive by non-daemon {thread.name}",
        locations=run.location(thread.where, "started as a non-daemon thread"), run=run)


def _joins_forever(run: Run, when: str) -> CheckFailed | None:
    """The main thread waits in join() at the student's line while only never-ending threads are left."""
    alive = _still_running(run)
    where, called = _student_frame(run, _main_thread(run))
    if where is None or called != "join" or not alive:
        return None
    thread = alive[0]
    running = (f"the only thread still running is {_thread_text(run, thread)}" if len(alive) == 1 else
               f"the threads still running are {_thread_text(run, thread)} and {len(alive) - 1} more")
    advice = (" Join only the worker threads: the heartbeat, a daemon thread, is stopped when every non-daemon "
              "thread has ended." if thread.target == "heartbeat" else "")
    return CheckFailed(
        f"{when}, the main thread waits in join() at {run.describe_where(where)}, and {running}, which runs "
        f"{thread.target}() forever: join() waits until a thread ends, so it waits forever.{advice}",
        expected="join() on the workers only", actual=f"join() on {thread.name}",
        locations=run.location(where, "waits here") + run.location(thread.where, "started here"), run=run)


def _step_failure(run: Run, step: Step) -> CheckFailed:
    """main() raised: say what, where."""
    error = step.error or {}
    frames = error.get("frames") or []
    where = frames[-1] if frames else None
    return CheckFailed(
        f"{_call_text(step.index)} raised {error.get('error')} ({error.get('message')})"
        + (f" at {run.describe_where(where)}" if where else "") + ".",
        locations=run.location(where, str(error.get("error", ""))), run=run)


def _require_returned(run: Run) -> list[Step]:
    """Every call of main() must have returned normally; returns the steps."""
    for step in run.steps:
        if not step.finished:
            raise _hang(run, f"{_call_text(step.index)} never returned")
        if step.error is not None:
            daemon_error = _daemon_error(run)
            if daemon_error is not None and run.hung:
                raise _hang(run, "In the jobs run")
            raise _step_failure(run, step)
    if len(run.steps) < len(JOBS):
        if run.hung:
            raise _hang(run, f"{_call_text(len(run.steps))} never returned")
        raise too_few_ran(run, len(run.steps), len(JOBS), "calls of main() ran")
    return run.steps


def _worker_starts(run: Run) -> list[Location]:
    """The student's line(s) that start worker threads."""
    wheres = {(t.where or {}).get("line"): t.where for t in _threads(run) if t.target == "worker" and t.where}
    return [loc for where in wheres.values() for loc in run.location(where, "worker thread started here")][:2]


# ---- checks -------------------------------------------------------------------------------------
@check(judges=ENDS)
def check_program_ends(student: Student, runs: Runs) -> None:
    """The whole program, run as the course runs it, must do its jobs and end by itself."""
    whole_program_ends(student, runs.program, _hang, "do its jobs")


@check()
def check_every_result(student: Student, runs: Runs) -> None:
    """For every job list, main() returns {n: n * n} for every job, computed by the worker threads."""
    run = runs.jobs
    for step in _require_returned(run):
        _judge_results(run, step)
    student.show(run)


def _judge_results(run: Run, step: Step) -> None:
    """One call of main(): its value must hold every job's result, and only once every worker had ended."""
    expected = {n: n * n for n in range(len(JOBS[step.index]))}
    returned, text = _returned(step)
    call = _call_text(step.index)
    if returned is None:
        raise CheckFailed(
            f"{call} returned {text or 'nothing'}: it must return the results, a dict {{n: n * n}} with one entry "
            "per job.", expected=repr(expected), actual=text, run=run)
    missing = [n for n in expected if n not in returned]
    wrong = [n for n in expected if n in returned and returned[n] != expected[n]]
    if not missing and not wrong:
        return
    jobs = _jobs(run, step)
    late = sorted({j.n for j in jobs if j.returned is None or j.returned > step.end}, key=str)  # type: ignore[operator]
    if missing:
        what = f"the result(s) of job(s) {_names(missing)} are missing"
        if late:
            why = (f"The worker thread(s) of job(s) {_names(late)} were still running when main() returned: main() "
                   f"read the results before it had waited for them. {JOIN_ADVICE}")
            locations = _worker_starts(run)
        elif not jobs:
            why = "worker() was never called: run each job in a worker thread, worker(n, seconds, results)."
            locations = []
        else:
            raised = [j for j in jobs if j.raised]
            locations = []
            elsewhere = [j for j in jobs if run.main is not None and j.pid != run.main.pid]
            if raised:
                why = f"worker() raised {raised[0].raised} in job {raised[0].n}."
            elif elsewhere:
                why = ("worker() ran in other processes, which have their own memory: each stored its result in its "
                       "own copy of the dict, and main() never saw it. Threads share their process's memory: run "
                       "each job in a threading.Thread.")
                proc = run.processes.get(elsewhere[0].pid)
                locations = run.location(proc.spawn_where if proc else None, "worker process started here")
            else:
                why = ("Every worker() call had returned, so the results did not reach the dict main() returns: pass "
                       "the same dict to every worker thread (threads share their process's memory) and return it.")
        raise CheckFailed(f"{call} returned {text}: {what}. {why}", expected=repr(expected), actual=text,
                          locations=locations, run=run)
    raise CheckFailed(
        f"{call} returned {text}: the result of job {wrong[0]} is {returned[wrong[0]]!r}, not {expected[wrong[0]]!r}. "
        "Each job's result is n * n, stored by its worker as results[n].", expected=repr(expected), actual=text,
        run=run)


def _beat_starts(run: Run) -> list[float]:
    """When each heartbeat() began: the start of the thread it runs in (recorded before start() returns, so
    never after main() went on), or the call itself in a thread the probe did not see started."""
    threads = _threads(run)
    starts = []
    for call in run.events(grader_events.CALL):
        if call.get("func") != "heartbeat":
            continue
        mine = [t for t in threads if t.tid == call.get("tid") and t.started <= call["t"]
                and (run.main is None or call["pid"] == run.main.pid)]
        starts.append(mine[-1].started if mine else call["t"])
    return starts


def _names(values: list[Any]) -> str:
    """'0', '0 and 2', '0, 2 and 3'."""
    names = [str(v) for v in values]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


@check()
def check_heartbeat_is_daemon(student: Student, runs: Runs) -> None:
    """Each call of main() starts heartbeat() before its jobs are done, and the program ends once main() is."""
    run = runs.jobs
    steps = _require_returned(run)
    for step in steps:
        beats = [t for t in _beat_starts(run) if step.contains(t)]
        if not beats:
            raise CheckFailed(
                f"{_call_text(step.index)} never started heartbeat(): while the jobs run, a heartbeat thread must "
                "append a line to the log every `interval` seconds.", expected="heartbeat() running during the jobs",
                actual="no heartbeat", run=run)
        ends = [j.returned for j in _jobs(run, step) if j.returned is not None]
        if ends and min(beats) > max(ends):
            where = next((t.where for t in _threads(run) if t.target == "heartbeat" and step.contains(t.started)), None)
            raise CheckFailed(
                f"{_call_text(step.index)} started heartbeat() only after every job was done: the heartbeat must "
                "show that the program is alive while the jobs run. Start it before the workers.",
                locations=run.location(where, "heartbeat started here"), run=run)
    if run.hung:
        raise _hang(run, f"After the last call of main() had returned ({_call_text(len(JOBS) - 1)})")
    if not any(run.outcome.files.get(_log(i), "") for i in range(len(JOBS))):
        raise CheckFailed("heartbeat() ran, but no line ever reached its log: it must append one line to the path "
                          "it is given every `interval` seconds.", run=run)
    student.show(run)


@check()
def check_workers_concurrent(student: Student, runs: Runs) -> None:
    """In some call of main(), two worker() calls were running at the same moment."""
    run = runs.jobs
    if any(any_overlap([(j.called, j.returned) for j in _jobs(run, step) if j.returned is not None])
           for step in run.steps):
        student.show(run)
        return
    if not any(_jobs(run, step) for step in run.steps):
        _require_returned(run)
        raise CheckFailed("main() never called worker(): run each job in a worker thread, "
                          "threading.Thread(target=worker, args=(n, seconds, results)).", run=run)
    raise CheckFailed(
        "The jobs never ran at the same time: each worker started only after the previous one had ended. Joining "
        "each thread right after starting it waits for that job before the next one starts, so the jobs run one "
        "after the other (for I/O-bound work, that is all the time threads can save). " + JOIN_ADVICE,
        expected="worker threads running concurrently", actual="one job at a time",
        locations=_worker_starts(run), run=run)
