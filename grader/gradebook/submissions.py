"""A class folder's submissions: the students in it (a folder or a .zip each), their exercise files found by name
anywhere inside and copied flat, and what a result depends on (a content hash, a seed, a shard)."""
from __future__ import annotations

import hashlib
import json
import os
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from grader.course import Exercise
from grader.gradebook.book import RESERVED_NAMES

FILE_LIMIT = 4 * 1024 * 1024  # bytes kept of one exercise file: the harness refuses anything over 2 MB itself
SKIPPED_DIRS = {"__MACOSX", "__pycache__", "node_modules", "venv", ".venv"}


@dataclass(frozen=True)
class Submission:
    """One entry of the class folder: a student's folder or .zip (or, from an LMS download, a list of files)."""

    name: str
    path: Path
    kind: str  # "folder", "zip" or "files"
    files: tuple[tuple[str, str], ...] = ()  # kind "files": (the name the student gave it, where it is now)
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)  # who, when (grader.lms)


@dataclass
class Collected:
    """A submission's exercise files copied flat into `folder`, where each was found, and what to tell about it."""

    folder: Path
    found: dict[str, str] = field(default_factory=dict)  # file name -> path inside the submission
    digests: dict[str, str] = field(default_factory=dict)  # file name -> sha256 of what was copied
    notes: list[str] = field(default_factory=list)  # worth knowing, not a problem
    problems: list[str] = field(default_factory=list)  # the status column: why the grade may surprise


def discover(folder: Path, out: Path | None = None) -> tuple[list[Submission], list[str]]:
    """The students of a class folder (a folder or a .zip each, sorted by name) and the entries ignored."""
    entries, ignored = [], []
    for entry in sorted(folder.iterdir(), key=lambda p: p.name):
        if entry.name.startswith(".") or entry.name == "__MACOSX":
            continue
        if out is not None and entry.resolve() == out.resolve():
            continue
        if entry.is_dir():
            entries.append((entry.name, entry, "folder"))
        elif entry.is_file() and entry.suffix.lower() == ".zip":
            entries.append((entry.name[: -len(".zip")], entry, "zip"))
        else:
            ignored.append(entry.name)
    counts: dict[str, int] = {}
    for name, _, _ in entries:
        counts[name] = counts.get(name, 0) + 1
    students = [Submission(safe_name(name if counts[name] == 1 else path.name), path, kind)
                for name, path, kind in entries]
    return students, ignored


def safe_name(name: str) -> str:
    """A student's folder name in the gradebook: never one of the gradebook's own files."""
    return f"student-{name}" if name in RESERVED_NAMES or not name.strip(". ") else name


def collect(submission: Submission, exercises: list[Exercise], dest: Path) -> Collected:
    """Copy the submission's exercise files, found by name anywhere inside it, flat into `dest`."""
    dest.mkdir(parents=True, exist_ok=True)
    collected = Collected(dest)
    wanted = {e.filename for e in exercises}
    if submission.kind == "zip":
        _collect_zip(submission.path, wanted, collected)
    elif submission.kind == "files":
        _collect_files(submission.files, wanted, collected)
    else:
        _collect_folder(submission.path, wanted, collected)
    missing = [e.filename for e in exercises if e.filename not in collected.found]
    if len(missing) == len(exercises) and not any(p.startswith("unreadable") for p in collected.problems):
        collected.problems.append("no exercise files")
    elif missing and len(missing) < len(exercises):
        collected.problems.append("missing " + ", ".join(missing))
    return collected


def _pick(name: str, candidates: list[str], collected: Collected) -> str:
    """Of several files with the same name, the one nearest the top (then the first by path); say so."""
    chosen = min(candidates, key=lambda rel: (rel.count("/"), rel))
    if len(candidates) > 1:
        others = ", ".join(sorted(c for c in candidates if c != chosen))
        collected.notes.append(f"{len(candidates)} files named {name}: graded {chosen}, ignored {others}")
    return chosen


