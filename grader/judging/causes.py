"""One root cause, said once: a check whose failure is a prerequisite that another check of the same
exercise reports (the file does not load, the same run never ended) or that repeats another's whole reason
is *not judged*, with one line pointing at that check, as check50 skips the checks that depend on a failed
one. The check that judges a prerequisite itself (`judges=` in the check decorator) is the one that says it.

The plugin keeps one `Causes` per session in its stash; nothing here is module-global."""
from __future__ import annotations

from dataclasses import dataclass, field

from grader.judging.harness import LOADS, PREREQUISITES, CheckFailed
from grader.results import FAILED, SKIPPED, CheckResult

MIN_REPEATED = 80  # a reason this long, repeated inside a later one, is the same cause said again


@dataclass
class Stated:
    """A failure already reported: the check that said it, and its title."""

    check_id: str
    title: str


@dataclass
class _Failure:
    """A failed check, with the prerequisite its failure is (if any) and what the check depends on."""

    result: CheckResult
    key: tuple[str, str] | None
    depends: tuple[str, ...]


@dataclass
class Causes:
    """The failures of the session, per exercise, settled once every check of the exercise has been judged."""

    failures: dict[int, list[_Failure]] = field(default_factory=dict)
    notes: set[tuple[int, str]] = field(default_factory=set)

    def first_time(self, exercise: int, note: str) -> bool:
        """Whether `note` (a sentence added to a reason) is new in this exercise: then remember it."""
        if (exercise, note) in self.notes:
            return False
        self.notes.add((exercise, note))
        return True

    def blocking(self, exercise: int, depends: tuple[str, ...]) -> tuple[str, Stated] | None:
        """The file of the exercise did not load: a check depending on that is not even run."""
        if LOADS not in depends:
            return None
        first = next((f for f in self.failures.get(exercise, []) if f.key == (LOADS, "")), None)
        return (LOADS, Stated(first.result.id, first.result.title)) if first else None

    def record(self, result: CheckResult, error: CheckFailed | None, depends: tuple[str, ...]) -> None:
        """Remember a failed check (others are not a cause)."""
        if result.outcome == FAILED:
            key = _prerequisite_key(error) if error is not None else None
            self.failures.setdefault(result.exercise, []).append(_Failure(result, key, depends))

    def settle(self) -> None:
        """Per exercise: each prerequisite failure is said by one check (the one judging it, else the first),
        and a reason repeated whole by a later check is said by the first; the others become not judged."""
        for failures in self.failures.values():
            said: list[_Failure] = []
            owners: dict[tuple[str, str], _Failure] = {}
            for failure in failures:
                if failure.key is not None and failure.key not in owners:
                    same = [f for f in failures if f.key == failure.key]
                    owners[failure.key] = next((f for f in same if failure.key[0] not in f.depends), same[0])
            for failure in failures:
                owner = owners.get(failure.key) if failure.key is not None else None
                if owner is not None and owner is not failure and failure.key[0] in failure.depends:  # type: ignore[index]
                    not_judged(failure.result, _stated(owner), failure.key[0])  # type: ignore[index]
                    continue
                repeated = next((s for s in said if _repeats(failure.result.message, s.result.message)), None)
                if repeated is not None:
                    not_judged(failure.result, _stated(repeated), None)
                    continue
                if failure.key is not None and failure.key[0] == LOADS:
                    failure.result.hint = ""  # the check's own hint is about something else
                said.append(failure)


def not_judged(result: CheckResult, earlier: Stated, prerequisite: str | None) -> None:
    """Mark `result` not judged because of the failure that `earlier` reported: one line, no points."""
    why = PREREQUISITES.get(prerequisite or "", "the same cause")
    result.outcome, result.points = SKIPPED, 0.0
    result.message = f"Not judged: {why}, as “{earlier.title}” says."
    result.expected = result.actual = None
    result.locations, result.hint, result.run, result.traceback = [], "", None, None
    result.depends_on = earlier.check_id


def _stated(failure: _Failure) -> Stated:
    return Stated(failure.result.id, failure.result.title)


def _repeats(message: str, earlier: str) -> bool:
    """Whether `message` says `earlier` again, whole (perhaps after a sentence of its own)."""
    return message == earlier or (len(earlier) >= MIN_REPEATED and earlier in message)


def _prerequisite_key(error: CheckFailed) -> tuple[str, str] | None:
    """A prerequisite failure is the same cause for every check of the exercise (the file loads) or for
    every check judging the same run (that run ended)."""
    if error.prerequisite is None:
        return None
    if error.prerequisite == LOADS:
        return LOADS, ""
    return error.prerequisite, error.run.label if error.run is not None else ""
