"""The controlled scheduler (issue 10): the conductor decides who runs at every synchronisation point, knows
who cannot (a lock someone holds, a queue it knows is empty), owns the run's virtual time, and replays the
same schedule from the same seed; a real deadlock still shows as one."""
from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from grader.judging import shrink
from grader.judging.evidence import Run
from grader.probe import grader_events
from grader.running import conductor, runner

FIXES = Path(__file__).parent / "fixes"
EVERY_WAIT = Path(__file__).parent / "fixtures" / "virtual_time" / "every_wait.py"
LONG = 100.0  # virtual seconds each wait of the every_wait fixture times out after


def _run(source: str, method: str = "fork", seed: int = 1, timeout: float = 20, **rules: object) -> runner.RunOutcome:
    spec = runner.RunSpec(argv=["prog.py"], files={"prog.py": textwrap.dedent(source)}, sleep_scale=0.001,
                          start_method=method, seed=seed, timeout=timeout,
                          schedule=conductor.Rules(**rules))  # type: ignore[arg-type]
    return runner.run(spec)


def _printed(outcome: runner.RunOutcome) -> list[str]:
    return outcome.output["main"]["out"].split()


def _ex01_program(buyers: int = 6) -> str:
    """Exercise 1's wrong fix (lock around the write only) as a whole program: one sale among `buyers`."""
    source = (FIXES / "ex01" / "wrong_lock_only_write.py").read_text()
    source = source.replace('if __name__ == "__main__":', "if False:")
    return source + textwrap.dedent(f"""
        import json as _json
        with open("db.json", "w") as _f:
            _json.dump({{"count": 1}}, _f)
        main("db.json", {buyers})
    """)


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_every_timed_wait_and_clock_agree_on_virtual_time(method: str) -> None:
    # 22 waits of 100 s each (sleeps, timed gets and acquires, unmodelled waits that leave the schedule, a
    # Timer): the program ends within the runner's limit only because no real time is spent waiting.
    spec = runner.RunSpec(argv=["every_wait.py"], files={"every_wait.py": EVERY_WAIT.read_text()}, sleep_scale=0.001,
                          start_method=method, timeout=60, schedule=conductor.Rules())
    outcome = runner.run(spec)
    assert outcome.status == runner.EXITED, outcome.output
    report = json.loads(outcome.output["main"]["out"])
    for kind, waited in report["waits"].items():
        assert waited >= LONG, (kind, waited)  # as the student's own clock measures it
    before, in_child, after = report["clock"]
    assert before <= in_child <= after


def test_a_thread_waiting_for_a_held_lock_is_not_run_and_time_jumps() -> None:
    outcome = _run("""
        import time
        from multiprocessing import Lock, Process

        def holder(lock):
            with lock:
                time.sleep(1000)
                print("released", flush=True)

        def waiter(lock):
            time.sleep(1)
            with lock:
                print("acquired", flush=True)

        if __name__ == "__main__":
            lock = Lock()
            ps = [Process(target=holder, args=(lock,)), Process(target=waiter, args=(lock,))]
            for p in ps: p.start()
            for p in ps: p.join()
    """)
    assert outcome.status == runner.EXITED, outcome.output
    printed = "".join(out.get("out", "") for out in outcome.output.values()).split()
    assert sorted(printed) == ["acquired", "released"]
    schedule = outcome.schedule
    assert schedule is not None
    assert schedule["jumped"] >= 1000  # the holder's sleep passed in virtual time
    assert schedule["real_waits"] == 0  # the waiter never made the real blocking call: the conductor knew


@pytest.mark.parametrize(("producer_sleep", "expected"), [(50, "empty"), (1, "item")])
def test_a_timed_get_times_out_in_virtual_time_only_behind_a_slower_producer(producer_sleep: int, expected: str) -> None:
    outcome = _run(f"""
        import queue, time
        from multiprocessing import Process, Queue

        def producer(q):
            time.sleep({producer_sleep})
            q.put("item")

        if __name__ == "__main__":
            q = Queue()
            p = Process(target=producer, args=(q,))
            p.start()
            try:
                print(q.get(timeout=5))
            except queue.Empty:
                print("empty")
            p.join()
    """)
    assert outcome.status == runner.EXITED, outcome.output
    assert _printed(outcome) == [expected]


