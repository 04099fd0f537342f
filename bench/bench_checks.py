"""Speed and detection of the checks (issue 2). For each exercise whose check module exists it prints:

- the median wall time of `grader check N` (the installed command, a whole process timed from outside) on
  the solution and on the stub, over --timing-runs runs (default 5), with the spread (min-max) and the CPU
  time, and of one `grader check 1 2 3 4`; then the breakdown of the first exercise's check (interpreter,
  imports, pytest, each run and trial, explaining, reports: bench_commands.py, which also times the other
  commands of issue 16: `python bench/bench_commands.py`);
- the detection rate of each wrong fix (tests/fixes/exNN/wrong_*.py) over --runs runs (default 50) under
  each start method of --methods: a run detects the fix when at least one check fails;
- the failure count of each correct fix (tests/fixes/exNN/correct_*.py) over --correct-runs runs
  (default 200, spread evenly over the methods): a run fails when any check does not pass.

Targets are printed beside the figures: at most 1.5 s per exercise on the solution and 4 s for all four;
every wrong fix detected in at least 99% of runs; 0 failures of correct fixes. Exit code 0 when every
target is met. Gradings run in-process (grader.judging.session.grade), each in a fresh worker process forked from a
preloaded server, -j at a time; every run has its own seed, printed with the misses so they replay.

Usage: python bench/bench_checks.py [--exercises 1,3] [--quick] [--runs R] [--correct-runs R]
       [--timing-runs R] [--methods fork,spawn,forkserver] [-j 2] [--seed S] [--no-timing] [--no-fixes]
       [--fixes GLOB]
"""
from __future__ import annotations

import argparse
import concurrent.futures
import fnmatch
import importlib.util
import multiprocessing
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import bench_commands  # beside this file: whole commands timed from outside, and one check's breakdown

ROOT = Path(__file__).resolve().parent.parent
FIXES = ROOT / "tests" / "fixes"
METHODS = ("fork", "spawn", "forkserver")
SOLUTION_TARGET = 1.5  # seconds per exercise, solution
ALL_TARGET = 4.0  # seconds, all four exercises in one command (issue 16)
FIRST_FOUR = (1, 2, 3, 4)  # the exercises of issue 2's "all four" target
DETECTION_TARGET = 0.99
QUICK = {"timing_runs": 2, "runs": 4, "correct_runs": 3}
DEFAULTS = {"timing_runs": 5, "runs": 50, "correct_runs": 200}


@dataclass
class ExerciseFiles:
    """What the bench needs of an exercise: its number, its file name and where its files are."""

    number: int
    filename: str

    @property
    def fixes(self) -> Path:
        return FIXES / f"ex{self.number:02d}"


@dataclass(frozen=True)
class Task:
    """One grading: a fix file as the exercise's submission, under one start method, with one seed."""

    number: int
    fix: str
    method: str
    seed: int


@dataclass
class Outcome:
    """What one grading gave: the checks that failed, those that errored, or the worker's own crash."""

    task: Task
    failed: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    crash: str = ""
    seconds: float = 0.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line; --quick lowers every run count that was not given explicitly."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exercises", default="", help="comma-separated numbers (default: every one with checks)")
    parser.add_argument("--quick", action="store_true",
                        help=f"a smoke run: {', '.join(f'{k}={v}' for k, v in QUICK.items())} unless given")
    parser.add_argument("--timing-runs", type=int, default=None, help="runs of `grader check` timed (default 5)")
    parser.add_argument("--runs", type=int, default=None, help="runs of each wrong fix per method (default 50)")
    parser.add_argument("--correct-runs", type=int, default=None, help="runs of each correct fix (default 200)")
    parser.add_argument("--methods", default=",".join(METHODS), help="start methods (default: all three)")
    parser.add_argument("-j", "--jobs", type=int, default=2, help="gradings at a time (default 2)")
    parser.add_argument("--seed", type=int, default=None, help="first seed of the fix runs (default: random)")
    parser.add_argument("--no-timing", action="store_true", help="skip the timing of `grader check`")
    parser.add_argument("--no-fixes", action="store_true", help="skip the wrong and correct fixes")
    parser.add_argument("--fixes", default="*", metavar="GLOB",
                        help="only the fixes whose name matches, e.g. 'wrong_no_join*' (default: every one)")
    args = parser.parse_args(argv)
    for key, default in DEFAULTS.items():
        if getattr(args, key) is None:
            setattr(args, key, QUICK[key] if args.quick else default)
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in args.methods if m not in METHODS]
    if unknown or not args.methods:
        parser.error(f"--methods: unknown {unknown}; choose among {', '.join(METHODS)}")
    return args


