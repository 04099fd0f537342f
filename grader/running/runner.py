"""Runs student code in a supervised subprocess: a fresh working directory, its own session, the probe
loaded into every process, a wall-clock timeout, early calls on deadlocks, stacks collected before the
whole tree is killed and reaped, and output captured with a cap. Nothing it starts outlives run()."""
from __future__ import annotations

import collections
import compileall
import contextlib
import functools
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from grader.running import conductor, isolation, limits, preload, privileges, proctree, rundir, startup
# The statuses of a run are defined with the results model; the runner decides them, the checks read them here.
from grader.results import (DEADLOCK, DISK_LIMIT, EXITED, KEPT_ALIVE, OUTPUT_LIMIT, PROCESS_LIMIT,  # noqa: F401
                            SELF_DEADLOCK, TIMEOUT)
from grader.probe import grader_events

PROBE_DIR = Path(__file__).resolve().parent.parent / "probe"
DRIVER = PROBE_DIR / "grader_driver.py"
KEEPER = PROBE_DIR / "grader_keeper.py"
_WRAPPERS = ("grader_keeper.py", "bwrap", "unshare")
SLOW_POLL_AFTER = 1.0  # seconds into a run after which the supervisor polls every SLOW_POLL seconds
SLOW_POLL = 0.05
OUTER_LIMIT = 3  # x the run's timeout, of wall-clock time: the limit whatever the machine's load
OUTPUT_KEEP = 64 * 1024  # bytes of each captured stream kept for feedback
_INFRA_MARKERS = ("multiprocessing.resource_tracker", "multiprocessing.forkserver")
_DROP_ENV_PREFIXES = ("PYTHON", "GRADER_", "COV_CORE", "COVERAGE_", "PYTEST_")
TURNS_SOCKET = "turns.sock"  # the conductor's socket, in the run's meta folder (a short path: see rundir)



@dataclass
class RunSpec:
    """What to run and under which rules. `argv` follows the Python executable."""

    argv: list[str]
    copy: dict[str, Path] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    meta_files: dict[str, str] = field(default_factory=dict)  # the grader's own inputs (a driver's plan)
    timeout: float = 10.0
    exit_grace: float | None = 3.0  # main's code done, Python still waiting at exit: kept alive after this
    # ... or after this, once the probe saw Python wait at exit for non-daemonic child processes: a check
    # for which such a child is already the bug need not give it the whole grace (a correct program, with
    # nothing to wait for, keeps the whole exit_grace for its shutdown).
    waiting_grace: float | None = None
    import_timeout: float = 4.0  # the driver's import of the student module: top-level code must be quick
    step_timeout: float | None = None  # no step of the plan may run longer (a hang is stopped sooner)
    seed: int = 0
    sleep_scale: float = 1.0
    delays: dict[str, tuple[float, float]] = field(default_factory=dict)
    queue_patience: float | None = None  # a student's get() waits at most this long on an empty queue
    spy: dict[str, list[str]] = field(default_factory=dict)
    start_method: str | None = None
    watch_files: list[str] = field(default_factory=list)
    output_limit: int = 4 * 1024 * 1024
    process_limit: int = 64
    memory_limit: int = 2 * 1024**3
    deadlock_quiet: float = 0.35
    poll: float = 0.02
    isolate: bool = True
    isolation: str | None = None  # a level forced by the request ("bwrap", "net", "none"); None: the strongest
    hide: list[Path] = field(default_factory=list)
    temp_root: Path | None = None  # where the run's folder is made (None: the system's temporary folder)
    virtual_time: bool = False  # the student's clocks and timed waits run at sleep_scale too (see the probe)
    min_sleep: float = 0.0  # a student's sleep or timed wait lasts at least this long (or what it asked) in real time
    start_gate: bool = True  # children wait until their siblings have started (see the probe's _Gate)
    startup_delay: float = 0.0  # tests only: each child sleeps this long before the student's code (a busy machine)
    # The controlled scheduler (running/conductor.py): its rules, or None for seeded delays at the same points.
    schedule: conductor.Rules | None = None


