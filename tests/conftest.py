"""Shared helpers of the grader's own tests: grading one file as a submission."""
from __future__ import annotations

import ast
import os
import shutil
import signal
import time
from pathlib import Path

import pytest

from grader.judging import session
from grader.course import find_exercise
from grader.results import FAILED, PASSED, SKIPPED, CheckResult, Report

ROOT = Path(__file__).resolve().parent.parent
FIXES = Path(__file__).resolve().parent / "fixes"
NOT_JUDGED = "Not judged:"


def grade_file(number: int, source: Path, tmp_path: Path, *, seed: int | None = None,
               start_method: str | None = None) -> Report:
    """Grade `source` as the student's file of exercise `number` (copied under its contract name)."""
    exercise = find_exercise(number)
    folder = tmp_path / f"submission-{source.stem}"
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, folder / exercise.filename)
    return session.grade([exercise], folder, seed=seed, start_method=start_method)


def _code_of(line: str) -> str:
    """A line's statement without its comment and surrounding blanks ('' for comments and blank lines)."""
    return line.split("#", 1)[0].strip()


def fixed_lines(number: int) -> list[str]:
    """The statements of the reference solution that the stub does not have (its fix), each with the right
    side of an assignment too: what no message or hint may quote. Statements of under 10 characters
    (`return`, `try:`) and docstring text are too general to hand anything over."""
    exercise = find_exercise(number)
    stub = {_code_of(line) for line in (ROOT / "exercises" / exercise.filename).read_text().splitlines()}
    solution = (ROOT / "solutions" / exercise.filename).read_text()
    docstrings = {line.strip() for node in ast.walk(ast.parse(solution))
                  if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef)) and ast.get_docstring(node)
                  for line in (ast.get_docstring(node, clean=False) or "").splitlines()}
    found: list[str] = []
    for line in solution.splitlines():
        code = _code_of(line)
        if code in stub or code in docstrings or code.startswith(('"""', "'" * 3)) or code.endswith('"""'):
            continue
        found += [code] + ([code.split(" = ", 1)[1]] if " = " in code else [])
    return [code for code in dict.fromkeys(found) if len(code) >= 10]


def fixes(number: int, kind: str) -> list[Path]:
    """The corpus of fixes of one exercise: kind is 'wrong' or 'correct' (tests/fixes/exNN/KIND_*.py)."""
    return sorted((FIXES / f"ex{number:02d}").glob(f"{kind}_*.py"))


def outcomes(report: Report) -> dict[str, str]:
    """check id without the exercise prefix -> outcome, e.g. {'check_no_ticket_is_oversold': 'failed'}."""
    return {c.id.split("::", 1)[1]: c.outcome for c in report.all_checks()}


@pytest.fixture
def grade(tmp_path: Path):
    """grade(number, path, **kw) -> Report, in a fresh temporary submission folder."""

    def _grade(number: int, source: Path, **kwargs: object) -> Report:
        return grade_file(number, source, tmp_path, **kwargs)  # type: ignore[arg-type]

    return _grade


@pytest.fixture(scope="session")
def graded(tmp_path_factory: pytest.TempPathFactory):
    """graded(number, path) -> Report, graded once per session: the corpus tests of each exercise and the
    corpus-wide feedback test (test_fixes_whole_corpus.py) judge the same reports instead of grading twice."""
    cache: dict[tuple[int, Path], Report] = {}

    def _graded(number: int, source: Path) -> Report:
        key = (number, Path(source).resolve())
        if key not in cache:
            cache[key] = grade_file(number, source, tmp_path_factory.mktemp(f"ex{number:02d}-{Path(source).stem}"))
        return cache[key]

    return _graded


def by_check(report: Report) -> dict[str, CheckResult]:
    """check id without the exercise prefix -> its result."""
    return {c.id.split("::", 1)[1]: c for c in report.all_checks()}


def summary(report: Report) -> list[tuple[str, str, str]]:
    """Every check's id, outcome and reason, for assertion messages."""
    return [(c.id, c.outcome, c.message) for c in report.all_checks()]


def line_of(path: Path, text: str) -> int:
    """The number of the only line of `path` that contains `text` (to point at the stub's lines)."""
    lines = [n for n, line in enumerate(path.read_text().splitlines(), 1) if text in line]
    assert len(lines) == 1, (text, lines)
    return lines[0]


def assert_fails_exactly(report: Report, checks: set[str], expected: dict[str, str]) -> None:
    """The checks of `expected` fail, each with its piece of reason; every other check passes."""
    results = by_check(report)
    assert set(results) == checks
    for check_id, result in results.items():
        if check_id in expected:
            # "Not judged: ..." expects the check not judged (its prerequisite failed in another check)
            wanted = SKIPPED if expected[check_id].startswith(NOT_JUDGED) else FAILED
            assert result.outcome == wanted, (check_id, summary(report))
            assert expected[check_id] in result.message, (check_id, result.message)
        else:
            assert result.outcome == PASSED, (check_id, summary(report))
    assert report.exit_code() == 1


def marked_processes(marker: str) -> list[int]:
    """Processes anywhere on the machine whose environment carries this test's marker."""
    needle = f"BATCH_TEST_MARKER={marker}".encode()
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit() and int(name) != os.getpid():
            try:
                with open(f"/proc/{name}/environ", "rb") as f:
                    if needle in f.read():
                        found.append(int(name))
            except OSError:
                continue
    return found


def wait_until_gone(marker: str, seconds: float = 10) -> list[int]:
    """The marked processes still there after up to `seconds` (a killed process takes a moment to go)."""
    deadline = time.monotonic() + seconds
    while (left := marked_processes(marker)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def default_sigint() -> None:
    """preexec_fn for a child that a test interrupts with SIGINT, as Ctrl-C would: a test run started in
    the background (nohup, some CI runners) inherits SIGINT ignored, and Python keeps ignoring it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
