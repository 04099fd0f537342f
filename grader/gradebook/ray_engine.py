"""The Ray engine of `grader batch --engine ray`: each student's grading is a Ray task, so that a class bigger
than one machine is graded by every node of a Ray cluster, and a node that dies costs a retry, not a student.

The driver (the batch) ships each student's collected exercise files through Ray's object store to a
GradingHost, a Ray actor (one per CPU of the cluster) whose `grade` task unpacks them into a private folder on
its node. The actor started, once, a grading host program (`python -m grader.commands.ray_host`, exec'ed:
a clean single-threaded Python with the grader, pytest and the checks imported), and each grading is forked
from that program, never from the Ray worker, whose threads make fork unsafe. The grading is the local engine
on one student with its whole supervision: the time limit, the process tree killed, a crash turned into a
result. The task returns the student's folder (result.json with the results model, report.json, report.txt,
the HTML reports, the files graded) as bytes, and only the driver writes the gradebook, student by student and
atomically, exactly as the local engine does.

Faults: a task whose worker or node dies is run again by Ray (the actor restarted, MAX_RETRIES); its result
is installed once, by the driver, when the task's one return value arrives. No grading is cancelled from
outside: it stops itself at the batch's time limit, and the task waits the limit plus MARGIN. Every process
dies with the one that started it (parent-death signals: worker, host, grading). With no address, a Ray
cluster of `-j` CPUs starts for the batch and stops with it, leaving no process; with --address (or RAY_ADDRESS)
the batch joins the cluster there, whose nodes need the same grader installed (checked: a node with another
grader gives no verdict rather than another grade)."""
from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterator

import psutil

from grader.gradebook.book import FILES_DIR, RESULT_FILE, STAGING, BatchError, atomic_write, install
from grader.gradebook.fingerprint import grader_fingerprint
from grader.gradebook.workers import Job, JobEnd

MAX_RETRIES = 3  # runs of a task whose worker or node died, beyond the first
MARGIN = 60.0  # seconds a grading program may take beyond the time limit (start, reports) before it is stopped
POLL = 0.2
AF_UNIX_LIMIT = 107  # bytes of a Unix socket's path
RAY_ROOM = 90  # bytes that Ray's sockets add to the temporary root: grader-ray-x/session_<date>_<pid>/sockets/…
BATCH_KEEP = 86400.0  # seconds after its last task on a node that a batch's private folders there are removed
GRADING_ROOM = 80  # bytes that a grading's sockets (forkserver, Manager) add: grader-ray-tasks-uid/pid-x/tmp/pymp-…
PROGRAM = "grader.commands.ray_host"  # the grading host program (see GradingHost)