@dataclass
class RunOutcome:
    """Everything the grader observed of one run: plain data, judged later by the checks."""

    status: str
    returncode: int | None
    duration: float
    events: list[dict[str, Any]]
    stacks: dict[int, str]
    output: dict[str, dict[str, str]]
    leftovers: list[dict[str, Any]]
    files: dict[str, str]
    lines_at_exit: dict[str, int]
    probe_errors: list[str]
    seed: int
    killed: int = 0
    isolation: str = ""
    # Probe pids of processes still starting (before the student's code) when a time limit stopped the run:
    # then the machine was too busy, and the run says nothing about the student's code.
    starting: list[int] = field(default_factory=list)
    too_busy: bool = False  # stopped by the outer wall-clock limit after long start-ups: the machine's fault
    schedule: dict[str, Any] | None = None  # what the controlled scheduler did (conductor.Schedule), if one ran
    stopped: list[int] = field(default_factory=list)  # probe pids of processes stopped (SIGSTOP) when the run was stopped


@dataclass
class _Dirs:
    root: Path
    work: Path
    meta: Path

    @classmethod
    def create(cls, parent: Path | None = None) -> "_Dirs":
        root = rundir.make(parent)  # short enough for multiprocessing's unix sockets, whatever TMPDIR is
        work, meta = root / "work", root / "meta"
        work.mkdir()
        (root / "tmp").mkdir()
        for sub in ("events", "stacks", "out", "gate", "errors"):
            (meta / sub).mkdir(parents=True)
        return cls(root, work, meta)


def _environment(spec: RunSpec, dirs: _Dirs, token: str, epoch: float) -> dict[str, str]:
    """The student's environment: ours minus Python and test-runner settings, plus the probe's config."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_DROP_ENV_PREFIXES)}
    config = {
        "meta": str(dirs.meta),
        "workdir": str(dirs.work),
        "seed": spec.seed,
        "sleep_scale": spec.sleep_scale,
        "delays": {k: list(v) for k, v in spec.delays.items()},
        "queue_patience": spec.queue_patience,
        "spy": spec.spy,
        "start_method": spec.start_method,
        "startup_delay": spec.startup_delay,
        **({} if spec.start_gate else {"gate": {"quiet": 0.0, "max": 0.0, "poll": 0.001}}),
        "virtual_time": spec.virtual_time,
        "min_sleep": spec.min_sleep,
        "epoch": {"monotonic": epoch, "wall": time.time()},  # one clock for every process of the run
        **({"turns": {"socket": str(dirs.meta / TURNS_SOCKET)}} if spec.schedule else {}),
        "limits": {"core": 0, "as": spec.memory_limit, "fsize": 64 * 1024 * 1024, "nproc": 4096},
    }
    env.update(
        PYTHONPATH=str(PROBE_DIR),
        PYTHONHASHSEED=str(spec.seed % 4294967296),
        PYTHONDONTWRITEBYTECODE="1",
        PYTHONUNBUFFERED="1",
        PYTHONIOENCODING="utf-8",
        NO_COLOR="1",
        GRADER_PROBE=json.dumps(config),
        GRADER_RUN_TOKEN=token,
        TMPDIR=str(dirs.root / "tmp"),  # the only writable place besides the run's folder under bubblewrap
    )
    return env


def _children_map() -> collections.defaultdict[int, list[int]]:
    """pid -> its children's pids, for every process, from one pass over /proc."""
    children: collections.defaultdict[int, list[int]] = collections.defaultdict(list)
    for pid, ppid in _ppid_map().items():
        children[ppid].append(pid)
    return children


def _ppid_map() -> dict[int, int]:
    """pid -> parent pid for every process, read in one pass over /proc (psutil re-reads it per call)."""
    result: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                data = f.read()
        except OSError:
            continue
        fields = data[data.rfind(b")") + 2:].split()
        if len(fields) > 1:
            result[int(name)] = int(fields[1])
    return result


