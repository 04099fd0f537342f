"""Shrinking a failing schedule (issue 10): replay one failing trial of a run under the same seed with fewer
of its preemptions (running/conductor.py: a switch away from a thread that could go on), keep each cut that
still breaks the invariant, and hand the smallest failing replay to the explanation: "the grader replayed
this trial with only 2 forced switches, and it still oversold: buyer 3 read ...".

Greedy, in the spirit of delta debugging (Zeller): first no switch, then only the switches between the
processes the witness names, then whole chunks dropped while the failure holds; a few replays of one trial,
so that a check stays fast."""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any, Callable, Collection

from grader.judging import witness
from grader.judging.evidence import Run, Step
from grader.judging.harness import CheckFailed, MachineTooBusy, Student
from grader.probe import grader_events

Preemption = tuple[str, int, str]  # (the thread switched away from, its taken count then, the thread given the turn)
REPLAYS = 6  # replays one shrink may make
SECONDS = 2.5  # wall time one shrink may take, replays included


@dataclass
class Plan:
    """How a run was made (Student.run_steps's arguments), so that one of its steps can be run again alone."""

    label: str
    steps: list[dict[str, Any]]
    call: dict[str, Any]  # contract, spy, files and the run's rules (a `schedule` for a shrinkable run)

    def run(self, student: Student) -> Run:
        """The whole run, as a check module's fixture makes it."""
        return student.run_steps(self.label, self.steps, **self.call)


@dataclass
class Shrunk:
    """The smallest failing replay found of one trial: the replay's own forced switches, and its run."""

    switches: list[Preemption]  # the preemptions the replay made (all of them: its only forced switches)
    before: int  # the trial's preemptions in the run that was judged
    run: Run  # the replay (one step), whose events give the witness
    step: Step
    replays: int  # how many replays the shrink took

    def sentence(self, broke: str, who: str) -> str:
        """What the replay shows, as a sentence before its witness: `broke` says what still happened ("4 buyers
        still got a ticket"), `who` names one process of the trial ("buyer")."""
        kept = len(self.switches)
        what = "(where the grader took the turn from a process that could have gone on"
        if kept == self.before:
            forced = f"the same {kept} forced switches {what})"
        elif kept == 0:
            forced = f"none of its {self.before} forced switches {what}: here each {who} ran until it waited or ended)"
        else:
            forced = f"only {kept} of its {self.before} forced switches {what})"
        return f"The grader replayed this trial alone, with the same seed and {forced}, and {broke}."


def process_of(thread: str) -> str:
    """The process part of a conductor thread name ("Process-3/Thread-1" -> "Process-3")."""
    return thread.split("/", 1)[0]


def trial_preemptions(run: Run, step: Step) -> list[Preemption]:
    """The preemptions of the run that involved a process started by `step` (one trial)."""
    names = {p.name for p in run.children_of_step(step) if p.name}
    found = (run.outcome.schedule or {}).get("preemptions") or []
    return [(str(a), int(k), str(b)) for a, k, b in found if process_of(str(a)) in names or process_of(str(b)) in names]


def _same_labels(replay: Run, run: Run, step: Step) -> None:
    """Name the replay's processes as the run named the same processes of its trial ("buyer 3 of 10 (trial
    1)"): the replay started multiprocessing's counter where the trial did, so each has the same name there.
    Left as they are when a process of the replay is not one of the trial's."""
    labels = {p.name: p.label for p in run.children_of_step(step) if p.name}
    children = [p for p in replay.processes.values() if not p.is_main]
    if all(p.name in labels for p in children):
        for proc in children:
            proc.label = labels[proc.name]


