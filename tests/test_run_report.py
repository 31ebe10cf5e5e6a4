"""What the whole run says: the header, the summary by route, the JSON report, under xdist too."""

from __future__ import annotations

import json
import re
from importlib.resources import files
from pathlib import Path

import pytest
from conftest import INI, line_of

TWO_ROUTES = """
import time
import pytest

def test_sleep_once(test_client):
    test_client.get("/sleep")

def test_sleep_and_cpu(test_client):
    test_client.get("/sleep")
    test_client.get("/cpu")

def test_fast(test_client):
    test_client.get("/fast")
"""


def test_the_header_says_loopwatch_watches_and_its_threshold(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_nothing(): pass")
    result = pytester.runpytest("--loopwatch", "--loopwatch-threshold=250ms")
    result.stdout.fnmatch_lines(
        ["loopwatch: watching every test for blocking calls and stalls over 250 ms"]
    )
    result = pytester.runpytest("--loopwatch", "--loopwatch-threshold-only")
    result.stdout.fnmatch_lines(["loopwatch: watching every test for stalls over 100 ms"])
    pytester.runpytest().stdout.no_fnmatch_line("loopwatch:*")


def test_the_summary_groups_stalls_by_route_and_line(
    pytester: pytest.Pytester, app_files: Path
) -> None:
    pytester.makepyfile(TWO_ROUTES)
    result = pytester.runpytest("--loopwatch")
    result.assert_outcomes(passed=1, failed=2)
    # Both routes stall for about the same time, so either may come first.
    result.stdout.fnmatch_lines(["*= loopwatch =*"])
    result.stdout.fnmatch_lines(
        [
            "GET /sleep  route /sleep: 2 stalls, worst * ms, total * ms",
            f"  at app.py:{line_of(app_files, 'SLEEP')}: time.sleep(STALL)  # SLEEP",
            "  in test_the_summary_groups_stalls_by_route_and_line.py::test_sleep_once",
            "  in test_the_summary_groups_stalls_by_route_and_line.py::test_sleep_and_cpu",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "GET /cpu  route /cpu: 1 stall, worst * ms, total * ms",
            f"  at app.py:{line_of(app_files, 'CPU')}: while time.thread_time() < deadline: *",
            "  in test_the_summary_groups_stalls_by_route_and_line.py::test_sleep_and_cpu",
        ]
    )


def test_without_stalls_the_summary_is_one_line_counting_the_app_calls_watched(
    pytester: pytest.Pytester, app_files: Path
) -> None:
    pytester.makepyfile(
        """
        def test_fast(test_client):
            test_client.get('/fast')
            test_client.get('/fast')

        def test_no_app_at_all():
            pass
        """
    )
    result = pytester.runpytest("--loopwatch")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["loopwatch: no stalls (threshold 100 ms, 2 app calls watched)"])
    result.stdout.no_fnmatch_line("*= loopwatch =*")
    result = pytester.runpytest("--loopwatch", "-k", "no_app")
    result.stdout.fnmatch_lines(
        ["loopwatch: no stalls (threshold 100 ms, no app call watched: no test called an app *)"]
    )


def validate(document: object) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(files("pytest_loopwatch").joinpath("report.schema.json").read_text())
    jsonschema.validate(document, schema)


def test_the_json_report_holds_every_stall_as_the_failure_text_tells_it(
    pytester: pytest.Pytester, app_files: Path
) -> None:
    pytester.makepyfile(TWO_ROUTES)
    result = pytester.runpytest("--loopwatch", "--loopwatch-report=out/loopwatch.json")
    result.assert_outcomes(passed=1, failed=2)
    report = pytester.path / "out" / "loopwatch.json"
    document = json.loads(report.read_text())
    validate(document)
    assert list(report.parent.iterdir()) == [report]  # written in one piece, nothing left over
    assert document["schema"] == 1
    assert document["threshold_s"] == 0.1
    stalls = document["stalls"]
    assert [(s["test"].split("::")[1], s["request"]["path"]) for s in stalls] == [
        ("test_sleep_once", "/sleep"),
        ("test_sleep_and_cpu", "/sleep"),
        ("test_sleep_and_cpu", "/cpu"),
    ]
    first = stalls[0]
    assert first["request"] == {"type": "http", "method": "GET", "path": "/sleep"}
    assert first["route"] == "/sleep"
    assert first["endpoint"] == {
        "name": "app.sleep",
        "file": "app.py",
        "line": first["endpoint"]["line"],
        "is_async": True,
    }
    assert first["threshold_s"] == 0.1
    assert first["location"]["file"] == "app.py"
    assert first["location"]["line"] == line_of(app_files, "SLEEP")
    assert first["location"]["code"] == "time.sleep(STALL)  # SLEEP"
    assert first["stack"][-1] == first["location"]
    shown = [int(ms) for ms in re.findall(r"^  blocked (\d+) ms", result.stdout.str(), re.M)]
    assert shown == [round(s["duration_s"] * 1000) for s in stalls]


