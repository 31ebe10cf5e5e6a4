"""Loopwatch stays out of the user's way: warn mode under strict warning filters, output
paths and baselines checked up front, debuggers, timeouts, log files, temporary files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import INI, line_of

from pytest_loopwatch._durations import format_duration

SLEEPING_TESTS = """
def test_sleeps(test_client):
    test_client.get("/sleep")

def test_waits_off_the_loop(test_client):
    test_client.get("/sync/sleep")
"""


def test_warn_mode_fails_nothing_where_warnings_are_errors(
    pytester: pytest.Pytester, app_files: Path
) -> None:
    pytester.makeini(INI + "filterwarnings = error\n")
    pytester.makepyfile(test_warned=SLEEPING_TESTS)
    result = pytester.runpytest("--loopwatch", "--loopwatch-mode=warn")
    result.assert_outcomes(passed=2)
    assert result.ret == 0
    result.stdout.fnmatch_lines(
        ["*warnings summary*", "*LoopwatchWarning: loopwatch: the event loop was blocked*"]
    )
    result.stdout.fnmatch_lines(["GET /sleep  route /sleep: 1 stall*", "  in *::test_sleeps"])
    result.stdout.no_fnmatch_line("*INTERNALERROR*")


@pytest.mark.parametrize(
    ("option", "value", "why"),
    [
        ("--loopwatch-report", "out", "out is a directory"),
        ("--loopwatch-report", "", "an empty path"),
        ("--loopwatch-sarif", "afile/log.sarif", "*afile is not a directory"),
        ("--loopwatch-sarif", "/proc/loopwatch.sarif", "*cannot be written*"),
        ("--loopwatch-baseline", "out", "out is a directory"),
    ],
)
def test_an_output_that_cannot_be_written_stops_the_run_before_any_test(
    pytester: pytest.Pytester, option: str, value: str, why: str
) -> None:
    pytester.mkdir("out")
    pytester.makefile("", afile="not a directory")
    pytester.makepyfile("def test_never_runs(): assert False")
    arguments = [f"{option}={value}"]
    if option == "--loopwatch-baseline":
        arguments.append("--loopwatch-update-baseline")
    result = pytester.runpytest("--loopwatch", *arguments)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {option}: {why}; give the path of a file to write*"])
    result.stdout.no_fnmatch_line("*test_never_runs*")
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()
    left = [path.name for path in pytester.path.rglob("*.tmp")]
    assert left == []


def test_two_outputs_to_one_file_are_refused(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_never_runs(): assert False")
    result = pytester.runpytest(
        "--loopwatch", "--loopwatch-report=out.json", "--loopwatch-sarif=./out.json"
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: --loopwatch-sarif writes the same file as --loopwatch-report: *out.json; *"]
    )
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()


@pytest.mark.parametrize(
    ("content", "why"),
    [
        ('{"schema": 99, "stalls": []}', "*is not a loopwatch baseline of schema 1 (schema 99)*"),
        ('{"schema": 1, "stalls": [{"test": 1}]}', "*has malformed stalls; expected a JSON*"),
        ("not json", "*is not JSON; expected a JSON object*"),
        (None, "*is a directory"),
    ],
)
def test_a_baseline_of_another_shape_is_refused_with_what_was_expected(
    pytester: pytest.Pytester, content: str | None, why: str
) -> None:
    if content is None:
        pytester.mkdir("baseline.json")
    else:
        pytester.makefile(".json", baseline=content)
    pytester.makepyfile("def test_never_runs(): assert False")
    result = pytester.runpytest("--loopwatch", "--loopwatch-baseline=baseline.json")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: --loopwatch-baseline: {why}"])
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()


def test_time_at_a_debugger_prompt_is_no_stall(pytester: pytest.Pytester, app_files: Path) -> None:
    # A stand-in for pdb's prompt: breakpoint() announces the debugger, whose hook then
    # holds the thread as a developer reading the prompt would.
    pytester.makepyfile(
        prompt="import time\n\ndef wait_at_the_prompt():\n    time.sleep(0.5)\n",
        test_debugged="""
            def test_debugged(test_client):
                test_client.get("/debugged")

            def test_sleeps(test_client):
                test_client.get("/sleep")
            """,
    )
    with app_files.open("a") as app:
        app.write("\n\n@app.get('/debugged')\nasync def debugged():\n    breakpoint()\n")
    pytester.syspathinsert()
    result = pytester.runpytest("--loopwatch", "--loopwatch-hang=0.2s", "-p", "no:debugging", "-s")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["FAILED *::test_sleeps - Failed: loopwatch*"])
    assert "loopwatch: hang in test_debugged.py::test_debugged" not in result.stdout.str()


@pytest.fixture
def breakpoint_hook(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONBREAKPOINT", "prompt.wait_at_the_prompt")


test_time_at_a_debugger_prompt_is_no_stall = pytest.mark.usefixtures("breakpoint_hook")(
    test_time_at_a_debugger_prompt_is_no_stall
)


def test_a_timeout_during_a_blocking_call_points_at_the_app(
    pytester: pytest.Pytester, app_files: Path
) -> None:
    pytester.makepyfile(
        test_timed_out="""
            import pytest

            @pytest.mark.anyio
            async def test_times_out(async_client):
                await async_client.get("/stuck")
            """
    )
    with app_files.open("a") as app:
        app.write("\n\n@app.get('/stuck')\nasync def stuck():\n    time.sleep(30)  # STUCK\n")
    result = pytester.runpytest_subprocess("--loopwatch", "--timeout=1", "--timeout-method=signal")
    result.assert_outcomes(failed=1)
    # pytest's line for where the test was when it failed, and the last frame shown.
    result.stdout.fnmatch_lines([f"app.py:{line_of(app_files, 'STUCK')}: Failed"])
    result.stdout.no_fnmatch_line("*pytest_loopwatch*: Failed")


def test_log_files_opened_and_rotated_by_logging_are_not_the_apps_calls(
    pytester: pytest.Pytester, app_files: Path
) -> None:
    with app_files.open("a") as app:
        app.write(
            "\n\nimport logging.handlers\n"
            "log = logging.getLogger('app.audit')\n"
            "log.addHandler(logging.handlers.RotatingFileHandler("
            "'audit.log', maxBytes=64, backupCount=1, delay=True))\n"
            "log.setLevel(logging.INFO)\n\n"
            "@app.get('/logged')\nasync def logged():\n"
            "    for _ in range(5):\n        log.info('a line long enough to rotate the file')\n\n"
            "@app.get('/opened')\nasync def opened():\n"
            "    open('audit.log').close()  # OPENED\n"
        )
    pytester.makepyfile(
        test_logged="""
            def test_logs(test_client):
                test_client.get("/logged")

            def test_opens_the_log_itself(test_client):
                test_client.get("/opened")
            """
    )
    result = pytester.runpytest("--loopwatch")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*called open(*audit.log*) at app.py:*in opened*"])
    assert (pytester.path / "audit.log.1").exists()  # it did rotate, on the loop


def test_a_temporary_file_is_named_so(pytester: pytest.Pytester, app_files: Path) -> None:
    with app_files.open("a") as app:
        app.write(
            "\n\nimport tempfile\n\n@app.get('/scratch')\nasync def scratch():\n"
            "    tempfile.TemporaryFile().close()\n"
        )
    pytester.makepyfile(
        test_scratch="""
            def test_scratch(test_client):
                test_client.get("/scratch")

            def test_waits_off_the_loop(test_client):
                test_client.get("/sync/sleep")
            """
    )
    result = pytester.runpytest("--loopwatch")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*called open(a temporary file in *) at app.py:*in scratch*"])


def test_allowing_a_called_function_by_its_module_lets_it_pass(
    pytester: pytest.Pytester, app_files: Path
) -> None:
    pytester.makepyfile(
        test_allowed="""
            import pytest

            def test_allowed(test_client, loopwatch):
                with loopwatch.allow("time:*"):
                    test_client.get("/sleep-briefly")

            def test_not_allowed(test_client):
                test_client.get("/sleep-briefly")
            """
    )
    with app_files.open("a") as app:
        app.write("\n\n@app.get('/sleep-briefly')\nasync def sleep_briefly():\n    time.sleep(0)\n")
    result = pytester.runpytest("--loopwatch")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["FAILED *::test_not_allowed - Failed: loopwatch*"])


def test_the_smallest_thresholds_are_shown_as_they_are() -> None:
    assert [format_duration(s) for s in (1e-9, 2.5e-6, 5e-5, 0.0005)] == [
        "1 ns",
        "2.5 µs",
        "50 µs",
        "0.5 ms",
    ]


@pytest.mark.slow
def test_under_xdist_a_hang_reaches_the_terminal_and_reports_carry_the_markers_threshold(
    pytester: pytest.Pytester, app_files: Path
) -> None:
    pytester.makepyfile(
        test_hang="""
            import pytest

            @pytest.mark.loopwatch(threshold="200ms")
            def test_hangs(test_client):
                test_client.get("/hang")

            def test_waits_off_the_loop(test_client):
                test_client.get("/sync/sleep")
            """
    )
    with app_files.open("a") as app:  # a hang long enough to be seen on a busy machine
        app.write("\n\n@app.get('/hang')\nasync def hang():\n    time.sleep(1.5)\n")
    result = pytester.runpytest_subprocess(
        "--loopwatch",
        "--loopwatch-hang=0.1s",
        "--loopwatch-annotations=github",
        "--loopwatch-report=report.json",
        "-n",
        "2",
    )
    result.assert_outcomes(passed=1, failed=1)
    result.stderr.fnmatch_lines(["loopwatch: hang in *::test_hangs"])
    result.stdout.fnmatch_lines(["::error file=app.py,*(threshold 200 ms)*"])
    (stall,) = json.loads((pytester.path / "report.json").read_text())["stalls"]
    assert stall["threshold_s"] == 0.2


def test_a_lifespan_stall_names_its_call_and_gets_lifespan_advice(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        lifespans="""
            import contextlib
            import time

            from starlette.applications import Starlette

            def app_whose_startup(work):
                @contextlib.asynccontextmanager
                async def lifespan(app):
                    work()
                    yield

                return Starlette(lifespan=lifespan)

            def sleep():
                time.sleep(0.3)  # STARTUP

            def read_a_file():
                open(__file__).close()
            """,
        test_lifespans="""
            from starlette.testclient import TestClient

            from lifespans import app_whose_startup, read_a_file, sleep

            def test_sleeps_at_startup():
                with TestClient(app_whose_startup(sleep)):
                    pass

            def test_reads_its_settings_at_startup():
                with TestClient(app_whose_startup(read_a_file)):
                    pass
            """,
    )
    result = pytester.runpytest("--loopwatch")
    result.assert_outcomes(passed=1, failed=1)
    line = line_of(pytester.path / "lifespans.py", "STARTUP")
    result.stdout.fnmatch_lines(
        [
            "  lifespan startup",
            f"  blocked * ms at lifespans.py:{line} in sleep, calling time.sleep(0.3)",
            "  fix: the lifespan runs on the loop: requests wait for its set-up*",
        ]
    )
    result.stdout.no_fnmatch_line("*make the endpoint a `def`*")


def test_work_that_outlives_its_test_fails_the_run_in_its_tests_name(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        fire="""
            import asyncio
            import time

            from starlette.applications import Starlette
            from starlette.responses import PlainTextResponse
            from starlette.routing import Route

            tasks = set()

            async def later():
                await asyncio.sleep(0.3)
                time.sleep(0.3)  # LATER

            async def fire(request):
                task = asyncio.create_task(later())  # fire and forget
                tasks.add(task)
                return PlainTextResponse("sent")

            app = Starlette(routes=[Route("/fire", fire)])
            """,
        test_outlived="""
            import time

            import pytest
            from starlette.testclient import TestClient

            from fire import app

            @pytest.fixture(scope="module")
            def client():
                with TestClient(app) as client:
                    yield client

            def test_fires(client):
                assert client.get("/fire").text == "sent"

            def test_makes_no_request(client):
                time.sleep(2.0)  # the task stalls meanwhile, in the client's loop
            """,
    )
    result = pytester.runpytest(
        "--loopwatch", "--loopwatch-report=report.json", "-p", "no:randomly"
    )
    result.assert_outcomes(passed=2)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    line = line_of(pytester.path / "fire.py", "LATER")
    result.stdout.fnmatch_lines(
        [
            "*loopwatch: work that outlived its test*",
            "test_outlived.py::test_fires: a request of this test left work running *",
            "  GET /fire*",  # Starlette 0.40 (tox's lowest) puts no route in the scope
            "  endpoint fire.fire (fire.py:*)",
            f"  blocked * ms at fire.py:{line} in later, calling time.sleep(0.3)",
        ]
    )
    (stall,) = json.loads((pytester.path / "report.json").read_text())["stalls"]
    assert (stall["test"], stall["outlived_its_test"]) == ("test_outlived.py::test_fires", True)


def test_the_allow_list_is_audited(pytester: pytest.Pytester, app_files: Path) -> None:
    pytester.makeini(INI + "loopwatch_allow =\n    app:nap\n    app.gone:*\n")
    with app_files.open("a") as app:
        app.write(
            "\n\ndef nap():\n    time.sleep(0)\n\n"
            "@app.get('/nap')\nasync def napping():\n    nap()\n\n"
            "@app.get('/doze')\nasync def dozing():\n    time.sleep(0)  # DOZE\n"
        )
    pytester.makepyfile(
        test_audited="""
            def test_naps(test_client):
                test_client.get("/nap")
                test_client.get("/nap")

            def test_dozes(test_client):
                test_client.get("/doze")
            """
    )
    result = pytester.runpytest("--loopwatch", "--loopwatch-report=report.json")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "loopwatch allow-list: let pass *app:nap 2*",
            "loopwatch allow-list: never matched, can go: app.gone:*",
        ]
    )
    document = json.loads((pytester.path / "report.json").read_text())
    assert document["allowed"]["app:nap"] == 2
    assert document["unmatched_allow_rules"] == ["app.gone:*"]
    (stall,) = document["stalls"]
    assert stall["location"]["line"] == line_of(app_files, "DOZE")


def test_sarif_uris_are_percent_encoded(tmp_path: Path) -> None:
    from pytest_loopwatch._blocking_lines import BlockingLine
    from pytest_loopwatch._sarif import sarif_log

    line = BlockingLine("call", "my app/main #2.py", 3, "time.sleep(1)", 0.1, durations=[0.0])
    log = sarif_log([line], tmp_path, "0")
    (result,) = log["runs"][0]["results"]
    location = result["locations"][0]["physicalLocation"]["artifactLocation"]
    assert location["uri"] == "my%20app/main%20%232.py"
