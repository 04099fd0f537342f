"""Checks of exercise 2, sentinels for the producer-consumer model: one supervised run calls main() with
several shapes (producers x consumers, an empty batch), and the checks judge it from the probe's events:
what consume() was called with, what each consumer took off the queue last, and what main() put there."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest

from grader.running import runner
from grader.checks.common import TrialRuns, call_raised
from grader.judging.evidence import Proc, Run, Step, dedupe, explain_hang
from grader.judging.harness import ENDS, CheckFailed, Student, check, scheduled
from grader.results import Location
from grader.probe import grader_events

EXERCISE = 2
CONTRACT: dict[str, list[str] | None] = {
    "producer": ["q", "items"], "consume": ["item"], "consumer": ["q"], "main": ["batches", "consumers"],
}
Key = tuple[str, str]  # an item as the probe describes it: (type name, repr)


@dataclass(frozen=True)
class Shape:
    """One call of main(): its batches (one producer each) and its number of consumers."""

    label: str
    batches: tuple[tuple[Any, ...], ...]
    consumers: int

    def plan_args(self) -> list[Any]:
        """main()'s positional arguments as the driver's JSON plan carries them."""
        return [[list(batch) for batch in self.batches], self.consumers]

    def keys(self) -> Counter[Key]:
        """Every item this shape must see consumed, as (type, repr)."""
        return Counter((type(item).__name__, repr(item)) for batch in self.batches for item in batch)

    def call_text(self) -> str:
        """main(...) as the student would write it, for messages."""
        return f"main({[list(b) for b in self.batches]!r}, {self.consumers})"


# Items are unique per shape (so multisets compare exactly) and include the falsy values 0, "", False and
# 0.0: a consumer must stop on its sentinel, never on an item that merely looks empty. None is never an item.
SHAPES = (
    Shape("1 producer and 1 consumer", ((0, "one", 2.5),), 1),
    Shape("3 producers and 2 consumers", ((1, 2, 3), ("a", "b"), (0, "", False)), 2),
    Shape("1 producer and 4 consumers", ((10, 11, 12, 13, 0.0, "z"),), 4),
    Shape("4 producers and 1 consumer", ((20, 21), ("x",), (False, -1), ("", "y")), 1),
    Shape("3 producers, two of them with an empty batch, and 2 consumers", ((), (30, 0, "w"), ()), 2),
)
# Under a further start method of --start-method all: one shape with several producers and consumers and
# falsy items shows what a child inherits, pickles or re-imports; every shape runs under the first method.
RERUN_SHAPES = SHAPES[1:2]
FALSY_NOTE = ("0, '' and False are items too: test for the sentinel itself (`item is None`, "
              "`item == SENTINEL`), never for a value that merely looks empty (`if not item`).")
IDENTITY_NOTE = ("What comes off a queue is a pickled copy, never the same object, so `is` never matches an "
                 "object() sentinel: pick a sentinel that compares by value (None, a string) and compare it "
                 "with `is None` or `==`.")
# Slow producers, modelled: under the controlled scheduler a student's get() with a timeout gives up after
# QUEUE_PATIENCE seconds of the run's virtual time on an empty queue, whatever its timeout, as it would behind
# a producer slower than the timeout: a consumer that returns on queue.Empty returns early in every run.
QUEUE_PATIENCE = 0.005
CUT_NOTE = (f"(The grader makes a get() with a timeout give up after {QUEUE_PATIENCE * 1000:.0f} ms on an empty "
            "queue, whatever its timeout: that is what it would do behind a producer slower than the timeout.)")
SLOW_PRODUCER_NOTE = ("An empty queue only means that no item has arrived yet: a slow producer would lose the "
                      "items it had not put yet. Stop a consumer only on a sentinel, which main() puts after "
                      "joining every producer.")


@dataclass
class Consumer:
    """One consumer process of a shape and what it did with the queue."""

    proc: Proc
    returned: bool = False
    error: dict[str, Any] | None = None
    last_take: dict[str, Any] | None = None  # its last q_get / q_get_raise before it returned (or was stopped)
    pending: dict[str, Any] | None = None  # a q_get_wait never answered: blocked in get() at the stop
    sentinels_taken: list[dict[str, Any]] = field(default_factory=list)  # non-items it took off the queue
    def_line: int | None = None  # where the student's consumer() starts
    gets: list[dict[str, Any]] = field(default_factory=list)  # every value it took off the queue (q_get)

    def where(self) -> dict[str, Any] | None:
        """consumer()'s own line, for a problem no get() points at."""
        return {"line": self.def_line, "func": "consumer"} if self.def_line else None


