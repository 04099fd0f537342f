"""A pytest plugin for bench_commands.py's breakdown: it only records when pytest's phases happen (loaded
through PYTEST_PLUGINS in an instrumented run; it changes nothing). Stamps are time.perf_counter() values
of the grading process, written as JSON to $BENCH_PHASES_FILE when pytest unconfigures."""
from __future__ import annotations

import json
import os
import time
from collections.abc import Generator

import pytest

STAMPS = pytest.StashKey[dict[str, float]]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[STAMPS] = {"configure": time.perf_counter(), "checks": 0.0}


def pytest_sessionstart(session: pytest.Session) -> None:
    session.config.stash[STAMPS]["sessionstart"] = time.perf_counter()


def pytest_collection_finish(session: pytest.Session) -> None:
    session.config.stash[STAMPS]["collected"] = time.perf_counter()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    began = time.perf_counter()
    yield
    item.config.stash[STAMPS]["checks"] += time.perf_counter() - began


def pytest_unconfigure(config: pytest.Config) -> None:
    stamps = config.stash.get(STAMPS, None)
    path = os.environ.get("BENCH_PHASES_FILE")
    if stamps is not None and path:
        stamps["unconfigure"] = time.perf_counter()
        with open(path, "a") as f:
            f.write(json.dumps(stamps) + "\n")
