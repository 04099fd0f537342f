"""A student's progress, remembered between commands in `.grader/progress.json` of the course folder:
the last verdict of each exercise and how many hints were shown (hints are given one at a time)."""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from grader.atomic import atomic_write
from grader.results import Report

NOT_TRIED = "not tried"


@dataclass
class ExerciseProgress:
    status: str = NOT_TRIED
    score: float = 0.0
    max_score: float = 0.0
    checked_at: float = 0.0
    hints_shown: int = 0


@dataclass
class Progress:
    """Per exercise number (as a string key, JSON-friendly)."""

    exercises: dict[str, ExerciseProgress] = field(default_factory=dict)

    def of(self, number: int) -> ExerciseProgress:
        return self.exercises.setdefault(str(number), ExerciseProgress())

    def record(self, report: Report) -> None:
        """Remember the verdicts of a check of the course's own exercises/ folder."""
        for exercise in report.exercises:
            entry = self.of(exercise.number)
            entry.status = "passed" if exercise.passed else "failed"
            entry.score, entry.max_score, entry.checked_at = exercise.score, exercise.max_score, time.time()


def state_file(root: Path) -> Path:
    return root / ".grader" / "progress.json"


def load(root: Path) -> Progress:
    """The saved progress (empty when there is none or it cannot be read)."""
    try:
        data = json.loads(state_file(root).read_text())
        return Progress({k: ExerciseProgress(**v) for k, v in data.get("exercises", {}).items()})
    except (OSError, ValueError, TypeError):
        return Progress()


def save(root: Path, progress: Progress) -> None:
    """Written atomically: an interrupted command never leaves half a file."""
    path = state_file(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps({"exercises": {k: asdict(v) for k, v in progress.exercises.items()}}, indent=1),
                 durable=False)
