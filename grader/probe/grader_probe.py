"""The probe: loaded by sitecustomize into every student process (fork, spawn and forkserver alike).

It scales ``time.sleep``, injects small seeded delays where races open (file reads and writes, lock and
queue operations), records events (process start and exit, lock acquire and release, queue put and get,
calls of the student functions a check spies on) and dumps every thread's stack on SIGUSR1.

Like pytest-xdist's ``remote.py`` it imports nothing from the grader package: it runs inside untrusted
student processes and talks to the grader only through plain JSON-lines files, one per process.
"""
from __future__ import annotations

import atexit
import builtins
import faulthandler
import functools
import importlib
import io
import json
import os
import random
import signal
import sys
import threading
import time
from typing import Any, Callable

# The event vocabulary, from this folder: on the path in student processes; a module of the package when the
# grader's own tests import the probe as grader.probe.grader_probe.
grader_events = importlib.import_module(f"{__package__}.grader_events" if __package__ else "grader_events")
grader_turns = importlib.import_module(f"{__package__}.grader_turns" if __package__ else "grader_turns")

CONFIG_ENV = "GRADER_PROBE"
ROOT_ENV = "GRADER_PROBE_ROOT"

# Captured before any student code runs, so that a student who monkeypatches these cannot blind the probe.
_real_sleep = time.sleep
_real_open = builtins.open
_real_replace = os.replace
_real_rename = os.rename
_monotonic = time.monotonic
_real_clocks = {name: getattr(time, name) for name in
                ("time", "monotonic", "perf_counter", "time_ns", "monotonic_ns", "perf_counter_ns")}
_dumps = json.dumps
_os_write = os.write
_getpid = os.getpid

_WRITE_MODES = frozenset("wax+")
FILE_HEAD_BYTES = 120  # of a file read or written: enough for {"count": n}, little next to an event
_LOCK_KINDS = {"Lock": "Lock", "RLock": "RLock"}


def _safe_repr(value: Any, limit: int = 120) -> str:
    """repr() that never raises and never grows without bound (student objects can do either)."""
    try:
        text = repr(value)
    except BaseException:  # noqa: BLE001 - a student __repr__ may raise anything
        text = f"<{type(value).__name__} with a broken repr>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _describe(value: Any) -> dict[str, Any]:
    """A plain description of a value that the grader can compare: its type, its repr and, if simple, itself."""
    described: dict[str, Any] = {"type": type(value).__name__, "repr": _safe_repr(value)}
    if value is None or type(value) in (bool, int, float, str):
        described["value"] = value
    return described