class _Tree:
    """The processes of one run: descendants of the grader that did not exist before the run started."""

    def __init__(self) -> None:
        self.me = os.getpid()
        self.before = {c.pid for c in psutil.Process(self.me).children(recursive=False)}
        self.linux = os.path.isdir("/proc/self/task")
        self.starts: startup.StartupWatch | None = None  # which of its processes are still starting

    def pids(self) -> list[int]:
        if not self.linux:
            return [p.pid for p in proctree.descendants(self.me, self.before)]
        # The children files touch only the tree's own processes; a pass over all of /proc (the fallback)
        # costs milliseconds on every poll of every run.
        children_of = _children_of if _HAS_CHILDREN_FILES else _children_map().__getitem__
        found, pending = [], [p for p in children_of(self.me) if p not in self.before]
        while pending:
            pid = pending.pop()
            found.append(pid)
            pending.extend(children_of(pid))
        return found

    def sample(self, pids: list[int], servers: set[int]) -> proctree.TreeSample:
        """CPU time and blocked state of these processes of the tree: straight from /proc on Linux."""
        if self.linux:
            return proctree.sample_pids(pids, servers)
        return proctree.sample([p for p in (_process(pid) for pid in pids) if p is not None], servers)

    def processes(self) -> list[psutil.Process]:
        procs = []
        for pid in self.pids():
            try:
                procs.append(psutil.Process(pid))
            except psutil.Error:
                continue
        return procs


def _process(pid: int) -> psutil.Process | None:
    try:
        return psutil.Process(pid)
    except psutil.Error:
        return None


@functools.cache
def _compile_probe() -> None:
    """Write the probe's bytecode beside it, once per grader process. Student processes cannot write it
    (the installation is read-only under bubblewrap, or PYTHONDONTWRITEBYTECODE is set), so without this
    every student process, and every child it spawns, compiles the probe again: about 8 ms each."""
    with contextlib.suppress(Exception):  # a read-only installation: they compile it, as before
        compileall.compile_dir(PROBE_DIR, maxlevels=0, quiet=2)


def _children_of(pid: int) -> list[int]:
    """The direct children of a process, from the children file of each of its threads (a child belongs to
    the thread that forked it); none when the process is gone."""
    found: list[int] = []
    for data in proctree.task_files(pid, "children"):
        try:
            found.extend(int(c) for c in data.split())
        except ValueError:
            continue
    return found


# Linux has per-thread children files only with CONFIG_PROC_CHILDREN (most kernels): else scan /proc.
_HAS_CHILDREN_FILES = os.path.exists(f"/proc/{os.getpid()}/task/{os.getpid()}/children")


def _tagged(token: str) -> list[psutil.Process]:
    """Processes anywhere on the machine that carry this run's token: a last sweep for escapees."""
    found = []
    needle = f"GRADER_RUN_TOKEN={token}".encode()
    for name in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                if needle in f.read():
                    found.append(psutil.Process(int(name)))
        except (OSError, psutil.Error):
            continue
    return found


class _EventTail:
    """Reads the events the probe appends, incrementally, so the runner can react while the run goes on, and
    keeps each one as it was when read: the run's events are those, read once, so a student who rewrites its
    event files afterwards changes nothing. An event in a file not of its own process is dropped."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.offsets: dict[str, int] = {}
        self.seen: list[dict[str, Any]] = []

    def new(self) -> list[dict[str, Any]]:
        events = []
        for entry in os.scandir(self.directory):
            offset = self.offsets.get(entry.name, 0)
            if entry.stat().st_size <= offset:
                continue
            with open(entry.path, "rb") as f:
                f.seek(offset)
                data = f.read()
            complete = data[: data.rfind(b"\n") + 1]
            self.offsets[entry.name] = offset + len(complete)
            owner = entry.name.split(".", 1)[0]
            events.extend(e for e in _parse_lines(complete) if str(e.get("pid")) == owner)
        self.seen.extend(events)
        return events


def _parse_lines(data: bytes) -> list[dict[str, Any]]:
    events = []
    for line in data.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and "ev" in event and "t" in event:
            events.append(event)
    return events


def _output_size(out_dir: Path) -> int:
    return sum(entry.stat().st_size for entry in os.scandir(out_dir))


def _read_capped(path: Path) -> str:
    """A captured stream, cut with a visible marker when it is too long."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        data = f.read(OUTPUT_KEEP)
    text = data.decode("utf-8", "replace")
    if size > OUTPUT_KEEP:
        text += f"\n[... output truncated: {size - OUTPUT_KEEP:,} more bytes not shown ...]\n"
    return text


def _collect_output(out_dir: Path) -> dict[str, dict[str, str]]:
    output: dict[str, dict[str, str]] = {}
    for path in sorted(out_dir.iterdir()):
        who, _, stream = path.name.rpartition(".")
        if path.stat().st_size:
            output.setdefault(who, {})[stream] = _read_capped(path)
    return output


