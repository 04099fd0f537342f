"""Renderers of the results model: they import grader.results (and the probe's event names), nothing of the
runner or of judging. Each module has `render(report: Report, **options)`, which returns the document it
makes: text for terminal, jsonfile, junit and html (whose write_reports also writes the pages), a JSON-ready
dict for gradescope and classroom (the command writes it). A gradebook's class summary page renders a
Gradebook, not a Report: it lives with the gradebook (grader/gradebook/summary.py)."""
