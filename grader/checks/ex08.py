"""Checks of exercise 8, lock granularity: one supervised run calls main() with several (workers, count)
settings, score() and add_to_total() spied. Verdicts come from the totals the grader reads back from the
files and from the probe's events, never from wall-clock speed: the lock's holds (who acquired and released
it, when), the score() calls of each worker process (what ran while the lock was held, and whether the
read-only scoring of different processes overlapped)."""
from __future__ import annotations

from dataclasses import dataclass

import pytest

from grader.judging import shrink, witness
from grader.checks.common import (
    TrialRuns, call_raised, crashed_failure, number_in_file, spied_calls, still_below, too_few_ran,
)
from grader.judging.evidence import Hold, Proc, Run, Step, capital, explain_hang, overlapping_holders
from grader.judging.harness import ENDS, CheckFailed, Student, check, crashed_children, scheduled
from grader.results import CriticalSection, Location
from grader.probe import grader_events

EXERCISE = 8
CONTRACT: dict[str, list[str] | None] = {
    "score": ["document"], "add_to_total": ["path", "amount"], "worker": ["path", "lock", "documents"],
    "main": ["path", "workers", "count"],
}
# What the timeline draws as shared: add_to_total() (returning None) is the read-modify-write of the total; when
# the student wrote it out inline, the timeline takes each read of the total and its write back instead.
CRITICAL_SECTION = CriticalSection("add_to_total", None, ["check_total_exact"])
# (workers, count): documents shared out evenly, unevenly, and between two workers only.
SETTINGS = ((4, 12), (3, 7), (2, 6))
SLEEP_SCALE = 0.01  # score() sleeps 0.5-1.5 s: 5-15 ms, as long as a read-modify-write with the probe's delays
TIMEOUT = 20.0
GRANULARITY_ADVICE = ("A lock does not lock the resource, only the code between acquire() and release(): hold it "
                      "only around the read-modify-write of the total (add_to_total), and score outside it.")


@dataclass
class Interval:
    """One score() call of one worker process: from its call to its return (None: never returned)."""

    pid: int
    called: float
    returned: float | None
    where: dict | None


@dataclass
class Trial:
    """One call of main(): its setting, the total the file held afterwards, and what the workers did."""

    step: Step
    workers: int
    count: int
    path: str
    final: object
    workers_seen: list[Proc]
    scores: list[Interval]
    holds: list[Hold]

    @property
    def expected(self) -> int:
        """Document n has n + 1 words: the total is 1 + 2 + ... + count."""
        return self.count * (self.count + 1) // 2

    @property
    def call_text(self) -> str:
        """main(...) as the student would write it."""
        return f"main({self.path!r}, workers={self.workers}, count={self.count})"


@dataclass
class Totals(TrialRuns[Trial]):
    """Its trials (one per call of main() that finished without an error), and how the run was made: a trial
    that lost an update is replayed alone to shrink its schedule."""

    plan: shrink.Plan


def _path(index: int) -> str:
    return f"total-{index}.json"


def _scores(run: Run, pids: set[int]) -> list[Interval]:
    """The score() calls of the given processes, each paired with its return (or exception)."""
    return [Interval(call["pid"], call["t"], end["t"] if end else None, call.get("where"))
            for call, end in spied_calls(run, "score", pids)]


def _trial(run: Run, step: Step) -> Trial:
    workers, count = SETTINGS[step.index]
    children = run.children_of_step(step)
    pids = {p.pid for p in children}
    holds = [h for h in run.holds() if h.pid in pids]
    return Trial(step, workers, count, _path(step.index), number_in_file(run, _path(step.index), "total"), children,
                 _scores(run, pids), holds)


@pytest.fixture(scope="module")
def totals(student: Student) -> Totals:
    """One supervised run of every setting: each check judges the same trials."""
    steps = [{"call": "main", "args": [_path(i), w, c], "label": f"{w} workers, {c} documents"}
             for i, (w, c) in enumerate(SETTINGS)]
    plan = shrink.Plan("totals", steps, dict(contract=CONTRACT, spy=["score", "add_to_total"], sleep_scale=SLEEP_SCALE,
                                             timeout=TIMEOUT, **scheduled()))
    run = plan.run(student)
    return Totals(run, [_trial(run, step) for step in run.steps if step.finished and step.error is None], plan)


def _call_text(index: int) -> str:
    workers, count = SETTINGS[index]
    return f"main({_path(index)!r}, workers={workers}, count={count})"