@dataclass
class Trial:
    """One call of main(): the shape, the processes it started and what the probe saw of the queue."""

    step: Step
    shape: Shape
    expected: Counter[Key]
    consumed: Counter[Key]
    consume_calls: list[dict[str, Any]]
    consumers: list[Consumer]
    producers: list[Proc]
    puts: list[dict[str, Any]]
    main_pid: int | None

    def is_item(self, described: dict[str, Any]) -> bool:
        """Whether a value the probe described is one of this shape's items."""
        return _key(described) in self.expected

    def sentinel_puts(self) -> list[dict[str, Any]]:
        """The non-items main() put on the queue during this call: its sentinels."""
        return [e for e in self.puts if e["pid"] == self.main_pid and not self.is_item(e["item"])]

    def item_puts(self) -> list[dict[str, Any]]:
        """The items put on the queue during this call (by the producers, normally)."""
        return [e for e in self.puts if self.is_item(e["item"])]


@dataclass
class ShapeRuns(TrialRuns[Trial]):
    """The run behind every verdict, each call of main() it made, and the shapes of those calls."""

    shapes: tuple[Shape, ...] = SHAPES


def _key(described: dict[str, Any]) -> Key:
    """How items are compared: by type and repr, so that 0, 0.0 and False stay three different items."""
    return (str(described.get("type")), str(described.get("repr")))


def _alike(put: Key, taken: Key) -> bool:
    """Whether a value taken off the queue is the copy of one put on it: an object with the default repr
    (`<object object at 0x...>`) changes address on the way, so only its type can be compared."""
    if " at 0x" in put[1] and " at 0x" in taken[1]:
        return put[0] == taken[0]
    return put == taken


def _consumer(proc: Proc, events: list[dict[str, Any]], shape_keys: Counter[Key]) -> Consumer:
    """Read one consumer process's events: did consumer() return, and what did it take off the queue last."""
    consumer = Consumer(proc)
    waiting: dict[str, Any] | None = None
    for event in events:
        kind = event["ev"]
        if kind == grader_events.Q_GET_WAIT:
            waiting = event
        elif kind in (grader_events.Q_GET, grader_events.Q_GET_RAISE):
            if not consumer.returned and consumer.error is None:
                consumer.last_take = dict(event, wait=waiting)
            if kind == grader_events.Q_GET:
                consumer.gets.append(event)
            if kind == grader_events.Q_GET and _key(event["item"]) not in shape_keys:
                consumer.sentinels_taken.append(event)
            waiting = None
        elif kind == grader_events.CALL and event["func"] == "consumer":
            consumer.def_line = event.get("def_line")
        elif kind == grader_events.RETURN and event["func"] == "consumer":
            consumer.returned = True
        elif kind == grader_events.RAISE and event["func"] == "consumer":
            consumer.error = event
    consumer.pending = waiting if proc.exited is None else None
    if consumer.error and consumer.error.get("error") == "SystemExit" and proc.code == 0:
        consumer.returned, consumer.error = True, None  # sys.exit() after the sentinel: a normal end
    return consumer


