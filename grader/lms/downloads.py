"""Submissions as the LMS hands them out, turned into the batch's students (gradebook.submissions.Submission):

- Canvas "Download Submissions" (a folder or its zip): flat files `smithjohn_12345_67890_ex01_x.py`, with
  `LATE_` after the name for a late submission and `-1`, `-2` before the extension for a file uploaded again;
- Moodle "Download all submissions": folders `John Smith_1234567_assignsubmission_file_` (or the same prefix on
  flat files), 1234567 being the participant id of Moodle's grading worksheet;
- a folder of GitHub Classroom repositories (`assignment-login` clones; the last commit's time is the
  submission time);
- a Gradescope "Export Submissions" folder or zip (submission_metadata.yml and a folder per submission);
- otherwise a plain class folder: a folder or .zip per student, as `grader batch` always read.

Each student carries `meta`: the LMS, the identities it gave, the roster row they matched, when they handed in
and whether the LMS marked it late. With a roster the gradebook names students by their roster id."""
from __future__ import annotations

import glob
import hashlib
import os
import re
import shutil
import stat
import subprocess
import tempfile
import zipfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any

from grader.gradebook.book import BatchError
from grader.gradebook.submissions import SKIPPED_DIRS, Submission, discover as discover_folders, safe_name
from grader.lms.roster import Person, Roster

DOWNLOAD_DIR = ".download"  # inside the gradebook: where a downloaded zip is unpacked (hidden from students)
MEMBER_LIMIT = 64 * 1024 * 1024  # bytes of one file unpacked from an LMS zip
CANVAS_FILE = re.compile(r"^(?P<sortable>[^_/]+)_(?:(?P<late>LATE)_)?(?P<user>\d+)_(?P<submission>\d+)_(?P<file>.+)$")
RESUBMITTED = re.compile(r"^(?P<stem>.+?)-(?P<n>\d+)(?P<ext>\.[A-Za-z0-9]+)$")
MOODLE_ENTRY = re.compile(r"^(?P<name>.+?)_(?P<participant>\d+)_(?P<plugin>assignsubmission_[a-z]+|onlinetext)_(?P<rest>.*)$")
GRADESCOPE_METADATA = "submission_metadata.yml"


@dataclass
class Discovered:
    """The students found in an LMS download, and what was seen that is not one."""

    lms: str
    students: list[Submission]
    ignored: list[str] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)  # students not on the roster (graded all the same)
    absent: list[Person] = field(default_factory=list)  # roster students with no submission


def discover(source: Path, out: Path, roster: Roster | None = None) -> Discovered:
    """The students of an LMS download (folder or zip); a BatchError when there is none, saying what was seen."""
    folder = unpack(source, out) if source.is_file() else source
    folder = _single_top_folder(folder)
    lms, students, ignored = _read(folder, out)
    if not students:
        seen = sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
        shown = ", ".join(seen[:8]) + (f" and {len(seen) - 8} more" if len(seen) > 8 else "")
        raise BatchError(f"no student found in {source}: it holds {shown or 'nothing'} (expected a Canvas or Moodle "
                         "download, GitHub Classroom repositories, a Gradescope export, or a folder or .zip per "
                         "student)")
    found = Discovered(lms, students, ignored)
    return match_roster(found, roster) if roster is not None else found


def _single_top_folder(folder: Path) -> Path:
    """An export whose zip holds one folder with everything inside (Gradescope's does): that folder."""
    entries = [p for p in folder.iterdir() if not p.name.startswith(".") and p.name != "__MACOSX"]
    if len(entries) == 1 and entries[0].is_dir() and (entries[0] / GRADESCOPE_METADATA).is_file():
        return entries[0]
    return folder


