"""Checks of exercise 10, CPU-bound work in processes, not threads: one supervised run calls main(limit, workers)
with a few shapes, and the checks judge it from the probe's events, never from wall-clock speed: which processes
(and threads) count_primes() ran in (the spy's call and return events), which processes main() started and when
they lived (spawn, proc_start, proc_exit), what went through the queues, and the number main() returned, compared
with the grader's own count."""
from __future__ import annotations

from collections import Counter
from itertools import chain
from dataclasses import dataclass
from typing import Any

import pytest

from grader.checks.common import TrialRuns, any_overlap, raise_first, too_few_ran
from grader.judging.evidence import Proc, Run, Step, explain_hang
from grader.judging.harness import CheckFailed, Student, check
from grader.probe import grader_events

EXERCISE = 10
CONTRACT: dict[str, list[str] | None] = {
    "count_primes": ["start", "stop"], "split": ["limit", "parts"], "main": ["limit", "workers"],
}
# Worker processes of the standard pools: a Pool's (multiprocessing.pool.worker) and a ProcessPoolExecutor's.
POOL_TARGETS = {"worker", "_process_worker"}
GIL_NOTE = ("In CPython the GIL lets one thread of a process run Python code at a time: threads take turns on "
            "CPU-bound work, so they count no faster than one thread. Each process has its own interpreter and its "
            "own GIL: split the work across processes (a multiprocessing.Pool, or Processes and a Queue).")
SHARE_NOTE = ("Processes do not share memory: a list (or a global) a child appends to is the child's own copy, and "
              "the parent's stays empty. Send the counts back through IPC: a Pool's results, a Queue, a Manager list.")
PICKLE_NOTE = ("A Pool (and any process under spawn) receives the function and its arguments pickled: use a function "
               "defined at the top level of the module, never a lambda or a local function.")


@dataclass(frozen=True)
class Shape:
    """One call of main(): the limit and the number of workers."""

    limit: int
    workers: int

    @property
    def label(self) -> str:
        """The call as the student would write it."""
        return f"main({self.limit}, workers={self.workers})"


# A few tens of milliseconds of counting per range: long next to a process's start, short for the run.
SHAPES = (Shape(30000, 3), Shape(40000, 2), Shape(97, 4))


def _primes_below(limit: int) -> int:
    """The grader's own count of the primes below `limit` (a sieve)."""
    if limit < 3:
        return 0
    sieve = bytearray([1]) * limit
    sieve[0] = sieve[1] = 0
    for n in range(2, int(limit**0.5) + 1):
        if sieve[n]:
            sieve[n * n::n] = bytearray(len(range(n * n, limit, n)))
    return sum(sieve)


@dataclass
class Trial:
    """One call of main(): its processes, the count_primes() calls and what main() returned."""

    step: Step
    shape: Shape
    expected: int
    children: list[Proc]
    calls: list[dict[str, Any]]
    returns: list[dict[str, Any]]
    spawned_at: dict[int, float]
    main_pid: int | None

    def pids(self) -> set[int]:
        """The processes count_primes() ran in."""
        return {e["pid"] for e in self.calls}

    def computing(self) -> list[Proc]:
        """Children that counted; when a pool's workers counted, every worker of the pool (each could have)."""
        pids = self.pids()
        pooled = any(p.pid in pids and p.target in POOL_TARGETS for p in self.children)
        return [p for p in self.children if p.pid in pids or (pooled and p.target in POOL_TARGETS)]


CountRuns = TrialRuns[Trial]


def _trial(run: Run, step: Step, by_pid: dict[int, list[dict[str, Any]]]) -> Trial:
    """Everything one call of main() did: its children (dated by their start()) and the counting they did."""
    shape = SHAPES[step.index]
    spawned_at = {e["child"]: e["t"] for e in run.events(grader_events.SPAWN)}
    children = sorted((p for p in run.processes.values()
                       if not p.is_main and step.contains(spawned_at.get(p.pid, p.started))),
                      key=lambda p: spawned_at.get(p.pid, p.started or 0))
    main_pid = run.main.pid if run.main else None
    events = [e for e in by_pid.get(main_pid, []) if step.contains(e["t"])] if main_pid is not None else []
    events += [e for p in children for e in by_pid.get(p.pid, [])]
    events.sort(key=lambda e: e["t"])
    calls = [e for e in events if e["ev"] == grader_events.CALL and e["func"] == "count_primes"]
    returns = [e for e in events if e["ev"] == grader_events.RETURN and e["func"] == "count_primes"]
    return Trial(step, shape, _primes_below(shape.limit), children, calls, returns, spawned_at, main_pid)


@pytest.fixture(scope="module")
def counts(student: Student) -> CountRuns:
    """One supervised run that calls main() once per shape: every check judges the same calls."""
    steps = [{"call": "main", "args": [s.limit, s.workers], "label": s.label} for s in SHAPES]
    run = student.run_steps("counts", steps, contract=CONTRACT, spy=["count_primes"], timeout=20)
    by_pid: dict[int, list[dict[str, Any]]] = {}
    for event in run.outcome.events:
        by_pid.setdefault(event["pid"], []).append(event)
    return CountRuns(run, [_trial(run, step, by_pid) for step in run.steps])


