"""The corpus of hostile submissions and the means to watch what they did: shared by tests/test_hostile.py and
bench/bench_hostile.py."""
from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HOSTILE = Path(__file__).resolve().parent / "hostile"
RUN_TIMEOUT = 8  # the ex01 steps' own timeout: every case must be judged within it plus 2 s

# case -> pieces of the reason, any of which explains the failure
REASONS = {
    "fork_bomb": ["far more processes"],
    "endless_output": ["printed more output"],
    "memory_hog": ["crashed", "MemoryError"],
    "import_loop": ["never finished"],
    "busy_child": ["never ends"],
    "setsid_orphan": ["still running", "far more processes"],
    "ignores_sigterm": ["ignore SIGTERM"],
    "kills_parent": ["killed by signal SIGKILL"],
    "exit_at_import": ["ended the program while it was being imported"],
    "sys_exit_at_import": ["called sys.exit(0)"],
    "fake_output": ["got a ticket"],
    "writes_outside": ["got a ticket"],
    "reads_solutions": ["got a ticket"],
    "network": ["got a ticket"],
    "monkeypatch": ["replaced builtins.open"],
    "not_utf8": ["Python cannot read"],
    "symlink_out": ["link to a file outside"],
    "huge_source": ["MB"],
}
NEEDS_BWRAP = {"writes_outside", "reads_solutions"}


def tree_digest(*folders: Path) -> dict[str, str]:
    """A hash of every file below `folders`: compared before and after a hostile run."""
    digest = {}
    for folder in folders:
        for path in sorted(folder.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                digest[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digest


def tagged_processes(marker: str) -> list[int]:
    """Processes anywhere whose environment carries `marker` (set in ours before grading, inherited by every
    student process): there must be none once a grader command returned. Other graders on the machine
    carry other markers."""
    needle = marker.encode()
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit() and int(name) != os.getpid():
            try:
                if needle in Path(f"/proc/{name}/environ").read_bytes():
                    found.append(int(name))
            except OSError:
                continue
    return found


def submission(case: str, tmp_path: Path) -> Path:
    """A submission folder for `case`: a copy of tests/hostile/CASE, or built here (a link, a 50 MB file)."""
    folder = tmp_path / case
    if (HOSTILE / case).is_dir():
        shutil.copytree(HOSTILE / case, folder)
    elif case == "symlink_out":
        folder.mkdir()
        (folder / "ex01_oversold_ticket.py").symlink_to(ROOT / "solutions" / "ex01_oversold_ticket.py")
    elif case == "huge_source":
        folder.mkdir()
        stub = (ROOT / "exercises" / "ex01_oversold_ticket.py").read_text()
        padding = "# " + "x" * 98 + "\n"
        (folder / "ex01_oversold_ticket.py").write_text(stub + padding * 500_000)  # 50 MB
    return folder