def _collect_folder(root: Path, wanted: set[str], collected: Collected) -> None:
    """Find the wanted files anywhere in a folder (hidden and junk folders skipped, links never followed)."""
    candidates: dict[str, list[str]] = {}
    for folder, dirs, files in os.walk(root, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in SKIPPED_DIRS)
        for name in files:
            if name in wanted:
                rel = Path(folder, name).relative_to(root).as_posix()
                candidates.setdefault(name, []).append(rel)
    for name, paths in sorted(candidates.items()):
        rel = _pick(name, paths, collected)
        _copy_member(root, rel, collected.folder / name, collected)
        if name in collected.digests:
            collected.found[name] = rel


def _collect_files(files: tuple[tuple[str, str], ...], wanted: set[str], collected: Collected) -> None:
    """An LMS's files, each under the name the student gave it; a zip among them is searched like a zip."""
    candidates: dict[str, list[str]] = {}
    for given, where in files:
        if given in wanted:
            candidates.setdefault(given, []).append(where)
    for name, paths in sorted(candidates.items()):
        chosen = _pick(name, paths, collected)
        _copy_member(Path(chosen).parent, Path(chosen).name, collected.folder / name, collected)
        if name in collected.digests:
            collected.found[name] = Path(chosen).name
    for given, where in files:
        if given.lower().endswith(".zip") and wanted - set(collected.found):
            _collect_zip(Path(where), wanted - set(collected.found), collected)


def _copy_member(root: Path, rel: str, target: Path, collected: Collected) -> None:
    """Copy one file of a folder submission; a link out of the submission stays a link (the harness refuses it)."""
    source = root / rel
    if source.is_symlink():
        resolved = source.resolve()
        inside = resolved.is_file() and (root.resolve() == resolved.parent or root.resolve() in resolved.parents)
        if not inside:
            os.symlink(resolved, target)
            collected.digests[target.name] = "link:" + hashlib.sha256(str(resolved).encode()).hexdigest()
            collected.notes.append(f"{rel} is a link to {resolved}, outside the submission")
            return
        source = resolved
    if not source.is_file():  # a named pipe or a device would block or flood the grader: never open one
        collected.notes.append(f"{rel} is not a regular file: not graded")
        return
    with open(source, "rb") as f:
        data = f.read(FILE_LIMIT)
    target.write_bytes(data)
    collected.digests[target.name] = hashlib.sha256(data).hexdigest()


def _collect_zip(path: Path, wanted: set[str], collected: Collected) -> None:
    """Read the exercise files out of a zip without extracting anything else (no path ever comes from the zip)."""
    try:
        with zipfile.ZipFile(path) as archive:
            candidates: dict[str, list[zipfile.ZipInfo]] = {}
            for info in archive.infolist():
                parts = PurePosixPath(info.filename.replace("\\", "/")).parts
                if info.is_dir() or not parts or any(p.startswith(".") or p in SKIPPED_DIRS for p in parts[:-1]):
                    continue
                if parts[-1] in wanted:
                    candidates.setdefault(parts[-1], []).append(info)
            for name, infos in sorted(candidates.items()):
                by_path = {i.filename.replace("\\", "/"): i for i in infos}
                rel = _pick(name, list(by_path), collected)
                with archive.open(by_path[rel]) as member:
                    data = member.read(FILE_LIMIT)
                (collected.folder / name).write_bytes(data)
                collected.digests[name] = hashlib.sha256(data).hexdigest()
                collected.found[name] = rel
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, RuntimeError, NotImplementedError, EOFError,
            ValueError, zlib.error) as exc:
        collected.problems.append(f"unreadable zip ({exc})")


def content_hash(collected: Collected, settings: dict[str, Any]) -> str:
    """What a result depends on: the files graded (and what was wrong with them) and the batch's settings."""
    data = {"files": collected.digests, "problems": collected.problems, "settings": settings}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:24]


def student_seed(base: int, name: str, digest: str) -> int:
    """The seed of a student's runs: the same files graded in the same batch get the same runs everywhere."""
    return int.from_bytes(hashlib.sha256(f"{base}/{name}/{digest}".encode()).digest()[:4], "big") % 2**31 or 1


def shard(students: list[Submission], index: int, count: int) -> list[Submission]:
    """The deterministic share `index` (1-based) of `count`: every count-th student by name."""
    ordered = sorted(students, key=lambda s: s.name)
    return [s for i, s in enumerate(ordered) if i % count == index - 1]
