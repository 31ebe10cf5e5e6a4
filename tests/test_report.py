"""What the failure text says, and in which phase of the test it appears."""

from __future__ import annotations

import errno
import re
import threading
from pathlib import Path
from typing import NoReturn

import pytest
from conftest import line_of

import pytest_loopwatch._asgi
import pytest_loopwatch._spawned
import pytest_loopwatch._watchdog


def test_the_stack_shows_user_frames_and_folds_library_frames(
    pytester: pytest.Pytester, app_files: Path
) -> None:
    pytester.makepyfile("def test_cpu(test_client):\n    test_client.get('/cpu')\n")
    result = pytester.runpytest("--loopwatch")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "  GET /cpu  route /cpu",
            f"  endpoint app.cpu (app.py:{line_of(app_files, 'CPU-ENDPOINT')})",
            f"  blocked * ms at app.py:{line_of(app_files, 'CPU')} in spin",
            "      while time.thread_time() < deadline:  # CPU",
            "  stack (most recent call last):",
            "    ... * library frames (*starlette*)",
            "    app.py:* in cpu",
            "        spin()",
            f"    app.py:{line_of(app_files, 'CPU')} in spin",
        ]
    )


def test_every_stall_of_a_test_is_counted_and_listed(
    pytester: pytest.Pytester, app_files: Path
) -> None:
    pytester.makepyfile(
        """
        def test_twice(test_client):
            test_client.get('/sleep')
            test_client.get('/fast')
            test_client.get('/cpu')
        """
    )
    result = pytester.runpytest("--loopwatch")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "loopwatch: the event loop was blocked 2 times (threshold 100 ms)",
            "  GET /sleep  route /sleep",
            "  GET /cpu  route /cpu",
        ]
    )


@pytest.mark.parametrize("scope", ["function", "class", "module", "session"])
def test_a_fixtures_finding_lets_the_body_run_and_the_test_fails_once_with_both(
    pytester: pytest.Pytester, app_files: Path, scope: str
) -> None:
    # A client fixture that logs in on the loop errored every test at setup: no body ran,
    # and what the bodies would have found stayed hidden until that was fixed.
    pytester.makepyfile(
        f"""
        import pytest
        from starlette.testclient import TestClient
        import app

        @pytest.fixture(scope="{scope}")
        def logged_in():
            TestClient(app.app).get("/sleep")

        @pytest.fixture
        def quiet():
            TestClient(app.app).get("/sync/fast")

        class TestBoth:
            def test_body_blocks_too(self, logged_in):
                TestClient(app.app).get("/cpu")

            def test_quiet(self, quiet):
                TestClient(app.app).get("/sync/fast")
        """
    )
    result = pytester.runpytest("--loopwatch", "-p", "no:randomly")
    result.assert_outcomes(failed=1, passed=1)
    kind = "fixture" if scope == "function" else f"{scope} fixture"
    result.stdout.fnmatch_lines(
        [
            "*_ TestBoth.test_body_blocks_too _*",
            "loopwatch: the event loop was blocked 2 times (threshold 100 ms)",
            f"  during setup of {kind} logged_in:",
            "  GET /sleep  route /sleep",
            "*",
            "  during the test:",
            "  GET /cpu  route /cpu",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "loopwatch: the event loop was blocked 2 times*",
            f"*in test_*.py::TestBoth::test_body_blocks_too (setup of {kind} logged_in)",
        ]
    )
    assert "ERROR" not in result.stdout.str()


