"""Hints teach the concept and never hand over the fixed line: no hint of course.toml and no text of a check
module quotes a statement of the reference solution that the stub lacks (tests/conftest.py fixed_lines)."""
from __future__ import annotations

import ast
import inspect
import importlib

import pytest

from conftest import fixed_lines
from grader.course import load_course


def _texts(module_name: str) -> list[str]:
    """Every string a check module can put into a message or hint (f-strings by their constant parts)."""
    tree = ast.parse(inspect.getsource(importlib.import_module(module_name)))
    texts = [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)]
    texts += ["".join(v.value for v in n.values if isinstance(v, ast.Constant)) for n in ast.walk(tree)
              if isinstance(n, ast.JoinedStr)]
    return texts


@pytest.mark.parametrize("exercise", load_course(), ids=lambda e: f"ex{e.number:02d}")
def test_no_hint_or_message_text_quotes_the_fix(exercise) -> None:  # noqa: ANN001 - an Exercise
    fixed = fixed_lines(exercise.number)
    declared = [text for info in exercise.declared_checks for text in (info.title, info.hint)]
    for text in [*exercise.hints, *declared, *_texts(exercise.checks)]:
        quoted = [line for line in fixed if line in text]
        assert not quoted, f"ex{exercise.number:02d} quotes its fix {quoted}: {text!r}"


def test_the_fixed_lines_are_found() -> None:
    """The diff really finds the fixes (a helper that finds nothing would make the test above pass always)."""
    assert fixed_lines(3) == ["worker = Process(target=heartbeat, args=(path,), daemon=True)",
                              "Process(target=heartbeat, args=(path,), daemon=True)"]
    assert "q.put(job, timeout=patience)" in fixed_lines(6) and "with lock:" in fixed_lines(1)
