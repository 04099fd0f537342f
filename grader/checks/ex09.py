"""Checks of exercise 9, a worker pool on a JoinableQueue: one supervised run calls main() with several shapes
(tasks x workers, some tasks failing, none, no task at all), and the checks judge it from the probe's events:
which worker took which task off the queue (q_get), what handle() did with it (the spy's call, return and
raise), when the worker marked it done (q_task_done), when main's q.join() returned (q_joined), how each
worker ended, and the dict main() returned.

The run is under the controlled scheduler (running/conductor.py): it decides, at every queue operation and
Manager write, which worker goes on, so a task marked done before its result is stored shows as a missing
result whenever main()'s q.join() is let return and copy the results before the write lands."""
from __future__ import annotations

import ast
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest

from grader.checks.common import TrialRuns, too_few_ran, waited_at_exit
from grader.judging.evidence import Proc, Run, Step, capital, explain_hang
from grader.judging.harness import ENDS, CheckFailed, Student, check, scheduled
from grader.results import Location
from grader.probe import grader_events

EXERCISE = 9
CONTRACT: dict[str, list[str] | None] = {
    "handle": ["task"], "worker": ["tasks", "results"], "main": ["tasks", "workers"],
}
# The run's limit. A Manager's server wakes up every second, so the runner never calls a hang with a live Manager
# a deadlock: a hung run lasts this long. The solution takes about 1 s under fork, 2-3 s under spawn.
TIMEOUT = 15.0
DONE_ADVICE = ("Mark every task done exactly once, after its work, whatever happens to it: call tasks.task_done() "
               "in a `finally:`, and catch the exception (report it) so that the worker goes on with the next task.")
DAEMON_ADVICE = ("The workers wait for tasks forever by design: make them daemons (Process(..., daemon=True)), so "
                 "that they are terminated when the main process's code ends; q.join() is what waits for the work.")


@dataclass(frozen=True)
class Shape:
    """One call of main(): its tasks (negative ones fail in handle()) and its number of workers."""

    label: str
    tasks: tuple[int, ...]
    workers: int

    def expected(self) -> dict[int, int]:
        """What main() must return: the result of every task that succeeds, and nothing for a failing one."""
        return {task: task * task for task in self.tasks if task >= 0}

    def call_text(self) -> str:
        """main(...) as the student would write it, for messages."""
        return f"main({list(self.tasks)!r}, workers={self.workers})"


# Failing tasks first, and more of them than workers: a worker that dies (or stops) with a failing task leaves
# tasks nobody takes, so the pool hangs for sure. Task values are unique within a shape.
SHAPES = (
    Shape("9 tasks, 3 of them failing, on 2 workers", (1, -2, 3, 4, -5, 6, 7, -8, 9), 2),
    Shape("4 tasks, 2 of them failing, on 1 worker", (-1, 2, -3, 4), 1),
    Shape("8 tasks, none failing, on 3 workers", (1, 2, 3, 4, 5, 6, 7, 8), 3),
    Shape("no task at all, 1 worker", (), 1),
)


@dataclass
class Take:
    """One task a worker took off the task queue, and what became of it."""

    got: dict[str, Any]
    calls: list[dict[str, Any]] = field(default_factory=list)  # handle() calls while it held this task
    end: dict[str, Any] | None = None  # handle()'s return or raise
    dones: list[dict[str, Any]] = field(default_factory=list)  # its task_done() calls
    early: dict[str, Any] | None = None  # a task_done() made before handle() had finished

    @property
    def value(self) -> Any:
        """The task, as it came off the queue."""
        return self.got["item"].get("value")

    @property
    def failed(self) -> bool:
        """Whether handle() raised for this task."""
        return bool(self.end and self.end["ev"] == grader_events.RAISE)


@dataclass
class Worker:
    """One worker process of a call of main() and what it did with the task queue."""

    proc: Proc
    takes: list[Take] = field(default_factory=list)
    error: dict[str, Any] | None = None  # worker() raised
    returned: bool = False

    @property
    def crashed(self) -> bool:
        """Whether the worker died with an exception (worker() raised, or a non-zero exit code)."""
        return self.error is not None or self.proc.code not in (0, None)

    @property
    def stopped(self) -> bool:
        """Whether the worker ended by itself, without an exception."""
        return not self.crashed and (self.returned or self.proc.code == 0)


