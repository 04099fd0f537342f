"""The keeper: the first process of a student run, started as pid 1 of a new pid namespace where the kernel
allows one. Usage: ``python -I grader_keeper.py STATUS_FILE -- COMMAND...``.

It runs COMMAND (the student's main program), reaps every orphan of the run, and writes the main
program's exit status to STATUS_FILE the moment it ends. As the namespace's init it cannot be killed by
student code from inside (the kernel drops such signals), and orphans come to it, never to the grader:
a student process that kills its parent can no longer reach the grader. When the grader kills it, the
kernel kills everything left in the namespace. Standard library only; it imports nothing from grader.
"""
from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys

PR_SET_CHILD_SUBREAPER = 36


def _write_status(path: str, returncode: int) -> None:
    """Atomically, so that the grader never reads half a status."""
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump({"returncode": returncode}, f)
    os.replace(tmp, path)


def main() -> int:
    status_path, separator, *command = sys.argv[1:]
    if separator != "--" or not command:
        print("usage: grader_keeper.py STATUS_FILE -- COMMAND...", file=sys.stderr)
        return 2
    if os.getpid() != 1:
        # No pid namespace here: be the subreaper at least, so that orphans still come to us.
        try:
            ctypes.CDLL(None).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        except (OSError, AttributeError):
            pass
    main_child = subprocess.Popen(command, restore_signals=True)
    # Ignored only after the start: an ignored signal would be inherited by the student's program.
    # Only the grader, from outside, ends the keeper (with SIGKILL).
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1):
        signal.signal(sig, signal.SIG_IGN)
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            return 0  # nothing left to reap: the run is over
        except InterruptedError:
            continue
        if pid == main_child.pid:
            main_child.returncode = os.waitstatus_to_exitcode(status)
            _write_status(status_path, main_child.returncode)


if __name__ == "__main__":
    sys.exit(main())
