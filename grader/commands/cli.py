"""The command line: `grader check`, `grader list`, `grader hint` (and more as the course grows).

Exit codes of `check`: 0 every check passed, 1 a check failed, 2 a usage error or the grader broke."""
from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Callable

from grader.commands import daily
from grader.commands.arguments import exercise_number
from grader.course import course_root, select
from grader.judging.request import METHOD_CHOICES

EXIT_USAGE = 2
# The instructors' and CI's commands, declared with their arguments in their own modules: those import the
# gradebook, workers and renderers, so they are imported only when one of their commands runs (or the
# full help is asked for). A student's `grader list` starts without them.
LAZY_COMMANDS = {"batch": "grader.commands.batch", "merge": "grader.commands.batch",
                 "ci": "grader.commands.ci", "gradescope-bundle": "grader.commands.ci",
                 "export": "grader.lms.export"}


class _Parser(argparse.ArgumentParser):
    """argparse exits with 2 on a usage error, which is our contract too; keep its message plain."""


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The whole command line; given the arguments, the commands of LAZY_COMMANDS that they do not name are
    only listed (their modules, and their arguments, are left out)."""
    parser = _Parser(prog="grader", description="Judge the course's concurrency exercises.")
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check", help="run the checks of some exercises (all when none is named)")
    check.add_argument("numbers", nargs="*", type=exercise_number, metavar="N")
    check.add_argument("--submission", type=Path, help="judge the exercise files in this folder")
    check.add_argument("--seed", type=int, help="replay the runs of an earlier check")
    check.add_argument("--json", type=Path, help="also write the results model as JSON here")
    check.add_argument("--report-dir", type=Path, metavar="DIR",
                       help="write the HTML reports here (default: feedback/)")
    check.add_argument("--open", action="store_true", help="open the HTML report in the browser")
    check.add_argument("--start-method", choices=METHOD_CHOICES, default=None,
                       help="multiprocessing start method for student code (default: the platform's; "
                            "all: every one, a check passes only under all)")
    commands.add_parser("list", help="the exercises with their status from the last check, and your progress")
    hint = commands.add_parser("hint", help="the next hint of an exercise (one more each time)")
    hint.add_argument("number", type=exercise_number)
    hint.add_argument("--all", action="store_true", help="every hint at once")
    reset = commands.add_parser("reset", help="restore an exercise's stub, keeping your version as a backup")
    reset.add_argument("number", type=exercise_number)
    reset.add_argument("--yes", action="store_true", help="do not ask")
    watch = commands.add_parser("watch", help="re-check whenever you save an exercise")
    watch.add_argument("number", nargs="?", type=exercise_number)
    named = argv[0] if argv else None
    if argv is None or named is None or named.startswith("-") or named in LAZY_COMMANDS:
        for module in dict.fromkeys(LAZY_COMMANDS.values()):
            importlib.import_module(module).add_arguments(commands)
    else:
        for name in LAZY_COMMANDS:
            commands.add_parser(name)  # not run this time: listed among the choices, never parsed
    return parser


def cmd_check(args: argparse.Namespace) -> int:
    from grader.commands import progress
    from grader.judging import session
    from grader.judging.request import Request
    from grader.lms import hidden  # checks hidden until an assignment's due date
    from grader.render import jsonfile, terminal

    try:
        exercises = select(args.numbers)
    except ValueError as exc:
        print(f"grader: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.submission is not None and not args.submission.is_dir():
        print(f"grader: --submission {args.submission}: no such folder", file=sys.stderr)
        return EXIT_USAGE
    request = Request.build(exercises, args.submission, args.seed, args.start_method, report_dir=args.report_dir)
    if terminal.use_color():
        from rich.console import Console

        with Console().status("running the checks..."):
            report = session.judge(request)
    else:
        report = session.judge(request)
    report = hidden.for_students(report)  # checks hidden until an assignment's due date stay hidden
    sys.stdout.write(terminal.render(report))
    if args.submission is None:
        state = progress.load(course_root())
        state.record(report)
        progress.save(course_root(), state)
    if args.json is not None:
        args.json.write_text(jsonfile.render(report))
    from grader.render import html  # the HTML pages: exNN.html per exercise and index.html

    try:
        index = html.write_reports(report, request.report_dir, keep_others=True)
    except OSError as exc:  # the verdict stands; only the pages are missing
        print(f"grader: could not write the HTML report to {request.report_dir}: {exc}", file=sys.stderr)
    else:
        page = index.with_name(html.report_name(report.exercises[0])) if len(report.exercises) == 1 else index
        print(f"report: {page}" + (f" (every exercise checked: {index})" if page != index else ""))
        if args.open:
            import webbrowser

            if not webbrowser.open(page.resolve().as_uri()):
                print(f"grader: no browser could be opened; open {page} yourself", file=sys.stderr)
    return report.exit_code()


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "check": cmd_check, "list": daily.cmd_list, "hint": daily.cmd_hint, "reset": daily.cmd_reset,
    "watch": daily.cmd_watch,
}


def _command(name: str) -> Callable[[argparse.Namespace], int]:
    if name in LAZY_COMMANDS:
        return importlib.import_module(LAZY_COMMANDS[name]).COMMANDS[name]
    return COMMANDS[name]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(argv).parse_args(argv)
    # SIGTERM and SIGHUP (a cancelled CI job, a closed terminal) stop the grader like Ctrl-C: every run is
    # killed on the way out. Handlers can be set in the main thread only.
    received: list[int] = []

    def terminate(signum: int, frame: object) -> None:
        received.append(signum)
        raise KeyboardInterrupt

    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = {sig: signal.signal(sig, terminate) for sig in (signal.SIGTERM, signal.SIGHUP) if in_main_thread}
    try:
        return _command(args.command)(args)
    except KeyboardInterrupt:
        if received:
            print(f"grader: stopped by {signal.Signals(received[0]).name}", file=sys.stderr)
            return 128 + received[0]
        print("grader: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head`: the reader left, nothing is wrong
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except Exception:  # noqa: BLE001 - the grader broke: say so, and never exit 0
        import traceback

        print("grader: internal error (not your fault):", file=sys.stderr)
        traceback.print_exc()
        return EXIT_USAGE
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


if __name__ == "__main__":
    sys.exit(main())