@dataclass
class Trial:
    """One call of main(): the shape, the task queue, the workers it started and what main() did."""

    step: Step
    shape: Shape
    queue: str | None
    puts: list[dict[str, Any]]
    workers: list[Worker]
    join_wait: dict[str, Any] | None
    joined: dict[str, Any] | None
    handled: Counter[Any]

    def takes(self) -> list[tuple[Worker, Take]]:
        """Every task taken off the queue (sentinels and other non-tasks left out), with its worker."""
        return [(w, t) for w in self.workers for t in w.takes if t.value in self.shape.tasks]

    def untaken(self) -> list[Any]:
        """Tasks put on the queue that no worker ever took off it."""
        left = Counter(e["item"].get("value") for e in self.puts) - Counter(t.value for _, t in self.takes())
        return sorted(left.elements(), key=repr)


PoolRuns = TrialRuns[Trial]


# ---- reading the run ------------------------------------------------------------------------------------
def _worker(proc: Proc, events: list[dict[str, Any]], queue: str | None) -> Worker:
    """Read one worker process's events: the tasks it took, handle()'s outcome, its task_done() calls."""
    worker = Worker(proc)
    current: Take | None = None
    for event in events:
        kind = event["ev"]
        if kind == grader_events.Q_GET and event.get("queue") == queue:
            current = Take(event)
            worker.takes.append(current)
        elif kind == grader_events.Q_TASK_DONE and event.get("queue") == queue and current is not None:
            if current.end is None and current.early is None and not current.dones:
                current.early = event
            current.dones.append(event)
        elif kind == grader_events.CALL and event["func"] == "handle" and current is not None:
            current.calls.append(event)
        elif kind in (grader_events.RETURN, grader_events.RAISE) and event["func"] == "handle" and current is not None:
            current.end = event
        elif kind == grader_events.RAISE and event["func"] == "worker":
            worker.error = event
        elif kind == grader_events.RETURN and event["func"] == "worker":
            worker.returned = True
    if worker.error and worker.error.get("error") == "SystemExit" and proc.code == 0:
        worker.error, worker.returned = None, True  # sys.exit(0): an ordinary end
    return worker


def _trial(run: Run, step: Step, shape: Shape, by_pid: dict[int, list[dict[str, Any]]]) -> Trial:
    """Everything one call of main() did, from the events of the main process and the workers it started."""
    main_pid = run.main.pid if run.main else None
    mine = [e for e in by_pid.get(main_pid, []) if step.contains(e["t"])] if main_pid is not None else []
    puts = [e for e in mine if e["ev"] == grader_events.Q_PUT and e["item"].get("value") in shape.tasks
            and e["item"].get("type") == "int"]
    join_wait = next((e for e in mine if e["ev"] == grader_events.Q_JOIN_WAIT), None)
    queue = join_wait["queue"] if join_wait else (puts[0]["queue"] if puts else None)
    puts = [e for e in puts if e["queue"] == queue]
    joined = next((e for e in mine if e["ev"] == grader_events.Q_JOINED and e["queue"] == queue), None)
    children = run.spawned_in(step)
    calls_worker = {e["pid"] for p in children for e in by_pid.get(p.pid, [])
                    if e["ev"] == grader_events.CALL and e["func"] == "worker"}
    workers = [_worker(p, by_pid.get(p.pid, []), queue) for p in children
               if p.target == "worker" or p.pid in calls_worker]
    pids = {p.pid for p in children} | ({main_pid} if main_pid is not None else set())
    handled = Counter(_argument(e).get("value") for pid in pids for e in by_pid.get(pid, [])
                      if e["ev"] == grader_events.CALL and e["func"] == "handle" and (pid != main_pid or step.contains(e["t"])))
    return Trial(step, shape, queue, puts, workers, join_wait, joined, handled)


def _argument(call: dict[str, Any]) -> dict[str, Any]:
    """The task handle() was called with, positional or by keyword."""
    if call.get("args"):
        return call["args"][0]
    values = list((call.get("kwargs") or {}).values())
    return values[0] if values else {}