def _require_finished(totals: Totals) -> None:
    """Every call of main() must have returned, and every worker ended normally."""
    run = totals.run
    if run.hung:
        sentences, locations = explain_hang(run)
        sentences = sentences[:1] + [capital(s) for s in sentences[1:]]
        unfinished = next((s for s in run.steps if not s.finished), None)
        what = _call_text(unfinished.index) if unfinished else "The program"
        advice = ""
        if run.events(grader_events.SELF_DEADLOCK):
            advice = (" Every acquire() needs exactly one release(), before the same process acquires the lock "
                      "again: `with lock:` does that for you.")
        raise CheckFailed(f"{what} did not end: " + " ".join(sentences) + advice, locations=locations, run=run,
                          prerequisite=ENDS)
    for step in run.steps:
        if step.error is not None:
            raise call_raised(run, step, _call_text(step.index))
        crashed = crashed_children(run, run.children_of_step(step))
        if crashed:
            raise crashed_failure(run, crashed, _call_text(step.index), "worker",
                                  locations=run.location(crashed[0][0].spawn_where, "started here"))
    if len(totals.trials) < len(SETTINGS):
        raise too_few_ran(run, len(totals.trials), len(SETTINGS), "calls of main() ran to the end")


def _def_location(run: Run, func: str) -> list[Location]:
    """The line where the student's `func` is defined, from the spy's call events."""
    call = next((e for e in run.events(grader_events.CALL) if e["func"] == func and e.get("def_line")), None)
    return run.location({"line": call["def_line"], "func": func}, func) if call else []


# ---- checks -------------------------------------------------------------------------------------
@check(judges=ENDS)
def check_workers_finish(student: Student, totals: Totals) -> None:
    """Every call of main() returns, and every worker process ends normally."""
    student.show(totals.run)
    _require_finished(totals)


@check()
def check_total_exact(student: Student, totals: Totals) -> None:
    """After every call of main(), the file holds 1 + 2 + ... + count, and main() returns it."""
    run = totals.run
    try:
        _require_finished(totals)
    except CheckFailed as failed:
        raise CheckFailed("The total can only be judged once every worker has finished. " + failed.message,
                          locations=failed.locations, run=run, prerequisite=failed.prerequisite) from None
    student.show(run)
    for trial in totals.trials:
        _judge_total(student, totals, trial)


def _judge_total(student: Student, totals: Totals, trial: Trial) -> None:
    """One call of main(): the file's total must be exact, and main() must return it."""
    run = totals.run
    scored = len([s for s in trial.scores if s.returned is not None])
    setting = (f"{trial.call_text} shares {trial.count} documents (1 to {trial.count} words) out among "
               f"{trial.workers} workers, so the total must end at {trial.expected}")
    final = trial.final
    if final == trial.expected:
        value = (trial.step.value or {}).get("value")
        if value != trial.expected:
            raise CheckFailed(f"{setting}; the file holds it, but main() returned "
                              f"{(trial.step.value or {}).get('repr')}: return the final total.",
                              expected=str(trial.expected), actual=str((trial.step.value or {}).get("repr")),
                              run=run)
        return
    if not isinstance(final, int):
        why = f"{trial.path} holds {final!r} instead of a total."
    elif scored != trial.count:
        why = (f"it ended at {final}, and score() was called {scored} time(s) for {trial.count} documents: "
               "every document must be scored once, by one worker.")
    elif final > trial.expected:
        why = f"it ended at {final}, more than the scores add up to."
    else:
        seen = witness.find(run, trial.step, "add_to_total", trial.path, witness.ANY)
        what = "added their score, and the second write overwrote the first"
        told = seen.told(run, trial.step, what) if seen else ""
        told = shrink.witnessed(student, totals.plan, run, trial.step, seen, func="add_to_total", path=trial.path,
                                what=what, success=witness.ANY, who="worker",
                                broke=still_below(trial.path, "total", trial.expected)) or told
        misplaced = seen.placement_sentence(run, "total") if seen else ""
        why = (f"it ended at {final}: some scores were added and then lost. {told}"
               f"{misplaced or _lost_update_cause(run, trial)}")
        if misplaced and seen is not None:
            raise CheckFailed(f"{setting}, but {why}", expected=f"total {trial.expected}", actual=f"total {final}",
                              locations=seen.locations(run), run=run)
    locations = _def_location(run, "add_to_total") if run.returns("add_to_total") else []
    if not locations and trial.holds:  # the read-modify-write is written out in worker: show the lock's line
        locations = run.location(trial.holds[0].where, "acquires the lock")
    raise CheckFailed(f"{setting}, but {why}", expected=f"total {trial.expected}", actual=f"total {final}",
                      locations=locations, run=run)


