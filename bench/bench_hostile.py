"""Prints, per isolation level and for each hostile submission of tests/hostile: the verdict, the time to
verdict, the processes left (must be 0), the files changed outside the run (must be 0) and whether the grader
kept working (a trivial run right after still works); then the cost of each level per run (median of a
trivial program's run, and its difference to the bare level). Targets: every case failing within its timeout
plus 2 s, 0 processes left, 0 files changed, the grader working; isolation cost <= 50 ms per run.

Levels (each in its own process, forced with GRADER_ISOLATION / GRADER_NO_UID_DROP):
  none      no namespaces, the grader's own uid
  userns    network, pid and mount namespaces (unshare; the "net" level): the machine read-only but the run's
            folder, the hidden folders covered, a minimal /dev, student code without capabilities (mountns.py)
  bwrap     bubblewrap's read-only view, private /tmp and /dev/shm
  uid       no namespaces, student code as a fresh unprivileged uid (the grader is root)
  userns+uid namespaces and the uid drop; the keeper hides the solutions, checks and tests
  bwrap+uid bubblewrap and the uid drop (the default as root)
A case that would change the checkout or freeze this process where nothing stops it is not run at that
level: it shows as "unsafe" (the level does not stop that class of attack; see the README's threat model).

Usage: python bench/bench_hostile.py [--levels none,userns,...] [--cases a,b,...] [--cost-runs N]"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from hostile_support import (NEEDS_BWRAP, NEEDS_HIDING, NEEDS_OWN_UID, NEEDS_SEPARATION, REASONS,  # noqa: E402
                             RUN_TIMEOUT, checkout_digest, shared_uid_reason, submission, tagged_processes,
                             unhidden_reason, unprotected_reason, unseparated_reason)

LEVELS = {
    "none": {"GRADER_ISOLATION": "none", "GRADER_NO_UID_DROP": "1"},
    "userns": {"GRADER_ISOLATION": "net", "GRADER_NO_UID_DROP": "1"},
    "bwrap": {"GRADER_ISOLATION": "bwrap", "GRADER_NO_UID_DROP": "1"},
    "uid": {"GRADER_ISOLATION": "none"},
    "userns+uid": {"GRADER_ISOLATION": "net"},
    "bwrap+uid": {"GRADER_ISOLATION": "bwrap"},
}


def _unsafe(case: str) -> str | None:
    """Why this case is not run at the level in force (it would damage the checkout or this process)."""
    if case in NEEDS_BWRAP and unprotected_reason():
        return "checkout unprotected"
    if case in NEEDS_HIDING and unhidden_reason():
        return "solutions readable"
    if case in NEEDS_SEPARATION and unseparated_reason():
        return "grader reachable"
    if case in NEEDS_OWN_UID and shared_uid_reason():
        return "no own uid"
    return None


def _trivial_run() -> tuple[bool, float]:
    """A run of a one-line program: whether it worked, and how long it took."""
    from grader.running import runner

    started = time.monotonic()
    outcome = runner.run(runner.RunSpec(argv=["-c", "print('ok')"]))
    return outcome.returncode == 0 and outcome.output.get("main", {}).get("out") == "ok\n", time.monotonic() - started


def one_level(cases: list[str], cost_runs: int) -> dict[str, object]:
    """Run in a child process with the level's environment: every case, then the cost."""
    from grader.course import find_exercise
    from grader.judging import session
    from grader.running import isolation

    rows = []
    canary = Path.home() / ".grader-canary"
    for case in cases:
        why = _unsafe(case)
        if why:
            rows.append({"case": case, "verdict": "unsafe", "why": why})
            continue
        canary.write_text("canary")
        before = checkout_digest()
        marker = secrets.token_hex(8)
        os.environ["HOSTILE_RUN_MARKER"] = marker
        with tempfile.TemporaryDirectory() as tmp:
            started = time.monotonic()
            report = session.grade([find_exercise(1)], submission(case, Path(tmp)))
            elapsed = time.monotonic() - started
        after = checkout_digest()
        changed_keys = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
        # The home folder is shared with whatever else runs on the machine (other test runs rewrite the same
        # canary): only what the hostile cases write there ("owned") counts.
        if canary.exists() and canary.read_text() == "owned":
            changed_keys.append(str(canary))
        changed = len(changed_keys)
        left = len(tagged_processes(f"HOSTILE_RUN_MARKER={marker}"))
        failed = [c for c in report.all_checks() if c.outcome == "failed"]
        working, _ = _trivial_run()
        rows.append({"case": case, "verdict": "failed" if report.exit_code() == 1 else f"exit {report.exit_code()}",
                     "time": elapsed, "left": left, "changed": changed, "working": working,
                     "reason_ok": any(p in c.message for c in failed for p in REASONS[case]),
                     "changed_keys": changed_keys,
                     "said": failed[0].message[:60] if failed else "(no failing check!)"})
    canary.unlink(missing_ok=True)
    _trivial_run()  # warm: the first run pays for the probe's compilation and the level's detection
    costs = [_trivial_run()[1] for _ in range(cost_runs)]
    return {"isolation": isolation.in_force(), "rows": rows, "cost": statistics.median(costs) if costs else None}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", default=",".join(LEVELS))
    parser.add_argument("--cases", default=",".join(sorted(REASONS)))
    parser.add_argument("--cost-runs", type=int, default=15)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    cases = args.cases.split(",")
    if args.child:
        print(json.dumps(one_level(cases, args.cost_runs)))
        return 0
    bad = 0
    costs: dict[str, float] = {}
    for level in args.levels.split(","):
        env = {k: v for k, v in os.environ.items() if k not in ("GRADER_ISOLATION", "GRADER_NO_UID_DROP")}
        done = subprocess.run([sys.executable, __file__, "--child", level, "--cases", args.cases,
                               "--cost-runs", str(args.cost_runs)], env={**env, **LEVELS[level]},
                              capture_output=True, text=True)
        if done.returncode != 0:
            print(f"\n== {level}: the bench itself failed ==\n{done.stderr[-2000:]}")
            bad += 1
            continue
        result = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"\n== {level}: {result['isolation']}")
        print(f"{'case':<20} {'verdict':<8} {'time s':>7} {'left':>5} {'changed':>8} {'works':>6}  what the grader said")
        for row in result["rows"]:
            if row["verdict"] == "unsafe":
                print(f"{row['case']:<20} {'unsafe':<8} {'':>7} {'':>5} {'':>8} {'':>6}  not run: {row['why']}")
                continue
            print(f"{row['case']:<20} {row['verdict']:<8} {row['time']:7.2f} {row['left']:5d} {row['changed']:8d} "
                  f"{'yes' if row['working'] else 'NO':>6}  {row['said']}")
            if row["changed"]:
                print(f"{'':<20} changed: {', '.join(row['changed_keys'])}")
            bad += (row["verdict"] != "failed" or row["left"] or row["changed"] or not row["working"]
                    or row["time"] > RUN_TIMEOUT + 2 + 3)
        if result["cost"] is not None:
            costs[level] = result["cost"]
    if costs:
        base = costs.get("none")
        print("\ncost of one trivial run (median):")
        for level, cost in costs.items():
            extra = f" ({(cost - base) * 1000:+.0f} ms vs none)" if base is not None else ""
            print(f"  {level:<10} {cost * 1000:6.0f} ms{extra}")
    print(f"\ncases not failing, leaving processes, changing files, breaking the grader or too slow: {bad} "
          "(target 0)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
