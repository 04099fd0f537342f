"""Checks of exercise 6, bounded queues with timeouts. Two supervised runs of main(), each judged by several
checks:

- "producers finish": two producers, two consumers with no shift limit, a queue with room for every job.
  The producers are slow next to the consumers, so consumers wait for jobs while producers still work; once
  the producers are done, each consumer must give up with queue.Empty after waiting `patience` seconds.
- "consumers leave": one producer, two consumers with a shift of two long jobs, a queue of one job. The
  queue is full while the consumers work (slow, not gone); once they have left, the producer must give up
  with queue.Full after waiting `patience` seconds, leaving the rest of its batch undelivered.

time.sleep is scaled so that a job of 3 "seconds" takes 150 ms, while `patience` (a real timeout of put/get)
is 0.5 s: a correct program never comes close to giving up on a side that is only slow. Verdicts come from
the probe's queue events (each put and get, and the Full/Empty they raised), the spied calls of do_job,
producer and consumer, and lower bounds on how long a side waited before giving up (load only makes waits
longer, never shorter)."""
from __future__ import annotations

import ast
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest

from grader.checks.common import call_raised, raise_first
from grader.judging.evidence import Proc, Run, Step, capital, explain_hang
from grader.judging.harness import ENDS, CheckFailed, Student, check
from grader.results import Location
from grader.probe import grader_events

EXERCISE = 6
CONTRACT: dict[str, list[str] | None] = {
    "do_job": ["job"], "producer": ["q", "jobs", "patience"], "consumer": ["q", "patience", "shift"],
    "main": ["batches", "consumers", "maxsize", "patience", "shift"],
}
PATIENCE = 0.5  # seconds, real time: the timeouts of put() and get() are never scaled
SLEEP_SCALE = 0.05  # a job of 3.0 "seconds" takes 150 ms; preparing a job (0.2-0.5 s in the stub) 10-25 ms
WAITED_ENOUGH = 0.9  # a give-up after at least this share of `patience` counts as waiting `patience`
RUN_TIMEOUT = 6.0
SPIED = ["do_job", "producer", "consumer"]
EXCEPTION_ADVICE = ("A put() with a timeout raises queue.Full and a get() with a timeout raises queue.Empty "
                    "(exceptions of the standard module `queue`, not TimeoutError): catch exactly those, the one "
                    "around the put, the other around the get.")
SNAPSHOT_NOTE = ("q.empty(), q.full() and q.qsize() are snapshots that say nothing about the next moment: let the "
                 "timeout of put() or get() decide.")


@dataclass(frozen=True)
class Scenario:
    """One call of main(): its batches (one producer each), consumers, queue size and shift."""

    label: str
    batches: tuple[tuple[float, ...], ...]
    consumers: int
    maxsize: int
    shift: int | None

    def args(self) -> list[Any]:
        """main()'s positional arguments as the driver's JSON plan carries them."""
        return [[list(batch) for batch in self.batches], self.consumers, self.maxsize, PATIENCE, self.shift]

    def call_text(self) -> str:
        """main(...) as the student would write it, for messages."""
        return (f"main({[list(b) for b in self.batches]!r}, consumers={self.consumers}, maxsize={self.maxsize}, "
                f"patience={PATIENCE}, shift={self.shift})")

    def jobs(self) -> Counter[float]:
        """Every job of every batch."""
        return Counter(job for batch in self.batches for job in batch)


# Jobs are unique within a scenario, so that each one can be followed from its put to do_job.
PRODUCERS_FINISH = Scenario("producers finish", ((0.1, 0.2, 0.3, 0.4), (0.15, 0.25, 0.35, 0.45)), 2, 8, None)
CONSUMERS_LEAVE = Scenario("consumers leave", ((3.0, 2.8, 2.0, 1.8, 1.0, 1.5, 0.5, 0.25),), 2, 1, 2)


