"""The grader beside a plain harness, on every wrong fix of the corpus (issue 10).

The plain harness is what a course without this grader would do: main() in a subprocess, under fork, with
no injected delays, no time scaling, no start gate, and the same behavioural assertions (the same check
modules, run with GRADER_BENCH_PLAIN set). For each wrong fix it prints, per start method, how often the
grader caught it and how often the plain harness did (under fork). Targets: the grader catches each wrong
fix in >= 99% of runs under each start method, and never less often than the plain harness.

Usage: python bench/bench_peer.py [--exercises 1,2] [--runs R] [--plain-runs R] [--methods fork,spawn]
       [-j 2] [--seed S] [--fixes GLOB]
"""
from __future__ import annotations

import argparse
import os
import random
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_checks import (  # noqa: E402 - a sibling script, not a package
    METHODS, ROOT, Outcome, Task, _chosen, make_pool, run_tasks, select_exercises,
)

TARGET = 0.99


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exercises", default="", help="comma-separated numbers (default: every one with checks)")
    parser.add_argument("--runs", type=int, default=20, help="grader runs of each wrong fix per method (default 20)")
    parser.add_argument("--plain-runs", type=int, default=10, help="plain harness runs per wrong fix (default 10)")
    parser.add_argument("--methods", default=",".join(METHODS), help="start methods of the grader (default: all)")
    parser.add_argument("-j", "--jobs", type=int, default=max(1, (os.cpu_count() or 2) // 2),
                        help="gradings at a time (default: half the cores)")
    parser.add_argument("--seed", type=int, default=None, help="first seed (default: random)")
    parser.add_argument("--fixes", default="*", metavar="GLOB", help="only the wrong fixes whose name matches one of these comma-separated globs (default: all)")
    args = parser.parse_args(argv)
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if not args.methods or set(args.methods) - set(METHODS):
        parser.error(f"--methods: choose among {', '.join(METHODS)}")
    return args


def _caught(outcome: Outcome) -> bool:
    """A run catches the fix when a check fails (a grader error or a crash catches nothing)."""
    return bool(outcome.failed) and not outcome.crash


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(2**31)
    seeds = iter(range(seed, seed + 10**9))
    exercises = select_exercises(args.exercises)
    grader_tasks: list[Task] = []
    plain_tasks: list[Task] = []
    for exercise in exercises:
        fixes = {f for pattern in args.fixes.split(",") for f in _chosen(exercise, "wrong_*.py", pattern.strip())}
        for fix in sorted(fixes):
            for method in args.methods:
                grader_tasks += [Task(exercise.number, str(fix), method, next(seeds)) for _ in range(args.runs)]
            plain_tasks += [Task(exercise.number, str(fix), "fork", next(seeds)) for _ in range(args.plain_runs)]
    print(f"bench_peer: {len(grader_tasks)} grader runs, {len(plain_tasks)} plain runs, -j {args.jobs}, "
          f"first seed {seed}", flush=True)
    with make_pool(args.jobs) as pool:
        grader = run_tasks(pool, grader_tasks)
    os.environ["GRADER_BENCH_PLAIN"] = "1"  # inherited by the next pool's workers only
    try:
        with make_pool(args.jobs) as pool:
            plain = run_tasks(pool, plain_tasks)
    finally:
        del os.environ["GRADER_BENCH_PLAIN"]
    caught: dict[tuple[str, str], list[bool]] = defaultdict(list)
    for outcome in grader:
        caught[(outcome.task.fix, outcome.task.method)].append(_caught(outcome))
    plain_caught: dict[str, list[bool]] = defaultdict(list)
    for outcome in plain:
        plain_caught[outcome.task.fix].append(_caught(outcome))
    ok = True
    header = "  ".join(f"{m:>11}" for m in args.methods)
    print(f"\n{'wrong fix':<44} {header}  {'plain (fork)':>12}")
    for fix in sorted({t.fix for t in grader_tasks}):
        plain_rate = sum(plain_caught[fix]) / max(1, len(plain_caught[fix]))
        cells = []
        for method in args.methods:
            runs = caught[(fix, method)]
            rate = sum(runs) / max(1, len(runs))
            bad = rate < TARGET or rate < plain_rate
            ok &= not bad
            cells.append(f"{sum(runs):>4}/{len(runs):<4}{'!' if bad else ' ':>2}")
        name = str(Path(fix).relative_to(ROOT / "tests" / "fixes"))
        print(f"{name:<44} {'  '.join(f'{c:>11}' for c in cells)}  {sum(plain_caught[fix]):>6}/{len(plain_caught[fix]):<5}")
    misses = [o for o in grader if not _caught(o)]
    for outcome in misses[:20]:
        task = outcome.task
        print(f"  missed: {Path(task.fix).name} {task.method} seed {task.seed}"
              + (f" (errors: {outcome.errors})" if outcome.errors else "") + (f" crash: {outcome.crash}" if outcome.crash else ""))
    print(f"\ntarget: every cell >= {TARGET:.0%} and never below the plain harness ('!' marks a miss): "
          + ("met" if ok else "NOT met"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