def test_the_same_seed_replays_the_same_schedule() -> None:
    source = _ex01_program()
    runs = {seed: [_run(source, seed=seed).schedule for _ in range(2)] for seed in (7, 8)}
    for seed, (first, second) in runs.items():
        assert first is not None and second is not None
        assert first["decisions"] == second["decisions"], seed
        assert len(first["decisions"]) > 20
    assert runs[7][0]["decisions"] != runs[8][0]["decisions"]  # the seed decides


def test_a_deadlock_is_still_called_with_the_real_stacks() -> None:
    outcome = _run("""
        import time
        from multiprocessing import Lock, Process

        def one(a, b):
            with a:
                time.sleep(1)
                with b:
                    pass

        if __name__ == "__main__":
            a, b = Lock(), Lock()
            ps = [Process(target=one, args=(a, b)), Process(target=one, args=(b, a))]
            for p in ps: p.start()
            for p in ps: p.join()
    """)
    assert outcome.status == runner.DEADLOCK
    assert outcome.schedule is not None and outcome.schedule["real_waits"] >= 2  # then the real acquires (and join)
    assert sum("acquire" in stack for stack in outcome.stacks.values()) >= 2


def test_loops_that_poll_or_spin_on_the_clock_do_not_livelock_the_run() -> None:
    outcome = _run("""
        import os, time
        from multiprocessing import Process

        def late_writer():
            time.sleep(30)
            with open("flag", "w") as f:
                f.write("up")

        if __name__ == "__main__":
            p = Process(target=late_writer)
            p.start()
            start = time.monotonic()
            while time.monotonic() < start + 5:  # a spin on the clock
                pass
            while True:  # a poll of a file, with no sleep
                try:
                    with open("flag") as f:
                        if f.read() == "up":
                            break
                except FileNotFoundError:
                    pass
            p.join()
            print("done")
    """)
    assert outcome.status == runner.EXITED, outcome.output
    assert _printed(outcome) == ["done"]


def test_pct_states_its_guarantee() -> None:
    # Burckhardt et al.: a bug of depth d in a run of n steps and k threads, with probability >= 1/(n k^(d-1))
    assert conductor.bound(100, 10, 1) == pytest.approx(1 / 100)
    assert conductor.bound(100, 10, 2) == pytest.approx(1 / 1000)
    assert conductor.bound(100, 10, 3) == pytest.approx(1 / 10000)
    assert conductor.bound(0, 10, 2) == 0.0


def _switches(decisions: list[str]) -> int:
    """Context switches in a schedule: consecutive turns given to different threads."""
    names = [d.rsplit(":", 1)[0] for d in decisions]
    return sum(a != b for a, b in zip(names, names[1:]))


def test_preemptions_are_recorded_and_a_replay_under_them_is_the_same_schedule() -> None:
    source = _ex01_program()
    original = _run(source, seed=7).schedule
    assert original is not None and original["failure"] is None
    preemptions = original["preemptions"]
    assert preemptions, original["decisions"]
    for preempted, taken, picked in preemptions:
        assert preempted != picked and isinstance(taken, int) and taken >= 1
    # every preemption is a switch in the recorded decisions: the preempted thread had the turn just before
    assert _switches(original["decisions"]) >= len(preemptions)
    replayed = _run(source, seed=7, preemptions=preemptions).schedule
    assert replayed is not None
    assert replayed["decisions"] == original["decisions"]
    assert replayed["preemptions"] == preemptions


def test_a_replay_under_no_preemption_switches_only_where_a_thread_cannot_go_on() -> None:
    source = _ex01_program()
    original = _run(source, seed=7).schedule
    calm = _run(source, seed=7, preemptions=[]).schedule
    assert original is not None and calm is not None and calm["failure"] is None
    assert calm["preemptions"] == []
    assert _switches(calm["decisions"]) < _switches(original["decisions"])
    # each thread runs on until it waits: a thread's turns come in runs, never one turn each in round robin
    assert _switches(calm["decisions"]) <= len(calm["decisions"]) // 2