@dataclass
class Side:
    """One producer or consumer process and what it did with the queue."""

    proc: Proc
    role: str  # "producer" or "consumer"
    events: list[dict[str, Any]]
    batch: list[Any] | None = None  # a producer's jobs, as producer() received them
    called_at: float | None = None
    returned_at: float | None = None
    raised: dict[str, Any] | None = None
    def_line: int | None = None
    puts: list[tuple[dict[str, Any], bool]] = field(default_factory=list)  # each put attempt, and whether it went in
    gets: list[dict[str, Any]] = field(default_factory=list)  # each job taken off the queue
    done: list[dict[str, Any]] = field(default_factory=list)  # each call of do_job

    @property
    def label(self) -> str:
        """The process's label in messages: 'consumer 2 (pid 9)'."""
        return self.proc.label

    def delivered(self) -> list[Any]:
        """The jobs this producer put on the queue."""
        return [e["item"].get("value", e["item"].get("repr")) for e, went_in in self.puts if went_in]

    def last_queue_event(self) -> dict[str, Any] | None:
        """Its last put, get or their Full/Empty, before it returned."""
        kinds = (grader_events.Q_PUT, grader_events.Q_PUT_RAISE, grader_events.Q_GET_WAIT, grader_events.Q_GET, grader_events.Q_GET_RAISE)
        until = self.returned_at if self.returned_at is not None else float("inf")
        return next((e for e in reversed(self.events) if e["ev"] in kinds and e["t"] <= until), None)


@dataclass
class GiveUp:
    """A side that stopped before its work was done: since when it had waited, and when it gave up."""

    side: Side
    since: float
    at: float

    @property
    def waited(self) -> float:
        """Seconds without progress before it gave up."""
        return self.at - self.since


@dataclass
class Trial:
    """One supervised run of one scenario: the call of main(), its producers and consumers."""

    run: Run
    scenario: Scenario
    step: Step | None
    producers: list[Side]
    consumers: list[Side]

    @property
    def sides(self) -> list[Side]:
        """Every producer and consumer of the call."""
        return self.producers + self.consumers

    @property
    def ended(self) -> bool:
        """main() returned and the grader did not have to stop the run."""
        return not self.run.hung and self.step is not None and self.step.finished

    def give_ups(self) -> list[GiveUp]:
        """Every side that returned before its work was done, producers first."""
        found = [g for g in map(_producer_give_up, self.producers) if g is not None]
        return found + [g for g in (_consumer_give_up(c, self.scenario) for c in self.consumers) if g is not None]


@dataclass
class QueueRuns:
    """The two runs behind every verdict."""

    finish: Trial
    leave: Trial


# ---- reading a run ------------------------------------------------------------------------------
def _parse_batch(described: dict[str, Any] | None) -> list[Any] | None:
    """A producer's jobs argument, read back from the spy's description of it (a list's repr)."""
    if not described:
        return None
    try:
        value = ast.literal_eval(str(described.get("repr", "")))
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None
    return list(value) if isinstance(value, (list, tuple)) else None


def _side(proc: Proc, role: str, events: list[dict[str, Any]]) -> Side:
    """One process's story, from its own events in order."""
    side = Side(proc, role, events)
    pending_put: dict[str, Any] | None = None
    for event in events:
        kind = event["ev"]
        if kind == grader_events.CALL and event.get("func") == role and side.called_at is None:
            side.called_at, side.def_line = event["t"], event.get("def_line")
            args = event.get("args") or []
            if role == "producer" and len(args) >= 2:
                side.batch = _parse_batch(args[1])
        elif kind == grader_events.RETURN and event.get("func") == role:
            side.returned_at = event["t"]
        elif kind == grader_events.RAISE and event.get("func") == role:
            side.raised = event
        elif kind == grader_events.Q_PUT:
            if pending_put is not None:
                side.puts.append((pending_put, True))
            pending_put = event
        elif kind == grader_events.Q_PUT_RAISE and pending_put is not None:
            side.puts.append((pending_put, False))
            pending_put = None
        elif kind == grader_events.Q_GET:
            side.gets.append(event)
        elif kind == grader_events.CALL and event.get("func") == "do_job":
            side.done.append(event)
    if pending_put is not None:  # a put that neither raised nor was followed: it went in, unless still blocked
        side.puts.append((pending_put, proc.exited is not None))
    if side.raised is not None and side.raised.get("error") == "SystemExit" and proc.code == 0:
        side.returned_at, side.raised = side.raised["t"], None  # sys.exit() at the end: a normal return
    return side


