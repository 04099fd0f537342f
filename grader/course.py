"""The course metadata (course.toml): each exercise's number, file name, title, points, hints and checks, and
what students see of each check (its title, points and hint), keyed by the check function's name."""
from __future__ import annotations

import functools
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

PACKAGE_DIR = Path(__file__).parent
METADATA = PACKAGE_DIR / "course.toml"


@dataclass(frozen=True)
class CheckInfo:
    """What students see of one check: its title, its points and its hint (course.toml's [exercise.check.NAME])."""

    name: str
    title: str
    points: float
    hint: str = ""


@dataclass(frozen=True)
class Exercise:
    """One exercise of the course."""

    number: int
    name: str
    title: str
    points: float
    checks: str
    hints: tuple[str, ...] = field(default=())
    declared_checks: tuple[CheckInfo, ...] = field(default=())

    @property
    def filename(self) -> str:
        return f"{self.name}.py"

    def check_info(self, name: str) -> CheckInfo:
        """The title, points and hint of the check function `name`; KeyError when the metadata has none."""
        for info in self.declared_checks:
            if info.name == name:
                return info
        raise KeyError(name)


def load_course(path: Path = METADATA) -> list[Exercise]:
    """Every exercise, in number order (read again only when the file changed: each check's declaration
    looks itself up here when its module is imported)."""
    stat = os.stat(path)
    return list(_parsed(str(path), stat.st_mtime_ns, stat.st_size))


@functools.lru_cache(maxsize=4)
def _parsed(path: str, mtime_ns: int, size: int) -> tuple[Exercise, ...]:
    """The exercises of the metadata file `path` as it is at (mtime_ns, size): frozen, so shared safely."""
    with open(path, "rb") as f:
        data = tomllib.load(f)
    exercises = [
        Exercise(number=e["number"], name=e["name"], title=e["title"], points=e["points"], checks=e["checks"],
                 hints=tuple(e.get("hints", ())),
                 declared_checks=tuple(CheckInfo(name, c["title"], c["points"], c.get("hint", ""))
                                       for name, c in e.get("check", {}).items()))
        for e in data["exercise"]
    ]
    return tuple(sorted(exercises, key=lambda e: e.number))


def find_exercise(number: int, course: list[Exercise] | None = None) -> Exercise:
    """The exercise with this number; KeyError when there is none."""
    for exercise in course if course is not None else load_course():
        if exercise.number == number:
            return exercise
    raise KeyError(number)


def course_root(start: Path | None = None) -> Path:
    """The folder holding exercises/: the current folder or one above it, else the grader's checkout."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "exercises").is_dir() and any((folder / "exercises").glob("ex[0-9][0-9]_*.py")):
            return folder
    return PACKAGE_DIR.parent


def select(numbers: list[int]) -> list[Exercise]:
    """The exercises with these numbers (all when empty); ValueError names an unknown number."""
    course = load_course()
    if not numbers:
        return course
    known = {e.number: e for e in course}
    unknown = [n for n in numbers if n not in known]
    if unknown:
        raise ValueError(f"no exercise {', '.join(map(str, unknown))}: the course has {', '.join(map(str, known))}")
    return [known[n] for n in dict.fromkeys(numbers)]
