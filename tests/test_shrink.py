"""A failing schedule is shrunk (issue 10): the failing trial is replayed alone under the same seed with fewer
forced switches, and the reason states the smallest replay that still broke the invariant, its interleaving
taken from that replay."""
from __future__ import annotations

import re

from conftest import FIXES
from grader.results import FAILED

REPLAYED = re.compile(r"The grader replayed this trial alone, with the same seed and (?:only (?P<kept>\d+) of|none of"
                      r"|the same (?P<same>\d+)) its (?P<before>\d+) forced switch(?:es)?(?: \(where| )")


def _after_replay(report, check: str) -> str:  # noqa: ANN001 - a Report
    """The failed check's reason after its sentence on the shrunk replay, which must state no more switches
    than the judged run forced."""
    result = next(c for c in report.all_checks() if c.id.endswith(check))
    assert result.outcome == FAILED, result
    stated = REPLAYED.search(result.message)
    assert stated, result.message
    assert int(stated["kept"] or stated["same"] or 0) <= int(stated["before"])
    return result.message[stated.end():]


def test_an_oversold_trial_is_told_from_its_shrunk_replay(graded) -> None:
    after = _after_replay(graded(1, FIXES / "ex01" / "wrong_lock_only_read.py"), "check_no_ticket_is_oversold")
    # what the replay still showed, then its own interleaving: two buyers read the same count
    assert re.search(r"and (\d+) buyers still got a ticket\. Buyer \d+ of \d+ \(trial \d+\) read count=(\d+) at line "
                     r"\d+ .*; buyer \d+ of \d+ \(trial \d+\) read count=\2", after), after


def test_a_lost_update_is_told_from_its_shrunk_replay(graded) -> None:
    after = _after_replay(graded(8, FIXES / "ex08" / "wrong_no_lock.py"), "check_total_exact")
    assert re.search(r"and the total still ended at (\d+) instead of (\d+)\. Worker \d+ of \d+ \(trial \d+\) read "
                     r"total=(\d+)", after), after
