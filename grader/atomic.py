"""Writing a file so that a reader (a browser, a resumed batch, the next command) never sees it half-written:
the one way every part of the grader replaces a file."""
from __future__ import annotations

import os
from pathlib import Path


def atomic_write(path: Path, text: str, durable: bool = True) -> None:
    """Write `text` to a temporary file beside `path`, then rename it over `path`; `durable` also flushes it to
    the disk first, so that the file survives a power cut."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        if durable:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, path)