def select_exercises(wanted: str) -> list[ExerciseFiles]:
    """The exercises of the course whose check module exists, optionally only those numbered in `wanted`."""
    from grader.course import load_course

    numbers = {int(n.strip().removeprefix("ex")) for n in wanted.split(",") if n.strip()}
    found = []
    for exercise in load_course():
        if numbers and exercise.number not in numbers:
            continue
        if importlib.util.find_spec(exercise.checks) is None:
            print(f"ex{exercise.number:02d}: no check module {exercise.checks} yet: skipped")
            continue
        found.append(ExerciseFiles(exercise.number, exercise.filename))
    return found


# ---- timing of the installed command -----------------------------------------------------------------

def grader_command() -> list[str]:
    """The installed `grader` next to this Python (a venv), else the one on PATH, else `python -m grader`."""
    beside = Path(sys.executable).with_name("grader")
    if beside.exists():
        return [str(beside)]
    found = shutil.which("grader")
    return [found] if found else [sys.executable, "-m", "grader"]


def time_check(numbers: list[int], submission: Path, runs: int) -> tuple[float, list[int], str]:
    """Median wall time of `grader check NUMBERS --submission DIR` over `runs` runs (each a whole process,
    timed from outside), the exit codes, and the spread (min-max) and median CPU as text."""
    with tempfile.TemporaryDirectory(prefix="bench-checks-") as tmp:
        course = bench_commands.scratch_course(Path(tmp) / "course")
        command = [*grader_command(), "check", *map(str, numbers), "--submission", str(submission),
                   "--report-dir", str(Path(tmp) / "feedback")]
        walls, cpus, codes = bench_commands.time_command(command, course, runs)
    spread = f"{bench_commands.spread(walls)} s, cpu {statistics.median(cpus):.2f} s"
    return statistics.median(walls), sorted(codes), spread


