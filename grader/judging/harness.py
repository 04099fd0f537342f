"""What a check module works with: the student's file, seeded runs of it, and CheckFailed to say why the
student's code is wrong. A check that raises anything else is a grader error, never the student's fault."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Sequence, TypeVar

import pytest

from grader.running import conductor, limits, runner
from grader.course import METADATA, CheckInfo, Exercise, find_exercise
from grader.judging.evidence import Run, explain_hang
from grader.judging.request import Request
from grader.results import Location
from grader.probe import grader_events

# Delays (seconds, min-max) injected where races open. Large next to the spread of a gated start, small
# next to the runner's patience: locked code only gets slower, racy code loses every time.
RACE_DELAYS: dict[str, tuple[float, float]] = {
    "write": (0.004, 0.008),
    "replace": (0.0, 0.002),
    "read": (0.0, 0.002),
    "lock": (0.0, 0.001),
    "queue": (0.0, 0.002),
}
# Virtual time (see the probe): the student's clocks and timed waits run at its sleeps' scale, and a sleep or
# timed wait of its own lasts at least MIN_SLEEP of real time (or what it asked), so that the windows it
# opens stay open. Checks whose verdicts were measured with it on pass these rules to run_steps.
MIN_SLEEP = 0.004
VIRTUAL_TIME: dict[str, Any] = {"virtual_time": True, "min_sleep": MIN_SLEEP}
# Set by the benches only: run every check under the controlled scheduler with this strategy ("pos", "pct"):
# to measure an exercise whose checks do not ask for it yet, or another strategy than the one they ask for.
SCHEDULE_ENV = "GRADER_BENCH_SCHEDULE"
MAX_SOURCE_BYTES = 2_000_000
# Set by bench/bench_peer.py: run the checks as a plain harness would (no delays, no time scaling, no start
# gate), to compare how often each catches a wrong fix. Never set by the grader's commands.
PLAIN_ENV = "GRADER_BENCH_PLAIN"
COURSE_SLEEP_SCALE = 0.001  # course code sleeps seconds to simulate work: judge it in milliseconds
T = TypeVar("T")


def scheduled(**rules: Any) -> dict[str, Any]:
    """The rules of a run under the controlled scheduler (running/conductor.py): the grader picks the
    interleaving at every synchronisation point and owns the clock, instead of injecting random delays."""
    return {"schedule": conductor.Rules(**rules), "delays": {}, "queue_patience": None, "virtual_time": False,
            "start_gate": False}  # the conductor holds a new process until its starter stops starting


# What a check can depend on (check50's dependencies): when one fails, the checks that need it are not
# judged, and the cause is said once, by the check that judges it (else the first that met it). Each value
# is the one line a not-judged check shows.
LOADS = "loads"
ENDS = "ends"
CLEAN = "clean"
PREREQUISITES: dict[str, str] = {
    LOADS: "the grader could not load your file and watch it run",
    ENDS: "the run it judges did not run to the end",
    CLEAN: "processes of the run it judges outlived the program",
}


class CheckFailed(AssertionError):
    """The student's code is wrong: a reason in plain words, optionally expected/actual and lines to show.

    `prerequisite` names what failed when it is a root cause other checks share (LOADS, ENDS, CLEAN)."""

    def __init__(
        self,
        message: str,
        *,
        expected: str | None = None,
        actual: str | None = None,
        locations: list[Location] | None = None,
        run: Run | None = None,
        prerequisite: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.expected = expected
        self.actual = actual
        self.locations = locations or []
        self.run = run
        self.prerequisite = prerequisite


class MachineTooBusy(RuntimeError):
    """A grader error: a time limit ran out while processes of the run were still starting (interpreter
    start-up, imports), before the student's code. The run says nothing about the student's code."""

    for_student = ("The machine was too busy to judge this run; run it again. (A time limit ran out while "
                   "processes of your program were still starting, before your code ran: this is not your fault.)")

    def __init__(self, label: str, starting: list[int]) -> None:
        pids = ", ".join(str(p) for p in starting[:8]) + (", ..." if len(starting) > 8 else "")
        super().__init__(f"run {label!r} stopped while processes {pids} were still starting")
        self.starting = starting



class CheckDeclarationError(Exception):
    """A grader error, raised when the checks are collected: a check module and course.toml disagree on its
    checks (a check function without its title, points and hint there, or an entry naming no check)."""


def check(timeout: float = 300, depends: tuple[str, ...] = (LOADS, ENDS, CLEAN),
          judges: str | None = None) -> Callable[[Callable[..., None]], Any]:
    """Declare a check: what it depends on (LOADS always; ENDS and CLEAN by default) and the prerequisite it
    judges itself (e.g. ENDS for "the program ends"), if any. Its title, points and hint are the course's
    metadata (course.toml, [exercise.check.NAME] under the module's EXERCISE), one file for all exercises.

    When a prerequisite it depends on fails, the check is not judged (SKIPPED, pointing at the check that
    judges it, else the first that met it): one cause is said once. pytest-timeout guards it as a last
    resort only."""
    depends = tuple(d for d in depends if d != judges)
    unknown = set(depends) - set(PREREQUISITES)
    if unknown:
        raise ValueError(f"unknown prerequisite(s) {sorted(unknown)}: known are {sorted(PREREQUISITES)}")

    def decorate(func: Callable[..., None]) -> Any:
        info = declared_check(func)
        needs = (LOADS, *(d for d in depends if d != LOADS))
        marked = pytest.mark.grader_check(title=info.title, points=info.points, hint=info.hint, depends=needs)(func)
        return pytest.mark.timeout(timeout)(marked)

    return decorate


def declared_check(func: Callable[..., None]) -> CheckInfo:
    """The title, points and hint course.toml gives the check function `func` of its module's EXERCISE."""
    where = f"{func.__module__}.{func.__name__}"
    number = func.__globals__.get("EXERCISE")
    if not isinstance(number, int):
        raise CheckDeclarationError(f"{where}: its module must set EXERCISE (the exercise's number) before its checks")
    try:
        return find_exercise(number).check_info(func.__name__)
    except KeyError:
        raise CheckDeclarationError(
            f"{where} has no title, points and hint in {METADATA}: add [exercise.check.{func.__name__}] "
            f"to exercise {number}") from None


def require_metadata_agrees(module: ModuleType) -> None:
    """Collection fails, naming them, when course.toml declares checks of the module's EXERCISE that the module
    does not define (a check function without an entry already failed when it was declared)."""
    number = getattr(module, "EXERCISE", None)
    if not isinstance(number, int):
        return
    checks = {name for name, value in vars(module).items()
              if any(getattr(m, "name", "") == "grader_check" for m in getattr(value, "pytestmark", ()))}
    extra = [info.name for info in find_exercise(number).declared_checks if info.name not in checks]
    if extra:
        raise CheckDeclarationError(f"{METADATA} declares check(s) {', '.join(extra)} of exercise {number}, but "
                                    f"{module.__name__} defines no such check function")


@dataclass
class Student:
    """The submission's file for one exercise, and the means to run it under the probe."""

    exercise: Exercise
    file: Path
    shown_as: str
    seed: int
    start_method: str | None
    hide: list[Path] = field(default_factory=list)  # what its runs must not see (the request's hidden paths)
    temp_root: Path | None = None
    isolation: str | None = None
    shown: Run | None = None
    runs: list[Run] = field(default_factory=list)
    # --start-method all runs every trial under one method, then re-runs the checks under the others with only
    # the trials whose outcome can depend on the start method (what a child inherits, pickles or re-imports).
    matrix_rerun: bool = False

    def trials(self, every: Sequence[T], rerun: Sequence[T]) -> Sequence[T]:
        """The trials of a check module: `every` one, or `rerun` (a subset of them, so that a verdict can say
        "passes under fork" truthfully) when this session is a further start method of the matrix."""
        return rerun if self.matrix_rerun else every

    @classmethod
    def of(cls, request: Request, exercise: Exercise, start_method: str | None,
           matrix_rerun: bool = False) -> "Student":
        """The student's file of `exercise` as `request` asks it to be judged, under one start method (with
        `matrix_rerun`, only the trials that can differ between start methods)."""
        return cls(exercise=exercise, file=request.file(exercise), shown_as=request.shown_as(exercise),
                   seed=request.seed, start_method=start_method, hide=request.hidden_paths(),
                   temp_root=request.temp_root, isolation=request.isolation, matrix_rerun=matrix_rerun)

    def scenario_seed(self, label: str) -> int:
        """A seed per scenario, derived from the session's: the same --seed replays the same delays."""
        digest = hashlib.sha256(f"{self.seed}/{self.exercise.number}/{label}".encode()).digest()
        return int.from_bytes(digest[:4], "big")

    def require_file(self) -> None:
        """The file must exist, be a plain file of the submission (not a link out of it) and be of sane size."""
        if self.file.is_symlink() and self.file.resolve().parent != self.file.parent.resolve():
            raise CheckFailed(f"{self.shown_as} is a link to a file outside your submission: hand in the file itself.",
                              prerequisite=LOADS)
        if not self.file.is_file():
            raise CheckFailed(
                f"{self.shown_as} is missing: the grader looks for your solution of exercise "
                f"{self.exercise.number} in a file named {self.exercise.filename}.", prerequisite=LOADS
            )
        size = self.file.stat().st_size
        if size > MAX_SOURCE_BYTES:
            raise CheckFailed(f"{self.shown_as} is {size / 1e6:.1f} MB; an exercise file is a few kilobytes, and the "
                              f"grader does not run files over {MAX_SOURCE_BYTES // 1_000_000} MB.",
                              prerequisite=LOADS)

    def run_steps(
        self,
        label: str,
        steps: list[dict[str, Any]],
        *,
        contract: dict[str, list[str] | None],
        spy: list[str] = (),  # type: ignore[assignment]
        replace: dict[str, dict[str, Any]] | None = None,
        files: dict[str, str] | None = None,
        **rules: Any,
    ) -> Run:
        """Import the student's module in a fresh supervised process and call `steps` in order."""
        self.require_file()
        plan = {"module": self.exercise.name, "contract": contract, "steps": steps, "replace": replace or {}}
        spec = self._spec([str(runner.DRIVER), "{meta}/plan.json"], label, files, {self.exercise.name: list(spy)},
                          rules)
        spec.meta_files["plan.json"] = json.dumps(plan)  # inside the run's own folder, the only one it sees
        return self._judge_runnable(label, runner.run(spec))

    def run_program(self, label: str, *, files: dict[str, str] | None = None, **rules: Any) -> Run:
        """Run the student's file as a whole program: ``python exNN_name.py``."""
        self.require_file()
        spec = self._spec([self.exercise.filename], label, files, {}, rules)
        return self._judge_runnable(label, runner.run(spec))

    def _spec(self, argv: list[str], label: str, files: dict[str, str] | None, spy: dict[str, list[str]],
              rules: dict[str, Any]) -> runner.RunSpec:
        if os.environ.get(PLAIN_ENV):  # bench/bench_peer.py only: the plain harness it measures the grader against
            rules.update(sleep_scale=1.0, delays={}, queue_patience=None, virtual_time=False, min_sleep=0.0,
                         start_gate=False, schedule=None)
        strategy = os.environ.get(SCHEDULE_ENV)
        if strategy in conductor.STRATEGIES and not os.environ.get(PLAIN_ENV):
            if rules.get("schedule") is None:
                rules.update(scheduled(strategy=strategy))
            else:
                rules["schedule"] = dataclasses.replace(rules["schedule"], strategy=strategy)
        rules.setdefault("sleep_scale", COURSE_SLEEP_SCALE)
        rules.setdefault("delays", RACE_DELAYS)
        rules.setdefault("hide", self.hide)
        return runner.RunSpec(argv=argv, copy={self.exercise.filename: self.file}, files=files or {},
                              seed=self.scenario_seed(label), start_method=self.start_method, spy=spy,
                              temp_root=self.temp_root, isolation=self.isolation, **rules)

    def _judge_runnable(self, label: str, outcome: runner.RunOutcome) -> Run:
        run = Run(outcome=outcome, label=label, student_file=self.exercise.filename)
        self.runs.append(run)
        if outcome.probe_errors:
            raise RuntimeError("the grader's probe failed to load:\n" + outcome.probe_errors[0])
        if run.hung and (outcome.starting or outcome.too_busy):
            raise MachineTooBusy(label, outcome.starting)
        bad_input(run, self.shown_as)
        return run

    def show(self, run: Run) -> None:
        """Name the run that a passing check judged, so the report can show it."""
        self.shown = run


def bad_input(run: Run, shown_as: str) -> None:
    """Fail, with a message a student understands, when the file cannot even be run as asked."""
    status = run.outcome.status
    if status == runner.OUTPUT_LIMIT:
        raise CheckFailed(
            "Your program printed more output than the grader keeps (several megabytes) and was stopped: "
            "is a print inside an endless loop?", run=run, prerequisite=ENDS)
    if status == runner.DISK_LIMIT:
        raise CheckFailed(
            f"Your program wrote more than {limits.DISK_LIMIT // 2**20} MB of files (in its folder, /tmp or "
            "/dev/shm) and was stopped. The exercise needs a few small files: is a write inside an endless loop?",
            run=run, prerequisite=ENDS)
    if status == runner.PROCESS_LIMIT:
        raise CheckFailed(
            "Your program started far more processes than the exercise needs and was stopped (runaway "
            "forking?). Start a fixed number of processes and join them.", run=run, prerequisite=ENDS)
    impostors = (run.outcome.schedule or {}).get("impostors") or []
    if impostors:
        raise CheckFailed(
            f"The grader could not observe your program: {impostors[0]}, on the grader's own channel to its "
            "scheduler. The exercise never needs to touch the grader's files or sockets.", run=run, prerequisite=LOADS)
    error = run.first(grader_events.IMPORT_ERROR) or run.first(grader_events.IMPORT_EXIT)
    if error is not None:
        raise CheckFailed(_import_message(error, shown_as), locations=_frames_to_locations(run, error), run=run, prerequisite=LOADS)
    if run.first(grader_events.IMPORT_START) is not None and run.first(grader_events.IMPORT_DONE) is None:
        if run.hung:
            sentences, locations = explain_hang(run)
            frames = run.stack_of(run.main.pid) if run.main else []
            where = f" It was still running line {frames[-1].line}." if frames else ""
            raise CheckFailed(
                f"Importing {shown_as} never finished: code at the top level of your file runs when it is imported "
                f"(an endless loop there?).{where} Put the program's own code under `if __name__ == \"__main__\":`.",
                locations=[Location(run.student_file, frames[-1].line, "still running here")] if frames else locations,
                run=run, prerequisite=LOADS)
        raise CheckFailed(
            f"Your file ended the program while it was being imported (exit code {run.outcome.returncode}): "
            f"code at the top level of {shown_as} must not exit (sys.exit / os._exit); put it under "
            f"`if __name__ == \"__main__\":`.", run=run, prerequisite=LOADS)
    tamper = run.first(grader_events.TAMPER)
    if tamper is not None:
        raise CheckFailed(
            f"Your code replaced {', '.join(tamper['replaced'])}, which the grader relies on to watch your "
            "program. The exercise never needs that: leave Python's own functions and multiprocessing as they "
            "are.", run=run, prerequisite=LOADS)
    contract = run.first(grader_events.CONTRACT_ERROR)
    if contract is not None:
        raise CheckFailed(_contract_message(contract["problems"], shown_as),
                          locations=[Location(run.student_file, p["line"], "signature")
                                     for p in contract["problems"] if p.get("line")], run=run, prerequisite=LOADS)
    unfinished = next((s for s in run.steps if not s.finished), None)
    if unfinished is not None and run.outcome.status == runner.EXITED:
        code = run.outcome.returncode or 0
        how = (f"was killed by signal {_signal_name(-code)}" if code < 0
               else f"ended with exit code {code} (os._exit()?)")
        raise CheckFailed(
            f"The main program {how} in the middle of {unfinished.call}()"
            + (f" ({unfinished.label})" if unfinished.label else "")
            + ": the grader cannot judge work that never finished. Does a process of yours kill or exit its parent?",
            run=run, prerequisite=ENDS)
    if run.outcome.leftovers:
        raise CheckFailed(_leftover_message(run), run=run, prerequisite=CLEAN)
    for step in run.steps:
        if step.error and "exit" in step.error:
            raise CheckFailed(
                f"Your code called sys.exit({step.error['exit']}) during {step.call}(): the grader cannot judge a "
                "program that exits in the middle of its work.", locations=_frames_to_locations(run, step.error),
                run=run, prerequisite=ENDS)


def _leftover_message(run: Run) -> str:
    """Processes that outlived the program: name them by what they ran when the probe saw them start."""
    names = []
    for left in run.outcome.leftovers:
        proc = run.processes.get(left["pid"])
        names.append(proc.label if proc and proc.target else f"pid {left['pid']} ({left['cmdline'][:60]})")
    return (f"After your program ended, {len(names)} of its processes were still running: {', '.join(names[:4])}"
            f"{', ...' if len(names) > 4 else ''}. The grader killed them. Every process a program starts must end "
            "with it: join it, or make it a daemon; never detach it (os.fork() + setsid()).")


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


def _student_frames(error: dict[str, Any]) -> list[dict[str, Any]]:
    """The error's frames in the student's file (not importlib's frozen ones, which a 3.13 import error has)."""
    return [f for f in error.get("frames") or [] if not str(f.get("file", "")).startswith("<")]


def _frames_to_locations(run: Run, error: dict[str, Any]) -> list[Location]:
    frames = _student_frames(error)
    return [Location(run.student_file, f["line"], error.get("error", "")) for f in frames[-1:] if f.get("line")]


def _import_message(error: dict[str, Any], shown_as: str) -> str:
    frames = _student_frames(error)
    line = f" at line {frames[-1]['line']}" if frames and frames[-1].get("line") else ""
    if error["ev"] == grader_events.IMPORT_EXIT:
        return (f"Your file called sys.exit({error.get('code')}){line} while it was being imported: code at the "
                f"top level of {shown_as} must not exit; put it under `if __name__ == \"__main__\":`.")
    # A file that is not UTF-8 text: SyntaxError up to Python 3.12, UnicodeDecodeError from the import
    # machinery itself (no frame of the student's, only importlib's frozen ones) in 3.13.
    if error["error"] in ("SyntaxError", "IndentationError", "TabError") or (
            error["error"] == "UnicodeDecodeError" and not frames):
        text = f": `{error['text'].strip()}`" if error.get("text") else ""
        return f"Python cannot read {shown_as}: {error['error']}{line}{text} ({error['message']})."
    return (f"Importing {shown_as} raised {error['error']}{line}: {error['message']}. The grader imports your "
            f"file to call its functions, so code at the top level must run without errors.")


def _contract_message(problems: list[dict[str, Any]], shown_as: str) -> str:
    parts = []
    for problem in problems:
        expected = f"{problem['name']}({', '.join(problem['expected'] or [])})"
        if problem["problem"] == "missing":
            parts.append(f"{shown_as} has no `{problem['name']}`: the exercise asks for {expected}")
        elif problem["problem"] == "not callable":
            parts.append(f"`{problem['name']}` in {shown_as} is not a function: the exercise asks for {expected}")
        else:
            parts.append(f"`{problem['name']}({', '.join(problem['actual'])})` cannot be called as {expected}")
    return "; ".join(parts) + ". Keep the names and parameters the exercise gives: the grader calls them."


def require_ended(run: Run, what: str) -> None:
    """Fail with the hang explained when the grader had to stop the run."""
    if run.hung:
        sentences, locations = explain_hang(run)
        raise CheckFailed(f"{what} did not end: " + " ".join(sentences), locations=locations, run=run,
                          prerequisite=ENDS)


def crashed_children(run: Run, procs: list[Any]) -> list[tuple[Any, str]]:
    """Processes among `procs` that ended with an exception, each with the last lines of its traceback."""
    crashed = []
    labels = {p.pid: p for p in procs}
    for pid, proc in labels.items():
        if proc.code not in (0, None):
            crashed.append((proc, run.last_error_line(str(pid)) or f"exit code {proc.code}"))
    return crashed