class Probe:
    """State of the probe in one process; re-initialised in every child after fork."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.meta = config["meta"]
        self.workdir = os.path.realpath(config["workdir"])
        self.seed = int(config.get("seed", 0))
        self.sleep_scale = float(config.get("sleep_scale", 1.0))
        self.delays: dict[str, list[float]] = config.get("delays", {})
        # The longest a student's get() waits on an empty queue, whatever its timeout (None: as written).
        patience = config.get("queue_patience")
        self.queue_patience: float | None = None if patience is None else float(patience)
        self.hold_put = False  # hold this process's next queue put back (see hold_next_put)
        self.max_events = int(config.get("max_events", 20000))
        self.gate = config.get("gate", {"quiet": 0.03, "max": 1.5, "poll": 0.002})
        self.startup_delay = float(config.get("startup_delay") or 0.0)
        # Virtual time: the student's clocks and timed waits run at sleep_scale, as its sleeps do, on one clock
        # shared by every process of the run (the epoch is the run's). min_sleep keeps a window that the
        # student's own sleep or wait opens at least that long in real time (never longer than asked).
        self.virtual_time = bool(config.get("virtual_time")) and self.sleep_scale != 1.0
        self.min_sleep = float(config.get("min_sleep") or 0.0)
        epoch = config.get("epoch") or {}
        self.epoch_monotonic = float(epoch.get("monotonic", _monotonic()))
        self.epoch_wall = float(epoch.get("wall", _real_clocks["time"]()))
        # The controlled scheduler (see grader_turns.py): when the grader runs one, every student thread waits
        # for its turn at each point below instead of sleeping a random delay there.
        turns = config.get("turns")
        self.turns = grader_turns.Turns(turns["socket"]) if turns else None
        self.fd = -1
        self.pid = 0
        self.count = 0
        self.stack_file: Any = None
        self.rng = random.Random()
        self.held: dict[tuple[str, int], list[dict[str, Any] | None]] = {}
        self.name = "MainProcess"
        self.root_pid = 0
        self.installed: list[tuple[Any, str, Any]] = []

    def install(self, owner: Any, attr: str, value: Any) -> None:
        """Replace owner.attr with the probe's version, remembering it so tampering can be detected."""
        setattr(owner, attr, value)
        self.installed.append((owner, attr, value))

    def tampered(self) -> list[str]:
        """The probe's patches that student code replaced (e.g. builtins.open put back to hide races)."""
        return [f"{getattr(owner, '__name__', type(owner).__name__)}.{attr}"
                for owner, attr, value in self.installed if getattr(owner, attr, None) is not value]

    # ---- per-process set-up -------------------------------------------------------------------
    def attach(self, name: str, redirect_output: bool) -> None:
        """Open this process's event and stack files; called at start-up and in every fork child."""
        pid = _getpid()
        if pid == self.pid:
            return
        if self.fd >= 0:
            try:
                os.close(self.fd)
            except OSError:
                pass
        self.pid = pid
        self.count = 0
        self.held = {}
        self.hold_put = False  # a hold is the parent's own: a forked producer must not inherit it
        self.name = name
        self.rng = random.Random(f"{self.seed}/{name}/{pid if name == 'forked' else ''}")
        if self.turns is not None:
            self.turns.reset_after_fork({"name": name})
        path = os.path.join(self.meta, "events", f"{pid}.jsonl")
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        # faulthandler needs a file that stays open; one file per pid so that dumps never interleave.
        self.stack_file = _real_open(os.path.join(self.meta, "stacks", f"{pid}.txt"), "w")
        faulthandler.register(signal.SIGUSR1, file=self.stack_file, all_threads=True, chain=False)
        if redirect_output:
            self._redirect_output(pid)

    def _redirect_output(self, pid: str | int) -> None:
        """Give this process its own stdout/stderr files, so the report can show output per process."""
        for fd, suffix in ((1, "out"), (2, "err")):
            target = os.open(
                os.path.join(self.meta, "out", f"{pid}.{suffix}"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600
            )
            os.dup2(target, fd)
            os.close(target)

    def rename(self, name: str) -> None:
        """Name this process (a multiprocessing child knows its name only at bootstrap) and reseed."""
        self.name = name
        self.rng = random.Random(f"{self.seed}/{name}")
        if self.turns is not None:
            self.turns.identity = {"name": name}
            # The student's own random choices (course code sleeps random.randint(0, 3)) follow the seed too,
            # so that --seed replays the same run.
            random.seed(f"{self.seed}/{name}")

    # ---- events -------------------------------------------------------------------------------
    def emit(self, kind: str, /, **fields: Any) -> None:
        """Append one event to this process's file; never raises into student code."""
        if self.fd < 0 or self.count > self.max_events:
            return
        self.count += 1
        event = {"t": _monotonic(), "pid": self.pid, "tid": threading.get_ident(), "ev": kind, **fields}
        if self.count > self.max_events:
            event = {"t": event["t"], "pid": self.pid, "ev": grader_events.EVENTS_TRUNCATED, "limit": self.max_events}
        try:
            _os_write(self.fd, (_dumps(event, default=_safe_repr) + "\n").encode("utf-8", "replace"))
        except (OSError, ValueError, TypeError):
            pass

    def where(self) -> dict[str, Any] | None:
        """The innermost frame of the student's own code (file, line, function), if any."""
        frame = sys._getframe(1)
        prefix = self.workdir + os.sep
        while frame is not None:
            filename = frame.f_code.co_filename
            if filename.startswith(prefix):
                return {"file": filename[len(prefix):], "line": frame.f_lineno, "func": frame.f_code.co_name}
            frame = frame.f_back
        return None

    def frames(self, limit: int = 4) -> list[dict[str, Any]]:
        """The student's own frames, innermost first: a read inside load() is also seen from buy_ticket."""
        frame = sys._getframe(1)
        prefix = self.workdir + os.sep
        found: list[dict[str, Any]] = []
        while frame is not None and len(found) < limit:
            if frame.f_code.co_filename.startswith(prefix):
                found.append({"line": frame.f_lineno, "func": frame.f_code.co_name})
            frame = frame.f_back
        return found

    def file_access(self, kind: str, path: Any, content_of: Any) -> None:
        """Record a read or write of a file of the run: which file (relative to the run), its first bytes as
        read or written, and the student's frames: the witness of a check-then-act race is built from these."""
        try:
            text = os.fsdecode(os.fspath(path))
            name = os.path.relpath(os.path.realpath(text), self.workdir) if os.path.isabs(text) else text
            head = ""
            if content_of is not None:
                with _real_open(content_of, "rb") as f:
                    head = f.read(FILE_HEAD_BYTES).decode("utf-8", "replace")
        except (OSError, TypeError, ValueError):
            return
        where = self.frames()
        if where:
            self.emit(kind, path=name, head=head, frames=where)

    def called_by_student(self) -> bool:
        """Whether the first frame outside the probe is the student's own code (not Python's library)."""
        frame = sys._getframe(1)
        while frame is not None and frame.f_code.co_filename == __file__:
            frame = frame.f_back
        return frame is not None and frame.f_code.co_filename.startswith(self.workdir + os.sep)

    def student_frame(self, frame: Any) -> bool:
        """Whether `frame` (a patched function's caller) is the student's own code."""
        return frame is not None and frame.f_code.co_filename.startswith(self.workdir + os.sep)

    # ---- virtual time -------------------------------------------------------------------------
    def real_seconds(self, seconds: float) -> float:
        """How long a student's sleep or timed wait of `seconds` lasts in real time: scaled, but never shorter
        than min_sleep unless it asked for less (scaling alone would close the windows races open in)."""
        return max(seconds * self.sleep_scale, min(seconds, self.min_sleep))

    def virtual_elapsed(self) -> float:
        """Seconds of the run's virtual time since its epoch (the same in every process of the run)."""
        return (_monotonic() - self.epoch_monotonic) / self.sleep_scale

    # ---- delays -------------------------------------------------------------------------------
    def delay(self, point: str, res: str | None = None) -> None:
        """At a point where races open: under the scheduler, wait for the turn (in the student's threads);
        else sleep a seeded random time (real time, never scaled)."""
        if self.turns is not None:
            if self.where() is not None:
                self.turns.step(point, res)
            return
        low_high = self.delays.get(point)
        if not low_high:
            return
        low, high = low_high
        seconds = low + (high - low) * self.rng.random()
        if seconds > 0:
            _real_sleep(seconds)

    def hold_next_put(self) -> None:
        """Hold this process's next queue put back by the "held_put" delay, if the run has one.

        The driver asks for it before each call of main(): main()'s first put is normally its first sentinel,
        so every consumer already waiting finds the queue empty for a while, as behind a slow producer."""
        self.hold_put = True

    def in_workdir(self, path: Any) -> bool:
        """Whether a path names a file of the run (only those get delays: never Python's own files)."""
        try:
            text = os.fspath(path)
        except TypeError:
            return False
        if isinstance(text, bytes):
            text = os.fsdecode(text)
        if not os.path.isabs(text):
            return os.getcwd().startswith(self.workdir)
        return os.path.realpath(text).startswith(self.workdir + os.sep)


# ---- patches ------------------------------------------------------------------------------------
def _patch_time(probe: Probe) -> None:
    """Scale time.sleep so that course code that sleeps for seconds is judged in about a second."""
    scale = probe.sleep_scale
    if scale == 1.0:
        return

    @functools.wraps(_real_sleep)
    def sleep(seconds: float) -> None:
        seconds = float(seconds)
        if probe.turns is not None and probe.student_frame(sys._getframe(1)) and probe.turns.sleep(seconds):
            return  # the conductor woke it at the virtual time asked for
        if probe.min_sleep and seconds > 0 and probe.student_frame(sys._getframe(1)):
            _real_sleep(probe.real_seconds(seconds))
        else:
            _real_sleep(max(0.0, seconds * scale))

    probe.install(time, "sleep", sleep)


def _timeout_of(args: tuple[Any, ...], kwargs: dict[str, Any], position: int, name: str) -> float | None:
    """The positive timeout among a call's arguments (positional `position` or keyword `name`), if any."""
    value = kwargs[name] if name in kwargs else args[position] if len(args) > position else None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        return None
    return float(value)


def _scale_timeout(probe: Probe, args: tuple[Any, ...], kwargs: dict[str, Any], position: int,
                   name: str) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The arguments with the timeout (positional `position` or keyword `name`) turned into real seconds."""
    value = _timeout_of(args, kwargs, position, name)
    if value is None:
        return args, kwargs  # None (forever), 0 (poll) and anything odd pass as written
    real = probe.real_seconds(value)
    if name in kwargs:
        return args, {**kwargs, name: real}
    return args[:position] + (real,) + args[position + 1:], kwargs


def _timed(probe: Probe, real: Callable[..., Any], position: int, name: str = "timeout") -> Callable[..., Any]:
    """`real` with its timeout in virtual time when the student calls it (Python's own calls pass as written)."""

    @functools.wraps(real)
    def timed(*args: Any, **kwargs: Any) -> Any:
        if probe.student_frame(sys._getframe(1)):
            args, kwargs = _scale_timeout(probe, args, kwargs, position, name)
        return real(*args, **kwargs)

    return timed


def _patch_virtual_time(probe: Probe) -> None:
    """The student's clocks and every timed wait it makes run at the scale of its sleeps, on the run's clock.

    Scaling sleeps alone let a program that staggers its processes with Event().wait(0.05 * i), or measures
    time with time.monotonic(), run as on a machine a thousand times slower; now sleeps, timeouts and clocks
    agree. Only calls made by the student's own code are changed: multiprocessing's and threading's internal
    waits and clocks stay real. The clocks are one mapping of the real monotonic clock (shared by every process
    of the machine) from the run's epoch, so every process of the run reads the same virtual time."""
    if not probe.virtual_time and probe.turns is None:
        return
    import multiprocessing.connection as connection
    import queue
    import select
    import selectors
    from multiprocessing import process, synchronize

    def clock(name: str, virtual: Callable[[], Any]) -> Callable[[], Any]:
        real = _real_clocks[name]

        @functools.wraps(real)
        def now() -> Any:
            return virtual() if probe.student_frame(sys._getframe(1)) else real()

        return now

    turns = probe.turns
    elapsed = turns.clock if turns is not None else probe.virtual_elapsed

    def mono() -> float:
        return probe.epoch_monotonic + elapsed()

    def wall() -> float:
        return probe.epoch_wall + elapsed()

    for name, virtual in (("time", wall), ("monotonic", mono), ("perf_counter", mono),
                          ("time_ns", lambda: int(wall() * 1e9)), ("monotonic_ns", lambda: int(mono() * 1e9)),
                          ("perf_counter_ns", lambda: int(mono() * 1e9))):
        probe.install(time, name, clock(name, virtual))
    # (owner, method, position of the timeout counting self, its keyword name)
    timed: list[tuple[Any, str, int, str]] = [
        (threading.Event, "wait", 1, "timeout"), (threading.Condition, "wait", 1, "timeout"),
        (threading.Condition, "wait_for", 2, "timeout"), (threading.Semaphore, "acquire", 2, "timeout"),
        (threading.Barrier, "wait", 1, "timeout"), (threading.Barrier, "__init__", 3, "timeout"),
        (threading.Thread, "join", 1, "timeout"), (threading.Timer, "__init__", 1, "interval"),
        (queue.Queue, "get", 2, "timeout"), (queue.Queue, "put", 3, "timeout"),
        (process.BaseProcess, "join", 1, "timeout"), (connection._ConnectionBase, "poll", 1, "timeout"),
        (connection, "wait", 1, "timeout"), (synchronize.Event, "wait", 1, "timeout"),
        (synchronize.Condition, "wait", 1, "timeout"), (synchronize.Condition, "wait_for", 2, "timeout"),
        (select, "select", 3, "timeout"),
    ]
    for cls_name in ("SelectSelector", "PollSelector", "EpollSelector", "DevpollSelector", "KqueueSelector"):
        cls = getattr(selectors, cls_name, None)
        if cls is not None:
            timed.append((cls, "select", 1, "timeout"))
    for owner, attr, position, name in timed:
        real = getattr(owner, attr, None)
        if turns is not None and (owner is threading.Timer or (attr == "join" and owner in (process.BaseProcess, threading.Thread))):
            continue  # see _patch_timers, _patch_processes and _patch_threads
        if real is not None:
            blocking = turns is not None and attr != "__init__"
            probe.install(owner, attr, (_off_schedule if blocking else _timed)(probe, real, position, name))
    if turns is not None:
        _patch_timers(probe)


def _patch_timers(probe: Probe) -> None:
    """Under the scheduler, a student's threading.Timer waits its interval in the run's virtual time."""
    original_init, original_run = threading.Timer.__init__, threading.Timer.run

    @functools.wraps(original_init)
    def __init__(self: Any, interval: float, *args: Any, **kwargs: Any) -> None:
        original_init(self, interval, *args, **kwargs)
        if probe.student_frame(sys._getframe(1)):
            self._grader_interval = interval

    @functools.wraps(original_run)
    def run(self: Any) -> None:
        interval = getattr(self, "_grader_interval", None)
        if interval is None or probe.turns is None or not probe.turns.sleep(float(interval)):
            return original_run(self)
        try:
            if not self.finished.is_set():
                self.function(*self.args, **self.kwargs)
            self.finished.set()
        finally:
            probe.turns.bye()

    probe.install(threading.Timer, "__init__", __init__)
    probe.install(threading.Timer, "run", run)


def _off_schedule(probe: Probe, real: Callable[..., Any], position: int, name: str = "timeout") -> Callable[..., Any]:
    """`real` (a wait the conductor does not model: a join, an Event or Condition wait) made off the schedule
    when the student calls it, with its timeout in virtual time; the thread asks for the turn again after."""

    @functools.wraps(real)
    def waits(*args: Any, **kwargs: Any) -> Any:
        if probe.turns is None or not probe.student_frame(sys._getframe(1)):
            return real(*args, **kwargs)
        return _wait_off_schedule(probe, real, args, kwargs, position, name)

    return waits


def _wait_off_schedule(probe: Probe, real: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
                       position: int, name: str = "timeout") -> Any:
    """A student's wait that the conductor does not model, made off the schedule with its timeout scaled."""
    assert probe.turns is not None
    asked = _timeout_of(args, kwargs, position, name)
    args, kwargs = _scale_timeout(probe, args, kwargs, position, name)
    return probe.turns.off(real, *args, timeouts=(asked, _timeout_of(args, kwargs, position, name)), **kwargs)


def _patch_files(probe: Probe) -> None:
    """Delay file opens and replaces inside the run's directory: that is where check-then-act races open."""

    @functools.wraps(_real_open)
    def open_(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        truncating = False
        if isinstance(file, (str, bytes, os.PathLike)) and probe.in_workdir(file):
            writing = bool(_WRITE_MODES.intersection(str(mode)))
            truncating = "w" in str(mode)
            probe.delay("write" if writing else "read")
            if not writing:
                probe.file_access(grader_events.FILE_READ, file, file)
        opened = _real_open(file, mode, *args, **kwargs)
        if truncating:  # the file is empty from here until the student writes it: a reader's window
            probe.delay("truncated")
        return opened

    def wrap_move(real: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(real)
        def move(src: Any, dst: Any, *args: Any, **kwargs: Any) -> Any:
            if probe.in_workdir(dst):
                probe.delay("replace")
                probe.file_access(grader_events.FILE_WRITE, dst, src)
            return real(src, dst, *args, **kwargs)

        return move

    probe.install(builtins, "open", open_)
    probe.install(io, "open", open_)
    probe.install(os, "replace", wrap_move(_real_replace))
    probe.install(os, "rename", wrap_move(_real_rename))


def _lock_id(semlock: Any) -> str:
    """A name for a multiprocessing lock that is the same in every process sharing it."""
    name = getattr(semlock, "name", None)
    return name if name else f"lock-{semlock.handle:x}"


def _recording_lock(
    probe: Probe, lock: str, kind: str, real_acquire: Callable[..., bool], real_release: Callable[[], Any],
    student_only: bool = False,
) -> tuple[Callable[..., bool], Callable[[], None]]:
    """acquire/release that record who holds `lock` and where (and spot a non-reentrant lock taken twice).

    With `student_only`, calls that do not come from the student's code (Python's own use of the same kind
    of lock) pass straight through, unrecorded and undelayed."""
    reentrant = not (kind == "Lock" or kind.endswith("-Lock"))

    def acquire(block: bool = True, timeout: float | None = None) -> bool:
        if student_only and not probe.called_by_student():
            return real_acquire(block) if timeout is None else real_acquire(block, timeout)
        asked = timeout  # in the student's (virtual) seconds
        if timeout is not None and (probe.virtual_time or probe.turns) and probe.student_frame(sys._getframe(1)):
            (timeout,), _ = _scale_timeout(probe, (timeout,), {}, 0, "timeout")
        where = probe.where()
        key = (lock, threading.get_ident())
        if not reentrant and block and timeout in (None, -1) and probe.held.get(key):
            probe.emit(grader_events.SELF_DEADLOCK, lock=lock, where=where, held_since=probe.held[key][-1])
        probe.delay("lock", lock)
        probe.emit(grader_events.ACQUIRE_WAIT, lock=lock, kind=kind, where=where)
        got: bool | None = None
        scheduled = probe.turns is not None and block and where is not None
        if scheduled:  # the conductor decides who gets it
            got = probe.turns.acquire(lock, lambda: bool(real_acquire(False)),
                                      None if asked is None or asked < 0 else asked)
        if got is None:  # (under the scheduler: nothing the conductor knows of will release it)
            got = real_acquire(block, timeout) if timeout is not None else real_acquire(block)
            if scheduled:
                probe.turns.step("lock", lock)  # back in turn after the real call
        if got:
            probe.held.setdefault(key, []).append(where)
            probe.emit(grader_events.ACQUIRED, lock=lock, kind=kind, where=where)
        else:
            probe.emit(grader_events.ACQUIRE_FAILED, lock=lock, kind=kind, where=where)
        return got

    def release() -> None:
        stack = probe.held.get((lock, threading.get_ident()))
        if student_only and not stack and not probe.called_by_student():
            real_release()
            return
        where = probe.where()
        # The event goes first: once the lock is free, another process may record its acquire.
        probe.emit(grader_events.RELEASED, lock=lock, kind=kind, where=where)
        try:
            real_release()
        except BaseException as exc:
            probe.emit(grader_events.RELEASE_ERROR, lock=lock, where=where, error=_safe_repr(exc))
            raise
        if stack:
            stack.pop()
        if probe.turns is not None:
            probe.turns.signal(lock)  # a thread waiting for it may try again
        probe.delay("lock", lock)

    return acquire, release


def _patch_locks(probe: Probe) -> None:
    """Record who acquires and releases each multiprocessing Lock/RLock, and where, with small delays."""
    from multiprocessing import synchronize

    original_make_methods = synchronize.SemLock._make_methods

    def _make_methods(self: Any) -> None:
        original_make_methods(self)
        kind = _LOCK_KINDS.get(type(self).__name__)
        if kind is None:
            if (probe.virtual_time or probe.turns) and type(self).__name__ in ("Semaphore", "BoundedSemaphore"):
                # acquire(block, timeout) of the student: its timeout in virtual time (off the schedule)
                self.acquire = (_off_schedule if probe.turns else _timed)(probe, self._semlock.acquire, 1)
            return
        semlock = self._semlock
        # A fork-context lock has no name, and two locks made in two forked children can share a handle
        # address: name it by its creator once, and forked children inherit the name with the object.
        if getattr(self, "_grader_lock_id", None) is None:
            self._grader_lock_id = semlock.name or f"lock-{os.getpid()}-{semlock.handle:x}"
            where = probe.where()
            if where is not None:  # made by the student's code (not rebuilt from a pickle): say where
                probe.emit(grader_events.LOCK_NEW, lock=self._grader_lock_id, kind=kind, where=where)
        # student_only: multiprocessing's own locks (a queue's reader lock...) are not the student's.
        self.acquire, self.release = _recording_lock(probe, self._grader_lock_id, kind, semlock.acquire,
                                                     semlock.release, student_only=True)

    def __enter__(self: Any) -> bool:
        return self.acquire()

    def __exit__(self: Any, *exc_info: Any) -> None:
        self.release()

    probe.install(synchronize.SemLock, "_make_methods", _make_methods)
    for cls in (synchronize.Lock, synchronize.RLock):
        probe.install(cls, "__enter__", __enter__)
        probe.install(cls, "__exit__", __exit__)


class _ProbedThreadLock:
    """A threading.Lock/RLock that records the student's acquires and releases (threads share memory, so
    the lock object is the same in every thread of a process)."""

    def __init__(self, probe: Probe, real: Any, kind: str) -> None:
        self._real = real
        self.acquire, self.release = _recording_lock(probe, f"thread-{kind}-{id(real):x}", f"thread-{kind}",
                                                     real.acquire, real.release, student_only=True)

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc_info: Any) -> None:
        self.release()

    def __getattr__(self, name: str) -> Any:  # locked(), _at_fork_reinit(), _is_owned()...
        return getattr(self._real, name)


def _patch_threads(probe: Probe) -> None:
    """Record threads the student starts (daemon flag, target, where) and their locks."""
    real_lock, real_rlock = threading.Lock, threading.RLock

    def lock_factory() -> _ProbedThreadLock:
        return _ProbedThreadLock(probe, real_lock(), "Lock")

    def rlock_factory(*args: Any, **kwargs: Any) -> _ProbedThreadLock:
        return _ProbedThreadLock(probe, real_rlock(*args, **kwargs), "RLock")

    # Pickled by reference as threading.Lock/RLock (a Manager's registry holds them): same name, same object.
    for factory, name in ((lock_factory, "Lock"), (rlock_factory, "RLock")):
        factory.__module__, factory.__qualname__, factory.__name__ = "threading", name, name

    original_start = threading.Thread.start
    original_inner = threading.Thread._bootstrap_inner

    @functools.wraps(original_start)
    def start(self: Any) -> None:
        where = probe.where() if probe.called_by_student() else None
        scheduled = where is not None and probe.turns is not None and _student_target(probe, self)
        if where is not None:
            self._grader_where = where
            if scheduled:
                _leave_after_run(probe, self, wait_first=True)  # its first line waits for its turn too
                probe.turns.step("start")
        original_start(self)
        if scheduled and probe.turns is not None and self.ident is not None:
            self._grader_scheduled = True
            probe.turns.spawned_thread(self.ident)  # the conductor waits for it to arrive before it decides
        if where is not None:
            target = getattr(self, "_target", None)
            probe.emit(grader_events.THREAD_SPAWN, name=self.name, daemon=self.daemon, thread=self.ident, where=where,
                       target=getattr(target, "__name__", type(self).__name__ + ".run"))

    @functools.wraps(original_inner)
    def _bootstrap_inner(self: Any) -> None:
        if getattr(self, "_grader_where", None) is None:
            return original_inner(self)
        probe.emit(grader_events.THREAD_START, name=self.name, daemon=self.daemon)
        try:
            return original_inner(self)
        finally:
            probe.emit(grader_events.THREAD_EXIT, name=self.name)

    probe.install(threading, "Lock", lock_factory)
    probe.install(threading, "RLock", rlock_factory)
    probe.install(threading.Thread, "start", start)
    probe.install(threading.Thread, "_bootstrap_inner", _bootstrap_inner)
    if probe.turns is not None:
        _patch_join(probe, threading.Thread, lambda thread: thread.ident, thread=True)


def _patch_join(probe: Probe, owner: Any, ident: Callable[[Any], int | None], thread: bool) -> None:
    """Under the scheduler, a student's join of a process or thread it started on the schedule waits for the
    conductor to say it has ended (a modelled wait, in virtual time); any other join is made off the schedule."""
    original_join = owner.join

    @functools.wraps(original_join)
    def join(self: Any, timeout: float | None = None) -> None:
        if not probe.student_frame(sys._getframe(1)) or probe.turns is None:
            return original_join(self, timeout)
        joined = ident(self) if getattr(self, "_grader_scheduled", False) else None
        verdict = "real" if joined is None else probe.turns.join(joined, timeout, thread=thread)
        if verdict == "timeout":
            return None
        if verdict == "go":  # its code has ended: it is on its way out
            return original_join(self, None if timeout is None else max(probe.real_seconds(timeout), 1.0))
        return _wait_off_schedule(probe, original_join, (self, timeout), {}, 1)

    probe.install(owner, "join", join)


def _patch_managers(probe: Probe) -> None:
    """Delay reads and writes through Manager proxies (a dict, a Value) and record Manager locks."""
    from multiprocessing import managers

    reads = {"__getitem__", "get", "__contains__", "keys", "values", "items", "__len__", "copy"}
    writes = {"__setitem__", "update", "setdefault", "pop", "__delitem__", "set", "append", "extend", "remove"}
    original_callmethod = managers.BaseProxy._callmethod

    @functools.wraps(original_callmethod)
    def _callmethod(self: Any, methodname: str, args: tuple[Any, ...] = (), kwds: dict[str, Any] | None = None) -> Any:
        student = probe.where() is not None
        typeid = getattr(getattr(self, "_token", None), "typeid", "")
        if student and probe.turns is not None and typeid in _MANAGER_WAITS:
            probe.delay("queue")  # it may wait in the server for another process (a Manager queue's get, an
            return probe.turns.off(original_callmethod, self, methodname, args, kwds or {})  # Event's wait)
        if not ((methodname in reads or methodname in writes) and student):
            return original_callmethod(self, methodname, args, kwds or {})
        write = methodname in writes
        probe.delay("write" if write else "read")
        result = original_callmethod(self, methodname, args, kwds or {})
        if methodname in _SHARED_ACCESSES and typeid not in _MANAGER_WAITS:  # one value of shared state (not a
            value = args[-1] if write else result  # queue's item): the witness of a lost update is built from these
            probe.emit(grader_events.SHARED_WRITE if write else grader_events.SHARED_READ, typeid=typeid, method=methodname,
                       key=_describe(args[0]) if args and methodname != "set" else None, value=_describe(value),
                       frames=probe.frames())
        return result

    def recording(method: str) -> Callable[..., Any]:
        def call(self: Any, *args: Any, **kwargs: Any) -> Any:
            acquire, release = _recording_lock(
                # the kind follows the Manager's type: only a Manager "Lock" is non-reentrant
                probe, f"manager-lock-{self._token.id}", f"manager-{self._token.typeid}",
                lambda block=True, timeout=None: self._callmethod("acquire", (block, timeout) if timeout is not None else (block,)),
                lambda: self._callmethod("release"))
            return acquire(*args, **kwargs) if method == "acquire" else release()

        return call

    probe.install(managers.BaseProxy, "_callmethod", _callmethod)
    probe.install(managers.AcquirerProxy, "acquire", recording("acquire"))
    probe.install(managers.AcquirerProxy, "release", recording("release"))
    probe.install(managers.AcquirerProxy, "__enter__", lambda self: self.acquire())
    probe.install(managers.AcquirerProxy, "__exit__", lambda self, *exc_info: self.release())


# Proxy methods that read or write one value (a dict's item, a Value's value): recorded with the value.
_SHARED_ACCESSES = frozenset({"__getitem__", "get", "__setitem__", "set"})
# Manager types whose proxy calls may wait in the server for another process (a get on an empty queue...).
_MANAGER_WAITS = frozenset({"Queue", "JoinableQueue", "Event", "Condition", "Barrier", "Semaphore",
                            "BoundedSemaphore", "Pool"})


def _when_imported(module_name: str, patch: Callable[[], None]) -> None:
    """Run `patch` right after `module_name` is imported, in whichever process imports it (now if it already
    is). Importing multiprocessing.managers costs every student process ~15 ms of CPU, and most programs, and
    every child that spawn starts, never use it."""
    if module_name in sys.modules:
        patch()
        return
    import importlib.abc
    import importlib.machinery

    class PatchingLoader(importlib.abc.Loader):
        def __init__(self, loader: Any) -> None:
            self.loader = loader

        def create_module(self, spec: Any) -> Any:
            return self.loader.create_module(spec)

        def exec_module(self, module: Any) -> None:
            self.loader.exec_module(module)
            patch()

    class PatchingFinder(importlib.abc.MetaPathFinder):
        def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
            if name != module_name:
                return None
            spec = importlib.machinery.PathFinder.find_spec(name, path)
            if spec is not None and spec.loader is not None:
                spec.loader = PatchingLoader(spec.loader)
            return spec

    sys.meta_path.insert(0, PatchingFinder())


def _sem_value_max() -> int:
    try:
        import _multiprocessing

        return _multiprocessing.SemLock.SEM_VALUE_MAX
    except (ImportError, AttributeError):
        return 2**31 - 1


_UNBOUNDED = _sem_value_max()  # what multiprocessing.Queue uses as maxsize when none is given


def _queue_id(queue: Any) -> str:
    """A name for a multiprocessing queue that is the same in every process sharing it."""
    rlock = getattr(queue, "_rlock", None)
    semlock = getattr(rlock, "_semlock", None)
    if semlock is None:
        return f"queue-{id(queue):x}"
    return "queue-" + (getattr(rlock, "_grader_lock_id", None) or _lock_id(semlock))


def _cut_timeout(args: tuple[Any, ...], kwargs: dict[str, Any], patience: float | None) -> float | None:
    """The timeout to wait instead, when get(block, timeout)'s timeout is longer than the run's patience.

    A get() that gives up with queue.Empty after `timeout` seconds is what a slow producer makes it do.
    Cutting the wait to a few milliseconds judges such a consumer as if every producer were slower than its
    timeout; a consumer that keeps waiting on queue.Empty is unaffected."""
    if patience is None or len(args) > 2 or set(kwargs) - {"block", "timeout"}:
        return None
    block = kwargs.get("block", args[0] if args else True)
    timeout = kwargs.get("timeout", args[1] if len(args) > 1 else None)
    if not block or timeout is None:
        return None
    try:
        seconds = float(timeout)
    except (TypeError, ValueError):
        return None
    return patience if seconds > patience else None


def _scheduled_get(probe: Probe, real: Callable[..., Any], queue_obj: Any, queue: str, where: Any,
                   args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """A student's get() under the scheduler: it blocks only when the conductor knows the queue is empty, and
    its timeout runs in virtual time (a producer slower than the timeout makes it give up, as it would)."""
    import queue as queue_module

    turns = probe.turns
    assert turns is not None
    block = kwargs.get("block", args[0] if args else True)
    timeout = kwargs.get("timeout", args[1] if len(args) > 1 else None)
    try:
        timeout = None if timeout is None else float(timeout)
    except (TypeError, ValueError):
        return real(queue_obj, *args, **kwargs)  # the real get() says what is wrong with it
    plain = bool(block) and not (len(args) > 2 or set(kwargs) - {"block", "timeout"})
    verdict, cut = turns.get(queue, timeout) if plain else ("real", None)
    try:
        if verdict == "timeout":
            raise queue_module.Empty
        if verdict == "go":  # the item is on its way through the pipe: wait for it, as long as the student would
            patience = None if timeout is None else max(probe.real_seconds(timeout), 1.0)
            item = real(queue_obj) if not args and not kwargs and patience is None else real(queue_obj, True, patience)
        else:  # off the schedule: the real call, then back in turn
            if plain and timeout is not None:
                args, kwargs = (True, probe.real_seconds(timeout)), {}
            try:
                item = real(queue_obj, *args, **kwargs)
            finally:
                if block:
                    turns.step("queue", queue)
            turns.signal(queue, -1)
    except BaseException as exc:
        probe.emit(grader_events.Q_GET_RAISE, queue=queue, where=where, error=type(exc).__name__,
                   **({"cut": cut} if cut is not None else {}))
        raise
    probe.emit(grader_events.Q_GET, queue=queue, item=_describe(item), where=where)
    return item


def _patch_queues(probe: Probe) -> None:
    """Record queue puts and gets (item, where, and a get that gave up with queue.Empty), with small delays."""
    from multiprocessing import queues

    def wrap_put(real: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(real)
        def put(self: Any, obj: Any, *args: Any, **kwargs: Any) -> Any:
            where = probe.where()
            if probe.hold_put:
                probe.hold_put = False
                probe.delay("held_put")
            probe.delay("queue", _queue_id(self))
            # A bounded queue's put can block: then say when it went through, so a hang can be explained.
            bounded = getattr(self, "_maxsize", None) not in (None, _UNBOUNDED)
            probe.emit(grader_events.Q_PUT, queue=_queue_id(self), item=_describe(obj), where=where, bounded=bounded)
            asked = _timeout_of(args, kwargs, 1, "timeout")
            if (probe.virtual_time or probe.turns) and probe.student_frame(sys._getframe(1)):
                args, kwargs = _scale_timeout(probe, args, kwargs, 1, "timeout")
            try:
                if probe.turns is not None and bounded and where is not None:  # it may wait for room: off the schedule
                    result = probe.turns.off(real, self, obj, *args, timeouts=(asked, _timeout_of(args, kwargs, 1, "timeout")),
                                             **kwargs)
                else:
                    result = real(self, obj, *args, **kwargs)
            except BaseException as exc:
                probe.emit(grader_events.Q_PUT_RAISE, queue=_queue_id(self), where=where, error=type(exc).__name__)
                raise
            if bounded:
                probe.emit(grader_events.Q_PUT_DONE, queue=_queue_id(self), where=where)
            if probe.turns is not None and where is not None:
                probe.turns.signal(_queue_id(self), 1)  # one more item: a consumer waiting for it may take it
            return result

        return put

    def wrap_joinable(real: Callable[..., Any], before: str, after: str) -> Callable[..., Any]:
        @functools.wraps(real)
        def call(self: Any, *args: Any, **kwargs: Any) -> Any:
            where = probe.where()
            probe.emit(before, queue=_queue_id(self), where=where)
            if probe.turns is not None and where is not None:
                result = probe.turns.off(real, self, *args, **kwargs) if after else real(self, *args, **kwargs)
            else:
                result = real(self, *args, **kwargs)
            if after:
                probe.emit(after, queue=_queue_id(self), where=where)
            return result

        return call

    def wrap_get(real: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(real)
        def get(self: Any, *args: Any, **kwargs: Any) -> Any:
            where = probe.where()
            queue = _queue_id(self)
            probe.delay("queue", queue)
            probe.emit(grader_events.Q_GET_WAIT, queue=queue, where=where, args=[_safe_repr(a) for a in args],
                       kwargs={k: _safe_repr(v) for k, v in kwargs.items()})
            if probe.turns is not None and where is not None:
                return _scheduled_get(probe, real, self, queue, where, args, kwargs)
            cut = _cut_timeout(args, kwargs, probe.queue_patience)
            if cut is not None and not probe.called_by_student():  # the frame walk only where a cut applies
                cut = None
            if cut is None and probe.virtual_time and probe.student_frame(sys._getframe(1)):
                args, kwargs = _scale_timeout(probe, args, kwargs, 1, "timeout")
            try:
                item = real(self, True, cut) if cut is not None else real(self, *args, **kwargs)
            except BaseException as exc:
                probe.emit(grader_events.Q_GET_RAISE, queue=queue, where=where, error=type(exc).__name__,
                           **({"cut": cut} if cut is not None else {}))
                raise
            probe.emit(grader_events.Q_GET, queue=queue, item=_describe(item), where=where)
            return item

        return get

    probe.install(queues.Queue, "put", wrap_put(queues.Queue.put))
    probe.install(queues.Queue, "get", wrap_get(queues.Queue.get))
    probe.install(queues.JoinableQueue, "put", wrap_put(queues.JoinableQueue.put))
    probe.install(queues.SimpleQueue, "put", wrap_put(queues.SimpleQueue.put))
    probe.install(queues.SimpleQueue, "get", wrap_get(queues.SimpleQueue.get))
    probe.install(queues.JoinableQueue, "task_done", wrap_joinable(queues.JoinableQueue.task_done, grader_events.Q_TASK_DONE, ""))
    probe.install(queues.JoinableQueue, "join", wrap_joinable(queues.JoinableQueue.join, grader_events.Q_JOIN_WAIT,
                                                                grader_events.Q_JOINED))


def _student_target(probe: Probe, runnable: Any) -> bool:
    """Whether a Process or Thread runs the student's code (its target, or its run() override): only those
    are scheduled (a Manager's server, a queue's feeder thread run Python's own code, free)."""
    target = getattr(runnable, "_target", None)
    function = target if target is not None else getattr(type(runnable), "run", None)
    for _ in range(8):  # through the probe's own spies, functools.partial and functools.wraps wrappers
        if getattr(function, "__grader_spy__", False) or not hasattr(function, "__code__"):
            inner = getattr(function, "__wrapped__", None) or getattr(function, "func", None)
            if inner is None:
                break
            function = inner
        else:
            break
    code = getattr(function, "__code__", None)
    return code is not None and code.co_filename.startswith(probe.workdir + os.sep)


def _target_name(process: Any) -> str:
    """What a multiprocessing.Process runs: its target's name, or its class for a run() override."""
    remembered = getattr(process, "_grader_target", None)
    if remembered:  # start() deletes _target in the parent: the name was taken just before
        return remembered
    target = getattr(process, "_target", None)
    if target is not None:
        return getattr(target, "__name__", _safe_repr(target))
    return type(process).__name__ + ".run"


class _Gate:
    """A start barrier: a child waits until its parent has started all of its siblings and they booted.

    Spawned children boot one after another, wider apart than a race window; holding each child until
    the burst of starts is over lets them compete as they would on a fast machine.
    """

    def __init__(self, probe: Probe) -> None:
        self.probe = probe
        self.dir = os.path.join(probe.meta, "gate")

    def _touch(self, name: str) -> None:
        """Write the current time to a gate file atomically: a reader never sees it empty."""
        path = os.path.join(self.dir, name)
        tmp = f"{path}.{_getpid()}.{threading.get_ident()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            _os_write(fd, repr(_monotonic()).encode())
        finally:
            os.close(fd)
        _real_replace(tmp, path)

    def starting(self) -> None:
        """The parent is about to start a child."""
        self._touch(f"{_getpid()}.last")

    def started(self, child_pid: int) -> None:
        """The parent has started a child."""
        self._touch(f"{_getpid()}.start.{child_pid}")
        self._touch(f"{_getpid()}.last")

    def wait(self, parent_pid: int) -> None:
        """In the child: say we booted, then wait (bounded) until the parent's burst of starts is over."""
        self._touch(f"{parent_pid}.ready.{_getpid()}")
        quiet, limit, poll = self.probe.gate["quiet"], self.probe.gate["max"], self.probe.gate["poll"]
        deadline = _monotonic() + limit
        prefix = f"{parent_pid}."
        while _monotonic() < deadline:
            try:
                names = [n for n in os.listdir(self.dir) if n.startswith(prefix) and not n.endswith(".tmp")]
                with _real_open(os.path.join(self.dir, f"{parent_pid}.last")) as f:
                    last = float(f.read() or 0)
            except (OSError, ValueError):
                return
            started = {n.rsplit(".", 1)[1] for n in names if ".start." in n}
            ready = {n.rsplit(".", 1)[1] for n in names if ".ready." in n}
            if started <= ready and _monotonic() - last >= quiet:
                return
            _real_sleep(poll)


def _leave_after_run(probe: Probe, runnable: Any, wait_first: bool = False) -> None:
    """When a student Process's or Thread's run() returns, its thread leaves the schedule at once: what follows
    is Python's own shutdown (flushing, finalizers, the exit), and the conductor need not wait for it before it
    gives the next turn. With `wait_first`, its first line also waits for the turn (a thread; a process waits
    in its bootstrap)."""
    run = runnable.run

    @functools.wraps(run)
    def run_then_leave() -> Any:
        if wait_first and probe.turns is not None:
            probe.turns.step("run")
        try:
            return run()
        finally:
            if probe.turns is not None:
                probe.turns.bye()

    try:
        runnable.run = run_then_leave
    except AttributeError:  # a class with __slots__ and no run of its own to replace: it stays as it is
        pass


def _patch_processes(probe: Probe) -> None:
    """Record process starts (with the daemon flag as it was at start()) and exits; gate child starts."""
    from multiprocessing import process

    gate = _Gate(probe)
    original_start = process.BaseProcess.start
    original_bootstrap = process.BaseProcess._bootstrap

    @functools.wraps(original_start)
    def start(self: Any) -> None:
        where = probe.where()
        try:
            self._grader_target = _target_name(self)
        except AttributeError:  # a class with __slots__: the name is then read after start, as before
            pass
        gate.starting()
        scheduled = probe.turns is not None and where is not None and _student_target(probe, self)
        if scheduled:
            probe.turns.step("start")
        original_start(self)
        gate.started(self.pid)
        if scheduled:
            self._grader_scheduled = True
            probe.turns.spawned(self.pid)  # the conductor waits for it to arrive before it decides
        probe.emit(grader_events.SPAWN, child=self.pid, name=self.name, daemon=bool(self.daemon), target=_target_name(self),
                   where=where)

    @functools.wraps(original_bootstrap)
    def _bootstrap(self: Any, *args: Any, **kwargs: Any) -> int:
        probe.attach(self.name, redirect_output=True)
        probe.rename(self.name)
        parent = getattr(self, "_parent_pid", None)
        probe.emit(grader_events.PROC_START, name=self.name, daemon=bool(self.daemon), target=_target_name(self),
                   parent=parent)
        if probe.startup_delay > 0:  # tests only: a machine too busy to start this process in time, which
            ends = _real_clocks["monotonic"]() + probe.startup_delay  # keeps it runnable (busy), never asleep
            while _real_clocks["monotonic"]() < ends:
                pass
        if parent:
            gate.wait(parent)
        probe.emit(grader_events.PROC_RUN)  # the mark: this process reaches the student's code now (see running/startup.py)
        scheduled = probe.turns is not None and _student_target(probe, self)
        if scheduled:
            probe.turns.step("run")  # the student's code runs when the conductor says
            _leave_after_run(probe, self)
        code = 1
        try:
            code = original_bootstrap(self, *args, **kwargs)
            return code
        finally:
            if scheduled:
                probe.turns.bye()
            tampered = probe.tampered()
            if tampered:
                probe.emit(grader_events.TAMPER, replaced=tampered)
            probe.emit(grader_events.PROC_EXIT, code=code)

    probe.install(process.BaseProcess, "start", start)
    probe.install(process.BaseProcess, "_bootstrap", _bootstrap)
    if probe.turns is not None:
        _patch_join(probe, process.BaseProcess, lambda child: child.pid, thread=False)


def _patch_exit(probe: Probe) -> None:
    """At the end of the main program, record which non-daemonic children Python is about to wait for."""
    import multiprocessing
    import multiprocessing.util  # noqa: F401 - registers _exit_function first, so ours runs before it

    def at_exit() -> None:
        if _getpid() != probe.root_pid:
            return
        try:
            children = multiprocessing.active_children()
        except BaseException:  # noqa: BLE001
            children = []
        waiting = [
            {"pid": c.pid, "name": c.name, "target": _target_name(c)} for c in children if not c.daemon
        ]
        probe.emit(grader_events.MAIN_DONE, waiting=waiting, daemons=[c.pid for c in children if c.daemon])

    atexit.register(at_exit)
    original_shutdown = threading._shutdown

    def _shutdown() -> None:
        # Python waits for non-daemon threads before it runs atexit handlers: say so first, so that a
        # thread that never ends is explained (and stopped after the exit grace) like a process.
        if _getpid() == probe.root_pid:
            threads = [t for t in threading.enumerate()
                       if t is not threading.main_thread() and not t.daemon and t.is_alive()]
            if threads:
                probe.emit(grader_events.MAIN_DONE, waiting=[], daemons=[],
                           threads=[{"name": t.name, "thread": t.ident, "where": getattr(t, "_grader_where", None),
                                     "target": getattr(getattr(t, "_target", None), "__name__", type(t).__name__)}
                                    for t in threads])
        original_shutdown()

    probe.install(threading, "_shutdown", _shutdown)


def _apply_start_method(method: str | None) -> None:
    """Make `method` the default start method without 'setting' it, so student code may still set its own."""
    if not method:
        return
    from multiprocessing import context

    context._default_context._default_context = context._concrete_contexts[method]


def _apply_limits(limits: dict[str, int]) -> None:
    """Resource limits for the whole student tree (children inherit them): no core dumps, bounded memory."""
    try:
        import resource
    except ImportError:
        return
    names = {"core": "RLIMIT_CORE", "as": "RLIMIT_AS", "fsize": "RLIMIT_FSIZE", "nproc": "RLIMIT_NPROC"}
    for key, value in limits.items():
        which = getattr(resource, names.get(key, ""), None)
        if which is None:
            continue
        try:
            soft, hard = resource.getrlimit(which)
            if hard != resource.RLIM_INFINITY:
                value = min(value, hard)
            resource.setrlimit(which, (value, hard))
        except (ValueError, OSError):
            pass


def _patch_spies(probe: Probe, spies: dict[str, list[str]]) -> None:
    """Wrap the named student functions when their module is imported, in whichever process imports it."""
    import importlib.abc
    import importlib.machinery

    def spy(module_name: str, func: Callable[..., Any]) -> Callable[..., Any]:
        def_line = getattr(getattr(func, "__code__", None), "co_firstlineno", None)

        @functools.wraps(func)
        def spied(*args: Any, **kwargs: Any) -> Any:
            probe.emit(grader_events.CALL, func=func.__name__, args=[_describe(a) for a in args],
                       kwargs={k: _describe(v) for k, v in kwargs.items()}, where=probe.where(), def_line=def_line)
            try:
                result = func(*args, **kwargs)
            except BaseException as exc:
                probe.emit(grader_events.RAISE, func=func.__name__, error=type(exc).__name__, message=_safe_repr(exc, 300))
                raise
            probe.emit(grader_events.RETURN, func=func.__name__, value=_describe(result))
            # A run may hold a spied function's caller a moment after it returns ("return:consumer" in
            # exercise 2): then a main() that does not wait for its consumers returns before they end.
            probe.delay("return:" + func.__name__)
            return result

        spied.__grader_spy__ = True  # type: ignore[attr-defined]
        return spied

    class SpyLoader(importlib.abc.Loader):
        def __init__(self, loader: Any, name: str) -> None:
            self.loader, self.name = loader, name

        def create_module(self, spec: Any) -> Any:
            return self.loader.create_module(spec)

        def exec_module(self, module: Any) -> None:
            self.loader.exec_module(module)
            for attr in spies.get(self.name, []):
                func = getattr(module, attr, None)
                if callable(func) and not getattr(func, "__grader_spy__", False):
                    setattr(module, attr, spy(self.name, func))

    class SpyFinder(importlib.abc.MetaPathFinder):
        def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
            if name not in spies:
                return None
            spec = importlib.machinery.PathFinder.find_spec(name, path)
            if spec is not None and spec.loader is not None:
                spec.loader = SpyLoader(spec.loader, name)
            return spec

    sys.meta_path.insert(0, SpyFinder())


def activate() -> Probe | None:
    """Install the probe in this process if the grader asked for it (GRADER_PROBE holds the config)."""
    raw = os.environ.get(CONFIG_ENV)
    if not raw:
        return None
    config = json.loads(raw)
    probe = Probe(config)
    root = os.environ.get(ROOT_ENV)
    is_root = root is None
    if is_root:
        os.environ[ROOT_ENV] = str(_getpid())
        _apply_limits(config.get("limits", {}))
    probe.root_pid = int(os.environ[ROOT_ENV])
    probe.attach("MainProcess" if is_root else "spawned", redirect_output=not is_root)

    def after_fork_in_child() -> None:
        probe.attach("forked", redirect_output=True)
        # multiprocessing's own fork children say more at bootstrap; a bare os.fork() child is known by this.
        probe.emit(grader_events.PROC_START, name="forked", daemon=None, target="os.fork", parent=os.getppid())

    os.register_at_fork(after_in_child=after_fork_in_child)
    _apply_start_method(config.get("start_method"))
    _patch_time(probe)
    _patch_virtual_time(probe)
    _patch_files(probe)
    _patch_locks(probe)
    _patch_queues(probe)
    _patch_threads(probe)
    _when_imported("multiprocessing.managers", lambda: _patch_managers(probe))
    _patch_processes(probe)
    _patch_exit(probe)
    _patch_spies(probe, config.get("spy", {}))
    if is_root:
        probe.emit(grader_events.PROC_START, name="MainProcess", daemon=False, target="__main__", parent=None,
                   argv=[_safe_repr(a, 200) for a in getattr(sys, "argv", [])])
    global _PROBE
    _PROBE = probe
    return probe


_PROBE: Probe | None = None


def current() -> Probe | None:
    """The probe of this process (the driver uses it to mark steps)."""
    return _PROBE
