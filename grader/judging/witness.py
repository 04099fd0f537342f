"""The witness of a check-then-act race: from the probe's file and lock events, the interleaving that broke
the invariant ("buyer 3 read count=1 at line 45 without holding the lock (4.1 ms); buyer 7 read count=1 at
line 45 (4.3 ms) before buyer 3 wrote it back..."), and where the lock was when it was in the wrong place
(the decision taken before the lock, or the lock around only the read)."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from grader.judging.evidence import Hold, Run, Step, capital
from grader.probe import grader_events
from grader.results import Location

ANY = object()  # `success` for a function whose every return counts (a deposit returns None)
NO_LOCK = "no lock"
READ_OUTSIDE = "read outside the lock"
WRITE_OUTSIDE = "write outside the lock"
BOTH_LOCKED = "both under a lock"


@dataclass
class Access:
    """One read or write of the shared file by a process, at the line of the critical function that made it."""

    pid: int
    t: float
    kind: str  # "read" or "write"
    line: int | None
    value: str
    locked: bool


@dataclass
class Section:
    """One call of the critical function: its read of the shared state, its write back, and its lock holds."""

    pid: int
    start: float
    end: float
    won: bool
    read: Access | None = None
    write: Access | None = None
    holds: list[Hold] = field(default_factory=list)


@dataclass
class Witness:
    """Two processes whose read-decide-writes interleaved, and how the lock sat around their accesses."""

    first: Section | None  # None: no pair was caught interleaving, but the lock's place is known
    second: Section | None
    placement: str
    unprotected: Access | None
    hold: Hold | None
    release_line: int | None

    def sentence(self, run: Run, step: Step, what: str) -> str:
        """The interleaving in words, times from the start of the step ('' when no pair was caught)."""
        a, b = self.first, self.second
        if a is None or b is None or a.read is None or b.read is None or a.write is None:
            return ""

        def who(section: Section) -> str:
            return run.processes[section.pid].label if section.pid in run.processes else f"process {section.pid}"

        def when(access: Access) -> str:
            return moment(run, access.t)

        def lock(access: Access) -> str:
            return " holding the lock" if access.locked else " without holding the lock"

        return (f"{capital(who(a))} read {a.read.value} at line {a.read.line}{lock(a.read)} ({when(a.read)}); "
                f"{who(b)} read {b.read.value} at line {b.read.line}{lock(b.read)} ({when(b.read)}), before "
                f"{who(a)} wrote it back at line {a.write.line}{lock(a.write)} ({when(a.write)}): both {what}.")

    def told(self, run: Run, step: Step, what: str) -> str:
        """The interleaving as the start of a reason: its sentence and a space, or nothing."""
        text = self.sentence(run, step, what)
        return f"{text} " if text else ""

    def placement_sentence(self, run: Run, shared: str = "shared state") -> str:
        """Where the lock was, when it was held but not around the whole read-decide-write ('' otherwise);
        `shared` names the shared state as the exercise does ("count")."""
        access, hold = self.unprotected, self.hold
        if access is None or hold is None or not hold.where:
            return ""
        who = run.processes[access.pid].label if access.pid in run.processes else f"process {access.pid}"
        taken = hold.where.get("line")
        if self.placement == READ_OUTSIDE:
            return (f"The lock is in the wrong place: {who} read the {shared} at line {access.line} before "
                    f"taking the lock at line {taken}, so several processes read the same {shared} and decided on "
                    "it before the lock was even taken. The read, the decision and the write must all happen while "
                    "the lock is held.")
        if self.placement == WRITE_OUTSIDE:
            released = (f" at line {self.release_line}" if self.release_line and self.release_line != taken
                        else "")
            return (f"The lock covers only part of the critical section: {who} took it at line {taken} and "
                    f"released it{released} before writing the {shared} back at line {access.line} without it, so "
                    f"others read the same {shared} in between. The read, the decision and the write must all "
                    "happen while the lock is held.")
        return ""

    def locations(self, run: Run) -> list[Location]:
        """The unprotected line first (when the lock was misplaced), then both processes' reads."""
        found: list[Location] = []
        if self.unprotected is not None and self.unprotected.line:
            found.append(Location(run.student_file, self.unprotected.line, f"{self.unprotected.kind} outside the lock"))
        if self.hold is not None and self.hold.where and self.hold.where.get("line"):
            found.append(Location(run.student_file, int(self.hold.where["line"]), "the lock is taken here"))
        for access in (s.read for s in (self.first, self.second) if s is not None):
            if access is not None and access.line and all(loc.line != access.line for loc in found):
                found.append(Location(run.student_file, access.line, "reads the shared state"))
        return found