@pytest.fixture(scope="module")
def pool(student: Student) -> PoolRuns:
    """One supervised run that calls main() once per shape: every check judges the same calls."""
    steps = [{"call": "main", "args": [list(shape.tasks), shape.workers], "label": shape.label} for shape in SHAPES]
    run = student.run_steps("pool", steps, contract=CONTRACT, spy=["handle", "worker"],
                            timeout=TIMEOUT, **scheduled())
    by_pid: dict[int, list[dict[str, Any]]] = {}
    for event in run.outcome.events:
        by_pid.setdefault(event["pid"], []).append(event)
    return PoolRuns(run, [_trial(run, step, SHAPES[step.index], by_pid) for step in run.steps])


# ---- wording ----------------------------------------------------------------------------------------------
def _at(run: Run, where: dict[str, Any] | None) -> str:
    """' at line 14 (worker)', or nothing when the probe saw no line of the student's."""
    text = run.describe_where(where)
    return f" at {text}" if text else ""


def _tasks_text(values: list[Any], limit: int = 6) -> str:
    """Tasks as the student would write them, a few at most: 4, 6, ..."""
    return ", ".join(map(repr, values[:limit])) + (", ..." if len(values) > limit else "")


def _lead(trial: Trial) -> str:
    """'With 9 tasks ..., main([...], workers=2)' to open a message about one call."""
    return f"With {trial.shape.label}, {trial.shape.call_text()}"


def _raised_text(take: Take) -> str:
    """"handle(-2) raised ValueError ('invalid task -2')"."""
    end = take.end or {}
    error, message = str(end.get("error", "an exception")), str(end.get("message", ""))
    if message.startswith(error + "("):  # the spy's repr of the exception: ValueError('invalid task -2')
        return f"handle({take.value!r}) raised {message}"
    return f"handle({take.value!r}) raised {error}" + (f" ({message})" if message else "")


def _death_text(run: Run, worker: Worker) -> str:
    """How a worker ended: the exception it died with, from the spy or its error output."""
    last = run.last_error_line(str(worker.proc.pid))
    if last:
        return last
    if worker.error is not None:
        return f"{worker.error['error']}: {worker.error.get('message', '')}"
    return f"exit code {worker.proc.code}"


def _why_not_done(run: Run, worker: Worker, take: Take) -> tuple[str, list[Location]]:
    """Why one task a worker took was never marked done, pointing at the worker's lines."""
    label = worker.proc.label
    took = f"{label} took task {take.value!r}{_at(run, take.got.get('where'))}"
    where = take.calls[-1].get("where") if take.calls else take.got.get("where")
    if take.failed and worker.crashed and worker.takes and worker.takes[-1] is take:
        return (f"{took}; {_raised_text(take)}, and the worker died with that exception before it called "
                "task_done(), so the task is never marked done."), run.location(where, "raises: the worker dies here")
    if take.failed and worker.stopped and worker.takes and worker.takes[-1] is take:
        return (f"{took}; {_raised_text(take)}, and the worker returned from worker() without calling task_done() "
                "for it."), run.location(where, "a failed task is never marked done")
    if take.failed:
        return (f"{took}; {_raised_text(take)}, and the worker went on without calling task_done() for it."), \
            run.location(where, "a failed task is never marked done")
    if take.end is None:
        return f"{took} and was still handling it.", run.location(where, "still handling this task")
    return (f"{took}, handle() returned, and the worker never called task_done() for it."), \
        run.location(where, "never marked done")


def _untaken_text(trial: Trial, untaken: list[Any]) -> str:
    """Why tasks stayed on the queue: every worker had died or stopped."""
    text = f"{len(untaken)} task(s) were never taken off the queue ({_tasks_text(untaken)})"
    crashed = [w for w in trial.workers if w.crashed]
    stopped = [w for w in trial.workers if w.stopped]
    if trial.workers and len(crashed) + len(stopped) == len(trial.workers):
        if crashed and not stopped:
            return (text + ": every worker had died, each with the exception of a failing task, and nobody was "
                    "left to take them. A worker must survive a failing task.")
        return (text + ": every worker had ended (returned from worker()) after a failing task, and nobody was left "
                "to take them. A failing task must not stop its worker: report it and take the next task.")
    return text + "."


