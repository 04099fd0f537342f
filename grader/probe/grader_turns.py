"""A student process's side of the grader's controlled scheduler: each student thread asks the conductor
(running/conductor.py, in the grader, out of the student's reach) for its turn at every synchronisation point
the probe sees, so the grader, not the operating system, decides the interleaving.

Standard library only and nothing of the grader (it runs inside student processes). It never raises into
student code: when the conductor cannot be reached, the process runs free, as without a scheduler.
"""
from __future__ import annotations

import importlib
import json
import os
import socket
import threading
import time
from typing import Any, Callable

grader_events = importlib.import_module(f"{__package__}.grader_events" if __package__ else "grader_events")

_monotonic = time.monotonic
_dumps = json.dumps
_loads = json.loads
NO_DEADLINE = None


class Turns:
    """This process's connections to the conductor, one per student thread (threads ask concurrently)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.offset = 0.0  # the run's virtual time, as the conductor last said (it only grows)
        self.local = threading.local()
        self.sockets: list[socket.socket] = []
        self.dead = False
        self.identity: dict[str, Any] = {}

    # ---- time ------------------------------------------------------------------------------------
    def now(self) -> float:
        """The run's virtual time in seconds, as of this thread's last turn: it moves only when the conductor
        jumps to the next timer (no thread could run) or a student reads a clock (one tick per read)."""
        return self.offset

    def clock(self) -> float:
        """A student's clock read: a point of its own (a loop that waits for the clock to pass a mark is let
        go round, one tick of virtual time a read); the run's virtual time after it."""
        self.step("clock")
        return self.offset

    # ---- connection ------------------------------------------------------------------------------
    def reset_after_fork(self, identity: dict[str, Any]) -> None:
        """In a fork child: drop the parent's connections (they are the parent's threads'), keep the clock."""
        for sock in self.sockets:
            try:
                sock.close()
            except OSError:
                pass
        self.sockets = []
        self.local = threading.local()
        self.identity = identity

    def _connection(self) -> Any:
        conn = getattr(self.local, "conn", None)
        if conn is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(self.path)
            self.sockets.append(sock)
            conn = self.local.conn = (sock, sock.makefile("rb"))
            thread = threading.current_thread()
            self._send(sock, {"op": grader_events.TURN_HELLO, "pid": os.getpid(), "tid": threading.get_ident(),
                              "thread": thread.name, "main": thread is threading.main_thread(), **self.identity})
        return conn

    @staticmethod
    def _send(sock: socket.socket, message: dict[str, Any]) -> None:
        sock.sendall((_dumps(message) + "\n").encode())

    def ask(self, message: dict[str, Any], reply: bool = True) -> dict[str, Any] | None:
        """Send one message; with `reply`, wait for the conductor's answer. None: run free (no conductor)."""
        if self.dead:
            return None
        try:
            sock, reader = self._connection()
            self._send(sock, message)
            if not reply:
                return {}
            line = reader.readline()
            if not line:
                raise OSError("the conductor closed the connection")
            answer = _loads(line)
        except (OSError, ValueError):
            self.dead = True  # the grader is gone or the run is ending: never hang student code on it
            return None
        self.offset = max(self.offset, float(answer.get("off", self.offset)))
        return answer

    # ---- the points --------------------------------------------------------------------------------
    def step(self, point: str, res: str | None = None) -> None:
        """Wait here until the conductor gives this thread the turn."""
        self.ask({"op": grader_events.TURN_STEP, "point": point, "res": res})

    def signal(self, res: str, delta: int = 0) -> None:
        """Say that `res` may have changed (a lock released, `delta` items put on or taken off a queue)."""
        self.ask({"op": grader_events.TURN_SIGNAL, "res": res, "delta": delta}, reply=False)

    def spawned(self, child: int) -> None:
        """Say that this thread started a student process: the conductor waits for it to arrive."""
        self.ask({"op": grader_events.TURN_SPAWNED, "child": child}, reply=False)

    def mark(self, step: int, taken: int | None) -> None:
        """Say that the driver begins `step` of its plan; `taken`: count this thread's turns on from there
        (a replay of that one step then draws the priorities the whole run drew)."""
        self.ask({"op": grader_events.TURN_MARK, "step": step, "taken": taken}, reply=False)

    def spawned_thread(self, tid: int) -> None:
        """Say that this thread started a student thread of this process: the conductor waits for it to arrive."""
        self.ask({"op": grader_events.TURN_SPAWNED, "thread": tid}, reply=False)

    def bye(self) -> None:
        """This thread ends: leave the schedule."""
        conn = getattr(self.local, "conn", None)
        if conn is None or self.dead:
            return
        try:
            self._send(conn[0], {"op": grader_events.TURN_BYE})
            conn[0].close()
        except OSError:
            pass
        self.local.conn = None

    def deadline(self, timeout: float | None) -> float | None:
        """The virtual time at which a wait of `timeout` seconds (None: forever) gives up."""
        return None if timeout is None else self.now() + max(0.0, float(timeout))

    def sleep(self, seconds: float) -> bool:
        """Sleep `seconds` of virtual time; False when there is no conductor (then the caller sleeps)."""
        answer = self.ask({"op": grader_events.TURN_SLEEP, "secs": max(0.0, seconds)})
        return answer is not None

    def acquire(self, res: str, try_once: Callable[[], bool], timeout: float | None) -> bool | None:
        """A blocking acquire under the scheduler: try without blocking; if taken, wait until `res` is
        signalled (or the deadline) and try again. True/False: acquired or timed out; None: make the real
        call (no conductor, or nothing the conductor knows of will release it)."""
        until = self.deadline(timeout)
        while True:
            if try_once():
                return True
            verdict = _verdict(self.ask({"op": grader_events.TURN_BLOCK, "res": res, "deadline": until}))
            if verdict != "go":
                return None if verdict == "real" else False

    def get(self, res: str, timeout: float | None) -> tuple[str, float | None]:
        """A blocking get on queue `res`: "go" (an item is there: take it), "timeout" or "real", and the
        patience the conductor cut the timeout to, if it did."""
        answer = self.ask({"op": grader_events.TURN_GET, "res": res, "deadline": self.deadline(timeout)})
        return _verdict(answer), (answer or {}).get("cut")

    def join(self, child: int, timeout: float | None, thread: bool = False) -> str:
        """Wait for a student process (or, with `thread`, a thread of this process, by its ident) to end: "go"
        (it has: join it), "timeout" or "real"."""
        return _verdict(self.ask({"op": grader_events.TURN_JOIN, "thread" if thread else "child": child,
                                  "deadline": self.deadline(timeout)}))

    def off(self, call: Callable[..., Any], *args: Any,
            timeouts: tuple[float | None, float | None] = (None, None), **kwargs: Any) -> Any:
        """Make a call the conductor does not model (a join, a wait) off the schedule, then ask for the turn
        again before any more of the student's code runs. `timeouts`: the call's timeout as the student
        asked it (virtual seconds) and as made (real seconds): a call that used up its real timeout took the
        virtual one, and the run's time is moved on to its end."""
        asked, made = timeouts
        if self.ask({"op": grader_events.TURN_OFF}, reply=False) is None:
            return call(*args, **kwargs)
        deadline = None if asked is None else self.now() + asked
        started = _monotonic()
        try:
            return call(*args, **kwargs)
        finally:
            used_up = made is not None and _monotonic() - started >= made
            self.ask({"op": grader_events.TURN_STEP, "point": "back", "at_least": deadline if used_up else None})


def _verdict(answer: dict[str, Any] | None) -> str:
    """What the conductor said to a wait: "go", "timeout", or "real" (make the real call: it said so, or there
    is no conductor)."""
    if answer is None or answer.get("real"):
        return "real"
    return "timeout" if answer.get("timeout") else "go"
