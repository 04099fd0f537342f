"""Checks of exercise 4, the double acquire: one supervised run of main() (clients depositing concurrently,
then each refused a withdrawal) and one run that calls withdraw() directly, a fresh lock per call, so that
the deposit bug and the withdraw bug each fail their own checks. Verdicts come from the account files the
grader reads back and from the probe's lock events (who acquired and released which lock, where)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest

from grader.checks.common import call_raised, crashed_failure, number_in_file, still_below, too_few_ran
from grader.judging import shrink, witness
from grader.judging.evidence import Hold, Run, Step, capital, explain_hang, overlapping_holders
from grader.judging.harness import ENDS, CheckFailed, Student, check, crashed_children, scheduled
from grader.results import CriticalSection, Location
from grader.probe import grader_events

EXERCISE = 4
CRITICAL_SECTION = CriticalSection("deposit", None, ["check_final_balance_exact"])  # a deposit returns None
CONTRACT: dict[str, list[str] | None] = {
    "InsufficientFunds": None, "read_balance": ["db_path", "lock"], "deposit": ["db_path", "lock", "amount"],
    "withdraw": ["db_path", "lock", "amount"], "client": ["db_path", "lock", "deposits", "amount"],
    "main": ["db_path", "clients", "deposits", "amount"],
}
BANK_DB, CLIENTS, DEPOSITS, AMOUNT = "bank.json", 4, 5, 10  # 20 concurrent deposits: lost updates always show
START = 30  # balance of each account of the withdrawal scenario
REFUSED, ALLOWED = 100, 10  # a withdrawal the balance cannot pay, and one it can
# The withdrawal scenario: each withdrawal gets a fresh lock; each lock is then taken again by read_balance,
# so a lock a withdrawal left held shows (a Lock then blocks for good) after the other steps were judged.
SCENARIO = (("withdraw", "refused.json", "refused", REFUSED), ("withdraw", "allowed.json", "allowed", ALLOWED),
            ("read_balance", "refused.json", "refused", None), ("read_balance", "allowed.json", "allowed", None))
REENTRY_ADVICE = ("While you hold the lock, do not call a function that takes it again: read the file with "
                  "load() directly (or make the lock an RLock, which its holder may take again).")
RELEASE_ADVICE = ("Every acquire() needs exactly one release(), on every path, exceptions included: "
                  "`with lock:` (or try/finally) does that for you.")


@dataclass
class Bank:
    """The supervised run of main(): its step, and the balance the account file held afterwards."""

    run: Run
    step: Step | None
    final: object
    plan: shrink.Plan  # how the run was made: a trial that lost a deposit is replayed alone to shrink its schedule


@dataclass
class Withdrawals:
    """The run that calls withdraw() and read_balance() directly, and the kind of lock it passed."""

    run: Run
    kind: str


def _call_text() -> str:
    """main(...) as the student would write it, for messages."""
    return f"main({BANK_DB!r}, clients={CLIENTS}, deposits={DEPOSITS}, amount={AMOUNT})"


@pytest.fixture(scope="module")
def bank(student: Student) -> Bank:
    """One supervised run of main(): every check of the whole program judges it."""
    step = {"call": "main", "args": [BANK_DB, CLIENTS, DEPOSITS, AMOUNT], "label": "4 clients"}
    plan = shrink.Plan("bank", [step], dict(contract=CONTRACT, spy=["deposit", "withdraw"], timeout=20, **scheduled()))
    run = plan.run(student)
    return Bank(run, run.steps[0] if run.steps else None, number_in_file(run, BANK_DB, "balance"), plan)


def _lock_kind(run: Run) -> str:
    """The kind of lock the student's main() shares (Lock or RLock); RLock when the probe saw none."""
    kinds = [e.get("kind") for e in run.events(grader_events.ACQUIRE_WAIT)]
    return "Lock" if kinds and all(k == "Lock" for k in kinds) else "RLock"


