"""The disk a run may fill: its writable folders and, when it runs as its own uid, what that uid puts at the top
of /tmp and /dev/shm. Watched by the grader between polls (never from inside the run's tree: a watcher there
would look like activity to the deadlock watch)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from grader.running import privileges

DISK_LIMIT = 256 * 1024 * 1024  # bytes a run may write in all
MAX_FILES = 20000  # files and folders a run may create
CHECK_EVERY = 0.25  # seconds between two looks


def usage(folders: list[Path], uid: int | None) -> tuple[int, int]:
    """Bytes on disk and entries in `folders` (links not followed), and in `uid`'s entries of /tmp and /dev/shm;
    stops counting past MAX_FILES."""
    tops: list[str] = [str(f) for f in folders]
    if uid is not None:
        tops.extend(entry.path for entry in privileges.scratch_entries(uid))
    size = files = 0
    for top in tops:
        try:
            info = os.lstat(top)
        except OSError:
            continue
        size += info.st_blocks * 512
        files += 1
        if os.path.islink(top) or not os.path.isdir(top):
            continue
        for root, dirs, names in os.walk(top):
            for name in (*dirs, *names):
                try:
                    size += os.lstat(os.path.join(root, name)).st_blocks * 512
                except OSError:
                    continue
                files += 1
                if files > MAX_FILES:
                    return size, files
    return size, files


@dataclass
class DiskWatch:
    """Says when a run has written more than it may; looks at most every CHECK_EVERY seconds."""

    folders: list[Path]
    uid: int | None = None
    limit: int = DISK_LIMIT
    last: float = field(default=-1e9)

    def exceeded(self, now: float) -> bool:
        if now - self.last < CHECK_EVERY:
            return False
        self.last = now
        size, files = usage(self.folders, self.uid)
        return size > self.limit or files > MAX_FILES
