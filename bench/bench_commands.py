"""What the user waits for (issue 16): whole `grader` commands timed from outside, and where one check's
time goes.

1. Every command of the table is run --runs times as a separate process (the installed `grader`, NO_COLOR,
   in a scratch course folder, reports written to a scratch folder): the median wall time, the spread
   (min-max) and the median CPU time (user + system of the command and every process it waited for),
   against the issue's targets.
2. A breakdown of one `grader check N` (--breakdown, default 1), medians over --runs runs of an
   instrumented in-process copy of the command: interpreter start, imports, pytest's own work (set-up,
   collection, teardown), each supervised run (process start before the first probe event, then each trial
   of main() from the probe's step events, then the end of the run), the checks' explaining, the terminal
   output and the HTML report. The instrumentation is a pytest plugin loaded through PYTEST_PLUGINS (it
   only records hook times) and timers around the command's own calls: no code of the grader is replaced.

Usage: python bench/bench_commands.py [--runs 7] [--only list,check1] [--breakdown 1] [--no-breakdown]
                                      [--submission solutions]
Run it on an idle machine: the load average is printed beside the figures. Exit code 0 when every target
of the table is met.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Command:
    """One row of the table: its name, the arguments after `grader`, its target and the exit code it must give."""

    name: str
    args: tuple[str, ...]
    target: float
    code: int = 0


def commands(submission: Path) -> list[Command]:
    """The issue's table: the daily commands on the reference solutions."""
    sub = ("--submission", str(submission))
    return [
        Command("list", ("list",), 0.25),
        Command("hint", ("hint", "1"), 0.25),
        Command("check1", ("check", "1", *sub), 1.5),
        Command("check2", ("check", "2", *sub), 1.5),
        Command("check3", ("check", "3", *sub), 1.5),
        Command("check4", ("check", "4", *sub), 1.5),
        Command("check1234", ("check", "1", "2", "3", "4", *sub), 4.0),
        Command("check1-all", ("check", "1", "--start-method", "all", *sub), 0.0),  # target: 2x check1
    ]


def grader_command() -> list[str]:
    """The installed `grader` next to this Python (a venv), else the one on PATH, else `python -m grader`."""
    beside = Path(sys.executable).with_name("grader")
    if beside.exists():
        return [str(beside)]
    found = shutil.which("grader")
    return [found] if found else [sys.executable, "-m", "grader"]


def scratch_course(folder: Path) -> Path:
    """A student's course folder (exercises/ with the stubs) so that list/hint/check write their state there,
    never into the checkout."""
    (folder / "exercises").mkdir(parents=True)
    for stub in (ROOT / "exercises").glob("ex[0-9][0-9]_*.py"):
        shutil.copyfile(stub, folder / "exercises" / stub.name)
    return folder


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def time_command(argv: list[str], cwd: Path, runs: int, extra_env: dict[str, str] | None = None
                 ) -> tuple[list[float], list[float], set[int]]:
    """Wall and CPU seconds of `runs` runs of argv as a process of its own, and the exit codes seen."""
    walls, cpus, codes = [], [], set()
    env = {**os.environ, "NO_COLOR": "1", **(extra_env or {})}
    for _ in range(runs):
        cpu = _children_cpu()
        started = time.perf_counter()
        done = subprocess.run(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              timeout=900)
        walls.append(time.perf_counter() - started)
        cpus.append(_children_cpu() - cpu)
        codes.add(done.returncode)
    return walls, cpus, codes


def spread(values: list[float]) -> str:
    return f"{min(values):.2f}-{max(values):.2f}"


