"""The driver: the main program of a student run. It imports the student's module, checks the functions
the exercise's contract names, applies the grader's replacements and calls the planned steps in order.

It runs inside the student process, so like the probe it uses the standard library only and reports
through the probe's events. Usage: ``python grader_driver.py PLAN.json``.
"""
from __future__ import annotations

import importlib
import inspect
import json
import os
import sys
import time
import traceback
from typing import Any, Callable

import grader_events
import grader_probe

_real_sleep = grader_probe._real_sleep  # the grader's replacements wait in real time, never scaled


def _emit(kind: str, **fields: Any) -> None:
    probe = grader_probe.current()
    if probe is not None:
        probe.emit(kind, **fields)


def _student_frames(tb: Any, workdir: str) -> list[dict[str, Any]]:
    """The frames of a traceback that are in the student's files, innermost last."""
    frames = []
    for frame in traceback.extract_tb(tb):
        if os.path.realpath(frame.filename).startswith(workdir + os.sep):
            frames.append({"file": os.path.basename(frame.filename), "line": frame.lineno, "func": frame.name})
    return frames


def _error_fields(exc: BaseException, workdir: str) -> dict[str, Any]:
    """A plain description of an exception: type, message, the student's frames and the traceback text."""
    fields: dict[str, Any] = {
        "error": type(exc).__name__,
        "message": grader_probe._safe_repr(str(exc), 500),
        "frames": _student_frames(exc.__traceback__, workdir),
        "traceback": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))[-6000:],
    }
    if isinstance(exc, SyntaxError):
        fields["frames"].append({"file": os.path.basename(exc.filename or ""), "line": exc.lineno, "func": ""})
        fields["text"] = (exc.text or "").rstrip("\n")
    return fields


def _check_contract(module: Any, contract: dict[str, list[str]]) -> list[dict[str, Any]]:
    """Each named function must exist and accept the named parameters in order."""
    problems = []
    for name, params in contract.items():
        obj = getattr(module, name, None)
        if obj is None:
            problems.append({"name": name, "problem": "missing", "expected": params})
            continue
        if params is None:  # a class or constant: only its presence matters
            continue
        if not callable(obj):
            problems.append({"name": name, "problem": "not callable", "expected": params})
            continue
        try:
            signature = inspect.signature(obj)
        except (TypeError, ValueError):
            continue
        actual = list(signature.parameters)
        try:
            # Positional arity is the contract; a renamed parameter still works, so it is not a failure.
            signature.bind(*params)
        except TypeError:
            line = getattr(getattr(obj, "__code__", None), "co_firstlineno", None)
            problems.append({"name": name, "problem": "signature", "expected": params, "actual": actual,
                             "line": line})
    return problems


def _count_lines(path: str) -> int:
    try:
        with grader_probe._real_open(path, "rb") as f:
            return f.read().count(b"\n")
    except OSError:
        return 0


def _replacement(spec: dict[str, Any]) -> Callable[..., Any]:
    """The grader's stand-in for a given function (e.g. do_work): waits for evidence, then returns or raises."""

    def stand_in(*args: Any, **kwargs: Any) -> None:
        _emit(grader_events.WORK_START, args=[grader_probe._safe_repr(a) for a in args])
        deadline = time.monotonic() + float(spec.get("max_seconds", 3.0))
        path, lines = spec.get("path"), int(spec.get("lines", 0))
        seen = _count_lines(path) if path else 0
        while path and seen < lines and time.monotonic() < deadline:
            _real_sleep(0.005)
            seen = _count_lines(path)
        _real_sleep(float(spec.get("then_sleep", 0.0)))
        _emit(grader_events.WORK_END, lines_seen=seen, raised=bool(spec.get("raise")))
        if spec.get("raise"):
            raise RuntimeError("do_work failed (the grader made it fail on purpose)")

    return stand_in


