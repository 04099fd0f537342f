"""The latest result of every exercise checked into one report folder, so that feedback/index.html lists
them all (not only the exercises of the last `grader check`). Kept beside the pages as latest.json."""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from grader.results import ERROR, FAILED, PASSED, SKIPPED, Report

LATEST_FILE = "latest.json"


@dataclass
class LatestExercise:
    """What the index shows of one exercise: its verdict, score and check counts when it was last checked."""

    number: int
    title: str
    score: float
    max_score: float
    passed: bool
    counts: dict[str, int] = field(default_factory=dict)
    seed: int = 0
    command: str = ""


def merge(out_dir: Path, report: Report) -> list[LatestExercise]:
    """The saved latest results with this report's exercises replacing theirs; saved back, in exercise order."""
    path = Path(out_dir) / LATEST_FILE
    latest = {e.number: e for e in _load(path)}
    for exercise in report.exercises:
        counts = {o: sum(c.outcome == o for c in exercise.checks) for o in (PASSED, FAILED, ERROR, SKIPPED)}
        latest[exercise.number] = LatestExercise(exercise.number, exercise.title, exercise.score, exercise.max_score,
                                                 exercise.passed, counts, report.seed, report.command)
    rows = [latest[n] for n in sorted(latest)]
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps([asdict(r) for r in rows], indent=1))
    os.replace(tmp, path)
    return rows


def _load(path: Path) -> list[LatestExercise]:
    """The saved rows; none when the file is missing or unreadable (the index then starts afresh)."""
    try:
        data: Any = json.loads(path.read_text())
        return [LatestExercise(**row) for row in data]
    except (OSError, ValueError, TypeError):
        return []
