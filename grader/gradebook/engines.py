"""Where a batch's gradings run: the engine interface that `grader batch --engine` picks from, so that the batch
plans, shows progress and writes the gradebook the same way whichever engine grades the students.

An engine is called like `workers.run_jobs` (which is the local engine): it runs every job (grade_student of one
StudentTask), calls `on_end` once per job as it ends, with the student's folder already installed in the
gradebook when the job succeeded (exit code 0), and `tick` while nothing ends. Ctrl-C (KeyboardInterrupt)
leaves it with nothing of its own still running."""
from __future__ import annotations

from typing import Callable, Protocol

from grader.gradebook.workers import Job, JobEnd, run_jobs

ENGINES = ("local", "ray")


class Engine(Protocol):
    """Runs a batch's jobs, `workers` at a time (a hint for an engine whose cluster decides), each within
    `time_limit` seconds, calling `on_end` as each ends and `tick` in between."""

    def __call__(self, jobs: list[Job], workers: int, time_limit: float, on_end: Callable[[JobEnd], None],
                 tick: Callable[[], None] = ...) -> None:
        """Run the jobs; return when every one has ended."""


def select(name: str, address: str | None = None) -> Engine:
    """The engine called `name`: "local" (worker processes on this machine) or "ray" (a Ray cluster at
    `address`, RAY_ADDRESS, or one started for the batch alone)."""
    if name == "local":
        if address:
            raise ValueError("--address is the Ray cluster of --engine ray: add --engine ray, or drop --address")
        return run_jobs
    if name == "ray":
        from grader.gradebook.ray_engine import RayEngine

        return RayEngine(address)
    raise ValueError(f"unknown engine {name!r}: choose one of {', '.join(ENGINES)}")
