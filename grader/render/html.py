"""The HTML feedback: one self-contained page per exercise (exNN.html) and an index, rendered with jinja2.

A page shows every check's verdict and reason with links to the student's lines, the student's source with
those lines highlighted, and for each run the checks judged: a timeline of what every process did (inline
SVG), each process's stack when the grader had to stop a hang, and the output of every process. Student
text (output, item reprs, names, paths) is escaped by jinja2's autoescape; the SVG escapes its own text.
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import jinja2
from markupsafe import Markup, escape

from grader import results
from grader.atomic import atomic_write
from grader.render import timeline as timelines
from grader.render import latest
from grader.render.latest import LatestExercise
from grader.render.source import is_library_frame, read_source
from grader.results import (ERROR, FAILED, PASSED, SKIPPED, CheckResult, CriticalSection, Evidence, ExerciseResult,
                            ProcessStack, Report, describe_schedule)

VERDICTS = MappingProxyType({
    PASSED: ("✔", "passed"), FAILED: ("✘", "failed"), ERROR: ("!", "grader error"), SKIPPED: ("–", "not judged"),
})
STATUS_WORDS = MappingProxyType({
    results.EXITED: "ended normally", results.TIMEOUT: "stopped by the grader: still running at the time limit",
    results.DEADLOCK: "stopped by the grader: every process was blocked (a deadlock)",
    results.SELF_DEADLOCK: "stopped by the grader: a process acquired a lock it already held",
    results.KEPT_ALIVE: "stopped by the grader: the main program's code had finished but the program never exited",
    results.OUTPUT_LIMIT: "stopped by the grader: too much output",
    results.PROCESS_LIMIT: "stopped by the grader: too many processes",
    results.DISK_LIMIT: "stopped by the grader: too much written to disk",
})
OUTPUT_HEAD = 2000
OUTPUT_TAIL = 4000
FILE_LIMIT = 2000
OPEN_ERRORS = 3  # the first few processes that wrote to stderr (a traceback) are shown unfolded
MAX_SOURCE_LINES = 1200
SOURCE_CONTEXT = 4
MAX_STACK_TEXT = 20000
_LINE_REF = re.compile(r"\bline (\d+)\b")
TRACEBACK_WORDS = "its full traceback is in the report"
_FRAME = re.compile(r'^\s*File "(?P<file>[^"]*)", line (?P<line>\d+) in (?P<func>.*)$')
_THREAD = re.compile(r"^(Current thread|Thread) (0x[0-9a-fA-F]+)")


# ---- view models -----------------------------------------------------------------------------------------
@dataclass
class LocationView:
    """A line a check points at, with its code and the link to it."""

    line: int
    label: str
    code: str
    href: str


@dataclass
class CheckView:
    """One check as the page shows it."""

    number: int
    anchor: str
    title: str
    outcome: str
    symbol: str
    word: str
    points: str
    max_points: str
    reason: Markup
    overlap: str
    expected: str | None
    actual: str | None
    hint: str
    locations: list[LocationView]
    run: "RunView | None"
    traceback: str | None
    start_methods: str = ""  # "under spawn only": a verdict that differed between start methods


@dataclass
class SourceLine:
    """One line of the student's file, with the notes of the checks and stacks that point at it."""

    number: int
    text: str
    notes: list[tuple[str, list[tuple[str, str]]]] = field(default_factory=list)  # (label, [(href, link text)])
    gap: bool = False


@dataclass
class SourceGap:
    """Lines of a huge file left out (far from every involved line)."""

    first: int
    last: int
    gap: bool = True


@dataclass
class SourceView:
    """The student's file as the page shows it."""

    filename: str
    path: str
    rows: list[SourceLine | SourceGap]
    missing: bool


@dataclass
class FrameView:
    """One frame of a dumped stack."""

    file: str
    line: int
    func: str
    code: str
    href: str


@dataclass
class FrameGroup:
    """Consecutive frames of one kind: the student's (shown) or the library's (folded)."""

    library: bool
    frames: list[FrameView]
    other: list[str] = field(default_factory=list)


@dataclass
class ThreadView:
    """One thread of a process's dumped stack."""

    header: str
    groups: list[FrameGroup]
    student: list[FrameView]
    raw: str = ""  # the header as faulthandler printed it (a thread address), shown on demand


@dataclass
class StackView:
    """A process's stack at the moment the grader stopped the run."""

    label: str
    pid: int
    threads: list[ThreadView]
    stopped_at: FrameView | None
    calling: str