def moment(run: Run, t: float) -> str:
    """A time of the run as the timeline shows it: from the run's first event or process start ("4.1 ms")."""
    times = [e["t"] for e in run.outcome.events if isinstance(e.get("t"), (int, float))]
    times += [p.started for p in run.processes.values() if isinstance(p.started, (int, float))]
    return f"{(t - min(times, default=t)) * 1000:.1f} ms"


def sections(run: Run, step: Step, func: str, path: str, success: Any = True) -> list[Section]:
    """Every call of `func` by a process of `step`, with its accesses to the file `path` and its lock holds."""
    pids = {p.pid for p in run.children_of_step(step)}
    holds: dict[int, list[Hold]] = {}
    for hold in run.holds():
        holds.setdefault(hold.pid, []).append(hold)
    open_calls: dict[tuple[int, Any], list[float]] = {}
    found: list[Section] = []
    for event in run.events("call", "return", "raise"):
        if event.get("func") != func or event["pid"] not in pids:
            continue
        key = (event["pid"], event.get("tid"))
        if event["ev"] == "call":
            open_calls.setdefault(key, []).append(event["t"])
        elif open_calls.get(key):
            start = open_calls[key].pop()
            value = event.get("value") if isinstance(event.get("value"), dict) else {}
            won = event["ev"] == "return" and (success is ANY or value.get("value") == success)
            mine = [h for h in holds.get(event["pid"], []) if h.acquired <= event["t"] and
                    (h.released is None or h.released >= start)]
            found.append(Section(event["pid"], start, event["t"], won, holds=mine))
    accesses = [e for e in run.events(*grader_events.FILE_EVENTS) if e.get("path") == path and e["pid"] in pids]
    for section in found:
        inside = [e for e in accesses if e["pid"] == section.pid and section.start <= e["t"] <= section.end]
        reads = [e for e in inside if e["ev"] == grader_events.FILE_READ]
        writes = [e for e in inside if e["ev"] == grader_events.FILE_WRITE]
        section.read = _access(reads[0], "read", func, section.holds) if reads else None
        section.write = _access(writes[-1], "write", func, section.holds) if writes else None
    return found


def rewrites(run: Run, step: Step, path: str) -> list[Section]:
    """Every read-modify-write of the file `path` by a process of `step`, wherever it is written out (the
    critical function inlined in a loop): each write back paired with that process's last read before it. The
    lines are those of the innermost function that made both the read and the write."""
    pids = {p.pid for p in run.children_of_step(step)}
    holds: dict[int, list[Hold]] = {}
    for hold in run.holds():
        holds.setdefault(hold.pid, []).append(hold)
    last_read: dict[tuple[int, Any], dict[str, Any]] = {}
    found: list[Section] = []
    for event in run.events(*grader_events.FILE_EVENTS):
        if event.get("path") != path or event["pid"] not in pids:
            continue
        key = (event["pid"], event.get("tid"))
        if event["ev"] == grader_events.FILE_READ:
            last_read[key] = event
            continue
        read = last_read.pop(key, None)
        if read is None:
            continue  # a write with no read before it (the file made afresh) modifies nothing it read
        mine = [h for h in holds.get(event["pid"], []) if h.acquired <= event["t"] and
                (h.released is None or h.released >= read["t"])]
        func = _common_function(read.get("frames") or [], event.get("frames") or [])
        section = Section(event["pid"], read["t"], event["t"], True, holds=mine)
        section.read, section.write = _access(read, "read", func, mine), _access(event, "write", func, mine)
        found.append(section)
    return found


