"""GitHub Classroom: the `result` step output that Classroom's grading reporter reads (base64 of a JSON
document with the version, status, max_score and its tests). Every check is always there with its status, even
after a timeout or a crash (then as "error" with 0 points), so the reporter can sum.

The reporter prints two totals: the sum of the tests' `score` (what Classroom records) and, per runner,
passed tests / all tests × max_score. Both agree only when every test is worth the same, so a check worth
k points is written as k tests of one point (one per `unit` when points are fractions), all passing or all
failing with the check (a check worth nothing is left out: it would lower the reporter's passed/total). The document is UTF-8 and its encoded value stays under RESULT_LIMIT: GitHub passes
the output to the reporter in its environment, and a larger value fails the step ("Argument list too long")."""
from __future__ import annotations

import base64
import json
import math
import os
from fractions import Fraction
from pathlib import Path
from typing import Any

from grader.results import ERROR, FAILED, PASSED, SKIPPED, CheckResult, ExerciseResult, Report

STATUS = {PASSED: "pass", FAILED: "fail", ERROR: "error", SKIPPED: "fail"}  # not judged: no points, not a crash
MESSAGE_LIMIT = 4000
RESULT_LIMIT = 64 * 1024  # bytes of the base64 value of `result`
MAX_TESTS = 1000  # more point-tests than this (odd fractional points): one test per check instead
CUT = "… [cut: the whole message is in the job summary; replay it with `{command}`]"
SHORT_CUT = "[cut: see the job summary]"


def render(report: Report) -> dict[str, Any]:
    """The reporter's document for one submission, within RESULT_LIMIT once encoded."""
    checks = report.all_checks()
    outcomes = {c.outcome for c in checks}
    status = "error" if ERROR in outcomes or not checks else ("fail" if outcomes - {PASSED} else "pass")
    for unit in (point_unit(checks), None):  # one test per check when point-tests cannot fit in the limit
        tests = [test for exercise in report.exercises for check in exercise.checks
                 for test in _tests(report, exercise, check, unit)]
        document = fit({"version": 1, "status": status, "max_score": report.max_score, "tests": tests}, RESULT_LIMIT)
        if len(encode(document)) <= RESULT_LIMIT:
            break
    return document


def point_unit(checks: list[CheckResult]) -> Fraction | None:
    """The largest value every check's points and maximum are whole multiples of (1 for whole points), or None
    when that would take more than MAX_TESTS tests."""
    values = [Fraction(v).limit_denominator(1000) for c in checks for v in (c.points, c.max_points) if v]
    if not values:
        return None
    numerators = math.gcd(*(v.numerator for v in values))
    denominators = math.lcm(*(v.denominator for v in values))
    unit = Fraction(numerators, denominators)
    if sum(Fraction(c.max_points).limit_denominator(1000) / unit for c in checks) > MAX_TESTS:
        return None
    return unit


def _tests(report: Report, exercise: ExerciseResult, check: CheckResult, unit: Fraction | None) -> list[dict[str, Any]]:
    """One check as the reporter's tests: one per unit of its points, the first carrying the message."""
    base = {
        "name": f"Exercise {exercise.number}: {check.title}",
        "status": STATUS.get(check.outcome, "error"),
        "score": check.points,
        "message": _message(check),
        "test_code": f"grader check {exercise.number} --seed {check.seed or report.seed}",
        "filename": _shown(exercise.file),
        "line_no": check.locations[0].line if check.locations else 0,
        "duration": round(check.duration, 3),
    }
    if unit is None:
        return [base]
    count = int(Fraction(check.max_points).limit_denominator(1000) / unit)
    if count == 0:  # worth nothing: as a test it would lower the reporter's passed/total score
        return []
    if count == 1:
        return [base]
    earned = int(Fraction(check.points).limit_denominator(1000) / unit)
    value = float(unit)
    tests = []
    for index in range(count):
        passed = index < earned
        status = "pass" if passed else (base["status"] if base["status"] != "pass" else "fail")
        tests.append({**base, "name": f"{base['name']} (point {index + 1}/{count})", "status": status,
                      "score": value if passed else 0, "message": base["message"] if index == 0 else "",
                      "duration": base["duration"] if index == 0 else 0})
    return tests


def _message(check: CheckResult) -> str:
    """What the reporter prints under a failed test: the reason and the hint."""
    if check.outcome == PASSED:
        return ""
    text = check.message + (f" Hint: {check.hint}" if check.hint and check.outcome == FAILED else "")
    return text if len(text) <= MESSAGE_LIMIT else text[: MESSAGE_LIMIT - 1] + "…"


def fit(document: dict[str, Any], limit: int) -> dict[str, Any]:
    """The document with its messages cut (each ending with a pointer to the whole) until its value fits; then,
    for a very large course, without the fields the reporter does not read (test_code, filename, line, duration)."""
    budget = MESSAGE_LIMIT
    while len(encode(document)) > limit and budget > 0:
        budget //= 2
        for test in document["tests"]:
            test["message"] = _cut(test["message"], budget, test.get("test_code", ""))
    if len(encode(document)) > limit:
        for test in document["tests"]:
            for key in ("test_code", "filename", "line_no", "duration"):
                test.pop(key, None)
            test["name"] = _cut(test["name"], 80, "") if len(test["name"]) > 80 else test["name"]
            test["message"] = SHORT_CUT if test["message"] else ""
    return document


def _cut(text: str, budget: int, command: str) -> str:
    """A text of at most `budget` UTF-8 bytes (plus the pointer) when it is longer, never split in a character."""
    if len(text.encode("utf-8")) <= budget:
        return text
    kept = text.encode("utf-8")[:budget].decode("utf-8", errors="ignore")
    return kept + (CUT.format(command=command) if command else "…")


def _shown(path: str) -> str:
    """The student's file as shown: relative to the current folder when inside it."""
    relative = os.path.relpath(path) if Path(path).is_absolute() else path
    return Path(path if relative.startswith("..") else relative).as_posix()


def encode(document: dict[str, Any]) -> str:
    """The value of the step output `result`: base64 of the compact UTF-8 JSON, on one line."""
    text = json.dumps(document, separators=(",", ":"), ensure_ascii=False)
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def write_output(document: dict[str, Any], github_output: str | None) -> str:
    """Append `result=...` to $GITHUB_OUTPUT (or return the line to print when there is none)."""
    line = f"result={encode(document)}\n"
    if github_output:
        with open(github_output, "a", encoding="utf-8") as f:
            f.write(line)
    return line