@dataclass
class StreamView:
    """A stream of output (or a file), cut when long."""

    name: str
    text: str
    cut: int


@dataclass
class OutputView:
    """What one process printed."""

    label: str
    streams: list[StreamView]
    open: bool = False
    anchor: str = ""


@dataclass
class RunView:
    """One run as the page shows it: timeline, stacks, output and files."""

    number: int
    anchor: str
    status: str
    status_words: str
    duration: float
    checks: list[tuple[str, str]]
    svg: Markup
    summary: str
    words: list[tuple[str, list[str]]]
    legend: list[str]
    overlap: str
    stacks: list[StackView]
    outputs: list[OutputView]
    files: list[StreamView]
    isolation: str
    schedule: str = ""  # how the grader chose the interleaving (results.describe_schedule)
    late_items: bool = False  # its timeline marks items put after a consumer had stopped, never taken


# ---- public API --------------------------------------------------------------------------------------------
def report_name(exercise: ExerciseResult) -> str:
    """The file name of an exercise's page."""
    return f"ex{exercise.number:02d}.html"


def render(report: Report, latest: list[LatestExercise] | None = None) -> str:
    """The index page: every exercise checked (with `latest`: every one ever checked into the folder, each
    with its latest result), its score and a link to its page."""
    if latest is None:
        rows = [{"exercise": e, "href": report_name(e), "counts": _counts(e.checks)} for e in report.exercises]
        score, max_score, counts = report.score, report.max_score, _counts(report.all_checks())
    else:
        rows = [{"exercise": e, "href": f"ex{e.number:02d}.html", "counts": e.counts} for e in latest]
        score, max_score = sum(e.score for e in latest), sum(e.max_score for e in latest)
        counts = {o: sum(e.counts.get(o, 0) for e in latest) for o in (PASSED, FAILED, ERROR, SKIPPED)}
    return _environment().get_template("index.j2").render(
        report=report, rows=rows, counts=counts, score=score, max_score=max_score,
        all_passed=all(r["exercise"].passed for r in rows) and bool(rows))


def render_exercise(report: Report, exercise: ExerciseResult) -> str:
    """The page of one exercise."""
    lines = read_source(exercise.file)
    filename = Path(exercise.file).name
    runs = _runs(report, exercise, lines, filename)
    checks = [_check_view(i, c, runs, lines, filename, exercise.critical_section)
              for i, c in enumerate(exercise.checks, 1)]
    source = _source_view(exercise, lines, filename, checks, runs)
    return _environment().get_template("exercise.j2").render(
        report=report, exercise=exercise, checks=checks, runs=list(_unique(runs.values())), source=source,
        counts=_counts(exercise.checks), filename=filename)