def _read(folder: Path, out: Path) -> tuple[str, list[Submission], list[str]]:
    """Which LMS the folder comes from, its students and the entries that are none."""
    if (folder / GRADESCOPE_METADATA).is_file():
        return "gradescope", *_gradescope(folder)
    entries = [p for p in sorted(folder.iterdir()) if not p.name.startswith(".") and p.name != "__MACOSX"
               and p.resolve() != out.resolve()]
    if any(p.is_file() and CANVAS_FILE.match(p.name) for p in entries):
        return "canvas", *_canvas(folder, entries)
    if any(MOODLE_ENTRY.match(p.name) for p in entries):
        return "moodle", *_moodle(folder, entries)
    if any(p.is_dir() and (p / ".git").exists() for p in entries):
        return "classroom", *_classroom(entries)
    students, ignored = discover_folders(folder, out)
    return "folders", [Submission(s.name, s.path, s.kind, meta={"lms": "folders", "entry": s.name})
                       for s in students], ignored


# ---- Canvas -------------------------------------------------------------------------------------------------
def canvas_original_name(name: str) -> tuple[str, int]:
    """The file name the student uploaded, and its resubmission number (`ex01-2.py` -> ('ex01.py', 2))."""
    found = RESUBMITTED.match(name)
    return (found["stem"] + found["ext"], int(found["n"])) if found else (name, 0)


def _canvas(folder: Path, entries: list[Path]) -> tuple[list[Submission], list[str]]:
    """Canvas's flat files grouped by user id; of one file uploaded several times, the latest (highest -N)."""
    by_user: dict[str, dict[str, Any]] = {}
    ignored = []
    for path in entries:
        found = CANVAS_FILE.match(path.name) if path.is_file() else None
        if not found:
            ignored.append(path.name)
            continue
        user = by_user.setdefault(found["user"], {"sortable": found["sortable"], "late": False, "files": {},
                                                  "submission": found["submission"]})
        user["late"] = user["late"] or bool(found["late"])
        original, number = canvas_original_name(found["file"])
        kept = user["files"].get(original)
        if kept is None or number > kept[0]:
            user["files"][original] = (number, path)
    names = [u["sortable"] for u in by_user.values()]
    students = []
    for user_id, user in sorted(by_user.items(), key=lambda item: (item[1]["sortable"], item[0])):
        name = user["sortable"] if names.count(user["sortable"]) == 1 else f"{user['sortable']}-{user_id}"
        files = tuple(sorted((original, str(path)) for original, (_, path) in user["files"].items()))
        meta = {"lms": "canvas", "canvas_id": user_id, "sortable": user["sortable"], "late": user["late"],
                "canvas_submission_id": user["submission"]}
        students.append(Submission(safe_name(name), Path(files[0][1]), "files", files=files, meta=meta))
    return students, ignored


# ---- Moodle -------------------------------------------------------------------------------------------------
def _moodle(folder: Path, entries: list[Path]) -> tuple[list[Submission], list[str]]:
    """Moodle's folders (or prefixed flat files) grouped by participant id."""
    by_participant: dict[str, dict[str, Any]] = {}
    ignored = []
    for path in entries:
        found = MOODLE_ENTRY.match(path.name)
        if not found:
            ignored.append(path.name)
            continue
        person = by_participant.setdefault(found["participant"], {"name": found["name"], "files": []})
        if path.is_dir():
            person["files"] += [(p.name, str(p)) for p in _walk(path)]
        elif found["rest"]:
            person["files"].append((found["rest"], str(path)))
        person.setdefault("first", path)
    students = []
    names = [p["name"] for p in by_participant.values()]
    for participant, person in sorted(by_participant.items(), key=lambda item: (item[1]["name"], item[0])):
        name = person["name"] if names.count(person["name"]) == 1 else f"{person['name']}-{participant}"
        meta = {"lms": "moodle", "name": person["name"], "moodle_participant": participant}
        students.append(Submission(safe_name(name), person["first"], "files", files=tuple(person["files"]), meta=meta))
    return students, ignored