def _resolve(value: Any, shared: dict[str, Any]) -> Any:
    """Turn the plan's placeholders ({"$lock": name}) into real multiprocessing objects, shared by name."""
    if isinstance(value, dict) and len(value) == 1:
        (key, name), = value.items()
        factories = {"$lock": "Lock", "$rlock": "RLock", "$queue": "Queue"}
        if key in factories:
            if name not in shared:
                import multiprocessing

                shared[name] = getattr(multiprocessing, factories[key])()
            return shared[name]
    if isinstance(value, list):
        return [_resolve(v, shared) for v in value]
    return value


def main() -> int:
    with open(sys.argv[1]) as f:
        plan = json.load(f)
    workdir = os.path.realpath(os.getcwd())  # the runner starts us in the run's directory
    sys.path.insert(0, workdir)
    _emit(grader_events.IMPORT_START, module=plan["module"])
    try:
        module = importlib.import_module(plan["module"])
    except SystemExit as exc:
        _emit(grader_events.IMPORT_EXIT, code=grader_probe._safe_repr(exc.code), **_error_fields(exc, workdir))
        return 3
    except BaseException as exc:  # noqa: BLE001 - a crash at import is the student's, and is reported
        _emit(grader_events.IMPORT_ERROR, **_error_fields(exc, workdir))
        return 3
    _emit(grader_events.IMPORT_DONE)
    problems = _check_contract(module, plan.get("contract", {}))
    if problems:
        _emit(grader_events.CONTRACT_ERROR, problems=problems)
        return 3
    for name, spec in plan.get("replace", {}).items():
        setattr(module, name, _replacement(spec))
    shared: dict[str, Any] = {}
    failed = False
    for index, step in enumerate(plan["steps"]):
        args = _resolve(step.get("args", []), shared)
        kwargs = {k: _resolve(v, shared) for k, v in step.get("kwargs", {}).items()}
        counters = _start_counters(step.get("counters") or {})
        _emit(grader_events.STEP_START, step=index, call=step["call"], label=step.get("label", ""), counters=counters)
        probe = grader_probe.current()
        if probe is not None and probe.turns is not None:
            probe.turns.mark(index, step.get("taken"))
        if probe is not None:
            probe.hold_next_put()
        try:
            result = getattr(module, step["call"])(*args, **kwargs)
        except SystemExit as exc:
            _emit(grader_events.STEP_END, step=index, exit=grader_probe._safe_repr(exc.code), **_error_fields(exc, workdir))
            raise
        except BaseException as exc:  # noqa: BLE001 - recorded as the student's failure
            _emit(grader_events.STEP_END, step=index, **_error_fields(exc, workdir))
            failed = True
            if isinstance(exc, KeyboardInterrupt):
                raise
            continue
        _emit(grader_events.STEP_END, step=index, value=grader_probe._describe(result))
        _report_tampering()
    return 1 if failed else 0


def _start_counters(start: dict[str, int]) -> dict[str, int]:
    """The numbers the next process and thread made will get ("Process-7", "Thread-3"), first set to `start`'s:
    a replay of one step of a plan names them as the whole run did (both counters run across the steps)."""
    import itertools
    import multiprocessing.process as mp_process
    import threading

    try:
        process = int(start.get("process") or next(mp_process._process_counter))  # type: ignore[attr-defined]
        mp_process._process_counter = itertools.count(process)  # type: ignore[attr-defined]
        thread = int(start.get("thread") or threading._counter())  # type: ignore[attr-defined]
        threading._counter = itertools.count(thread).__next__  # type: ignore[attr-defined]
    except (AttributeError, TypeError, ValueError):  # a Python without these counters: names as they come
        return {}
    return {"process": process, "thread": thread}


def _report_tampering() -> None:
    """Say so when the student's code undid the probe's patches: its verdict could not be trusted."""
    probe = grader_probe.current()
    tampered = probe.tampered() if probe is not None else []
    if tampered:
        _emit(grader_events.TAMPER, replaced=tampered)


if __name__ == "__main__":
    sys.exit(main())
