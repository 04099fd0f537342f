"""The controlled scheduler: the grader, not the operating system, decides how the student's threads
interleave. Every student thread, in every process, stops at each synchronisation point the probe sees and
goes on only when the conductor gives it the turn; between two points one student thread runs.

The conductor knows who can run (a thread waiting for a lock someone holds, or for an item on a queue it
knows is empty, cannot), picks with a seeded strategy, and owns the run's virtual time: time jumps to the
next timer when no thread can run, so no real time is spent waiting and a window a student's sleep opens
stays open for every other thread. Where it cannot tell what would unblock a thread, it lets the thread make
the real call (a deadlock then shows as one, with real stacks): a wrong guess can cost determinism, never a
correct program its verdict.

Strategies (both seeded; the same seed gives the same decisions while the processes arrive in the same order):
- "pos": partial-order sampling (Yuan et al., CAV 2018, as in Fray): every pending step gets a random
  priority when it becomes pending; the highest runs.
- "pct": probabilistic concurrency testing (Burckhardt et al., ASPLOS 2010): random thread priorities and
  d-1 random change points; a bug of depth d is hit with probability >= 1/(n * k^(d-1)) per run.
"""
from __future__ import annotations

import json
import os
import random
import selectors
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from grader.probe import grader_events as ev
from grader.running import proctree

# Thread states
NEW = "new"  # connected, its first point not read yet (a decision waits for it: it is about to be ready)
FREE = "free"  # running outside the schedule (before its first point, in an unmodelled call, or too long)
READY = "ready"  # at a point, waiting for the turn
TURN = "turn"  # holds the turn
BLOCKED = "blocked"  # waiting for a resource to be signalled (or its deadline)
SLEEPING = "sleeping"  # waiting for virtual time to reach its deadline

STRATEGIES = ("pos", "pct")
DECISIONS_KEPT = 400
# Preemptions kept for a shrink (a run of the course makes a few hundred): the report of a run that spins
# through the 200,000 turns of max_steps stays small; a shrink of a trial past them is then only less exact.
PREEMPTIONS_KEPT = 20_000
HELD_STEPS = 200  # turns its starter may take before a new process runs anyway (see Conductor._eligible)  # of the schedule, kept in the outcome for the witness and replay checks


@dataclass
class Rules:
    """How the conductor schedules one run (plain data: it goes into the RunSpec and the report)."""

    strategy: str = "pos"
    depth: int = 3  # pct: the bug depth it aims at (d - 1 priority change points)
    steps_hint: int = 400  # pct: the expected number of steps, where change points are drawn
    # Seconds a thread may hold the turn without reaching a point before it runs free: `budget` of real time
    # when its process is blocked in a call the probe does not see; when it is runnable (computing, or
    # waiting for a CPU on a busy machine), once its process has also used `budget` of CPU since, or after
    # `busy_budget` of real time: so that load, which slows a computing thread, does not change the schedule.
    budget: float = 0.05
    busy_budget: float = 2.0
    quiet: float = 0.004  # real seconds with no message before a wait becomes the real call (see _decide)
    arrival_wait: float = 2.0  # real seconds to wait for a started process to arrive before deciding without it
    max_steps: int = 200_000  # then the schedule steps aside (a livelock is the runner's to call)
    # A get() with a timeout gives up after this much virtual time on an empty queue, whatever its timeout:
    # as behind a producer slower than the timeout (None: the timeout as written).
    patience: float | None = None
    # A sleep lasts at least what it asked, and may last up to this fraction longer (as on a busy machine):
    # when a sleep ends, the conductor may (a seeded choice, with probability `hold`) keep the sleeper asleep
    # until the next sleeper's end within that slack, so that both wake at once and what each does after
    # its sleep can interleave with the other's. Up to twice its length: with a quarter, workers that sleep
    # 0.5-1.5 s before a short unlocked update (exercise 8) met in 25 of 30 runs; with the whole, 30 of 30.
    slack: float = 1.0
    tick: float = 0.005  # virtual seconds that pass at each clock read of the student's
    spin: int = 500  # turns without time moving after which time moves to the next timer anyway (a poll loop)
    hold: float = 1.0
    # A replay under a script (judging/shrink.py): None schedules as the strategy picks. A list of preemptions
    # (see Schedule.preemptions) makes the run non-preemptive except there: where the thread that had the last
    # turn may go on, it goes on, unless (its name, its taken) is listed; then the listed thread runs.
    preemptions: list[tuple[str, int, str]] | None = None


