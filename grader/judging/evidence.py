"""Reading a run: the probe's events turned into processes, steps, lock intervals and plain-words
explanations of what went wrong (a hang, a crash at import, a process that outlived the program)."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterable

from grader.running import conductor, runner
from grader.results import HANG_STATUSES, Evidence, Location, ProcessStack
from grader.probe import grader_events
MAX_EVENTS_KEPT = 4000
# multiprocessing's own helper processes (a Manager's server): never the student's stuck process.
_INFRASTRUCTURE_TARGETS = {"_run_server"}
# Library calls in which a stuck process is waiting (else it is busy, and is said to be running).
_BLOCKING_CALLS = {"join", "acquire", "get", "put", "wait", "recv", "recv_bytes", "poll", "sleep", "select",
                   "accept", "communicate", "_wait_for_tstate_lock", "task_done"}
_FRAME = re.compile(r'^\s*File "(?P<file>[^"]+)", line (?P<line>\d+) in (?P<func>.+)$')
_THREAD = re.compile(r"^(Current thread|Thread) (?P<id>0x[0-9a-f]+)", re.IGNORECASE)


@dataclass
class Proc:
    """One process of a run, as the probe saw it."""

    pid: int
    name: str = ""
    target: str = ""
    daemon: bool | None = None
    parent: int | None = None
    started: float | None = None
    ran: float | None = None
    exited: float | None = None
    code: int | None = None
    spawn_where: dict[str, Any] | None = None
    label: str = ""

    @property
    def is_main(self) -> bool:
        return self.target == "__main__"


@dataclass
class Step:
    """One call the driver made (e.g. main(db_path, 10)), with its outcome."""

    index: int
    call: str
    label: str
    start: float
    end: float | None = None
    value: dict[str, Any] | None = None
    error: dict[str, Any] | None = None

    @property
    def finished(self) -> bool:
        return self.end is not None

    def contains(self, t: float | None) -> bool:
        return t is not None and self.start <= t and (self.end is None or t <= self.end)


@dataclass
class Hold:
    """A lock held by one process from acquire to release."""

    pid: int
    lock: str
    acquired: float
    released: float | None
    where: dict[str, Any] | None

    def covers(self, t: float) -> bool:
        """Whether the lock was held at `t` (a hold never released lasts to the end of the run)."""
        return self.acquired <= t and (self.released is None or t <= self.released)


@dataclass
class StackFrame:
    file: str
    line: int
    func: str


@dataclass
class Run:
    """A finished run with the readings the checks need."""

    outcome: runner.RunOutcome
    label: str
    student_file: str
    processes: dict[int, Proc] = field(default_factory=dict)
    steps: list[Step] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.processes = _processes(self.outcome.events)
        self.steps = _steps(self.outcome.events)
        _name_per_trial(self.processes, self.steps)

    # ---- queries ------------------------------------------------------------------------------
    def events(self, *kinds: str, pid: int | None = None) -> list[dict[str, Any]]:
        return [e for e in self.outcome.events if (not kinds or e["ev"] in kinds) and (pid is None or e["pid"] == pid)]

    def first(self, kind: str) -> dict[str, Any] | None:
        return next(iter(self.events(kind)), None)

    def spawned_in(self, step: Step) -> list[Proc]:
        """Children started while `step` ran, dated by the parent's start() (a spawned child boots later)."""
        spawned_at = {e["child"]: e["t"] for e in self.events(grader_events.SPAWN)}
        procs = [p for p in self.processes.values()
                 if not p.is_main and step.contains(spawned_at.get(p.pid, p.started))]
        return sorted(procs, key=lambda p: spawned_at.get(p.pid, p.started or 0))

    @property
    def hung(self) -> bool:
        return self.outcome.status in HANG_STATUSES

    @property
    def main(self) -> Proc | None:
        return next((p for p in self.processes.values() if p.is_main), None)

    def children_of_step(self, step: Step, target: str | None = None) -> list[Proc]:
        """Processes started while a step ran (optionally only those running `target`), in start order."""
        procs = [p for p in self.processes.values() if not p.is_main and step.contains(p.started)]
        if target is not None:
            procs = [p for p in procs if p.target == target]
        return sorted(procs, key=lambda p: p.started or 0)

    def returns(self, func: str, pids: Iterable[int] | None = None) -> list[dict[str, Any]]:
        wanted = set(pids) if pids is not None else None
        return [e for e in self.events(grader_events.RETURN) if e["func"] == func and (wanted is None or e["pid"] in wanted)]

    def holds(self) -> list[Hold]:
        """Every interval in which a process held a lock (released None: never released)."""
        open_: dict[tuple[int, int, str], list[Hold]] = {}
        holds: list[Hold] = []
        for event in self.events(grader_events.ACQUIRED, grader_events.RELEASED):
            key = (event["pid"], event.get("tid", 0), event["lock"])
            if event["ev"] == grader_events.ACQUIRED:
                hold = Hold(event["pid"], event["lock"], event["t"], None, event.get("where"))
                open_.setdefault(key, []).append(hold)
                holds.append(hold)
            elif open_.get(key):
                open_[key].pop().released = event["t"]
        return holds

    def stack_of(self, pid: int) -> list[StackFrame]:
        """The student's frames in a process's dumped stack (main thread first), innermost first."""
        text = self.outcome.stacks.get(pid, "")
        return [f for f in _parse_stack(text) if f.file == self.student_file]

    def last_error_line(self, stream: str) -> str:
        """The last line a process ("main", or its pid as text) wrote to stderr, its exception; '' when none."""
        err = self.outcome.output.get(stream, {}).get("err", "").strip()
        return err.splitlines()[-1] if err else ""

    def describe_where(self, where: dict[str, Any] | None) -> str:
        if not where:
            return ""
        return f"line {where['line']} ({where['func']})" if where.get("func") not in (None, "<module>") else f"line {where['line']}"

    def location(self, where: dict[str, Any] | None, label: str = "") -> list[Location]:
        if not where or not where.get("line"):
            return []
        return [Location(file=where.get("file") or self.student_file, line=int(where["line"]), label=label)]

    # ---- evidence for the results model -----------------------------------------------------
    def evidence(self) -> Evidence:
        labels = {p.pid: p.label for p in self.processes.values()}
        output = {labels.get(int(k), k) if k.isdigit() else _stream_owner(k, self): v for k, v in self.outcome.output.items()}
        output = {who: _named_streams(streams, self.processes.values()) for who, streams in output.items()}
        stacks = [
            ProcessStack(pid=pid, label=labels.get(pid, f"process {pid}"), text=text)
            for pid, text in sorted(self.outcome.stacks.items())
        ]
        processes = [
            {"pid": p.pid, "label": p.label, "target": p.target, "daemon": p.daemon, "parent": p.parent,
             "started": p.started, "exited": p.exited, "code": p.code, "spawn_where": p.spawn_where}
            for p in sorted(self.processes.values(), key=lambda p: p.started or 0)
        ]
        events = self.outcome.events
        if len(events) > MAX_EVENTS_KEPT:
            events = events[:MAX_EVENTS_KEPT]
        files = {k: v[:4000] for k, v in self.outcome.files.items()}
        schedule: dict[str, Any] = {}
        if self.outcome.schedule:
            trials = len(self.steps) or 1
            schedule = {**self.outcome.schedule, "trials": trials,
                        "bounds": conductor.detection_bounds(self.outcome.schedule, trials)}
        return Evidence(status=self.outcome.status, duration=round(self.outcome.duration, 3), output=output,
                        stacks=stacks, events=events, processes=processes, files=files,
                        isolation=self.outcome.isolation, schedule=schedule)