def _lost_update_cause(run: Run, trial: Trial) -> str:
    """Why two workers could read the same total: no lock, different locks, or a lock that does not cover it all."""
    if not trial.holds:
        return ("The workers never held a shared multiprocessing lock, so two of them read the same total, each "
                "added its score, and the second write overwrote the first: a lost update. Keep the lock that "
                "main() passes, and hold it around the whole read-modify-write.")
    names = overlapping_holders(run, trial.holds)
    if names is not None:
        return (f"{capital(names[0])} and {names[1]} held 'the' lock at the same moment, so they held two "
                "different locks: a lock protects nothing unless every process uses the same lock object, "
                "the one main() passes to every worker.")
    return ("Two workers read the same total, each added its score, and the second write overwrote the first: the "
            "lock does not cover the whole read-modify-write. Hold it from the read of the total to its write, in "
            "one critical section.")


@check()
def check_scoring_outside_lock(student: Student, totals: Totals) -> None:
    """No score() call runs while its worker holds the lock: the lock covers only the read-modify-write."""
    run = totals.run
    for trial in totals.trials:
        for interval in trial.scores:
            hold = next((h for h in trial.holds if h.pid == interval.pid and h.acquired <= interval.called
                         and (h.released is None or h.released >= (interval.returned or interval.called))), None)
            if hold is not None:
                raise _scored_under_lock(run, trial, interval, hold)
    if not totals.trials:
        _require_finished(totals)
    student.show(run)


def _scored_under_lock(run: Run, trial: Trial, interval: Interval, hold: Hold) -> CheckFailed:
    """A worker that called score() while it held the lock: say where, and how much of its hold it was."""
    proc = run.processes.get(interval.pid)
    who = proc.label if proc else f"process {interval.pid}"
    own = [s for s in trial.scores if s.pid == interval.pid]
    under = [s for s in own if any(h.pid == s.pid and h.covers(s.called) for h in trial.holds)]
    share = f" It did so for {len(under)} of its {len(own)} document(s)." if len(own) > 1 else ""
    where = f" at {run.describe_where(interval.where)}" if interval.where else ""
    return CheckFailed(
        f"During {trial.call_text}, {who} called score(){where} while it held the lock it took at "
        f"{run.describe_where(hold.where)}.{share} score() is slow and only reads its document: while one worker "
        f"scores under the lock, every other worker waits for the lock, and the workers take turns instead of "
        f"working in parallel. {GRANULARITY_ADVICE}",
        expected="the lock held around the read-modify-write only", actual="score() called under the lock",
        locations=run.location(hold.where, "acquires the lock") + run.location(interval.where, "score() under the lock"),
        run=run)


@check()
def check_scoring_parallel(student: Student, totals: Totals) -> None:
    """In some call of main(), score() calls of two different worker processes overlapped."""
    run = totals.run
    for trial in totals.trials:
        done = [s for s in trial.scores if s.returned is not None]
        if any(a.pid != b.pid and a.called < b.returned and b.called < a.returned  # type: ignore[operator]
               for i, a in enumerate(done) for b in done[i + 1:]):
            student.show(run)
            return
    _require_finished(totals)
    if not any(trial.scores for trial in totals.trials):
        raise CheckFailed("score() was never called in a worker process: each worker must score its documents "
                          "with score(document).", locations=_def_location(run, "worker"), run=run)
    raise CheckFailed(f"In every call of main(), the workers scored one at a time: no two workers' score() calls "
                      f"ever overlapped. {_serial_cause(run, totals.trials)}",
                      expected="score() running in several workers at once", actual="one score() at a time",
                      locations=_serial_locations(run, totals.trials), run=run)


def _serial_cause(run: Run, trials: list[Trial]) -> str:
    """Why the scoring was serial: the lock around it, or workers that never ran at the same time."""
    for trial in trials:
        under = [s for s in trial.scores if any(h.pid == s.pid and h.covers(s.called) for h in trial.holds)]
        if under:
            return (f"Every worker called score() while it held the lock, so each waited for the lock before it could "
                    f"even read its document. {GRANULARITY_ADVICE}")
    workers = [p for trial in trials for p in trial.workers_seen if p.ran is not None and p.exited is not None]
    overlapping = any(a.ran < b.exited and b.ran < a.exited  # type: ignore[operator]
                      for i, a in enumerate(workers) for b in workers[i + 1:])
    if not overlapping:
        return ("The worker processes never ran at the same time: each started only after the previous one had "
                "ended. Joining each process right after starting it removes all concurrency: start every worker, "
                "then join them all.")
    return "Start every worker before you join any, and keep score() outside the lock."


def _serial_locations(run: Run, trials: list[Trial]) -> list[Location]:
    """The lock's acquire under which a worker scored, else the line that starts the workers."""
    for trial in trials:
        for interval in trial.scores:
            hold = next((h for h in trial.holds if h.pid == interval.pid and h.covers(interval.called)), None)
            if hold is not None:
                return run.location(hold.where, "acquires the lock before score()")
    first = next((p for trial in trials for p in trial.workers_seen if p.spawn_where), None)
    return run.location(first.spawn_where if first else None, "start() followed by join()")
