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
    "rewrites_checkout": ["got a ticket"],
    "stops_parents": ["stopped by a signal (SIGSTOP or SIGTSTP"],
    "fills_disk": ["wrote more than"],
    "thread_bomb": ["can't start new thread", "in the middle of main()"],
    "plants_modules": ["got a ticket"],
    "rewrites_evidence": ["buyers got a ticket:"],  # the oversold check itself, judged from the events
    "speaks_for_another": ["could not observe your program: process"],  # a correct solution, but an impostor
}
# Cases that would change files outside the run (or read the solutions) where nothing stops them: run only at
# a level that protects the checkout (see unprotected_reason).
NEEDS_BWRAP = {"writes_outside", "reads_solutions", "rewrites_checkout", "plants_modules"}
# Cases that read what only a mount namespace can hide from a uid that may read world-readable files.
NEEDS_HIDING = {"reads_solutions"}


def unhidden_reason() -> str | None:
    """Why student code could read the solutions at the level the grader picks now, or None."""
    from grader.running import isolation, privileges

    level = isolation.detect()
    if level.read_only or (level.name == "net" and privileges.run_identity() is not None):
        return None
    return "no mount namespace here to hide the solutions (they are world-readable files)"


def unprotected_reason() -> str | None:
    """Why student code could change the checkout at the level the grader picks now, or None when it cannot
    (bubblewrap's or the net level's read-only view, or an unprivileged uid when the grader is root)."""
    from grader.running import isolation, privileges

    if isolation.detect().read_only or privileges.run_identity() is not None:
        return None
    return ("student code runs with the grader's own rights here (no read-only view: no bubblewrap and no mount "
            "namespace; and not root, or root with a Python an unprivileged uid cannot read): nothing protects the "
            "checkout at this level")


# Cases that would freeze or kill the grader itself where student code can signal it: run only where it cannot
# (a pid namespace hides the grader; a dropped uid may not signal root's processes).
NEEDS_SEPARATION = {"stops_parents"}


def unseparated_reason() -> str | None:
    """Why student code could signal the grader at the level the grader picks now, or None."""
    from grader.running import isolation, privileges

    if isolation.detect().name in ("bwrap", "net") or privileges.run_identity() is not None:
        return None
    return "no pid namespace and no uid drop here: student code can signal the grader's own processes"


# Cases bounded only by a limit of the run's own uid (RLIMIT_NPROC counts a uid's threads): run only when the
# grader is root and drops to a fresh uid, else they would count against (and starve) the user's own.
NEEDS_OWN_UID = {"thread_bomb"}


def shared_uid_reason() -> str | None:
    from grader.running import privileges

    if privileges.run_identity() is not None:
        return None
    return "student code runs as the user running the tests: its thread limit would be that user's own"


def checkout_digest(root: Path = ROOT) -> dict[str, str]:
    """A hash of everything of the checkout at `root` a submission could rewrite to change later verdicts: the
    package, the solutions, the stubs, the tests' corpus, the git metadata, any bytecode in the package that is not
    what Python compiles from its source (a planted .pyc), the names at the checkout's top (a sitecustomize.py
    there runs at the next `python -m grader`), and the .pth and sitecustomize files of this Python's
    site-packages."""
    import site

    digest = tree_digest(*(folder for folder in (root / "grader", root / "solutions", root / "exercises", root / "tests")
                           if folder.is_dir()))
    digest |= planted_bytecode(root / "grader")
    git = root / ".git"
    for path in ([git] if git.is_file() else [git / "HEAD", git / "config", git / "index"]):
        digest[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else "missing"
    for folder in site.getsitepackages():
        for path in sorted([*Path(folder).glob("*.pth"), *Path(folder).glob("sitecustomize.py"),
                            *Path(folder).glob("usercustomize.py")]):
            digest[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    if (root / "solutions").is_dir():
        digest["solutions listing"] = " ".join(sorted(p.name for p in (root / "solutions").iterdir()))
    digest["grader listing"] = " ".join(sorted(p.name for p in (root / "grader").iterdir()))
    digest["checkout listing"] = " ".join(sorted(p.name for p in root.iterdir()))
    return digest


def planted_bytecode(folder: Path) -> dict[str, str]:
    """Every .pyc below `folder` whose code is not what Python compiles from its source, by hash: bytecode the
    grader itself writes (an import, the probe's compilation) is the source's own and is left out, so a digest
    stays the same whether or not Python wrote bytecode during a run."""
    import importlib.util
    import marshal

    found = {}
    for pyc in sorted(folder.rglob("__pycache__/*.pyc")):
        try:
            source = Path(importlib.util.source_from_cache(str(pyc)))
            genuine = source.is_file() and marshal.loads(pyc.read_bytes()[16:]) == compile(
                source.read_bytes(), str(source), "exec", dont_inherit=True)
        except (ValueError, EOFError, TypeError, SyntaxError, OSError):
            genuine = False
        if not genuine:
            found[str(pyc)] = hashlib.sha256(pyc.read_bytes()).hexdigest()
    return found


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
