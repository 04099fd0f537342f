"""Batch throughput: `grader batch` over a synthetic class of 40 submissions x 4 exercises, a realistic mix
built from the fixture class (tests/fixtures/class): solutions as folders and zips, stubs, wrong fixes, a crash,
a partial hand-in and 4 that hang (2 wait forever on a lock: a deadlock the grader calls early; 2 poll for a
file that never comes: they run until the run's timeout). Prints the wall time with -j 1 and -j 2, the
speed-up, and the per-submission overhead beyond the checks themselves ((wall time with -j 1 - the time
spent in the checks) / submissions). Targets on a 2-core machine: -j 2 within 90 s, -j 2 at least 1.7x
faster than -j 1, overhead under 0.3 s.

The class is graded under one start method, fork, by default: `grader batch` itself grades under all three
by default (each exercise three times), and `--start-method all` times that.

`--engine ray` times `grader batch --engine ray` on a Ray cluster of this machine against the local engine: the
local engine with -j 1 first (the baseline), then the Ray engine on a cluster of 1 CPU, then of 2 CPUs, each
cluster started before its batch (its start and stop timed apart: a batch pays them once, a standing cluster
never). Prints the overhead per grading of the Ray engine ((Ray wall with 1 CPU - local wall with -j 1) /
submissions; target <= 0.2 s) and the speed-up from 1 to 2 Ray workers; the README turns them into the
throughput of N nodes.

Usage: python bench/bench_batch.py [--students 40] [--jobs 1,2] [--start-method fork|spawn|forkserver|all]
                                   [--engine local|ray]"""
from __future__ import annotations

import argparse
import io
import logging
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

from grader.commands import batch
from grader.gradebook import workers

ROOT = Path(__file__).resolve().parent.parent
CLASS = ROOT / "tests" / "fixtures" / "class"
# (fixture entry, how many of the 40): hangs are frank (polling: runs to the timeout) and judy (a deadlock).
MIX = [("alice", 12), ("carol.zip", 4), ("laura.zip", 4), ("bob", 6), ("heidi", 4), ("ivan", 3), ("grace", 2),
       ("dave.zip", 1), ("frank", 2), ("judy", 2)]
HANGS = {"frank", "judy"}
LAB = [1, 2, 3, 4]


def build_class(folder: Path, students: int) -> list[str]:
    """`students` submissions in the proportions of MIX (scaled), interleaved as in a real class list (the
    hangs spread out, not all last), named s01_alice, s02_carol..."""
    total = sum(n for _, n in MIX)
    counts = {entry: max(1, round(n * students / total)) for entry, n in MIX}
    plan: list[str] = []
    while len(plan) < students and any(counts.values()):
        for entry, _ in MIX:
            if counts[entry] and len(plan) < students:
                plan.append(entry)
                counts[entry] -= 1
    names = []
    for index, entry in enumerate(plan, 1):
        source = CLASS / entry
        name = f"s{index:02d}_{entry.removesuffix('.zip')}"
        if source.is_dir():
            shutil.copytree(source, folder / name)
        else:
            shutil.copyfile(source, folder / f"{name}.zip")
        names.append(name)
    return names


def timed_batch(submissions: Path, out: Path, jobs: int, start_method: str = "fork", engine: str = "local"
                ) -> tuple[float, batch.BatchSummary]:
    """One batch into a fresh gradebook, and its wall time."""
    options = batch.BatchOptions(submissions=submissions, out=out, numbers=LAB, workers=jobs,
                                 start_method=start_method, engine=engine)
    started = time.monotonic()
    summary = batch.run_batch(options, progress_stream=io.StringIO(), terminal=False)
    return time.monotonic() - started, summary


def cpu_seconds() -> float:
    """CPU used so far by this process and every process it waited for (the workers and student runs): on
    a shared machine it moves far less with the load than the wall time does."""
    return sum(u.ru_utime + u.ru_stime for u in (resource.getrusage(resource.RUSAGE_SELF),
                                                   resource.getrusage(resource.RUSAGE_CHILDREN)))


