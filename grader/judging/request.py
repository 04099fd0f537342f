"""What a grading is asked to do, as one object: built once by each command (check, watch, batch, ci), handed to
the pytest session as part of a plugin instance, read by the checks' harness and the runner. Every default of a
grading (the seed, the submission folder, how the student's file is named, the hidden paths...) is computed here
and nowhere else."""
from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from pathlib import Path

from grader.course import Exercise, course_root
from grader.results import replay_command

START_METHODS = ("fork", "spawn", "forkserver")
ALL_METHODS = "all"
METHOD_CHOICES = (*START_METHODS, ALL_METHODS)  # what --start-method accepts
DEFAULT_METHOD = "default"  # the platform's own start method, as a report names it


def new_seed() -> int:
    """A fresh seed for a grading that was not asked to replay one."""
    return random.SystemRandom().randrange(1, 2**31)


@dataclass(frozen=True)
class Request:
    """One grading: which exercises, which files, with which seed and start methods, how to name things.

    `submission` is the folder the checks read (it may be a temporary copy); `name` is the submission as the
    report names it (None: that folder); `shown` is how reasons name that
    folder to the student ("" for bare file names; None: its path, relative to the current folder when inside
    it); `files` maps a file name to the path the report gives for it (default: in `submission`);
    `replay_submission` is the `--submission` of the replay command (None: none); `hidden` are extra paths
    student runs must not see, besides the solutions, the checks and the home folder; `temp_root` is where
    runs make their folders (None: the system's temporary folder); `isolation` forces a level ("bwrap",
    "net", "none"; None: the strongest this machine allows)."""

    exercises: tuple[Exercise, ...]
    submission: Path
    seed: int
    start_method: str | None = None  # None (the platform's), fork, spawn, forkserver or "all"
    name: str | None = None
    shown: str | None = None
    files: dict[str, str] = field(default_factory=dict)
    replay_submission: str | None = None
    hidden: tuple[Path, ...] = ()
    temp_root: Path | None = None
    isolation: str | None = None
    report_dir: Path = Path("feedback")  # where `grader check` writes its HTML pages

    @classmethod
    def build(
        cls,
        exercises: list[Exercise] | tuple[Exercise, ...],
        submission: Path | None = None,
        seed: int | None = None,
        start_method: str | None = None,
        **more: object,
    ) -> "Request":
        """A request with every default filled in: the course's exercises/ folder, a fresh seed, and a replay
        command that names the submission folder exactly when one was given."""
        more = {key: value for key, value in more.items() if value is not None}  # None: the default
        more.setdefault("replay_submission", None if submission is None else str(submission))
        return cls(tuple(exercises), submission if submission is not None else course_root() / "exercises",
                   seed if seed is not None else new_seed(), start_method, **more)  # type: ignore[arg-type]

    @property
    def numbers(self) -> list[int]:
        return [e.number for e in self.exercises]

    @property
    def start_methods(self) -> tuple[str | None, ...]:
        """The start methods to run the checks under, one pytest session each (None: the platform's)."""
        return START_METHODS if self.start_method == ALL_METHODS else (self.start_method,)

    @property
    def method_label(self) -> str:
        """The start method as a report names it."""
        return self.start_method or DEFAULT_METHOD

    @property
    def submission_name(self) -> str:
        """The submission as the report names it."""
        return self.name if self.name is not None else str(self.submission)

    def file(self, exercise: Exercise) -> Path:
        """The student's file of `exercise`, where the checks read it."""
        return self.submission / exercise.filename

    def shown_as(self, exercise: Exercise) -> str:
        """The student's file as reasons name it."""
        if self.shown is not None:
            return f"{self.shown}{exercise.filename}"
        file = self.file(exercise)
        try:
            relative = os.path.relpath(file)
        except ValueError:  # another drive (Windows): no relative form
            return str(file)
        return str(file) if relative.startswith("..") else relative

    def report_file(self, exercise: Exercise) -> str:
        """The student's file as the report gives it (the renderers read its lines from there)."""
        return self.files.get(exercise.filename, str(self.file(exercise)))

    def hidden_paths(self) -> list[Path]:
        """Everything student runs must not see: the core's list and this request's own."""
        from grader.running import isolation

        return [*isolation.hidden_paths(course_root(), self.temp_root), *self.hidden]

    def replay_command(self) -> str:
        """The command that replays this grading exactly (the same seed, files and start methods)."""
        return replay_command(self.numbers, self.seed, self.replay_submission, self.start_method)
