"""The student's source lines around a location, shared by the terminal and HTML renderers."""
from __future__ import annotations

from pathlib import Path


def read_source(path: str | Path) -> list[str]:
    """The file's lines (empty when it cannot be read); never raises on bad bytes."""
    try:
        return Path(path).read_bytes().decode("utf-8", "replace").splitlines()
    except OSError:
        return []


def is_library_frame(path: str) -> bool:
    """Frames of Python's standard library and of the probe: folded away in feedback."""
    return "/lib/python" in path or "grader_probe.py" in path or "grader_driver.py" in path


def excerpt(lines: list[str], line: int, context: int = 1) -> list[tuple[int, str]]:
    """(number, text) pairs around `line`, 1-based, clipped to the file."""
    first, last = max(1, line - context), min(len(lines), line + context)
    return [(n, lines[n - 1]) for n in range(first, last + 1)]