def _stuck_in_join(run: Run, trial: Trial) -> CheckFailed:
    """main() waits in q.join() forever: name the tasks never marked done, and why each was not."""
    sentences: list[str] = []
    locations: list[Location] = []
    not_done = [(w, t) for w, t in trial.takes() if not t.dones]
    for worker, take in not_done[:3]:
        sentence, where = _why_not_done(run, worker, take)
        sentences.append(capital(sentence))
        locations += where
    untaken = trial.untaken()
    if untaken:
        sentences.append(capital(_untaken_text(trial, untaken)))
    count = len(not_done) + len(untaken)
    if count == 0:  # every task the probe saw was done: join() waits on something else (another queue?)
        return _stuck_elsewhere(run, trial)
    join = trial.join_wait or {}
    text = (f"{_lead(trial)}: main() waits forever in q.join(){_at(run, join.get('where'))}. join() returns only once "
            f"every task put on the queue has been marked done with task_done(), and {count} of the "
            f"{len(trial.puts)} task(s) never were. " + " ".join(sentences) + " " + DONE_ADVICE)
    return CheckFailed(text, expected="q.join() returns once every task is done",
                       actual=f"{count} task(s) never marked done",
                       locations=locations + run.location(join.get("where"), "waits here forever"), run=run)


def _stuck_elsewhere(run: Run, trial: Trial) -> CheckFailed:
    """main() got past q.join() (or never reached it) and is blocked somewhere else: say where."""
    sentences, locations = explain_hang(run)
    main = [s for s in sentences if s.startswith("the main process")]
    text = capital(" ".join(main or sentences))
    if main and " join() " in main[0] and trial.joined is not None:
        text += (" q.join() had already returned: every task was done. The workers loop forever, so joining one "
                 "never returns: do not join them. " + DAEMON_ADVICE)
    return CheckFailed(f"{_lead(trial)}, main() never returned. {text}", locations=locations[:1] if main else locations,
                       run=run)


def _kept_alive(run: Run) -> CheckFailed:
    """Every call of main() returned, but the program did not end: non-daemonic workers keep it alive."""
    procs = waited_at_exit(run)
    if not procs:  # Python waited for no child at exit (kept alive or deadlocked there, it is the same story)
        sentences, locations = explain_hang(run)
        return CheckFailed("After the last call of main(), the program did not end: " + " ".join(sentences),
                           locations=locations, run=run)
    proc = procs[0]
    others = f" (and {len(procs) - 1} more like it)" if len(procs) > 1 else ""
    started = f", started at {run.describe_where(proc.spawn_where)}," if proc.spawn_where else ""
    return CheckFailed(
        f"Every call of main() returned, but then the program did not end: the main process's code was done, and "
        f"Python waits at exit for every non-daemonic child. {capital(proc.label)}{others}{started} is not a "
        f"daemon and waits for tasks forever. {DAEMON_ADVICE}",
        expected="the program ends after main() returns", actual=f"kept alive by non-daemon {proc.label}",
        locations=run.location(proc.spawn_where, "started as a non-daemon process"), run=run)


def _step_error(run: Run, trial: Trial) -> CheckFailed:
    """main() raised: its exception, pointing at the student's line."""
    error = trial.step.error or {}
    frames = error.get("frames") or []
    return CheckFailed(f"{_lead(trial)}: main() raised {error.get('error')} ({error.get('message', '')}).",
                       locations=run.location(frames[-1] if frames else None, str(error.get("error"))), run=run)


def _unfinished(pool: PoolRuns) -> Trial | None:
    """The call of main() that never returned, if any."""
    return next((t for t in pool.trials if not t.step.finished), None)


def _require_every_call_ran(pool: PoolRuns) -> None:
    """Fail on calls of main() that never started although nothing hung (the driver stopped)."""
    if len(pool.trials) < len(SHAPES) and _unfinished(pool) is None:
        raise too_few_ran(pool.run, len(pool.trials), len(SHAPES), "calls of main() ran")