def _named_streams(streams: dict[str, str], procs: Iterable[Proc]) -> dict[str, str]:
    """multiprocessing heads a child's traceback with "Process Process-3:": add the name the feedback uses."""
    err = streams.get("err")
    if not err or "Process " not in err:
        return streams
    for proc in procs:
        if proc.name and proc.label and f"Process {proc.name}:" in err:
            err = re.sub(rf"^Process {re.escape(proc.name)}:$", f"Process {proc.name}, {proc.label}:", err,
                         flags=re.MULTILINE)
    return {**streams, "err": err}


def capital(text: str) -> str:
    """The text with its first letter in upper case, to start a sentence with a process's label."""
    return text[:1].upper() + text[1:]


def overlapping_holders(run: Run, holds: list[Hold]) -> tuple[str, str] | None:
    """Two processes that held 'the' lock at the same moment: then they were not sharing one lock."""
    ordered = sorted(holds, key=lambda h: h.acquired)
    for i, first in enumerate(ordered):
        for second in ordered[i + 1:]:
            if second.acquired >= (first.released if first.released is not None else float("inf")):
                break
            if second.pid != first.pid:
                names = [run.processes[h.pid].label if h.pid in run.processes else f"pid {h.pid}"
                         for h in (first, second)]
                return names[0], names[1]
    return None


