"""Where CI shows the blocking line: GitHub Actions annotations and a SARIF log.

`schemas/sarif-schema-2.1.0.json` is OASIS's SARIF 2.1.0 schema (errata 01, the `id` it
carries), shipped so that the log is validated without a network.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import line_of

SCHEMA = Path(__file__).parent / "schemas" / "sarif-schema-2.1.0.json"

APP_AND_TESTS = """
import time
from pathlib import Path

from fastapi import FastAPI
from fastapi.testclient import TestClient

app = FastAPI()


@app.get("/sleep/{name}")
async def sleep(name: str) -> None:
    time.sleep(0.3)  # SLEEP


@app.get("/read")
async def read() -> int:
    return len(Path(__file__).read_text())  # READ


@app.get("/read-off-the-loop")
def read_off_the_loop() -> int:
    return len(Path(__file__).read_text())


def test_sleep_once():
    TestClient(app).get("/sleep/a")


def test_sleep_and_read():
    client = TestClient(app)
    client.get("/sleep/b")
    client.get("/read")


def test_read_off_the_loop():
    TestClient(app).get("/read-off-the-loop")
"""


@pytest.fixture
def ci_app(pytester: pytest.Pytester) -> Path:
    """Two blocking lines (a stall and a fast blocking call) and a clean twin of the call."""
    return pytester.makepyfile(test_ci=APP_AND_TESTS)


def _commands(lines: list[str]) -> list[str]:
    return [line for line in lines if line.startswith("::")]


def test_github_actions_gets_one_annotation_per_blocking_line(
    pytester: pytest.Pytester, ci_app: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    result = pytester.runpytest("--loopwatch")
    result.assert_outcomes(passed=1, failed=2)
    commands = _commands(result.outlines)
    assert len(commands) == 2, commands
    sleep, read = line_of(ci_app, "SLEEP"), line_of(ci_app, "READ")
    result.stdout.fnmatch_lines(
        [
            f"::error file=test_ci.py,line={sleep},title=loopwatch%3A the event loop was blocked"
            "::GET /sleep/a (route /sleep/{name}), GET /sleep/b (route /sleep/{name}) "
            "blocked the event loop 2 times, worst * ms (threshold 100 ms), "
            "calling time.sleep(0.3)%0Afix: use `await asyncio.sleep(...)` (or `anyio.sleep`)"
            "%0Ain test_ci.py::test_sleep_once, test_ci.py::test_sleep_and_read",
        ]
    )
    assert commands[1].startswith(
        f"::error file=test_ci.py,line={read},title=loopwatch%3A a blocking call on the event "
        "loop::GET /read (route /read) called open("
    ), commands[1]
    assert commands[1].endswith("%0Ain test_ci.py::test_sleep_and_read"), commands[1]


def test_annotations_name_files_from_the_repository_root(
    pytester: pytest.Pytester, ci_app: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_WORKSPACE", str(pytester.path.parent))
    result = pytester.runpytest("--loopwatch", "-k", "sleep_once or off_the_loop")
    result.assert_outcomes(passed=1, failed=1)
    assert [command.split("::")[1] for command in _commands(result.outlines)] == [
        f"error file={pytester.path.name}/test_ci.py,line={line_of(ci_app, 'SLEEP')},"
        "title=loopwatch%3A the event loop was blocked"
    ]


@pytest.mark.slow
def test_under_xdist_the_controller_annotates_each_line_once(
    pytester: pytest.Pytester, ci_app: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("xdist")
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    result = pytester.runpytest_subprocess("--loopwatch", "-n", "2")
    result.assert_outcomes(passed=1, failed=2)
    commands = _commands(result.outlines)
    assert [command.split(",")[1] for command in commands] == [
        f"line={line_of(ci_app, 'SLEEP')}",
        f"line={line_of(ci_app, 'READ')}",
    ], commands
    assert "test_ci.py::test_sleep_once, test_ci.py::test_sleep_and_read" in commands[0] or (
        "test_ci.py::test_sleep_and_read, test_ci.py::test_sleep_once" in commands[0]
    )


def test_warn_mode_annotates_with_warnings(
    pytester: pytest.Pytester, ci_app: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    # In a subprocess: the warnings filters of the outer session do not reach it.
    result = pytester.runpytest_subprocess("--loopwatch", "--loopwatch-mode=warn")
    result.assert_outcomes(passed=3, warnings=2)
    assert [command.split(" ")[0] for command in _commands(result.outlines)] == [
        "::warning",
        "::warning",
    ]


@pytest.mark.parametrize(
    ("github_actions", "option", "annotated"),
    [
        (None, None, False),
        ("false", None, False),
        ("true", "--loopwatch-annotations=off", False),
        (None, "--loopwatch-annotations=github", True),
    ],
)
def test_annotations_only_on_github_actions_or_when_asked(
    pytester: pytest.Pytester,
    ci_app: Path,
    monkeypatch: pytest.MonkeyPatch,
    github_actions: str | None,
    option: str | None,
    annotated: bool,
) -> None:
    if github_actions is not None:
        monkeypatch.setenv("GITHUB_ACTIONS", github_actions)
    result = pytester.runpytest("--loopwatch", *([option] if option else []))
    result.assert_outcomes(passed=1, failed=2)
    assert len(_commands(result.outlines)) == (2 if annotated else 0)
    # Otherwise the output is what it always was: the summary, then pytest's own.
    result.stdout.fnmatch_lines(["*= loopwatch =*", "*in test_ci.py::test_sleep_and_read"])


def test_a_bad_annotations_value_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_nothing(): pass")
    result = pytester.runpytest("--loopwatch", "--loopwatch-annotations=gitlab")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "ERROR: 'gitlab' is not a valid value for --loopwatch-annotations; "
            "use auto, github or off"
        ]
    )
    assert "Traceback" not in result.stderr.str()


def _without_durations(log: dict[str, Any]) -> dict[str, Any]:
    for result in log["runs"][0]["results"]:
        del result["properties"]["worstDurationSeconds"]
    return log


def test_the_sarif_log_is_valid_with_one_result_per_blocking_line(
    pytester: pytest.Pytester, ci_app: Path
) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    result = pytester.runpytest("--loopwatch", "--loopwatch-sarif=out/loopwatch.sarif")
    result.assert_outcomes(passed=1, failed=2)
    log = json.loads((pytester.path / "out" / "loopwatch.sarif").read_text())
    jsonschema.Draft4Validator(json.loads(SCHEMA.read_text())).validate(log)
    run = log["runs"][0]
    assert run["originalUriBaseIds"]["SRCROOT"]["uri"] == pytester.path.resolve().as_uri() + "/"
    rules = [rule["id"] for rule in run["tool"]["driver"]["rules"]]
    found = [
        (
            rules[result["ruleIndex"]],
            result["ruleId"],
            result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
            result["locations"][0]["physicalLocation"]["region"]["startLine"],
            result["properties"]["tests"],
            result["level"],
        )
        for result in run["results"]
    ]
    assert found == [
        (
            "loopwatch/stall",
            "loopwatch/stall",
            "test_ci.py",
            line_of(ci_app, "SLEEP"),
            ["test_ci.py::test_sleep_and_read", "test_ci.py::test_sleep_once"],
            "error",
        ),
        (
            "loopwatch/blocking-call",
            "loopwatch/blocking-call",
            "test_ci.py",
            line_of(ci_app, "READ"),
            ["test_ci.py::test_sleep_and_read"],
            "error",
        ),
    ]
    stall = run["results"][0]
    assert stall["message"]["text"].startswith(
        "GET /sleep/a (route /sleep/{name}), GET /sleep/b (route /sleep/{name}) blocked the "
        "event loop longer than the threshold (100 ms), calling time.sleep(0.3)."
    )
    assert stall["properties"]["worstDurationSeconds"] >= 0.25
    rerun = pytester.runpytest("--loopwatch", "--loopwatch-sarif=out/loopwatch.sarif")
    rerun.assert_outcomes(passed=1, failed=2)
    again = json.loads((pytester.path / "out" / "loopwatch.sarif").read_text())
    assert _without_durations(again) == _without_durations(log)
