"""The results model as JSON (what `--json PATH` writes)."""
from __future__ import annotations

import json

from grader.results import Report


def render(report: Report) -> str:
    return json.dumps(report.to_dict(), indent=2, default=str)
