"""The course self-check (as in rustlings): the metadata matches the files and the check modules, every
solution passes every check, and every stub fails."""
from __future__ import annotations

import ast
import importlib
import types

import pytest

from conftest import ROOT, outcomes
from grader.judging import session
from grader.judging.harness import CheckDeclarationError, check, require_metadata_agrees
from grader.course import load_course
from grader.results import ERROR, FAILED, PASSED

COURSE = load_course()
IDS = [e.name for e in COURSE]
# exercise -> (a check the stub must fail, a piece of its reason): the bug each stub is named for
STUB_REASONS = {
    1: ("check_no_ticket_is_oversold", "got a ticket"),
    2: ("check_program_ends", "never received a sentinel"),
    3: ("check_program_ends_after_work", "non-daemonic child"),
    4: ("check_no_double_acquire", "while it already holds"),
}


def _check_functions(module_name: str) -> list:
    module = importlib.import_module(module_name)
    return [getattr(module, n) for n in dir(module) if n.startswith("check_") and callable(getattr(module, n))]


@pytest.mark.parametrize("exercise", COURSE, ids=IDS)
def test_metadata_matches_files_and_checks(exercise) -> None:
    stub, solution = ROOT / "exercises" / exercise.filename, ROOT / "solutions" / exercise.filename
    assert stub.is_file() and solution.is_file()
    assert exercise.name.startswith(f"ex{exercise.number:02d}_")
    assert exercise.hints, "every exercise has at least one hint"
    checks = _check_functions(exercise.checks)
    assert checks, "every exercise has checks"
    points = sum(m.kwargs["points"] for c in checks for m in c.pytestmark if m.name == "grader_check")
    assert points == exercise.points


@pytest.mark.parametrize("exercise", COURSE, ids=IDS)
def test_every_check_has_its_metadata_and_every_entry_a_check(exercise) -> None:
    """course.toml gives each check function of the module its title, points and hint, word for word, and names
    no check the module lacks."""
    checks = {c.__name__: c for c in _check_functions(exercise.checks)}
    assert sorted(checks) == sorted(info.name for info in exercise.declared_checks)
    for info in exercise.declared_checks:
        marks = [m for m in checks[info.name].pytestmark if m.name == "grader_check"]
        assert len(marks) == 1
        assert (marks[0].kwargs["title"], marks[0].kwargs["points"], marks[0].kwargs["hint"]) == (
            info.title, info.points, info.hint)
        assert info.title and info.hint and info.points > 0


def test_a_check_without_metadata_fails_when_declared() -> None:
    namespace: dict = {"EXERCISE": 1}
    exec("def check_not_in_the_course(student, runs): pass", namespace)
    with pytest.raises(CheckDeclarationError, match=r"check_not_in_the_course has no title, points and hint .*"
                                                    r"\[exercise\.check\.check_not_in_the_course\] to exercise 1"):
        check()(namespace["check_not_in_the_course"])


def test_metadata_naming_no_check_fails_at_collection() -> None:
    """A module defining only one of exercise 1's checks: course.toml's other entries are named."""
    module = types.ModuleType("grader.checks.partial")
    module.EXERCISE = 1
    exec("def check_no_ticket_is_oversold(student, tickets): pass", vars(module))
    module.check_no_ticket_is_oversold = check()(module.check_no_ticket_is_oversold)
    with pytest.raises(CheckDeclarationError) as error:
        require_metadata_agrees(module)
    assert "check_file_matches_sales" in str(error.value) and "check_buyers_are_concurrent" in str(error.value)
    assert "check_no_ticket_is_oversold" not in str(error.value) and "grader.checks.partial" in str(error.value)
    require_metadata_agrees(importlib.import_module("grader.checks.ex01"))  # the real module agrees


@pytest.mark.parametrize("exercise", COURSE, ids=IDS)
def test_stub_is_runnable_and_marks_the_fix(exercise) -> None:
    source = (ROOT / "exercises" / exercise.filename).read_text()
    tree = ast.parse(source)
    assert ast.get_docstring(tree), "the stub explains the task in its docstring"
    assert "# TODO" in source
    assert "# TODO" not in (ROOT / "solutions" / exercise.filename).read_text()


@pytest.mark.parametrize("exercise", COURSE, ids=IDS)
def test_solution_passes_every_check(exercise) -> None:
    report = session.grade([exercise], ROOT / "solutions")
    assert set(outcomes(report).values()) == {PASSED}, [(c.title, c.message) for c in report.all_checks()]
    assert report.exit_code() == 0


@pytest.mark.parametrize("exercise", COURSE, ids=IDS)
def test_stub_fails(exercise) -> None:
    report = session.grade([exercise], ROOT / "exercises")
    results = report.all_checks()
    assert not [c for c in results if c.outcome == ERROR], [c.traceback for c in results if c.outcome == ERROR]
    assert any(c.outcome == FAILED for c in results)
    assert report.exit_code() == 1
    if exercise.number in STUB_REASONS:
        check_id, reason = STUB_REASONS[exercise.number]
        named = {c.id.split("::")[1]: c for c in results}[check_id]
        assert named.outcome == FAILED and reason in named.message, named.message
