"""The probe on its own: it imports nothing from the grader package (it runs inside untrusted student
processes, started without the grader installed on their path), and its seeded delays replay: the same seed
gives every process the same sequence of delays, in one process and through real runs."""
from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from grader.running import runner
from grader.probe import grader_probe

PROBE_DIR = runner.PROBE_DIR
STUDENT_SIDE = ["grader_probe.py", "grader_driver.py", "grader_keeper.py", "sitecustomize.py", "grader_events.py"]
# the driver and sitecustomize may import the probe itself, and the probe and the driver the event vocabulary,
# from the same folder
SIBLINGS = {"grader_probe", "grader_events"}


def _imported_modules(path: Path) -> list[tuple[str, int]]:
    """Every module a file imports, anywhere in it (functions included), with its line; relative as '.'."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            found.append(("." * node.level + (node.module or ""), node.lineno))
    return found


@pytest.mark.parametrize("name", STUDENT_SIDE)
def test_student_side_files_import_only_the_standard_library(name: str) -> None:
    modules = _imported_modules(PROBE_DIR / name)
    assert modules, "the parser found no import at all"
    for module, line in modules:
        top = module.split(".")[0]
        assert not module.startswith("."), f"{name}:{line} has a relative import ({module})"
        assert top != "grader", f"{name}:{line} imports {module} from the grader package"
        assert top in sys.stdlib_module_names or top in SIBLINGS, f"{name}:{line} imports {module}"


IMPORT_WITHOUT_GRADER = """
import importlib.abc, json, os, sys

class NoGrader(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "grader" or name.startswith("grader."):
            raise ImportError(f"the grader package is not importable here ({name})")
        return None

sys.meta_path.insert(0, NoGrader())
sys.path.insert(0, sys.argv[1])
import grader_probe
probe = grader_probe.activate()
import grader_driver
probe.emit("hello", ok=True)
print(json.dumps(sorted(m for m in sys.modules if m.startswith("grader"))))
"""


def test_the_probe_activates_with_the_grader_package_unimportable(tmp_path: Path) -> None:
    meta, work = tmp_path / "meta", tmp_path / "work"
    for sub in ("events", "stacks", "out", "gate"):
        (meta / sub).mkdir(parents=True)
    work.mkdir()
    config = {"meta": str(meta), "workdir": str(work), "seed": 1, "sleep_scale": 0.5, "delays": {}, "spy": {},
              "start_method": None, "limits": {}}
    env = {"PATH": os.environ.get("PATH", ""), "GRADER_PROBE": json.dumps(config)}
    # -I: no PYTHONPATH, no user site, no current folder on the path; the script's finder refuses the grader
    # package, which the venv (installed in editable mode) would otherwise provide.
    done = subprocess.run([sys.executable, "-I", "-c", IMPORT_WITHOUT_GRADER, str(PROBE_DIR)], cwd=work, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == ["grader_driver", "grader_events", "grader_probe", "grader_turns"]
    events = [json.loads(line) for path in (meta / "events").iterdir() for line in path.read_text().splitlines()]
    assert [e["ev"] for e in events] == ["proc_start", "hello", "main_done"]
    assert not list(meta.glob("probe-error-*"))


# ---- seeded delays -----------------------------------------------------------------------------------

def _delays(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, seed: int, process: str, n: int = 30) -> list[float]:
    """The delays a probe with `seed` injects at n file writes of a process named `process`."""
    slept: list[float] = []
    monkeypatch.setattr(grader_probe, "_real_sleep", slept.append)
    probe = grader_probe.Probe({"meta": str(tmp_path), "workdir": str(tmp_path), "seed": seed,
                                "delays": {"write": [0.002, 0.008], "read": [0.0, 0.0]}})
    probe.rename(process)
    for _ in range(n):
        probe.delay("write")
        probe.delay("read")  # a zero delay: never slept
        probe.delay("queue")  # no delay configured at this point
    return slept


def test_the_same_seed_replays_the_same_delays(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    first = _delays(monkeypatch, tmp_path, 42, "Process-1")
    assert len(first) == 30 and all(0.002 <= d <= 0.008 for d in first)
    assert len(set(first)) == 30
    assert _delays(monkeypatch, tmp_path, 42, "Process-1") == first
    assert _delays(monkeypatch, tmp_path, 43, "Process-1") != first
    assert _delays(monkeypatch, tmp_path, 42, "Process-2") != first  # each process has its own sequence


RECORD_DELAYS = """
    import json, multiprocessing as mp, sys
    import grader_probe

    def record(name):
        slept = []
        grader_probe._real_sleep = slept.append   # the probe sleeps through this: record instead
        for i in range(10):
            with open(f"scratch-{name}-{i}.txt", "w") as f:
                f.write("x")
        return list(slept)  # a copy: later opens (the results file) must not add to it

    def child(name):
        slept = record(name)
        with open(f"delays-{name}.json", "w") as f:
            json.dump(slept, f)

    if __name__ == "__main__":
        procs = [mp.Process(target=child, args=(n,), name=n) for n in ("first", "second")]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        print(json.dumps(record("main")))
"""


def _run_delays(tmp_path: Path, seed: int, method: str) -> dict[str, list[float]]:
    """One real run of RECORD_DELAYS: the delays each of its three processes drew."""
    prog = tmp_path / "prog.py"
    prog.write_text(textwrap.dedent(RECORD_DELAYS))
    outcome = runner.run(runner.RunSpec(argv=["prog.py"], copy={"prog.py": prog}, timeout=30, seed=seed,
                                        start_method=method, delays={"write": (0.001, 0.005)}))
    assert outcome.status == runner.EXITED and outcome.returncode == 0, outcome.output
    delays = {n: json.loads(outcome.files[f"delays-{n}.json"]) for n in ("first", "second")}
    delays["main"] = json.loads(outcome.output["main"]["out"])
    return delays


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_runs_with_the_same_seed_replay_their_delays(tmp_path: Path, method: str) -> None:
    first = _run_delays(tmp_path, 1234, method)
    assert all(len(d) == 10 and all(0.001 <= x <= 0.005 for x in d) for d in first.values()), first
    assert first["first"] != first["second"] != first["main"]
    assert _run_delays(tmp_path, 1234, method) == first
    assert _run_delays(tmp_path, 1235, method)["first"] != first["first"]


@pytest.mark.parametrize(("args", "kwargs", "cut"), [
    ((), {"timeout": 5}, 0.005),                 # q.get(timeout=5): gives up after the patience instead
    ((True, 60), {}, 0.005),                     # q.get(True, 60)
    ((), {"block": True, "timeout": 0.5}, 0.005),
    ((), {}, None),                              # q.get(): waits for ever, as written
    ((False,), {}, None),                        # q.get(False): never waits anyway
    ((), {"block": False, "timeout": 5}, None),
    ((), {"timeout": 0.001}, None),              # already shorter than the patience
    ((), {"timeout": "soon"}, None),             # let the real get() raise its own TypeError
])
def test_a_get_timeout_longer_than_the_patience_is_cut(args: tuple, kwargs: dict, cut: float | None) -> None:
    assert grader_probe._cut_timeout(args, kwargs, 0.005) == cut


def test_without_a_patience_no_get_timeout_is_cut() -> None:
    assert grader_probe._cut_timeout((), {"timeout": 5}, None) is None