# ---- the driver ---------------------------------------------------------------------------------------------------
@dataclass
class RayEngine:
    """Grades a batch's jobs (grade_student of a StudentTask each) as Ray tasks; see the module's docstring."""

    address: str | None = None

    def __call__(self, jobs: list[Job], workers: int, time_limit: float, on_end: Callable[[JobEnd], None],
                 tick: Callable[[], None] = lambda: None) -> None:
        """Submit every job as a task, install each student's folder as their task returns, then stop."""
        if not jobs:
            return
        ray = _import_ray()
        fingerprint, batch = grader_fingerprint(), secrets.token_hex(6)
        with self._cluster(ray, workers):
            host_class = ray.remote(num_cpus=1, max_restarts=-1, max_task_retries=MAX_RETRIES)(GradingHost)
            count = max(1, int(ray.cluster_resources().get("CPU", workers)))  # -j for a cluster of our own
            idle = [host_class.remote() for _ in range(min(count, len(jobs)))]
            queue, pending = deque(jobs), {}
            while queue or pending:
                while queue and idle:
                    job, host = queue.popleft(), idle.pop()
                    files, links = pack(job.args[0].collected.folder)
                    pending[host.grade.remote(task_spec(job.args[0], time_limit, batch), ray.put(files), links)] = (job, host)
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=POLL)
                for ref in ready:
                    job, host = pending.pop(ref)
                    on_end(_install(job, _outcome(ray, ref), fingerprint))
                    idle.append(host)
                tick()

    @contextlib.contextmanager
    def _cluster(self, ray: Any, workers: int) -> Iterator[None]:
        """Connected to the user's cluster (or to the one this program already uses), or to one of `workers` CPUs
        started here and stopped (every process of it gone, its temporary folder removed) when the batch ends,
        however it ends."""
        if ray.is_initialized():  # a program that embeds the batch and has its Ray: used as it is, left running
            yield
            return
        address = self.address or os.environ.get("RAY_ADDRESS")
        quiet = {"log_to_driver": False, "logging_level": logging.ERROR}
        if address:
            try:
                ray.init(address=address, **quiet)
            except (ConnectionError, ValueError, RuntimeError) as exc:
                raise BatchError(f"cannot join the Ray cluster at {address}: {exc}") from None
            try:
                yield
            finally:
                ray.shutdown()
            return
        temp = Path(tempfile.mkdtemp(prefix="grader-ray-", dir=short_temp_root(RAY_ROOM)))
        try:
            try:
                ray.init(address="local", num_cpus=workers, _temp_dir=str(temp), include_dashboard=False, **quiet)
            except Exception as exc:  # noqa: BLE001 - Ray's own failure to start, in one line
                raise BatchError(f"cannot start a Ray cluster here: {type(exc).__name__}: {exc}") from None
            yield
        finally:
            self._stop(ray, temp)

    def _stop(self, ray: Any, temp: Path) -> None:
        """Stop the batch's own cluster and wait until every process it started (its daemons, workers, grading
        hosts and gradings, all below this process until the cluster stops) is gone; one that outlives the
        wait is killed."""
        procs = []
        with contextlib.suppress(psutil.Error):
            procs = psutil.Process().children(recursive=True)
        with contextlib.suppress(Exception):  # a cluster that failed to start has nothing to stop
            ray.shutdown()
        _, alive = psutil.wait_procs(list(procs), timeout=15)
        for proc in alive:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        psutil.wait_procs(alive, timeout=5)
        shutil.rmtree(temp, ignore_errors=True)


def _import_ray() -> Any:
    """Ray, or a one-line answer saying how to get it."""
    try:
        import ray
    except ImportError:
        raise BatchError("--engine ray needs Ray: pip install 'grader[ray]'") from None
    return ray


def short_temp_root(room: int) -> str:
    """A root for temporary folders whose sockets add `room` bytes to it (an AF_UNIX path holds at most 107):
    the temporary folder (TMPDIR), or /tmp when that is too deep."""
    root = tempfile.gettempdir()
    return root if len(root) + room <= AF_UNIX_LIMIT else "/tmp"


def task_spec(task: Any, time_limit: float, batch: str) -> dict[str, Any]:
    """What the grading program needs of a StudentTask, as plain data (its files travel apart, as bytes)."""
    collected = task.collected
    return {"batch": batch, "name": task.submission.name, "entry": str(task.submission.path), "kind": task.submission.kind,
            "digest": task.digest, "seed": task.seed, "numbers": list(task.numbers),
            "start_method": task.start_method, "time_limit": time_limit, "found": dict(collected.found),
            "digests": dict(collected.digests), "notes": list(collected.notes),
            "problems": list(collected.problems)}


def pack(folder: Path) -> tuple[dict[str, bytes], dict[str, str]]:
    """A flat folder of collected files as {name: bytes}, and its links (to outside the submission) as
    {name: target}: they stay links, which the grading refuses as it does locally."""
    files, links = {}, {}
    for path in sorted(folder.iterdir()):
        if path.is_symlink():
            links[path.name] = os.readlink(path)
        elif path.is_file():
            files[path.name] = path.read_bytes()
    return files, links