def test_a_finalizers_finding_fails_teardown_after_a_passing_body_and_joins_a_failing_one(
    pytester: pytest.Pytester, app_files: Path
) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.fixture
        def cleaned(test_client):
            yield
            test_client.get("/cpu")

        def test_passing_body(cleaned):
            pass

        def test_blocking_body(cleaned, test_client):
            test_client.get("/sleep")

        def test_quiet(test_client):
            test_client.get("/sync/fast")
        """
    )
    result = pytester.runpytest("--loopwatch", "-p", "no:randomly")
    # The failing test fails once: its finalizer's finding goes beside that failure.
    result.assert_outcomes(passed=2, failed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_passing_body*",
            "  during teardown of fixture cleaned:",
            "  GET /cpu  route /cpu",
        ]
    )
    # The summary puts the worse stall first: which one that is, the machine decides.
    result.stdout.fnmatch_lines(
        [
            "GET /cpu  route /cpu: 2 stalls*",
            "*",
            "*in test_*.py::test_passing_body (teardown of fixture cleaned)",
            "*in test_*.py::test_blocking_body (teardown of fixture cleaned)",
        ]
    )
    result.stdout.fnmatch_lines(
        ["GET /sleep  route /sleep: 1 stall*", "*", "*in test_*.py::test_blocking_body"]
    )
    assert "ERROR at teardown of test_blocking_body" not in result.stdout.str()


def test_a_test_failing_on_its_own_keeps_its_failure_and_shows_the_stalls(
    pytester: pytest.Pytester, app_files: Path
) -> None:
    pytester.makepyfile(
        """
        def test_wrong(test_client):
            test_client.get("/sleep")
            assert 1 == 2
        """
    )
    result = pytester.runpytest("--loopwatch")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "E       assert 1 == 2",
            "*- Captured loopwatch call -*",
            "loopwatch: the event loop was blocked 1 time*",
        ]
    )


def test_an_error_inside_loopwatch_is_reported_and_the_suite_carries_on(
    pytester: pytest.Pytester, app_files: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> NoReturn:
        raise RuntimeError("engine bug")

    monkeypatch.setattr(pytest_loopwatch._asgi, "RawStall", broken)  # the run is in-process
    pytester.makepyfile(
        """
        def test_blocks(test_client):
            test_client.get("/sleep")

        def test_fails_on_its_own(test_client):
            assert test_client.get("/fast").json() == "not ok"
        """
    )
    # Even where warnings are errors, loopwatch's own trouble does not decide the outcome.
    result = pytester.runpytest("--loopwatch", "-W", "error")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*= warnings summary =*",
            "*::test_blocks",
            "  *: LoopwatchInternalWarning: loopwatch internal error: "
            "recording a stall: RuntimeError('engine bug')",
            "FAILED *::test_fails_on_its_own*",
        ]
    )
    result.stdout.no_fnmatch_line("INTERNALERROR*")


def test_a_watchdog_whose_alarm_fails_leaves_stalls_timed_and_says_so(
    pytester: pytest.Pytester, app_files: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class AlarmThatCannotBeSet:
        def __init__(self) -> None:
            self._closed = threading.Event()

        def ring_at(self, when: float) -> NoReturn:
            raise OSError(errno.EINVAL, "timerfd_settime")

        def wait(self) -> None:
            self._closed.wait()

        def close(self) -> None:
            self._closed.set()

    monkeypatch.setattr(pytest_loopwatch._watchdog, "new_alarm", AlarmThatCannotBeSet)
    # A computation: no blocking call of its stretch stands for the samples not taken.
    pytester.makepyfile("def test_blocks(test_client):\n    test_client.get('/cpu')\n")
    result = pytester.runpytest("--loopwatch")
    # Timed as ever, only not located; the session ends, the watchdog with it.
    assert result.parseoutcomes() == {"failed": 1, "warnings": 1}
    report = result.stdout.str()
    assert re.search(r"^  blocked \d+ ms \(no stack sample", report, re.MULTILINE)
    assert (
        "LoopwatchInternalWarning: loopwatch internal error: "
        "setting the watchdog's alarm: OSError(22, 'timerfd_settime')" in report
    )
    assert "INTERNALERROR" not in report


def test_a_failure_to_follow_tasks_never_reaches_the_app(
    pytester: pytest.Pytester, app_files: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(loop: object) -> NoReturn:
        raise AttributeError("no such trio API")

    monkeypatch.setattr(pytest_loopwatch._spawned.follower, "follow", broken)
    pytester.makepyfile(
        "def test_fast(test_client):\n    assert test_client.get('/fast').json() == 'ok'\n"
    )
    result = pytester.runpytest("--loopwatch")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            "*::test_fast",
            "  *: LoopwatchInternalWarning: loopwatch internal error: "
            "following the tasks of a request: AttributeError('no such trio API')",
        ]
    )
