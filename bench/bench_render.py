"""How long the HTML report takes to render, and how big it is, for a busy run.

A synthetic exercise report with 8 processes and 2,000 probe events (producers, consumers sharing a lock,
a daemon monitor, long output) is rendered with grader.render.html. Targets: under 0.2 s, under 300 KB.

    /work/venv/bin/python bench/bench_render.py [--processes 8] [--events 2000] [--repeat 5]
"""
from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from grader.render import html
from grader.results import FAILED, PASSED, CheckResult, Evidence, ExerciseResult, Location, Report, RunResult

TARGET_SECONDS = 0.2
TARGET_BYTES = 300_000
STUDENT_SOURCE = '''"""A producer-consumer program with a shared lock (benchmark material)."""
from multiprocessing import Lock, Process, Queue


def producer(q, items):
    for item in items:
        q.put(item)


def consumer(q, lock, path):
    while True:
        item = q.get()
        if item is None:
            return
        with lock:
            with open(path, "a") as f:
                f.write(f"{item}\\n")


def monitor(path):
    while True:
        pass


def main(path, producers=2, consumers=4):
    q, lock = Queue(), Lock()
    ...
''' + "\n".join(f"# filler line {n}" for n in range(60)) + "\n"


def _event(t: float, pid: int, ev: str, **fields: Any) -> dict[str, Any]:
    """One probe event of the synthetic run."""
    return {"t": round(t, 6), "pid": pid, "tid": 1, "ev": ev, **fields}


def busy_evidence(processes: int = 8, events: int = 2000, seed: int = 7) -> Evidence:
    """A finished run: main, producers, consumers sharing a lock and a daemon monitor, `events` events long."""
    rng = random.Random(seed)
    main, monitor = 2, 3
    workers = list(range(4, 2 + processes))
    producers, consumers = workers[: max(1, len(workers) // 3)], workers[max(1, len(workers) // 3):]
    where = {"file": "exercise.py", "func": "consumer"}
    out: list[dict[str, Any]] = [_event(0.0, main, "proc_start", name="MainProcess", target="__main__", daemon=False)]
    for index, pid in enumerate([monitor, *workers]):
        target = "monitor" if pid == monitor else "producer" if pid in producers else "consumer"
        out.append(_event(0.001 * index, main, "spawn", child=pid, daemon=pid == monitor, target=target,
                          where={"file": "exercise.py", "line": 28, "func": "main"}))
        out.append(_event(0.001 * index + 0.0005, pid, "proc_start", name=f"Process-{index}", target=target,
                          daemon=pid == monitor, parent=main))
    t = 0.01
    while len(out) < events - len(workers) - 1:
        t += rng.uniform(0.00005, 0.0004)
        pid = rng.choice(workers)
        if pid in producers:
            out.append(_event(t, pid, "q_put", queue="queue-q1", item={"type": "int", "repr": str(len(out)), "value": len(out)},
                              where={**where, "line": 7, "func": "producer"}))
            continue
        out.append(_event(t, pid, "q_get_wait", queue="queue-q1", where={**where, "line": 12}))
        out.append(_event(t + 0.00002, pid, "q_get", queue="queue-q1", item={"type": "int", "repr": "1", "value": 1},
                          where={**where, "line": 12}))
        out.append(_event(t + 0.00004, pid, "acquired", lock="lock-a", kind="Lock", where={**where, "line": 15}))
        out.append(_event(t + 0.00009, pid, "released", lock="lock-a", kind="Lock", where={**where, "line": 15}))
        t += 0.0001
    for pid in workers:
        t += 0.0002
        out.append(_event(t, pid, "proc_exit", code=0))
    out.append(_event(t + 0.001, main, "main_done", waiting=[], daemons=[monitor]))
    out = out[:events]
    labels = {main: "the main process", monitor: "monitor 1 (pid 3)"}
    counters: dict[str, int] = {}
    for pid in workers:
        role = "producer" if pid in producers else "consumer"
        counters[role] = counters.get(role, 0) + 1
        labels[pid] = f"{role} {counters[role]} (pid {pid})"
    procs = [{"pid": pid, "label": labels[pid], "target": labels[pid].split()[0] if pid != main else "__main__",
              "daemon": pid == monitor, "parent": None if pid == main else main, "started": 0.001 * i,
              "exited": next((e["t"] for e in out if e["pid"] == pid and e["ev"] == "proc_exit"), None),
              "code": 0 if pid in workers else None, "spawn_where": None}
             for i, pid in enumerate([main, monitor, *workers])]
    output = {label: {"out": "".join(f"consumed {n}\n" for n in range(300))} for pid, label in labels.items() if pid in consumers}
    output["the main process"] = {"out": "starting\n", "err": "Traceback (most recent call last):\n" + "x" * 20000}
    return Evidence(status="exited", duration=round(t + 0.05, 3), output=output, events=out, processes=procs,
                    files={"out.txt": "1\n" * 3000})


RUN = "ex02/fork/1"


def busy_report(source_dir: Path, processes: int = 8, events: int = 2000) -> Report:
    """One exercise with three checks judged from the same busy run (one failed, pointing at a line)."""
    source = source_dir / "exercise.py"
    source.write_text(STUDENT_SOURCE)
    evidence = busy_evidence(processes, events)
    checks = [
        CheckResult(id="ex02::check_every_item_consumed_once", exercise=2, title="Every item is consumed exactly once",
                    outcome=FAILED, points=0, max_points=4, message="Item 7 was consumed twice, at line 12.",
                    hint="Take each item off the queue once.", expected="7 once", actual="7 twice",
                    locations=[Location("exercise.py", 12, "q.get()")], run=RUN),
        CheckResult(id="ex02::check_program_ends", exercise=2, title="The program ends", outcome=PASSED, points=3,
                    max_points=3, run=RUN),
        CheckResult(id="ex02::check_consumers_stop", exercise=2, title="Consumers stop on a sentinel", outcome=PASSED,
                    points=3, max_points=3, run=RUN),
    ]
    exercise = ExerciseResult(2, "ex02_bench", "A busy producer-consumer run", str(source), checks)
    return Report(seed=1, start_method="fork", submission=str(source_dir), grader_version="bench",
                  command="grader check 2 --seed 1", exercises=[exercise], runs=[RunResult(RUN, "fork", "", evidence)])


def main(argv: list[str] | None = None) -> int:
    """Render the busy report a few times; print the best and median time and the size."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=8)
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-render-") as folder:
        report = busy_report(Path(folder), args.processes, args.events)
        exercise = report.exercises[0]
        timings = []
        page = ""
        for _ in range(args.repeat):
            started = time.perf_counter()
            page = html.render_exercise(report, exercise)
            timings.append(time.perf_counter() - started)
        size = len(page.encode("utf-8"))
    first, median = timings[0], statistics.median(timings[1:] or timings)
    print(f"processes {args.processes}, events {len(report.runs[0].evidence.events)}: "
          f"first render {first:.3f} s (templates compiled), then median {median:.3f} s (target < {TARGET_SECONDS} s); "
          f"size {size / 1000:.0f} KB (target < {TARGET_BYTES // 1000} KB)")
    return 0 if first < TARGET_SECONDS and size < TARGET_BYTES else 1


if __name__ == "__main__":
    sys.exit(main())
