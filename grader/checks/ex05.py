"""Checks of exercise 5, a shared counter in a Manager: one supervised run calls main() with several
(start, workers, times) settings. The probe delays every write through a Manager proxy, so a read-modify-write
that is not one critical section loses updates in every trial. Verdicts come from main()'s return value, the
values decrement() returned (two equal ones are two workers that read the same value) and the probe's lock
events (which process held which lock, and when)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from grader.checks.common import (
    TrialRuns, call_raised, crashed_failure, one_at_a_time, raise_first, ran_together, spied_calls, too_few_ran,
)
from grader.judging import witness
from grader.judging.evidence import Hold, Proc, Run, Step, capital, explain_hang, overlapping_holders
from grader.judging.harness import ENDS, CheckFailed, Student, check, crashed_children, scheduled
from grader.results import CriticalSection, Location
from grader.probe import grader_events

EXERCISE = 5
CONTRACT: dict[str, list[str] | None] = {
    "decrement": ["counter", "lock"], "worker": ["counter", "lock", "times"], "main": ["start", "workers", "times"],
}
# What the timeline draws as shared: decrement() returns the value it wrote, so every return counts, and two
# calls running at once that returned the same value are drawn as an overlap (both wrote it, from one read).
CRITICAL_SECTION = CriticalSection("decrement", None, ["check_final_value_exact"], any_return=True)
# (start, workers, times): 60 sales in all; every trial has at least two workers, so lost updates show in each.
SETTINGS = ((40, 4, 5), (30, 2, 8), (25, 5, 3), (10, 3, 3))
MANAGER_SERVER = "_run_server"  # the target of a Manager's server process, as the probe names it
LOCK_ADVICE = ("Hold the lock that main() passes around the read and the write of decrement (a `with` block "
               "on that lock), "
               "so that no other worker can act in between.")


@dataclass
class Call:
    """One call of decrement() in a worker: when it ran and what it returned."""

    pid: int
    start: float
    end: float | None
    value: Any = None
    where: dict[str, Any] | None = None


@dataclass
class Trial:
    """One call of main(): its setting, the processes it started and what decrement() did in them."""

    step: Step
    start: int
    workers: int
    times: int
    final: Any
    procs: list[Proc]
    calls: list[Call] = field(default_factory=list)

    @property
    def expected(self) -> int:
        """What the counter must end at: one less per sale."""
        return self.start - self.workers * self.times

    def call_text(self) -> str:
        """main(...) as the student would write it, for messages."""
        return f"main({self.start}, {self.workers}, {self.times})"


CounterRuns = TrialRuns[Trial]


def _calls(run: Run, pids: set[int]) -> list[Call]:
    """Every call of decrement() in these processes, paired with its return (or raise)."""
    return [Call(call["pid"], call["t"], end["t"] if end else None,
                 end["value"].get("value") if end and end["ev"] == grader_events.RETURN else None,
                 where={"line": call.get("def_line"), "func": "decrement"})
            for call, end in spied_calls(run, "decrement", pids)]


def _trial(run: Run, step: Step) -> Trial:
    """What one call of main() did: its workers are the children that ran worker() or decrement()."""
    start, workers, times = SETTINGS[step.index]
    children = run.spawned_in(step)
    active = {e["pid"] for e in run.events(grader_events.CALL) if e.get("func") in ("worker", "decrement")}
    procs = [p for p in children if p.target == "worker" or p.pid in active]
    final = step.value.get("value", step.value.get("repr")) if step.value else None
    trial = Trial(step, start, workers, times, final, procs)
    trial.calls = _calls(run, {p.pid for p in procs})
    return trial


@pytest.fixture(scope="module")
def counters(student: Student) -> CounterRuns:
    """One supervised run of every setting: each check judges the same trials."""
    steps = [{"call": "main", "args": list(setting), "label": f"main{setting}"} for setting in SETTINGS]
    run = student.run_steps("counter", steps, contract=CONTRACT, spy=["decrement", "worker"], timeout=30,
                           **scheduled())
    return CounterRuns(run, [_trial(run, step) for step in run.steps if step.finished])


# ---- what every verdict needs -------------------------------------------------------------------
def _decrement_line(run: Run) -> list[Location]:
    """The line where the student's decrement() is defined, from the spy's call events."""
    call = next((e for e in run.events(grader_events.CALL) if e["func"] == "decrement" and e.get("def_line")), None)
    return run.location({"line": call["def_line"], "func": "decrement"}, "decrement") if call else []


def _hang_failure(run: Run, what: str) -> CheckFailed:
    """A run the grader had to stop, explained process by process, with advice for a lock never released."""
    sentences, locations = explain_hang(run)
    # The Manager's server process only waits for requests: it is not the student's, and not why it hangs.
    servers = [p.label for p in run.processes.values() if p.target == MANAGER_SERVER]
    sentences = [s for s in sentences if not any(label in s for label in servers)] or sentences
    sentences = sentences[:1] + [capital(s) for s in sentences[1:]]
    holds = run.holds()
    if run.events(grader_events.SELF_DEADLOCK) or any(h.released is None for h in holds):
        sentences.append("Every acquire() needs its release(), on every path: a `with` block on the lock does that for you.")
    return CheckFailed(f"{what} did not end: " + " ".join(sentences), locations=locations, run=run,
                       prerequisite=ENDS)


def _require_finished(runs: CounterRuns, judged: str = "") -> None:
    """Every call of main() must have returned, without a hang, and every worker must have ended normally."""
    run = runs.run
    lead = f"{judged} can only be judged once every worker has finished. " if judged else ""
    try:
        _check_finished(runs)
    except CheckFailed as failed:
        if not lead:
            raise
        raise CheckFailed(lead + failed.message, locations=failed.locations, run=run,
                          prerequisite=failed.prerequisite) from None


def _check_finished(runs: CounterRuns) -> None:
    """The reasons why the trials did not all run to the end, the first one found."""
    run = runs.run
    first_unfinished = next((s for s in run.steps if not s.finished), None)
    if run.hung:
        step = first_unfinished or (run.steps[-1] if run.steps else None)
        what = f"main({', '.join(map(str, SETTINGS[step.index]))})" if step is not None else "The program"
        raise _hang_failure(run, what)
    for step in run.steps:
        if step.error is not None:
            raise call_raised(run, step, f"main({', '.join(map(str, SETTINGS[step.index]))})")
    for trial in runs.trials:
        crashed = crashed_children(run, trial.procs)
        if crashed:
            raise crashed_failure(run, crashed, trial.call_text(), "worker")
    if len(runs.trials) < len(SETTINGS):
        raise too_few_ran(run, len(runs.trials), len(SETTINGS), "calls of main() ran to the end")


@check(judges=ENDS)
def check_program_ends(student: Student, counters: CounterRuns) -> None:
    """Every call of main() returns and every worker process ends normally; a hang is explained."""
    student.show(counters.run)
    _require_finished(counters)


# ---- the final value ----------------------------------------------------------------------------
def _same_writes(run: Run, trial: Trial) -> str:
    """Two workers that wrote the same value: proof that both read the same value before either wrote. The
    pair is told with when each ran decrement() and what lock it held meanwhile, from the events."""
    written: dict[int, list[Call]] = {}
    for call in trial.calls:
        if isinstance(call.value, int) and not isinstance(call.value, bool):
            written.setdefault(call.value, []).append(call)
    twice = sorted(v for v, calls in written.items() if len({c.pid for c in calls}) > 1)
    if not twice:
        return ""
    value = twice[-1]
    first = written[value][0]
    second = next(c for c in written[value] if c.pid != first.pid)
    names = [run.processes[c.pid].label if c.pid in run.processes else f"pid {c.pid}" for c in (first, second)]
    more = f" ({len(twice)} values were written more than once)" if len(twice) > 1 else ""
    seen = _interleaving(run, (first, second), names)
    if seen:
        return f"For instance, {seen}{more}. "
    return (f"For instance, {names[0]} and {names[1]} both wrote {value}: both had read {value + 1} before either "
            f"wrote it back{more}. {capital(names[0])} ran decrement() {_call_span(run, trial, first)}; {names[1]} "
            f"{_call_span(run, trial, second)}. ")


def _interleaving(run: Run, calls: tuple[Call, Call], names: list[str]) -> str:
    """The two calls' reads and writes through the Manager as the probe saw them, in the order they happened:
    'worker 2 read 39 at line 10 (4.1 ms); worker 1 read 39 at line 10 (4.3 ms), before worker 2 wrote 38 at
    line 11 (4.6 ms) ...'. Empty unless both calls' read and write were seen, the second read before the
    first write."""
    found = []
    for call in calls:
        end = call.end if call.end is not None else float("inf")
        mine = [e for e in run.events(grader_events.SHARED_READ, grader_events.SHARED_WRITE)
                if e["pid"] == call.pid and call.start <= e["t"] <= end]
        read = next((e for e in mine if e["ev"] == grader_events.SHARED_READ), None)
        write = next((e for e in mine if e["ev"] == grader_events.SHARED_WRITE and read and e["t"] > read["t"]), None)
        if read is None or write is None:
            return ""
        found.append((read, write))
    (read_a, write_a), (read_b, write_b) = sorted(found, key=lambda pair: pair[0]["t"])
    if names and found[0][0] is not read_a:
        names = names[::-1]
    if not read_b["t"] < write_a["t"]:
        return ""

    holds = [h for h in run.holds() if h.pid in {c.pid for c in calls}]

    def told(event: dict[str, Any]) -> str:
        line = (event.get("frames") or [{}])[0].get("line")
        value = (event.get("value") or {}).get("repr", "?")
        verb = "read" if event["ev"] == grader_events.SHARED_READ else "wrote"
        locked = any(h.pid == event["pid"] and h.covers(event["t"]) for h in holds)
        return (f"{verb} {value}" + (f" at line {line}" if line else "")
                + (" holding a lock" if locked else " without holding a lock") + f" ({witness.moment(run, event['t'])})")

    return (f"{names[0]} {told(read_a)}; {names[1]} {told(read_b)}, before {names[0]} {told(write_a)}; then "
            f"{names[1]} {told(write_b)}: both decrements counted as one")


def _call_span(run: Run, trial: Trial, call: Call) -> str:
    """'from 4.1 ms to 9.0 ms without holding a lock' (times of the run, as its timeline shows them), or with the hold."""
    def ms(t: float) -> str:
        return witness.moment(run, t)

    end = call.end if call.end is not None else call.start
    held = [h for h in _worker_holds(run, trial) if h.pid == call.pid and h.acquired < end
            and (h.released is None or h.released > call.start)]
    span = f"from {ms(call.start)} to {ms(end)}"
    if not held:
        return f"{span} without holding a lock"
    hold = held[0]
    released = ms(hold.released) if hold.released is not None else "its end"
    return f"{span}, holding a lock from {ms(hold.acquired)} to {released}"


def _worker_holds(run: Run, trial: Trial) -> list[Hold]:
    """Locks the workers of a trial held."""
    pids = {p.pid for p in trial.procs}
    return [h for h in run.holds() if h.pid in pids]


def _lock_kinds(run: Run, trial: Trial) -> set[str]:
    """The kinds of lock (Lock, manager-Lock, thread-Lock...) the workers of a trial acquired."""
    pids = {p.pid for p in trial.procs}
    return {str(e.get("kind")) for e in run.events(grader_events.ACQUIRED) if e["pid"] in pids}


def _lost_update_cause(run: Run, trial: Trial) -> str:
    """Why two workers could read the same value: no lock, a threading lock, different locks, or too little held."""
    holds = _worker_holds(run, trial)
    if not holds:
        return ("The workers never held a lock, so two of them read the same value, each took one off it, and "
                "the second write overwrote the first: a lost update. The Manager makes each single read and "
                "each single write safe, not the pair. " + LOCK_ADVICE)
    if any(kind.startswith("thread-") for kind in _lock_kinds(run, trial)):
        return ("The workers held a threading lock: it works between the threads of one process, but every "
                "worker process has its own copy of it, so it keeps no other process out. Share a process lock: "
                "manager.Lock() or multiprocessing.Lock(), created once in main() and passed to every worker.")
    pair = overlapping_holders(run, holds)
    if pair is not None or len({h.lock for h in holds}) > 1:
        who = (f"{capital(pair[0])} and {pair[1]} held 'the' lock at the same moment, so they held two "
               "different locks" if pair is not None else "The workers held different locks")
        return (f"{who}: a lock protects nothing unless every process uses the same lock object, the one main() "
                "creates and passes to every worker. Two workers then read the same value and the second write "
                "overwrote the first.")
    return ("Two workers read the same value, each took one off it, and the second write overwrote the first: the "
            "lock does not cover the whole read-modify-write. Hold it from decrement's read to its write, in one "
            "critical section.")


def _final_failure(run: Run, trial: Trial) -> CheckFailed:
    """main() returned something other than start - workers * times: say what was lost, and why."""
    final, expected = trial.final, trial.expected
    setting = (f"{trial.call_text()}: {trial.workers} workers made {trial.times} sales each, so main() must return "
               f"{trial.start} - {trial.workers * trial.times} = {expected}")
    if not isinstance(final, int) or isinstance(final, bool):
        why = (f"it returned {final!r} instead of a number. main() must return the counter's final value, "
               "counter['value'], read before the Manager shuts down.")
    elif final == trial.start:
        why = (f"it returned {final}: the counter never changed. Processes do not share memory: if each worker "
               "decremented its own copy of a plain dict, main()'s dict never saw a sale. Keep the counter in the "
               "Manager's dict (manager.dict()), which every process reaches through its proxy.")
    elif final > expected:
        why = (f"it returned {final}: {final - expected} sale(s) were lost. " + _same_writes(run, trial)
               + _lost_update_cause(run, trial))
    else:
        why = f"it returned {final}: the counter went down {trial.start - final} times for {trial.workers * trial.times} sales."
    return CheckFailed(f"{setting}, but {why}", expected=f"{expected}", actual=f"{final!r}",
                       locations=_decrement_line(run), run=run)


@check()
def check_final_value_exact(student: Student, counters: CounterRuns) -> None:
    """Every call of main() returns exactly start - workers * times, over several seeded settings."""
    _require_finished(counters, "The final value")
    run = counters.run
    student.show(run)
    for trial in counters.trials:
        if trial.final != trial.expected or isinstance(trial.final, bool):
            raise _final_failure(run, trial)


# ---- one lock, shared by every worker -----------------------------------------------------------
def _unlocked_calls(run: Run, trial: Trial) -> list[Call]:
    """decrement() calls during which their process held no lock at all."""
    by_pid: dict[int, list[Hold]] = {}
    for hold in _worker_holds(run, trial):
        by_pid.setdefault(hold.pid, []).append(hold)
    unlocked = []
    for call in trial.calls:
        end = call.end if call.end is not None else float("inf")
        if not any(h.acquired < end and (h.released if h.released is not None else float("inf")) > call.start
                   for h in by_pid.get(call.pid, [])):
            unlocked.append(call)
    return unlocked


def _where_acquired(run: Run, holds: list[Hold], pid: int) -> str:
    """' at line 30 (decrement)' for the first lock a process took, or nothing."""
    hold = next((h for h in holds if h.pid == pid and h.where), None)
    text = run.describe_where(hold.where) if hold else ""
    return f" at {text}" if text else ""


def _sharing_problem(run: Run, trial: Trial) -> CheckFailed | None:
    """Why the workers of one trial did not all hold one shared lock around decrement(), or None."""
    label = {p.pid: p.label for p in trial.procs}
    unlocked = _unlocked_calls(run, trial)
    if trial.calls and len(unlocked) == len(trial.calls):
        return CheckFailed(
            f"During {trial.call_text()}, no worker held any lock while it ran decrement(): the lock main() passes "
            "is never used. " + LOCK_ADVICE, expected="every decrement() holding the shared lock",
            actual="no lock held", locations=_decrement_line(run), run=run)
    if unlocked:
        who = label.get(unlocked[0].pid, f"pid {unlocked[0].pid}")
        return CheckFailed(
            f"During {trial.call_text()}, {len(unlocked)} of the {len(trial.calls)} calls of decrement() ran without "
            f"holding any lock ({who}, for one): every process must hold the lock around every update. "
            + LOCK_ADVICE, expected="every decrement() holding the shared lock",
            actual=f"{len(unlocked)} call(s) without a lock", locations=_decrement_line(run), run=run)
    holds = _worker_holds(run, trial)
    if any(kind.startswith("thread-") for kind in _lock_kinds(run, trial)):
        return CheckFailed(
            f"During {trial.call_text()}, the workers held a threading lock: it excludes the other threads of one "
            "process, but every worker process has its own copy of it, so the workers never exclude each other. "
            "Share a process lock: manager.Lock() or multiprocessing.Lock(), created once in main() and passed to "
            "every worker.", expected="one process lock shared by every worker", actual="a threading lock",
            locations=run.location(holds[0].where if holds else None, "a threading lock"), run=run)
    locks: dict[str, list[int]] = {}
    for hold in holds:
        locks.setdefault(hold.lock, [])
        if hold.pid not in locks[hold.lock]:
            locks[hold.lock].append(hold.pid)
    if len(locks) > 1:
        groups = list(locks.values())
        first, second = groups[0][0], groups[1][0]
        return CheckFailed(
            f"During {trial.call_text()}, the {len(trial.procs)} workers held {len(locks)} different locks: "
            f"{label.get(first, first)} took one{_where_acquired(run, holds, first)} and {label.get(second, second)} "
            f"another{_where_acquired(run, holds, second)}. A lock protects nothing unless every process uses the "
            "same lock object: create it once, in main(), and pass it to every worker.",
            expected="1 lock shared by every worker", actual=f"{len(locks)} different locks",
            locations=run.location(next((h.where for h in holds if h.where), None), "acquires its own lock"),
            run=run)
    return None


@check()
def check_lock_is_shared(student: Student, counters: CounterRuns) -> None:
    """In every trial, each decrement() ran while its worker held a lock, and all the workers held one lock."""
    _require_finished(counters, "The lock the workers use")
    run = counters.run
    student.show(run)
    raise_first(_sharing_problem(run, trial) for trial in counters.trials)


# ---- the workers run at the same time -----------------------------------------------------------
@check()
def check_workers_concurrent(student: Student, counters: CounterRuns) -> None:
    """In at least one trial, two workers were running at the same moment."""
    _require_finished(counters, "Whether the workers run at the same time")
    run = counters.run
    student.show(run)
    if any(ran_together(trial.procs) for trial in counters.trials):
        return
    raise one_at_a_time(
        run, (p for t in counters.trials for p in t.procs),
        "The workers never ran at the same time: each started only after the previous one had ended. Joining each "
        "process right after starting it avoids the race by removing the concurrency; a lock serialises only the "
        "critical section and lets the rest of the work run in parallel.", "worker")
