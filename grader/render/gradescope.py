"""Gradescope's autograder results (results.json, as its "Autograder Specifications" document it), and the
autograder zip (setup.sh and run_autograder at its root) that installs the grader in Gradescope's container
and grades /autograder/submission into /autograder/results/results.json."""
from __future__ import annotations

import importlib.metadata
import shlex
import stat
import time
import zipfile
from pathlib import Path
from typing import Any

import grader
from grader.render.junit import evidence_text
from grader.results import ERROR, FAILED, PASSED, CheckResult, Evidence, ExerciseResult, Report, replay_command

VISIBILITIES = ("hidden", "after_due_date", "after_published", "visible")
OUTPUT_LIMIT = 12000  # characters of one test's output: Gradescope shows it collapsed in a <pre>
SOURCE_DIR = "grader-src"
_ZIP_TIME = time.localtime(1_700_000_000)[:6]  # fixed timestamps: the same grader gives the same zip


def render(report: Report, visibility: str = "visible", stdout_visibility: str = "hidden",
           hidden: set[str] | frozenset[str] = frozenset(), penalty: float = 0.0, late_note: str = "") -> dict[str, Any]:
    """The results.json document for one submission; `hidden` checks are shown by Gradescope after the due date
    only, and `penalty` points are taken off the score for late work."""
    tests = [_test(i, j, exercise, check, "after_due_date" if check.id in hidden else visibility,
                   report.evidence_of(check))
             for i, exercise in enumerate(report.exercises, 1) for j, check in enumerate(exercise.checks, 1)]
    overview = _overview(report, hidden)
    if penalty:
        overview += f"\nLate: {late_note}; {penalty:g} points taken off, score {max(0.0, report.score - penalty):g}."
    return {
        "score": max(0.0, round(report.score - penalty, 6)),
        "execution_time": max(0, round(report.duration)),
        "output": overview,
        "output_format": "text",
        "test_output_format": "text",
        "test_name_format": "text",
        "visibility": visibility,
        "stdout_visibility": stdout_visibility,
        "extra_data": {"grader_version": report.grader_version, "seed": report.seed,
                       "start_method": report.start_method, "max_score": report.max_score,
                       "isolation": report.isolation},
        "tests": tests,
    }


def _test(index: int, number: int, exercise: ExerciseResult, check: CheckResult, visibility: str,
          evidence: Evidence | None) -> dict[str, Any]:
    """One check as a Gradescope test."""
    return {
        "score": check.points,
        "max_score": check.max_points,
        "status": "passed" if check.outcome == PASSED else "failed",
        "name": f"Exercise {exercise.number}: {check.title}",
        "name_format": "text",
        "number": f"{index}.{number}",
        "output": _output(exercise, check, evidence),
        "output_format": "text",
        "tags": [f"ex{exercise.number:02d}", check.outcome],
        "visibility": visibility,
        "extra_data": {"check": check.id, "outcome": check.outcome, "seed": check.seed},
    }


def _output(exercise: ExerciseResult, check: CheckResult, evidence: Evidence | None) -> str:
    """What a student reads under a test: the reason and evidence of a failure, or just 'Passed.'."""
    if check.outcome == PASSED:
        return "Passed."
    rerun = f"`grader check {exercise.number} --seed {check.seed}` in your course folder"
    text = evidence_text(check, exercise, evidence, elsewhere=f"shown when you run {rerun}")
    if len(text) <= OUTPUT_LIMIT:
        return text
    pointer = f"\n[... cut: Gradescope shows the first part; run {rerun} to see the whole run ...]"
    return text[: OUTPUT_LIMIT - len(pointer)] + pointer


def local_replay(report: Report) -> str:
    """The command that replays these runs in the student's own course folder (not Gradescope's paths)."""
    method = report.start_method if report.start_method not in ("", "default") else None
    return replay_command([e.number for e in report.exercises], report.seed, None, method)


def _overview(report: Report, hidden: set[str] | frozenset[str] = frozenset()) -> str:
    """The submission's output: the score, the counts (of the checks shown) and how to replay the runs."""
    checks = [c for c in report.all_checks() if c.id not in hidden]
    passed = sum(c.outcome == PASSED for c in checks)
    failed = sum(c.outcome == FAILED for c in checks)
    errors = sum(c.outcome == ERROR for c in checks)
    if hidden:
        shown = sum(c.points for c in checks)
        lines = [f"{shown:g}/{sum(c.max_points for c in checks):g} points of the checks shown now: {passed} passed, "
                 f"{failed} failed" + (f", {errors} could not run (a grader error, not your fault)" if errors else "")
                 + f". {len(hidden)} more checks are shown after the due date."]
    else:
        lines = [f"{report.score:g}/{report.max_score:g} points: {passed} checks passed, {failed} failed"
                 + (f", {errors} could not run (a grader error, not your fault)" if errors else "") + "."]
    if failed or errors:
        lines.append(f"Graded on Gradescope with seed {report.seed}. To run the same checks on your own machine, "
                     f"run `{local_replay(report)}` in your course folder.")
    if report.isolation:
        lines.append(f"Isolation: {report.isolation}")
    return "\n".join(lines)


