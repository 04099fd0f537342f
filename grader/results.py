"""The one results model: plain data that every renderer (terminal, JSON, HTML, JUnit, Gradescope...) reads.

As in check50, "the student's code is wrong" (FAILED, with a reason, expected/actual and a hint) is kept
apart from "the grader broke" (ERROR, with a traceback).
"""
from __future__ import annotations

import shlex
from dataclasses import asdict, dataclass, field
from typing import Any

PASSED = "passed"
FAILED = "failed"
ERROR = "error"
SKIPPED = "skipped"  # "not judged": a prerequisite failed in the check named by `depends_on`
RESULTS_VERSION = 2  # 2: a report holds its runs; a check names its run (1: a copy of its evidence)


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


# How a run ended (Evidence.status): the runner decides it, the checks and the renderers read it.
EXITED = "exited"
TIMEOUT = "timeout"
DEADLOCK = "deadlock"
SELF_DEADLOCK = "self_deadlock"
KEPT_ALIVE = "kept_alive"
OUTPUT_LIMIT = "output_limit"
PROCESS_LIMIT = "process_limit"
DISK_LIMIT = "disk_limit"  # it wrote more than running.limits.DISK_LIMIT bytes (its folders, its uid's /tmp, /dev/shm)
HANG_STATUSES = frozenset({TIMEOUT, DEADLOCK, SELF_DEADLOCK, KEPT_ALIVE})  # the grader had to stop a hang


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
    # How the controlled scheduler chose the interleaving (strategy, seed, turns, threads, and under PCT the
    # probability it guarantees per run for a bug of depth 2 and 3); empty for a run without it.
    schedule: dict[str, Any] = field(default_factory=dict)


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
    run: str | None = None  # the id of the run the verdict was judged from (Report.runs)
    depends_on: str | None = None  # SKIPPED: the check whose failure this one depends on
    # --start-method all, a verdict that differs between start methods: those it failed under, those it passed
    # under (both empty when every method agreed, or when only one was tried)
    failed_under: list[str] = field(default_factory=list)
    passed_under: list[str] = field(default_factory=list)

    def start_method_words(self) -> str:
        """'under spawn only' (with the methods it passed under) for the heading, '' when the methods agreed."""
        if not self.failed_under or not self.passed_under:
            return ""
        return f"under {' and '.join(self.failed_under)} only"


@dataclass
class RunResult:
    """One supervised run of the student's code, kept once however many checks were judged from it."""

    id: str
    start_method: str = ""
    label: str = ""
    evidence: Evidence = field(default_factory=Evidence)

    @property
    def status(self) -> str:
        """How the run ended (EXITED, TIMEOUT, DEADLOCK...)."""
        return self.evidence.status


@dataclass
class CriticalSection:
    """What an exercise's timeline draws as shared: the function that must run one process at a time, the
    value it returns on success, and the checks whose failure its overlaps explain (declared by the check
    module as CRITICAL_SECTION)."""

    func: str
    success: Any = True
    explains: list[str] = field(default_factory=list)
    # every return counts as success (a decrement returns the value it wrote): two overlapping calls that
    # returned the same value wrote the same value, from the same read, and are drawn as an overlap too
    any_return: bool = False


@dataclass
class ExerciseResult:
    """All checks of one exercise for one submission."""

    number: int
    name: str
    title: str
    file: str
    checks: list[CheckResult] = field(default_factory=list)
    critical_section: CriticalSection | None = None

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
    runs: list[RunResult] = field(default_factory=list)
    isolation: str = ""  # the isolation student code ran under (isolation.in_force): stated in every format

    @property
    def score(self) -> float:
        return sum(e.score for e in self.exercises)

    @property
    def max_score(self) -> float:
        return sum(e.max_score for e in self.exercises)

    def all_checks(self) -> list[CheckResult]:
        return [c for e in self.exercises for c in e.checks]

    def run_of(self, check: CheckResult) -> RunResult | None:
        """The run a check was judged from, if it names one."""
        return next((r for r in self.runs if r.id == check.run), None) if check.run else None

    def evidence_of(self, check: CheckResult) -> Evidence | None:
        """What the grader observed in the run behind a check's verdict."""
        run = self.run_of(check)
        return run.evidence if run is not None else None

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
        """Rebuild a report from its plain data, of this version or of version 1 (evidence in every check)."""
        runs = [RunResult(r["id"], r.get("start_method", ""), r.get("label", ""), evidence_from_dict(r["evidence"]))
                for r in data.get("runs", [])]
        exercises = [_exercise_from_dict(e, runs, data.get("start_method", "")) for e in data.get("exercises", [])]
        fields = {k: data[k] for k in ("seed", "start_method", "submission", "grader_version", "command")}
        return cls(**fields, exercises=exercises, duration=data.get("duration", 0.0), version=RESULTS_VERSION,
                   runs=runs, isolation=data.get("isolation", ""))


def evidence_from_dict(data: dict[str, Any]) -> Evidence:
    """Rebuild a run's Evidence from its plain-data form."""
    values = dict(data)
    values["stacks"] = [ProcessStack(**s) for s in values.get("stacks", [])]
    return Evidence(**values)


def check_from_dict(data: dict[str, Any], runs: list[RunResult] | None = None, start_method: str = "") -> CheckResult:
    """Rebuild a CheckResult from its plain-data form; a version-1 check's own evidence becomes a run of `runs`."""
    values = dict(data)
    values["locations"] = [Location(**loc) for loc in values.get("locations", [])]
    evidence = values.pop("evidence", None)
    if evidence is not None and runs is not None:
        values["run"] = f"{values['id']}/v1"
        runs.append(RunResult(values["run"], start_method, "", evidence_from_dict(evidence)))
    return CheckResult(**values)


def _exercise_from_dict(data: dict[str, Any], runs: list[RunResult], start_method: str) -> ExerciseResult:
    section = data.get("critical_section")
    return ExerciseResult(
        number=data["number"], name=data["name"], title=data["title"], file=data["file"],
        checks=[check_from_dict(c, runs, start_method) for c in data.get("checks", [])],
        critical_section=CriticalSection(**section) if section else None,
    )


def describe_schedule(schedule: dict[str, Any]) -> str:
    """One sentence on how the grader chose a run's interleaving, and what that guarantees (empty: no scheduler)."""
    if not schedule:
        return ""
    if schedule.get("failure"):
        return "The grader's scheduler failed during this run; it went on unscheduled (a grader bug: please report it)."
    trials = schedule.get("trials", 1)
    what = (f"The grader chose the interleaving at every synchronisation point: {str(schedule.get('strategy')).upper()}, "
            f"{schedule.get('steps', 0)} turns among {schedule.get('threads', 0)} threads over {trials} "
            f"trial{'s' if trials != 1 else ''}")
    bounds = schedule.get("bounds") or {}
    if bounds:
        return (what + "; it catches a bug of depth 2 in a run with probability at least "
                f"{_percent(bounds.get('2', 0.0))}, of depth 3 at least {_percent(bounds.get('3', 0.0))} (PCT's bound).")
    return what + "."


def _percent(p: float) -> str:
    return f"{p * 100:.2g}%"


def replay_command(numbers: list[int], seed: int, submission: str | None = None, start_method: str | None = None) -> str:
    """The command that replays a grading exactly: the same exercises, seed, files and start methods."""
    parts = ["grader", "check", *map(str, numbers), "--seed", str(seed)]
    if submission is not None:
        parts += ["--submission", submission]
    if start_method:
        parts += ["--start-method", start_method]
    return shlex.join(parts)
