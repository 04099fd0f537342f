"""Prints the time from saving an exercise file to its verdict in `grader watch`, beyond the check's own
time (target: at most 1 s), and the check time of every exercise's solution.
Usage: python bench/bench_watch.py [--saves 5]"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FOOTER = re.compile(r"(\d+) passed, (\d+) failed.*seed \d+, ([\d.]+) s")


def watch_latency(saves: int) -> list[float]:
    """Overheads (s) of `grader watch 1` between a save and the printed verdict, minus the check's time."""
    with tempfile.TemporaryDirectory() as tmp:
        course = Path(tmp) / "course"
        subprocess.run(["git", "clone", "-q", str(ROOT), str(course)], check=True)
        target = course / "exercises" / "ex01_oversold_ticket.py"
        versions = [(ROOT / "solutions" / target.name).read_text(), target.read_text()]
        env = {**os.environ, "NO_COLOR": "1", "PYTHONUNBUFFERED": "1"}
        watcher = subprocess.Popen([sys.executable, "-m", "grader", "watch"], cwd=course, env=env,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        overheads = []
        try:
            assert "watching" in watcher.stdout.readline()
            for index in range(saves):
                time.sleep(0.5)
                saved = time.monotonic()
                target.write_text(versions[index % 2])
                while True:
                    line = watcher.stdout.readline()
                    match = FOOTER.search(line)
                    if match:
                        overheads.append(time.monotonic() - saved - float(match[3]))
                        break
        finally:
            watcher.terminate()
            watcher.wait(timeout=30)
        return overheads


def check_times() -> list[tuple[str, float]]:
    """Wall time of `grader check N` on each solution (one run each, the installed command)."""
    from grader.course import load_course

    times = []
    for exercise in load_course():
        if not (ROOT / "solutions" / exercise.filename).exists():
            continue
        started = time.monotonic()
        subprocess.run([sys.executable, "-m", "grader", "check", str(exercise.number), "--submission",
                        str(ROOT / "solutions"), "--report-dir", tempfile.gettempdir()],
                       capture_output=True, cwd=ROOT)
        times.append((exercise.name, time.monotonic() - started))
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--saves", type=int, default=5)
    args = parser.parse_args()
    print(f"load average: {os.getloadavg()[0]:.1f}")
    overheads = watch_latency(args.saves)
    print(f"watch mode: save -> verdict beyond the check itself: median {statistics.median(overheads):.2f} s, "
          f"max {max(overheads):.2f} s over {len(overheads)} saves (target <= 1 s)")
    for name, seconds in check_times():
        print(f"  {name:<28} check on the solution: {seconds:.2f} s")
    return 0 if statistics.median(overheads) <= 1.0 else 1


if __name__ == "__main__":
    sys.exit(main())
