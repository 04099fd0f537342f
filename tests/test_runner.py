"""The runner, driven directly with tiny student programs: every status it can give, the stacks it collects
on a hang, the output cap, the resource limits, the probe under each start method, and never a process left
behind (checked with psutil against every process the run had, seen while it ran)."""
from __future__ import annotations

import json
import os
import resource
import secrets
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest

from grader.running import runner
from grader.running.runner import RunOutcome, RunSpec

MARK_VAR = "RUNNER_TEST_MARK"  # not GRADER_*: the runner drops those from the student's environment
START_METHODS = ["fork", "spawn", "forkserver"]


@dataclass
class Seen:
    """A process of the run, seen while it ran: host pid, pid inside the run's namespace, start time."""

    pid: int
    ns_pid: int
    created: float


@dataclass
class Watcher:
    """Records every process whose environment carries this test's marker, polling /proc while a run goes."""

    needle: bytes
    seen: dict[tuple[int, float], Seen] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)

    def sweep(self) -> list[Seen]:
        """One pass over /proc: the marked processes alive now (zombies excluded)."""
        found = []
        for name in os.listdir("/proc"):
            if not name.isdigit() or int(name) == os.getpid():
                continue
            try:
                with open(f"/proc/{name}/environ", "rb") as f:
                    if self.needle not in f.read():
                        continue
                proc = psutil.Process(int(name))
                if proc.status() == psutil.STATUS_ZOMBIE:
                    continue
                found.append(Seen(proc.pid, _ns_pid(proc.pid), proc.create_time()))
            except (OSError, psutil.Error):
                continue
        return found

    def loop(self) -> None:
        """Sweep until told to stop (a sweep every 10 ms: long-lived processes cannot be missed)."""
        while not self.stop.is_set():
            for seen in self.sweep():
                self.seen.setdefault((seen.pid, seen.created), seen)
            self.stop.wait(0.01)


def line_of(source: str, text: str) -> int:
    """The line number of the first line of a test program that contains `text` (as the runner sees it)."""
    lines = textwrap.dedent(source).splitlines()
    return next(number for number, line in enumerate(lines, 1) if text in line)


def _ns_pid(pid: int) -> int:
    """The pid a process has in its innermost pid namespace (what the probe records)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("NSpid:"):
                return int(line.split()[-1])
    return pid


@dataclass
class Result:
    """A run's outcome and every process the watcher saw during it."""

    outcome: RunOutcome
    seen: list[Seen]

    def events(self, kind: str) -> list[dict[str, Any]]:
        """The probe's events of one kind, from every process, in time order."""
        return [e for e in self.outcome.events if e["ev"] == kind]

    def pids_of(self, target: str) -> list[int]:
        """The pids of the processes that ran `target` (from their proc_start events)."""
        return sorted({e["pid"] for e in self.events("proc_start") if e.get("target") == target})

    @property
    def main_pid(self) -> int:
        """The main program's pid, as the probe recorded it."""
        return next(e["pid"] for e in self.events("proc_start") if e.get("target") == "__main__")

    def seen_ns(self) -> set[int]:
        """The pids (inside the run) of every process the watcher saw."""
        return {s.ns_pid for s in self.seen}


