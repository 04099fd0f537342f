"""`grader ci` and `grader gradescope-bundle`: the exit code of `grader check`; JUnit read by a real JUnit reader
(junitparser) with the right counts; Gradescope's results.json valid against a JSON Schema written from its
documentation (tests/schemas/gradescope.json); GitHub Classroom's `result` output; GitHub Actions annotations at
the student's line and the step summary; a crash or timeout of the grading still yields every check."""
from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import junitparser
import pytest

from conftest import ROOT
from grader.running import isolation, privileges

CLASS = Path(__file__).resolve().parent / "fixtures" / "class"
SCHEMA = json.loads((Path(__file__).resolve().parent / "schemas" / "gradescope.json").read_text())
EX01 = "ex01_oversold_ticket.py"
LOCKED_READ_ONLY = CLASS / "heidi" / EX01  # ex01 with the lock around the read only: 2 checks fail (5/10)
CHECKS_EX01 = 5


def validate(results: dict) -> None:
    """Gradescope's results.json against the schema written from its documentation (jsonschema: test extra)."""
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(results, SCHEMA)


def grader_ci(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("GITHUB_")}
    # fork only: these tests are about the outputs; --start-method all (the default) is tested in test_session
    args = [*args, "--start-method", "fork"] if "--start-method" not in args and "--help" not in args else list(args)
    return subprocess.run([sys.executable, "-m", "grader", "ci", *args], cwd=cwd, capture_output=True, text=True,
                          env={**environment, **env}, timeout=300)


def submission(tmp: Path, source: Path, nested: str = "") -> Path:
    folder = tmp / "repo"
    (folder / nested).mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, folder / nested / EX01)
    return folder


