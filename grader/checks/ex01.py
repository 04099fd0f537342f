"""Checks of exercise 1, the oversold ticket: many seeded trials of main() with several (tickets, buyers)
settings, judged from the file the grader reads back and from buy_ticket's results as the probe saw them.
What students see of each check (its title, points and hint) is in grader/course.toml, [exercise.check.NAME]."""
from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from grader.checks.common import TrialRuns, one_at_a_time, ran_together, too_few_ran
from grader.judging import shrink, witness
from grader.judging.evidence import Run, Step, capital
from grader.judging.harness import ENDS, CheckFailed, Student, check, crashed_children, require_ended, scheduled
from grader.probe import grader_events
from grader.results import CriticalSection

EXERCISE = 1
CONTRACT = {
    "load": ["db_path"], "save": ["db_path", "data"], "check_ticket": ["db_path"],
    "buy_ticket": ["db_path", "lock"], "buyer": ["db_path", "lock"], "main": ["db_path", "buyers"],
}
# What the timeline draws as shared: buy_ticket() must run one buyer at a time, returns True when it sold a
# ticket, and its overlaps explain the failure of these checks (a buyer waiting for a file lock, which the
# probe does not record, also sits inside it: only then is an overlap drawn red).
CRITICAL_SECTION = CriticalSection("buy_ticket", True, ["check_no_ticket_is_oversold", "check_file_matches_sales"])
# (tickets, buyers): scarce tickets expose overselling; more tickets than buyers checks nobody is refused.
SETTINGS = [(1, 10), (2, 6), (1, 8), (3, 5), (5, 5), (6, 4)]
# Under a further start method of --start-method all: one scarce setting shows what a child inherits,
# pickles or re-imports (the races themselves are tried under every setting under the first method).
RERUN_SETTINGS = [(3, 5)]


@dataclass
class Trial:
    """One call of main(): the setting, what the file said afterwards, and what each buyer got."""

    step: Step
    tickets: int
    buyers: int
    final: object
    sold: int
    winners: list[str]
    db: str


@dataclass
class TicketRuns(TrialRuns[Trial]):
    """The run behind every verdict, its trials, and the (tickets, buyers) settings it tried."""

    settings: list[tuple[int, int]]
    plan: shrink.Plan  # how the run was made: a failing trial is replayed alone to shrink its schedule


def _trial(run: Run, step: Step, tickets: int, buyers: int, db: str) -> Trial:
    children = run.children_of_step(step)
    pids = {p.pid for p in children}
    wins = [e for e in run.returns("buy_ticket", pids) if e["value"].get("value") is True]
    try:
        final = json.loads(run.outcome.files.get(db, "null"))["count"]
    except (ValueError, TypeError, KeyError):
        final = run.outcome.files.get(db, "<missing>")
    labels = [run.processes[e["pid"]].label for e in wins if e["pid"] in run.processes]
    return Trial(step, tickets, buyers, final, len(wins), labels, db)


@pytest.fixture(scope="module")
def tickets(student: Student) -> TicketRuns:
    """One supervised run of every setting: each check judges the same trials."""
    settings = list(student.trials(SETTINGS, RERUN_SETTINGS))
    files = {f"tickets-{i}.json": json.dumps({"count": t}) for i, (t, _) in enumerate(settings)}
    steps = [{"call": "main", "args": [f"tickets-{i}.json", b], "label": f"{t} tickets, {b} buyers"}
             for i, (t, b) in enumerate(settings)]
    plan = shrink.Plan("tickets", steps, dict(contract=CONTRACT, spy=["buy_ticket", "buyer"], files=files,
                                              timeout=40, step_timeout=8, **scheduled()))
    run = plan.run(student)
    trials = [
        _trial(run, step, *settings[step.index], db=f"tickets-{step.index}.json") for step in run.steps
        if step.finished and step.error is None
    ]
    return TicketRuns(run, trials, settings, plan)


def _require_completed(runs: TicketRuns) -> None:
    """Every verdict below needs the trials to have run to the end, without a hang or a crash in main()."""
    run = runs.run
    require_ended(run, "The ticket sale")
    for step in run.steps:
        if step.error is not None:
            frames = step.error.get("frames") or []
            raise CheckFailed(
                f"main() raised {step.error['error']} ({step.error['message']}) with {step.label}.",
                locations=run.location(frames[-1] if frames else None, step.error["error"]), run=run,
                prerequisite=ENDS)
    if len(runs.trials) < len(runs.settings):
        raise too_few_ran(run, len(runs.trials), len(runs.settings), "trials of main() ran to the end", ENDS)


def _invariant(trial: Trial) -> str:
    """What must hold after a trial, stated so that a student can check it against the actual state."""
    return f"at most {trial.tickets} sold, and the file's count = {trial.tickets} − sold"


def _state(trial: Trial) -> str:
    """What the trial ended with: the sales the buyers were told of, and the count the file holds."""
    count = trial.final if isinstance(trial.final, int) else repr(trial.final)
    return f"{trial.sold} sold, count {count}"


def _buy_ticket_line(run: Run) -> list:
    call = next((e for e in run.events(grader_events.CALL) if e["func"] == "buy_ticket" and e.get("def_line")), None)
    return run.location({"line": call["def_line"], "func": "buy_ticket"}, "buy_ticket") if call else []