def _trial(run: Run, step: Step, shape: Shape, by_pid: dict[int, list[dict[str, Any]]]) -> Trial:
    """Everything one call of main() did, from the events of the processes it started."""
    children = run.spawned_in(step)
    main_pid = run.main.pid if run.main else None
    pids = {p.pid for p in children}
    mine = [e for p in children for e in by_pid.get(p.pid, [])]
    mine += [e for e in by_pid.get(main_pid, []) if step.contains(e["t"])] if main_pid is not None else []
    mine.sort(key=lambda e: e["t"])
    is_consumer = {p.pid for p in children if p.target == "consumer"}
    is_consumer |= {e["pid"] for e in mine if e["ev"] == grader_events.CALL and e["func"] == "consumer" and e["pid"] in pids}
    calls = [e for e in mine if e["ev"] == grader_events.CALL and e["func"] == "consume"]
    expected = shape.keys()
    putters = {e["pid"] for e in mine if e["ev"] == grader_events.Q_PUT and _key(e["item"]) in expected}
    return Trial(
        step=step, shape=shape, expected=expected, consumed=Counter(_key(_argument(e)) for e in calls),
        consume_calls=calls,
        consumers=[_consumer(p, by_pid.get(p.pid, []), expected) for p in children if p.pid in is_consumer],
        producers=[p for p in children if p.pid not in is_consumer and (p.target == "producer" or p.pid in putters)],
        puts=[e for e in mine if e["ev"] == grader_events.Q_PUT], main_pid=main_pid,
    )


def _argument(call: dict[str, Any]) -> dict[str, Any]:
    """The item consume() was called with, positional or by keyword."""
    if call.get("args"):
        return call["args"][0]
    values = list((call.get("kwargs") or {}).values())
    return values[0] if values else {"type": "nothing", "repr": "(no argument)"}


@pytest.fixture(scope="module")
def shapes(student: Student) -> ShapeRuns:
    """One supervised run that calls main() once per shape: every check judges the same calls."""
    shapes = tuple(student.trials(SHAPES, RERUN_SHAPES))
    steps = [{"call": "main", "args": shape.plan_args(), "label": shape.label} for shape in shapes]
    run = student.run_steps("shapes", steps, contract=CONTRACT, spy=["consume", "consumer"], timeout=15,
                            **scheduled(patience=QUEUE_PATIENCE))
    by_pid: dict[int, list[dict[str, Any]]] = {}
    for event in run.outcome.events:
        by_pid.setdefault(event["pid"], []).append(event)
    return ShapeRuns(run, [_trial(run, step, shapes[step.index], by_pid) for step in run.steps], shapes)


# ---- wording ------------------------------------------------------------------------------------------
def _error_text(take: dict[str, Any]) -> str:
    """The exception a get() raised, as the student imports it (queue.Empty)."""
    return "queue.Empty" if take.get("error") == "Empty" else str(take.get("error"))


def _gave_up(run: Run, label: str, take: dict[str, Any], ending: str) -> str:
    """A consumer that returned because get() raised (queue.Empty, normally), and why that loses items."""
    text = f"{label} gave up when {_get_text(take.get('wait'))} raised {_error_text(take)}{_at(run, take.get('where'))}"
    return " ".join([text + ending] + ([CUT_NOTE] if take.get("cut") else []) + [SLOW_PRODUCER_NOTE])


def _get_text(wait: dict[str, Any] | None) -> str:
    """The get() call a consumer made, as written: q.get(), q.get(timeout=1), q.get(False)..."""
    if not wait:
        return "q.get()"
    parts = list(wait.get("args") or []) + [f"{k}={v}" for k, v in (wait.get("kwargs") or {}).items()]
    return f"q.get({', '.join(parts)})"


def _gives_up(wait: dict[str, Any] | None) -> bool:
    """Whether that get() can raise queue.Empty: it has a timeout or does not block."""
    if not wait:
        return False
    args, kwargs = wait.get("args") or [], wait.get("kwargs") or {}
    timeout = kwargs.get("timeout", args[1] if len(args) >= 2 else "None")
    return timeout != "None" or kwargs.get("block", args[0] if args else "True") in ("False", "0")


def _at(run: Run, where: dict[str, Any] | None) -> str:
    """' at line 14 (consumer)', or nothing when the probe saw no line of the student's."""
    text = run.describe_where(where)
    return f" at {text}" if text else ""


def _items_text(keys: Counter[Key] | list[Key], limit: int = 6) -> str:
    """Items as the student would write them, a few at most: 0, '', False, ..."""
    reprs = [r for _, r in sorted(keys.elements() if isinstance(keys, Counter) else keys, key=str)]
    return ", ".join(reprs[:limit]) + (", ..." if len(reprs) > limit else "")


