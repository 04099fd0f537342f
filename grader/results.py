"""The one results model: plain data that every renderer (terminal, JSON, HTML, JUnit, Gradescope...) reads.

As in check50, "the student's code is wrong" (FAILED, with a reason, expected/actual and a hint) is kept
apart from "the grader broke" (ERROR, with a traceback).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

PASSED = "passed"
FAILED = "failed"
ERROR = "error"
SKIPPED = "skipped"
RESULTS_VERSION = 1


@dataclass
class Location:
    """A place in the student's file that a reason points at."""

    file: str
    line: int
    label: str = ""


@dataclass
class ProcessStack:
    """One process's stack at the moment the grader stopped it (faulthandler's text, plus who it was)."""

    pid: int
    label: str
    text: str


@dataclass
class Evidence:
    """What the grader observed in the run behind a verdict: output per process, stacks and probe events."""

    status: str = ""
    duration: float = 0.0
    output: dict[str, dict[str, str]] = field(default_factory=dict)
    stacks: list[ProcessStack] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    processes: list[dict[str, Any]] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)
    isolation: str = ""


@dataclass
class CheckResult:
    """The verdict of one check."""

    id: str
    exercise: int
    title: str
    outcome: str
    points: float
    max_points: float
    message: str = ""
    hint: str = ""
    expected: str | None = None
    actual: str | None = None
    locations: list[Location] = field(default_factory=list)
    seed: int = 0
    duration: float = 0.0
    traceback: str | None = None
    evidence: Evidence | None = None


@dataclass
class ExerciseResult:
    """All checks of one exercise for one submission."""

    number: int
    name: str
    title: str
    file: str
    checks: list[CheckResult] = field(default_factory=list)

    @property
    def score(self) -> float:
        return sum(c.points for c in self.checks)

    @property
    def max_score(self) -> float:
        return sum(c.max_points for c in self.checks)

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.outcome == PASSED for c in self.checks)


@dataclass
class Report:
    """One grading run over one submission: what was checked, with which seed, and every verdict."""

    seed: int
    start_method: str
    submission: str
    grader_version: str
    command: str
    exercises: list[ExerciseResult] = field(default_factory=list)
    duration: float = 0.0
    version: int = RESULTS_VERSION
    isolation: str = ""  # the isolation student code ran under (isolation.in_force): stated in every format

    @property
    def score(self) -> float:
        return sum(e.score for e in self.exercises)

    @property
    def max_score(self) -> float:
        return sum(e.max_score for e in self.exercises)

    def all_checks(self) -> list[CheckResult]:
        return [c for e in self.exercises for c in e.checks]

    def exit_code(self) -> int:
        """0 when every check passed, 1 when one failed, 2 when the grader broke (never 0 after a crash)."""
        outcomes = {c.outcome for c in self.all_checks()}
        if ERROR in outcomes or not outcomes:
            return 2
        return 1 if FAILED in outcomes else 0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for exercise, result in zip(data["exercises"], self.exercises):
            exercise.update(score=result.score, max_score=result.max_score, passed=result.passed)
        data.update(score=self.score, max_score=self.max_score)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Report":
        exercises = [_exercise_from_dict(e) for e in data.get("exercises", [])]
        fields = {k: data[k] for k in ("seed", "start_method", "submission", "grader_version", "command")}
        return cls(**fields, exercises=exercises, duration=data.get("duration", 0.0),
                   version=data.get("version", RESULTS_VERSION), isolation=data.get("isolation", ""))


def check_from_dict(data: dict[str, Any]) -> CheckResult:
    """Rebuild a CheckResult from its plain-data form (results.json, a worker's answer)."""
    values = dict(data)
    values["locations"] = [Location(**loc) for loc in values.get("locations", [])]
    evidence = values.get("evidence")
    if evidence is not None:
        evidence = dict(evidence)
        evidence["stacks"] = [ProcessStack(**s) for s in evidence.get("stacks", [])]
        values["evidence"] = Evidence(**evidence)
    return CheckResult(**values)


def _exercise_from_dict(data: dict[str, Any]) -> ExerciseResult:
    return ExerciseResult(
        number=data["number"], name=data["name"], title=data["title"], file=data["file"],
        checks=[check_from_dict(c) for c in data.get("checks", [])],
    )