def _trial(run: Run, scenario: Scenario) -> Trial:
    """Producers and consumers of the one call of main() of a run (by what they ran, else by their target)."""
    step = run.steps[0] if run.steps else None
    by_pid: dict[int, list[dict[str, Any]]] = {}
    for event in run.outcome.events:
        by_pid.setdefault(event["pid"], []).append(event)
    producers, consumers = [], []
    for proc in run.spawned_in(step) if step is not None else []:
        events = by_pid.get(proc.pid, [])
        called = {e.get("func") for e in events if e["ev"] == grader_events.CALL}
        role = "consumer" if "consumer" in called else "producer" if "producer" in called else proc.target
        if role == "consumer":
            consumers.append(_side(proc, role, events))
        elif role == "producer":
            producers.append(_side(proc, role, events))
    return Trial(run, scenario, step, producers, consumers)


def _job(described: dict[str, Any]) -> Any:
    """A job as the probe described it (its value when simple, else its repr)."""
    return described.get("value", described.get("repr"))


def _done_jobs(side: Side) -> list[Any]:
    """The jobs a consumer passed to do_job."""
    return [_job(e["args"][0]) if e.get("args") else _job(next(iter((e.get("kwargs") or {}).values()),
                                                                {"repr": "(nothing)"}))
            for e in side.done]


def _producer_give_up(side: Side) -> GiveUp | None:
    """A producer that returned with jobs of its batch not delivered: waiting since its first try to put the
    job that never went in (or since its last put, if it never tried)."""
    if side.returned_at is None:
        return None
    delivered = len(side.delivered())
    failed_last = bool(side.puts) and not side.puts[-1][1]
    if side.batch is not None and delivered >= len(side.batch):
        return None
    if side.batch is None and not failed_last:
        return None
    last_in = max((e["t"] for e, went_in in side.puts if went_in), default=None)
    tries = [e["t"] for e, went_in in side.puts if not went_in and (last_in is None or e["t"] > last_in)]
    since = tries[0] if tries else (last_in if last_in is not None else side.called_at or side.returned_at)
    return GiveUp(side, since, side.returned_at)


def _consumer_give_up(side: Side, scenario: Scenario) -> GiveUp | None:
    """A consumer that returned before its shift was over: waiting since it last took or finished a job."""
    if side.returned_at is None:
        return None
    if scenario.shift is not None and len(side.done) >= scenario.shift:
        return None
    marks = [side.called_at or 0.0] + [e["t"] for e in side.gets]
    marks += [e["t"] for e in side.events if e["ev"] == grader_events.RETURN and e.get("func") == "do_job"]
    return GiveUp(side, max(m for m in marks if m <= side.returned_at), side.returned_at)


@pytest.fixture(scope="module")
def queues(student: Student) -> QueueRuns:
    """The two supervised runs, one per scenario: every check judges them."""
    trials = []
    for scenario in (PRODUCERS_FINISH, CONSUMERS_LEAVE):
        step = {"call": "main", "args": scenario.args(), "label": scenario.label}
        run = student.run_steps(scenario.label, [step], contract=CONTRACT, spy=SPIED, sleep_scale=SLEEP_SCALE,
                                timeout=RUN_TIMEOUT)
        trials.append(_trial(run, scenario))
    return QueueRuns(*trials)


# ---- wording ------------------------------------------------------------------------------------
def _at(run: Run, where: dict[str, Any] | None) -> str:
    """' at line 14 (consumer)', or nothing when the probe saw no line of the student's."""
    text = run.describe_where(where)
    return f" at {text}" if text else ""


def _get_text(wait: dict[str, Any] | None) -> str:
    """The get() call a consumer made, as written: q.get(), q.get(timeout=0.5), q.get(False)..."""
    if not wait:
        return "q.get()"
    parts = list(wait.get("args") or []) + [f"{k}={v}" for k, v in (wait.get("kwargs") or {}).items()]
    return f"q.get({', '.join(parts)})"


