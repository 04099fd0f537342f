"""Feedback that is true, over every fix of the corpus: no failed check has expected equal to actual, no
message or hint quotes the solution's fixed line, and a root cause is said once (the checks that depend on
it are not judged and point at the check that said it).

It reuses the reports the per-exercise corpus tests graded (the session-scoped `graded` fixture), so in a
whole run it grades nothing twice."""
from __future__ import annotations

from pathlib import Path

import pytest

from conftest import fixed_lines, fixes
from grader.course import load_course
from grader.judging.causes import MIN_REPEATED
from grader.results import FAILED, SKIPPED

CORPUS = [(e.number, path) for e in load_course() for kind in ("wrong", "correct") for path in fixes(e.number, kind)]


@pytest.mark.parametrize(("number", "path"), CORPUS, ids=[f"ex{n:02d}-{p.stem}" for n, p in CORPUS])
def test_feedback_is_true_and_said_once(number: int, path: Path, graded) -> None:
    report = graded(number, path)
    checks = report.all_checks()
    fixed = fixed_lines(number)
    failed = [c for c in checks if c.outcome == FAILED]
    for check in failed:
        assert check.expected is None or check.expected != check.actual, (check.title, check.expected, check.actual)
    for check in checks:
        quoted = [line for line in fixed if line in check.message or line in check.hint]
        assert not quoted, (check.title, quoted, check.message, check.hint)
    for i, first in enumerate(failed):
        for second in failed[i + 1:]:
            shorter, longer = sorted((first.message, second.message), key=len)
            assert not (len(shorter) >= MIN_REPEATED and shorter in longer), ("said twice", first.title, second.title)
    ids = {c.id: c for c in checks}
    for check in checks:
        if check.outcome == SKIPPED:
            assert check.depends_on in ids and ids[check.depends_on].outcome == FAILED, check
            assert check.message.startswith("Not judged:") and ids[check.depends_on].title in check.message
    assert sum(c.max_points for c in checks) == report.exercises[0].max_score == load_course()[number - 1].points
