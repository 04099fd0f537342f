"""The net level's read-only view (grader/running/mountns.py): what student code can and cannot do in it, and that
it never runs anything with a partial view."""
from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from grader.running import isolation, runner

ROOT = Path(__file__).resolve().parent.parent

_PROBE = r"""
import ctypes, os, pathlib, sys
checkout = pathlib.Path(sys.argv[1])
def attempt(what, action):
    try:
        action()
        print(what + ":", "yes")
    except OSError as error:
        print(what + ":", "no", error.errno)
attempt("write checkout", lambda: (checkout / "grader" / "course.toml").open("a").write("# owned by the run\n"))
attempt("write venv", lambda: open(pathlib.Path(sys.prefix) / "owned.pth", "w").close())
attempt("write python", lambda: open(pathlib.Path(os.__file__).with_name("owned.py"), "w").close())
attempt("read solutions", lambda: print(len(os.listdir(checkout / "solutions"))) or (checkout / "solutions" / "ex01_oversold_ticket.py").read_bytes())
attempt("read checks", lambda: (checkout / "grader" / "checks" / "ex01.py").read_bytes())
attempt("write run", lambda: open("mine.txt", "w").write("ok"))
attempt("write tmpdir", lambda: open(os.path.join(os.environ["TMPDIR"], "t"), "w").close())
attempt("write proc sys", lambda: open("/proc/sys/kernel/hostname", "w").write("owned"))
libc = ctypes.CDLL(None, use_errno=True)
print("remount:", libc.mount(None, str(checkout).encode(), None, 0x20 | 0x1000, None), ctypes.get_errno())
print("umount tmp:", libc.umount2(b"/tmp", 2), ctypes.get_errno())
print("caps:", open("/proc/self/status").read().split("CapEff:")[1].split()[0])
print("dev:", " ".join(sorted(os.listdir("/dev"))))
"""


def test_the_net_level_makes_the_machine_read_only_for_student_code() -> None:
    """At the net level (no bubblewrap, no uid drop: what a normal user or root with a private Python gets), student
    code can write its run's folder and nothing else, sees no solution or check, has no capability to remount or
    unmount, and has a /dev without disks."""
    level = isolation.named("net")
    if not level.read_only:
        pytest.skip("this machine refuses the net level's mount namespace (the level says files were not protected)")
    hide = isolation.hidden_paths(ROOT)
    outcome = runner.run(runner.RunSpec(argv=["-c", _PROBE, str(ROOT)], isolation="net", hide=hide, timeout=30))

    said = dict(line.split(": ", 1) for line in outcome.output["main"]["out"].splitlines() if ": " in line)
    assert outcome.returncode == 0, outcome.output
    assert said["write run"] == "yes" and said["write tmpdir"] == "yes"
    for denied in ("write venv", "write python", "read solutions", "read checks", "write proc sys"):
        assert said[denied].startswith("no"), (denied, said)
    # A checkout under /tmp (a CI clone) lies in the run's private /tmp: a write there lands in that scratch
    # folder, never in the real file. Elsewhere the write is refused.
    assert said["write checkout"].startswith("no") or ROOT.is_relative_to(Path(tempfile.gettempdir()).resolve()), said
    assert "owned by the run" not in (ROOT / "grader" / "course.toml").read_text()
    assert said["remount"].startswith("-1") and said["umount tmp"].startswith("-1")
    assert said["caps"] == "0000000000000000"
    assert set(said["dev"].split()) <= {"fd", "full", "null", "random", "shm", "stderr", "stdin", "stdout", "tty",
                                        "urandom", "zero"}
    assert outcome.files.get("mine.txt") == "ok"
    assert "read-only" in outcome.isolation


def test_the_view_is_never_made_outside_its_own_namespaces(tmp_path: Path) -> None:
    """mountns.py run anywhere but as pid 1 of new namespaces (by mistake, as root) changes nothing of the machine
    and never runs its command: exit 125 with the reason."""
    touched = tmp_path / "ran"
    done = subprocess.run([sys.executable, "-I", "-S", str(isolation.MOUNTNS), "--check", "--", "touch", str(touched)],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 125 and "could not be made" in done.stderr
    assert not touched.exists()


def test_a_view_that_cannot_be_made_runs_nothing_and_says_why(tmp_path: Path) -> None:
    """A step of the view that fails half-way (here a private /tmp of an impossible size) stops before the keeper:
    the command never runs, and the reason is in the run's error file, where the grader reports it as its own
    failure (the probe-error file), never as the student's."""
    if not isolation.named("net").read_only:
        pytest.skip("this machine refuses the net level's mount namespace")
    run_root = Path(tempfile.mkdtemp(prefix="grader-run-"))
    try:
        (run_root / "meta").mkdir()
        touched = run_root / "ran"
        view = isolation._read_only_view(["--"], run_root, isolation.hidden_paths(ROOT))  # noqa: SLF001
        view[view.index("--scratch-size") + 1] = "-1"  # a size tmpfs refuses: fails after the first mounts
        done = subprocess.run(["unshare", *isolation._NET_UNSHARE, "--", *view, "touch", str(touched)],  # noqa: SLF001
                              capture_output=True, text=True, timeout=30, cwd="/")
        assert done.returncode == 125 and "could not be made" in done.stderr
        assert not touched.exists()
        assert "could not be made" in (run_root / "meta" / "probe-error-isolation.txt").read_text()
    finally:
        shutil.rmtree(run_root, ignore_errors=True)