def write_reports(report: Report, out_dir: Path, keep_others: bool = False) -> Path:
    """Write exNN.html for every exercise of the report and index.html into out_dir; return the index's path.

    With `keep_others` (a student's feedback/ folder), the index also lists the exercises checked earlier."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for exercise in report.exercises:
        _write(out_dir / report_name(exercise), render_exercise(report, exercise))
    index = out_dir / "index.html"
    _write(index, render(report, latest.merge(out_dir, report) if keep_others else None))
    return index


def _write(path: Path, text: str) -> None:
    """Write atomically, so that a browser never shows half a page."""
    atomic_write(path, text, durable=False)


@functools.lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    """The templates of the package, autoescaped (they end in .j2, so autoescape is switched on for all).

    Built once per process: compiling the templates costs more than rendering a page. Jinja2 still reloads a
    template whose file changed, so an instructor's restyling shows at the next render."""
    env = jinja2.Environment(loader=jinja2.PackageLoader("grader", "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["points"] = lambda value: f"{float(value):g}"
    env.globals["verdicts"] = VERDICTS
    return env


def _counts(checks: list[CheckResult]) -> dict[str, int]:
    """How many checks have each outcome."""
    return {outcome: sum(c.outcome == outcome for c in checks) for outcome in (PASSED, FAILED, ERROR, SKIPPED)}


def _unique(values: Any) -> Any:
    """The values in order, each object once (several checks share one run's view)."""
    seen: set[int] = set()
    for value in values:
        if id(value) not in seen:
            seen.add(id(value))
            yield value


# ---- checks -------------------------------------------------------------------------------------------------
def _check_view(number: int, check: CheckResult, runs: dict[str, RunView], lines: list[str], filename: str,
                critical: CriticalSection | None) -> CheckView:
    """The view of one check, its reason's line numbers linked to the source."""
    symbol, word = VERDICTS.get(check.outcome, ("?", check.outcome))
    run = runs.get(check.run) if check.run else None
    overlap = ""
    if run is not None and critical and check.outcome == FAILED and check.id.split("::")[-1] in critical.explains:
        overlap = run.overlap
    elif run is not None and check.outcome == FAILED and run.late_items:
        overlap = run.overlap  # items put after a consumer stopped: the interleaving that lost them
    locations = [
        LocationView(loc.line, loc.label, _code(lines, loc.line), f"#L{loc.line}" if _code_exists(lines, loc.line) else "")
        for loc in check.locations if Path(loc.file).name == filename and loc.line
    ][:6]
    return CheckView(
        number=number, anchor=f"check-{number}", title=check.title, outcome=check.outcome, symbol=symbol, word=word,
        points=f"{check.points:g}", max_points=f"{check.max_points:g}",
        reason=_link_traceback(_link_lines(check.message, lines), check.message, run),
        overlap=overlap, expected=check.expected, actual=check.actual,
        hint=check.hint if check.outcome == FAILED else "", locations=locations, run=run,
        traceback=check.traceback if check.outcome == ERROR else None, start_methods=check.start_method_words())


def _code_exists(lines: list[str], number: int) -> bool:
    """Whether the student's file has this line."""
    return 1 <= number <= len(lines)


def _code(lines: list[str], number: int) -> str:
    """The text of a line of the student's file ('' when there is none)."""
    return lines[number - 1] if _code_exists(lines, number) else ""


def _link_lines(message: str, lines: list[str]) -> Markup:
    """The reason, escaped, with every "line N" of the student's file turned into a link to that line."""
    escaped = str(escape(message))

    def link(match: re.Match[str]) -> str:
        """A link to the student's line, or the words unchanged when the file has no such line."""
        number = int(match.group(1))
        return f'<a href="#L{number}">{match.group(0)}</a>' if _code_exists(lines, number) else match.group(0)

    return Markup(_LINE_REF.sub(link, escaped))


def _link_traceback(reason: Markup, message: str, run: RunView | None) -> Markup:
    """The words that send the student to a traceback become a link to the output of the process the reason
    names (opened, so that the traceback shows at once)."""
    if run is None or TRACEBACK_WORDS not in message.lower():
        return reason
    named = [o for o in run.outputs if o.label.lower() in message.lower() and any(s.name == "err" for s in o.streams)]
    if not named:
        return reason
    target = max(named, key=lambda o: len(o.label))  # "buyer 1 of 10" is not "buyer 10 of 10"
    target.open = True
    words = re.compile(re.escape(TRACEBACK_WORDS), re.IGNORECASE)
    return Markup(words.sub(lambda m: f'<a href="#{target.anchor}">{m.group(0)}</a>', str(reason), count=1))


# ---- runs ---------------------------------------------------------------------------------------------------
def _runs(report: Report, exercise: ExerciseResult, lines: list[str], filename: str) -> dict[str, RunView]:
    """One view per run the exercise's checks were judged from, keyed by the run's id."""
    groups: dict[str, list[CheckResult]] = {}
    for check in exercise.checks:
        if report.run_of(check) is not None:
            groups.setdefault(str(check.run), []).append(check)
    critical = exercise.critical_section
    views: dict[str, RunView] = {}
    numbers = {id(c): i for i, c in enumerate(exercise.checks, 1)}
    for number, (run_id, checks) in enumerate(groups.items(), 1):
        evidence = report.evidence_of(checks[0])
        assert evidence is not None
        failed = any(c.outcome == FAILED and critical and c.id.split("::")[-1] in critical.explains for c in checks)
        views[run_id] = _run_view(number, evidence, [(f"#check-{numbers[id(c)]}", c.title) for c in checks], lines,
                                  filename, critical, bool(failed), any(c.outcome == FAILED for c in checks))
    return views


_NOT_LOADED = ("import_error", "import_exit", "contract_error")


def _status_words(evidence: Evidence) -> str:
    """How the run ended, in words; a file that never loaded did not "end normally": nothing of it ran."""
    if any(isinstance(e, dict) and e.get("ev") in _NOT_LOADED for e in evidence.events):
        return "your file did not load, so none of its functions ran"
    return STATUS_WORDS.get(evidence.status, evidence.status or "unknown")


def _run_view(number: int, evidence: Evidence, checks: list[tuple[str, str]], lines: list[str], filename: str,
              critical: CriticalSection | None, failed: bool, any_failed: bool = False) -> RunView:
    """The view of one run: its timeline built from the probe's events, its stacks and output (the overlaps
    drawn when a check they explain failed; items put after a consumer stopped when any check failed)."""
    anchor = f"run-{number}"
    line = timelines.build(evidence, critical.func if critical else None, critical.success if critical else True,
                           show_overlaps=failed, any_return=bool(critical and critical.any_return),
                           show_late=any_failed)
    title = f"Timeline of run {number}: one lane per process"
    return RunView(
        number=number, anchor=anchor, status=evidence.status,
        status_words=_status_words(evidence), duration=line.duration,
        checks=checks, svg=timelines.svg(line, f"{anchor}-timeline", title), summary=timelines.summary(line),
        words=timelines.words(line), legend=_legend(line), overlap=timelines.overlap_sentence(line),
        stacks=[_stack_view(s, lines, filename) for s in evidence.stacks],
        outputs=_outputs(evidence, anchor), files=[_stream(name, text, FILE_LIMIT) for name, text in sorted(evidence.files.items())],
        isolation=evidence.isolation, schedule=describe_schedule(evidence.schedule), late_items=any(m.kind == "late" for m in line.marks))


def _legend(line: timelines.Timeline) -> list[str]:
    """The legend entries the picture needs, in a fixed order (names of CSS classes of the swatches)."""
    kinds = {s.kind.split()[0] for s in line.segments} | {m.kind for m in line.marks}
    kinds |= {k.split()[0] for k in list(kinds)}
    if any(lane.daemon for lane in line.lanes):
        kinds.add("daemon")
    if line.stop is not None:
        kinds.add("stop")
    order = ["life", "daemon", "call", "hold", "orphan", "overlap", "wait", "put", "get", "put sentinel", "get sentinel",
             "spawn", "crash", "self-deadlock", "unlocked", "late", "stop"]
    return [k for k in order if k == "life" or k in kinds]


def _stream(name: str, text: str, limit: int) -> StreamView:
    """A text cut after `limit` characters (the cut counted)."""
    if len(text) <= limit:
        return StreamView(name, text, 0)
    return StreamView(name, text[:limit], len(text) - limit)


def _cut_middle(name: str, text: str) -> StreamView:
    """Long output keeps its beginning and its end (where a traceback is); the middle is cut with a marker."""
    if len(text) <= OUTPUT_HEAD + OUTPUT_TAIL:
        return StreamView(name, text, 0)
    cut = len(text) - OUTPUT_HEAD - OUTPUT_TAIL
    return StreamView(name, f"{text[:OUTPUT_HEAD]}\n[… {cut:,} characters cut …]\n{text[-OUTPUT_TAIL:]}", cut)


def _outputs(evidence: Evidence, anchor: str = "output") -> list[OutputView]:
    """Output per process, the main program first, then in start order (each with an anchor to link to)."""
    order = {p.get("label"): i for i, p in enumerate(evidence.processes)}
    views = []
    opened = 0
    for label, streams in sorted(evidence.output.items(), key=lambda kv: (kv[0] != "main program", order.get(kv[0], 1e9), kv[0])):
        shown = [_cut_middle(name, str(streams.get(name) or "")) for name in ("out", "err") if streams.get(name)]
        if shown:
            errors = any(s.name == "err" for s in shown)
            views.append(OutputView(str(label), shown, open=errors and opened < OPEN_ERRORS,
                                    anchor=f"{anchor}-output-{len(views) + 1}"))
            opened += errors
    return views


# ---- stacks -------------------------------------------------------------------------------------------------
def _stack_view(stack: ProcessStack, lines: list[str], filename: str) -> StackView:
    """A process's stack, thread by thread: the student's frames shown, library frames folded."""
    threads: list[ThreadView] = []
    current: ThreadView | None = None
    for raw in stack.text[:MAX_STACK_TEXT].splitlines():
        header = _THREAD.match(raw.strip())
        if header or current is None:
            current = ThreadView(_thread_name(len(threads) + 1, raw.strip()) if header else "Stack", [], [],
                                 raw.strip() if header else "")
            threads.append(current)
            if header:
                continue
        match = _FRAME.match(raw)
        if match is None:
            if raw.strip():
                _group(current, True).other.append(raw.strip())
            continue
        path, number = match["file"], int(match["line"])
        mine = Path(path).name == filename and not is_library_frame(path)
        frame = FrameView(_short_path(path) if not mine else filename, number, match["func"].strip(),
                          _code(lines, number) if mine else "", f"#L{number}" if mine and _code_exists(lines, number) else "")
        _group(current, not mine).frames.append(frame)
        if mine:
            current.student.append(frame)
    threads.sort(key=lambda t: not t.student)
    stopped_at, calling = None, ""
    if threads and threads[0].student:
        stopped_at = threads[0].student[0]
        calling = _called_from(threads[0], stopped_at)
    return StackView(stack.label, stack.pid, threads, stopped_at, calling)


def _thread_name(number: int, header: str) -> str:
    """A thread as a student names it: its number, and whether it was the one running (no address)."""
    running = " (the one running when the grader stopped the process)" if header.lower().startswith("current") else ""
    return f"Thread {number}{running}"


def _group(thread: ThreadView, library: bool) -> FrameGroup:
    """The thread's last frame group if it is of this kind, else a new one."""
    if not thread.groups or thread.groups[-1].library != library:
        thread.groups.append(FrameGroup(library, []))
    return thread.groups[-1]


def _called_from(thread: ThreadView, frame: FrameView) -> str:
    """The function the student's innermost frame was calling (the library frame just before it)."""
    previous = ""
    for group in thread.groups:
        for candidate in group.frames:
            if candidate is frame:
                return previous
            previous = candidate.func
    return ""


def _short_path(path: str) -> str:
    """A library path from its package on ("multiprocessing/queues.py"), enough to recognise it."""
    parts = Path(path).parts
    for anchor in ("site-packages", "dist-packages"):
        if anchor in parts:
            return "/".join(parts[parts.index(anchor) + 1:])
    for index, part in enumerate(parts):
        if part.startswith("python3") and index + 1 < len(parts):
            return "/".join(parts[index + 1:])
    return "/".join(parts[-2:])


# ---- source -------------------------------------------------------------------------------------------------
def _source_view(exercise: ExerciseResult, lines: list[str], filename: str, checks: list[CheckView],
                 runs: dict[int, RunView]) -> SourceView:
    """The student's file, each line anchored; lines a check or a stack points at carry notes."""
    notes: dict[int, list[tuple[str, str, str]]] = {}
    for check in checks:
        if check.outcome == PASSED:
            continue
        for loc in check.locations:
            notes.setdefault(loc.line, []).append((loc.label or check.title, f"#{check.anchor}", f"check {check.number}"))
    for run in _unique(runs.values()):
        for stack in run.stacks:
            if stack.stopped_at is not None:
                entry = (f"{stack.label} was here when the grader stopped the run", f"#{run.anchor}-stack-{stack.pid}",
                         f"run {run.number}")
                notes.setdefault(stack.stopped_at.line, []).append(entry)
    rows: list[SourceLine | SourceGap] = []
    shown = _shown_lines(len(lines), set(notes))
    previous = 0
    for number in shown:
        if number > previous + 1:
            rows.append(SourceGap(previous + 1, number - 1))
        rows.append(SourceLine(number, lines[number - 1], _grouped(notes.get(number, []))))
        previous = number
    if lines and previous < len(lines):
        rows.append(SourceGap(previous + 1, len(lines)))
    return SourceView(filename, exercise.file, rows, missing=not lines)


def _grouped(notes: list[tuple[str, str, str]]) -> list[tuple[str, list[tuple[str, str]]]]:
    """Notes with the same words on one line become one note with several links."""
    grouped: dict[str, list[tuple[str, str]]] = {}
    for label, href, text in notes:
        links = grouped.setdefault(label, [])
        if (href, text) not in links:
            links.append((href, text))
    return list(grouped.items())


def _shown_lines(count: int, involved: set[int]) -> list[int]:
    """Every line of a normal file; of a huge one, only the lines around the involved ones."""
    if count <= MAX_SOURCE_LINES:
        return list(range(1, count + 1))
    keep = {n for line in involved for n in range(line - SOURCE_CONTEXT, line + SOURCE_CONTEXT + 1) if 1 <= n <= count}
    return sorted(keep | set(range(1, min(count, 40) + 1)))