def _is_falsy(described: dict[str, Any]) -> bool:
    """Whether an item looks empty (0, '', False, 0.0): what `if not item` wrongly takes for a sentinel."""
    return "value" in described and not described["value"]


def _sentinel_ignored(run: Run, trial: Trial, consumer: Consumer) -> str:
    """Why a consumer that took a sentinel kept going: it did not recognise it (identity, wrong value)."""
    taken = consumer.sentinels_taken[0]
    put = next((e for e in trial.sentinel_puts() if _alike(_key(e["item"]), _key(taken["item"]))), None)
    passed_on = any(e["pid"] == consumer.proc.pid and _key(_argument(e)) == _key(taken["item"])
                    for e in trial.consume_calls)
    text = (f"it took off the queue the sentinel {taken['item']['repr']}"
            + (f" that main() put{_at(run, put.get('where'))}" if put else "")
            + ", did not recognise it"
            + (" and passed it to consume() as if it were work" if passed_on else "") + ". ")
    if taken["item"].get("type") == "object":
        return text + IDENTITY_NOTE
    return text + "Compare what comes off the queue with the sentinel by value (`is None` for None, `==` otherwise)."


# ---- the program ends ---------------------------------------------------------------------------------
def _stuck_sentence(run: Run, trial: Trial, consumer: Consumer) -> tuple[str, list[Location]]:
    """Why one consumer of a hung run never ended, pointing at its get(): "consumer 2 (pid 9) is blocked..."."""
    label = consumer.proc.label
    wait = consumer.pending
    if wait is None:
        frames = run.stack_of(consumer.proc.pid)
        if not frames:
            return f"{label} never ended.", []
        where = {"line": frames[-1].line, "func": frames[-1].func}
        return f"{label} was still running{_at(run, where)}.", run.location(where, "still running")
    text = f"{label} is blocked in {_get_text(wait)}{_at(run, wait.get('where'))}"
    if consumer.sentinels_taken:
        text += ": " + _sentinel_ignored(run, trial, consumer)
    else:
        text += " and never received a sentinel."
        if _gives_up(wait):
            text += " Giving up when that get() times out would be no cure. " + SLOW_PRODUCER_NOTE
    label_here = "blocked here: the sentinel was not recognised" if consumer.sentinels_taken else "blocked here"
    return text, run.location(wait.get("where"), label_here)


def _sentinel_count_sentence(run: Run, trial: Trial) -> tuple[str, list[Location]]:
    """How many sentinels main() put for how many consumers, when that is why consumers wait."""
    puts = trial.sentinel_puts()
    wanted = len(trial.consumers) or trial.shape.consumers
    if not trial.puts:
        return "", []  # a queue the probe cannot see (a Manager's): nothing to count
    if not puts:
        others = [e for e in trial.puts if e["pid"] != trial.main_pid and not trial.is_item(e["item"])]
        if others:
            return _sentinels_put_elsewhere(run, trial, others)
        return ("main() put no sentinel on the queue: once every producer has been joined, put one sentinel per "
                "consumer, so that each consumer learns that no more work is coming."), []
    if len(puts) < wanted:
        return (f"main() put {len(puts)} sentinel(s) for {wanted} consumers{_at(run, puts[0].get('where'))}: a "
                "consumer that takes a sentinel stops, so every consumer needs one of its own."), \
            run.location(puts[0].get("where"), "too few sentinels")
    return "", []


def _sentinels_put_elsewhere(run: Run, trial: Trial, puts: list[dict[str, Any]]) -> tuple[str, list[Location]]:
    """Sentinels put by a producer (or a consumer) instead of main(): one per producer is not one per consumer."""
    first = puts[0]
    procs = trial.producers + [c.proc for c in trial.consumers]
    who = next((p.label for p in procs if p.pid == first["pid"]), f"process {first['pid']}")
    source = who if len({e["pid"] for e in puts}) == 1 else f"{who} and other processes"
    return (f"main() put no sentinel on the queue: the {len(puts)} sentinel(s) of this call came from {source}"
            f"{_at(run, first.get('where'))}, and {len(trial.consumers)} consumers need one each. A producer "
            "cannot know when the others are done: once every producer has been joined, main() puts one sentinel "
            "per consumer."), run.location(first.get("where"), "sentinel put here, not by main()")


