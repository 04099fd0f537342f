"""Start methods named: what a failure under spawn or forkserver owes to the child re-importing the module.

Under spawn and forkserver every child starts a fresh interpreter and imports the student's module again,
so what the top level of the file makes is made once more in every child: each child gets its own, and
nothing is shared. The probe records where each lock of the student's code was made (`lock_new`: a Lock
makes one, a Queue two or more at its line) and where a file of the run was opened for reading (`file_read`,
with the student's frames); this module turns those made by a child at the top level into the sentence and
the lines. (A file opened there for writing is not recorded by the probe, so it is not named.)"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from grader.results import Location
from grader.probe import grader_events

REIMPORTING = ("spawn", "forkserver")
REIMPORTED = "again in each child"  # the words that say it (session.py then adds nothing general)


@dataclass
class MadeAtImport:
    """What one top-level line of the student's file made again in a child: locks (how many) or a file opened."""

    line: int
    locks: int = 0  # the most one child made at this line
    path: str = ""  # a file of the run opened for reading at this line

    def phrase(self) -> str:
        """'the lock made at the top level of your file (line 5)' and the like."""
        if self.path:
            return f"the file {self.path} opened at the top level of your file (line {self.line})"
        if self.locks == 1:
            return f"the lock made at the top level of your file (line {self.line})"
        return (f"the queue or locks made at the top level of your file (line {self.line}, {self.locks} locks: a "
                "multiprocessing Queue makes locks of its own)")

    def own(self) -> str:
        """What each child got of its own."""
        if self.path:
            return "a file object of its own (with its own position in the file)"
        return "a lock of its own" if self.locks == 1 else "a queue (or locks) of its own"


def reimported_state(events: list[dict[str, Any]]) -> list[MadeAtImport]:
    """What child processes made at the top level of the student's file, one per line, in line order."""
    main_pids = {e["pid"] for e in events if e.get("ev") == grader_events.PROC_START and e.get("target") == "__main__"}
    locks: Counter[tuple[int, int]] = Counter()
    files: dict[int, str] = {}
    for event in events:
        if event.get("pid") in main_pids:
            continue
        where = event.get("where") or {}
        if event.get("ev") == grader_events.LOCK_NEW and where.get("func") == "<module>" and where.get("line"):
            locks[(int(where["line"]), event["pid"])] += 1
        frames = event.get("frames") or []
        if (event.get("ev") == grader_events.FILE_READ and frames and frames[0].get("func") == "<module>"
                and frames[0].get("line")):
            files.setdefault(int(frames[0]["line"]), str(event.get("path", "")))
    made: dict[int, MadeAtImport] = {}
    for (line, _pid), count in locks.items():
        entry = made.setdefault(line, MadeAtImport(line))
        entry.locks = max(entry.locks, count)
    for line, path in files.items():
        made.setdefault(line, MadeAtImport(line, path=path))
    return [made[line] for line in sorted(made)]


def explain(events: list[dict[str, Any]], start_method: str | None, student_file: str) -> tuple[str, list[Location]]:
    """The sentence naming the top-level lines whose state each child made again, and those lines ('' when none)."""
    if start_method not in REIMPORTING:
        return "", []
    made = reimported_state(events)
    if not made:
        return "", []
    what = made[0].phrase() if len(made) == 1 else "; ".join(m.phrase() for m in made[:-1]) + "; and " + made[-1].phrase()
    if len(made) > 1 or made[0].locks > 1:
        verb = "were made"
    else:
        verb = "was opened" if made[0].path else "was made"
    owns = list(dict.fromkeys(m.own() for m in made))
    own = owns[0] if len(owns) == 1 else ", ".join(owns[:-1]) + " and " + owns[-1]
    sentence = (f"Under {start_method}, every child process starts a fresh interpreter and re-imports your module: "
                f"{what} {verb} {REIMPORTED}, so each child got {own} and none was shared. Make it in main() (under "
                "the `__main__` guard) and pass it to each process as an argument.")
    return sentence, [Location(student_file, m.line, "made again in every child") for m in made]