# ---- wording ----------------------------------------------------------------------------------------------
def _error_failure(run: Run, trial: Trial, before: str = "") -> CheckFailed:
    """main() raised: its exception, the student's line, and the pickling advice when it fits."""
    error = trial.step.error or {}
    frames = error.get("frames") or []
    message = str(error.get("message", ""))
    text = f"{trial.shape.label} raised {error.get('error')} ({message}){before}."
    # Python 3.11-3.12: "Can't pickle local object ..."; 3.13: "Can't get local object ..." (AttributeError)
    if "pickl" in message.lower() or "pickling" in str(error.get("error", "")).lower() or "local object" in message:
        text += " " + PICKLE_NOTE
    return CheckFailed(text, locations=run.location(frames[-1] if frames else None, str(error.get("error"))),
                       run=run)


def _hang_failure(run: Run, trial: Trial) -> CheckFailed:
    """main() never returned: explain_hang's sentences."""
    sentences, locations = explain_hang(run)
    return CheckFailed(f"{trial.shape.label} never returned: " + " ".join(sentences), locations=locations, run=run)


def _require_returned(run: Run, trial: Trial) -> None:
    """The call must have returned without an exception."""
    if not trial.step.finished:
        raise _hang_failure(run, trial)
    if trial.step.error is not None:
        raise _error_failure(run, trial)


def _never_ran(counts: CountRuns) -> CheckFailed | None:
    """Calls of main() that never started (the run stopped before them), if any."""
    if len(counts.trials) < len(SHAPES):
        return too_few_ran(counts.run, len(counts.trials), len(SHAPES), "calls of main() ran")
    return None


def _argument_pair(call: dict[str, Any]) -> tuple[Any, Any]:
    """count_primes()'s (start, stop), positional or by keyword."""
    args = [a.get("value") for a in call.get("args") or []]
    kwargs = {k: v.get("value") for k, v in (call.get("kwargs") or {}).items()}
    start = args[0] if args else kwargs.get("start")
    stop = args[1] if len(args) > 1 else kwargs.get("stop")
    return start, stop


def _coverage(trial: Trial) -> str:
    """How the ranges count_primes() was called with miss numbers below the limit, or count some twice."""
    limit = trial.shape.limit
    seen: Counter[int] = Counter()
    for call in trial.calls:
        start, stop = _argument_pair(call)
        if isinstance(start, int) and isinstance(stop, int):
            seen.update(range(max(start, 0), min(stop, limit)))
    gaps = [n for n in range(2, limit) if seen[n] == 0]
    twice = sorted(n for n, c in seen.items() if c > 1 and n >= 2)
    if twice:
        return (f" The ranges count_primes() was called with overlap: {twice[0]} (and {len(twice) - 1} other "
                "number(s)) were counted more than once. Count each range that split() gives exactly once.")
    if gaps:
        return (f" The ranges count_primes() was called with leave out {len(gaps)} number(s) below {limit} (from "
                f"{gaps[0]}): count every range that split(limit, workers) gives.")
    return ""


def _lost_counts(run: Run, trial: Trial, returned: Any, total: int) -> str:
    """Why main() returned something else than the sum of the counts the processes computed."""
    children = {p.pid for p in trial.children}
    puts = [e for e in run.events(grader_events.Q_PUT) if e["pid"] in children and trial.step.contains(e["t"])]
    gets = [e for e in run.events(grader_events.Q_GET) if e["pid"] == trial.main_pid and trial.step.contains(e["t"])]
    if puts and len(gets) < len(puts):
        return (f" The processes put {len(puts)} count(s) on the queue, and main() took only {len(gets)} of them off "
                "it: q.empty() and qsize() are snapshots that say nothing of the counts still to come. Take exactly "
                "one count per process with q.get() (it waits for it), then join the processes.")
    if returned == 0 and any(e["pid"] in children for e in trial.returns):
        return " " + SHARE_NOTE
    if isinstance(returned, int) and returned < total:
        return " Some counts never reached main(): collect every process's count before you add them up."
    return ""


def _count_text(values: list[int]) -> str:
    """'1229 + 1033 + 983' for a message."""
    return " + ".join(map(str, values[:8])) + (" + ..." if len(values) > 8 else "")


