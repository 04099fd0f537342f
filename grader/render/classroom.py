"""GitHub Classroom: the `result` step output that Classroom's grading reporter reads (base64 of a JSON
document with the version, status, max_score and one test per check). Every check is always there with its
status and score, even after a timeout or a crash (then as "error" with 0 points), so the reporter can sum."""
from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

from grader.results import ERROR, FAILED, PASSED, SKIPPED, CheckResult, ExerciseResult, Report

STATUS = {PASSED: "pass", FAILED: "fail", ERROR: "error", SKIPPED: "fail"}  # not judged: no points, not a crash
MESSAGE_LIMIT = 4000


def render(report: Report) -> dict[str, Any]:
    """The reporter's document for one submission."""
    checks = report.all_checks()
    outcomes = {c.outcome for c in checks}
    status = "error" if ERROR in outcomes or not checks else ("fail" if outcomes - {PASSED} else "pass")
    return {
        "version": 1,
        "status": status,
        "max_score": report.max_score,
        "tests": [_test(report, exercise, check) for exercise in report.exercises for check in exercise.checks],
    }


def _test(report: Report, exercise: ExerciseResult, check: CheckResult) -> dict[str, Any]:
    """One check as a reporter's test."""
    return {
        "name": f"Exercise {exercise.number}: {check.title}",
        "status": STATUS.get(check.outcome, "error"),
        "score": check.points,
        "message": _message(check),
        "test_code": f"grader check {exercise.number} --seed {check.seed or report.seed}",
        "filename": _shown(exercise.file),
        "line_no": check.locations[0].line if check.locations else 0,
        "duration": round(check.duration, 3),
    }


def _message(check: CheckResult) -> str:
    """What the reporter prints under a failed test: the reason and the hint."""
    if check.outcome == PASSED:
        return ""
    text = check.message + (f" Hint: {check.hint}" if check.hint and check.outcome == FAILED else "")
    return text if len(text) <= MESSAGE_LIMIT else text[: MESSAGE_LIMIT - 1] + "…"


def _shown(path: str) -> str:
    """The student's file as shown: relative to the current folder when inside it."""
    relative = os.path.relpath(path) if Path(path).is_absolute() else path
    return Path(path if relative.startswith("..") else relative).as_posix()


def encode(document: dict[str, Any]) -> str:
    """The value of the step output `result`: base64 of the compact JSON, on one line."""
    return base64.b64encode(json.dumps(document, separators=(",", ":")).encode("utf-8")).decode("ascii")


def write_output(document: dict[str, Any], github_output: str | None) -> str:
    """Append `result=...` to $GITHUB_OUTPUT (or return the line to print when there is none)."""
    line = f"result={encode(document)}\n"
    if github_output:
        with open(github_output, "a", encoding="utf-8") as f:
            f.write(line)
    return line
