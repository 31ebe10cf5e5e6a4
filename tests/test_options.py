"""Turning loopwatch on and off, and choosing the threshold: flag, ini, env, marker, fixture."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import INI

SPINS = """
import pytest

def test_spin(test_client):
    test_client.get("/cpu")

@pytest.mark.loopwatch(threshold="50ms")
def test_spin_past_a_lower_threshold(test_client):
    test_client.get("/cpu")
"""
"""The same stall of 300 ms of CPU, which calls nothing known to block: only the threshold
decides, and the second test's marker is always below it."""


def test_without_flag_marker_or_fixture_nothing_is_watched_or_patched(
    pytester: pytest.Pytester, app_files: Path
) -> None:
    pytester.makepyfile(
        """
        import threading
        import httpx
        from starlette import testclient

        def test_sleep(test_client):
            test_client.get("/sleep")
            assert "app" not in vars(httpx.ASGITransport)
            assert "app" not in vars(testclient.TestClient)
            assert "loopwatch-watchdog" not in [t.name for t in threading.enumerate()]
        """
    )
    pytester.runpytest().assert_outcomes(passed=1)


@pytest.mark.parametrize("threshold", ["500ms", "0.5s", "0.5", " 500 ms "])
def test_a_threshold_above_the_stall_lets_it_pass(
    pytester: pytest.Pytester, app_files: Path, threshold: str
) -> None:
    pytester.makepyfile(SPINS)
    result = pytester.runpytest("--loopwatch", f"--loopwatch-threshold={threshold}")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["FAILED *::test_spin_past_a_lower_threshold*"])


@pytest.mark.parametrize(
    ("threshold", "shown"), [("50ms", "50 ms"), ("0.2", "200 ms"), ("5e-3s", "5.0 ms")]
)
def test_a_threshold_below_the_stall_fails_and_is_shown(
    pytester: pytest.Pytester, app_files: Path, threshold: str, shown: str
) -> None:
    pytester.makepyfile(SPINS)
    result = pytester.runpytest("--loopwatch", f"--loopwatch-threshold={threshold}")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        [f"loopwatch: the event loop was blocked 1 time (threshold {shown})"]
    )


def test_ini_turns_watching_on_and_sets_the_threshold(
    pytester: pytest.Pytester, app_files: Path
) -> None:
    # 150 ms, not the default, and half the 300 ms of CPU the app spins: a loaded machine's
    # correction cannot bring it under.
    pytester.makeini(INI + "loopwatch = true\nloopwatch_threshold = 150ms\n")
    pytester.makepyfile(SPINS)
    result = pytester.runpytest()
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["*(threshold 150 ms)"])


def test_env_beats_ini_and_cli_beats_env(
    pytester: pytest.Pytester, app_files: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makeini(INI + "loopwatch = true\nloopwatch_threshold = 50ms\n")
    pytester.makepyfile(SPINS)
    monkeypatch.setenv("LOOPWATCH_THRESHOLD", "1s")
    pytester.runpytest().assert_outcomes(passed=1, failed=1)
    result = pytester.runpytest("--loopwatch-threshold=60ms")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["*(threshold 60 ms)"])


def test_the_marker_watches_one_test_without_the_flag(
    pytester: pytest.Pytester, app_files: Path
) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.loopwatch
        def test_watched(test_client):
            test_client.get("/sleep")

        def test_not_watched(test_client):
            test_client.get("/sleep")
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["FAILED *::test_watched*"])


def test_the_marker_opts_a_test_out_and_sets_its_threshold(
    pytester: pytest.Pytester, app_files: Path
) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.loopwatch(False)
        def test_opted_out(test_client):
            test_client.get("/cpu")

        @pytest.mark.loopwatch(enabled=False)
        def test_opted_out_by_keyword(test_client):
            test_client.get("/cpu")

        @pytest.mark.loopwatch(threshold="1s")
        def test_patient(test_client):
            test_client.get("/cpu")

        @pytest.mark.loopwatch(threshold=0.05)
        def test_strict(test_client):
            test_client.get("/cpu")
        """
    )
    result = pytester.runpytest("--loopwatch", "--loopwatch-threshold=2s")
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(["*(threshold 50 ms)", "FAILED *::test_strict*"])


def test_the_fixture_watches_its_test_and_holds_the_stalls(
    pytester: pytest.Pytester, app_files: Path
) -> None:
    pytester.makepyfile(
        """
        import os

        def test_records(test_client, loopwatch):
            assert loopwatch.threshold == 0.1
            test_client.get("/fast")
            assert loopwatch.stalls == ()
            test_client.get("/sleep")
            (stall,) = loopwatch.stalls
            assert stall.request.method == "GET" and stall.request.path == "/sleep"
            assert stall.route == "/sleep"
            assert stall.endpoint.name == "app.sleep"
            assert os.path.basename(stall.location.file) == "app.py"
            assert stall.location.code == "time.sleep(STALL)  # SLEEP"
            assert 0.3 <= stall.duration < 0.6

        def test_not_watched(test_client):
            test_client.get("/sleep")
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["FAILED *::test_records*"])