def _main_sentence(run: Run) -> tuple[str, list[Location]]:
    """Where the main process waited when the grader stopped it (its innermost line of the student's file)."""
    main = run.main
    frames = run.stack_of(main.pid) if main else []
    done = run.first(grader_events.MAIN_DONE)
    if done is not None and done.get("waiting") and run.outcome.status != runner.KEPT_ALIVE:
        return ("The main program's code had finished, and Python waits at exit for every non-daemonic child: "
                "main() returned without joining its consumers."), []
    if not frames or run.outcome.status == runner.KEPT_ALIVE:
        return "", []
    where = {"line": frames[-1].line, "func": frames[-1].func}
    return (f"The main process waits{_at(run, where)} for processes that never end.",
            run.location(where, "the main process waits here"))


def _hang_explained(run: Run, trials: list[Trial]) -> tuple[str, list[Location]]:
    """A hung run in plain words: the stuck consumers, the sentinels main() put, where main waits."""
    sentences: list[str] = []
    locations: list[Location] = []
    stuck = [(trial, c) for trial in trials for c in trial.consumers if c.proc.exited is None]
    for group in _same_wait(stuck):
        trial, first = group[0]
        sentence, where = _stuck_sentence(run, trial, first)
        if len(group) > 1:
            sentence = f"{_labels([c.proc.label for _, c in group])} are" + \
                sentence[len(first.proc.label):].replace(" is blocked", " blocked", 1)
        sentences.append(sentence)
        locations += where
    by_step = {t.step.index: t for t, c in stuck if not c.sentinels_taken}
    for trial in by_step.values():
        sentence, where = _sentinel_count_sentence(run, trial)
        sentences.append(sentence)
        locations += where
    sentence, where = _main_sentence(run)
    sentences.append(sentence)
    locations += where
    sentences = _once([s for s in dict.fromkeys(sentences) if s], (IDENTITY_NOTE, SLOW_PRODUCER_NOTE))
    others, other_locations = explain_hang(run)
    if not sentences:
        return " ".join(others), other_locations
    skip = tuple(c.proc.label for _, c in stuck) + ("the main process",)
    sentences += [s for s in others if not s.startswith(skip)]
    return " ".join(sentences), dedupe(locations)


def _labels(labels: list[str], shown: int = 3) -> str:
    """'a, b and c', or 'a, b, c and 4 other consumers' for a long list."""
    if len(labels) > shown + 1:
        return f"{', '.join(labels[:shown])} and {len(labels) - shown} other consumers"
    return f"{', '.join(labels[:-1])} and {labels[-1]}"


def _same_wait(stuck: list[tuple[Trial, Consumer]]) -> list[list[tuple[Trial, Consumer]]]:
    """Stuck consumers grouped when they wait in the same get() for the same reason (one sentence per group)."""
    groups: dict[tuple[Any, ...], list[tuple[Trial, Consumer]]] = {}
    for trial, consumer in stuck:
        wait = consumer.pending
        if wait is None or consumer.sentinels_taken:
            key: tuple[Any, ...] = ("alone", consumer.proc.pid)
        else:
            key = (_get_text(wait), (wait.get("where") or {}).get("line"))
        groups.setdefault(key, []).append((trial, consumer))
    return list(groups.values())


def _once(sentences: list[str], notes: tuple[str, ...]) -> list[str]:
    """Keep each long note in the first sentence that carries it: several stuck consumers share one cause."""
    seen: set[str] = set()
    kept = []
    for sentence in sentences:
        for note in notes:
            if note in sentence:
                sentence = sentence.replace(" " + note, "") if note in seen else sentence
                seen.add(note)
        kept.append(sentence)
    return kept


