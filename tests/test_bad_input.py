"""Bad input gets a clear answer: every broken submission is a failing check with a message a student
understands (file and line where they apply), never a grader error, a hang or a leftover process."""
from __future__ import annotations

import time
from pathlib import Path

import psutil
import pytest

from conftest import ROOT
from grader.judging import session
from grader.course import find_exercise
from grader.results import ERROR, FAILED, SKIPPED

STUB = (ROOT / "exercises" / "ex01_oversold_ticket.py").read_text()


def _grade_source(tmp_path: Path, source: str):
    folder = tmp_path / "submission"
    folder.mkdir()
    (folder / "ex01_oversold_ticket.py").write_text(source)
    return session.grade([find_exercise(1)], folder)


def _messages(report) -> set[str]:
    assert report.exit_code() == 1, [(c.outcome, c.message, c.traceback) for c in report.all_checks()]
    checks = report.all_checks()
    failed = [c for c in checks if c.outcome == FAILED]
    assert len(failed) == 1, [(c.outcome, c.message) for c in checks]  # one cause, said once
    assert all(c.outcome == SKIPPED and c.depends_on == failed[0].id for c in checks if c is not failed[0])
    return {failed[0].message}


CASES = {
    "syntax error": ("def buy_ticket(db_path, lock)\n    pass\n", ["Python cannot read", "SyntaxError", "line 1"]),
    "missing function": (STUB.replace("def buy_ticket(", "def purchase("), ["has no `buy_ticket`"]),
    "wrong signature": (STUB.replace("def buy_ticket(db_path, lock):", "def buy_ticket(db_path):"),
                        ["cannot be called as buy_ticket(db_path, lock)"]),
    "crash at import": ("import json\n\nx = 1 / 0\n", ["raised ZeroDivisionError at line 3"]),
    "endless loop at import": ("while True:\n    try:\n        pass\n    except BaseException:\n        pass\n",
                               ["never finished", "line"]),
    "sys.exit at import": ("import sys\nsys.exit(0)\n", ["called sys.exit(0) at line 2"]),
    "os._exit at import": ("import os\nos._exit(0)\n", ["ended the program while it was being imported"]),
    "sys.exit in main": (STUB.replace('    lock = Lock()\n', '    import sys\n    sys.exit(0)\n'),
                         ["called sys.exit(0) during main()"]),
    "megabytes of output": (STUB.replace('    lock = Lock()\n', '    while True:\n        print("x" * 1000)\n'),
                            ["printed more output than the grader keeps"]),
    "runaway forking": (STUB.replace('    lock = Lock()\n', '    import os\n    for _ in range(300):\n'
                                     '        if os.fork() == 0:\n            import time; time.sleep(30); os._exit(0)\n'),
                        ["far more processes"]),
}


@pytest.mark.parametrize("case", CASES, ids=str)
def test_bad_submission_fails_with_a_clear_message(case: str, tmp_path: Path) -> None:
    source, fragments = CASES[case]
    started = time.monotonic()
    report = _grade_source(tmp_path, source)
    message = next(iter(_messages(report)))
    for fragment in fragments:
        assert fragment in message, message
    assert time.monotonic() - started < 30
    assert not [p for p in psutil.Process().children(recursive=True) if p.status() != psutil.STATUS_ZOMBIE]


def test_missing_file_fails_and_names_it(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    report = session.grade([find_exercise(1)], tmp_path / "empty")
    message = next(iter(_messages(report)))
    assert "ex01_oversold_ticket.py is missing" in message


def test_a_grader_bug_is_an_error_not_a_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """If a check itself breaks, the student reads 'not your fault' and the exit code is 2, never 0."""
    import grader.checks.ex01 as checks

    monkeypatch.setattr(checks, "_trial", lambda *a, **k: 1 / 0)
    report = session.grade([find_exercise(1)], ROOT / "solutions")
    assert {c.outcome for c in report.all_checks()} == {ERROR}
    assert "not your fault" in report.all_checks()[0].message
    assert "ZeroDivisionError" in (report.all_checks()[0].traceback or "")
    assert report.exit_code() == 2