@pytest.fixture(scope="module")
def wrong(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """One `grader ci 1` of a wrong fix on "GitHub Actions", asked for every output."""
    tmp = tmp_path_factory.mktemp("ci-wrong")
    repo = submission(tmp, LOCKED_READ_ONLY)
    out, summary = tmp / "output.txt", tmp / "summary.md"
    done = grader_ci(["1", "--submission", ".", "--junit", str(tmp / "junit.xml"), "--gradescope",
                      str(tmp / "gs" / "results.json"), "--classroom", "--seed", "7"], repo, GITHUB_ACTIONS="true",
                     GITHUB_OUTPUT=str(out), GITHUB_STEP_SUMMARY=str(summary), GITHUB_WORKSPACE=str(repo))
    return {"done": done, "tmp": tmp, "repo": repo, "output": out, "summary": summary}


def test_exit_code_is_that_of_check(wrong: dict[str, object]) -> None:
    done = wrong["done"]
    assert done.returncode == 1, done.stderr
    assert "No ticket is sold twice" in done.stdout and "score 5/10" in done.stdout


def test_junit_is_read_by_a_junit_reader_with_the_right_counts(wrong: dict[str, object]) -> None:
    xml = junitparser.JUnitXml.fromfile(str(wrong["tmp"] / "junit.xml"))
    suites = list(xml)
    assert len(suites) == 1
    suite = suites[0]
    counts = (suite.name, suite.tests, suite.failures, suite.errors, suite.skipped)
    assert counts == ("ex01_oversold_ticket", 5, 2, 0, 0)
    cases = {case.name: case for case in suite}
    assert len(cases) == CHECKS_EX01 and {c.classname for c in cases.values()} == {"ex01_oversold_ticket"}
    oversold = cases["No ticket is sold twice"]
    (failure,) = oversold.result
    assert isinstance(failure, junitparser.Failure)
    assert "got a ticket" in failure.message and "\n" not in failure.message
    assert "critical section" in failure.text and "hint:" in failure.text and "seed: " in failure.text
    assert re.search(r"at ex01_oversold_ticket\.py:\d+", failure.text)
    assert oversold.system_out.splitlines()[:2] == ["check: ex01::check_no_ticket_is_oversold", "points: 0/3"]
    assert cases["Every buyer finishes"].is_passed
    properties = {p.name: p.value for p in suite.properties()}
    assert properties["points"] == "5" and properties["points:ex01::check_no_ticket_is_oversold"] == "0/3"
    assert properties["isolation"].startswith(_level())
    assert properties["points:ex01::check_every_buyer_finishes"] == "2/2"


def test_junit_validates_against_jenkins_xunit_schema(wrong: dict[str, object]) -> None:
    """Jenkins' xunit plugin rejects a JUnit file its junit-10.xsd does not accept (tests/schemas/junit-10.xsd)."""
    xmlschema = pytest.importorskip("xmlschema")
    schema = xmlschema.XMLSchema(str(Path(__file__).resolve().parent / "schemas" / "junit-10.xsd"))
    errors = list(schema.iter_errors(str(wrong["tmp"] / "junit.xml")))
    assert errors == []


def test_gradescope_results_follow_gradescopes_format(wrong: dict[str, object]) -> None:
    results = json.loads((wrong["tmp"] / "gs" / "results.json").read_text())
    validate(results)
    assert results["score"] == 5 and len(results["tests"]) == CHECKS_EX01
    assert {t["status"] for t in results["tests"]} == {"passed", "failed"}
    assert sum(t["score"] for t in results["tests"]) == 5 and sum(t["max_score"] for t in results["tests"]) == 10
    failed = [t for t in results["tests"] if t["status"] == "failed"]
    assert [t["number"] for t in failed] == ["1.1", "1.2"]
    assert "got a ticket" in failed[0]["output"] and failed[0]["visibility"] == "visible"
    assert results["extra_data"]["isolation"].startswith(_level())
    assert f"Isolation: {results['extra_data']['isolation']}" in results["output"]


def _level() -> str:
    """The isolation level the grader picks on this machine, as the reports name it (bwrap+uid, none...)."""
    return isolation.in_force().split(":", 1)[0] + ":"


def test_classroom_reads_every_test_from_the_step_output(wrong: dict[str, object]) -> None:
    lines = Path(wrong["output"]).read_text().splitlines()
    (line,) = [l for l in lines if l.startswith("result=")]
    document = json.loads(base64.b64decode(line.removeprefix("result=")))
    assert (document["version"], document["status"], document["max_score"]) == (1, "fail", 10)
    assert len(document["tests"]) == 10  # one test per point: the reporter's two totals agree
    assert len({t["name"].split(" (point")[0] for t in document["tests"]}) == CHECKS_EX01
    for test in document["tests"]:
        assert set(test) == {"name", "status", "score", "message", "test_code", "filename", "line_no", "duration"}
        assert test["status"] in ("pass", "fail") and isinstance(test["line_no"], int)
        assert test["test_code"] == "grader check 1 --seed 7" and test["filename"] == EX01
    assert sum(t["score"] for t in document["tests"]) == 5
    assert sum(t["status"] == "pass" for t in document["tests"]) == 5
    assert "got a ticket" in document["tests"][0]["message"]


def test_annotations_point_at_the_students_line(wrong: dict[str, object]) -> None:
    source = (wrong["repo"] / EX01).read_text().splitlines()
    buy_ticket = next(i for i, text in enumerate(source, 1) if text.startswith("def buy_ticket"))
    # the lock covers only the read: the annotation points at the write made without it
    unprotected = next(i for i, text in enumerate(source[buy_ticket:], buy_ticket + 1) if "save(db_path, data)" in text)
    errors = [l for l in wrong["done"].stdout.splitlines() if l.startswith("::error ")]
    assert len(errors) == 2
    assert errors[0].startswith(f"::error file={EX01},line={unprotected},title=Exercise 1%3A No ticket is sold twice::")
    assert "got a ticket" in errors[0] and "\n" not in errors[0] and "%0AHint%3A" not in errors[0]


def test_step_summary_is_markdown(wrong: dict[str, object]) -> None:
    text = Path(wrong["summary"]).read_text()
    assert text.startswith("## grader: 5/10 points\n")
    assert "| ❌ | No ticket is sold twice | 0/3 |" in text and "| ✅ | Every buyer finishes | 2/2 |" in text
    assert f"_Isolation: {_level()}" in text
    assert f"(`{EX01}:" in text and "Replay exactly: `grader check 1 --seed 7 --submission . --start-method fork`" in text


def test_a_correct_submission_nested_anywhere_passes(tmp_path: Path) -> None:
    repo = submission(tmp_path, ROOT / "solutions" / EX01, nested="src/lab3")
    done = grader_ci(["1", "--submission", str(repo), "--classroom", "--junit", "j.xml"], tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    (line,) = [l for l in done.stdout.splitlines() if l.startswith("result=")]
    document = json.loads(base64.b64decode(line.removeprefix("result=")))
    assert document["status"] == "pass" and {t["status"] for t in document["tests"]} == {"pass"}
    assert document["tests"][0]["filename"].endswith(f"repo/src/lab3/{EX01}")
    suite = next(iter(junitparser.JUnitXml.fromfile(str(tmp_path / "j.xml"))))
    assert (suite.tests, suite.failures, suite.errors) == (5, 0, 0)


def test_a_grading_that_runs_out_of_time_still_reports_every_check(tmp_path: Path) -> None:
    repo = submission(tmp_path, CLASS / "frank" / EX01)  # hangs: the grading cannot finish in 2 s
    results = tmp_path / "results.json"
    done = grader_ci(["1", "--submission", str(repo), "--time-limit", "2", "--classroom", "--gradescope", str(results),
                      "--junit", "j.xml"], tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    (line,) = [l for l in done.stdout.splitlines() if l.startswith("result=")]
    document = json.loads(base64.b64decode(line.removeprefix("result=")))
    assert document["status"] == "error" and len(document["tests"]) == 10  # one per point
    assert {(t["status"], t["score"]) for t in document["tests"]} == {("error", 0)}
    message = document["tests"][0]["message"]
    assert "stopped after 2 s" in message and "not your fault" in message
    gradescope = json.loads(results.read_text())
    validate(gradescope)
    assert gradescope["score"] == 0 and len(gradescope["tests"]) == CHECKS_EX01
    suite = next(iter(junitparser.JUnitXml.fromfile(str(tmp_path / "j.xml"))))
    assert (suite.tests, suite.errors) == (5, 5)


@pytest.mark.parametrize("args", [["99"], ["1", "--submission", "nowhere"]])
def test_usage_errors_exit_2(args: list[str], tmp_path: Path) -> None:
    done = grader_ci(args, tmp_path)
    assert done.returncode == 2 and done.stderr.startswith("grader: ")


def test_a_missing_submission_still_gives_classroom_every_test(tmp_path: Path) -> None:
    done = grader_ci(["1", "--submission", "nowhere", "--classroom"], tmp_path)
    assert done.returncode == 2
    (line,) = [l for l in done.stdout.splitlines() if l.startswith("result=")]
    document = json.loads(base64.b64decode(line.removeprefix("result=")))
    assert document["status"] == "error" and len(document["tests"]) == 10  # one per point
    assert "nowhere does not exist" in document["tests"][0]["message"]


def test_junit_carries_student_output_that_xml_cannot(tmp_path: Path) -> None:
    from grader.render import junit
    from grader.results import Evidence, CheckResult, ExerciseResult, Report, RunResult

    check = CheckResult(id="ex01::check_x", exercise=1, title="A <check> & \"more\"", outcome="failed", points=0,
                        max_points=1, message="bad\x00byte\x1b[31m", run="ex01/default/1")
    run = RunResult("ex01/default/1", evidence=Evidence(status="exited", output={
        "main program": {"out": "\x07bell \ud800 surrogate"}}))
    report = Report(seed=1, start_method="default", submission=".", grader_version="x", command="grader check 1",
                    exercises=[ExerciseResult(1, "ex01_oversold_ticket", "T", EX01, [check])], runs=[run])
    path = tmp_path / "j.xml"
    path.write_text(junit.render(report), encoding="utf-8", errors="surrogatepass")
    case = next(iter(next(iter(junitparser.JUnitXml.fromfile(str(path))))))
    assert case.name == 'A <check> & "more"' and case.result[0].message == "bad\ufffdbyte\ufffd[31m"


def test_gradescope_bundle_installs_and_grades(tmp_path: Path) -> None:
    bundle = tmp_path / "autograder.zip"
    done = subprocess.run([sys.executable, "-m", "grader", "gradescope-bundle", str(bundle), "1"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    with zipfile.ZipFile(bundle) as archive:
        names = archive.namelist()
        assert {"setup.sh", "run_autograder"} <= set(names), "both at the root of the zip"
        for script in ("setup.sh", "run_autograder"):
            assert (archive.getinfo(script).external_attr >> 16) & 0o111, f"{script} is executable"
        assert "grader-src/grader/checks/ex01.py" in names and "grader-src/grader/probe/grader_probe.py" in names
        assert not [n for n in names if "solutions/" in n or "__pycache__" in n], "never the solutions"
        project = tomllib.loads(archive.read("grader-src/pyproject.toml").decode())
        assert project["project"]["scripts"]["grader"] == "grader.commands.cli:main"
        archive.extractall(tmp_path / "autograder" / "source")
    root = tmp_path / "autograder"
    for script in ("setup.sh", "run_autograder"):
        assert subprocess.run(["bash", "-n", str(root / "source" / script)]).returncode == 0
    # Gradescope's harness: the submission under /autograder/submission, the grader installed by setup.sh
    # (here: this virtualenv stands in for the one setup.sh makes).
    (root / "submission" / "lab").mkdir(parents=True)
    shutil.copyfile(ROOT / "solutions" / EX01, root / "submission" / "lab" / EX01)
    os.symlink(sys.prefix, root / "venv")
    run_autograder = root / "source" / "run_autograder"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GITHUB_")} | {"AUTOGRADER_ROOT": str(root)}
    dropped = privileges.run_identity() is not None
    if os.geteuid() == 0 and not dropped:  # this machine's Python is private to root: setup.sh would chmod it
        env["GRADER_REQUIRE_UID_DROP"] = "0"
    subprocess.run(["bash", str(run_autograder)], env=env, capture_output=True, timeout=300, check=True)
    results = json.loads((root / "results" / "results.json").read_text())
    validate(results)
    assert results["score"] == 10 and len(results["tests"]) == CHECKS_EX01
    # Student code never ran as root where the grader could drop it; the results say what isolation held.
    assert ("unprivileged uid" in results["extra_data"]["isolation"]) == dropped
    os.unlink(root / "venv")  # a grader that cannot even start: run_autograder still leaves valid results
    subprocess.run(["bash", str(run_autograder)], env=env, capture_output=True, timeout=60, check=True)
    fallback = json.loads((root / "results" / "results.json").read_text())
    validate(fallback)
    assert fallback["score"] == 0 and "not your fault" in fallback["output"]