def _collect_files(work: Path, skip: set[str]) -> dict[str, str]:
    """Small text files the run left in its directory (the ticket database, the heartbeat log...)."""
    files: dict[str, str] = {}
    for path in sorted(work.rglob("*"))[:200]:
        rel = path.relative_to(work).as_posix()
        if rel in skip or not path.is_file() or path.is_symlink() or path.stat().st_size > 256 * 1024:
            continue
        files[rel] = path.read_bytes().decode("utf-8", "replace")
    return files


def _count_lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except OSError:
        return 0


def _describe(proc: psutil.Process) -> dict[str, Any]:
    try:
        return {"pid": proctree.ns_pid(proc.pid), "host_pid": proc.pid, "cmdline": " ".join(proc.cmdline())[:300],
                "status": proc.status()}
    except psutil.Error:
        return {"pid": proc.pid, "cmdline": "", "status": "gone"}


def _is_infrastructure(proc: psutil.Process) -> bool:
    """multiprocessing's resource tracker and forkserver outlive the main program by a few ms by design."""
    try:
        cmdline = " ".join(proc.cmdline())
    except psutil.Error:
        return True
    return any(marker in cmdline for marker in _INFRA_MARKERS)


def run(spec: RunSpec) -> RunOutcome:
    """Run student code as `spec` says and return what was observed. Never leaves a process behind."""
    proctree.become_subreaper()
    preload.before_student_code()  # nothing a submission could rewrite is imported after it ran
    _compile_probe()
    identity = privileges.run_identity() if spec.isolate else None
    dirs = _Dirs.create(privileges.runs_parent(identity, spec.temp_root))
    token = secrets.token_hex(8)
    tree = _Tree()
    popen: subprocess.Popen[bytes] | None = None
    killed = 0
    stack = contextlib.ExitStack()
    scheduler: conductor.Conductor | None = None
    try:
        for name, source in spec.copy.items():
            shutil.copyfile(source, dirs.work / name)
        for name, text in spec.files.items():
            (dirs.work / name).write_text(text)
        for name, text in spec.meta_files.items():
            (dirs.meta / name).write_text(text)
        argv = [a.replace("{meta}", str(dirs.meta)).replace("{work}", str(dirs.work)) for a in spec.argv]
        writable = [dirs.work, dirs.root / "tmp", *(p for p in dirs.meta.iterdir() if p.is_dir())]
        identity = privileges.hand_over(dirs.root, writable, identity)
        level = isolation.named(spec.isolation) if spec.isolate else isolation.NONE
        # The keeper (pid 1 of the run's pid namespace) starts the student's program and reaps its orphans;
        # -I keeps the probe out of the keeper itself; -S skips site (the keeper is standard library only), which
        # costs every run ~20 ms of CPU for the .pth files of the environment.
        student = [sys.executable, "-s", *argv]
        keeper = [sys.executable, "-I", "-S", str(KEEPER), str(dirs.meta / "main-exit.json"),
                  *isolation.keeper_options(identity, level, writable, spec.hide), "--", *student]
        command = level.wrap(keeper, dirs.root, spec.hide)
        epoch = time.monotonic()
        if spec.schedule is not None:
            scheduler = stack.enter_context(conductor.Conductor(dirs.meta / TURNS_SOCKET, spec.seed, spec.schedule))
        with open(dirs.meta / "out" / "main.out", "wb") as out, open(dirs.meta / "out" / "main.err", "wb") as err:
            started = time.monotonic()
            popen = subprocess.Popen(
                command, cwd=dirs.work, env=_environment(spec, dirs, token, epoch),
                stdin=subprocess.DEVNULL, stdout=out, stderr=err, start_new_session=True,
            )
        starts = tree.starts = startup.StartupWatch(student, _cmdline, proctree.ns_pid, proctree.read_stat)
        disk = limits.DiskWatch(writable, identity.uid if identity else None)
        tail = _EventTail(dirs.meta / "events")
        status, lines_at_exit = _supervise(spec, popen, tree, dirs, started, tail, disk, scheduler)
        leftovers: list[dict[str, Any]] = []
        still_starting: list[int] = []
        too_busy = False
        stopped: list[int] = []
        if status == EXITED:
            leftovers = _settle(tree, dirs)
        else:
            pids = tree.pids()
            still_starting = starts.starting(pids) if status in (TIMEOUT, KEPT_ALIVE) else []
            too_busy = starts.too_busy
            stopped = proctree.stopped(pids)
            proctree.request_stacks(pids, str(dirs.meta / "stacks"))
        killed = proctree.kill_tree(tree.processes)
        tail.new()  # the last events, written since the supervisor's last look
        duration = time.monotonic() - started
        returncode = _main_exit(dirs)
        try:
            wrapper_code = popen.wait(timeout=5)
        except subprocess.TimeoutExpired:  # the tree was killed, so this cannot happen; never hang on it
            popen.kill()
            wrapper_code = popen.wait()
        if returncode is None:
            returncode = wrapper_code
        if not lines_at_exit:
            lines_at_exit = {name: _count_lines(dirs.work / name) for name in spec.watch_files}
        return RunOutcome(
            status=status,
            returncode=returncode,
            duration=duration,
            events=sorted(tail.seen, key=lambda e: e["t"]),
            stacks=_collect_stacks(dirs.meta / "stacks"),
            output=_collect_output(dirs.meta / "out"),
            leftovers=leftovers,
            files=_collect_files(dirs.work, set(spec.copy)),
            lines_at_exit=lines_at_exit,
            probe_errors=[p.read_text() for p in (*dirs.meta.glob("probe-error-*.txt"),
                                                  *dirs.meta.glob("errors/probe-error-*.txt"))],
            seed=spec.seed,
            killed=killed,
            isolation=isolation.describe(level, identity),
            starting=still_starting,
            too_busy=too_busy,
            schedule=scheduler.schedule.as_dict() if scheduler is not None else None,
            stopped=stopped,
        )
    finally:
        # Whatever happened above (an exception, pytest-timeout interrupting us), the tree dies here.
        proctree.kill_tree(lambda: tree.processes() + _tagged(token))
        stack.close()  # then the conductor stops
        if popen is not None and popen.poll() is None:
            popen.kill()
            popen.wait()
        proctree.reap_orphans({popen.pid} if popen else set())
        privileges.sweep(identity)
        shutil.rmtree(dirs.root, ignore_errors=True)