@pytest.fixture(scope="module")
def withdrawals(student: Student, bank: Bank) -> Withdrawals:
    """withdraw() called directly, with the kind of lock the student's main() makes: each bug on its own."""
    kind = _lock_kind(bank.run)
    placeholder = "$lock" if kind == "Lock" else "$rlock"
    steps = [{"call": call, "args": [db, {placeholder: lock}] + ([amount] if amount is not None else []),
              "label": _scenario_text(index, kind)} for index, (call, db, lock, amount) in enumerate(SCENARIO)]
    files = {name: json.dumps({"balance": START}) for name in ("refused.json", "allowed.json")}
    run = student.run_steps("withdrawals", steps, contract=CONTRACT, spy=["withdraw"], files=files, timeout=20,
                           **scheduled())
    return Withdrawals(run, kind)


def _scenario_text(index: int, kind: str = "Lock") -> str:
    """Step `index` of the withdrawal scenario as the student would write the call."""
    call, db, _, amount = SCENARIO[index]
    lock = "lock" if kind == "Lock" else "rlock"
    return f"{call}({db!r}, {lock}" + (f", {amount})" if amount is not None else ")")


# ---- reading lock events ------------------------------------------------------------------------
def _double_acquires(run: Run) -> list[dict[str, Any]]:
    """self_deadlock events of a process taking, inside one step, a Lock it took earlier in that step.

    A later step that finds a lock left held by an earlier one is the earlier step's missing release,
    not a double acquire, so it is left out."""
    found = []
    for event in run.events(grader_events.SELF_DEADLOCK):
        step = next((s for s in run.steps if s.contains(event["t"])), None)
        held = [h for h in run.holds() if h.pid == event["pid"] and h.lock == event["lock"] and h.acquired <= event["t"]
                and (h.released is None or h.released > event["t"])]
        if step is not None and held and step.contains(held[-1].acquired):
            found.append(event)
    return found


def _unreleased(run: Run, step: Step) -> list[Hold]:
    """Locks the main process took during a finished step and still held when the call was over."""
    main = run.main.pid if run.main else None
    return [h for h in run.holds() if h.pid == main and step.contains(h.acquired) and step.end is not None
            and (h.released is None or h.released > step.end)]


def _extra_releases(run: Run, step: Step) -> list[dict[str, Any]]:
    """release() calls during a step by a process that did not hold that lock (any more)."""
    count: dict[tuple[int, int, str], int] = {}
    extra = []
    for event in run.events(grader_events.ACQUIRED, grader_events.RELEASED, grader_events.RELEASE_ERROR):
        key = (event["pid"], event.get("tid", 0), event["lock"])
        if event["ev"] == grader_events.ACQUIRED:
            count[key] = count.get(key, 0) + 1
        elif event["ev"] == grader_events.RELEASED and count.get(key, 0) > 0:
            count[key] -= 1
        elif event["ev"] == grader_events.RELEASED and step.contains(event["t"]):
            extra.append(event)
    return extra


def _overlapping_holders(run: Run, pids: set[int]) -> tuple[str, str] | None:
    """Two of these processes that held 'the' lock at the same moment."""
    return overlapping_holders(run, [h for h in run.holds() if h.pid in pids])


def _def_location(run: Run, func: str) -> list[Location]:
    """The line where the student's `func` is defined, from the spy's call events."""
    call = next((e for e in run.events(grader_events.CALL) if e["func"] == func and e.get("def_line")), None)
    return run.location({"line": call["def_line"], "func": func}, func) if call else []


# ---- what every verdict on main() needs -------------------------------------------------------
def _sentences(run: Run) -> tuple[list[str], list[Location]]:
    """explain_hang's sentences, every one after the first (which follows a colon) with a capital letter."""
    sentences, locations = explain_hang(run)
    return sentences[:1] + [capital(s) for s in sentences[1:]], locations


def _raised_holding(run: Run) -> list[str]:
    """For each lock left held by a process that has ended: the spied call that raised while holding it."""
    found = []
    ended = {p.pid: p for p in run.processes.values() if p.exited is not None}
    for hold in run.holds():
        if hold.released is not None or hold.pid not in ended:
            continue
        raised = next((e for e in run.events(grader_events.RAISE, pid=hold.pid) if e["t"] >= hold.acquired), None)
        if raised is not None:
            found.append(f"{capital(ended[hold.pid].label)} left it held: its "
                         f"{raised['func']}() raised {raised['error']} while holding the lock, and no release() ran "
                         "on that path.")
    return found


