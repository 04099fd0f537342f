"""One root cause, said once: a check whose failure is a prerequisite that an earlier check of the same
exercise already reported (the file does not load, the same run never ended, the very same reason) is
*not judged*, with one line pointing at that check, as check50 skips the checks that depend on a failed one.

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
class Causes:
    """The prerequisites and reasons already reported, per exercise."""

    prerequisites: dict[tuple[int, str, str], Stated] = field(default_factory=dict)
    messages: dict[tuple[int, str], Stated] = field(default_factory=dict)

    def blocking(self, exercise: int, depends: tuple[str, ...]) -> tuple[str, Stated] | None:
        """A prerequisite of the whole exercise (the file loads) that already failed: nothing can be judged."""
        if LOADS in depends:
            stated = self.prerequisites.get((exercise, LOADS, ""))
            if stated is not None:
                return LOADS, stated
        return None

    def settle(self, result: CheckResult, error: CheckFailed | None, depends: tuple[str, ...]) -> None:
        """Turn `result` (just judged FAILED) into NOT JUDGED when its cause was already said; else remember it."""
        if result.outcome != FAILED or error is None:
            return
        key = _prerequisite_key(result.exercise, error)
        earlier = None
        if key is not None and key[1] in depends:
            earlier = self.prerequisites.get(key)
        earlier = earlier or self._same_reason(result)
        if earlier is not None:
            not_judged(result, earlier, error.prerequisite)
            return
        if key is not None:
            self.prerequisites[key] = Stated(result.id, result.title)
            if error.prerequisite == LOADS:
                result.hint = ""  # the check's own hint is about something else: the reason says what to do
        self.messages[(result.exercise, result.message)] = Stated(result.id, result.title)


    def _same_reason(self, result: CheckResult) -> Stated | None:
        """An earlier failure whose whole reason this one repeats (perhaps after a sentence of its own)."""
        for (exercise, message), stated in self.messages.items():
            if exercise == result.exercise and (message == result.message
                                                or (len(message) >= MIN_REPEATED and message in result.message)):
                return stated
        return None


def not_judged(result: CheckResult, earlier: Stated, prerequisite: str | None) -> None:
    """Mark `result` not judged because of the failure that `earlier` reported: one line, no points."""
    why = PREREQUISITES.get(prerequisite or "", "the same cause")
    result.outcome, result.points = SKIPPED, 0.0
    result.message = f"Not judged: {why}, as “{earlier.title}” says."
    result.expected = result.actual = None
    result.locations, result.hint, result.evidence, result.traceback = [], "", None, None
    result.depends_on = earlier.check_id


def _prerequisite_key(exercise: int, error: CheckFailed) -> tuple[int, str, str] | None:
    """A prerequisite failure is the same cause for every check of the exercise (the file loads) or for
    every check judging the same run (that run ended)."""
    if error.prerequisite is None:
        return None
    if error.prerequisite == LOADS:
        return exercise, LOADS, ""
    return exercise, error.prerequisite, error.run.label if error.run is not None else ""