def _outcome(ray: Any, ref: Any) -> dict[str, Any]:
    """A task's return value, or why there is none (Ray gave up on it: retries spent, or the task failed)."""
    try:
        return ray.get(ref)
    except Exception as exc:  # noqa: BLE001 - any Ray failure: this student has no verdict, the batch goes on
        return {"exitcode": None, "error": f"Ray could not run the grading: {type(exc).__name__}: {exc}",
                "elapsed": 0.0}


def _install(job: Job, outcome: dict[str, Any], fingerprint: str) -> JobEnd:
    """Write a student's folder returned by their task into the gradebook (result.json last, the folder swapped
    in whole), and say how the job ended."""
    task = job.args[0]
    elapsed = float(outcome.get("elapsed", 0.0))
    if outcome.get("stopped"):
        return JobEnd(job, None, True, elapsed)
    if outcome.get("fingerprint") not in (None, fingerprint):
        error = (f"RuntimeError: the Ray node {outcome.get('host')} runs another grader (fingerprint "
                 f"{outcome['fingerprint']}, here {fingerprint}): install the same grader on every node")
        return JobEnd(job, None, False, elapsed, error)
    if outcome.get("result") is None:
        return JobEnd(job, outcome.get("exitcode"), False, elapsed, outcome.get("error") or "no result came back")
    stage = Path(tempfile.mkdtemp(prefix=f"{task.submission.name}-", dir=task.out / STAGING))
    try:
        for rel, data in outcome["files"].items():
            target = stage / _safe_relative(rel)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        for rel, link in outcome["links"].items():
            target = stage / _safe_relative(rel)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(link, target)
    except ValueError as exc:  # never written outside the student's folder: this student has no verdict
        shutil.rmtree(stage, ignore_errors=True)
        return JobEnd(job, None, False, elapsed, f"ValueError: {exc}")
    atomic_write(stage / RESULT_FILE, json.dumps(outcome["result"], indent=1))
    install(stage, task.out / task.submission.name)
    return JobEnd(job, 0, False, elapsed)


def _safe_relative(rel: str) -> Path:
    """A path inside a student's folder, as the task named it: never absolute, never out through '..'."""
    parts = PurePosixPath(rel).parts
    if not parts or PurePosixPath(rel).is_absolute() or ".." in parts:
        raise ValueError(f"a grading returned the file {rel!r}, outside its folder")
    return Path(*parts)


# ---- on a worker node: a grading host per Ray worker -------------------------------------------------------------
class GradingHost:
    """A Ray actor (one per CPU of the cluster): it starts a grading host program once, an exec'ed Python with the
    grader, pytest and the checks imported, and grades each student it is given by having the host fork a
    grading from that clean single-threaded program (never from this Ray worker, whose threads make fork
    unsafe): the start costs nothing per student, as with the local engine's workers."""

    def __init__(self) -> None:
        """Start the host program (it dies with this worker, and its grading with it); note this node's grader."""
        self.host = _start_host()
        self.fingerprint = grader_fingerprint()

    def grade(self, spec: dict[str, Any], files: dict[str, bytes], links: dict[str, str]) -> dict[str, Any]:
        """Unpack a student's files into a private folder of this node, have the host grade them, and return the
        student's folder it wrote (or why there is none)."""
        own, out = _private_folders(spec["batch"])
        started = time.monotonic()
        try:
            _unpack(files, links, own / FILES_DIR)
            if self.host.poll() is not None:  # it ended (a bug of ours): a new one, for this student on
                self.host = _start_host()
            ended = _ask_host(self.host, {"spec": spec, "own": str(own), "out": str(out)},
                              spec["time_limit"] + MARGIN)
            outcome = {**ended, "elapsed": round(time.monotonic() - started, 3),
                       "fingerprint": self.fingerprint, "host": socket.gethostname()}
            folder = out / spec["name"]
            if ended.get("stopped") or not (folder / RESULT_FILE).is_file():
                if ended.get("exitcode"):
                    outcome["error"] = (own / "grading.log").read_text(errors="replace")[-4000:]
                return outcome
            result = json.loads((folder / RESULT_FILE).read_text())
            files_back, links_back = _gather(folder)
            return {**outcome, "result": result, "files": files_back, "links": links_back}
        finally:
            _empty(own)
            _empty(out)


