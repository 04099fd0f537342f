"""Exercise 2: the stub fails for its reason, every correct fix passes, every wrong fix fails the check it
should, for its reason (each reason piece below must appear in the check's message)."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from conftest import ROOT, fixes, outcomes
from grader.checks import ex02
from grader.results import ERROR, FAILED, PASSED

# fix file stem -> (the check that must fail, pieces of its reason)
WRONG: dict[str, tuple[str, tuple[str, ...]]] = {
    "wrong_timeout_consumer": ("check_consumers_stop_on_sentinel",
                               ("q.get(timeout=0.5) raised queue.Empty", "a slow producer would lose")),
    "wrong_sentinel_or_timeout": ("check_consumers_stop_on_sentinel",
                                  ("q.get(timeout=5) raised queue.Empty", "and returned without a sentinel",
                                   "give up after 5 ms on an empty queue", "a slow producer would lose")),
    "wrong_sentinel_or_long_block": ("check_consumers_stop_on_sentinel",
                                     ("q.get(True, 60) raised queue.Empty", "give up after 5 ms on an empty queue")),
    "wrong_object_sentinel_is": ("check_program_ends",
                                 ("did not recognise it", "`is` never matches an object() sentinel")),
    "wrong_one_sentinel": ("check_program_ends",
                           ("never received a sentinel", "put 1 sentinel(s) for 2 consumers")),
    "wrong_producer_sentinel": ("check_program_ends",
                                ("never received a sentinel", "main() put no sentinel on the queue: the 1 sentinel(s) "
                                 "of this call came from producer")),
    "wrong_sentinels_before_join": ("check_every_item_consumed_once",
                                    ("were never consumed", "before every producer had finished")),
    "wrong_falsy_stop": ("check_every_item_consumed_once",
                         ("it took an item for a sentinel", "0, '' and False are items too")),
    "wrong_empty_check": ("check_consumers_stop_on_sentinel", ("without receiving a sentinel",)),
    "wrong_consume_sentinel": ("check_every_item_consumed_once",
                               ("which is not an item", "it is the sentinel main() put")),
    "wrong_two_consumers_always": ("check_main_starts_and_waits",
                                   ("started 2 consumer process(es), but the consumers parameter asks for 1",)),
    "wrong_no_join_consumers": ("check_main_starts_and_waits", ("was still running", "join every consumer")),
    # windows opened by timing (issue 10): a timed join of the producers, a timed wait for more work
    "wrong_timed_producer_join": ("check_every_item_consumed_once",
                                  ("were never consumed", "before every producer had finished")),
    "wrong_stop_after_quiet_event": ("check_consumers_stop_on_sentinel", ("without receiving a sentinel",)),
}
SOLUTION = ROOT / "solutions" / "ex02_sentinels.py"
STUB = ROOT / "exercises" / "ex02_sentinels.py"


def _by_id(report) -> dict:
    """check id without the exercise prefix -> CheckResult."""
    return {c.id.split("::", 1)[1]: c for c in report.all_checks()}


def _all_passed(report) -> None:
    """Assert every check passed, showing each failure's message otherwise."""
    assert set(outcomes(report).values()) == {PASSED}, [(c.title, c.message) for c in report.all_checks()]
    assert report.exit_code() == 0


def test_the_corpus_is_complete() -> None:
    assert {p.stem for p in fixes(2, "wrong")} == set(WRONG)
    assert len(fixes(2, "correct")) >= 3


def test_the_shapes_can_be_judged_exactly() -> None:
    """Items are unique per shape (multisets compare exactly), never None, and include the falsy values."""
    for shape in ex02.SHAPES:
        items = [item for batch in shape.batches for item in batch]
        assert None not in items
        assert all(n == 1 for n in Counter((type(i), repr(i)) for i in items).values()), shape.label
    every = {(type(i), repr(i)) for s in ex02.SHAPES for b in s.batches for i in b}
    assert {(int, "0"), (str, "''"), (bool, "False")} <= every
    assert {(len(s.batches), s.consumers) for s in ex02.SHAPES} >= {(1, 1), (3, 2), (1, 4), (4, 1)}
    assert any(not batch for s in ex02.SHAPES for batch in s.batches), "an empty batch"


def test_the_stub_hangs_and_the_hang_is_explained(grade) -> None:
    report = grade(2, STUB)
    results = _by_id(report)
    assert not [c for c in results.values() if c.outcome == ERROR], [c.traceback for c in results.values()]
    get_line = next(n for n, text in enumerate(STUB.read_text().splitlines(), 1) if "item = q.get()" in text)
    ends = results["check_program_ends"]
    assert ends.outcome == FAILED
    assert (f"is blocked in q.get() at line {get_line} (consumer) and never received a sentinel"
            in ends.message), ends.message
    assert "main() put no sentinel on the queue" in ends.message, ends.message
    assert get_line in [loc.line for loc in ends.locations]
    evidence = report.evidence_of(ends)
    assert evidence is not None and evidence.stacks, "the stacks of the stopped processes are shown"
    assert results["check_consumers_stop_on_sentinel"].outcome == FAILED
    assert report.exit_code() == 1


def test_the_solution_passes_every_check(grade) -> None:
    _all_passed(grade(2, SOLUTION))


@pytest.mark.parametrize("path", fixes(2, "wrong"), ids=lambda p: p.stem)
def test_wrong_fix_fails_for_its_reason(path: Path, graded) -> None:
    check_id, reasons = WRONG[path.stem]
    report = graded(2, path)
    result = _by_id(report)[check_id]
    assert result.outcome == FAILED, result
    for reason in reasons:
        assert reason in result.message, result.message
    assert ERROR not in outcomes(report).values(), [c.traceback for c in report.all_checks()]
    assert report.exit_code() == 1


@pytest.mark.parametrize("path", fixes(2, "correct"), ids=lambda p: p.stem)
def test_correct_fix_passes(path: Path, graded) -> None:
    _all_passed(graded(2, path))


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
@pytest.mark.parametrize("path", [*fixes(2, "correct"), SOLUTION], ids=lambda p: p.parent.name + "/" + p.stem)
def test_correct_fix_passes_under_other_start_methods(path: Path, method: str, grade) -> None:
    _all_passed(grade(2, path, start_method=method))


def test_a_wrong_fix_fails_the_same_way_under_spawn(grade) -> None:
    """The identity of an object() sentinel is lost under every start method: the pickled copy never matches."""
    path = ROOT / "tests" / "fixes" / "ex02" / "wrong_object_sentinel_is.py"
    result = _by_id(grade(2, path, start_method="spawn"))["check_program_ends"]
    assert result.outcome == FAILED
    assert "`is` never matches an object() sentinel" in result.message, result.message