def main() -> int:
    """Time the batch with each -j and print the figures against their targets."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=40)
    parser.add_argument("--jobs", default="1,2", help="the -j values to time, e.g. 1,2")
    parser.add_argument("--start-method", default="fork", choices=["fork", "spawn", "forkserver", "all"])
    parser.add_argument("--engine", default="local", choices=["local", "ray"])
    args = parser.parse_args()
    if args.engine == "ray":
        return bench_ray(args.students, args.start_method)
    jobs = [int(j) for j in args.jobs.split(",")]
    print(f"cpus {workers.cpu_count()}, load average {os.getloadavg()[0]:.1f} at start")
    walls: dict[int, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp:
        submissions = Path(tmp) / "class"
        submissions.mkdir()
        names = build_class(submissions, args.students)
        hangs = sum(name.split("_", 1)[1] in HANGS for name in names)
        print(f"class: {len(names)} submissions x {len(LAB)} exercises, {hangs} of them hang; start method "
              f"{args.start_method}")
        grades: dict[int, str] = {}
        for j in jobs:
            cpu = cpu_seconds()
            wall, summary = timed_batch(submissions, Path(tmp) / f"out-j{j}", j, args.start_method)
            cpu = cpu_seconds() - cpu
            walls[j] = wall
            grades[j] = (Path(tmp) / f"out-j{j}" / "grades.csv").read_text()
            checks = sum(s.duration for s in summary.book.students)
            overhead = (wall - checks / j) / len(names) if j == 1 else None
            extra = "" if overhead is None else f", overhead per submission {overhead:.3f} s (checks {checks:.1f} s)"
            print(f"-j {j}: {wall:6.1f} s wall, {cpu:6.1f} s cpu, {len(summary.graded)} graded, {len(summary.problems)} without a "
                  f"grade{extra}", flush=True)
        same = len(set(grades.values())) == 1
        print(f"the same gradebook with every -j: {same}")
    if 1 in walls and 2 in walls:
        print(f"speed-up -j 2 over -j 1: {walls[1] / walls[2]:.2f}x (target >= 1.7); -j 2 wall {walls[2]:.1f} s "
              f"(target <= 90 s)")
    print(f"load average {os.getloadavg()[0]:.1f} at the end")
    return 0 if same else 1


def bench_ray(students: int, start_method: str) -> int:
    """The Ray engine against the local one: overhead per grading, speed-up from 1 to 2 Ray workers."""
    import ray

    from grader.gradebook import ray_engine

    print(f"cpus {workers.cpu_count()}, load average {os.getloadavg()[0]:.1f} at start; ray {ray.__version__}")
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp:
        submissions = Path(tmp) / "class"
        submissions.mkdir()
        names = build_class(submissions, students)
        print(f"class: {len(names)} submissions x {len(LAB)} exercises; start method {start_method}")
        local, summary = timed_batch(submissions, Path(tmp) / "out-local", 1, start_method)
        checks = sum(s.duration for s in summary.book.students)
        print(f"local -j 1: {local:6.1f} s wall ({checks:.1f} s in the gradings)", flush=True)
        grades = {"local": (Path(tmp) / "out-local" / "grades.csv").read_text()}
        walls, beyond = {}, {"local": (local - checks) / len(names)}
        for cpus in (1, 2):  # the cluster started by the bench: the engine uses it as it is (ray.is_initialized)
            temp = tempfile.mkdtemp(prefix="grader-ray-", dir=ray_engine.short_temp_root(ray_engine.RAY_ROOM))
            started = time.monotonic()
            ray.init(address="local", num_cpus=cpus, _temp_dir=temp, include_dashboard=False, log_to_driver=False,
                     logging_level=logging.ERROR)
            start = time.monotonic() - started
            try:
                walls[cpus], summary = timed_batch(submissions, Path(tmp) / f"out-ray{cpus}", cpus, start_method, "ray")
            finally:
                started = time.monotonic()
                ray.shutdown()
                stop = time.monotonic() - started
                shutil.rmtree(temp, ignore_errors=True)
            grades[f"ray{cpus}"] = (Path(tmp) / f"out-ray{cpus}" / "grades.csv").read_text()
            ray_checks = sum(s.duration for s in summary.book.students)
            beyond[f"ray{cpus}"] = (walls[cpus] - ray_checks / cpus) / len(names)
            print(f"ray, {cpus} cpu(s): {walls[cpus]:6.1f} s wall, {len(summary.graded)} graded, "
                  f"{len(summary.problems)} without a grade ({ray_checks:.1f} s in the gradings); cluster start "
                  f"{start:.1f} s, stop {stop:.1f} s",
                  flush=True)
        same = len(set(grades.values())) == 1
        print(f"the same gradebook with both engines: {same}")
        for run, text in grades.items():  # the rows that differ, to tell a flaky verdict from an engine's fault
            rows = set(text.splitlines()) - set(grades["local"].splitlines())
            for row in sorted(rows):
                print(f"  {run} differs from local: {row}  (local: "
                      f"{[r for r in grades['local'].splitlines() if r.split(',')[0] == row.split(',')[0]]})")
            if rows:
                keep = Path(tempfile.gettempdir()) / f"bench-batch-{run}-{os.getpid()}"
                shutil.copytree(Path(tmp) / f"out-{run}", keep)
                shutil.copytree(Path(tmp) / "out-local", keep.with_name(keep.name + "-local"), dirs_exist_ok=True)
                print(f"  kept: {keep} and {keep.name}-local")
    overhead = (walls[1] - local) / len(names)
    print(f"overhead per grading of the ray engine: {overhead:+.3f} s of wall time (target <= 0.2 s); grading "
          f"itself {local / len(names):.2f} s per submission at -j 1")
    print(f"time per submission beyond its grading (wall - time in the gradings / workers): local -j 1 "
          f"{beyond['local']:.3f} s, ray 1 cpu {beyond['ray1']:.3f} s, ray 2 cpus {beyond['ray2']:.3f} s: the ray "
          f"engine's own overhead {beyond['ray1'] - beyond['local']:+.3f} s per grading (steady against the load)")
    print(f"speed-up from 1 to 2 ray workers: {walls[1] / walls[2]:.2f}x")
    print(f"load average {os.getloadavg()[0]:.1f} at the end")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
