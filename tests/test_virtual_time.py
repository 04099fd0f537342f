"""Virtual time (issue 10): the student's sleeps, clocks and every kind of timed wait run at one scale, on one
clock shared by the processes of a run, while Python's own waits stay real."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from grader.running import runner

FIXTURE = Path(__file__).parent / "fixtures" / "virtual_time" / "every_wait.py"
LONG = 100.0  # virtual seconds each wait of the fixture times out after: 0.1 s of real time at the scale below
KINDS = {"time.sleep", "Event.wait", "Condition.wait", "Condition.wait_for", "Semaphore.acquire", "Lock.acquire",
         "Barrier.wait", "Thread.join", "queue.get", "queue.put", "mp.Queue.get", "mp.Queue.put", "mp.Lock.acquire",
         "mp.Semaphore.acquire", "mp.Event.wait", "mp.Condition.wait", "Process.join", "Connection.poll",
         "connection.wait", "select.select", "selectors", "Timer"}


def _run(method: str, **rules: object) -> runner.RunOutcome:
    spec = runner.RunSpec(argv=["every_wait.py"], files={"every_wait.py": FIXTURE.read_text()}, sleep_scale=0.001,
                          start_method=method, isolate=False, **rules)  # type: ignore[arg-type]
    return runner.run(spec)


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_every_timed_wait_and_clock_agree_on_virtual_time(method: str) -> None:
    # 22 waits of 100 s each: only scaled timeouts let the program end before the runner's limit.
    outcome = _run(method, virtual_time=True, min_sleep=0.002, timeout=60)
    assert outcome.status == runner.EXITED, outcome.output
    report = json.loads(outcome.output["main"]["out"])
    assert set(report["waits"]) == KINDS
    for kind, waited in report["waits"].items():
        assert waited >= LONG, (kind, waited)  # the timeout is honoured, as the student's clock measures it
    before, in_child, after = report["clock"]
    assert before <= in_child <= after  # one clock for every process of the run, not one per process


def test_virtual_time_is_off_unless_asked() -> None:
    """Without it, a timed wait lasts what it says: the fixture cannot end within the limit."""
    outcome = _run("fork", timeout=3)
    assert outcome.status == runner.TIMEOUT