def _supervise(
    spec: RunSpec, popen: subprocess.Popen[bytes], tree: _Tree, dirs: _Dirs, started: float, tail: _EventTail,
    disk: limits.DiskWatch | None = None, scheduler: conductor.Conductor | None = None,
) -> tuple[str, dict[str, int]]:
    """Watch the run until the main process exits or a rule stops it; returns the status.

    A process still starting (interpreter start-up, imports) is neither blocked nor hung: while one is, no
    deadlock is called."""
    watch = proctree.DeadlockWatch(quiet=spec.deadlock_quiet)
    starts = tree.starts or startup.StartupWatch([], _cmdline, proctree.ns_pid, proctree.read_stat)
    main_done_at: float | None = None
    waiting_at: float | None = None  # main's code done, with non-daemonic children to wait for
    self_deadlock_at: float | None = None
    import_started_at: float | None = None
    step_started_at: float | None = None
    servers: set[int] = set()  # Manager server processes, idle between their clients' calls
    paused = 0.0  # seconds during which a process of the run was still starting: not the student's time
    last = started
    while True:
        if _main_exit(dirs) is not None or popen.poll() is not None:
            return EXITED, {n: _count_lines(dirs.work / n) for n in spec.watch_files}
        wall = time.monotonic()
        pids = tree.pids()
        # The judged clock stops while a process starts (a loaded machine's slow imports), so that every limit
        # below counts only the time the student's code had; the wall clock is the outer safety limit.
        starting = bool(starts.starting(pids))  # once per poll: it reads /proc for each process not yet marked
        if starting:
            paused += wall - last
        last = wall
        now = wall - paused
        if len(pids) > spec.process_limit:
            return PROCESS_LIMIT, {}
        if _output_size(dirs.meta / "out") > spec.output_limit:
            return OUTPUT_LIMIT, {}
        if disk is not None and disk.exceeded(now):
            return DISK_LIMIT, {}
        for event in tail.new():
            starts.see(event)
            if event["ev"] == grader_events.PROC_START and event.get("target") == "_run_server":
                servers.add(event["pid"])
            if event["ev"] == grader_events.SELF_DEADLOCK and self_deadlock_at is None:
                self_deadlock_at = now
            elif event["ev"] == grader_events.MAIN_DONE:
                main_done_at = now if main_done_at is None else main_done_at
                if event.get("waiting") and waiting_at is None:
                    waiting_at = now
            elif event["ev"] == grader_events.IMPORT_START:
                import_started_at = now
            elif event["ev"] == grader_events.STEP_START:
                step_started_at = now
            elif event["ev"] == grader_events.STEP_END:
                step_started_at = None
            elif event["ev"] in (grader_events.IMPORT_DONE, grader_events.IMPORT_ERROR, grader_events.IMPORT_EXIT):
                import_started_at = None
        if import_started_at is not None and now - import_started_at > spec.import_timeout:
            return TIMEOUT, {}
        if step_started_at is not None and spec.step_timeout is not None and now - step_started_at > spec.step_timeout:
            return TIMEOUT, {}
        if self_deadlock_at is not None and now - self_deadlock_at > 0.1:
            return SELF_DEADLOCK, {}
        if (spec.exit_grace is not None and main_done_at is not None and now - main_done_at > spec.exit_grace) or (
                spec.waiting_grace is not None and waiting_at is not None and now - waiting_at > spec.waiting_grace):
            return KEPT_ALIVE, {n: _count_lines(dirs.work / n) for n in spec.watch_files}
        if starting or (scheduler is not None and scheduler.holds_run(spec.poll * 2)):
            # as of this poll's start: a process marked since is judged at the next poll; threads waiting for
            # their turn, or for a timer of the scheduler's, are not deadlocked
            watch.update(now, proctree.TreeSample(frozenset(pids), 0.0, False, len(pids)))
        elif watch.update(now, tree.sample(pids, servers)):
            return DEADLOCK, {}
        if now - started > spec.timeout:
            return TIMEOUT, {}
        if wall - started > spec.timeout * OUTER_LIMIT:
            starts.too_busy = True
            return TIMEOUT, {}
        # Most runs end within a second: poll fast for that, then more gently, since a long run (a hang on
        # its way to a verdict) would otherwise spend the CPU that the other runs of a batch need.
        time.sleep(spec.poll if now - started < SLOW_POLL_AFTER else max(spec.poll, SLOW_POLL))