def _names(labels: list[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    return labels[0] if len(labels) == 1 else f"{', '.join(labels[:-1])} and {labels[-1]}"


def _job_text(job: Any) -> str:
    """A job as the student would write it."""
    return repr(job) if not isinstance(job, str) else job


def _jobs_text(jobs: list[Any], limit: int = 6) -> str:
    """A few jobs, in order."""
    shown = ", ".join(_job_text(j) for j in jobs[:limit])
    return shown + (f" and {len(jobs) - limit} more" if len(jobs) > limit else "")


# ---- the program ends ---------------------------------------------------------------------------
_FRAME = re.compile(r'^\s*File "(?P<file>[^"]+)", line (?P<line>\d+) in (?P<func>.+)$')


def _blocked_in(run: Run, pid: int) -> tuple[str, dict[str, Any]] | None:
    """The library call a process was blocked in at the stop ('put', 'get', 'join'...) and its student line."""
    frames = []
    for line in run.outcome.stacks.get(pid, "").splitlines():
        match = _FRAME.match(line)
        if match:
            frames.append((match["file"].rsplit("/", 1)[-1], int(match["line"]), match["func"].strip()))
    for index, (file, line, func) in enumerate(frames):  # most recent call first
        if file == run.student_file:
            called = frames[index - 1][2] if index > 0 else ""
            return called, {"line": line, "func": func, "file": file}
    return None


def _stuck_sentence(trial: Trial, side: Side) -> tuple[str, list[Location]] | None:
    """Why one producer or consumer never ended, pointing at its put() or get()."""
    run, scenario = trial.run, trial.scenario
    blocked = _blocked_in(run, side.proc.pid)
    waits = [e for e in side.events if e["ev"] in (grader_events.Q_GET_WAIT, grader_events.Q_GET, grader_events.Q_GET_RAISE)]
    if waits and waits[-1]["ev"] == grader_events.Q_GET_WAIT:
        wait = waits[-1]
        if _get_text(wait) == "q.get()" or blocked is not None and blocked[0] == "get":
            others = "every producer has finished" if all(p.proc.exited is not None for p in trial.producers) \
                else "no producer puts one"
            return (f"{side.label} is blocked in {_get_text(wait)}{_at(run, wait.get('where'))}: no job comes any "
                    f"more ({others}), and a get() without a timeout waits forever.",
                    run.location(wait.get("where"), "blocked in get()"))
    refused = [e for e, went_in in side.puts if not went_in]
    if side.role == "producer" and len(refused) >= 3:
        where = refused[-1].get("where")
        return (f"{side.label} was still trying to put a job{_at(run, where)}: put() raised queue.Full "
                f"{len(refused)} times, and each time it tried again. Once put() has waited `patience` seconds "
                "for room, the consumers are gone: stop, and leave the rest of the batch undelivered.",
                run.location(where, "retries after queue.Full"))
    if side.role == "producer" and blocked is not None and blocked[0] == "put":
        where = side.puts[-1][0].get("where") if side.puts else blocked[1]
        gone = [c for c in trial.consumers if c.proc.exited is not None]
        why = ("every consumer has left" + (f" (each after its shift of {scenario.shift} jobs)" if scenario.shift
                                            else "")) if gone and len(gone) == len(trial.consumers) \
            else "no consumer takes a job"
        return (f"{side.label} is blocked in q.put(){_at(run, where)}: the queue is full and {why}, so room never "
                "comes, and a put() without a timeout waits forever.", run.location(where, "blocked in put()"))
    if blocked is not None:
        called, where = blocked
        doing = f"is waiting in {called}()" if called else "was still running"
        return f"{side.label} {doing}{_at(run, where)}.", run.location(where, "still here")
    return None


def _hang_failure(trial: Trial, advice: str) -> CheckFailed:
    """A run the grader had to stop (or a main() that did not return), in plain words."""
    run = trial.run
    lead = f"With {trial.scenario.call_text()}, the program did not end"
    if not run.hung:
        step = trial.step
        if step is not None and step.error is not None:
            return call_raised(run, step, trial.scenario.call_text(), prerequisite=ENDS)
        return CheckFailed(f"{lead}: main() never returned (exit code {run.outcome.returncode}).", run=run,
                           prerequisite=ENDS)
    groups: dict[str, list[str]] = {}  # what a process does -> the processes that do it
    locations: list[Location] = []
    for side in trial.sides:
        if side.proc.exited is None:
            found = _stuck_sentence(trial, side)
            if found is not None:
                groups.setdefault(found[0][len(side.label):], []).append(side.label)
                locations += found[1]
    sentences = [_names(labels) + (rest if len(labels) == 1 else rest.replace(" is ", " are ", 1).replace(
        " was ", " were ", 1)) for rest, labels in groups.items()]
    if not sentences:
        sentences, locations = explain_hang(run)
    elif run.main is not None and (blocked := _blocked_in(run, run.main.pid)) is not None:
        sentences.append(f"The main process waits in {blocked[0] or 'its code'}(){_at(run, blocked[1])} for them.")
    sentences = sentences[:1] + [capital(s) for s in sentences[1:]]
    return CheckFailed(f"{lead}: " + " ".join(sentences) + (f" {advice}" if advice else ""),
                       locations=locations, run=run, prerequisite=ENDS)


def _require_ended(trial: Trial, advice: str = "", judged: str = "") -> None:
    """main() must have returned in this run; `judged` says what cannot be judged otherwise."""
    if trial.ended and trial.step is not None and trial.step.error is None:
        return
    failed = _hang_failure(trial, advice)
    if judged:
        raise CheckFailed(f"{judged} can only be judged once the program ends. {failed.message}",
                          locations=failed.locations, run=trial.run, prerequisite=ENDS) from None
    raise failed


PUT_ADVICE = "Give put() a timeout of `patience` seconds, and stop when it raises queue.Full."
GET_ADVICE = "Give get() a timeout of `patience` seconds, and return when it raises queue.Empty."


def _require_both_ended(queues: QueueRuns, judged: str) -> None:
    """Both runs (the producers finish, the consumers leave) ended; `judged` says what waits on that."""
    for trial in (queues.finish, queues.leave):
        _require_ended(trial, GET_ADVICE if trial is queues.finish else PUT_ADVICE, judged=judged)


@check(judges=ENDS)
def check_ends_when_consumers_leave(student: Student, queues: QueueRuns) -> None:
    """With consumers that leave after their shift, the producer gives up and main() returns."""
    student.show(queues.leave.run)
    _require_ended(queues.leave, PUT_ADVICE)


@check(judges=ENDS)
def check_ends_when_producers_finish(student: Student, queues: QueueRuns) -> None:
    """Once the producers have delivered everything, every consumer gives up and main() returns."""
    student.show(queues.finish.run)
    _require_ended(queues.finish, GET_ADVICE)


# ---- nothing lost, nothing twice ----------------------------------------------------------------
def _twice(trial: Trial) -> CheckFailed | None:
    """A job done twice, or do_job() called with something that is no job."""
    jobs = trial.scenario.jobs()
    done = Counter(job for c in trial.consumers for job in _done_jobs(c))
    strangers = [job for job in done if job not in jobs]
    twice = [job for job, n in done.items() if n > jobs.get(job, 0) and job in jobs]
    if not strangers and not twice:
        return None
    call = trial.scenario.call_text()
    if twice:
        job = twice[0]
        who = [c.label for c in trial.consumers if job in _done_jobs(c)]
        return CheckFailed(
            f"With {call}, job {_job_text(job)} was done {done[job]} times (by {_names(who)}): a job taken off the "
            "queue must be done once, and a job put on it put once. A put() that raised queue.Full did not put "
            "anything, and a get() that raised queue.Empty took nothing.",
            expected="every job done at most once", actual=f"job {_job_text(job)} done {done[job]} times",
            run=trial.run)
    return CheckFailed(
        f"With {call}, do_job() was called with {_job_text(strangers[0])}, which is not one of the jobs: only what "
        "get() returned is a job.", run=trial.run)


def _missing_reason(trial: Trial, job: Any) -> tuple[str, list[Location], bool]:
    """Why one job was never done, where, and whether the student's code is to blame."""
    run = trial.run
    for consumer in trial.consumers:
        taken = next((e for e in consumer.gets if _job(e["item"]) == job), None)
        if taken is not None:
            return (f"{consumer.label} took it off the queue{_at(run, taken.get('where'))} but never passed it "
                    "to do_job().", run.location(taken.get("where"), "taken, never done"), True)
    for producer in trial.producers:
        attempts = [(e, went_in) for e, went_in in producer.puts if _job(e["item"]) == job]
        if attempts and attempts[-1][1]:
            return _left_in_queue(trial)
        if attempts:
            where = attempts[-1][0].get("where")
            return (f"{producer.label}'s put(){_at(run, where)} raised queue.Full and the job was never delivered.",
                    run.location(where, "gave up on a job"), True)
    quitter = next((p for p in trial.producers if p.returned_at is not None and p.batch and job in p.batch), None)
    if quitter is not None:
        return f"{quitter.label} returned without ever putting it on the queue.", [], True
    return "it never reached the queue.", [], True


def _left_in_queue(trial: Trial) -> tuple[str, list[Location], bool]:
    """A job put on the queue that nobody took: every consumer had given up (blame only an early give-up)."""
    run = trial.run
    quits = [g for g in trial.give_ups() if g.side.role == "consumer"]
    early = [g for g in quits if g.waited < WAITED_ENOUGH * PATIENCE]
    if quits and not early:  # every consumer waited `patience`: by the rule, the producers were gone
        return "", [], False
    if early:
        first = early[0]
        last = first.side.last_queue_event()
        return (f"it was put on the queue, but no consumer was left to take it: {first.side.label} had given up after "
                f"waiting only {first.waited:.2f} s for a job{_at(run, last.get('where') if last else None)}, "
                f"while `patience` is {PATIENCE} s.", run.location(last.get("where") if last else None,
                                                                   "gives up too early"), True)
    return "it was put on the queue, but no consumer took it.", [], True


@check()
def check_nothing_lost_or_twice(student: Student, queues: QueueRuns) -> None:
    """Every job of the producers-finish run is done exactly once; in both runs no job is done twice."""
    raise_first(_twice(trial) for trial in (queues.finish, queues.leave))
    trial = queues.finish
    _require_ended(trial, GET_ADVICE, judged="Whether a job is lost")
    student.show(trial.run)
    done = Counter(job for c in trial.consumers for job in _done_jobs(c))
    missing = [job for batch in trial.scenario.batches for job in batch if not done.get(job)]
    blamed = [(job, _missing_reason(trial, job)) for job in missing]
    blamed = [(job, why) for job, why in blamed if why[2]]
    if not blamed:
        return
    job, (why, locations, _) = blamed[0]
    raise CheckFailed(
        f"With {trial.scenario.call_text()}, {len(blamed)} job(s) were never done: "
        f"{_jobs_text([j for j, _ in blamed])}. Job {_job_text(job)}: {why}",
        expected=f"every job done once: {_jobs_text(sorted(trial.scenario.jobs()), 8)}",
        actual=f"done: {_jobs_text(sorted(done.elements()), 8) or 'nothing'}", locations=locations, run=trial.run)


# ---- no side gives up on a side that is only slow ------------------------------------------------
def _after(trial: Trial, give_up: GiveUp) -> str:
    """What happened on the other side after an early give-up: proof that it was only slow."""
    if give_up.side.role == "consumer":
        put = min(((e["t"], p) for p in trial.producers for e, went_in in p.puts if went_in and e["t"] > give_up.at),
                  key=lambda x: x[0], default=None)
        busy = [p for p in trial.producers if p.proc.exited is None or (p.proc.exited or 0) > give_up.at]
        if put is not None:
            return f" {capital(put[1].label)} put another job {put[0] - give_up.at:.2f} s later."
        if busy:
            return f" {capital(busy[0].label)} was still working."
        return ""
    get = min(((e["t"], c) for c in trial.consumers for e in c.gets if e["t"] > give_up.at),
              key=lambda x: x[0], default=None)
    if get is not None:
        return f" {capital(get[1].label)} took a job off the queue {get[0] - give_up.at:.2f} s later."
    return ""


def _early_failure(trial: Trial, give_up: GiveUp) -> CheckFailed:
    """A side that gave up before waiting `patience` seconds."""
    run, side = trial.run, give_up.side
    last = side.last_queue_event()
    where = last.get("where") if last else None
    if side.role == "consumer":
        what, other = "for a job", "the producers"
        wait = next((e for e in reversed(side.events) if e["ev"] == grader_events.Q_GET_WAIT and e["t"] <= give_up.at), None)
        how = f" after {_get_text(wait)} raised queue.Empty" if last and last["ev"] == grader_events.Q_GET_RAISE else ""
        advice = ("A get() that waits less than `patience` gives up on a producer that is only slow: use "
                  "a get() that waits `patience` seconds, not get_nowait() or a shorter timeout.")
    else:
        what, other = "for room on the queue", "the consumers"
        how = " after its put() raised queue.Full" if last and last["ev"] == grader_events.Q_PUT_RAISE else ""
        advice = ("A put() that waits less than `patience` gives up on consumers that are only slow: use "
                  "a put() that waits `patience` seconds, not put_nowait() or a shorter timeout.")
    if not how:
        advice += " " + SNAPSHOT_NOTE
    return CheckFailed(
        f"With {trial.scenario.call_text()}, {side.label} gave up{how}{_at(run, where)} after waiting only "
        f"{give_up.waited:.2f} s {what}, but `patience` is {PATIENCE} s: until then {other} may only be slow."
        f"{_after(trial, give_up)} {advice}",
        expected=f"give up after waiting {PATIENCE} s", actual=f"gave up after {give_up.waited:.2f} s",
        locations=run.location(where, "gives up too early"), run=run)


@check()
def check_waits_patience(student: Student, queues: QueueRuns) -> None:
    """Every producer or consumer that stopped early had waited at least `patience` seconds without progress."""
    _require_both_ended(queues, judged="How long each side waits before it gives up")
    for trial in (queues.finish, queues.leave):
        for give_up in trial.give_ups():
            if give_up.waited < WAITED_ENOUGH * PATIENCE:
                raise _early_failure(trial, give_up)
    student.show(queues.leave.run)


# ---- the right exceptions ------------------------------------------------------------------------
def _crash_failure(trial: Trial, side: Side) -> CheckFailed:
    """A producer or consumer that ended with an exception."""
    run = trial.run
    last_line = run.last_error_line(str(side.proc.pid)) or f"exit code {side.proc.code}"
    error = (side.raised or {}).get("error")
    raise_event = next((e for e in reversed(side.events) if e["ev"] in (grader_events.Q_GET_RAISE, grader_events.Q_PUT_RAISE)), None)
    text = f"With {trial.scenario.call_text()}, {side.label} crashed: {last_line}."
    locations: list[Location] = []
    if raise_event is not None and error in ("Empty", "Full"):
        call = _get_text(next((e for e in reversed(side.events) if e["ev"] == grader_events.Q_GET_WAIT), None)) \
            if error == "Empty" else "q.put()"
        text += (f" {call}{_at(run, raise_event.get('where'))} raised queue.{error}, and your code did not catch "
                 f"it. {EXCEPTION_ADVICE}")
        locations = run.location(raise_event.get("where"), f"queue.{error} not caught")
    else:
        text += " Its full traceback is in the report."
    return CheckFailed(text, expected=f"the {side.role} returns normally", actual=f"the {side.role} crashed",
                       locations=locations, run=run)


def _wrong_reason(trial: Trial, give_up: GiveUp) -> CheckFailed | None:
    """A side that gave up without its put() raising queue.Full, or its get() raising queue.Empty, just before."""
    side, run = give_up.side, trial.run
    last = side.last_queue_event()
    wanted = (grader_events.Q_GET_RAISE, "Empty") if side.role == "consumer" else (grader_events.Q_PUT_RAISE, "Full")
    if last is not None and last["ev"] == wanted[0] and last.get("error") == wanted[1]:
        return None
    verb = "get() raising queue.Empty" if side.role == "consumer" else "put() raising queue.Full"
    where = last.get("where") if last else None
    return CheckFailed(
        f"With {trial.scenario.call_text()}, {side.label} gave up without its {verb}: its last queue call was "
        f"{_queue_call_text(last)}{_at(run, where)}. Decide that the other side is gone only when the timeout of "
        f"put() or get() says so. {SNAPSHOT_NOTE}",
        expected=f"queue.{wanted[1]}, then stop", actual="stopped without it",
        locations=run.location(where or ({"line": side.def_line, "func": side.role} if side.def_line else None),
                               "gives up here"), run=run)


def _queue_call_text(event: dict[str, Any] | None) -> str:
    """A queue event in words: 'a get() that returned a job', 'a put() that went in'..."""
    if event is None:
        return "none at all"
    return {grader_events.Q_GET: "a get() that returned a job", grader_events.Q_PUT: "a put() that went in",
            grader_events.Q_GET_WAIT: "a get()", grader_events.Q_GET_RAISE: f"a get() that raised {event.get('error')}",
            grader_events.Q_PUT_RAISE: f"a put() that raised {event.get('error')}"}.get(event["ev"], event["ev"])


@check()
def check_right_exceptions(student: Student, queues: QueueRuns) -> None:
    """No producer or consumer crashes, and each one that stopped early did so on queue.Full / queue.Empty."""
    _require_both_ended(queues, judged="How each side reacts to queue.Full and queue.Empty")
    for trial in (queues.finish, queues.leave):
        for side in trial.sides:
            if side.proc.code not in (0, None) or side.raised is not None:
                raise _crash_failure(trial, side)
    raise_first(_wrong_reason(trial, give_up) for trial in (queues.finish, queues.leave)
                for give_up in trial.give_ups())
    student.show(queues.finish.run)