def smallest(student: Student, plan: Plan, run: Run, step: Step, fails: Callable[[Run, Step], bool], *,
             among: Collection[int] = (), replays: int = REPLAYS, seconds: float = SECONDS) -> Shrunk | None:
    """The failing replay of `step` alone with the fewest preemptions found within the budget, trying first
    none, then only those between the processes `among` (pids of `run`, those the witness names), then dropping
    chunks while `fails(replay, its step)` holds. None when no replay reproduced the failure (then say nothing)."""
    schedule = run.outcome.schedule or {}
    rules = plan.call.get("schedule")
    if rules is None or schedule.get("failure") or not 0 <= step.index < len(plan.steps):
        return None
    start = next((e for e in run.events(grader_events.STEP_START) if e.get("step") == step.index), {})
    one = {**plan.steps[step.index], "counters": start.get("counters"),
           "taken": (schedule.get("marks") or {}).get(str(step.index))}
    deadline = time.monotonic() + seconds
    mine = trial_preemptions(run, step)
    focus = {run.processes[pid].name for pid in among if pid in run.processes}
    best: Shrunk | None = None
    made, took = 0, 0.2  # replays made, and the longest one took (the next is not started without that long left)

    def attempt(script: list[Preemption]) -> bool:
        nonlocal best, made, took
        began = time.monotonic()
        left = deadline - began
        if made >= replays or left < took:
            return False
        made += 1
        call = {**plan.call, "schedule": dataclasses.replace(rules, preemptions=list(script)),
                "timeout": max(1.0, left), "step_timeout": max(1.0, left)}
        try:
            replay = student.run_steps(plan.label, [one], **call)
        except (CheckFailed, MachineTooBusy):
            return False
        finally:
            took = max(took, time.monotonic() - began)
        done = replay.steps[0] if replay.steps and replay.steps[0].finished else None
        _same_labels(replay, run, step)
        if replay.hung or done is None or not fails(replay, done):
            return False
        switches = [(str(a), int(k), str(b)) for a, k, b in (replay.outcome.schedule or {}).get("preemptions") or []]
        if best is None or len(switches) <= len(best.switches):
            best = Shrunk(switches, len(mine), replay, done, made)
        return True

    between = [p for p in mine if process_of(p[0]) in focus and process_of(p[2]) in focus]
    current = mine
    if mine and attempt([]):  # no forced switch at all: the program's own waits open the window
        current = []
    elif between and len(between) < len(mine) and attempt(between):
        current = between
    chunk = max(1, len(current) // 2)
    while current and made < replays and time.monotonic() < deadline:
        index, cut = 0, False
        while index < len(current) and made < replays:
            candidate = current[:index] + current[index + chunk:]
            if attempt(candidate):
                current, cut = candidate, True
            else:
                index += chunk
        if chunk == 1 and not cut:
            break
        chunk = max(1, chunk // 2)
    if best is not None:
        best.replays = made
    return best


def witnessed(student: Student, plan: Plan, run: Run, step: Step, seen: witness.Witness | None, *,
              broke: Callable[[Run, Step], str | None], func: str, path: str,
              what: str | Callable[[Run, Step], str], who: str, success: Any = True) -> str:
    """The witness of a check-then-act race (judging/witness.py) taken from the smallest failing replay of
    `step`: a sentence on the replay, then its interleaving, and a space; '' when no replay broke the invariant
    with a pair caught interleaving, or when the run itself showed no such pair (then the caller keeps its own
    reason). `broke(replay, its step)` says what
    still went wrong ("4 buyers still got a ticket"), None when nothing did; `func`, `path`, `success` and `what`
    are witness.find's and Witness.sentence's (`what` may depend on the replay); `who` names one process of the
    trial ("buyer")."""
    def interleaving(replay: Run, again: Step) -> str:
        found = witness.find(replay, again, func, path, success)
        told = what(replay, again) if callable(what) else what
        return found.sentence(replay, again, told) if found else ""

    def fails(replay: Run, again: Step) -> bool:
        return broke(replay, again) is not None and bool(interleaving(replay, again))

    if seen is None or seen.first is None or seen.second is None:
        return ""  # the run showed no pair interleaving: a replay's pair would tell another story than the run's
    among = [seen.first.pid, seen.second.pid]
    shrunk = smallest(student, plan, run, step, fails, among=among)
    if shrunk is None:
        return ""
    return f"{shrunk.sentence(str(broke(shrunk.run, shrunk.step)), who)} {interleaving(shrunk.run, shrunk.step)} "