# ---- the autograder zip -------------------------------------------------------------------------------------
SETUP_SH = """#!/usr/bin/env bash
# Gradescope runs this once, as root, when it builds the autograder's image: install Python >= 3.11,
# bubblewrap (student runs are isolated with it where the container allows) and the grader in a virtualenv.
set -euo pipefail
ROOT="${AUTOGRADER_ROOT:-/autograder}"
export DEBIAN_FRONTEND=noninteractive
if command -v apt-get >/dev/null; then
    apt-get update -q
    apt-get install -y -q python3 python3-venv python3-pip bubblewrap || apt-get install -y -q python3 python3-venv
fi
PYTHON=""
for candidate in python3.13 python3.12 python3.11 python3; do
    if command -v "$candidate" >/dev/null && "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
        PYTHON="$candidate"; break
    fi
done
if [ -z "$PYTHON" ] && command -v apt-get >/dev/null; then
    apt-get install -y -q python3.11 python3.11-venv && PYTHON=python3.11
fi
if [ -z "$PYTHON" ]; then
    echo "setup.sh: the grader needs Python 3.11 or newer; pick a newer base image in the autograder settings" >&2
    exit 1
fi
"$PYTHON" -m venv "$ROOT/venv"
"$ROOT/venv/bin/pip" install -q "$ROOT/source/__SOURCE__"
# Student code runs as an unprivileged uid of its own (the grader drops root for it): that uid must be able to
# run the virtualenv's Python and read the probe, and nothing more.
chmod a+rx "$ROOT"
chmod -R a+rX "$ROOT/venv"
"$ROOT/venv/bin/grader" list
"""

RUN_AUTOGRADER = """#!/usr/bin/env bash
# Gradescope runs this for every submission: grade /autograder/submission (the exercise files are found by
# name anywhere inside it) into /autograder/results/results.json. It always leaves a results.json behind.
ROOT="${AUTOGRADER_ROOT:-/autograder}"
RESULTS="$ROOT/results/results.json"
mkdir -p "$ROOT/results"
rm -f "$RESULTS"
cd "$ROOT" || exit 1
METADATA=()
[ -f "$ROOT/submission_metadata.json" ] && METADATA=(--submission-metadata "$ROOT/submission_metadata.json")
# Never run student code as root: if the grader cannot drop to an unprivileged uid, it stops (a grader error).
export GRADER_REQUIRE_UID_DROP="${GRADER_REQUIRE_UID_DROP:-1}"
"$ROOT/venv/bin/grader" ci __NUMBERS__--submission "$ROOT/submission" --gradescope "$RESULTS" "${METADATA[@]}"
code=$?
if [ ! -s "$RESULTS" ]; then
    cat > "$RESULTS" <<EOF
{"score": 0, "output": "The grader could not run (exit code $code): this is not your fault. Please tell your instructor.", "output_format": "text", "tests": []}
EOF
fi
exit 0
"""


def bundle(path: Path, numbers: list[int] | None = None, assignment: str | None = None) -> Path:
    """Write the autograder zip: setup.sh and run_autograder at its root, the grader's source beside them."""
    numbers_arg = "".join(f"{n} " for n in numbers or []) + (f"--assignment {shlex.quote(assignment)} " if assignment else "")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        _add(archive, "setup.sh", SETUP_SH.replace("__SOURCE__", SOURCE_DIR), executable=True)
        _add(archive, "run_autograder", RUN_AUTOGRADER.replace("__NUMBERS__", numbers_arg), executable=True)
        _add(archive, f"{SOURCE_DIR}/pyproject.toml", _pyproject())
        package = Path(grader.__file__).parent
        for file in sorted(package.rglob("*")):
            rel = file.relative_to(package).as_posix()
            if file.is_file() and "__pycache__" not in rel and file.suffix != ".pyc":
                _add(archive, f"{SOURCE_DIR}/grader/{rel}", file.read_bytes())
    return path


def _add(archive: zipfile.ZipFile, name: str, data: str | bytes, executable: bool = False) -> None:
    """One file of the zip, with fixed timestamps and its permissions."""
    info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
    mode = 0o755 if executable else 0o644
    info.external_attr = (stat.S_IFREG | mode) << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    archive.writestr(info, data)


def _pyproject() -> str:
    """A minimal pyproject.toml that installs this grader (same version, dependencies and entry points)."""
    try:
        requires = [r for r in importlib.metadata.requires("grader") or [] if "extra ==" not in r]
    except importlib.metadata.PackageNotFoundError:
        requires = ["pytest>=7.4", "pytest-timeout>=2.2", "jinja2>=3.1", "psutil>=5.9", "rich>=13"]
    version = grader.__version__.split("+")[0] if grader.__version__[0].isdigit() else "0.0.0"
    dependencies = ",\n".join(f'    "{r}"' for r in requires)
    return f"""[build-system]
requires = ["setuptools>=64"]
build-backend = "setuptools.build_meta"

[project]
name = "grader"
version = "{version}"
requires-python = ">=3.11"
dependencies = [
{dependencies},
]

[project.scripts]
grader = "grader.commands.cli:main"

[project.entry-points.pytest11]
"grader.judging.plugin" = "grader.judging.plugin"

[tool.setuptools.packages.find]
include = ["grader*"]

[tool.setuptools.package-data]
grader = ["*.toml", "templates/*", "probe/*.py"]
"""
