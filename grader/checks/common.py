"""What the check modules share: judging a run's trials one after another (the first failure is the one
reported), whether things ran at the same moment, and the failures several exercises explain alike."""
from __future__ import annotations

import json
from typing import Callable, Iterable, Sequence

from grader.judging.evidence import Proc, Run
from grader.judging.harness import CheckFailed, Student


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