def _stream_owner(key: str, run: Run) -> str:
    return "main program" if key == "main" else key


def _processes(events: list[dict[str, Any]]) -> dict[int, Proc]:
    procs: dict[int, Proc] = {}
    spawns: dict[int, dict[str, Any]] = {}
    for event in events:
        kind, pid = event["ev"], event["pid"]
        if kind == grader_events.SPAWN:
            spawns[event["child"]] = event
        elif kind == grader_events.PROC_START:
            proc = procs.setdefault(pid, Proc(pid))
            proc.name, proc.target = event.get("name", ""), event.get("target", "")
            proc.daemon, proc.parent, proc.started = event.get("daemon"), event.get("parent"), event["t"]
        elif kind == grader_events.PROC_RUN and pid in procs:
            procs[pid].ran = event["t"]
        elif kind == grader_events.PROC_EXIT and pid in procs:
            procs[pid].exited, procs[pid].code = event["t"], event.get("code")
    for pid, spawn in spawns.items():
        proc = procs.setdefault(pid, Proc(pid, name=spawn.get("name", ""), target=spawn.get("target", ""),
                                          daemon=spawn.get("daemon"), parent=spawn["pid"], started=spawn["t"]))
        proc.spawn_where = spawn.get("where")
        if proc.daemon is None:
            proc.daemon = spawn.get("daemon")
    counters: dict[str, int] = {}
    for proc in sorted(procs.values(), key=lambda p: p.started or 0):
        if proc.is_main:
            proc.label = "the main process"
            continue
        role = proc.target or "process"
        counters[role] = counters.get(role, 0) + 1
        proc.label = f"{role} {counters[role]} (pid {proc.pid})"
    return procs


def _name_per_trial(procs: dict[int, Proc], steps: list[Step]) -> None:
    """One name per process, numbered within its trial (its step) as a student counts them: "buyer 3 of 6
    (trial 2)"; a process's pid (of the run's own namespace) means nothing to a student and is left out."""
    groups: dict[tuple[int | None, str], list[Proc]] = {}
    for proc in sorted(procs.values(), key=lambda p: p.started or 0):
        if proc.is_main:
            continue
        step = next((s.index for s in steps if s.contains(proc.started)), None)
        groups.setdefault((step, proc.target or "process"), []).append(proc)
    trials = len({step for step, _ in groups if step is not None})
    for (step, role), members in groups.items():
        for number, proc in enumerate(members, 1):
            label = f"{role} {number}" + (f" of {len(members)}" if len(members) > 1 else "")
            proc.label = label + (f" (trial {step + 1})" if step is not None and trials > 1 else "")


def _steps(events: list[dict[str, Any]]) -> list[Step]:
    steps: dict[int, Step] = {}
    for event in events:
        if event["ev"] == grader_events.STEP_START:
            steps[event["step"]] = Step(event["step"], event["call"], event.get("label", ""), event["t"])
        elif event["ev"] == grader_events.STEP_END and event["step"] in steps:
            step = steps[event["step"]]
            step.end = event["t"]
            if "value" in event:
                step.value = event["value"]
            else:
                step.error = event
    return [steps[i] for i in sorted(steps)]