# ---- checks -----------------------------------------------------------------------------------------------
@check(judges=ENDS)
def check_join_returns(student: Student, pool: PoolRuns) -> None:
    """Every call of main() returns after its q.join() returned, and the program then ends by itself."""
    run = pool.run
    student.show(run)
    for trial in pool.trials:
        if not trial.step.finished:
            if trial.join_wait is not None and trial.joined is None:
                raise _stuck_in_join(run, trial)
            raise _stuck_elsewhere(run, trial)
        if trial.step.error is not None:
            raise _step_error(run, trial)
        if trial.puts and trial.joined is None:
            raise CheckFailed(
                f"{_lead(trial)}: main() returned without waiting in q.join() for the tasks it put on the queue. "
                "join() is what waits until every task has been marked done.", run=run)
    _require_every_call_ran(pool)
    if run.hung:
        raise _kept_alive(run)


@check()
def check_task_done_once_per_task(student: Student, pool: PoolRuns) -> None:
    """Each task a worker took is marked done exactly once, after handle() finished with it."""
    run = pool.run
    student.show(run)
    for trial in pool.trials:
        for worker, take in trial.takes():
            label, task = worker.proc.label, take.value
            if take.early is not None:
                raise CheckFailed(
                    f"{_lead(trial)}: {label} called task_done(){_at(run, take.early.get('where'))} for task "
                    f"{task!r} before handle({task!r}) had finished. The task counts as done while it is still being "
                    "worked on, so q.join() can return, and main() copy the results, before its result is stored. "
                    "Call task_done() after the work.",
                    expected="task_done() after handle() and the result", actual="task_done() before the work",
                    locations=run.location(take.early.get("where"), "marks the task done too early"), run=run)
            if len(take.dones) > 1:
                lines = " and ".join(run.describe_where(d.get("where")) or "?" for d in take.dones[:2])
                raise CheckFailed(
                    f"{_lead(trial)}: {label} called task_done() {len(take.dones)} times for task {task!r} ({lines}). "
                    "Each call marks one task done, so the count of unfinished tasks drops below the truth: q.join() "
                    "returns while work is still going on, or task_done() raises ValueError (called too many times). "
                    "Call it exactly once per task, on every path: a `finally:` does that.",
                    expected="one task_done() per task", actual=f"{len(take.dones)} for task {task!r}",
                    locations=[loc for d in take.dones[:2] for loc in run.location(d.get("where"), "task_done()")],
                    run=run)
            if not take.dones:
                sentence, locations = _why_not_done(run, worker, take)
                raise CheckFailed(f"{_lead(trial)}: {sentence} {DONE_ADVICE}", expected="one task_done() per task",
                                  actual=f"task {task!r} never marked done", locations=locations, run=run)


def _returned(trial: Trial) -> tuple[dict[Any, Any] | None, str]:
    """The dict main() returned, read back from its repr, and that repr."""
    value = trial.step.value or {}
    text = str(value.get("repr", ""))
    if value.get("type") != "dict":
        return None, text
    try:
        parsed = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None, text
    return (parsed, text) if isinstance(parsed, dict) else (None, text)


def _handled_wrong(run: Run, trial: Trial) -> CheckFailed | None:
    """A task handle() saw more than once (or, in a call that returned, never): say which."""
    twice = sorted((t for t, n in trial.handled.items() if n > 1 and t in trial.shape.tasks), key=repr)
    if twice:
        task = twice[0]
        return CheckFailed(
            f"{_lead(trial)}: handle({task!r}) was called {trial.handled[task]} times. A task put on the queue once "
            "must be handled once: do not put a failed task back on the queue, and never handle a task twice.",
            expected=f"handle({task!r}) called once", actual=f"called {trial.handled[task]} times", run=run)
    never = [t for t in trial.shape.tasks if trial.handled[t] == 0]
    if never and trial.step.finished:
        return CheckFailed(
            f"{_lead(trial)}: main() returned, but task(s) {_tasks_text(never)} were never handled: handle() was "
            "never called with them. Every task put on the queue must be handled once before main() returns.",
            expected="every task handled once", actual=f"{len(never)} task(s) never handled", run=run)
    return None