def test_one_step_replayed_alone_names_its_processes_and_draws_its_switches_as_in_the_whole_run() -> None:
    source = (FIXES / "ex01" / "wrong_lock_only_write.py").read_text()
    steps = [{"call": "main", "args": [f"db-{i}.json", 4], "label": f"trial {i}"} for i in range(2)]
    files = {f"db-{i}.json": json.dumps({"count": 1}) for i in range(2)}

    def run(plan_steps: list[dict], **rules: object) -> Run:
        spec = runner.RunSpec(argv=[str(runner.DRIVER), "{meta}/plan.json"], copy={}, sleep_scale=0.001,
                              files={"ex01_oversold_ticket.py": source, **files}, start_method="fork", seed=3,
                              timeout=20, schedule=conductor.Rules(**rules),  # type: ignore[arg-type]
                              spy={"ex01_oversold_ticket": ["buy_ticket"]})
        plan = {"module": "ex01_oversold_ticket", "contract": {}, "steps": plan_steps}
        spec.meta_files["plan.json"] = json.dumps(plan)
        return Run(outcome=runner.run(spec), label="t", student_file="ex01_oversold_ticket.py")

    whole = run(steps)
    second = whole.steps[1]
    names = sorted(p.name for p in whole.children_of_step(second))
    start = next(e for e in whole.events(grader_events.STEP_START) if e["step"] == 1)
    assert start["counters"]["process"] == 5  # four buyers of the first trial were Process-1 to Process-4
    assert whole.outcome.schedule is not None
    script = shrink.trial_preemptions(whole, second)
    assert script  # the trial had switches to replay
    alone = run([{**steps[1], "counters": start["counters"], "taken": whole.outcome.schedule["marks"]["1"]}],
                preemptions=script)
    assert sorted(p.name for p in alone.children_of_step(alone.steps[0])) == names
    assert alone.outcome.schedule is not None
    assert [tuple(p) for p in alone.outcome.schedule["preemptions"]] == script  # each switch where it was


def test_the_kernel_names_the_process_at_the_other_end_of_the_socket() -> None:
    import os
    import socket

    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with left, right:
        assert conductor.peer_pid(left) == os.getpid()


def test_a_process_that_speaks_to_the_scheduler_as_another_is_cut_off_and_named() -> None:
    # The program is correct; only its own connection lies about who it is (its parent's pid, then "bye").
    outcome = _run("""
        import json, os, socket
        from multiprocessing import Process

        def lie():
            path = json.loads(os.environ["GRADER_PROBE"])["turns"]["socket"]
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(path)
            print(os.getpid(), os.getppid(), flush=True)
            try:
                for message in ({"op": "hello", "pid": os.getppid(), "tid": 1, "main": True}, {"op": "bye"}):
                    sock.sendall((json.dumps(message) + "\\n").encode())
                sock.recv(1)  # until the conductor hangs up
            except OSError:
                pass  # it did

        if __name__ == "__main__":
            p = Process(target=lie)
            p.start()
            p.join()
            print("done", flush=True)
    """)
    assert outcome.status == runner.EXITED, outcome.output
    assert outcome.schedule is not None
    child, parent = next(out["out"].split() for name, out in outcome.output.items() if name != "main")
    assert outcome.schedule["impostors"] == [f"process {child} said it was process {parent}"]


THREADS_PROGRAM = """
    import threading

    def worker(n, lock, log):
        for _ in range(3):
            with lock:
                log.append(n)

    if __name__ == "__main__":
        lock, log = threading.Lock(), []
        workers = [threading.Thread(target=worker, args=(n, lock, log)) for n in range(4)]
        for t in workers:
            t.start()
        for t in workers:
            t.join()
        print(*log, flush=True)
"""


def test_threads_wait_for_their_turn_and_the_same_seed_replays_their_interleaving() -> None:
    # Each worker thread says hello only once the OS runs it; its starter tells the conductor, which waits for
    # it and holds its first line until the starter stops starting: the interleaving is the seed's alone.
    runs = [_run(THREADS_PROGRAM, seed=seed) for seed in (5, 5, 5, 6, 7, 8, 9)]
    for outcome in runs:
        assert outcome.status == runner.EXITED, outcome.output
        assert sorted(_printed(outcome)) == sorted(["0", "1", "2", "3"] * 3)
    same = [(tuple(_printed(o)), tuple(o.schedule["decisions"])) for o in runs[:3]]  # type: ignore[index]
    assert same[0] == same[1] == same[2]
    assert any(name.startswith("MainProcess/Thread-") for name in runs[0].schedule["decisions"][0:40]
               for name in [name.split(":")[0]])  # type: ignore[index]
    assert len({tuple(_printed(o)) for o in runs}) > 1  # and other seeds interleave them otherwise