def _hang_failure(run: Run, what: str) -> CheckFailed:
    """A hang explained in plain words, with the advice that fits its cause."""
    sentences, locations = _sentences(run)
    advice = [REENTRY_ADVICE] if run.events(grader_events.SELF_DEADLOCK) else []
    ended = {p.pid for p in run.processes.values() if p.exited is not None}
    raised = _raised_holding(run)
    if raised:
        advice += raised + [RELEASE_ADVICE]
    elif any(h.released is None and h.pid in ended for h in run.holds()):
        advice.append("A process that ends while it holds the lock never releases it. " + RELEASE_ADVICE)
    return CheckFailed(f"{what} did not end: " + " ".join(sentences + advice), locations=locations, run=run,
                       prerequisite=ENDS)


def _require_ended(bank: Bank) -> Step:
    """main() must have returned, without a hang or an exception; returns its step."""
    run = bank.run
    if run.hung:
        raise _hang_failure(run, _call_text())
    step = bank.step
    if step is None or not step.finished:
        raise CheckFailed(f"{_call_text()} never returned (exit code {run.outcome.returncode}).", run=run,
                          prerequisite=ENDS)
    if step.error is not None:
        raise call_raised(run, step, _call_text(), prerequisite=ENDS)
    return step


def _require_finished(bank: Bank) -> Step:
    """main() must have returned and every client process must have ended normally; returns main's step."""
    run = bank.run
    step = _require_ended(bank)
    crashed = crashed_children(run, run.children_of_step(step))
    if crashed:
        raise crashed_failure(run, crashed, _call_text(), "client")
    return step


@check(judges=ENDS)
def check_program_ends(student: Student, bank: Bank) -> None:
    """main() returns and every client ends normally; a hang is explained (a double acquire, a lock left held)."""
    student.show(bank.run)
    _require_finished(bank)


@check()
def check_no_double_acquire(student: Student, bank: Bank, withdrawals: Withdrawals) -> None:
    """No process blocks on a Lock it holds itself (in main(), or inside one direct call of withdraw)."""
    for run, during in ((bank.run, ""), (withdrawals.run, withdrawals.kind)):
        events = _double_acquires(run)
        if events:
            raise _double_acquire_failure(run, events[0], during)
    run = bank.run
    student.show(run)
    if run.returns("deposit"):
        return  # deposits went through without a double acquire
    if run.hung:  # stuck before any deposit finished, for another reason: say which
        raise _hang_failure(run, f"No deposit() ever finished, and {_call_text()}")
    _require_finished(bank)


def _double_acquire_failure(run: Run, event: dict[str, Any], scenario_kind: str) -> CheckFailed:
    """A process that blocked on a Lock it already held, with both lines (for the scenario: during which call)."""
    proc = run.processes.get(event["pid"])
    who = proc.label if proc else f"process {event['pid']}"
    if scenario_kind:
        index = next((s.index for s in run.steps if s.contains(event["t"])), 0)
        who += f" (during {_scenario_text(index, scenario_kind)})"
    since = event.get("held_since")
    return CheckFailed(
        f"{who} blocks acquiring the lock at {run.describe_where(event.get('where'))} while it already holds it"
        + (f" since {run.describe_where(since)}" if since else "")
        + f": a Lock is not reentrant, so it waits for itself forever. {REENTRY_ADVICE}",
        expected="one acquire() per process until its release()", actual="a second acquire() by the holder",
        locations=run.location(event.get("where"), "acquires the lock a second time")
        + run.location(since, "first acquired the lock here"), run=run)


@check()
def check_final_balance_exact(student: Student, bank: Bank) -> None:
    """After 20 concurrent deposits and 4 refused withdrawals, the account holds exactly what was deposited."""
    run = bank.run
    try:
        step = _require_finished(bank)
    except CheckFailed as failed:
        raise CheckFailed("The final balance can only be judged once every client has finished. " + failed.message,
                          locations=failed.locations, run=run, prerequisite=failed.prerequisite) from None
    student.show(run)
    expected = CLIENTS * DEPOSITS * AMOUNT
    final = bank.final
    if final == expected:
        return
    children = {p.pid for p in run.children_of_step(step)}
    done = len(run.returns("deposit", children))
    setting = (f"{CLIENTS} clients made {DEPOSITS} deposits of {AMOUNT} each ({done} calls of deposit() returned), "
               f"then one refused withdrawal each, so the balance must end at {expected}")
    if not isinstance(final, int):
        why = f"{BANK_DB} holds {final!r} instead of a balance."
    elif final < 0:
        why = (f"it ended at {final}: a withdrawal that was refused took money anyway. A refused withdrawal must "
               "leave the balance unchanged: check the balance before you write anything.")
    elif final > expected:
        why = f"it ended at {final}, more than was deposited."
    unprotected: list[Location] = []
    if isinstance(final, int) and 0 <= final <= expected:
        lost = f"{(expected - final) / AMOUNT:g}"
        cause, unprotected = _lost_update_cause(student, bank, children, step)
        why = f"it ended at {final}: {lost} deposit(s) were lost. {cause}"
    raise CheckFailed(f"{setting}, but {why}", expected=f"balance {expected}", actual=f"balance {final}",
                      locations=unprotected or _def_location(run, "deposit"), run=run)