def _start_host() -> subprocess.Popen[bytes]:
    """The grading host program, a child of this worker: requests on its stdin, one reply line each."""
    return subprocess.Popen([sys.executable, "-m", PROGRAM, str(os.getpid())], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)


def _ask_host(host: subprocess.Popen[bytes], request: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Send one grading to the host and wait for its reply, at most `timeout` seconds: past that the grading
    is told to stop (it kills its own tree), then killed. {"exitcode": N}, {"stopped": True}, or
    {"exitcode": None} when the host itself ended."""
    assert host.stdin is not None and host.stdout is not None
    try:
        host.stdin.write(json.dumps(request).encode() + b"\n")
        host.stdin.flush()
    except OSError:
        return {"exitcode": None, "error": "the grading host ended"}
    if select.select([host.stdout], [], [], timeout)[0]:
        return _reply(host)
    for sig, grace in ((signal.SIGTERM, 30.0), (signal.SIGKILL, 10.0)):
        with contextlib.suppress(Exception):
            for child in psutil.Process(host.pid).children():
                child.send_signal(sig)
        if select.select([host.stdout], [], [], grace)[0]:
            _reply(host)
            break
    return {"stopped": True}


def _reply(host: subprocess.Popen[bytes]) -> dict[str, Any]:
    """The host's reply line, or the host's end (EOF)."""
    assert host.stdout is not None
    line = host.stdout.readline()
    return json.loads(line) if line else {"exitcode": None, "error": "the grading host ended"}


def _unpack(files: dict[str, bytes], links: dict[str, str], folder: Path) -> None:
    """The student's collected files, flat in `folder` (names are plain file names: nothing else is written)."""
    folder.mkdir(parents=True)
    for name, data in files.items():
        (folder / Path(name).name).write_bytes(data)
    for name, target in links.items():
        os.symlink(target, folder / Path(name).name)


def _gather(folder: Path) -> tuple[dict[str, bytes], dict[str, str]]:
    """Every file of a student's folder but result.json (sent as data) as {relative path: bytes}, and its links."""
    files, links = {}, {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if path.is_symlink():
            links[rel] = os.readlink(path)
        elif path.is_file() and rel != RESULT_FILE:
            files[rel] = path.read_bytes()
    return files, links


def _private_folders(batch: str) -> tuple[Path, Path]:
    """This worker's folders on its node for the batch: one for the student's files and runs, one where their
    grading writes their folder. Every grading hides the others' (their siblings) from its runs, so none is
    ever removed while the batch may run: they are emptied after each student, and a batch's folders go when
    no task of it has started for BATCH_KEEP seconds."""
    root = Path(short_temp_root(GRADING_ROOM)) / f"grader-ray-tasks-{os.getuid()}"
    root.mkdir(mode=0o700, exist_ok=True)
    for other in root.iterdir():
        with contextlib.suppress(OSError):
            if other.name != batch and time.time() - other.stat().st_mtime > BATCH_KEEP:
                shutil.rmtree(other, ignore_errors=True)
    base = root / batch
    base.mkdir(mode=0o700, exist_ok=True)
    os.utime(base)
    for folder in base.iterdir():  # a worker that was killed left its student's files: emptied, kept
        pid = folder.name.split(".", 1)[0]
        if pid.isdigit() and not psutil.pid_exists(int(pid)):
            _empty(folder)
    own, out = base / str(os.getpid()), base / f"{os.getpid()}.book"
    for folder in (own, out):
        folder.mkdir(mode=0o700, exist_ok=True)
        _empty(folder)
    return own, out


def _empty(folder: Path) -> None:
    """Remove what a folder holds, keeping the folder itself (another grading's isolation may name it)."""
    with contextlib.suppress(OSError):
        for entry in folder.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