def _walk(root: Path) -> list[Path]:
    """Every regular file under a folder (hidden and junk folders skipped, links never followed)."""
    found = []
    for folder, dirs, files in os.walk(root, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in SKIPPED_DIRS)
        found += [Path(folder, name) for name in sorted(files)]
    return found


# ---- GitHub Classroom ---------------------------------------------------------------------------------------
def _classroom(entries: list[Path]) -> tuple[list[Submission], list[str]]:
    """One repository per student: `<assignment>-<login>` folders with a .git; the last commit is the hand-in."""
    repos = [p for p in entries if p.is_dir() and (p / ".git").exists()]
    prefix = os.path.commonprefix([p.name for p in repos]) if len(repos) > 1 else ""
    prefix = prefix[: prefix.rfind("-") + 1] if "-" in prefix else ""
    students = []
    for repo in repos:
        login = repo.name[len(prefix):] or repo.name
        meta = {"lms": "classroom", "github": login, "repository": repo.name, "submitted_at": commit_time(repo)}
        students.append(Submission(safe_name(login), repo, "folder", meta=meta))
    return students, [p.name for p in entries if p not in repos]


def commit_time(repo: Path) -> str:
    """The time of the repository's last commit (ISO 8601), or '' when git cannot tell."""
    try:
        done = subprocess.run(["git", "-c", f"safe.directory={repo.resolve()}", "-C", str(repo), "log", "-1",
                               "--format=%cI"], capture_output=True, text=True, timeout=30,
                              env={**os.environ, "GIT_TERMINAL_PROMPT": "0"})
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


# ---- Gradescope ---------------------------------------------------------------------------------------------
def _gradescope(folder: Path) -> tuple[list[Submission], list[str]]:
    """Gradescope's export: submission_metadata.yml says who handed in each `submission_<id>` folder, and when."""
    metadata = read_gradescope_metadata((folder / GRADESCOPE_METADATA).read_text(encoding="utf-8", errors="replace"))
    students, ignored = [], []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith(".") or entry.name == GRADESCOPE_METADATA:
            continue
        info = metadata.get(entry.name)
        if not entry.is_dir() or info is None:
            ignored.append(entry.name)
            continue
        submitters = info.get("submitters") or [{}]
        first = submitters[0]
        meta = {"lms": "gradescope", "name": first.get("name", ""), "email": first.get("email", ""),
                "id": first.get("sid", ""), "gradescope_submission": entry.name,
                "submitted_at": _iso(info.get("created_at", "")),
                "group": [s.get("name", "") for s in submitters[1:]]}
        name = first.get("sid") or first.get("email") or first.get("name") or entry.name
        students.append(Submission(safe_name(name), entry, "folder", meta=meta))
    return students, ignored


def read_gradescope_metadata(text: str) -> dict[str, dict[str, Any]]:
    """The parts of Gradescope's submission_metadata.yml the grader needs (submitters, created_at), read without a
    YAML library: it is Ruby's YAML of a hash `submission_<id>: {:submitters: [{:name:, :sid:, :email:}], ...}`."""
    result: dict[str, dict[str, Any]] = {}
    current: dict[str, Any] | None = None
    person: dict[str, str] | None = None
    section = ""
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#") or line.startswith("---"):
            continue
        indent = len(line) - len(line.lstrip(" "))
        stripped = line.strip()
        if indent == 0:
            current = result.setdefault(stripped.rstrip(":").strip("'\""), {"submitters": []}) \
                if stripped.endswith(":") else None
            person, section = None, ""
            continue
        if current is None:
            continue
        item = stripped.startswith("- ")
        key, _, value = stripped.removeprefix("- ").partition(": ")
        key, value = key.strip().lstrip(":").rstrip(":"), _scalar(value)
        if indent == 2 and not item:  # a key of the submission: the submitters' list, created_at, results...
            section, person = key, None
            if key in ("created_at", "score"):
                current[key] = value
            continue
        if section != "submitters":
            continue
        if item and indent == 2:
            person = {}
            current["submitters"].append(person)
        if person is not None and key in ("name", "sid", "email"):
            person[key] = value
    return result


