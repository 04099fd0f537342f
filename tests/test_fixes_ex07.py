"""Exercise 7: the stub fails for both of its bugs, each check for its own reason; the solution and every
correct fix pass (under fork, spawn and forkserver); every wrong fix fails the check it should, for its reason."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

import pytest

from conftest import NOT_JUDGED, ROOT, assert_fails_exactly, by_check, fixes, line_of, outcomes, summary
from grader.results import FAILED, PASSED, Report

STUB = ROOT / "exercises" / "ex07_threads_join.py"
SOLUTION = ROOT / "solutions" / "ex07_threads_join.py"
CHECKS = {"check_program_ends", "check_every_result", "check_heartbeat_is_daemon", "check_workers_concurrent"}
NON_DAEMON = "Python waits for every non-daemon thread before the program ends"
DAEMON_AFTER_START = "Python refuses to make a thread a daemon once it has started"
# fix file stem -> {check that must fail: a piece of its reason}; the checks not named must pass, so that a
# student who fixed one bug is told about the other one only.
WRONG: dict[str, dict[str, str]] = {
    "wrong_no_join": {"check_every_result": "were still running when main() returned"},
    "wrong_join_last_only": {"check_every_result": "were still running when main() returned"},
    "wrong_heartbeat_not_daemon": {"check_program_ends": NON_DAEMON, "check_heartbeat_is_daemon": NON_DAEMON},
    "wrong_join_heartbeat": {
        "check_program_ends": "the main thread waits in join() at line 30 (main)",
        "check_every_result": "never returned, the main thread waits in join()",
        "check_heartbeat_is_daemon": NOT_JUDGED,  # the hang is said once, by check_every_result
    },
    "wrong_join_each": {"check_workers_concurrent": "The jobs never ran at the same time"},
    "wrong_daemon_after_start": {
        "check_program_ends": "RuntimeError ('cannot set daemon status of active thread') at line 25 (main)",
        "check_every_result": DAEMON_AFTER_START,
        "check_heartbeat_is_daemon": NOT_JUDGED,  # the same cause, said once by check_every_result
        "check_workers_concurrent": NOT_JUDGED,
    },
    "wrong_processes_not_threads": {"check_every_result": "worker() ran in other processes"},
    "wrong_no_heartbeat": {"check_heartbeat_is_daemon": "never started heartbeat()"},
}


Grade = Callable[..., Report]


def test_the_corpus_is_complete() -> None:
    """Every wrong fix has its expected failures listed, and there are at least three correct fixes."""
    assert {p.stem for p in fixes(7, "wrong")} == set(WRONG)
    assert len(fixes(7, "correct")) >= 3


def test_stub_fails_for_both_bugs(grade: Grade) -> None:
    """The non-daemon heartbeat keeps the program alive; the unjoined workers leave their results missing."""
    report = grade(7, STUB)
    results = by_check(report)
    assert set(results) == CHECKS
    beat = line_of(STUB, "beat.start()")
    for check_id in ("check_program_ends", "check_heartbeat_is_daemon"):
        result = results[check_id]
        assert result.outcome == FAILED, summary(report)
        assert NON_DAEMON in result.message, result.message
        assert f"the heartbeat thread (Thread-1 (heartbeat), started at line {beat} (main))" in result.message
        assert (beat, "started as a non-daemon thread") in {(loc.line, loc.label) for loc in result.locations}
    missing = results["check_every_result"]
    assert missing.outcome == FAILED
    # job 0 takes 60 ms: its result is missing whatever the timing; a 2 ms job may just make it in time
    assert re.search(r"^main\('beat-0\.log', \[3\.0, 0\.1, 1\.0, 0\.2\]\) returned \{[^}]*\}: the result\(s\) of "
                     r"job\(s\) 0\b.* are missing\. The worker thread\(s\) of job\(s\) 0\b.* were still running when "
                     r"main\(\) returned", missing.message), missing.message
    assert (line_of(STUB, "        t.start()"), "worker thread started here") in {(loc.line, loc.label)
                                                                            for loc in missing.locations}
    assert results["check_workers_concurrent"].outcome == PASSED  # the stub's workers do overlap
    assert report.exit_code() == 1


@pytest.mark.parametrize("path", [SOLUTION, *fixes(7, "correct")], ids=lambda p: p.stem)
def test_correct_fix_passes(path: Path, graded: Grade) -> None:
    """The solution and every correct fix (daemon attribute, a thread pool, a Thread subclass...) pass every check."""
    report = graded(7, path)
    assert set(outcomes(report)) == CHECKS
    assert set(outcomes(report).values()) == {PASSED}, summary(report)


@pytest.mark.parametrize("path", fixes(7, "wrong"), ids=lambda p: p.stem)
def test_wrong_fix_fails_for_its_reason(path: Path, graded: Grade) -> None:
    """The listed checks fail with their reasons; every other check passes."""
    report = graded(7, path)
    assert_fails_exactly(report, CHECKS, WRONG[path.stem])


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
@pytest.mark.parametrize("path", [SOLUTION, *fixes(7, "correct")], ids=lambda p: p.stem)
def test_correct_fix_passes_under_other_start_methods(path: Path, method: str, grade: Grade) -> None:
    """No false failure under spawn and forkserver either."""
    report = grade(7, path, start_method=method)
    assert set(outcomes(report).values()) == {PASSED}, summary(report)


@pytest.mark.parametrize("stem, check_id", [("wrong_no_join", "check_every_result"),
                                            ("wrong_processes_not_threads", "check_every_result")])
def test_wrong_fixes_fail_under_spawn_too(stem: str, check_id: str, grade: Grade) -> None:
    """Unjoined workers, and workers in processes that do not share the dict, show under spawn as well."""
    report = grade(7, ROOT / "tests" / "fixes" / "ex07" / f"{stem}.py", start_method="spawn")
    assert outcomes(report)[check_id] == FAILED, summary(report)
    assert WRONG[stem][check_id] in by_check(report)[check_id].message