@dataclass
class _Thread:
    key: tuple[int, int]
    name: str
    sock: socket.socket
    state: str = NEW
    connected: float = 0.0
    point: str = ""
    res: str | None = None
    waiting_get: bool = False
    until: float | None = None
    pending: dict[str, Any] = field(default_factory=dict)
    priority: float = 0.0
    since: float = 0.0
    taken: int = 0
    cut: float | None = None  # the wait's deadline was brought forward to the rules' patience
    parent: tuple[int, int] | None = None  # the thread that started this process, once known
    host_pid: int | None = None  # its process as the grader's /proc numbers it (from the kernel, at hello)
    cpu_mark: float | None = None  # holding the turn past the budget: its process's CPU seconds then
    arrived: int = 0  # the step count when this thread arrived
    latest: float = 0.0  # a sleeper: the latest it may wake (its end plus the rules' slack)
    holding: bool | None = None  # a sleeper whose end came: whether it waits for the next sleeper (None: not chosen)
    buffer: bytes = b""


@dataclass
class Schedule:
    """What the conductor did in one run: enough to state the detection bound and to compare replays."""

    strategy: str
    seed: int
    depth: int = 0
    steps_hint: int = 0
    steps: int = 0
    threads: int = 0
    jumps: int = 0
    jumped: float = 0.0
    real_waits: int = 0
    freed: int = 0
    decisions: list[str] = field(default_factory=list)
    # Every decision that switched away from the thread that had the last turn while it could go on: (its
    # name, its taken count then, the thread given the turn). Stable across replays of the same seed, so a
    # replay under a subset of them (Rules.preemptions) is the same run with fewer context switches.
    preemptions: list[tuple[str, int, str]] = field(default_factory=list)
    marks: dict[int, int] = field(default_factory=dict)  # step of the driver's plan -> its thread's taken then
    failure: str | None = None  # the conductor failed (a bug of ours): the run went on unscheduled
    # Connections whose hello claimed a process other than the one the kernel says is at the other end
    # (SO_PEERCRED): student code speaking to the scheduler as another process. Each was cut off.
    impostors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"strategy": self.strategy, "seed": self.seed, "depth": self.depth, "steps_hint": self.steps_hint,
                "steps": self.steps, "threads": self.threads,
                "jumps": self.jumps, "jumped": round(self.jumped, 6), "real_waits": self.real_waits,
                "freed": self.freed, "decisions": list(self.decisions),
                "preemptions": [list(p) for p in self.preemptions], "marks": {str(k): v for k, v in self.marks.items()},
                "failure": self.failure, "impostors": list(self.impostors)}


def bound(steps: int, threads: int, depth: int) -> float:
    """PCT's guarantee: the probability of hitting a bug of `depth` in one run of `steps` and `threads`."""
    if steps <= 0 or threads <= 0:
        return 0.0
    return 1.0 / (steps * threads ** (depth - 1))


