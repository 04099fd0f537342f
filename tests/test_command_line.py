"""The command line answers bad numbers in one line (exit 2, no traceback), says how to confirm a reset
without a terminal, keeps the replay command whole on any screen, and feedback/index.html lists every
exercise's latest result."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import grade_file
from grader.commands import cli
from grader.render import html, terminal
from grader.results import Report

ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.mark.parametrize("argv", [["hint", "99"], ["hint", "0"], ["reset", "99"], ["watch", "99"], ["check", "0"],
                                  ["reset", "0", "--yes"]])
def test_every_command_taking_n_checks_it(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(argv) == 2
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err and "internal error" not in err
    assert len(err.strip().splitlines()) == 1 and f"no exercise {argv[1]}" in err


def test_reset_without_a_terminal_says_how_to_confirm(capsys: pytest.CaptureFixture[str]) -> None:
    """stdin under pytest is not a terminal: nothing is changed, and the answer names --yes."""
    assert cli.main(["reset", "1"]) == 1
    out = capsys.readouterr().out
    assert "nothing changed" in out and "grader reset 1 --yes" in out


@pytest.fixture(scope="module")
def two_reports(tmp_path_factory: pytest.TempPathFactory) -> tuple[Report, Report]:
    """Two quick checks of two exercises (files that do not load: no student code runs)."""
    folder = tmp_path_factory.mktemp("two")
    first, second = folder / "one.py", folder / "three.py"
    first.write_text("def load(:\n")
    second.write_text("VALUE = 1\n")
    return grade_file(1, first, folder), grade_file(3, second, folder)


def test_the_index_lists_every_exercise_checked(two_reports: tuple[Report, Report], tmp_path: Path) -> None:
    first, second = two_reports
    html.write_reports(first, tmp_path, keep_others=True)
    index = html.write_reports(second, tmp_path, keep_others=True)
    page = index.read_text()
    assert 'href="ex01.html"' in page and 'href="ex03.html"' in page
    assert (tmp_path / "ex01.html").exists() and (tmp_path / "ex03.html").exists()
    html.write_reports(first, tmp_path, keep_others=True)  # checked again: still one row per exercise
    assert index.read_text().count('href="ex01.html"') == 1 and 'href="ex03.html"' in index.read_text()


@pytest.mark.parametrize("columns", ["30", "57", "80"])
def test_the_replay_command_is_never_wrapped(two_reports: tuple[Report, Report], columns: str,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    report = two_reports[0]
    report.command += " --submission /a/very/long/folder/name/of/a/student/with-many-parts/submission"
    monkeypatch.setenv("COLUMNS", columns)
    text = ANSI.sub("", terminal.render(report, color=True))
    assert any(line.endswith(report.command) and report.command in line for line in text.splitlines()), text