@check()
def check_no_ticket_is_oversold(student: Student, tickets: TicketRuns) -> None:
    _require_completed(tickets)
    student.show(tickets.run)
    for trial in tickets.trials:
        if trial.sold > trial.tickets:
            run = tickets.run
            seen = witness.find(run, trial.step, "buy_ticket", trial.db)
            told = seen.told(run, trial.step, f"sold: {trial.sold} sales of {trial.tickets} ticket(s)") if seen else ""
            told = _shrunk_witness(student, tickets, trial, seen) or told
            misplaced = seen.placement_sentence(run, "count") if seen else ""
            why = misplaced or ("Several buyers read the same count before any of them wrote it back, so each sold "
                                "the 'same' ticket: the read-decide-write in buy_ticket is not a critical section.")
            raise CheckFailed(
                f"With {trial.tickets} ticket(s) and {trial.buyers} buyers, {trial.sold} buyers got a ticket: "
                f"{', '.join(trial.winners[:4])}{f' and {len(trial.winners) - 4} more' if len(trial.winners) > 4 else ''}. "
                f"{told}{why}",
                expected=_invariant(trial), actual=_state(trial),
                locations=(seen.locations(run) if misplaced and seen else _buy_ticket_line(run)), run=run)


def _shrunk_witness(student: Student, tickets: TicketRuns, trial: Trial, seen: witness.Witness | None) -> str:
    """The trial replayed alone with the fewest forced switches that still oversold, as the interleaving that
    broke the invariant ('' when no replay reproduced it)."""
    def again(replay: Run, step: Step) -> Trial:
        return _trial(replay, step, trial.tickets, trial.buyers, trial.db)

    def oversold(replay: Run, step: Step) -> str | None:
        sold = again(replay, step).sold
        return f"{sold} buyers still got a ticket" if sold > trial.tickets else None

    def sales(replay: Run, step: Step) -> str:
        return f"sold: {again(replay, step).sold} sales of {trial.tickets} ticket(s)"

    return shrink.witnessed(student, tickets.plan, tickets.run, trial.step, seen, broke=oversold, func="buy_ticket",
                            path=trial.db, what=sales, who="buyer")


@check()
def check_file_matches_sales(student: Student, tickets: TicketRuns) -> None:
    _require_completed(tickets)
    student.show(tickets.run)
    for trial in tickets.trials:
        expected = trial.tickets - trial.sold
        if trial.final == expected and expected >= 0:
            continue
        setting = f"With {trial.tickets} ticket(s) and {trial.buyers} buyers, {trial.sold} buyer(s) were told they got a ticket"
        if not isinstance(trial.final, int):
            why = f"the file holds {trial.final!r} instead of a count."
        elif trial.final < 0:
            why = f"the count went down to {trial.final}: tickets were sold that did not exist."
        elif trial.final > expected:
            why = (f"the count went from {trial.tickets} only to {trial.final}: {trial.final - expected} sale(s) were "
                   "never written back. Two buyers wrote the count from the same read, and one update was lost.")
        else:
            why = f"the count went from {trial.tickets} down to {trial.final}, more than the tickets sold."
        raise CheckFailed(f"{setting}, but {why}", expected=_invariant(trial), actual=_state(trial),
                          locations=_buy_ticket_line(tickets.run), run=tickets.run)


@check()
def check_all_tickets_sold(student: Student, tickets: TicketRuns) -> None:
    _require_completed(tickets)
    student.show(tickets.run)
    for trial in tickets.trials:
        if trial.buyers >= trial.tickets and trial.sold < trial.tickets:
            raise CheckFailed(
                f"With {trial.tickets} ticket(s) and {trial.buyers} buyers, only {trial.sold} ticket(s) were sold "
                f"and {trial.final} left unsold.", expected=f"{trial.tickets} sold", actual=f"{trial.sold} sold",
                locations=_buy_ticket_line(tickets.run), run=tickets.run)


@check(judges=ENDS)
def check_every_buyer_finishes(student: Student, tickets: TicketRuns) -> None:
    run = tickets.run
    student.show(run)
    require_ended(run, "The ticket sale")
    for step in run.steps:
        crashed = crashed_children(run, run.children_of_step(step))
        if crashed:
            proc, last_line = crashed[0]
            raise CheckFailed(
                f"{capital(proc.label)} crashed with {step.label}: {last_line}. A crashed buyer is a failure of the program, "
                "not bad luck: its full traceback is in the report.", run=run)
    _require_completed(tickets)


@check()
def check_buyers_are_concurrent(student: Student, tickets: TicketRuns) -> None:
    _require_completed(tickets)
    run = tickets.run
    student.show(run)
    if any(trial.buyers >= 2 and ran_together(run.children_of_step(trial.step)) for trial in tickets.trials):
        return
    raise one_at_a_time(
        run, run.processes.values(),
        "The buyers never ran at the same time: each started only after the previous one had ended. Joining each "
        "process right after starting it avoids the race by removing the concurrency, and fixes the order of the "
        "buyers; a lock serialises only the critical section and keeps the competition fair.", "buyer")