# ---- checks -----------------------------------------------------------------------------------------------
@check()
def check_result_exact(student: Student, counts: CountRuns) -> None:
    """Each call of main(limit, workers) returns the number of primes below limit."""
    run = counts.run
    student.show(run)
    for trial in counts.trials:
        _require_returned(run, trial)
        value = trial.step.value or {}
        returned = value.get("value") if "value" in value else value.get("repr")
        if returned == trial.expected and type(returned) is int:
            continue
        counted = [e["value"].get("value") for e in trial.returns if isinstance(e["value"].get("value"), int)]
        total = sum(counted)
        lead = (f"{trial.shape.label} returned {value.get('repr', returned)!s}, but there are {trial.expected} primes "
                f"below {trial.shape.limit}")
        if counted and total == trial.expected:
            why = (f": the calls of count_primes() counted them all ({_count_text(counted)} = {total}), and the "
                   "counts were lost on the way back to main()." + _lost_counts(run, trial, returned, total))
        elif counted:
            why = (f"; the calls of count_primes() added up to {total} ({_count_text(counted)})." + _coverage(trial)
                   + _lost_counts(run, trial, returned, total))
        else:
            why = ": count_primes() never returned a count during that call."
        raise CheckFailed(lead + why, expected=str(trial.expected), actual=str(value.get("repr", returned)), run=run)
    failure = _never_ran(counts)
    if failure is not None:
        raise failure


def _one_process_failure(run: Run, trial: Trial) -> CheckFailed | None:
    """The counting of one call ran in fewer than two processes: say where it ran instead."""
    pids = trial.pids()
    if len(pids) >= 2:
        return None
    pool = [p for p in trial.children if p.target in POOL_TARGETS]
    if pids and pids <= {p.pid for p in trial.children} and len(pool) >= 2:
        return None  # a pool of several processes, one of which happened to take every range
    if not pids:
        if trial.step.error is not None:
            return _error_failure(run, trial, before=", before any count_primes() ran")
        if not trial.step.finished:
            return _hang_failure(run, trial)
        return CheckFailed(f"{trial.shape.label} returned without ever calling count_primes(): the ranges must be "
                           "counted by count_primes(start, stop).", run=run)
    (pid,) = pids
    if pid == trial.main_pid:
        spawns = [e for e in run.events(grader_events.THREAD_SPAWN, pid=pid) if trial.step.contains(e["t"])]
        spawn = spawns[0] if spawns else None
        several = len(spawns) > 1 or len({e.get("tid") for e in trial.calls}) > 1  # idents of ended threads recur
        how = f", in {len(spawns)} threads" if len(spawns) > 1 else ", in several threads" if several else ""
        return CheckFailed(
            f"During {trial.shape.label}, count_primes() ran {len(trial.calls)} time(s), every time in the main "
            f"process{how}. {GIL_NOTE}", expected=f"count_primes() in {trial.shape.workers} processes",
            actual="count_primes() only in the main process",
            locations=run.location(spawn.get("where") if spawn else None, "a thread does the counting"), run=run)
    proc = run.processes.get(pid)
    label = proc.label if proc else f"process {pid}"
    return CheckFailed(
        f"During {trial.shape.label}, every call of count_primes() ran in one process, {label}: one process has one "
        f"GIL and uses one core at a time. Start `workers` processes ({trial.shape.workers} here), e.g. "
        "Pool(workers), and give each of them ranges to count.",
        expected=f"count_primes() in {trial.shape.workers} processes", actual=f"only in {label}",
        locations=run.location(proc.spawn_where if proc else None, "the only process that counts"), run=run)


@check()
def check_work_runs_in_processes(student: Student, counts: CountRuns) -> None:
    """In every call of main(), count_primes() runs in at least two processes (or a pool of several processes)."""
    run = counts.run
    student.show(run)
    raise_first(chain((_one_process_failure(run, trial) for trial in counts.trials), [_never_ran(counts)]))


def _interval(trial: Trial, proc: Proc) -> tuple[float, float]:
    """When a process lived: from its parent's start() to its exit (or the end of the call, or forever)."""
    begin = trial.spawned_at.get(proc.pid, proc.started or 0.0)
    end = proc.exited if proc.exited is not None else (trial.step.end or float("inf"))
    return begin, end


def _overlap(trial: Trial) -> bool:
    """Whether two of the processes that compute for this call were alive at the same time."""
    return any_overlap([_interval(trial, p) for p in trial.computing()])


@check()
def check_processes_compute_together(student: Student, counts: CountRuns) -> None:
    """In some call of main(), two processes that count were alive at the same time (judged from events)."""
    run = counts.run
    student.show(run)
    if any(_overlap(trial) for trial in counts.trials):
        return
    for trial in counts.trials:
        failure = _one_process_failure(run, trial)
        if failure is not None:
            raise CheckFailed("No two processes ever computed at the same time. " + failure.message,
                              expected=failure.expected, actual=failure.actual, locations=failure.locations, run=run)
    trial = next((t for t in counts.trials if len(t.computing()) >= 2), None)
    if trial is None:
        failure = _never_ran(counts)
        raise failure if failure is not None else CheckFailed("No two processes ever computed at the same time.",
                                                              run=run)
    first, second = trial.computing()[:2]
    raise CheckFailed(
        f"During {trial.shape.label}, the processes ran one after another: {first.label} had ended before "
        f"{second.label} was started. Joining each process right after starting it runs them one at a time, no faster "
        "than one process. Start them all first, then join them all (or use a Pool).",
        expected="processes counting at the same time", actual="one process at a time",
        locations=run.location(second.spawn_where, "started only after the previous process ended"), run=run)