def report_commands(runs: int, only: set[str], submission: Path, baseline: Path | None = None
                    ) -> tuple[bool, dict[str, float]]:
    """Print the table of whole commands; True when every target is met, and the medians by name. With a
    baseline (a folder holding another version's grader/ package), each run of ours alternates with one of
    it (`python -m grader` with that folder first on PYTHONPATH), so both meet the same load."""
    print(f"== Whole commands, {runs} runs each (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} "
          "cores at start)")
    print(f"{'command':<44} {'wall med':>8} {'min-max':>11} {'cpu med':>8} {'target':>8}")
    ok, medians = True, {}
    with tempfile.TemporaryDirectory(prefix="bench-commands-") as tmp:
        course = scratch_course(Path(tmp) / "course")
        for command in commands(submission):
            if only and command.name not in only:
                continue
            argv = [*grader_command(), *command.args]
            if command.args[0] == "check":
                argv += ["--report-dir", str(Path(tmp) / "feedback")]
            if baseline is not None:
                base_argv = [sys.executable, "-m", "grader", *argv[len(grader_command()):]]
                walls, cpus, codes, base_walls, base_cpus = [], [], set(), [], []
                for _ in range(runs):
                    w, c, k = time_command(argv, course, 1)
                    walls += w
                    cpus += c
                    codes |= k
                    w, c, _ = time_command(base_argv, course, 1, {"PYTHONPATH": str(baseline)})
                    base_walls += w
                    base_cpus += c
                base_line = (f"{'  (baseline)':<44} {statistics.median(base_walls):8.2f} {spread(base_walls):>11} "
                             f"{statistics.median(base_cpus):8.2f}")
            else:
                base_line = ""
                walls, cpus, codes = time_command(argv, course, runs)
            median = medians[command.name] = statistics.median(walls)
            target = command.target or (2 * medians["check1"] if "check1" in medians else 0.0)
            met = (not target or median <= target) and codes == {command.code}
            ok &= met
            shown = " ".join(a if not a.startswith("/") else Path(a).name for a in command.args)
            notes = "" if codes == {command.code} else f"  exit codes {sorted(codes)}"
            print(f"{'grader ' + shown:<44} {median:8.2f} {spread(walls):>11} {statistics.median(cpus):8.2f} "
                  f"{('<=' + format(target, '.2f')) if target else '':>8} {'ok' if met else 'OVER'}{notes}",
                  flush=True)
            if base_line:
                print(base_line, flush=True)
    return ok, medians


# ---- the breakdown of one check --------------------------------------------------------------------------

PLUGIN = "bench_phase_plugin"  # bench/bench_phase_plugin.py, loaded through PYTEST_PLUGINS


def _inner(number: int, submission: str, out: str) -> None:
    """In a child process started by breakdown(): the check command, timed phase by phase; writes JSON."""
    launched = float(os.environ["BENCH_LAUNCHED"])
    phases = {"interpreter": time.time() - launched}
    cpu = {"interpreter": time.process_time()}
    began, cpu_began = time.perf_counter(), time.process_time()
    from grader.commands import cli  # noqa: F401 - what `grader` imports before it parses its arguments

    phases["imports: cli"] = time.perf_counter() - began
    cpu["imports: cli"] = time.process_time() - cpu_began
    began, cpu_began = time.perf_counter(), time.process_time()
    from grader.judging import session
    from grader.render import terminal

    phases["imports: session (pytest), terminal"] = time.perf_counter() - began
    cpu["imports: session (pytest), terminal"] = time.process_time() - cpu_began
    with tempfile.TemporaryDirectory(prefix="bench-breakdown-") as tmp:
        os.environ["BENCH_PHASES_FILE"] = str(Path(tmp) / "stamps.jsonl")
        exercises = session.select([number])
        graded_at, cpu_began = time.perf_counter(), time.process_time()
        report = session.grade(exercises, Path(submission))
        phases["session"] = time.perf_counter() - graded_at
        cpu["session"] = time.process_time() - cpu_began
        stamps = [json.loads(line) for line in (Path(tmp) / "stamps.jsonl").read_text().splitlines()]
        began, cpu_began = time.perf_counter(), time.process_time()
        text = terminal.render(report)
        phases["terminal output"] = time.perf_counter() - began
        cpu["terminal output"] = time.process_time() - cpu_began
        began, cpu_began = time.perf_counter(), time.process_time()
        from grader.render import html

        html.write_reports(report, Path(tmp) / "feedback")
        phases["HTML report (import + write)"] = time.perf_counter() - began
        cpu["HTML report (import + write)"] = time.process_time() - cpu_began
    previous_ends = [graded_at] + [st["unconfigure"] for st in stamps[:-1]]
    hooks = {"before_session": sum(st["sessionstart"] - end for st, end in zip(stamps, previous_ends)),
             "collection": sum(st["collected"] - st["sessionstart"] for st in stamps),
             "checks": sum(st["checks"] for st in stamps)}
    runs = [run["evidence"] for run in report.to_dict().get("runs", []) if run.get("evidence")]  # the report's runs
    Path(out).write_text(json.dumps({"phases": phases, "cpu": cpu, "hooks": hooks, "runs": _runs(runs), "lines": len(text)}))


def _runs(evidences: list[dict]) -> list[dict]:
    """Each distinct supervised run of the report: its duration, and each trial (step) from the probe's events."""
    seen, runs = set(), []
    for evidence in evidences:
        events = evidence.get("events") or []
        key = (evidence.get("duration"), events[0]["t"] if events else None)
        if key in seen or not events:
            continue
        seen.add(key)
        first, last = events[0]["t"], events[-1]["t"]
        steps, opened = [], {}
        for event in events:
            if event["ev"] == "step_start":
                opened = event
            elif event["ev"] == "step_end" and opened:
                steps.append({"label": opened.get("label", ""), "seconds": event["t"] - opened["t"]})
                opened = {}
        runs.append({"duration": evidence["duration"], "probe_span": last - first, "steps": steps})
    return runs