def report_timing(exercises: list[ExerciseFiles], runs: int) -> bool:
    """Print the timing table, and the breakdown of the first exercise's check; True when the solution
    targets are met."""
    print(f"\n== Speed: median of {runs} run(s) of `grader check N`, each a whole process (load average now "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
    print(f"{'exercise':<14} {'solution s':>10} {'target':>7} {'':>4} {'stub s':>7}  solution min-max, cpu; notes")
    ok = True
    for exercise in exercises:
        solution, solution_codes, solution_spread = time_check([exercise.number], ROOT / "solutions", runs)
        stub, stub_codes, _ = time_check([exercise.number], ROOT / "exercises", runs)
        notes = [solution_spread]
        if set(solution_codes) != {0}:
            notes.append(f"solution exit codes {solution_codes} (expected 0)")
        if set(stub_codes) != {1}:
            notes.append(f"stub exit codes {stub_codes} (expected 1)")
        met = solution <= SOLUTION_TARGET and len(notes) == 1
        ok &= met
        print(f"{'ex%02d' % exercise.number:<14} {solution:10.2f} {'<=' + str(SOLUTION_TARGET):>7} "
              f"{'ok' if met else 'OVER':>4} {stub:7.2f}  {'; '.join(notes)}")
    first_four = [e.number for e in exercises if e.number in FIRST_FOUR]
    if len(first_four) > 1:
        together, codes, together_spread = time_check(first_four, ROOT / "solutions", runs)
        applies = len(first_four) == len(FIRST_FOUR)
        met = together <= ALL_TARGET and set(codes) == {0}
        ok &= met or not applies
        verdict = ("ok" if met else "OVER") if applies else "(the target is for all four)"
        label = "ex" + "+".join(f"{n:02d}" for n in first_four)
        print(f"{label:<14} {together:10.2f} {'<=' + str(ALL_TARGET) if applies else '':>7} {verdict:>4}  "
              f"(one `grader check` of them together) {together_spread}")
    if exercises:
        bench_commands.breakdown(exercises[0].number, runs, ROOT / "solutions")
    return ok


# ---- the fixes, graded in worker processes -------------------------------------------------------------

def grade_task(task: Task) -> Outcome:
    """In a worker: grade one fix file as the submission of its exercise (never raises)."""
    started = time.monotonic()
    outcome = Outcome(task)
    try:
        from grader.judging import session
        from grader.course import find_exercise
        from grader.results import ERROR, FAILED

        exercise = find_exercise(task.number)
        with tempfile.TemporaryDirectory(prefix="bench-fix-") as tmp:
            shutil.copyfile(task.fix, Path(tmp) / exercise.filename)
            report = session.grade([exercise], Path(tmp), seed=task.seed, start_method=task.method)
        for check in report.all_checks():
            name = check.id.split("::", 1)[1]
            if check.outcome == FAILED:
                outcome.failed.append(name)
            elif check.outcome == ERROR:
                outcome.errors.append(name)
    except BaseException as exc:  # noqa: BLE001 - a broken worker is a figure of the bench, not its end
        outcome.crash = f"{type(exc).__name__}: {exc}"
    outcome.seconds = time.monotonic() - started
    return outcome


def make_pool(jobs: int) -> concurrent.futures.ProcessPoolExecutor:
    """Workers forked from a server that has the grader imported: a fresh process per grading, quickly."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["grader.judging.session", "grader.judging.harness", "grader.running.runner"])
    return concurrent.futures.ProcessPoolExecutor(max_workers=jobs, mp_context=context, max_tasks_per_child=1)


def run_tasks(pool: concurrent.futures.ProcessPoolExecutor, tasks: list[Task]) -> list[Outcome]:
    """Grade every task, printing a dot per grading to stderr."""
    outcomes = []
    futures = [pool.submit(grade_task, task) for task in tasks]
    try:
        for future in concurrent.futures.as_completed(futures):
            outcomes.append(future.result())
            print(".", end="", file=sys.stderr, flush=True)
    except KeyboardInterrupt:  # do not wait for the gradings still queued
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    print(file=sys.stderr)
    return outcomes


def replay(task: Task, exercise: ExerciseFiles) -> str:
    """How to replay one grading by hand."""
    return (f"cp {Path(task.fix).relative_to(ROOT)} DIR/{exercise.filename} && grader check {task.number} "
            f"--submission DIR --seed {task.seed} --start-method {task.method}")


def report_wrong(exercise: ExerciseFiles, outcomes: list[Outcome], methods: list[str], runs: int) -> bool:
    """Print the detection rate of each wrong fix under each method; True when every rate meets the target."""
    print(f"\n-- ex{exercise.number:02d}: wrong fixes, detected (a check failed) in R={runs} runs per method "
          f"(target >= {DETECTION_TARGET:.0%})")
    ok = True
    by_fix: dict[str, list[Outcome]] = {}
    for outcome in outcomes:
        by_fix.setdefault(outcome.task.fix, []).append(outcome)
    for fix in sorted(by_fix):
        cells, misses = [], []
        for method in methods:
            mine = [o for o in by_fix[fix] if o.task.method == method]
            detected = [o for o in mine if o.failed]
            rate = len(detected) / len(mine)
            ok &= rate >= DETECTION_TARGET
            cells.append(f"{method} {len(detected)}/{len(mine)} {rate:6.1%}{'' if rate >= DETECTION_TARGET else ' LOW'}")
            misses += [o for o in mine if not o.failed]
        usual = Counter(", ".join(o.failed) for o in by_fix[fix] if o.failed).most_common(1)
        print(f"{Path(fix).stem:<32} {' | '.join(cells)}" + (f"  (usually fails: {usual[0][0]})" if usual else ""))
        for miss in misses[:3]:
            why = miss.crash or (f"grader errors in {', '.join(miss.errors)}" if miss.errors else "every check passed")
            print(f"    missed ({why}): {replay(miss.task, exercise)}")
    return ok


def report_correct(exercise: ExerciseFiles, outcomes: list[Outcome], runs: int) -> bool:
    """Print the failures of each correct fix; True when there are none."""
    print(f"\n-- ex{exercise.number:02d}: correct fixes, failures in R={runs} runs each, spread over the methods "
          "(target 0)")
    ok = True
    by_fix: dict[str, list[Outcome]] = {}
    for outcome in outcomes:
        by_fix.setdefault(outcome.task.fix, []).append(outcome)
    for fix in sorted(by_fix):
        bad = [o for o in by_fix[fix] if o.failed or o.errors or o.crash]
        ok &= not bad
        split = Counter(o.task.method for o in bad)
        detail = f" ({', '.join(f'{m} {n}' for m, n in split.items())})" if bad else ""
        print(f"{Path(fix).stem:<32} {len(bad)}/{len(by_fix[fix])} failed{detail}{'' if not bad else '  FAIL'}")
        for failure in bad[:3]:
            why = failure.crash or ", ".join(failure.failed + failure.errors)
            print(f"    {why}: {replay(failure.task, exercise)}")
    return ok


def _chosen(exercise: ExerciseFiles, kind: str, pattern: str) -> list[Path]:
    """The exercise's fixes of one kind (wrong_*.py, correct_*.py) whose file name matches --fixes."""
    return [p for p in sorted(exercise.fixes.glob(kind)) if fnmatch.fnmatch(p.stem, pattern.removesuffix(".py"))]


def fix_tasks(exercise: ExerciseFiles, args: argparse.Namespace, seeds: Iterator[int]) -> tuple[list[Task], list[Task]]:
    """Every grading of the exercise's fixes: R per wrong fix and method, R' per correct fix over the methods."""
    wrong = [Task(exercise.number, str(path), method, next(seeds))
             for path in _chosen(exercise, "wrong_*.py", args.fixes) for method in args.methods
             for _ in range(args.runs)]
    correct = [Task(exercise.number, str(path), args.methods[i % len(args.methods)], next(seeds))
               for path in _chosen(exercise, "correct_*.py", args.fixes) for i in range(args.correct_runs)]
    return wrong, correct


def bench_fixes(exercises: list[ExerciseFiles], args: argparse.Namespace) -> bool:
    """Grade every fix of every exercise and print the tables; True when every target is met."""
    first_seed = args.seed if args.seed is not None else int.from_bytes(os.urandom(3), "big")
    seeds = iter(range(first_seed, first_seed + 10**9))
    plans = [(e, *fix_tasks(e, args, seeds)) for e in exercises]
    total = sum(len(w) + len(c) for _, w, c in plans)
    print(f"\n== Fixes: {total} gradings, {args.jobs} at a time, methods {', '.join(args.methods)}, seeds from "
          f"{first_seed}")
    ok = True
    started = time.monotonic()
    with make_pool(args.jobs) as pool:
        for exercise, wrong, correct in plans:
            if not wrong and not correct:
                print(f"\n-- ex{exercise.number:02d}: no fixes in {exercise.fixes.relative_to(ROOT)} yet")
                continue
            began = time.monotonic()
            outcomes = run_tasks(pool, wrong + correct)
            print(f"-- ex{exercise.number:02d}: {len(outcomes)} gradings in {time.monotonic() - began:.0f} s")
            wrong_fixes = {t.fix for t in wrong}
            if wrong:
                ok &= report_wrong(exercise, [o for o in outcomes if o.task.fix in wrong_fixes], args.methods,
                                   args.runs)
            if correct:
                ok &= report_correct(exercise, [o for o in outcomes if o.task.fix not in wrong_fixes],
                                     args.correct_runs)
    print(f"\n{total} gradings in {time.monotonic() - started:.0f} s")
    return ok


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; exit code 0 when every target printed is met, 1 otherwise."""
    args = parse_args(argv)
    exercises = select_exercises(args.exercises)
    if not exercises:
        print("no exercise with checks selected")
        return 1
    ok = True
    if not args.no_timing:
        ok &= report_timing(exercises, args.timing_runs)
    if not args.no_fixes:
        ok &= bench_fixes(exercises, args)
    print(f"\nevery target met: {'yes' if ok else 'NO'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
