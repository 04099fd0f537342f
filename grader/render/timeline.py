"""The timeline picture of a run: one lane per process, drawn as inline SVG from the probe's events.

Each lane shows a process's lifetime (daemon processes marked), the intervals in which it held a lock,
its calls of the exercise's critical function, its queue puts and gets (the item that stopped a consumer
marked as its sentinel), what it was still waiting for when the grader stopped the run, and where two
processes were inside the critical section at once (red). Every piece of text comes from student code
(labels, item reprs, lines), so every piece of text is escaped here.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable

from markupsafe import Markup, escape

from grader import results
from grader.results import Evidence
from grader.probe import grader_events

HANG_STATUSES = results.HANG_STATUSES
WIDTH = 960
LABEL_WIDTH = 210
RIGHT_MARGIN = 18
TOP = 34
LANE_HEIGHT = 24
BOTTOM = 10
MAX_LANES = 80
MAX_DETAILED_MARKS = 40
MAX_WORDS_PER_LANE = 12
COMPRESSED_SHARE = 0.86


@dataclass
class Lane:
    """One process: when it lived and who it was."""

    pid: int
    label: str
    daemon: bool | None
    start: float
    end: float
    running_at_stop: bool
    code: int | None
    is_main: bool


@dataclass
class Segment:
    """An interval drawn on a lane: a lock held, a call, a wait that never ended, an overlap."""

    pid: int
    start: float
    end: float
    kind: str
    text: str
    ref: str = ""


@dataclass
class Mark:
    """An instant drawn on a lane: a queue put or get, a start, a crash, a second acquire."""

    pid: int
    t: float
    kind: str
    text: str


@dataclass
class Overlap:
    """Two processes inside the critical section at the same time, both successful."""

    first: str
    second: str
    func: str
    start: float
    end: float
    same_return: str | None = None  # both calls returned this (the value each wrote, from the same read)


@dataclass
class Timeline:
    """Everything the picture and its text alternative show, in the run's own clock (monotonic seconds)."""

    status: str
    t0: float
    last: float
    stop: float | None
    duration: float
    lanes: list[Lane] = field(default_factory=list)
    hidden_lanes: int = 0
    segments: list[Segment] = field(default_factory=list)
    marks: list[Mark] = field(default_factory=list)
    overlaps: list[Overlap] = field(default_factory=list)
    steps: list[tuple[float, str]] = field(default_factory=list)
    critical: str | None = None

    @property
    def end(self) -> float:
        """The last moment drawn: the stop of a hang, else the last event."""
        return self.stop if self.stop is not None else self.last

    def rel(self, t: float) -> str:
        """A time of the run as a short text relative to its start ("12.3 ms", "1.25 s")."""
        return _duration(t - self.t0)


# ---- reading the events ---------------------------------------------------------------------------------
def build(evidence: Evidence, critical: str | None = None, success: Any = True, show_overlaps: bool = False,
          any_return: bool = False, show_late: bool = False) -> Timeline:
    """Read a run's evidence into lanes, intervals and marks (overlaps only when `show_overlaps`; with
    `any_return`, every return of the critical function counts as success; items put on a queue after its
    consumers had stopped, never taken, only when `show_late`)."""
    events = [e for e in evidence.events if isinstance(e, dict) and _is_time(e.get("t"))]
    events.sort(key=lambda e: e["t"])
    times = [e["t"] for e in events] + [p["started"] for p in evidence.processes if _is_time(p.get("started"))]
    t0 = min(times) if times else 0.0
    last = max(times) if times else 0.0
    if last <= t0:
        last = t0 + 0.001
    hung = evidence.status in HANG_STATUSES
    duration = float(evidence.duration) if _is_time(evidence.duration) and evidence.duration > 0 else 0.0
    stop = max(last, t0 + duration) if hung else None
    timeline = Timeline(status=evidence.status, t0=t0, last=last, stop=stop, duration=duration, critical=critical)
    timeline.lanes, timeline.hidden_lanes = _lanes(evidence, events, timeline)
    ends = {lane.pid: lane.end for lane in timeline.lanes}
    shown = set(ends)
    locks = _lock_names(events, _ignored_lock_places(events), _queue_locks(events))
    holds = _holds(events, locks, ends, {lane.pid for lane in timeline.lanes if not lane.running_at_stop}, stop)
    timeline.segments += holds
    timeline.segments += _waits(events, locks, ends)
    calls = _calls(events, critical, success, ends, holds, any_return) if critical else []
    inside = f"{critical}()"
    if critical and not calls:  # its work written out inline: the read-modify-writes of a file, wherever made
        calls, inside = _rewrites(events), "their read-modify-write of the shared file"
    timeline.segments += [c.segment for c in calls]
    if show_overlaps:
        overlaps, segments = _overlaps(calls, timeline.lanes, inside)
        timeline.overlaps, timeline.segments = overlaps, timeline.segments + segments
    timeline.segments += _lock_overlaps(holds, timeline.lanes)
    timeline.marks = _marks(events, timeline.lanes, locks)
    if show_late:
        timeline.marks += _late_puts(events, timeline.lanes)
    if show_overlaps and timeline.overlaps:
        timeline.marks += _unlocked_accesses(events, calls, holds, str(critical))
    timeline.segments = [s for s in timeline.segments if s.pid in shown]
    timeline.marks = [m for m in timeline.marks if m.pid in shown]
    timeline.steps = [(e["t"], f"step {e.get('step', 0) + 1}: {e.get('call', '')}()" + (f" with {e['label']}" if e.get("label") else ""))
                      for e in events if e.get("ev") == grader_events.STEP_START and isinstance(e.get("step"), int)]
    return timeline