@check(judges=ENDS)
def check_program_ends(student: Student, shapes: ShapeRuns) -> None:
    """Every call of main() returns: a hang is explained consumer by consumer, naming the missing sentinel."""
    run = shapes.run
    student.show(run)
    if run.hung:
        unfinished = next((t for t in shapes.trials if not t.step.finished), None)
        text, locations = _hang_explained(run, shapes.trials)
        lead = (f"{unfinished.shape.call_text()} ({unfinished.shape.label}) did not end" if unfinished
                else "The program did not end")
        raise CheckFailed(f"{lead}: {text}", expected="main() returns once all work is done",
                          actual=f"stopped by the grader ({run.outcome.status})", locations=locations, run=run)
    for trial in shapes.trials:
        if trial.step.error is not None:
            raise call_raised(run, trial.step, f"{trial.shape.call_text()} ({trial.shape.label})")
    _require_every_shape(shapes)


def _require_every_shape(shapes: ShapeRuns) -> None:
    """Every verdict below needs every call of main() to have run to its end."""
    run = shapes.run
    if run.hung:
        raise CheckFailed("The program did not end (see the check “The program ends”), so the grader could not "
                          "judge this.", run=run, prerequisite=ENDS)
    if len(shapes.trials) < len(shapes.shapes) or any(t.step.error for t in shapes.trials):
        raise CheckFailed("Not every call of main() ran to its end (see the check “The program ends”), so the "
                          "grader could not judge this.", run=run, prerequisite=ENDS)


# ---- every item is consumed exactly once -------------------------------------------------------------
def _why_missing(run: Run, trial: Trial, missing: Counter[Key]) -> tuple[str, list[Location]]:
    """The most likely reason items were lost, from what the consumers and main() did."""
    for consumer in trial.consumers:
        take = consumer.last_take
        if consumer.returned and take and take["ev"] == grader_events.Q_GET and trial.is_item(take["item"]):
            consumed = any(e["pid"] == consumer.proc.pid and e["t"] >= take["t"]
                           and _key(_argument(e)) == _key(take["item"]) for e in trial.consume_calls)
            text = (f"{consumer.proc.label} returned right after taking {take['item']['repr']} off the queue"
                    f"{_at(run, take.get('where'))}{'' if consumed else ', without consuming it'}: it took an item "
                    "for a sentinel.")
            if _is_falsy(take["item"]):
                text += " " + FALSY_NOTE
            return text, run.location(take.get("where"), "stops on an item")
    early = _early_sentinels(run, trial)
    if early:
        return early
    for consumer in trial.consumers:
        take = consumer.last_take
        if consumer.returned and take and take["ev"] == grader_events.Q_GET_RAISE:
            return _gave_up(run, consumer.proc.label, take, "."), \
                run.location(take.get("where"), "gives up on an empty queue")
    put = {_key(e["item"]) for e in trial.item_puts()}
    if trial.puts and not any(k in put for k in missing):
        return "They never reached the queue: each producer must put every item of its batch.", []
    quitters = [c for c in trial.consumers if c.returned and not (c.last_take and c.last_take["ev"] == grader_events.Q_GET
                                                                  and not trial.is_item(c.last_take["item"]))]
    if quitters:
        return (f"{quitters[0].proc.label} returned without receiving a sentinel while items were still coming: "
                "q.empty() and qsize() are snapshots that tell nothing about the items still to come. "
                + SLOW_PRODUCER_NOTE), []
    return _taken_not_consumed(run, trial, missing)


def _taken_not_consumed(run: Run, trial: Trial, missing: Counter[Key]) -> tuple[str, list[Location]]:
    """Items a consumer took off the queue and never passed to consume() (the grader watches consume() calls)."""
    pids = {c.proc.pid: c.proc.label for c in trial.consumers}
    taken = next((e for c in trial.consumers for e in c.gets if _key(e["item"]) in missing), None)
    if taken is None:
        return "They were put on the queue, but no consumer handed them to consume().", []
    return (f"{pids[taken['pid']]} took {taken['item']['repr']} off the queue{_at(run, taken.get('where'))} but "
            "consume() was never called with it: call consume(item) for every item taken (the grader watches "
            "the calls of the given consume(), made as consume(item) inside consumer())."), \
        run.location(taken.get("where"), "taken, never consumed")