def _lost_update_cause(student: Student, bank: Bank, clients: set[int], step: Step) -> tuple[str, list[Location]]:
    """Why two clients could read the same balance: no lock, different locks, or a lock that does not cover it all;
    led by the witness, the interleaving of two deposits that lost one (from the run replayed with the fewest
    forced switches that still lost one, when a replay did)."""
    run = bank.run
    seen = witness.find(run, step, "deposit", BANK_DB, witness.ANY)
    what = "deposited, and the second write overwrote the first"
    told = seen.told(run, step, what) if seen else ""
    told = shrink.witnessed(student, bank.plan, run, step, seen, func="deposit", path=BANK_DB, what=what,
                            success=witness.ANY, who="client",
                            broke=still_below(BANK_DB, "balance", CLIENTS * DEPOSITS * AMOUNT)) or told
    misplaced = seen.placement_sentence(run, "balance") if seen else ""
    if misplaced and seen is not None:
        return told + misplaced, seen.locations(run)
    return told + _lost_update_reason(run, clients), []


def _lost_update_reason(run: Run, clients: set[int]) -> str:
    """The lost update's cause in general words, by where the lock was."""
    if not [h for h in run.holds() if h.pid in clients]:
        return ("The clients never held a shared multiprocessing lock, so two of them read the same balance, each "
                "added its amount, and the second write overwrote the first: a lost update. Keep the lock that main() "
                "passes, and hold it from deposit's read to its write.")
    pair = _overlapping_holders(run, clients)
    if pair is not None:
        return (f"{pair[0]} and {pair[1]} held 'the' lock at the same moment, so they held two different locks: a "
                "lock protects nothing unless every process uses the same lock object, the one main() passes. Two "
                "clients then read the same balance and the second write overwrote the first.")
    return ("Two clients read the same balance, each added its amount, and the second write overwrote the first: "
            "the lock does not cover the whole read-modify-write. Hold it from deposit's read to its write, in one "
            "critical section (and read with load() there, since the lock is already held).")


# ---- withdraw on its own ------------------------------------------------------------------------
def _scenario_hang(withdrawals: Withdrawals, step: Step) -> CheckFailed:
    """The scenario stopped inside a step: say which call never returned, and why."""
    run = withdrawals.run
    sentences, locations = _sentences(run)
    return CheckFailed(f"{_scenario_text(step.index, withdrawals.kind)} never returned: " + " ".join(sentences),
                       locations=locations, run=run)


def _holding_failure(withdrawals: Withdrawals, step: Step, hold: Hold) -> CheckFailed:
    """A call that was over while it still held the lock it took."""
    run = withdrawals.run
    call = _scenario_text(step.index, withdrawals.kind)
    if step.error is not None:
        frames = step.error.get("frames") or []
        line = f" at line {frames[-1]['line']}" if frames and frames[-1].get("line") else ""
        how = f"raised {step.error['error']}{line}"
        locations = run.location(frames[-1] if frames else None, f"raises {step.error['error']} holding the lock")
    else:
        how, locations = "returned", []
    balance = f" with a balance of {START}" if SCENARIO[step.index][0] == "withdraw" else ""
    message = (f"{call}{balance} {how} while it still held the lock it took at {run.describe_where(hold.where)}: "
               f"that path has no release(), so the next client that wants the lock waits forever. {RELEASE_ADVICE}")
    later = [s for s in run.steps if s.index > step.index and not s.finished]
    if later and run.hung:
        message += (f" Here, {_scenario_text(later[0].index, withdrawals.kind)} then never returned: "
                    + " ".join(_sentences(run)[0]))
    return CheckFailed(message, expected="the lock released when the call is over", actual="the lock still held",
                       locations=run.location(hold.where, "acquires the lock") + locations, run=run)