def _is_time(value: Any) -> bool:
    """Whether a value is a finite number of seconds (events come from student processes: trust nothing)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _lanes(evidence: Evidence, events: list[dict[str, Any]], timeline: Timeline) -> tuple[list[Lane], int]:
    """One lane per process, the main process first, then in start order."""
    last_seen: dict[int, float] = {}
    first_seen: dict[int, float] = {}
    for event in events:
        pid = event.get("pid")
        if isinstance(pid, int):
            first_seen.setdefault(pid, event["t"])
            last_seen[pid] = event["t"]
    procs = [p for p in evidence.processes if isinstance(p.get("pid"), int)]
    known = {p["pid"] for p in procs}
    procs += [{"pid": pid, "label": f"process {pid}", "target": ""} for pid in first_seen if pid not in known]
    hung = timeline.stop is not None
    lanes = []
    for proc in procs:
        pid = proc["pid"]
        start = proc.get("started") if _is_time(proc.get("started")) else first_seen.get(pid, timeline.t0)
        exited = proc.get("exited") if _is_time(proc.get("exited")) else None
        is_main = proc.get("target") == "__main__"
        if exited is not None:
            end, running = exited, False
        elif hung:
            end, running = timeline.end, True
        else:
            end, running = (timeline.last if is_main or proc.get("daemon") else last_seen.get(pid, timeline.last)), False
        lanes.append(Lane(pid=pid, label=str(proc.get("label") or f"process {pid}"), daemon=proc.get("daemon"),
                          start=float(start), end=max(float(end), float(start)), running_at_stop=running,
                          code=proc.get("code") if isinstance(proc.get("code"), int) else None, is_main=is_main))
    lanes.sort(key=lambda lane: (not lane.is_main, lane.start))
    return lanes[:MAX_LANES], max(0, len(lanes) - MAX_LANES)


def _where_key(where: Any) -> tuple[Any, Any] | None:
    """(file, line) of a probe `where`, or None."""
    if not isinstance(where, dict):
        return None
    return where.get("file"), where.get("line")


def _ignored_lock_places(events: list[dict[str, Any]]) -> set[tuple[Any, Any]]:
    """Lines that start a process or thread: locks taken there belong to multiprocessing, not to the student
    (and a forked child inherits its parent's start() frame at the bottom of its stack)."""
    return {k for e in events if e.get("ev") in (grader_events.SPAWN, grader_events.THREAD_SPAWN) and (k := _where_key(e.get("where")))}


def _queue_locks(events: list[dict[str, Any]]) -> set[str]:
    """Lock ids that are a queue's own internal lock (the probe names a queue after its lock)."""
    return {str(e["queue"])[len("queue-"):] for e in events if str(e.get("queue", "")).startswith("queue-")}


def _lock_names(events: list[dict[str, Any]], ignored: set[tuple[Any, Any]], queue_locks: set[str]) -> dict[str, str]:
    """The student's locks, named "lock A", "lock B"... in order of first use; library locks are left out."""
    names: dict[str, str] = {}
    for event in events:
        if event.get("ev") not in (grader_events.ACQUIRE_WAIT, grader_events.ACQUIRED, grader_events.SELF_DEADLOCK):
            continue
        lock = str(event.get("lock", ""))
        where = _where_key(event.get("where"))
        if lock in names or lock in queue_locks or where is None or where in ignored:
            continue
        names[lock] = "lock " + _letters(len(names))
    return names


def _letters(index: int) -> str:
    """A, B, ..., Z, AA, AB..."""
    text = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        text = chr(65 + rest) + text
    return text


def _line(where: Any) -> str:
    """'line 12 (buy_ticket)' for a probe `where`, '' when unknown."""
    if not isinstance(where, dict) or not where.get("line"):
        return ""
    func = where.get("func")
    return f"line {where['line']}" + (f" ({func})" if func and func != "<module>" else "")


def _holds(events: list[dict[str, Any]], locks: dict[str, str], ends: dict[int, float], ended: set[int],
           stop: float | None) -> list[Segment]:
    """Every interval in which a process held one of the student's locks (to its end when never released;
    when it ended holding the lock and the run hung, the lock stays taken until the stop)."""
    open_: dict[tuple[Any, Any, str], list[tuple[float, Any]]] = {}
    holds: list[Segment] = []
    for event in events:
        kind, lock = event.get("ev"), str(event.get("lock", ""))
        if kind not in (grader_events.ACQUIRED, grader_events.RELEASED) or lock not in locks:
            continue
        key = (event.get("pid"), event.get("tid"), lock)
        if kind == grader_events.ACQUIRED:
            open_.setdefault(key, []).append((event["t"], event.get("where")))
        elif open_.get(key):
            start, where = open_[key].pop()
            holds.append(Segment(event["pid"], start, event["t"], "hold",
                                 f"holds {locks[lock]} (taken at {_line(where) or 'an unknown line'})", lock))
    for (pid, _tid, lock), stack in open_.items():
        for start, where in stack:
            if pid in ends:
                holds.append(Segment(pid, start, ends[pid], "hold never-released",
                                     f"holds {locks[lock]} (taken at {_line(where) or 'an unknown line'}) and never "
                                     "releases it", lock))
                if pid in ended and stop is not None and stop > ends[pid]:
                    holds.append(Segment(pid, ends[pid], stop, "orphan", f"{locks[lock]} stays taken: this process "
                                         "ended without releasing it, so nobody can acquire it any more", lock))
    return holds


def _waits(events: list[dict[str, Any]], locks: dict[str, str], ends: dict[int, float]) -> list[Segment]:
    """Waits that never ended: a lock never obtained, a q.get() that never returned."""
    pending: dict[tuple[Any, Any], dict[str, Any]] = {}
    for event in events:
        kind = event.get("ev")
        key = (event.get("pid"), event.get("tid"))
        if kind == grader_events.ACQUIRE_WAIT and str(event.get("lock", "")) in locks:
            pending[key] = event
        elif kind == grader_events.Q_GET_WAIT:
            pending[key] = event
        elif kind in (grader_events.ACQUIRED, grader_events.ACQUIRE_FAILED, grader_events.Q_GET, grader_events.Q_GET_RAISE):
            waiting = pending.get(key)
            if waiting is not None and (kind.startswith("q_") == (waiting["ev"] == grader_events.Q_GET_WAIT)):
                del pending[key]
    waits = []
    for (pid, _tid), event in pending.items():
        if pid not in ends or ends[pid] <= event["t"]:
            continue
        if event["ev"] == grader_events.ACQUIRE_WAIT:
            text = f"waits for {locks[str(event.get('lock'))]} at {_line(event.get('where')) or 'an unknown line'} and never gets it"
        else:
            text = f"blocked in q.get() at {_line(event.get('where')) or 'an unknown line'}: nothing more arrives"
        waits.append(Segment(pid, event["t"], ends[pid], "wait", text))
    return waits


@dataclass
class _Call:
    """A call of the critical function: when it was inside the critical section, and whether it succeeded."""

    pid: int
    inside: float
    until: float
    won: bool
    segment: Segment
    func: str = ""  # of a read-modify-write written out inline: the function that made both the read and the write
    returned: str | None = None  # with any_return: the repr of what the call returned


def _calls(events: list[dict[str, Any]], func: str, success: Any, ends: dict[int, float],
           holds: list[Segment], any_return: bool = False) -> list[_Call]:
    """Calls of the critical function. The critical section is the call's read-decide-write, from its first
    read of a file of the run to its last write, wherever the lock was (a lock around only part of it protects
    nothing); without file events, inside a call that takes a lock it is from its first acquire to its last
    release (waiting for the lock is not being inside); otherwise it is the whole call."""
    accesses: dict[Any, list[dict[str, Any]]] = {}
    for event in events:
        if event.get("ev") in grader_events.FILE_EVENTS:
            accesses.setdefault(event.get("pid"), []).append(event)
    open_: dict[tuple[Any, Any], list[float]] = {}
    calls = []
    held: dict[Any, list[Segment]] = {}
    for hold in holds:
        held.setdefault(hold.pid, []).append(hold)
    for event in events:
        kind = event.get("ev")
        if kind not in (grader_events.CALL, grader_events.RETURN, grader_events.RAISE) or event.get("func") != func:
            continue
        key = (event.get("pid"), event.get("tid"))
        if kind == grader_events.CALL:
            open_.setdefault(key, []).append(event["t"])
            continue
        if not open_.get(key):
            continue
        start = open_[key].pop()
        pid = event["pid"]
        value = event.get("value") if isinstance(event.get("value"), dict) else {}
        won = kind == grader_events.RETURN and (any_return or ("value" in value and value["value"] == success
                                                              and type(value["value"]) is type(success)))
        result = f"returned {value.get('repr', '?')}" if kind == grader_events.RETURN else f"raised {event.get('error', 'an exception')}"
        mine = [h for h in held.get(pid, []) if start <= h.start <= event["t"]]
        inside, until = (min(h.start for h in mine), min(max(h.end for h in mine), event["t"])) if mine else (start, event["t"])
        within = [e for e in accesses.get(pid, []) if start <= e["t"] <= event["t"]]
        reads = [e["t"] for e in within if e["ev"] == grader_events.FILE_READ]
        writes = [e["t"] for e in within if e["ev"] == grader_events.FILE_WRITE and (not reads or e["t"] >= min(reads))]
        if reads and writes:
            inside, until = min(reads), max(writes)
        calls.append(_Call(pid, inside, until, won, Segment(pid, start, event["t"], "call", f"inside {func}(): {result}"),
                           returned=str(value.get("repr")) if any_return and kind == grader_events.RETURN else None))
    for (pid, _tid), starts in open_.items():
        for start in starts:
            if pid in ends:
                calls.append(_Call(pid, start, ends[pid], False,
                                   Segment(pid, start, ends[pid], "call", f"inside {func}(), never returns")))
    return calls


def _rewrites(events: list[dict[str, Any]]) -> list[_Call]:
    """Read-modify-writes of a file of the run by child processes, without the critical function around them
    (written out inline): each write back with that process's last read of the same file before it."""
    mains = {e.get("pid") for e in events if e.get("ev") == grader_events.PROC_START and e.get("target") == "__main__"}
    last_read: dict[tuple[Any, Any, Any], dict[str, Any]] = {}
    calls = []
    for event in events:
        if event.get("ev") not in grader_events.FILE_EVENTS or event.get("pid") in mains:
            continue
        key = (event.get("pid"), event.get("tid"), event.get("path"))
        if event["ev"] == grader_events.FILE_READ:
            last_read[key] = event
            continue
        read = last_read.pop(key, None)
        if read is not None:
            pid = event["pid"]
            writers = {f.get("func") for f in event.get("frames") or []}
            func = next((str(f.get("func")) for f in read.get("frames") or [] if f.get("func") in writers), "")
            calls.append(_Call(pid, read["t"], event["t"], True, Segment(
                pid, read["t"], event["t"], "call", f"reads {event.get('path', 'the shared file')} and writes it back"),
                func))
    return calls


def _merge(intervals: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    """Overlapping intervals merged into one."""
    merged: list[list[float]] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(a, b) for a, b in merged]


def _overlaps(calls: list[_Call], lanes: list[Lane], func: str) -> tuple[list[Overlap], list[Segment]]:
    """Pairs of successful calls by different processes inside the critical section at the same time."""
    labels = {lane.pid: lane.label for lane in lanes}
    wins = sorted((c for c in calls if c.won and c.pid in labels), key=lambda c: c.inside)
    overlaps: list[Overlap] = []
    windows: dict[int, list[tuple[float, float]]] = {}
    for i, a in enumerate(wins):
        for b in wins[i + 1:]:
            if b.inside >= a.until and a.returned is None:
                break  # sorted by `inside`: no later call overlaps a (equal returns are compared over whole calls)
            if a.pid == b.pid:
                continue
            start, end = max(a.inside, b.inside), min(a.until, b.until)
            same = None
            if not start < end and a.returned is not None and a.returned == b.returned:
                # the same value returned by two calls running at once: both wrote it, from the same read, whatever
                # lock each held for part of its call (the accesses themselves are not recorded)
                start, end, same = max(a.segment.start, b.segment.start), min(a.segment.end, b.segment.end), a.returned
            if start < end:
                overlaps.append(Overlap(labels[a.pid], labels[b.pid], func, start, end, same))
                for call in (a, b):
                    windows.setdefault(call.pid, []).append((start, end))
    text = "inside the critical section at the same time as another process" + (
        ", and both succeeded" if all(c.returned is None for c in wins) else "")  # every return counts: no "success"
    segments = [Segment(pid, s, e, "overlap", text) for pid, spans in windows.items() for s, e in _merge(spans)]
    return overlaps, segments


def _unlocked_accesses(events: list[dict[str, Any]], calls: list[_Call], holds: list[Segment], func: str) -> list[Mark]:
    """Every read or write of the shared file made without holding a lock while another process was inside its
    read-decide-write: the accesses that let the race happen, whether or not a lock was held elsewhere."""
    windows = [(c.pid, c.inside, c.until) for c in calls if c.won]
    held: dict[Any, list[Segment]] = {}
    for hold in holds:
        held.setdefault(hold.pid, []).append(hold)
    marks = []
    for event in events:
        if event.get("ev") not in grader_events.FILE_EVENTS:
            continue
        pid, t = event.get("pid"), event["t"]
        if any(h.start <= t <= h.end for h in held.get(pid, [])):
            continue
        if not any(other != pid and inside <= t <= until for other, inside, until in windows):
            continue
        mine = next((c for c in calls if c.pid == pid and c.segment.start <= t <= c.segment.end), None)
        if mine is None:
            continue  # an access outside the critical function (a read-only look) is not part of the race
        frames = event.get("frames") or []
        named = mine.func or func  # inline: the function that made the read and the write, not load() or save()
        line = next((f.get("line") for f in frames if f.get("func") == named), frames[0].get("line") if frames else None)
        verb = "reads" if event["ev"] == grader_events.FILE_READ else "writes"
        marks.append(Mark(pid, t, "unlocked", f"{verb} {event.get('path', 'the shared file')}"
                          + (f" at line {line}" if line else "") + " without holding the lock, while another "
                          "process is inside its read-decide-write"))
    return marks


def _lock_overlaps(holds: list[Segment], lanes: list[Lane]) -> list[Segment]:
    """Holds of the 'same' lock by two processes at once (the lock was not really shared)."""
    labels = {lane.pid: lane.label for lane in lanes}
    by_lock: dict[str, list[Segment]] = {}
    for hold in holds:
        by_lock.setdefault(hold.ref, []).append(hold)
    windows: dict[int, list[tuple[float, float]]] = {}
    for same in by_lock.values():
        same.sort(key=lambda h: h.start)
        for i, a in enumerate(same):
            for b in same[i + 1:]:
                if b.start >= a.end:
                    break
                if a.pid != b.pid and a.pid in labels and b.pid in labels:
                    for hold in (a, b):
                        windows.setdefault(hold.pid, []).append((max(a.start, b.start), min(a.end, b.end)))
    return [Segment(pid, s, e, "overlap", "holds the lock at the same time as another process: each process had "
                    "its own lock, so nothing was shared") for pid, spans in windows.items() for s, e in _merge(spans)]


def _marks(events: list[dict[str, Any]], lanes: list[Lane], locks: dict[str, str]) -> list[Mark]:
    """Instants: queue puts and gets (sentinels marked), starts, second acquires, crashes, the main's end."""
    labels = {lane.pid: lane.label for lane in lanes}
    stop_gets, sentinel_puts = _stop_items(events, lanes)
    marks = []
    for event in events:
        kind, pid, where = event.get("ev"), event.get("pid"), _line(event.get("where"))
        at = f" at {where}" if where else ""
        if kind in (grader_events.Q_PUT, grader_events.Q_GET):
            item = event.get("item") if isinstance(event.get("item"), dict) else {}
            sentinel = id(event) in (sentinel_puts if kind == grader_events.Q_PUT else stop_gets)
            verb = "puts" if kind == grader_events.Q_PUT else "gets"
            text = f"{verb} {item.get('repr', '?')}{at}"
            if sentinel:
                text += " (a sentinel: a consumer stopped on this item)" if kind == grader_events.Q_PUT else " and stops: its sentinel"
            marks.append(Mark(pid, event["t"], ("put" if kind == grader_events.Q_PUT else "get") + (" sentinel" if sentinel else ""), text))
        elif kind == grader_events.Q_GET_RAISE:
            marks.append(Mark(pid, event["t"], "raise", f"q.get(){at} raised {event.get('error', '')}"))
        elif kind == grader_events.SPAWN:
            child = labels.get(event.get("child"), f"pid {event.get('child')}")
            daemon = "a daemon" if event.get("daemon") else "not a daemon"
            marks.append(Mark(pid, event["t"], "spawn", f"starts {child}{at} ({daemon})"))
        elif kind == grader_events.SELF_DEADLOCK:
            lock = locks.get(str(event.get("lock")), "a lock")
            marks.append(Mark(pid, event["t"], "self-deadlock", f"acquires {lock}{at} while already holding it: waits for itself"))
        elif kind == grader_events.MAIN_DONE:
            waiting = [labels.get(w.get("pid"), str(w.get("name"))) for w in event.get("waiting") or [] if isinstance(w, dict)]
            text = "the main program's code is done" + (f"; Python now waits for {', '.join(waiting)} (not daemons)" if waiting else "")
            marks.append(Mark(pid, event["t"], "done", text))
        elif kind == grader_events.PROC_EXIT and event.get("code") not in (0, None):
            marks.append(Mark(pid, event["t"], "crash", f"ends with exit code {event.get('code')} (crashed)"))
    return marks


def _late_puts(events: list[dict[str, Any]], lanes: list[Lane]) -> list[Mark]:
    """Items put on a queue after a consumer of the same step had stopped taking (its last get, or its end when it
    only waited; the consumer ended normally and put nothing), and never taken off it: the interleaving that lost them (a stop decided before the work was
    over). Each call of the plan (step) has queues of its own, so everything is matched within one step."""
    labels = {lane.pid: lane.label for lane in lanes}
    starts = sorted(e["t"] for e in events if e.get("ev") == grader_events.STEP_START)

    def step_of(t: float) -> int:
        return sum(start <= t for start in starts)

    stop_gets, sentinel_puts = _stop_items(events, lanes)
    puts = [e for e in events if e.get("ev") == grader_events.Q_PUT and id(e) not in sentinel_puts]
    sentinels = {_item_key(e) for e in events if id(e) in sentinel_puts}  # put by a process that put only those
    putters = {(step_of(e["t"]), e.get("pid")) for e in events if e.get("ev") == grader_events.Q_PUT}
    taken: dict[tuple[int, str, Any, Any], int] = {}
    last_get: dict[tuple[int, Any], dict[str, Any]] = {}
    for event in events:
        if event.get("ev") == grader_events.Q_GET:
            key = (step_of(event["t"]), *_item_key(event))
            taken[key] = taken.get(key, 0) + 1
            last_get[(key[0], event.get("pid"))] = event
    getters = {(step_of(e["t"]), e.get("pid")) for e in events
               if e.get("ev") in (grader_events.Q_GET, grader_events.Q_GET_WAIT, grader_events.Q_GET_RAISE)}
    stops: dict[int, dict[Any, tuple[float, str]]] = {}  # step -> consumer -> (when it stopped taking, how)
    for lane in lanes:  # a consumer seen taking from a queue that ended normally took nothing after its last get
        step = step_of(lane.start)
        if (lane.is_main or lane.running_at_stop or lane.code != 0 or (step, lane.pid) not in getters
                or (step, lane.pid) in putters):
            continue
        last = last_get.get((step, lane.pid))
        if last is None:
            stops.setdefault(step, {})[lane.pid] = (lane.end, "it had ended")
        elif id(last) in stop_gets and _item_key(last) in sentinels:
            stops.setdefault(step, {})[lane.pid] = (last["t"], "on its sentinel")
        else:
            stops.setdefault(step, {})[lane.pid] = (last["t"], "it took nothing after that")
    put_count: dict[tuple[int, str, Any, Any], int] = {}
    for event in puts:
        key = (step_of(event["t"]), *_item_key(event))
        put_count[key] = put_count.get(key, 0) + 1
    left = {key: count - taken.get(key, 0) for key, count in put_count.items()}
    marks = []
    for event in reversed(puts):  # a FIFO queue: the items of a kind never taken are the last ones put
        key = (step_of(event["t"]), *_item_key(event))
        if left[key] <= 0:
            continue
        left[key] -= 1
        before = sorted((t, pid, how) for pid, (t, how) in stops.get(key[0], {}).items()
                        if t < event["t"] and pid != event.get("pid"))
        if not before:
            continue
        _t, pid, how = before[0]
        where = _line(event.get("where"))
        marks.append(Mark(event["pid"], event["t"], "late", f"puts {key[3]}" + (f" at {where}" if where else "")
                          + f" after {labels.get(pid, f'pid {pid}')} had stopped taking ({how}): never taken off "
                          "the queue"))
    return sorted(marks, key=lambda m: m.t)


def _item_key(event: dict[str, Any]) -> tuple[str, Any, Any]:
    """What identifies a queue item across processes: its queue, type and repr."""
    item = event.get("item") if isinstance(event.get("item"), dict) else {}
    return str(event.get("queue")), item.get("type"), item.get("repr")


def _stop_items(events: list[dict[str, Any]], lanes: list[Lane]) -> tuple[set[int], set[int]]:
    """The gets a consumer stopped on (its last get before it ended normally), and the puts of those items by
    processes that put nothing else (who sends sentinels): ids of the events."""
    ended = {lane.pid for lane in lanes if not lane.running_at_stop and lane.code == 0 and not lane.is_main}
    last_get: dict[Any, dict[str, Any] | None] = {}
    for event in events:
        if event.get("ev") == grader_events.Q_GET:
            last_get[event.get("pid")] = event
        elif event.get("ev") == grader_events.Q_GET_WAIT:
            last_get[event.get("pid")] = None
    stop_gets = {id(e): _item_key(e) for pid, e in last_get.items() if e is not None and pid in ended}
    keys = set(stop_gets.values())
    puts: dict[Any, list[dict[str, Any]]] = {}
    for event in events:
        if event.get("ev") == grader_events.Q_PUT:
            puts.setdefault(event.get("pid"), []).append(event)
    sentinel_puts = {id(e) for same in puts.values() if all(_item_key(e) in keys for e in same) for e in same}
    return set(stop_gets), sentinel_puts


# ---- drawing ----------------------------------------------------------------------------------------------
@dataclass
class _Scale:
    """Maps run times to x; when a hang was stopped long after the last event, the quiet gap is squeezed."""

    t0: float
    last: float
    end: float
    compressed: bool

    def x(self, t: float) -> float:
        """The x coordinate of a run time."""
        width = WIDTH - LABEL_WIDTH - RIGHT_MARGIN
        t = min(max(t, self.t0), self.end)
        if not self.compressed:
            return LABEL_WIDTH + width * (t - self.t0) / (self.end - self.t0)
        if t <= self.last:
            return LABEL_WIDTH + width * COMPRESSED_SHARE * (t - self.t0) / (self.last - self.t0)
        rest = (t - self.last) / (self.end - self.last)
        return LABEL_WIDTH + width * (COMPRESSED_SHARE + (1 - COMPRESSED_SHARE) * rest)


def _scale(timeline: Timeline) -> _Scale:
    """The time scale of a timeline (squeezed when a hang was stopped long after the last event)."""
    end = max(timeline.end, timeline.t0 + 1e-6)
    quiet = end - timeline.last
    compressed = timeline.stop is not None and quiet > 0.5 * (timeline.last - timeline.t0)
    return _Scale(timeline.t0, max(timeline.last, timeline.t0 + 1e-6), end, compressed)


def _n(value: float) -> str:
    """A coordinate, short."""
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _duration(seconds: float) -> str:
    """Seconds as a short text: '12.3 ms', '250 ms', '1.25 s'."""
    seconds = max(0.0, seconds)
    if seconds < 1:
        return f"{seconds * 1000:.1f} ms" if seconds < 0.1 else f"{seconds * 1000:.0f} ms"
    return f"{seconds:.2f} s"


def _ticks(span: float) -> list[float]:
    """Round tick values (relative seconds) for an axis `span` seconds long: about 6 of them."""
    if span <= 0:
        return [0.0]
    raw = span / 6
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    return [i * step for i in range(int(span / step) + 1)]


def _tick_label(value: float, step: float) -> str:
    """The label of an axis tick, in the unit its step calls for."""
    if step >= 1:
        return f"{value:g} s"
    if step >= 0.001:
        return f"{value * 1000:g} ms"
    return f"{value * 1000:.2f} ms"


def _text(x: float, y: float, text: str, css: str, anchor: str = "start") -> str:
    """An escaped SVG <text> element."""
    return (f'<text x="{_n(x)}" y="{_n(y)}" class="{css}"'
            + (f' text-anchor="{anchor}"' if anchor != "start" else "") + f">{escape(text)}</text>")


def _short(text: str, limit: int) -> str:
    """Text cut to `limit` characters with an ellipsis (the full text goes in a <title>)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def svg(timeline: Timeline, ident: str, title: str) -> Markup:
    """The picture: inline SVG with a <title> and a <desc> (its text alternative is `words`)."""
    scale = _scale(timeline)
    height = TOP + LANE_HEIGHT * max(1, len(timeline.lanes)) + BOTTOM
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="timeline" viewBox="0 0 {WIDTH} {height}" '
        f'role="img" aria-labelledby="{ident}-title {ident}-desc" id="{ident}">',
        f'<title id="{ident}-title">{escape(title)}</title>',
        f'<desc id="{ident}-desc">{escape(summary(timeline))}</desc>',
        f'<defs><pattern id="{ident}-hatch" class="hatch" width="6" height="6" patternUnits="userSpaceOnUse" '
        'patternTransform="rotate(45)"><rect width="6" height="6" class="hatch-bg"/>'
        '<line x1="0" y1="0" x2="0" y2="6" class="hatch-line"/></pattern></defs>',
    ]
    parts += _axis(timeline, scale, height)
    for index, lane in enumerate(timeline.lanes):
        parts.append(_lane(timeline, scale, lane, TOP + index * LANE_HEIGHT, ident))
    parts += _stop(timeline, scale, height)
    parts.append("</svg>")
    return Markup("".join(parts))


def _axis(timeline: Timeline, scale: _Scale, height: int) -> list[str]:
    """The time axis: ticks, grid lines and the steps of the run."""
    span = (scale.last if scale.compressed else scale.end) - timeline.t0
    ticks = _ticks(span)
    step = ticks[1] if len(ticks) > 1 else 1.0
    parts = ['<g class="axis">']
    for value in ticks:
        x = scale.x(timeline.t0 + value)
        parts.append(f'<line x1="{_n(x)}" y1="{TOP - 6}" x2="{_n(x)}" y2="{height - BOTTOM}" class="grid"/>')
        parts.append(_text(x, TOP - 10, _tick_label(value, step), "tick", "middle"))
    parts.append(_text(LABEL_WIDTH - 30, TOP - 10, "time →", "tick", "end"))
    last_x = -1e9
    for number, (t, label) in enumerate(timeline.steps, 1):
        x = scale.x(t)
        parts.append(f'<line x1="{_n(x)}" y1="{TOP}" x2="{_n(x)}" y2="{height - BOTTOM}" class="step">'
                     f"<title>{escape(label)}</title></line>")
        if x - last_x > 34:
            parts.append(_text(x + 2, TOP - 1, f"step {number}", "step-label"))
            last_x = x
    if scale.compressed:
        x = scale.x(scale.last) + 4
        parts.append(_text(x, TOP - 10, f"… {_duration(scale.end - scale.last)} later", "tick"))
    parts.append("</g>")
    return parts


def _lane(timeline: Timeline, scale: _Scale, lane: Lane, y: float, ident: str) -> str:
    """One process's lane: label, lifetime, intervals and marks."""
    label = lane.label + (" · daemon" if lane.daemon else "")
    classes = "lane" + (" daemon" if lane.daemon else "") + (" main" if lane.is_main else "")
    parts = [f'<g class="{classes}" data-pid="{int(lane.pid)}">',
             f'<rect x="0" y="{_n(y)}" width="{WIDTH}" height="{LANE_HEIGHT}" class="lane-bg"/>',
             f'<text x="{LABEL_WIDTH - 8}" y="{_n(y + 16)}" class="label" text-anchor="end">'
             f"<title>{escape(label)}</title>{escape(_short(label, 32))}</text>"]
    x1, x2 = scale.x(lane.start), max(scale.x(lane.end), scale.x(lane.start) + 1.5)
    life = "life" + (" daemon" if lane.daemon else "") + (" running" if lane.running_at_stop else "")
    state = ("still running when the grader stopped the run" if lane.running_at_stop
             else f"ended with exit code {lane.code}" if lane.code is not None else "ended")
    parts.append(f'<rect x="{_n(x1)}" y="{_n(y + 9)}" width="{_n(x2 - x1)}" height="6" class="{life}">'
                 f"<title>{escape(label)}: from {timeline.rel(lane.start)} to {timeline.rel(lane.end)}, {state}</title></rect>")
    segments = [s for s in timeline.segments if s.pid == lane.pid]
    for kind in ("call", "hold", "orphan", "wait", "overlap"):
        parts += _segments([s for s in segments if s.kind.split()[0] == kind], scale, y, ident, timeline)
    parts += _marks_svg([m for m in timeline.marks if m.pid == lane.pid], scale, y, timeline)
    if lane.running_at_stop:
        parts.append(f'<path d="M{_n(x2)} {_n(y + 6)}l5 6-5 6z" class="running-end"/>')
    parts.append("</g>")
    return "".join(parts)


_SEGMENT_BOX = {"call": (4, 16), "hold": (7, 10), "orphan": (9, 6), "wait": (6, 12), "overlap": (2, 20)}


def _segments(segments: list[Segment], scale: _Scale, y: float, ident: str, timeline: Timeline) -> list[str]:
    """Intervals of one kind on a lane (one path with many boxes when there are very many)."""
    if not segments:
        return []
    top, height = _SEGMENT_BOX[segments[0].kind.split()[0]]
    fill = f' fill="url(#{ident}-hatch)"' if segments[0].kind == "wait" else ""
    boxes = [(scale.x(s.start), max(scale.x(s.end) - scale.x(s.start), 1.5), s) for s in segments]
    if len(segments) > MAX_DETAILED_MARKS:
        d = "".join(f"M{_n(x)} {_n(y + top)}h{_n(w)}v{height}h-{_n(w)}z" for x, w, _ in boxes)
        names = {s.kind for s in segments}
        return [f'<path d="{d}" class="{" ".join(sorted(names))}"{fill}>'
                f"<title>{len(segments)} intervals: {escape(segments[0].text)}, …</title></path>"]
    return [f'<rect x="{_n(x)}" y="{_n(y + top)}" width="{_n(w)}" height="{height}" class="{s.kind}"{fill}>'
            f"<title>{escape(s.text)}, from {timeline.rel(s.start)} to {timeline.rel(s.end)}</title></rect>"
            for x, w, s in boxes]


_MARK_SHAPES = {
    "put": "M{x} {y1}l-3.5-5h7z",          # a triangle pointing down onto the lane: an item goes in
    "get": "M{x} {y2}l-3.5 5h7z",          # a triangle below the lane: an item comes out
    "raise": "M{x} {y2}l-3.5 5h7z",
    "spawn": "M{x} {y1}v-6",
    "done": "M{x} {y1}v-6",
    "crash": "M{xa} {ya}l7 7m0-7l-7 7",
    "self-deadlock": "M{xa} {ya}l7 7m0-7l-7 7",
    "unlocked": "M{x} {y0}v24",  # a red bar across the lane: an access without the lock
    "late": "M{x} {y0}v24",  # a red bar across the lane: an item put after a consumer stopped, never taken
}


def _shape(mark: Mark, x: float, y: float) -> str:
    """The SVG path of a mark at x on the lane at y."""
    base = mark.kind.split()[0]
    if "sentinel" in mark.kind:
        cy = y + 3 if base == "put" else y + 21
        return f"M{_n(x)} {_n(cy - 4)}l4 4-4 4-4-4z"
    return _MARK_SHAPES[base].format(x=_n(x), y0=_n(y), y1=_n(y + 9), y2=_n(y + 15), xa=_n(x - 3.5), ya=_n(y + 8.5))


def _marks_svg(marks: list[Mark], scale: _Scale, y: float, timeline: Timeline) -> list[str]:
    """The marks of a lane, each with its <title> (grouped per kind when there are very many)."""
    if not marks:
        return []
    if len(marks) > MAX_DETAILED_MARKS:
        parts = []
        for kind in sorted({m.kind for m in marks}):
            same = [m for m in marks if m.kind == kind]
            d = "".join(_shape(m, scale.x(m.t), y) for m in same)
            parts.append(f'<path d="{d}" class="mark {kind}"><title>{len(same)} × {escape(_short(same[0].text, 80))}, …</title></path>')
        return parts
    return [f'<path d="{_shape(m, scale.x(m.t), y)}" class="mark {m.kind}"><title>{escape(m.text)} '
            f"({timeline.rel(m.t)})</title></path>" for m in marks]


def _stop(timeline: Timeline, scale: _Scale, height: int) -> list[str]:
    """The dashed line where the grader stopped a run, with its reason."""
    if timeline.stop is None:
        return []
    x = scale.x(timeline.stop) - 1
    reason = {results.DEADLOCK: "deadlock", results.SELF_DEADLOCK: "a lock acquired twice",
              results.KEPT_ALIVE: "the program never exited", results.TIMEOUT: "timeout"}.get(timeline.status, timeline.status)
    return [f'<g class="stop"><line x1="{_n(x)}" y1="{TOP - 18}" x2="{_n(x)}" y2="{height - BOTTOM}" class="stop-line">'
            f"<title>The grader stopped the run after {timeline.duration:.1f} s ({escape(reason)})</title></line>",
            _text(x - 3, TOP - 22, f"stopped: {reason}", "stop-label", "end"), "</g>"]


# ---- words --------------------------------------------------------------------------------------------------
def summary(timeline: Timeline) -> str:
    """One or two sentences: what the picture shows."""
    daemons = sum(1 for lane in timeline.lanes if lane.daemon)
    text = (f"{len(timeline.lanes)} process{'es' if len(timeline.lanes) != 1 else ''}"
            + (f" ({daemons} daemon{'s' if daemons != 1 else ''})" if daemons else "")
            + f" over {_duration(timeline.end - timeline.t0)}.")
    if timeline.hidden_lanes:
        text += f" {timeline.hidden_lanes} more processes are not drawn."
    if timeline.stop is not None:
        running = [lane.label for lane in timeline.lanes if lane.running_at_stop]
        text += f" The grader stopped the run after {timeline.duration:.1f} s"
        text += f"; still running then: {', '.join(running[:4])}{', …' if len(running) > 4 else ''}." if running else "."
    if timeline.overlaps:
        text += " " + overlap_sentence(timeline)
    return text


def overlap_sentence(timeline: Timeline) -> str:
    """The overlaps in words, as the reason of a failed check names them (empty when there are none); without
    overlaps, the items put after a consumer had stopped."""
    late = [m for m in timeline.marks if m.kind == "late"]
    if not timeline.overlaps and late:
        labels = {lane.pid: lane.label for lane in timeline.lanes}
        mains = {lane.pid for lane in timeline.lanes if lane.is_main}
        first = next((m for m in late if m.pid not in mains), late[0])  # an item of a producer tells it best
        return (f"In red on the timeline: {labels.get(first.pid, 'a process')} {first.text} "
                f"({timeline.rel(first.t)})"
                + (f"; {len(late) - 1} more item{'s' if len(late) != 2 else ''} like that" if len(late) > 1 else "")
                + ": nothing takes an item put after the consumers have stopped.")
    if not timeline.overlaps:
        return ""
    first = timeline.overlaps[0]
    more = len(timeline.overlaps) - 1
    if first.same_return is not None:
        return (f"In red on the timeline: {first.first} and {first.second} were both inside {first.func} at the same "
                f"time (from {timeline.rel(first.start)} to {timeline.rel(first.end)}) and both returned "
                f"{first.same_return}: each wrote {first.same_return} after reading the same value"
                + (f"; {more} more pair{'s' if more != 1 else ''} of processes overlapped" if more else "")
                + ". A critical section lets one process in at a time.")
    return (f"In red on the timeline: {first.first} and {first.second} were both inside {first.func} at the same time "
            f"(from {timeline.rel(first.start)} to {timeline.rel(first.end)}), between their read and their write of "
            "the shared state, and both " + ("succeeded" if first.func.endswith("()") else "wrote it back")
            + (f"; {more} more pair{'s' if more != 1 else ''} of processes overlapped like that" if more else "")
            + ". A critical section lets one process in at a time."
            + (" Each red bar is a read or write of the shared file made without holding the lock while another "
               "process was inside its read-decide-write." if any(m.kind == "unlocked" for m in timeline.marks) else ""))


def words(timeline: Timeline) -> list[tuple[str, list[str]]]:
    """The text alternative: per process, what it did, in time order (the first few things)."""
    result = []
    for lane in timeline.lanes:
        items: list[tuple[float, str]] = [(lane.start, f"starts at {timeline.rel(lane.start)}"
                                           + (" as a daemon" if lane.daemon else ""))]
        items += [(s.start, f"{s.text} from {timeline.rel(s.start)} to {timeline.rel(s.end)}")
                  for s in timeline.segments if s.pid == lane.pid]
        items += [(m.t, f"{m.text} at {timeline.rel(m.t)}") for m in timeline.marks if m.pid == lane.pid]
        items.sort(key=lambda item: item[0])
        lines = [text for _, text in items[:MAX_WORDS_PER_LANE]]
        if len(items) > MAX_WORDS_PER_LANE:
            lines.append(f"… and {len(items) - MAX_WORDS_PER_LANE} more events")
        lines.append("still running when the grader stopped the run" if lane.running_at_stop
                     else f"ends at {timeline.rel(lane.end)}" + (f" with exit code {lane.code}" if lane.code else ""))
        result.append((lane.label + (" (daemon)" if lane.daemon else ""), lines))
    return result
