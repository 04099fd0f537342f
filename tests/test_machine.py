"""Verdicts do not depend on the machine (issue 10): a long TMPDIR, a machine too busy to start the student's
processes in time. Each test runs real checks, so they stay few."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT
from grader.running import rundir

LONG = 100  # characters of the TMPDIR the tests give the grader


def _long_tmpdir(tmp_path: Path) -> Path:
    """A folder whose path is LONG characters long (a CI runner's or a home folder's can be)."""
    head = str(tmp_path) + "/"
    path = Path(head + "t" * (LONG - len(head)))
    path.mkdir()
    assert len(str(path)) == LONG
    return path


def test_run_folders_fit_unix_sockets_whatever_the_tmpdir() -> None:
    assert not rundir.fits("/" + "t" * (LONG - 1))
    assert rundir.fits("/tmp")
    assert rundir.fits(rundir.base()) or not any(rundir.fits(b) for b in rundir.SHORT_BASES)


@pytest.mark.parametrize("isolation", ["bwrap", "none"])
def test_solutions_pass_under_forkserver_with_a_long_tmpdir(tmp_path: Path, isolation: str) -> None:
    if isolation == "bwrap" and subprocess.run(["which", "bwrap"], capture_output=True).returncode != 0:
        pytest.skip("bubblewrap is not installed")
    long_tmp = _long_tmpdir(tmp_path)
    results = tmp_path / "results.json"
    env = {**os.environ, "TMPDIR": str(long_tmp), "GRADER_ISOLATION": isolation}
    done = subprocess.run(
        [sys.executable, "-m", "grader", "check", "1", "2", "--submission", str(ROOT / "solutions"),
         "--start-method", "forkserver", "--json", str(results), "--report-dir", str(tmp_path / "feedback")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    checks = [c for e in json.loads(results.read_text())["exercises"] for c in e["checks"]]
    assert checks and {c["outcome"] for c in checks} == {"passed"}, checks
    assert "AF_UNIX" not in done.stdout
    assert not list(long_tmp.iterdir()) or all(not p.name.startswith(rundir.RUN_PREFIX) for p in long_tmp.iterdir())
