"""Start-up of the students' quick commands (issue 16): `grader list` and `grader hint` import only what they
use. Judged by the modules a real run leaves in sys.modules, never by time (timing lives in bench/)."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# What no quick command needs: the test runner, the file watcher, templates, the report renderers, the
# instructors' and CI's commands, and the entry-point machinery.
NEVER = ["pytest", "_pytest", "watchfiles", "jinja2", "grader.render.html", "grader.render.junit",
         "grader.render.timeline", "grader.judging.session", "grader.commands.batch", "grader.commands.ci",
         "grader.gradebook.workers", "importlib.metadata", "psutil"]
SHOW_MODULES = "import sys, json; from grader.commands import cli; code = cli.main(sys.argv[1:]); " \
               "print(json.dumps(sorted(sys.modules)), file=sys.stderr); sys.exit(code)"


def imported_by(tmp_path: Path, *args: str) -> set[str]:
    """The modules loaded once `grader ARGS` has run to its end, in a scratch course folder."""
    (tmp_path / "exercises").mkdir(exist_ok=True)
    for stub in (ROOT / "exercises").glob("ex0[1-2]_*.py"):
        shutil.copyfile(stub, tmp_path / "exercises" / stub.name)
    done = subprocess.run([sys.executable, "-c", SHOW_MODULES, *args], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60, env={"NO_COLOR": "1", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stderr.strip().splitlines()[-1]))


@pytest.mark.parametrize("args", [["list"], ["hint", "1"]])
def test_quick_commands_import_only_what_they_use(tmp_path: Path, args: list[str]) -> None:
    modules = imported_by(tmp_path, *args)
    assert "grader.commands.daily" in modules  # the command really ran
    assert not [m for m in NEVER if m in modules]
    if args[0] == "hint":
        assert not [m for m in modules if m == "rich" or m.startswith("rich.")]


def test_instructor_commands_still_parse_and_help_lists_them(tmp_path: Path) -> None:
    help_text = subprocess.run([sys.executable, "-m", "grader", "--help"], capture_output=True, text=True,
                               timeout=60).stdout
    for name in ("batch", "merge", "ci", "gradescope-bundle"):
        assert name in help_text
    usage = subprocess.run([sys.executable, "-m", "grader", "batch"], capture_output=True, text=True, timeout=60)
    assert usage.returncode == 2 and "--out" in usage.stderr  # batch's own arguments are declared when run