def _parse_stack(text: str) -> list[StackFrame]:
    frames = []
    for line in text.splitlines():
        match = _FRAME.match(line)
        if match:
            frames.append(StackFrame(match["file"].rsplit("/", 1)[-1], int(match["line"]), match["func"].strip()))
    return frames


def explain_hang(run: Run) -> tuple[list[str], list[Location]]:
    """Plain-words sentences for a run the grader had to stop, one per process that was stuck, with lines."""
    sentences: list[str] = []
    locations: list[Location] = []
    status = run.outcome.status
    stopped = getattr(run.outcome, "stopped", [])
    if stopped:  # one cause said once: whatever else waited, waited on these (never a deadlock, never slowness)
        names = [run.processes[pid].label if pid in run.processes else f"process {pid}" for pid in stopped]
        sentences.append(
            f"{_join_names(names)} {'was' if len(names) == 1 else 'were'} stopped by a signal (SIGSTOP or SIGTSTP; "
            "the grader never sends one) and never continued: a stopped process does nothing until it gets SIGCONT, "
            "so the run could not end. Does your program send a stop signal to a process (os.kill)?")
        return sentences, locations
    for event in run.events(grader_events.SELF_DEADLOCK):
        proc = run.processes.get(event["pid"])
        who = proc.label if proc else f"process {event['pid']}"
        since = event.get("held_since")
        sentences.append(
            f"{who} blocks acquiring the lock at {run.describe_where(event.get('where'))} while it already holds it"
            + (f" since {run.describe_where(since)}" if since else "")
            + ": a Lock is not reentrant, so it waits for itself forever."
        )
        locations += run.location(event.get("where"), "acquires the lock a second time")
        locations += run.location(since, "first acquired the lock here")
    if status == runner.KEPT_ALIVE:
        done = run.first(grader_events.MAIN_DONE)
        for child in (done or {}).get("waiting", []):
            proc = run.processes.get(child["pid"])
            where = proc.spawn_where if proc else None
            sentences.append(
                f"The main program's code had finished, but Python waits at exit for every non-daemonic child: "
                f"{proc.label if proc else child['name']} runs {child['target']}() and never ends"
                + (f" (started at {run.describe_where(where)}, not as a daemon)." if where else ".")
            )
            locations += run.location(where, "started as a non-daemon process")
        ended = {(e["pid"], e.get("tid")) for e in run.events(grader_events.THREAD_EXIT)}
        for thread in (done or {}).get("threads", []):
            if (done["pid"], thread.get("thread")) in ended:
                continue  # it was still finishing its work when the code ended, and did end
            where = thread.get("where")
            sentences.append(
                f"The main program's code had finished, but Python waits at exit for every non-daemon thread: "
                f"the thread {thread['name']} runs {thread['target']}() and never ends"
                + (f" (started at {run.describe_where(where)}, not as a daemon)." if where else "."))
            locations += run.location(where, "started as a non-daemon thread")
        if done and not done.get("waiting") and not done.get("threads"):
            for pid in done.get("daemons", []):
                proc = run.processes.get(pid)
                if proc is not None and proc.exited is None:
                    sentences.append(
                        f"The main program's code had finished and Python told its daemonic children to stop "
                        f"(SIGTERM), but {proc.label} did not end: does it ignore SIGTERM?")
    blocked_pids = {e["pid"] for e in run.events(grader_events.SELF_DEADLOCK)}
    holds = run.holds()
    groups: dict[tuple[str, str, str], list[str]] = {}
    for proc in sorted(run.processes.values(), key=lambda p: p.started or 0):
        if proc.exited is not None or proc.pid in blocked_pids or proc.target in _INFRASTRUCTURE_TARGETS:
            continue
        waiting = _waiting_on(run, proc, holds)
        if waiting is not None:
            one, many, rest, where = waiting
            groups.setdefault((one, many, rest), []).append(proc.label)
            locations += run.location(where, "blocked here")
    for (one, many, rest), subjects in groups.items():
        sentences.append(f"{_join_names(subjects)} {one if len(subjects) == 1 else many} {rest}")
    if not sentences:
        sentences.append(_stopped_reason(status, run))
    return sentences, dedupe(locations)