def _early_sentinels(run: Run, trial: Trial) -> tuple[str, list[Location]] | None:
    """Sentinels put while a producer was still putting items: the consumers stop before the work is done."""
    sentinels = trial.sentinel_puts()
    items = trial.item_puts()
    if not sentinels or not items:
        return None
    first = sentinels[0]
    late = [e for e in items if e["t"] > first["t"]]
    unfinished = [p for p in trial.producers if p.exited is None or p.exited > first["t"]]
    if not late and not unfinished:
        return None
    who = next((p.label for p in trial.producers if late and p.pid == late[0]["pid"]), None)
    detail = (f": {who} put {late[0]['item']['repr']} after them" if who and late
              else f": {unfinished[0].label} had not finished" if unfinished else "")
    return (f"main() put the sentinels{_at(run, first.get('where'))} before every producer had finished{detail}, "
            "so consumers stopped while work was still coming. Join every producer first, then put one sentinel "
            "per consumer."), run.location(first.get("where"), "sentinels put before the producers are joined")


def _why_extra(run: Run, trial: Trial, extra: Counter[Key]) -> tuple[str, list[Location]]:
    """Items consumed twice, or a sentinel handed to consume() as if it were an item."""
    strangers = [k for k in extra if k not in trial.expected]
    if strangers:
        call = next(e for e in trial.consume_calls if _key(_argument(e)) == strangers[0])
        sentinel = next((e for e in trial.sentinel_puts() if _alike(_key(e["item"]), strangers[0])), None)
        text = f"consume() was called with {strangers[0][1]}{_at(run, call.get('where'))}, which is not an item"
        if sentinel is not None:
            text += (f": it is the sentinel main() put{_at(run, sentinel.get('where'))}. A consumer must stop "
                     "when it takes the sentinel, not consume it.")
            if strangers[0][0] == "object":
                text += " " + IDENTITY_NOTE
        return text + ("" if sentinel is not None else "."), run.location(call.get("where"), "consumes a non-item")
    twice = ", ".join(f"{r} ({extra[(t, r)] + 1} times)" for t, r in extra)
    return (f"Some items were consumed more than once: {twice}. Each item put on the queue is taken off by "
            "exactly one get(): put every item once, and consume each item you take once."), []


@check()
def check_every_item_consumed_once(student: Student, shapes: ShapeRuns) -> None:
    """consume() sees each item of every shape exactly once: none lost, none twice, no sentinel among them."""
    run = shapes.run
    student.show(run)
    _require_every_shape(shapes)
    for trial in shapes.trials:
        missing = trial.expected - trial.consumed
        extra = trial.consumed - trial.expected
        if not missing and not extra:
            continue
        lead = f"With {trial.shape.label}, {trial.shape.call_text()}: "
        if missing:
            why, locations = _why_missing(run, trial, missing)
            lead += f"{sum(missing.values())} item(s) were never consumed: {_items_text(missing)}. "
        else:
            why, locations = _why_extra(run, trial, extra)
        raise CheckFailed(lead + why, expected=f"consumed once each: {_items_text(trial.expected, 12)}",
                          actual=f"consumed: {_items_text(trial.consumed, 12) or 'nothing'}",
                          locations=locations, run=run)


