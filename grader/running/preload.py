"""Everything a grader process imports after student code has run, imported before any runs: a module is read from
disk once, so a renderer, a standard-library module or a lazily loaded table that a submission rewrote, or a
.pyc it planted beside one, is never loaded by the command that judged it (where the student could write them at
all: at the none level as the grader's own user; the read-only views and the uid drop make them unwritable).

Called by every process before its first student process starts (the runner, the worker pool, the batch) and
by the parent of a worker before the worker starts (it renders the outputs afterwards). Cached: once per process.
tests/test_isolation.py records what `grader check`, `grader ci` (every output) and `grader batch` import after
their first student process started and asserts that it is nothing."""
from __future__ import annotations

import functools
import importlib

# What the commands import lazily after grading: the renderers (terminal, HTML with jinja2, JSON, JUnit with
# ElementTree and expat, Gradescope, Classroom), the views of hidden checks, and what those load at first use.
MODULES = (
    "grader.results", "grader.atomic", "grader.render.terminal", "grader.render.html", "grader.render.jsonfile",
    "grader.render.junit", "grader.render.gradescope", "grader.render.classroom", "grader.render.latest",
    "grader.render.timeline", "grader.render.source", "grader.lms.hidden", "grader.lms.student_view",
    "xml.etree.ElementTree", "xml.etree.ElementPath", "pyexpat", "_elementtree", "fractions", "email.parser",
    "email.feedparser", "encodings.unicode_escape", "encodings.latin_1", "encodings.ascii", "csv", "zipfile",
    "importlib.metadata", "webbrowser", "traceback",
    "jinja2", "jinja2.compiler", "jinja2.lexer", "jinja2.parser", "jinja2.optimizer", "jinja2.idtracking",
    "jinja2.visitor", "jinja2.nodes", "jinja2.filters", "jinja2.tests", "jinja2.defaults", "jinja2.runtime",
    "jinja2.async_utils", "jinja2._identifier", "markupsafe", "rich.console", "rich.markup", "rich.table", "rich.text", "rich.cells",
)


@functools.cache
def before_student_code() -> None:
    """Import MODULES and make what they build at first use (rich's table of character widths)."""
    for name in MODULES:
        try:
            importlib.import_module(name)
        except ImportError:  # an optional part (an extra not installed): the command cannot load it later either
            continue
    from rich.cells import cell_len

    cell_len("é漢\u200d")  # rich reads its table of character widths at the first wide character
    # The templates are not compiled here: jinja2 reads a template's file again whenever it changed (an
    # instructor's restyling shows at the next render), so they are protected only where the package is read-only.