@check()
def check_withdraw_releases_lock(student: Student, withdrawals: Withdrawals) -> None:
    """Each direct call is over with no lock still held and none released twice, a refused withdrawal included."""
    run = withdrawals.run
    student.show(run)
    for step in run.steps:
        if not step.finished:
            raise _scenario_hang(withdrawals, step)
        held = _unreleased(run, step)
        if held:
            raise _holding_failure(withdrawals, step, held[0])
        extra = _extra_releases(run, step)
        if extra:
            where = extra[0].get("where")
            raise CheckFailed(
                f"{_scenario_text(step.index, withdrawals.kind)} released the lock at {run.describe_where(where)} "
                "when it no longer held it: a lock released twice can free it while another process holds it, and "
                f"then two clients are in the critical section at once. {RELEASE_ADVICE}",
                expected="one release() per acquire()", actual="one release() too many",
                locations=run.location(where, "releases a lock it does not hold"), run=run)
    if len(run.steps) < len(SCENARIO):
        raise too_few_ran(run, len(run.steps), len(SCENARIO), "calls ran")


@check()
def check_refusal_changes_nothing(student: Student, withdrawals: Withdrawals) -> None:
    """withdraw(100) from 30 raises InsufficientFunds and leaves 30; withdraw(10) from 30 leaves 20."""
    run = withdrawals.run
    student.show(run)
    for index in (0, 1):
        if index >= len(run.steps):
            raise CheckFailed(f"{_scenario_text(index, withdrawals.kind)} never ran (exit code "
                              f"{run.outcome.returncode}).", run=run)
        if not run.steps[index].finished:
            raise _scenario_hang(withdrawals, run.steps[index])
    _judge_refused(withdrawals, run.steps[0])
    _judge_allowed(withdrawals, run.steps[1])


def _judge_refused(withdrawals: Withdrawals, refused: Step) -> None:
    """A withdrawal the balance cannot pay must raise InsufficientFunds and write nothing."""
    run = withdrawals.run
    call = _scenario_text(0, withdrawals.kind) + f" with a balance of {START}"
    if refused.error is None:
        raise CheckFailed(f"{call} returned normally: it must raise InsufficientFunds when the balance is too small.",
                          expected="InsufficientFunds raised", actual="no exception",
                          locations=_def_location(run, "withdraw"), run=run)
    if refused.error["error"] != "InsufficientFunds":
        frames = refused.error.get("frames") or []
        raise CheckFailed(f"{call} raised {refused.error['error']} ({refused.error['message']}) instead of "
                          "InsufficientFunds.", expected="InsufficientFunds", actual=refused.error["error"],
                          locations=run.location(frames[-1] if frames else None, refused.error["error"]), run=run)
    after = number_in_file(run, "refused.json", "balance")
    if after != START:
        raise CheckFailed(f"{call} raised InsufficientFunds but left the balance at {after!r} instead of {START}: a "
                          "refused withdrawal must change nothing. Check the balance before you write anything.",
                          expected=f"balance {START}", actual=f"balance {after}",
                          locations=_def_location(run, "withdraw"), run=run)


def _judge_allowed(withdrawals: Withdrawals, step: Step) -> None:
    """A withdrawal the balance covers must go through and take exactly its amount."""
    run = withdrawals.run
    call = _scenario_text(1, withdrawals.kind) + f" with a balance of {START}"
    if step.error is not None:
        frames = step.error.get("frames") or []
        raise CheckFailed(f"{call} raised {step.error['error']} ({step.error['message']}): a withdrawal the balance "
                          "covers must go through.", locations=run.location(frames[-1] if frames else None,
                                                                           step.error["error"]), run=run)
    after = number_in_file(run, "allowed.json", "balance")
    if after != START - ALLOWED:
        raise CheckFailed(f"{call} left the balance at {after!r} instead of {START - ALLOWED}.",
                          expected=f"balance {START - ALLOWED}", actual=f"balance {after}",
                          locations=_def_location(run, "withdraw"), run=run)
