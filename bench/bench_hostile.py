"""Prints, for each hostile submission of tests/hostile: what the grader did, the time to verdict, the
processes left (must be 0) and the files changed outside the run (must be 0). Target: every case judged
within its timeout plus 2 s. Usage: python bench/bench_hostile.py"""
from __future__ import annotations

import os
import secrets
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from hostile_support import REASONS, RUN_TIMEOUT, submission, tagged_processes, tree_digest  # noqa: E402

from grader.running import isolation  # noqa: E402
from grader.judging import session
from grader.course import find_exercise  # noqa: E402


def main() -> int:
    level = isolation.detect()
    print(f"isolation in force: {level.description}")
    print(f"{'case':<20} {'verdict':<8} {'time s':>7} {'left':>5} {'changed':>8}  what the grader said")
    worst = 0.0
    bad = 0
    protected = [ROOT / "grader", ROOT / "solutions"]
    canary = Path.home() / ".grader-canary"
    canary.write_text("canary")
    try:
        for case in sorted(REASONS):
            before = tree_digest(*protected) | {"canary": canary.read_text()}
            marker = secrets.token_hex(8)
            os.environ["HOSTILE_RUN_MARKER"] = marker
            with tempfile.TemporaryDirectory() as tmp:
                started = time.monotonic()
                report = session.grade([find_exercise(1)], submission(case, Path(tmp)))
                elapsed = time.monotonic() - started
            after = tree_digest(*protected) | {"canary": canary.read_text()}
            changed = sum(before.get(k) != after.get(k) for k in set(before) | set(after))
            left = len(tagged_processes(f"HOSTILE_RUN_MARKER={marker}"))
            failed = [c for c in report.all_checks() if c.outcome == "failed"]
            verdict = "failed" if report.exit_code() == 1 else f"exit {report.exit_code()}"
            said = failed[0].message[:70] if failed else "(no failing check!)"
            print(f"{case:<20} {verdict:<8} {elapsed:7.2f} {left:5d} {changed:8d}  {said}")
            worst = max(worst, elapsed)
            bad += verdict != "failed" or left or changed
    finally:
        canary.unlink(missing_ok=True)
    print(f"\nslowest verdict {worst:.2f} s (target: within {RUN_TIMEOUT} s + 2 s); cases not failing, leaving "
          f"processes or changing files: {bad} (target 0)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