def detection_bounds(schedule: dict[str, Any], trials: int) -> dict[str, float]:
    """What a run under PCT guarantees for a bug of depth 2 and 3: at least 1/(n k^(d-1)), n the turns its
    change points were drawn from and k the threads alive in one of its `trials` (calls of main()). Empty
    under POS, which has no such proven bound, and when the run took more turns than n (then none holds)."""
    if schedule.get("strategy") != "pct" or schedule.get("failure") or trials <= 0:
        return {}
    steps, planned = int(schedule.get("steps", 0)), int(schedule.get("steps_hint", 0))
    if steps > planned:
        return {}
    threads = -(-int(schedule.get("threads", 0)) // trials)
    return {str(d): bound(planned, threads, d) for d in (2, 3)}


class Conductor:
    """Serves one run's scheduler socket from a thread of the grader; `with Conductor(...)` runs it."""

    def __init__(self, path: Path, seed: int, rules: Rules) -> None:
        self.path = path
        self.rules = rules
        self.still = 0  # turns given since virtual time last moved (see Rules.spin)
        self.rng = random.Random(f"turns/{seed}/{rules.strategy}")  # pct's change points
        self.schedule = Schedule(rules.strategy, seed, depth=rules.depth, steps_hint=rules.steps_hint)
        self.offset = 0.0
        self.threads: dict[socket.socket, _Thread] = {}
        self.counts: dict[str, int] = {}  # items known to be on each queue
        # started and not yet arrived: a process by its pid, a thread by (pid, tid) -> (the thread that started it, since)
        self.expected: dict[Any, tuple[tuple[int, int], float]] = {}
        self.arrived: set[int] = set()
        self.finished: set[int] = set()  # started processes whose every thread has left
        self.arrived_threads: set[tuple[int, int]] = set()  # (pid, tid) of every thread that said hello
        self.left_threads: set[tuple[int, int]] = set()  # ... and of those that have left
        # a started process's pid, or a started thread's (pid, tid) -> the thread that started it
        self.parents: dict[Any, tuple[int, int]] = {}
        self.last_message = time.monotonic()
        self.change_points: set[int] = set()
        if rules.strategy == "pct":
            self.change_points = {self.rng.randint(1, max(1, rules.steps_hint)) for _ in range(rules.depth - 1)}
        self.failure: str | None = None
        self.last: _Thread | None = None  # the thread that had the last turn
        self.script = None if rules.preemptions is None else {
            (str(name), int(taken)): str(to) for name, taken, to in rules.preemptions}
        self._stop = threading.Event()
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(str(path))
        os.chmod(path, 0o666)  # the run's uid (dropped privileges) must connect
        self._server.listen(256)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._server, selectors.EVENT_READ)
        self._thread = threading.Thread(target=self._serve, name="grader-conductor", daemon=True)

    # ---- lifecycle ---------------------------------------------------------------------------------
    def __enter__(self) -> "Conductor":
        self._thread.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for sock in [*self.threads, self._server]:
            try:
                sock.close()
            except OSError:
                pass
        self._selector.close()

    def holds_run(self, since: float) -> bool:
        """Whether the run is still moving by the conductor's own account: a thread holds or waits for the
        turn, a timer is pending, or a message came in the last `since` seconds. Student threads waiting for
        their turn look blocked to the operating system; while this holds, that is no deadlock."""
        if time.monotonic() - self.last_message < since:
            return True
        return any(t.state in (READY, TURN, SLEEPING) or (t.state == BLOCKED and t.until is not None)
                   for t in list(self.threads.values()))

    def vt(self) -> float:
        """The run's virtual time: seconds of jumps and clock ticks since the run began (never real time)."""
        return self.offset

    # ---- the loop ----------------------------------------------------------------------------------
    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                for key, _ in self._selector.select(timeout=self._wait()):
                    if key.fileobj is self._server:
                        self._accept()
                    else:
                        self._read(key.fileobj)  # type: ignore[arg-type]
                for _ in range(64):  # time moved: decide again at once (no message will come to wake the loop)
                    if not self._decide():
                        break
            except Exception as exc:  # noqa: BLE001 - a bug of ours must never hang the student's program
                if self.failure is None:
                    self.failure = f"{type(exc).__name__}: {exc}"
                    self.schedule.failure = self.failure

    def _passive(self) -> None:
        """After a failure of the conductor: every thread runs free, every wait is the real call."""
        for thread in list(self.threads.values()):
            if thread.state in (READY, TURN, BLOCKED, SLEEPING):
                real = thread.state == BLOCKED
                thread.state = FREE
                self._reply(thread, {"real": 1} if real else {"go": 1})

    def _wait(self) -> float:
        """How long the loop may sleep before something needs deciding without a message."""
        return min(self.rules.quiet, 0.02)

    def _accept(self) -> None:
        try:
            sock, _ = self._server.accept()
        except OSError:
            return
        sock.setblocking(False)
        self._selector.register(sock, selectors.EVENT_READ)
        self.threads[sock] = _Thread(key=(0, 0), name="?", sock=sock, connected=time.monotonic())

    def _read(self, sock: socket.socket) -> None:
        thread = self.threads.get(sock)
        if thread is None:
            return
        try:
            data = sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._gone(thread)
            return
        self.last_message = time.monotonic()
        thread.buffer += data
        while b"\n" in thread.buffer:
            line, thread.buffer = thread.buffer.split(b"\n", 1)
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if isinstance(message, dict):
                self._handle(thread, message)

    def _gone(self, thread: _Thread) -> None:
        if self.threads.pop(thread.sock, None) is not None:
            self.left_threads.add(thread.key)
            self._signal(f"thread-{thread.key[0]}-{thread.key[1]}")  # a join of it may go on
            pid = thread.key[0]
            if pid in self.arrived and not any(t.key[0] == pid for t in self.threads.values()):
                self.finished.add(pid)  # its last thread left: a join of it may go on
                self._signal(f"proc-{pid}")
        try:
            self._selector.unregister(thread.sock)
        except (KeyError, ValueError):
            pass
        try:
            thread.sock.close()
        except OSError:
            pass

    # ---- messages ----------------------------------------------------------------------------------
    def _handle(self, thread: _Thread, message: dict[str, Any]) -> None:
        op = message.get("op")
        if thread.state == NEW and op != ev.TURN_HELLO:
            thread.state = FREE  # whatever it says first, it is no longer on its way
        if op == ev.TURN_HELLO:
            pid, tid = int(message.get("pid", 0)), int(message.get("tid", 0))
            thread.host_pid = _peer_host_pid(thread.sock)
            actual = _pid_inside(thread.host_pid)
            if actual is not None and actual != pid:  # it speaks as another process: cut it off, say so
                self.schedule.impostors.append(f"process {actual} said it was process {pid}")
                self._gone(thread)
                return
            thread.key = (pid, tid)
            process = str(message.get("name", pid))
            thread.name = process if message.get("main") else f"{process}/{message.get('thread', tid)}"
            thread.priority = self._priority(thread.name)
            self.expected.pop(pid, None)
            self.expected.pop(thread.key, None)
            self.arrived.add(pid)
            self.arrived_threads.add(thread.key)
            self.left_threads.discard(thread.key)  # a new thread may reuse the ident of one that ended
            thread.parent = self.parents.get(thread.key) or self.parents.get(pid)
            thread.arrived = self.schedule.steps
            self.schedule.threads += 1
        elif op == ev.TURN_STEP:
            self._ready(thread, str(message.get("point", "")), message.get("res"))
            if thread.point == "clock":
                thread.pending = {"tick": 1}  # time passes by one tick when it gets the turn
            at_least = _number(message.get("at_least"))
            if at_least is not None:  # an unmodelled wait that used up its timeout: its time has passed
                thread.pending = {"at_least": at_least}
        elif op == ev.TURN_BLOCK:
            self._block(thread, message.get("res"), message)
        elif op == ev.TURN_GET:
            res = str(message.get("res"))
            if thread.state == TURN and self.counts.get(res, 0) > 0:
                self.counts[res] -= 1
                self._reply(thread, {"go": 1})  # keeps the turn: the item is there
            else:
                self._block(thread, res, message, waiting_get=True)
                patience = self.rules.patience
                if patience is not None and thread.until is not None and thread.until > self.vt() + patience:
                    thread.until, thread.cut = self.vt() + patience, patience
        elif op == ev.TURN_SLEEP:
            until = self.vt() + max(0.0, _number(message.get("secs")) or 0.0)
            thread.state, thread.res, thread.until, thread.holding = SLEEPING, None, until, None
            thread.latest = until + self.rules.slack * max(0.0, until - self.vt())
        elif op == ev.TURN_SIGNAL:
            res = str(message.get("res"))
            delta = int(message.get("delta") or 0)
            if delta:
                self.counts[res] = max(0, self.counts.get(res, 0) + delta)
            self._signal(res)
        elif op == ev.TURN_JOIN and message.get("thread"):  # a thread of this process, by its tid
            joined = (thread.key[0], int(message.get("thread") or 0))
            self._join(thread, joined, joined in self.left_threads, joined in self.arrived_threads,
                       f"thread-{joined[0]}-{joined[1]}", message)
        elif op == ev.TURN_JOIN:
            child = int(message.get("child") or 0)
            self._join(thread, child, child in self.finished, child in self.arrived, f"proc-{child}", message)
        elif op == ev.TURN_SPAWNED and message.get("thread"):  # a thread of this process, by its tid
            started = (thread.key[0], int(message.get("thread") or 0))
            self._started(thread, started, lambda other: other.key == started, arrived=started in self.arrived_threads)
        elif op == ev.TURN_SPAWNED and message.get("child"):
            child = int(message.get("child") or 0)
            self._started(thread, child, lambda other: other.key[0] == child, arrived=child in self.arrived)
        elif op == ev.TURN_OFF:
            thread.state = FREE
        elif op == ev.TURN_BYE:
            self._gone(thread)
        elif op == ev.TURN_MARK:  # a step of the plan begins: a one-step replay goes on from the turns taken then
            self.schedule.marks.setdefault(int(message.get("step") or 0), thread.taken)  # the driver's mark comes first
            taken = message.get("taken")
            if taken is not None:
                thread.taken = int(taken)

    def _join(self, thread: _Thread, joined: Any, ended: bool, arrived: bool, res: str,
              message: dict[str, Any]) -> None:
        """A join of a process (by pid) or thread (by (pid, tid)): it returns at once when that one has ended
        or is none of the schedule's, else waits until `res` is signalled (it left) or its deadline."""
        if ended or (not arrived and joined not in self.expected):
            self._reply(thread, {"go": 1})
        else:
            thread.point = "join"
            self._block(thread, res, message)

    def _started(self, starter: _Thread, started: Any, is_it: Callable[[_Thread], bool],
                 arrived: bool = False) -> None:
        """`starter` started a process (by pid) or thread (by (pid, tid)): remember who started it, and wait
        for it to arrive unless it already said hello (a fork child may say it before its parent says this)."""
        self.parents[started] = starter.key
        said_hello = [other for other in self.threads.values() if is_it(other)]
        for other in said_hello:
            other.parent = starter.key
        if not said_hello and not arrived:
            self.expected[started] = (starter.key, time.monotonic())

    @staticmethod
    def _block(thread: _Thread, res: Any, message: dict[str, Any], waiting_get: bool = False) -> None:
        """The thread waits until `res` is signalled, or until the message's deadline in virtual time."""
        thread.state, thread.res, thread.waiting_get = BLOCKED, res, waiting_get
        thread.until = _number(message.get("deadline"))

    def _signal(self, res: str) -> None:
        """`res` may have changed: the threads waiting for it try again (a get keeps its deadline)."""
        for other in self.threads.values():
            if other.state == BLOCKED and other.res == res:
                other.state = READY

    def _ready(self, thread: _Thread, point: str, res: Any, keep_priority: bool = False) -> None:
        """The thread waits at a point; under POS its pending step gets a fresh priority (drawn from the seed,
        its name and how many steps it took, so not from the order in which threads happened to arrive)."""
        thread.state, thread.point, thread.res, thread.until, thread.waiting_get = READY, point, res, None, False
        thread.cut = None
        thread.taken += 1
        if self.rules.strategy == "pos" and not keep_priority:
            thread.priority = random.Random(f"{self.schedule.seed}/{thread.name}/{thread.taken}").random()

    def _priority(self, name: str) -> float:
        """A thread's PCT priority, from the seed and its name (not from when it happened to arrive)."""
        return random.Random(f"{self.schedule.seed}/{name}").random() + 1.0

    def _reply(self, thread: _Thread, answer: dict[str, Any]) -> None:
        answer["off"] = self.offset
        try:
            thread.sock.setblocking(True)
            thread.sock.sendall((json.dumps(answer) + "\n").encode())
            thread.sock.setblocking(False)
        except OSError:
            self._gone(thread)

    # ---- decisions ---------------------------------------------------------------------------------
    def _decide(self) -> bool:
        """Give the turn, move virtual time, or make waits real, as the threads' states allow. True when
        something changed that no message will announce (time moved, a turn could not be given): decide again."""
        if self.failure is not None:
            self._passive()
            return False
        now = time.monotonic()
        vt = self.vt()
        for thread in list(self.threads.values()):  # timers that virtual (or real) time has reached
            if thread.state in (SLEEPING, BLOCKED) and thread.until is not None and thread.until <= vt:
                if thread.state == SLEEPING and self._held(thread, vt):
                    continue
                timed_out, cut = thread.state == BLOCKED, thread.cut
                self._ready(thread, thread.point, None, keep_priority=True)
                if timed_out:
                    thread.pending = {"timeout": 1, **({"cut": cut} if cut else {})}
        holder = next((t for t in self.threads.values() if t.state == TURN), None)
        if holder is not None and self._keeps_turn(holder, now):
            return False
        if holder is not None:
            holder.state = FREE  # it computes, or waits for something the probe does not see: let it run
            self.schedule.freed += 1
        if self.schedule.steps >= self.rules.max_steps:
            for thread in self.threads.values():
                if thread.state in (READY, BLOCKED, SLEEPING):
                    thread.state = FREE
                    self._reply(thread, {"go": 1})
            return False
        ready = [t for t in self.threads.values() if t.state == READY and self._eligible(t)]
        if ready and self.still >= self.rules.spin and self._jump(vt):  # threads poll while others sleep
            return True
        if ready:
            if self._awaiting_arrivals(now):
                return False
            return not self._give_turn(self._choose(ready), now)  # not given: decide again at once
        if self._awaiting_arrivals(now, any_parent=True):
            return False
        # Nothing can run: time moves to the next timer at once (a thread outside the schedule, computing or in
        # a call the conductor does not model, may take any virtual time: so it may on a busy machine).
        if self._jump(vt):
            return True
        # A wait becomes the real call only once nothing is on its way: a thread outside the schedule may be
        # about to release what the waiters wait for.
        in_flight = any(t.state in (FREE, NEW) for t in self.threads.values())
        if in_flight and now - self.last_message < self.rules.quiet:
            return False
        blocked = [t for t in self.threads.values() if t.state == BLOCKED]
        for thread in blocked:  # nothing the conductor knows of will wake them: make the real calls
            thread.state = FREE
            self.schedule.real_waits += 1
            self._reply(thread, {"real": 1})
        return False

    def _keeps_turn(self, holder: _Thread, now: float) -> bool:
        """Whether the thread holding the turn keeps it: within the budget, or past it while its process
        computes and has not yet had the budget's worth of CPU (see Rules.budget)."""
        held = now - holder.since
        if held <= self.rules.budget:
            return True
        if held > self.rules.busy_budget or not _runnable(holder.host_pid):
            return False
        used = _cpu_seconds(holder.host_pid)
        if used is None:
            return False
        if holder.cpu_mark is None:
            holder.cpu_mark = used
        return used - holder.cpu_mark < self.rules.budget

    def _jump(self, vt: float) -> bool:
        """Move virtual time to the next timer (a sleep's end, a timed wait's deadline), if there is one."""
        timers = [t.until for t in self.threads.values() if t.state in (SLEEPING, BLOCKED) and t.until is not None]
        if not timers:
            return False
        jump = max(0.0, min(timers) - vt)
        self.offset += jump
        self.still = 0
        self.schedule.jumps += 1
        self.schedule.jumped += jump
        return True

    def _held(self, thread: _Thread, vt: float) -> bool:
        """Whether a sleeper whose end has come sleeps on, to the next sleeper's end within its slack."""
        if thread.holding is None:
            thread.holding = self.rng.random() < self.rules.hold
        if not thread.holding:
            return False
        later = [t.until for t in self.threads.values()
                 if t is not thread and t.state == SLEEPING and t.until is not None and vt < t.until <= thread.latest]
        if not later:
            return False
        thread.until = min(later)
        return True

    def _eligible(self, thread: _Thread) -> bool:
        """A new process (or thread) starts its code only once the thread that started it stops to wait (its
        burst of starts is over) or has taken HELD_STEPS more turns: so which ones compete at a decision does
        not depend on how fast each happened to boot."""
        if thread.point != "run" or thread.parent is None:
            return True
        parent = next((t for t in self.threads.values() if t.key == thread.parent), None)
        if parent is None or parent.state not in (READY, TURN):
            return True
        return self.schedule.steps - thread.arrived >= HELD_STEPS

    def _awaiting_arrivals(self, now: float, any_parent: bool = False) -> bool:
        """Whether to wait for started processes (and threads) to arrive before deciding: when the thread that started them
        has stopped starting (it is not about to run) or, with `any_parent`, whenever one is on its way."""
        if any(t.state == NEW and now - t.connected < self.rules.arrival_wait for t in self.threads.values()):
            return True  # a thread said hello and its first point is on its way
        holders = {t.key for t in self.threads.values() if t.state in (READY, TURN)}
        for child, (parent, since) in list(self.expected.items()):
            if now - since > self.rules.arrival_wait:
                del self.expected[child]  # it never reached the student's code in time: decide without it
                continue
            if any_parent or parent not in holders:
                return True
        return False

    def _pick(self, ready: list[_Thread]) -> _Thread:
        ready.sort(key=lambda t: t.name)  # a fixed order: the decision depends on the seed, not on arrival
        chosen = max(ready, key=lambda t: t.priority)
        if self.rules.strategy == "pct" and (self.schedule.steps + 1) in self.change_points:
            chosen.priority = -float(self.schedule.steps + 1)  # the change point: below every other thread
            others = [t for t in ready if t is not chosen]
            if others:
                chosen = max(others, key=lambda t: t.priority)
        return chosen

    def _choose(self, ready: list[_Thread]) -> _Thread:
        """The strategy's pick, or under a script (Rules.preemptions) the last holder when it may go on and the
        script does not switch away from it there (_give_turn records every switch away from such a holder)."""
        picked = self._pick(ready)
        last = next((t for t in ready if t is self.last), None)
        if last is not None and self.script is not None:
            named = self.script.get((last.name, last.taken))
            others = [t for t in ready if t is not last]
            if named is None or not others:
                picked = last
            else:
                picked = next((t for t in others if t.name == named), None) or (
                    picked if picked is not last else max(others, key=lambda t: t.priority))
        return picked

    def _give_turn(self, thread: _Thread, now: float) -> bool:
        """Give `thread` the turn; False when it cannot take it after all (its queue's item went)."""
        if thread.waiting_get:  # woken by a put: the item must still be there when it gets the turn
            res = str(thread.res)
            if self.counts.get(res, 0) <= 0:
                thread.state = BLOCKED  # another consumer took it first: wait for the next put
                return False
            self.counts[res] -= 1
            thread.waiting_get = False
        self.schedule.steps += 1
        last = self.last
        if last is not None and last is not thread and last.state == READY and self._eligible(last) \
                and len(self.schedule.preemptions) < PREEMPTIONS_KEPT:
            self.schedule.preemptions.append((last.name, last.taken, thread.name))
        self.last = thread
        if len(self.schedule.decisions) < DECISIONS_KEPT:
            self.schedule.decisions.append(f"{thread.name}:{thread.point}")
        thread.state, thread.since, thread.cpu_mark = TURN, now, None
        self.still += 1
        if thread.pending.pop("tick", None):
            self.offset += self.rules.tick
            self.still = 0
        at_least = thread.pending.pop("at_least", None)
        if at_least is not None and at_least > self.offset:
            self.offset = at_least
            self.still = 0
        answer = {"go": 1, **thread.pending}
        thread.pending = {}
        self._reply(thread, answer)
        return True


