"""JUnit XML for CI systems: one testsuite per exercise, one testcase per check (classname = the exercise),
a failed check as <failure> carrying the reason and the evidence, a grader error as <error>, in the shape pytest
writes (which GitLab, Jenkins, GitHub test reporters and junitparser read).

It validates against the strictest reader, Jenkins xunit's junit-10.xsd (tests/schemas/junit-10.xsd): no
`skipped` on <testsuites>, no file/line attributes and no <properties> on a <testcase>. So the points live in the
suite's properties (`points`, and `points:<check id>` = "earned/max" per check) and, with the check's id and
the student's line, in each testcase's <system-out>."""
from __future__ import annotations

import os
import re
import socket
import xml.etree.ElementTree as ET
from datetime import datetime, timezone
from pathlib import Path

from grader.results import ERROR, FAILED, SKIPPED, CheckResult, Evidence, ExerciseResult, Report

MESSAGE_LIMIT = 1000
OUTPUT_LIMIT = 3000
STACK_LIMIT = 4000
STREAMS_SHOWN = 6  # process outputs quoted in one failure (a run may have dozens of processes)
EVIDENCE_LIMIT = 20000
# Characters XML 1.0 cannot carry at all (student output may contain any byte).
_INVALID_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def clean(text: object) -> str:
    """Text that XML can carry: control characters and lone surrogates become U+FFFD."""
    return _INVALID_XML.sub("\ufffd", str(text))


def render(report: Report, name: str = "grader") -> str:
    """The whole document."""
    checks = report.all_checks()
    totals = _counts(checks, name, report.duration)
    del totals["skipped"]  # junit-10.xsd allows it on <testsuite> only
    root = ET.Element("testsuites", totals)
    stamp = datetime.now(timezone.utc).replace(microsecond=0).isoformat()
    for exercise in report.exercises:
        root.append(_suite(report, exercise, stamp))
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _counts(checks: list[CheckResult], name: str, duration: float) -> dict[str, str]:
    """The counts every JUnit reader expects on <testsuites> and <testsuite>."""
    return {
        "name": clean(name), "tests": str(len(checks)),
        "failures": str(sum(c.outcome == FAILED for c in checks)),
        "errors": str(sum(c.outcome == ERROR for c in checks)),
        "skipped": str(sum(c.outcome == SKIPPED for c in checks)), "time": f"{duration:.3f}",
    }


def _suite(report: Report, exercise: ExerciseResult, stamp: str) -> ET.Element:
    """One exercise as a <testsuite>, with its score and replay command as properties."""
    attributes = _counts(exercise.checks, exercise.name, sum(c.duration for c in exercise.checks))
    suite = ET.Element("testsuite", {**attributes, "timestamp": stamp, "hostname": clean(socket.gethostname())})
    _properties(suite, {"exercise": exercise.number, "title": exercise.title, "points": f"{exercise.score:g}",
                        "max_points": f"{exercise.max_score:g}", "seed": report.seed,
                        "start_method": report.start_method, "grader_version": report.grader_version,
                        "replay": report.command, "isolation": report.isolation,
                        **{f"points:{c.id}": f"{c.points:g}/{c.max_points:g}" for c in exercise.checks}})
    for check in exercise.checks:
        suite.append(_case(exercise, check, report.evidence_of(check)))
    return suite


def _properties(parent: ET.Element, values: dict[str, object]) -> None:
    """A <properties> element with one <property> per value."""
    properties = ET.SubElement(parent, "properties")
    for key, value in values.items():
        ET.SubElement(properties, "property", {"name": key, "value": clean(value)})


def _case(exercise: ExerciseResult, check: CheckResult, evidence: Evidence | None) -> ET.Element:
    """One check as a <testcase>: <failure> for a failed check, <error> for a grader error."""
    attributes = {"classname": clean(exercise.name), "name": clean(check.title), "time": f"{check.duration:.3f}"}
    case = ET.Element("testcase", attributes)
    if check.outcome in (FAILED, ERROR):
        tag, kind = ("failure", "CheckFailed") if check.outcome == FAILED else ("error", "GraderError")
        element = ET.SubElement(case, tag, {"message": clean(_one_line(check.message)), "type": kind})
        element.text = clean(evidence_text(check, exercise, evidence))
    elif check.outcome == SKIPPED:
        ET.SubElement(case, "skipped", {"message": clean(_one_line(check.message))})
    where = _shown(exercise.file) + (f":{check.locations[0].line}" if check.locations else "")
    ET.SubElement(case, "system-out").text = clean(
        f"check: {check.id}\npoints: {check.points:g}/{check.max_points:g}\nfile: {where}\n")
    return case


def _one_line(text: str) -> str:
    """A message attribute: one line (parsers fold newlines in attributes anyway), not too long."""
    text = " ".join(text.split())
    return text if len(text) <= MESSAGE_LIMIT else text[: MESSAGE_LIMIT - 1] + "…"


def _shown(path: str) -> str:
    """A path relative to the current folder when it is inside it (what CI annotations expect)."""
    try:
        relative = os.path.relpath(path)
    except ValueError:
        return path
    return path if relative.startswith("..") else Path(relative).as_posix()


def evidence_text(check: CheckResult, exercise: ExerciseResult, evidence: Evidence | None,
                  elsewhere: str = "in the full report") -> str:
    """A failed check in plain text: the reason, expected/actual, the student's lines, the hint and the evidence."""
    parts = [check.message]
    if check.expected is not None or check.actual is not None:
        parts.append(f"expected: {check.expected}\nactual:   {check.actual}")
    for location in check.locations:
        parts.append(f"at {_shown(exercise.file)}:{location.line}" + (f" ({location.label})" if location.label else ""))
    if check.hint and check.outcome == FAILED:
        parts.append(f"hint: {check.hint}")
    parts.append(f"seed: {check.seed}")
    if evidence is not None:
        parts.append(f"run: {evidence.status} after {evidence.duration:.2f} s")
        for stack in evidence.stacks:
            parts.append(f"--- stack of {stack.label} ---\n{_tail(stack.text, STACK_LIMIT)}")
        streams = [(who, stream, text) for who, outputs in evidence.output.items() for stream, text in outputs.items()]
        for who, stream, text in streams[:STREAMS_SHOWN]:
            parts.append(f"--- {who}, std{stream} ---\n{_tail(text, OUTPUT_LIMIT)}")
        if len(streams) > STREAMS_SHOWN:
            parts.append(f"[... the output of {len(streams) - STREAMS_SHOWN} more streams is {elsewhere} ...]")
    if check.traceback:
        parts.append(f"--- grader traceback ---\n{_tail(check.traceback, STACK_LIMIT)}")
    text = "\n\n".join(parts)
    return text if len(text) <= EVIDENCE_LIMIT else text[:EVIDENCE_LIMIT] + "\n[... cut ...]"


def _tail(text: str, limit: int) -> str:
    """The end of a long text (where a stack or an output says the most), marked as cut."""
    return text if len(text) <= limit else "[...]\n" + text[-limit:]