# ---- every consumer returns because of a sentinel ----------------------------------------------------
def _consumer_problem(run: Run, trial: Trial, consumer: Consumer) -> tuple[str, list[Location]] | None:
    """Why one consumer did not end by returning on a sentinel, or None when it did."""
    label, take = consumer.proc.label, consumer.last_take
    if consumer.error is not None or (consumer.proc.code not in (0, None)):
        return _crash_text(run, consumer), []
    if not consumer.returned:
        if consumer.proc.exited is None and run.hung:
            sentence, where = _stuck_sentence(run, trial, consumer)
            return f"{label} never returned: it" + sentence[len(label):], where
        wait = consumer.pending
        waiting = f" while it waited in {_get_text(wait)}{_at(run, wait.get('where'))}" if wait else ""
        return (f"{label} never returned from consumer(): it was stopped from outside (terminated, or as a "
                f"daemon at the end of the program){waiting}, instead of returning on a sentinel."), \
            run.location(wait.get("where") if wait else consumer.where(), "never returns")
    if take is None:
        if not trial.puts:
            return None  # a queue the probe cannot see (e.g. a Manager's): judged by the items alone
        return (f"{label} returned without receiving a sentinel: it took nothing off the queue at all. It must "
                "wait for work in q.get() until its sentinel arrives. " + SLOW_PRODUCER_NOTE), \
            run.location(consumer.where(), "returns without a sentinel")
    if take["ev"] == grader_events.Q_GET_RAISE:
        return _gave_up(run, label, take, " and returned without a sentinel."), \
            run.location(take.get("where"), "gives up on an empty queue")
    if trial.is_item(take["item"]):
        text = (f"{label} returned right after taking the item {take['item']['repr']}"
                f"{_at(run, take.get('where'))}, without receiving a sentinel: an item is not a sentinel.")
        if _is_falsy(take["item"]):
            text += " " + FALSY_NOTE
        else:
            text += (" A consumer must keep taking items until its sentinel arrives: q.empty() and qsize() are "
                     "snapshots that tell nothing about the items still to come.")
        return text, run.location(take.get("where"), "returns without a sentinel")
    return None


def _how_it_ended(consumer: Consumer) -> str:
    """A few words for the report's 'actual': how this consumer ended."""
    take = consumer.last_take
    if consumer.error is not None or consumer.proc.code not in (0, None):
        return f"{consumer.proc.label} crashed"
    if not consumer.returned:
        waiting = f" (waiting in {_get_text(consumer.pending)})" if consumer.pending else ""
        return f"{consumer.proc.label} never returned{waiting}"
    if take is None:
        return f"{consumer.proc.label} returned without taking anything"
    if take["ev"] == grader_events.Q_GET_RAISE:
        return f"{consumer.proc.label} returned after {_error_text(take)}"
    return f"{consumer.proc.label} returned after taking {take['item']['repr']}"


def _crash_text(run: Run, consumer: Consumer) -> str:
    """A consumer that raised: the exception, and the last line of its traceback."""
    last = run.last_error_line(str(consumer.proc.pid))
    if consumer.error is not None:
        what = f"{consumer.error['error']}: {consumer.error.get('message', '')}"
    else:
        what = last or f"exit code {consumer.proc.code}"
    return (f"{consumer.proc.label} crashed instead of returning normally ({what}). Its full traceback is in "
            "the report.")


@check()
def check_consumers_stop_on_sentinel(student: Student, shapes: ShapeRuns) -> None:
    """Each consumer returns normally, right after taking a non-item (a sentinel) off the queue."""
    run = shapes.run
    student.show(run)
    for trial in shapes.trials:
        for consumer in trial.consumers:
            problem = _consumer_problem(run, trial, consumer)
            if problem is not None:
                text, locations = problem
                raise CheckFailed(f"With {trial.shape.label}: {text}",
                                  expected="each consumer returns after taking a sentinel",
                                  actual=_how_it_ended(consumer), locations=locations, run=run)
    _require_every_shape(shapes)


# ---- main() starts the consumers it is asked for and waits for them -----------------------------------
@check()
def check_main_starts_and_waits(student: Student, shapes: ShapeRuns) -> None:
    """main() honours its consumers parameter and returns only after every consumer has ended."""
    run = shapes.run
    student.show(run)
    _require_every_shape(shapes)
    for trial in shapes.trials:
        if len(trial.consumers) != trial.shape.consumers:
            raise CheckFailed(
                f"{trial.shape.call_text()} started {len(trial.consumers)} consumer process(es), but the "
                f"consumers parameter asks for {trial.shape.consumers}.",
                expected=f"{trial.shape.consumers} consumers", actual=f"{len(trial.consumers)} consumers", run=run)
        late = [c for c in trial.consumers if c.proc.exited is None or c.proc.exited > (trial.step.end or 0)]
        if late:
            where = late[0].proc.spawn_where
            raise CheckFailed(
                f"{trial.shape.call_text()} returned while {late[0].proc.label} was still running: main() must "
                "return only when all work is done, so join every consumer before returning.",
                locations=run.location(where, "started here, never joined"), run=run)