@pytest.fixture
def run_program(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """run_program(source, files=..., **spec) -> Result: prog.py run by runner.run, watched from outside."""
    token = secrets.token_hex(8)
    monkeypatch.setenv(MARK_VAR, token)
    watchers: list[Watcher] = []

    def _run(source: str, *, files: dict[str, str] | None = None, **rules: Any) -> Result:
        """Run one program under the watcher; the probe must have loaded in every process."""
        path = tmp_path / f"prog-{len(watchers)}.py"
        path.write_text(textwrap.dedent(source))
        spec = RunSpec(argv=["prog.py"], copy={"prog.py": path}, files=files or {}, **rules)
        watcher = Watcher(f"{MARK_VAR}={token}".encode())
        watchers.append(watcher)
        thread = threading.Thread(target=watcher.loop, daemon=True)
        thread.start()
        try:
            outcome = runner.run(spec)
        finally:
            watcher.stop.set()
            thread.join()
        assert outcome.probe_errors == [], outcome.probe_errors
        return Result(outcome, list(watcher.seen.values()))

    yield _run
    for watcher in watchers:  # whatever a test asserted, its runs left nothing
        _assert_all_gone(watcher)


def _assert_all_gone(watcher: Watcher) -> None:
    """Every process the run had is gone (or its pid now belongs to another process); none is our zombie."""
    for seen in watcher.seen.values():
        try:
            alive = psutil.Process(seen.pid).create_time() == seen.created
        except psutil.NoSuchProcess:
            alive = False
        assert not alive, f"process {seen.pid} (pid {seen.ns_pid} in the run) survived the run"
    assert watcher.sweep() == []
    mine = psutil.Process().children(recursive=True)
    assert mine == [], [(p.pid, p.status()) for p in mine]


# ---- a hang: timeout, and a setsid() double-fork grandchild -----------------------------------------

DETACHED_GRANDCHILD = """
    import os, time

    def write(name, text):
        with open(name + ".tmp", "w") as f:
            f.write(text)
        os.replace(name + ".tmp", name)

    if __name__ == "__main__":
        if os.fork() == 0:
            os.setsid()              # out of the session and process group the runner started
            if os.fork() == 0:       # the grandchild: re-parented once its parent is gone
                write("grandchild.pid", str(os.getpid()))
                while True:
                    time.sleep(0.05)
            os._exit(0)
        os.wait()
        while True:                  # the main program never ends: the runner must time it out
            time.sleep(0.05)
"""


@pytest.mark.parametrize("isolate", [True, False], ids=["isolated", "not-isolated"])
def test_timeout_kills_a_tree_with_a_setsid_grandchild(run_program: Any, isolate: bool) -> None:
    result = run_program(DETACHED_GRANDCHILD, timeout=2.0, isolate=isolate)
    outcome = result.outcome
    assert outcome.status == runner.TIMEOUT
    assert 2.0 <= outcome.duration < 10, outcome.duration
    grandchild = int(outcome.files["grandchild.pid"])
    assert grandchild in result.seen_ns(), "the watcher never saw the grandchild"
    assert {result.main_pid, grandchild} <= result.seen_ns()
    # Stacks were collected before the kill, from the main program and from the detached grandchild.
    lines = [n for n, line in enumerate(textwrap.dedent(DETACHED_GRANDCHILD).splitlines(), 1) if "sleep" in line]
    for pid, line in ((grandchild, lines[0]), (result.main_pid, lines[1])):
        assert f'prog.py", line {line} in <module>' in outcome.stacks.get(pid, ""), (pid, outcome.stacks)
    assert outcome.killed >= 2


# ---- output --------------------------------------------------------------------------------------

FLOOD_MAIN = """
    import sys
    while True:
        sys.stdout.write("x" * 999 + "\\n")
"""
FLOOD_CHILD = """
    import multiprocessing as mp, sys, time

    def flood():
        while True:
            sys.stderr.write("y" * 999 + "\\n")

    if __name__ == "__main__":
        p = mp.Process(target=flood)
        p.start()
        p.join()
"""


@pytest.mark.parametrize("who", ["main", "child"])
def test_an_output_flood_is_stopped_and_capped_with_a_marker(run_program: Any, who: str) -> None:
    result = run_program(FLOOD_MAIN if who == "main" else FLOOD_CHILD, timeout=20, output_limit=1024 * 1024)
    outcome = result.outcome
    assert outcome.status == runner.OUTPUT_LIMIT
    assert outcome.duration < 10
    key, stream = ("main", "out") if who == "main" else (str(result.pids_of("flood")[0]), "err")
    text = outcome.output[key][stream]
    assert "[... output truncated:" in text and "more bytes not shown ...]" in text
    assert len(text.encode()) < runner.OUTPUT_KEEP + 200


def test_output_over_the_kept_size_is_truncated_visibly(run_program: Any) -> None:
    result = run_program('for _ in range(100):\n    print("z" * 1023)\nprint("the end")\n')
    outcome = result.outcome
    assert outcome.status == runner.EXITED and outcome.returncode == 0
    text = outcome.output["main"]["out"]
    assert text.startswith("z" * 1023 + "\n")
    assert "the end" not in text
    hidden = 100 * 1024 + len("the end\n") - runner.OUTPUT_KEEP
    assert text.endswith(f"\n[... output truncated: {hidden:,} more bytes not shown ...]\n")


# ---- deadlocks and hangs ----------------------------------------------------------------------------

OPPOSITE_ORDER = """
    import multiprocessing as mp

    def transfer(first, second, mine, theirs):
        with first:
            mine.set()
            theirs.wait()            # both hold their first lock now
            with second:             # each waits for the other's: a deadlock
                pass

    if __name__ == "__main__":
        a, b = mp.Lock(), mp.Lock()
        got_a, got_b = mp.Event(), mp.Event()
        p1 = mp.Process(target=transfer, args=(a, b, got_a, got_b))
        p2 = mp.Process(target=transfer, args=(b, a, got_b, got_a))
        p1.start(); p2.start()
        p1.join(); p2.join()
"""


@pytest.mark.parametrize("method", START_METHODS)
def test_a_deadlock_is_called_early_with_the_stacks_of_both_processes(run_program: Any, method: str) -> None:
    result = run_program(OPPOSITE_ORDER, timeout=40, start_method=method)
    outcome = result.outcome
    assert outcome.status == runner.DEADLOCK
    assert outcome.duration < 20, outcome.duration  # called long before the timeout
    workers = result.pids_of("transfer")
    assert len(workers) == 2
    second = line_of(OPPOSITE_ORDER, "with second:")
    for pid in workers:
        stack = outcome.stacks.get(pid, "")
        assert f'prog.py", line {second} in transfer' in stack, stack
    assert f'prog.py", line {line_of(OPPOSITE_ORDER, "p1.join()")} in <module>' in outcome.stacks[result.main_pid]
    # The probe saw each worker take its first lock and wait for the second.
    waits = {(e["pid"], e["where"]["line"]) for e in result.events("acquire_wait")}
    assert {(pid, second) for pid in workers} <= waits


def test_a_self_deadlock_is_called_with_both_lines(run_program: Any) -> None:
    source = """
        import multiprocessing as mp

        if __name__ == "__main__":
            lock = mp.Lock()
            lock.acquire()
            lock.acquire()
    """
    result = run_program(source, timeout=30)
    outcome = result.outcome
    assert outcome.status == runner.SELF_DEADLOCK
    assert outcome.duration < 15
    event = result.events("self_deadlock")[0]
    first, second = line_of(source, "lock.acquire()"), line_of(source, "lock.acquire()") + 1
    assert event["where"]["line"] == second and event["held_since"]["line"] == first
    assert f'prog.py", line {second} in <module>' in outcome.stacks[result.main_pid]


NON_DAEMON_FOREVER = """
    import multiprocessing as mp, time

    def forever():
        while True:
            time.sleep(0.05)

    if __name__ == "__main__":
        mp.Process(target=forever).start()
        print("main's code is done")
"""


def test_a_non_daemon_child_keeps_the_program_alive(run_program: Any) -> None:
    source = NON_DAEMON_FOREVER
    result = run_program(source, timeout=30, exit_grace=1.0)
    outcome = result.outcome
    assert outcome.status == runner.KEPT_ALIVE
    assert outcome.duration < 15
    assert outcome.output["main"]["out"] == "main's code is done\n"
    done = result.events("main_done")[0]
    assert [w["target"] for w in done["waiting"]] == ["forever"]
    child = result.pids_of("forever")[0]
    assert done["waiting"][0]["pid"] == child
    assert "in _exit_function" in outcome.stacks[result.main_pid]
    assert f'prog.py", line {line_of(source, "time.sleep")} in forever' in outcome.stacks[child]


def test_the_waiting_grace_cuts_short_only_a_wait_for_non_daemon_children(run_program: Any) -> None:
    result = run_program(NON_DAEMON_FOREVER, timeout=60, exit_grace=30.0, waiting_grace=0.5)
    assert result.outcome.status == runner.KEPT_ALIVE
    assert result.outcome.duration < 15  # not the 30 s exit grace: Python was seen waiting for a child
    slow_shutdown = """
        import threading, time

        threading.Thread(target=time.sleep, args=(1.0,)).start()  # Python waits for it at exit, as it should
        print("main's code is done")
    """
    result = run_program(slow_shutdown, timeout=60, exit_grace=30.0, waiting_grace=0.2)
    assert result.outcome.status == runner.EXITED  # nothing to wait for: the whole exit grace applies
    assert result.outcome.output["main"]["out"] == "main's code is done\n"


def test_a_child_that_ignores_sigterm_is_killed(run_program: Any) -> None:
    source = """
        import multiprocessing as mp, signal, time

        def stubborn(ready):
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            ready.set()
            while True:
                time.sleep(0.05)

        if __name__ == "__main__":
            ready = mp.Event()
            p = mp.Process(target=stubborn, args=(ready,))
            p.start()
            ready.wait()
            p.terminate()            # ignored
            p.join()
    """
    result = run_program(source, timeout=3.0)
    outcome = result.outcome
    assert outcome.status == runner.TIMEOUT
    child = result.pids_of("stubborn")[0]
    assert child in result.seen_ns()
    assert f'prog.py", line {line_of(source, "time.sleep")} in stubborn' in outcome.stacks[child]


def test_a_bounded_fork_loop_hits_the_process_limit(run_program: Any) -> None:
    source = """
        import os, time

        if __name__ == "__main__":
            for _ in range(300):     # bounded: a test must never be an actual fork bomb
                if os.fork() == 0:
                    time.sleep(30)
                    os._exit(0)
            time.sleep(30)
    """
    result = run_program(source, timeout=30, process_limit=20)
    outcome = result.outcome
    assert outcome.status == runner.PROCESS_LIMIT
    assert outcome.duration < 15
    assert outcome.killed > 20


# ---- after the main program ------------------------------------------------------------------------

def test_a_detached_sleeper_is_reported_as_leftover_and_killed(run_program: Any) -> None:
    source = """
        import os, time

        if __name__ == "__main__":
            if os.fork() == 0:
                os.setsid()
                if os.fork() == 0:
                    with open("sleeper.tmp", "w") as f:
                        f.write(str(os.getpid()))
                    os.replace("sleeper.tmp", "sleeper.pid")
                    time.sleep(60)
                    os._exit(0)
                os._exit(0)
            os.wait()
            while not os.path.exists("sleeper.pid"):
                time.sleep(0.01)
            print("main exits")
    """
    result = run_program(source, timeout=30)
    outcome = result.outcome
    assert outcome.status == runner.EXITED and outcome.returncode == 0
    sleeper = int(outcome.files["sleeper.pid"])
    assert [left["pid"] for left in outcome.leftovers] == [sleeper]
    assert sleeper in result.seen_ns()
    assert outcome.killed >= 1
    assert f'prog.py", line {line_of(source, "time.sleep(60)")} in <module>' in outcome.stacks.get(sleeper, "")


def test_a_clean_program_has_no_leftovers(run_program: Any) -> None:
    source = """
        import multiprocessing as mp

        def hello():
            print("hello")

        if __name__ == "__main__":
            for method in ("fork", "spawn", "forkserver"):
                p = mp.get_context(method).Process(target=hello)
                p.start()
                p.join()
    """
    result = run_program(source, timeout=30)
    outcome = result.outcome
    assert outcome.status == runner.EXITED and outcome.returncode == 0
    assert outcome.leftovers == []  # the resource tracker and the forkserver are not the student's
    assert sorted(v["out"] for k, v in outcome.output.items() if k != "main") == ["hello\n"] * 3


def test_an_exception_in_the_runner_still_kills_the_tree(run_program: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(spec: RunSpec, popen: Any, tree: Any, dirs: Any, started: float, *rest: Any) -> Any:
        """Let the program start its children, then fail as a bug (or pytest-timeout) would."""
        while not (dirs.work / "started").exists() and time.monotonic() - started < 10:
            time.sleep(0.01)
        raise RuntimeError("interrupted in the middle of a run")

    monkeypatch.setattr(runner, "_supervise", broken)
    source = """
        import multiprocessing as mp, time

        def sleeper():
            time.sleep(60)

        if __name__ == "__main__":
            procs = [mp.Process(target=sleeper) for _ in range(3)]
            for p in procs:
                p.start()
            open("started", "w").close()
            time.sleep(60)
    """
    with pytest.raises(RuntimeError, match="in the middle of a run"):
        run_program(source, timeout=30)
    # The fixture's teardown asserts that none of the processes the watcher saw survived.


# ---- limits ----------------------------------------------------------------------------------------

def test_memory_is_limited_and_core_dumps_are_off(run_program: Any) -> None:
    source = """
        import json, resource

        def limit(name):
            return resource.getrlimit(getattr(resource, name))[0]

        print(json.dumps({name: limit(name) for name in ("RLIMIT_AS", "RLIMIT_CORE", "RLIMIT_FSIZE")}))
        small = bytearray(32 * 1024 * 1024)   # ordinary work still fits
        try:
            hog = bytearray(2 * 1024 ** 3)
        except MemoryError:
            print("MemoryError")
    """
    before = resource.getrlimit(resource.RLIMIT_AS)
    result = run_program(source, timeout=20, memory_limit=512 * 1024**2)
    outcome = result.outcome
    assert outcome.status == runner.EXITED and outcome.returncode == 0, outcome.output
    limits, said = outcome.output["main"]["out"].splitlines()
    assert json.loads(limits) == {"RLIMIT_AS": 512 * 1024**2, "RLIMIT_CORE": 0, "RLIMIT_FSIZE": 64 * 1024**2}
    assert said == "MemoryError"
    assert resource.getrlimit(resource.RLIMIT_AS) == before  # the grader itself is not limited


# ---- the probe in every process, under each start method ------------------------------------------

HELPER = """
import time

def work(x):
    started = time.monotonic()
    time.sleep(100)                  # scaled by the probe: 100 s x 0.001
    return time.monotonic() - started
"""
START_METHOD_PROG = """
    import json, multiprocessing as mp, os
    import helper

    MARK = "re-imported"

    def child(x):
        slept = helper.work(x)
        with open("/proc/self/cmdline", "rb") as f:
            cmdline = f.read().replace(b"\\0", b" ").decode()
        info = {"slept": slept, "ppid": os.getppid(), "mark": MARK, "cmdline": cmdline}
        with open(f"child-{x}.json", "w") as f:
            json.dump(info, f)

    if __name__ == "__main__":
        MARK = "inherited from the parent"
        procs = [mp.Process(target=child, args=(i,)) for i in range(2)]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        print(os.getpid(), mp.get_start_method())
"""
# How a child shows the start method that made it: its parent, its command line, the parent's globals.
EXPECTED_CHILD = {
    "fork": {"parent": "main", "cmdline": "prog.py", "mark": "inherited from the parent"},
    "spawn": {"parent": "main", "cmdline": "spawn_main", "mark": "re-imported"},
    "forkserver": {"parent": "forkserver", "cmdline": "multiprocessing.forkserver", "mark": "re-imported"},
}


@pytest.mark.parametrize("method", START_METHODS)
def test_the_probe_is_active_under_each_start_method(run_program: Any, method: str) -> None:
    result = run_program(START_METHOD_PROG, files={"helper.py": HELPER}, timeout=30, start_method=method,
                         sleep_scale=0.001, spy={"helper": ["work"]})
    outcome = result.outcome
    assert outcome.status == runner.EXITED and outcome.returncode == 0, outcome.output
    main_pid, used = outcome.output["main"]["out"].split()
    assert used == method and int(main_pid) == result.main_pid
    children = result.pids_of("child")
    assert len(children) == 2
    # The probe recorded the starts (parent side and child side), the spied calls, in each child.
    assert sorted(e["child"] for e in result.events("spawn")) == children
    calls = result.events("call")
    assert sorted(e["pid"] for e in calls if e["func"] == "work") == children
    returns = [e for e in result.events("return") if e["func"] == "work"]
    assert sorted(e["pid"] for e in returns) == children
    assert all(e["value"]["value"] < 5 for e in returns), returns
    assert sorted(e["pid"] for e in result.events("proc_exit")) == children
    expected = EXPECTED_CHILD[method]
    for x in range(2):
        info = json.loads(outcome.files[f"child-{x}.json"])
        assert info["slept"] < 5, info  # time.sleep(100) was scaled in the child too
        assert info["mark"] == expected["mark"], info
        assert expected["cmdline"] in info["cmdline"], info
        assert (info["ppid"] == result.main_pid) == (expected["parent"] == "main"), info
