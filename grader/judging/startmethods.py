"""Start methods named: what a failure under spawn or forkserver owes to the child re-importing the module.

Under spawn and forkserver every child starts a fresh interpreter and imports the student's module again,
so a Lock (or a Queue, whose locks the probe sees being made) created at the top level of the file is made
once more in every child: each child gets its own, and nothing is shared. The probe records where each lock
of the student's code was made (`lock_new`); this module turns that into the sentence and the line."""
from __future__ import annotations

from typing import Any

from grader.results import Location
from grader.probe import grader_events

REIMPORTING = ("spawn", "forkserver")
REIMPORTED = "was made again in each child"  # the words that say it (session.py then adds nothing general)


def reimported_state(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Locks made at the top level of the student's file by a child process (one per line, first seen)."""
    main_pids = {e["pid"] for e in events if e.get("ev") == "proc_start" and e.get("target") == "__main__"}
    seen: dict[int, dict[str, Any]] = {}
    for event in events:
        where = event.get("where") or {}
        if (event.get("ev") == grader_events.LOCK_NEW and event.get("pid") not in main_pids and where.get("func") == "<module>"
                and where.get("line") and where["line"] not in seen):
            seen[where["line"]] = event
    return list(seen.values())


def explain(events: list[dict[str, Any]], start_method: str | None, student_file: str) -> tuple[str, list[Location]]:
    """The sentence naming the top-level line whose state each child made again, and that line ('' when none)."""
    if start_method not in REIMPORTING:
        return "", []
    made = reimported_state(events)
    if not made:
        return "", []
    lines = [e["where"]["line"] for e in made]
    where = f"line {lines[0]}" if len(lines) == 1 else "lines " + ", ".join(map(str, lines))
    sentence = (f"Under {start_method}, every child process starts a fresh interpreter and re-imports your module: "
                f"the lock made at the top level of your file ({where}) {REIMPORTED}, so each child got a lock of its "
                "own and none was shared. Make it in main() (under the "
                "`__main__` guard) and pass it to each process as an argument.")
    return sentence, [Location(student_file, line, "made again in every child") for line in lines]
