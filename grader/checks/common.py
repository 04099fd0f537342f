"""What the check modules share: the run and its trials, spied calls and files read back from a run, judging
trials in order (the first failure is the one reported), whether things ran at the same moment, and the
failures several exercises explain alike (a call that raised, a crashed process, calls that never ran, a
whole program that did not end)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable, Collection, Generic, Iterable, Sequence, TypeVar

from grader.judging.evidence import Proc, Run, Step, capital
from grader.judging.harness import CheckFailed, Student
from grader.probe import grader_events
from grader.results import Location

TrialT = TypeVar("TrialT")


@dataclass
class TrialRuns(Generic[TrialT]):
    """The run behind every verdict of an exercise, and each call of main() it made (its trials)."""

    run: Run
    trials: list[TrialT]


def spied_calls(run: Run, func: str, pids: Collection[int]) -> list[tuple[dict[str, Any], dict[str, Any] | None]]:
    """Every spied call of `func` in these processes, paired with its own return or raise (None: it never
    ended); a thread's calls and ends nest like its stack."""
    calls: list[tuple[dict[str, Any], dict[str, Any] | None]] = []
    open_: dict[tuple[int, int], list[int]] = {}
    for event in run.events(grader_events.CALL, grader_events.RETURN, grader_events.RAISE):
        if event.get("func") != func or event["pid"] not in pids:
            continue
        key = (event["pid"], event.get("tid", 0))
        if event["ev"] == grader_events.CALL:
            open_.setdefault(key, []).append(len(calls))
            calls.append((event, None))
        elif open_.get(key):
            index = open_[key].pop()
            calls[index] = (calls[index][0], event)
    return calls


def call_raised(run: Run, step: Step, call: str, prerequisite: str | None = None) -> CheckFailed:
    """A call of main() (`call`, as the student wrote it) that raised: its exception, at the student's line."""
    error = step.error or {}
    frames = error.get("frames") or []
    return CheckFailed(f"{call} raised {error['error']}: {error['message']}.",
                       locations=run.location(frames[-1] if frames else None, error["error"]), run=run,
                       prerequisite=prerequisite)


def crashed_failure(run: Run, crashed: list[tuple[Proc, str]], during: str, who: str,
                    locations: list[Location] | None = None) -> CheckFailed:
    """Processes (`who`: "worker", "client") that died with an exception during a call: the first one's."""
    proc, last_line = crashed[0]
    others = f" and {len(crashed) - 1} other {who}(s)" if len(crashed) > 1 else ""
    return CheckFailed(
        f"{capital(proc.label)}{others} crashed during {during}: {last_line}. A crashed {who} is a failure of the "
        "program: its full traceback is in the report.", locations=locations, run=run)


def too_few_ran(run: Run, ran: int, planned: int, what: str, prerequisite: str | None = None) -> CheckFailed:
    """The run stopped before all its planned calls were made: how many ran (`what`: "calls of main() ran"), and
    the exit code it stopped with."""
    return CheckFailed(f"Only {ran} of the {planned} {what} (exit code {run.outcome.returncode}).", run=run,
                       prerequisite=prerequisite)


def waited_at_exit(run: Run) -> list[Proc]:
    """The non-daemonic children Python waited for at exit, once the main process's code was done."""
    waiting = [run.processes.get(c["pid"]) for c in (run.first(grader_events.MAIN_DONE) or {}).get("waiting", [])]
    return [p for p in waiting if p is not None]


def raise_first(failures: Iterable[CheckFailed | None]) -> None:
    """Raise the first failure found (None: that trial is right); judged lazily, in order, so one cause is said."""
    failure = next((f for f in failures if f is not None), None)
    if failure is not None:
        raise failure


def any_overlap(spans: Sequence[tuple[float, float]]) -> bool:
    """Whether two of these (start, end) spans overlap: two things that were running at the same moment."""
    return any(a[0] < b[1] and b[0] < a[1] for i, a in enumerate(spans) for b in spans[i + 1:])


def ran_together(procs: Iterable[Proc]) -> bool:
    """Whether two of these processes ran the student's code at the same moment (each from its start to its exit)."""
    return any_overlap([(p.ran, p.exited) for p in procs if p.ran is not None and p.exited is not None])


def one_at_a_time(run: Run, procs: Iterable[Proc], message: str, who: str) -> CheckFailed:
    """Workers (`who`) that never ran together: the failure points at where the first of them was started."""
    first = next((p for p in procs if p.spawn_where), None)
    return CheckFailed(message, expected=f"{who}s running concurrently", actual=f"one {who} at a time",
                       locations=run.location(first.spawn_where if first else None, "start() followed by join()"),
                       run=run)


def whole_program_ends(student: Student, run: Run, kept_alive: Callable[[Run, str], CheckFailed], doing: str) -> None:
    """The whole program, run as the course runs it (python FILE), ends by itself with exit code 0; a hang is
    explained by the exercise's `kept_alive`, an error by its exit code and its exception."""
    if run.hung:
        raise kept_alive(run, f"Run as a whole program (python {run.student_file})")
    code = run.outcome.returncode
    if code != 0:
        error = run.last_error_line("main")
        raise CheckFailed(
            f"Run as a whole program (python {run.student_file}), your program ended with exit code {code}"
            + (f": {error}" if error else "") + f". It must {doing} and end normally.",
            expected="exit code 0", actual=f"exit code {code}", run=run)
    student.show(run)


def number_in_file(run: Run, name: str, key: str) -> object:
    """The whole number a JSON file holds under `key` after the run, or what the file holds instead of one."""
    text = run.outcome.files.get(name)
    if text is None:
        return "<missing>"
    try:
        number = json.loads(text)[key]
    except (ValueError, TypeError, KeyError):
        return text[:80]
    return number if isinstance(number, int) and not isinstance(number, bool) else text[:80]


def still_below(path: str, key: str, expected: int) -> Callable[[Run, Step], str | None]:
    """A shrink's test of a replayed trial (judging/shrink.py): the number the file `path` holds under `key`
    still ended below `expected` (updates were lost), said as such; None when it did not."""
    def lost(replay: Run, step: Step) -> str | None:
        final = number_in_file(replay, path, key)
        if isinstance(final, int) and final < expected:
            return f"the {key} still ended at {final} instead of {expected}"
        return None

    return lost
