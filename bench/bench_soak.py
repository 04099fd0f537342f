"""Zero false failures under a hostile machine (issue 10): every correct fix and reference solution, under
fork, spawn and forkserver, with CPU hogs beside it (3 per core by default) and a TMPDIR of 100 characters.

It prints, per file and start method, how many of N runs failed (a check that did not pass: failed or grader
error, the "machine too busy" one included: honest, but not a pass). Target: 0 failures in at least 30 runs
of each (--runs 30; a smaller N is a short run).

Usage: python bench/bench_soak.py [--exercises 1,2] [--runs N] [--methods fork,spawn,forkserver]
       [--hogs-per-core 3] [--tmpdir-length 100] [-j 2] [--seed S] [--fixes GLOB]
"""
from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_checks import METHODS, ROOT, Task, _chosen, make_pool, run_tasks, select_exercises  # noqa: E402

TARGET_RUNS = 30
HOG = "while True:\n    pass\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exercises", default="", help="comma-separated numbers (default: every one with checks)")
    parser.add_argument("--runs", type=int, default=TARGET_RUNS, help=f"runs per file and method (default {TARGET_RUNS})")
    parser.add_argument("--methods", default=",".join(METHODS), help="start methods (default: all three)")
    parser.add_argument("--hogs-per-core", type=int, default=3, help="CPU hogs per core beside the runs (default 3)")
    parser.add_argument("--tmpdir-length", type=int, default=100, help="characters of the TMPDIR (default 100)")
    parser.add_argument("-j", "--jobs", type=int, default=max(1, (os.cpu_count() or 2) // 2),
                        help="gradings at a time (default: half the cores)")
    parser.add_argument("--seed", type=int, default=None, help="first seed (default: random)")
    parser.add_argument("--fixes", default="*", metavar="GLOB", help="only the correct fixes whose name matches")
    parser.add_argument("--no-solutions", action="store_true", help="skip the reference solutions")
    args = parser.parse_args(argv)
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if not args.methods or set(args.methods) - set(METHODS):
        parser.error(f"--methods: choose among {', '.join(METHODS)}")
    return args


def long_tmpdir(base: Path, length: int) -> Path:
    """A folder whose path is exactly `length` characters long (at least as long as base allows)."""
    head = str(base) + "/"
    path = Path(head + "t" * max(1, length - len(head)))
    path.mkdir(exist_ok=True)
    return path


def start_hogs(count: int) -> list[subprocess.Popen[bytes]]:
    """`count` processes that spin on a core each until killed."""
    return [subprocess.Popen([sys.executable, "-c", HOG], stdin=subprocess.DEVNULL) for _ in range(count)]


def stop_hogs(hogs: list[subprocess.Popen[bytes]]) -> None:
    for hog in hogs:
        hog.kill()
    for hog in hogs:
        hog.wait()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(2**31)
    seeds = iter(range(seed, seed + 10**9))
    tasks: list[Task] = []
    for exercise in select_exercises(args.exercises):
        files = _chosen(exercise, "correct_*.py", args.fixes)
        if not args.no_solutions:
            files.append(ROOT / "solutions" / exercise.filename)
        for path in files:
            for method in args.methods:
                tasks += [Task(exercise.number, str(path), method, next(seeds)) for _ in range(args.runs)]
    hog_count = args.hogs_per_core * (os.cpu_count() or 1)
    with tempfile.TemporaryDirectory(prefix="bench-soak-") as tmp:
        tmpdir = long_tmpdir(Path(tmp), args.tmpdir_length)
        print(f"bench_soak: {len(tasks)} gradings, -j {args.jobs}, {hog_count} CPU hogs, TMPDIR of "
              f"{len(str(tmpdir))} characters, first seed {seed}", flush=True)
        saved = os.environ.get("TMPDIR")
        os.environ["TMPDIR"] = str(tmpdir)  # the workers (and so the grader's runs) start with it
        hogs = start_hogs(hog_count)
        try:
            with make_pool(args.jobs) as pool:
                outcomes = run_tasks(pool, tasks)
        finally:
            stop_hogs(hogs)
            if saved is None:
                del os.environ["TMPDIR"]
            else:
                os.environ["TMPDIR"] = saved
    failures: dict[tuple[str, str], list] = defaultdict(list)
    runs: dict[tuple[str, str], int] = defaultdict(int)
    for outcome in outcomes:
        key = (outcome.task.fix, outcome.task.method)
        runs[key] += 1
        if outcome.failed or outcome.errors or outcome.crash:
            failures[key].append(outcome)
    ok = True
    print(f"\n{'file':<48} " + "  ".join(f"{m:>11}" for m in args.methods))
    for fix in sorted({t.fix for t in tasks}):
        cells = []
        for method in args.methods:
            failed = len(failures[(fix, method)])
            ok &= failed == 0
            cells.append(f"{failed:>3}/{runs[(fix, method)]:<4}{'!' if failed else ' '}")
        print(f"{str(Path(fix).relative_to(ROOT)):<48} " + "  ".join(f"{c:>11}" for c in cells))
    for key, bad in failures.items():
        for outcome in bad[:3]:
            task = outcome.task
            print(f"  failed: {Path(task.fix).name} {task.method} seed {task.seed}: failed {outcome.failed} "
                  f"errors {outcome.errors} {outcome.crash}")
    enough = args.runs >= TARGET_RUNS
    print(f"\ntarget: 0 failures in >= {TARGET_RUNS} runs of each: "
          + ("met" if ok and enough else ("no failure, but fewer runs than the target" if ok else "NOT met")))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
