"""Which processes of a run are still starting: interpreter start-up and imports, before the student's code.

Under load, a spawned child can take seconds to import multiprocessing and the probe. Such a process is not
blocked and not hung: it has not begun. The runner asks this watch before it calls a deadlock, and when a time
limit runs out while processes are still starting, the machine was too busy to judge the run (a grader error,
never the student's failure). The probe marks the moment a process reaches the student's code: `proc_run` for
a multiprocessing child (after its bootstrap and the start gate), `proc_start` of the main program (the probe
is loaded, the student's module comes next) and of a bare os.fork() child (it runs on at once)."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

from grader.probe import grader_events

# proc_start targets that are the student's code itself: the main program, a bare os.fork() child.
_RUNS_AT_ONCE = ("__main__", "os.fork")
SPAWNED_CHILD_MARK = "--multiprocessing-fork"  # in the command line of every spawned multiprocessing child
# A process still before the student's code that sleeps this long without using any CPU is not slow to start:
# it is stuck (e.g. unpickling a Manager proxy whose server the program already shut down). It counts as
# blocked, like any other process, so the student's own bug is judged as such. A slow start on a loaded
# machine is runnable (waiting for a CPU) or reading its imports from disk, never asleep with its CPU time still.
STALLED_AFTER = 1.0
_PROGRESSING = ("R", "D")


@dataclass
class StartupWatch:
    """Follows the probe's events and the tree's command lines; answers which processes are still starting.

    `main_command` is the student's main program as the runner starts it; `cmdline` reads a process's
    command line (host pid), `ns_pid` maps a host pid to the pid the probe records; `stat` (a process's state
    letter and CPU seconds), when given, lets a process that stopped making progress before the student's code
    count as stuck rather than starting (STALLED_AFTER)."""

    main_command: list[str]
    cmdline: Callable[[int], list[str] | None]
    ns_pid: Callable[[int], int]
    stat: Callable[[int], tuple[str, float] | None] | None = None
    clock: Callable[[], float] = time.monotonic
    progress: dict[int, tuple[float, float]] = field(default_factory=dict)  # host pid -> (CPU seconds, seen at)
    reached: dict[int, bool] = field(default_factory=dict)  # probe pid -> whether it reached student code
    candidate: dict[int, bool] = field(default_factory=dict)  # host pid -> a student process that must start
    probe_pids: dict[int, int] = field(default_factory=dict)  # host pid -> probe pid (fixed for a process's life)
    too_busy: bool = False  # the run hit its outer wall-clock limit after processes took long to start

    def see(self, event: dict[str, Any]) -> None:
        """Take one probe event into account."""
        kind = event.get("ev")
        if kind == grader_events.PROC_START:
            self.reached[event["pid"]] = event.get("target") in _RUNS_AT_ONCE
        elif kind == grader_events.PROC_RUN:
            self.reached[event["pid"]] = True

    def _is_candidate(self, pid: int) -> bool:
        """A process the probe will mark when it reaches student code: the main program or a spawned child.

        A child read between its fork and its exec shows its parent's command line (the main program's): it
        counts while it shows it, and is read again, since after its exec it may be the forkserver or the
        resource tracker, which the probe never marks. Any other answer is final and kept."""
        known = self.candidate.get(pid)
        if known is None:
            argv = self.cmdline(pid) or []
            if argv == self.main_command:
                return True
            known = self.candidate[pid] = SPAWNED_CHILD_MARK in argv
        return known

    def starting(self, pids: list[int]) -> list[int]:
        """The probe pids, among the tree's host `pids`, of processes that have not reached student code."""
        found = []
        for pid in pids:
            probe_pid = self.probe_pids.get(pid)
            if probe_pid is None:
                probe_pid = self.probe_pids[pid] = self.ns_pid(pid)
            reached = self.reached.get(probe_pid)
            if (reached is False or (reached is None and self._is_candidate(pid))) and not self._stalled(pid):
                found.append(probe_pid)
        return found

    def _stalled(self, pid: int) -> bool:
        """Whether a process before the student's code has slept STALLED_AFTER seconds without using CPU."""
        if self.stat is None:
            return False
        now, seen = self.clock(), self.stat(pid)
        if seen is None:
            return False
        state, cpu = seen
        last = self.progress.get(pid)
        if last is None or cpu != last[0] or state in _PROGRESSING:
            self.progress[pid] = (cpu, now)
            return False
        return now - last[1] > STALLED_AFTER