def _missing_cause(run: Run, trial: Trial, missing: list[Any]) -> str:
    """Why results are missing from what main() returned: an early task_done(), typically."""
    early = [(w, t) for w, t in trial.takes() if t.early is not None and t.value in missing]
    if early:
        worker, take = early[0]
        return (f" {capital(worker.proc.label)} marked task {take.value!r} done{_at(run, take.early.get('where'))} "
                "before its work was finished, so q.join() returned and main() copied the results before the result "
                "was stored. Call task_done() after the work.")
    return (" Store every result in the shared results dict before the task is marked done, and return a copy of "
            "that dict once q.join() has returned.")


@check()
def check_every_task_handled_once(student: Student, pool: PoolRuns) -> None:
    """handle() sees every task once, and main() returns {task: result} of exactly the tasks that succeeded."""
    run = pool.run
    student.show(run)
    for trial in pool.trials:
        failure = _handled_wrong(run, trial)
        if failure is not None:
            raise failure
        if not trial.step.finished or trial.step.error is not None:
            continue
        expected = trial.shape.expected()
        returned, text = _returned(trial)
        if returned is None:
            raise CheckFailed(
                f"{_lead(trial)}: main() returned {text or 'nothing'}, not a dict of results. Return a plain dict "
                "{task: result}: dict(results) copies the Manager's dict before the Manager shuts down.",
                expected=repr(expected), actual=text, run=run)
        if returned == expected:
            continue
        missing = sorted((t for t in expected if t not in returned), key=repr)
        extra = sorted((t for t in returned if t not in expected), key=repr)
        if missing:
            why = f"the result(s) of task(s) {_tasks_text(missing)} are missing." + _missing_cause(run, trial, missing)
        elif extra:
            failing = [t for t in extra if t in trial.shape.tasks]
            why = (f"it holds task(s) {_tasks_text(extra)}" + (", which failed: a failing task is reported and left "
                                                                 "out of the results." if failing else
                                                                 ", which were never given to it."))
        else:
            wrong = sorted((t for t in expected if returned.get(t) != expected[t]), key=repr)
            why = (f"the result of task {wrong[0]!r} is {returned.get(wrong[0])!r} instead of handle()'s "
                   f"{expected[wrong[0]]!r}.")
        raise CheckFailed(f"{_lead(trial)}: main() returned {text}, but {why}", expected=repr(expected),
                          actual=text, run=run)
    unfinished = _unfinished(pool)
    if unfinished is not None:
        raise CheckFailed(
            f"The results can only be judged once main() has returned, and with {unfinished.shape.label}, "
            f"{unfinished.shape.call_text()} never returned (see the check on q.join()).", run=run)
    _require_every_call_ran(pool)


@check()
def check_workers_survive_failures(student: Student, pool: PoolRuns) -> None:
    """No worker dies with the exception of a failing task, and none stops working after one."""
    run = pool.run
    student.show(run)
    seen_failure = False
    for trial in pool.trials:
        for worker in trial.workers:
            failed = [t for t in worker.takes if t.failed]
            seen_failure = seen_failure or bool(failed)
            last = worker.takes[-1] if worker.takes else None
            if worker.crashed:
                where = last.calls[-1].get("where") if last and last.calls else worker.proc.spawn_where
                cause = f" when {_raised_text(last)}" if last is not None and last.failed else ""
                raise CheckFailed(
                    f"{_lead(trial)}: {worker.proc.label} died with {_death_text(run, worker)}{cause}. Catch the "
                    "exception of a failing task inside the worker's loop, report it (print it) and go on with the "
                    "next task: a pool whose workers die one by one ends with nobody left to do the work.",
                    expected="the worker survives a failing task", actual=f"{worker.proc.label} died",
                    locations=run.location(where, "the exception escapes the worker here"), run=run)
            if worker.stopped and last is not None and last.failed:
                raise CheckFailed(
                    f"{_lead(trial)}: {worker.proc.label} ended (returned from worker()) right after "
                    f"{_raised_text(last)}. A failing task must not stop its worker: report it and take the next "
                    "task, or the tasks still on the queue wait for a worker that is gone.",
                    expected="the worker goes on after a failing task", actual=f"{worker.proc.label} stopped",
                    locations=run.location(last.calls[-1].get("where") if last.calls else None,
                                           "stops after a failing task"), run=run)
    if not seen_failure:
        raise CheckFailed("No task ever failed in a worker: this check needs calls of main() in which handle() "
                          "raised, and none got that far.", run=run)