def test_wrap_watches_an_app_called_any_other_way(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import asyncio
        import time

        async def app(scope, receive, send):
            time.sleep(0.3)

        def test_direct_call(loopwatch):
            watched = loopwatch.wrap(app)
            assert loopwatch.wrap(watched) is watched
            asyncio.run(watched({"type": "http", "method": "GET", "path": "/direct"}, None, None))
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "  GET /direct",
            "  blocked * ms at test_wrap_watches_an_app_called_any_other_way.py:5 in app, "
            "calling time.sleep(0.3)",
        ]
    )


BAD_THRESHOLD = (
    "*is not a valid threshold for {where}; "
    "use a positive number of seconds or milliseconds, e.g. 0.25, 0.25s, 250ms"
)


@pytest.mark.parametrize("value", ["abc", "-5", "0", "0ms", "1h", "nan", "inf"])
def test_a_bad_cli_threshold_is_a_usage_error(pytester: pytest.Pytester, value: str) -> None:
    result = pytester.runpytest(f"--loopwatch-threshold={value}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [f"ERROR: {value!r} " + BAD_THRESHOLD.format(where="--loopwatch-threshold")[1:]]
    )
    result.stderr.no_fnmatch_line("*Traceback*")
    result.stdout.no_fnmatch_line("INTERNALERROR*")


def test_a_bad_env_threshold_is_a_usage_error(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOOPWATCH_THRESHOLD", "soon")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [BAD_THRESHOLD.format(where="environment variable LOOPWATCH_THRESHOLD")]
    )
    result.stdout.no_fnmatch_line("INTERNALERROR*")


def test_a_bad_ini_threshold_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI + "loopwatch_threshold = -1s\n")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([BAD_THRESHOLD.format(where="ini option loopwatch_threshold")])
    result.stdout.no_fnmatch_line("INTERNALERROR*")


def test_a_bad_ini_switch_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI + "loopwatch = sometimes\n")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: ini option loopwatch: *; use true or false"])
    result.stdout.no_fnmatch_line("INTERNALERROR*")


@pytest.mark.parametrize(
    ("marker", "message"),
    [
        (
            "loopwatch(treshold='1s')",
            "*@pytest.mark.loopwatch got an unexpected keyword argument 'treshold'*; "
            "use @pytest.mark.loopwatch(enabled=True, *, threshold=None, strict=None)*",
        ),
        (
            "loopwatch(True, 5)",
            "*@pytest.mark.loopwatch takes from 0 to 1 positional arguments "
            "but 2 were given; use *",
        ),
        ("loopwatch('yes')", "*@pytest.mark.loopwatch('yes') is not valid; use *"),
        (
            "loopwatch(threshold='later')",
            "*'later' is not a valid threshold for @pytest.mark.loopwatch(threshold=...); use *",
        ),
    ],
)
def test_a_bad_marker_is_a_usage_error_naming_the_test(
    pytester: pytest.Pytester, marker: str, message: str
) -> None:
    pytester.makepyfile(
        f"""
        import pytest

        @pytest.mark.{marker}
        def test_marked():
            pass
        """
    )
    result = pytester.runpytest("-q")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: *::test_marked: {message.lstrip('*')}"])
    result.stdout.no_fnmatch_line("INTERNALERROR*")
    result.stderr.no_fnmatch_line("*Traceback*")


def test_the_marker_is_registered_for_strict_markers(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--markers")
    result.stdout.fnmatch_lines(
        ["@pytest.mark.loopwatch(enabled=True, *, threshold=None, strict=None): *"]
    )


def test_no_client_class_stays_patched_after_a_watched_test(
    pytester: pytest.Pytester, app_files: Path
) -> None:
    pytester.makepyfile(
        """
        import httpx
        import pytest
        from starlette import testclient

        def test_watched(test_client):
            test_client.get("/fast")
            assert "app" in vars(testclient.TestClient)

        @pytest.mark.loopwatch(False)
        def test_after_it():
            assert "app" not in vars(httpx.ASGITransport)
            assert "app" not in vars(testclient.TestClient)
        """
    )
    pytester.runpytest("--loopwatch").assert_outcomes(passed=2)