def breakdown(number: int, runs: int, submission: Path) -> None:
    """Print where the time of `grader check NUMBER` goes (medians over `runs` instrumented runs)."""
    samples = []
    with tempfile.TemporaryDirectory(prefix="bench-breakdown-") as tmp:
        course = scratch_course(Path(tmp) / "course")
        for index in range(runs):
            out = Path(tmp) / f"phases-{index}.json"
            env = {**os.environ, "NO_COLOR": "1", "PYTEST_PLUGINS": PLUGIN,
                   "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]),
                   "BENCH_LAUNCHED": repr(time.time())}
            started = time.perf_counter()
            subprocess.run([sys.executable, __file__, "--inner", str(number), str(submission), str(out)], cwd=course,
                           env=env, check=True, timeout=900)
            sample = json.loads(out.read_text())
            sample["wall"] = time.perf_counter() - started
            samples.append(sample)
    med = lambda values: statistics.median(values) if values else 0.0  # noqa: E731
    print(f"\n== Breakdown of `grader check {number}`, median of {runs} instrumented runs (seconds; load average "
          f"{os.getloadavg()[0]:.1f})")
    rows: list[tuple[str, float]] = []
    cpu_of = {name: med([s["cpu"][name] for s in samples]) for name in samples[0]["cpu"]}
    for name in samples[0]["phases"]:
        if name != "session":
            rows.append((name, med([s["phases"][name] for s in samples])))
    hooks = [s["hooks"] for s in samples]
    in_runs = med([sum(r["duration"] for r in s["runs"]) for s in samples])
    explaining = med([h["checks"] for h in hooks])
    session = med([s["phases"]["session"] for s in samples])
    rows[3:3] = [
        ("pytest: before the session (config, plugins)", med([h["before_session"] for h in hooks])),
        ("pytest: collection (imports the check module)", med([h["collection"] for h in hooks])),
        ("supervised runs (all of them)", in_runs),
        ("checks: explaining, after the runs", explaining),
        ("pytest: the rest (fixtures, reports, teardown)", session - med([h["before_session"] for h in hooks])
         - med([h["collection"] for h in hooks]) - in_runs - explaining),
    ]
    print(f"  {'':<50} {'wall':>6} {'cpu':>6} (cpu: of the grader's own process)")
    for name, seconds in rows:
        print(f"  {name:<50} {seconds:6.3f} {format(cpu_of[name], '6.3f') if name in cpu_of else '':>6}")
    print(f"  {'(the whole session, cpu of the grader process)':<50} {'':>6} {cpu_of['session']:6.3f}")
    print(f"  {'whole command (wall, from outside)':<50} {med([s['wall'] for s in samples]):6.3f}")
    for index, run in enumerate(samples[0]["runs"]):
        durations = [s["runs"][index]["duration"] for s in samples if index < len(s["runs"])]
        spans = [s["runs"][index]["probe_span"] for s in samples if index < len(s["runs"])]
        print(f"  run {index + 1}: {med(durations):.3f} s, of which {med(durations) - med(spans):.3f} s before the "
              "first and after the last probe event (process start, settling, collecting)")
        for step_index, step in enumerate(run["steps"]):
            times = [s["runs"][index]["steps"][step_index]["seconds"] for s in samples
                     if index < len(s["runs"]) and step_index < len(s["runs"][index]["steps"])]
            print(f"      trial {step_index + 1} ({step['label']}): {med(times):.3f}")


def main(argv: list[str] | None = None) -> int:
    """Time the table and print the breakdown; exit code 0 when every target of the table is met."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7, help="runs of each command (default 7)")
    parser.add_argument("--only", default="", help="comma-separated row names: " +
                        ",".join(c.name for c in commands(Path("."))))
    parser.add_argument("--breakdown", type=int, default=1, metavar="N", help="the exercise broken down (default 1)")
    parser.add_argument("--no-breakdown", action="store_true")
    parser.add_argument("--no-table", action="store_true")
    parser.add_argument("--submission", type=Path, default=ROOT / "solutions")
    parser.add_argument("--baseline", type=Path, default=None, metavar="DIR",
                        help="also time another version (DIR/grader/, e.g. from `git archive`), alternating runs")
    parser.add_argument("--inner", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.inner:
        _inner(int(args.inner[0]), args.inner[1], args.inner[2])
        return 0
    ok = True
    if not args.no_table:
        ok, _ = report_commands(args.runs, {n for n in args.only.split(",") if n}, args.submission.resolve(),
                                args.baseline)
    if not args.no_breakdown:
        breakdown(args.breakdown, args.runs, args.submission.resolve())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