def _cmdline(pid: int) -> list[str] | None:
    """A process's command line from /proc (None when it is gone)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            data = f.read()
    except OSError:
        return None
    return [os.fsdecode(a) for a in data.split(b"\0")[:-1]]


def _main_exit(dirs: _Dirs) -> int | None:
    """The student main program's exit code, as the keeper wrote it when the program ended."""
    try:
        return int(json.loads((dirs.meta / "main-exit.json").read_text())["returncode"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _is_wrapper(proc: psutil.Process) -> bool:
    """The keeper and the sandbox around it: ours, not the student's."""
    try:
        cmdline = proc.cmdline()
    except psutil.Error:
        return True
    return bool(cmdline) and (os.path.basename(cmdline[0]) in _WRAPPERS or any(_WRAPPERS[0] in a for a in cmdline))


def _settle(tree: _Tree, dirs: _Dirs, grace: float = 0.3) -> list[dict[str, Any]]:
    """After the main process exits, give multiprocessing's helpers a moment to go; the rest are leftovers."""

    def students() -> list[psutil.Process]:
        return [p for p in tree.processes() if proctree.is_alive(p) and not _is_wrapper(p)]

    deadline = time.monotonic() + grace
    procs = students()
    while procs and time.monotonic() < deadline:
        time.sleep(0.01)
        procs = students()
    leftovers = [p for p in procs if not _is_infrastructure(p)]
    if leftovers:
        proctree.request_stacks([p.pid for p in leftovers], str(dirs.meta / "stacks"))
    return [_describe(p) for p in leftovers]


def _collect_stacks(stack_dir: Path) -> dict[int, str]:
    stacks = {}
    for path in stack_dir.iterdir():
        text = path.read_text(errors="replace")
        if text.strip():
            stacks[int(path.stem)] = text[-32 * 1024:]
    return stacks