def test_an_empty_run_writes_an_empty_report(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_nothing(): pass")
    pytester.runpytest("--loopwatch", "--loopwatch-report=loopwatch.json").assert_outcomes(passed=1)
    document = json.loads((pytester.path / "loopwatch.json").read_text())
    validate(document)
    assert document == {
        "schema": 1,
        "threshold_s": 0.1,
        "stalls": [],
        "allowed": {},
        "unmatched_allow_rules": [],
    }


@pytest.mark.slow
@pytest.mark.parametrize("workers", [["-n", "2"], ["-p", "no:xdist"]])
def test_with_xdist_each_stall_is_summarised_and_reported_once(
    pytester: pytest.Pytester, app_files: Path, workers: list[str]
) -> None:
    pytest.importorskip("xdist")
    pytester.makepyfile(TWO_ROUTES)
    result = pytester.runpytest_subprocess(
        "--loopwatch", "--loopwatch-report=loopwatch.json", *workers
    )
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(
        [
            "loopwatch: the event loop was blocked 2 times (threshold 100 ms)",  # the test's own
            "*= loopwatch =*",
        ]
    )
    result.stdout.fnmatch_lines(["GET /sleep  route /sleep: 2 stalls, *"])
    result.stdout.fnmatch_lines(["GET /cpu  route /cpu: 1 stall, *"])
    stalls = json.loads((pytester.path / "loopwatch.json").read_text())["stalls"]
    assert sorted(s["request"]["path"] for s in stalls) == ["/cpu", "/sleep", "/sleep"]

    baseline = ["--loopwatch-baseline=baseline.json"]
    pytester.runpytest_subprocess(
        "--loopwatch", *baseline, "--loopwatch-update-baseline", *workers
    ).assert_outcomes(passed=3)
    recorded = json.loads((pytester.path / "baseline.json").read_text())["stalls"]
    assert sorted(entry["route"] for entry in recorded) == ["/cpu", "/sleep", "/sleep"]
    pytester.runpytest_subprocess("--loopwatch", *baseline, *workers).assert_outcomes(passed=3)


def test_warn_mode_reports_stalls_without_failing(
    pytester: pytest.Pytester, app_files: Path
) -> None:
    pytester.makepyfile(TWO_ROUTES)
    # In a subprocess: the warnings filters of the outer session do not reach it.
    result = pytester.runpytest_subprocess("--loopwatch", "--loopwatch-mode=warn")
    result.assert_outcomes(passed=3, warnings=2)
    result.stdout.fnmatch_lines(
        [
            "*LoopwatchWarning: loopwatch: the event loop was blocked 1 time*",
            "*= loopwatch =*",
            "GET /sleep  route /sleep: 2 stalls, *",
        ]
    )


def test_an_ini_mode_and_a_bad_mode(pytester: pytest.Pytester, app_files: Path) -> None:
    pytester.makeini(INI + "loopwatch_mode = warn\n")
    pytester.makepyfile(TWO_ROUTES)
    pytester.runpytest_subprocess("--loopwatch").assert_outcomes(passed=3, warnings=2)
    result = pytester.runpytest("--loopwatch", "--loopwatch-mode=loud")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: 'loud' is not a valid mode for --loopwatch-mode; use fail or warn"]
    )


def test_a_baseline_keeps_known_stalls_green_and_new_ones_red(
    pytester: pytest.Pytester, app_files: Path
) -> None:
    pytester.makepyfile(TWO_ROUTES)
    baseline = ["--loopwatch", "--loopwatch-baseline=loopwatch-baseline.json"]
    pytester.runpytest(*baseline, "--loopwatch-update-baseline").assert_outcomes(passed=3)
    recorded = json.loads((pytester.path / "loopwatch-baseline.json").read_text())
    assert len(recorded["stalls"]) == 3

    pytester.runpytest(*baseline).assert_outcomes(passed=3)

    pytester.makepyfile(
        TWO_ROUTES
        + """
def test_new_blocking(test_client):
    test_client.get("/json")

def test_sleep_once(test_client):
    pass
"""
    )
    result = pytester.runpytest(*baseline)
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*_ test_new_blocking _*",
            "  GET /json  route /json",
            "loopwatch baseline: 2 known stalls did not fail, 1 stale entry",
            "  stale: *::test_sleep_once /sleep at app.py in sleep",
            "FAILED *::test_new_blocking*",
        ]
    )


def test_junit_xml_carries_each_stall_as_a_property(
    pytester: pytest.Pytester, app_files: Path
) -> None:
    pytester.makepyfile(TWO_ROUTES)
    pytester.runpytest("--loopwatch", "--junitxml=junit.xml").assert_outcomes(passed=1, failed=2)
    xml = (pytester.path / "junit.xml").read_text()
    assert (
        xml.count('<property name="loopwatch_stall" value="GET /sleep  route /sleep: blocked') == 2
    )
    assert xml.count('<property name="loopwatch_stall" value="GET /cpu  route /cpu: blocked') == 1