def _scalar(text: str) -> str:
    """A YAML scalar as text: quotes taken off."""
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    return text


def _iso(text: str) -> str:
    """Gradescope's `2024-03-01 17:02:03.123456789 -0800` as ISO 8601 ('' when it is not a time)."""
    found = re.match(r"(\d{4}-\d\d-\d\d)[ T](\d\d:\d\d:\d\d)(?:\.\d+)?\s*(Z|[+-]\d\d:?\d\d)?", text.strip())
    if not found:
        return ""
    zone = (found[3] or "").replace("Z", "+00:00")
    if zone and ":" not in zone:
        zone = zone[:3] + ":" + zone[3:]
    try:
        return datetime.fromisoformat(f"{found[1]}T{found[2]}{zone}").isoformat()
    except ValueError:
        return ""


# ---- the roster ---------------------------------------------------------------------------------------------
def match_roster(found: Discovered, roster: Roster) -> Discovered:
    """Name each student by their roster id and record who they are; say who is not on it and who handed nothing."""
    students, matched = [], set()
    for submission in found.students:
        meta = dict(submission.meta)
        known = {k: str(v) for k, v in meta.items() if isinstance(v, str)}
        known.setdefault("name", meta.get("name", ""))
        if found.lms == "folders":
            known.update(id=submission.name, username=submission.name, email=submission.name, name=submission.name)
        if found.lms == "classroom":
            known["github"] = meta.get("github", "")
        person = roster.match(**known)
        if person is None or person.id in matched:
            found.unmatched.append(submission.name)
            students.append(submission)
            continue
        matched.add(person.id)
        meta["student"] = person.to_dict()
        students.append(Submission(safe_name(person.id), submission.path, submission.kind, files=submission.files,
                                   meta=meta))
    found.students = students
    found.absent = [p for p in roster.people if p.id not in matched]
    return found


# ---- zips ---------------------------------------------------------------------------------------------------
def unpack(archive: Path, out: Path) -> Path:
    """An LMS zip unpacked into the gradebook's download folder (regular files only, no path from outside it),
    once per content: a rerun with the same zip reuses it, and a folder in use is never rewritten under a batch."""
    digest = hashlib.sha256()
    try:
        with open(archive, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    except OSError as exc:
        raise BatchError(f"{archive}: cannot be read ({exc})") from None
    downloads = out / DOWNLOAD_DIR
    target = downloads / f"{archive.stem}-{digest.hexdigest()[:12]}"
    if target.is_dir():
        return target
    downloads.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".unpacking-", dir=downloads))
    try:
        _extract(archive, stage)
        os.replace(stage, target)
    except OSError:
        if not target.is_dir():
            raise
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    for older in downloads.glob(f"{glob.escape(archive.stem)}-*"):  # earlier downloads of the same name
        if older != target and len(older.name) == len(target.name):
            shutil.rmtree(older, ignore_errors=True)
    return target


def _extract(archive: Path, target: Path) -> None:
    """Every regular file of the zip under `target`, by its own relative path (nothing leaves `target`)."""
    try:
        with zipfile.ZipFile(archive) as zipped:
            for info in zipped.infolist():
                parts = [p for p in PurePosixPath(info.filename.replace("\\", "/")).parts if p not in ("", ".", "/")]
                if info.is_dir() or not parts or ".." in parts or stat.S_ISLNK(info.external_attr >> 16):
                    continue
                if info.file_size > MEMBER_LIMIT:
                    continue
                destination = target.joinpath(*parts)
                destination.parent.mkdir(parents=True, exist_ok=True)
                with zipped.open(info) as member, open(destination, "wb") as f:
                    f.write(member.read(MEMBER_LIMIT))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, RuntimeError, NotImplementedError, EOFError,
            ValueError) as exc:
        raise BatchError(f"{archive}: cannot be unpacked ({exc})") from None