def _common_function(read: list[dict[str, Any]], write: list[dict[str, Any]]) -> str:
    """The innermost function of the student's whose frames hold both the read and the write ('' if none)."""
    writers = {f.get("func") for f in write}
    return next((str(f.get("func")) for f in read if f.get("func") in writers), "")


def find(run: Run, step: Step, func: str, path: str, success: Any = True) -> Witness | None:
    """The first pair of successful calls whose read-decide-writes interleaved: the second read the shared
    state after the first read it and before the first wrote it back. When `func` never read and wrote the
    file (its work written out inline elsewhere), the read-modify-writes of the file wherever they were made."""
    done = sorted((s for s in sections(run, step, func, path, success) if s.won and s.read and s.write),
                  key=lambda s: s.read.t)  # type: ignore[union-attr]
    if not done:
        done = sorted(rewrites(run, step, path), key=lambda s: s.read.t)  # type: ignore[union-attr]
    for i, a in enumerate(done):
        for b in done[i + 1:]:
            assert a.read is not None and a.write is not None and b.read is not None
            if b.read.t >= a.write.t:
                break
            if b.pid != a.pid:
                return _witness(run, a, b)
    # Events are stamped a moment apart from the file operations they record: two successful calls that read
    # the very same state are the witness too (the second read it before the first's write took effect).
    for i, a in enumerate(done):
        for b in done[i + 1:]:
            if b.pid != a.pid and b.read.value == a.read.value:  # type: ignore[union-attr]
                return _witness(run, a, b)
    # No pair caught (a file read a moment before it was replaced, on a loaded machine): where the lock sat
    # around any successful call is still known, and is what the student must move.
    for section in done:
        placed = _witness(run, section, section)
        if placed.placement in (READ_OUTSIDE, WRITE_OUTSIDE):
            return Witness(None, None, placed.placement, placed.unprotected, placed.hold, placed.release_line)
    return None


def _witness(run: Run, a: Section, b: Section) -> Witness:
    """The pair, with where the lock sat around the first process's accesses."""
    assert a.read is not None and a.write is not None
    if not a.holds and not b.holds:
        return Witness(a, b, NO_LOCK, None, None, None)
    for section in (a, b):
        assert section.read is not None
        if section.holds and not section.read.locked:
            return Witness(a, b, READ_OUTSIDE, section.read, _next_hold(section.holds, section.read.t), None)
        if section.holds and section.write is not None and not section.write.locked:
            hold = _last_hold(section.holds, section.write.t)
            return Witness(a, b, WRITE_OUTSIDE, section.write, hold, _release_line(run, hold))
    return Witness(a, b, BOTH_LOCKED, None, None, None)


def _access(event: dict[str, Any], kind: str, func: str, holds: list[Hold]) -> Access:
    frames = event.get("frames") or []
    frame = next((f for f in frames if f.get("func") == func), frames[0] if frames else {})
    locked = any(h.covers(event["t"]) for h in holds)
    return Access(event["pid"], event["t"], kind, frame.get("line"), _state(event.get("head", "")), locked)


def _state(head: str) -> str:
    """What the file said, as a student would write it: count=1 for {"count": 1}."""
    try:
        data = json.loads(head)
    except ValueError:
        return repr(head[:40])
    if isinstance(data, dict) and data:
        return ", ".join(f"{k}={v}" for k, v in list(data.items())[:3])
    return repr(data)


def _next_hold(holds: list[Hold], t: float) -> Hold | None:
    later = [h for h in holds if h.acquired >= t]
    return min(later, key=lambda h: h.acquired) if later else holds[0]


def _last_hold(holds: list[Hold], t: float) -> Hold | None:
    earlier = [h for h in holds if h.acquired <= t]
    return max(earlier, key=lambda h: h.acquired) if earlier else holds[-1]


def _release_line(run: Run, hold: Hold | None) -> int | None:
    if hold is None or hold.released is None:
        return None
    event = next((e for e in run.events("released", pid=hold.pid) if e["t"] == hold.released), None)
    where = event.get("where") if event else None
    return int(where["line"]) if where and where.get("line") else None