def _join_names(names: list[str]) -> str:
    """'a', 'a and b', 'a, b and 3 more'."""
    if len(names) == 1:
        return names[0]
    if len(names) <= 3:
        return ", ".join(names[:-1]) + " and " + names[-1]
    return f"{names[0]}, {names[1]} and {len(names) - 2} more"


def _waiting_on(run: Run, proc: Proc, holds: list[Hold]) -> tuple[str, str, str, dict[str, Any] | None] | None:
    """What a process still running at the stop was doing: (verb for one, verb for many, the rest, where)."""
    pending: dict[str, Any] | None = None
    for event in run.events(pid=proc.pid):
        kind = event["ev"]
        if kind in (grader_events.ACQUIRE_WAIT, grader_events.Q_GET_WAIT) or (kind == grader_events.Q_PUT and event.get("bounded")):
            pending = event
        elif kind in (grader_events.ACQUIRED, grader_events.ACQUIRE_FAILED, grader_events.Q_GET, grader_events.Q_GET_RAISE, grader_events.Q_PUT_DONE, grader_events.Q_PUT_RAISE):
            pending = None
    if pending and pending["ev"] == grader_events.ACQUIRE_WAIT:
        holder = next((h for h in reversed(holds) if h.lock == pending["lock"] and h.released is None
                       and h.pid != proc.pid), None)
        rest = f"for the lock at {run.describe_where(pending.get('where'))}"
        if holder is not None:
            owner = run.processes.get(holder.pid)
            rest += (f", which {owner.label if owner else holder.pid} took at {run.describe_where(holder.where)} "
                     "and never released")
            if owner and owner.exited is not None:
                rest += " (that process has ended: the lock stays taken for ever)"
        return "waits", "wait", rest + ".", pending.get("where")
    if pending and pending["ev"] == grader_events.Q_GET_WAIT:
        return ("is blocked", "are blocked", f"in q.get() at {run.describe_where(pending.get('where'))}: nothing "
                "more arrives on the queue.", pending.get("where"))
    if pending and pending["ev"] == grader_events.Q_PUT:
        return ("is blocked", "are blocked", f"in q.put() at {run.describe_where(pending.get('where'))}: the "
                "bounded queue is full and nothing takes items off it.", pending.get("where"))
    called, frame = _student_call(run, proc.pid)
    called = {"__enter__": "acquire"}.get(called, called)
    if frame is not None:
        where = {"line": frame.line, "func": frame.func, "file": frame.file}
        if called in _BLOCKING_CALLS:
            return "waits", "wait", f"in {called}() at {run.describe_where(where)}.", where
        return "was still running", "were still running", f"at {run.describe_where(where)}.", where
    return None


def _student_call(run: Run, pid: int) -> tuple[str, StackFrame | None]:
    """The innermost student frame of a process's dumped stack, and the library function it was calling."""
    frames = _parse_stack(run.outcome.stacks.get(pid, ""))
    for index, frame in enumerate(frames):  # most recent call first: the frame before is what it called
        if frame.file == run.student_file:
            return (frames[index - 1].func if index > 0 else ""), frame
    return "", None


def _stopped_reason(status: str, run: Run) -> str:
    seconds = f"{run.outcome.duration:.1f} s"
    return {
        runner.TIMEOUT: f"The program was still running after {seconds}, and the grader stopped it.",
        runner.DEADLOCK: "Every process was blocked, waiting for another one: a deadlock. The grader stopped it.",
        runner.SELF_DEADLOCK: "A process acquired a lock it already held.",
        runner.KEPT_ALIVE: "The main program's code finished, but the program did not end.",
    }.get(status, f"The run ended with status {status}.")


def dedupe(locations: list[Location]) -> list[Location]:
    """One location per line of the student's file, the first label kept."""
    seen: set[tuple[str, int]] = set()
    kept = []
    for location in locations:
        if (location.file, location.line) not in seen:
            seen.add((location.file, location.line))
            kept.append(location)
    return kept