def peer_pid(sock: socket.socket) -> int | None:
    """The pid of the process at the other end of a Unix socket, as the student's processes number it (in the
    run's own pid namespace, if it has one): from the kernel (SO_PEERCRED), so a process cannot claim to be
    another. None where that cannot be told (not Linux, or the process has already ended)."""
    return _pid_inside(_peer_host_pid(sock))


def _peer_host_pid(sock: socket.socket) -> int | None:
    """The pid of the process at the other end of a Unix socket, in the grader's own pid namespace."""
    try:
        return int(struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))[0])
    except (AttributeError, OSError, struct.error):
        return None


def _runnable(host_pid: int | None) -> bool:
    """Whether a thread of the process is running or waiting for a CPU (state R), so computing rather than
    blocked in a call the probe does not see. False when that cannot be told."""
    if host_pid is None:
        return False
    for stat in proctree.task_files(host_pid, "stat"):
        if stat[stat.rfind(b")") + 2:].split()[:1] == [b"R"]:
            return True
    return False


def _cpu_seconds(host_pid: int | None) -> float | None:
    """The CPU time (user and system) the process has used; None when that cannot be told."""
    stat = proctree.read_stat(host_pid) if host_pid is not None else None
    return stat[1] if stat is not None else None


def _pid_inside(host_pid: int | None) -> int | None:
    """The number the process `host_pid` knows itself by (the innermost pid namespace's); None if gone
    (then nothing is compared: never accuse on a guess)."""
    return None if host_pid is None else proctree.live_ns_pid(host_pid)


def _number(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None
