"""What a test does to its surroundings cannot fool or break loopwatch: patched clocks."""

from __future__ import annotations

import importlib
import textwrap
from pathlib import Path

import pytest
from conftest import INI, STALL, line_of

CLOCK_PATCHES = {
    "monkeypatch": textwrap.dedent(
        """
        @pytest.fixture(autouse=True)
        def patched_clocks(monkeypatch):
            for name in ("perf_counter", "monotonic", "time"):
                monkeypatch.setattr(time, name, lambda: 1000.0)
        """
    ),
    "freezegun": textwrap.dedent(
        """
        @pytest.fixture(autouse=True)
        def patched_clocks():
            import freezegun
            with freezegun.freeze_time("2020-01-01"):
                yield
        """
    ),
    "time-machine": textwrap.dedent(
        """
        @pytest.fixture(autouse=True)
        def patched_clocks():
            import time_machine
            with time_machine.travel(0, tick=False):
                yield
        """
    ),
}


@pytest.mark.parametrize("patch", list(CLOCK_PATCHES))
def test_stalls_are_measured_while_a_test_patches_the_clocks(
    pytester: pytest.Pytester, app_files: Path, patch: str
) -> None:
    pytester.makepyfile(
        "import time\nimport pytest\n"
        + CLOCK_PATCHES[patch]
        + textwrap.dedent(
            """
            def test_blocking(test_client):
                assert test_client.get("/sleep").status_code == 200

            def test_fast(test_client):
                for _ in range(50):
                    assert test_client.get("/fast").status_code == 200
            """
        )
    )
    result = pytester.runpytest("--loopwatch", "-p", "no:randomly")
    result.assert_outcomes(passed=1, failed=1)
    durations = [int(line.split()[1]) for line in result.outlines if line.startswith("  blocked ")]
    assert len(durations) == 1
    assert STALL * 1000 * 0.95 <= durations[0] <= STALL * 1000 * 1.5, durations


@pytest.mark.parametrize("client", ["test_client", "async_client"])
def test_a_hang_is_shown_at_once_with_where_the_loop_is_held(
    pytester: pytest.Pytester, app_files: Path, client: str
) -> None:
    call = {
        "test_client": "def test_hang(test_client):\n    test_client.get('/sleep')\n",
        "async_client": (
            "import pytest\n\n@pytest.mark.anyio\n"
            "async def test_hang(async_client):\n    await async_client.get('/sleep')\n\n"
            "@pytest.fixture\ndef anyio_backend():\n    return 'asyncio'\n"
        ),
    }[client]
    pytester.makepyfile(call)
    result = pytester.runpytest("--loopwatch", "--loopwatch-hang=100ms")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*! loopwatch: hang in *::test_hang !*",
            "loopwatch: app code has held the event loop for 0.1 s and still does;"
            " where it is now, most recent call last:",
            f'*File "*app.py", line {line_of(app_files, "SLEEP")}, in sleep',
            "*time.sleep(STALL)  # SLEEP",
            "*= FAILURES =*",
        ]
    )
    assert result.stdout.str().count("loopwatch: hang") == 1


def test_no_hang_is_shown_below_the_hang_duration(
    pytester: pytest.Pytester, app_files: Path
) -> None:
    pytester.makepyfile("def test_stall(test_client):\n    test_client.get('/sleep')\n")
    result = pytester.runpytest("--loopwatch")
    result.assert_outcomes(failed=1)
    assert "loopwatch: hang" not in result.stdout.str()


@pytest.mark.parametrize(
    ("args", "ini", "message"),
    [
        (
            ("--loopwatch-hang=soon",),
            "",
            "ERROR: 'soon' is not a valid duration for --loopwatch-hang; use *",
        ),
        (
            (),
            "loopwatch_hang = -1",
            "ERROR: '-1' is not a valid duration for ini option loopwatch_hang; use *",
        ),
    ],
)
def test_a_bad_hang_duration_stops_the_run_with_one_line(
    pytester: pytest.Pytester, args: tuple[str, ...], ini: str, message: str
) -> None:
    pytester.makeini(f"{INI}{ini}\n")
    pytester.makepyfile("def test_nothing(): pass")
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def patchable_state() -> dict[str, object]:
    """Every attribute loopwatch may patch or wrap, and the threads that run."""
    import os
    import socket
    import threading
    import time

    import httpx
    import httpx2

    # By module path: `from starlette import testclient` would take the package's
    # attribute, which may be a module an earlier in-process session dropped.
    testclient = importlib.import_module("starlette.testclient")

    return {
        "threads": sorted(thread.name for thread in threading.enumerate()),
        "classes": [
            dict(vars(cls))
            for cls in (
                httpx.ASGITransport,
                httpx2.ASGITransport,
                testclient.TestClient,
                testclient._TestClientTransport,
                socket.socket,
            )
        ],
        "functions": (time.sleep, os.read, os.write),
    }


def test_nothing_of_loopwatch_outlives_the_session_or_runs_before_watching(
    pytester: pytest.Pytester, app_files: Path
) -> None:
    pytester.makepyfile(
        """
        import asyncio
        import threading

        import httpx
        import pytest

        import app as app_module

        # asyncio's own loops: an earlier in-process session (uvloop's) may have left its
        # policy behind, and on uvloop the factory stays for the whole test by design.
        asyncio.set_event_loop_policy(None)

        def watchdog_running():
            return any(t.name == "loopwatch-watchdog" for t in threading.enumerate())

        def test_unwatched_first(test_client):
            test_client.get("/fast")
            assert not watchdog_running()

        @pytest.mark.loopwatch(strict=True)
        def test_watched(test_client):
            test_client.get("/fast")
            assert watchdog_running()

        async def fetch_fast():
            transport = httpx.ASGITransport(app=app_module.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                await client.get("/fast")

        def own_factory(loop, coroutine, **options):
            return asyncio.Task(coroutine, loop=loop, **options)

        @pytest.mark.asyncio
        @pytest.mark.loopwatch
        async def test_watched_loop_has_a_factory_only_while_app_code_runs():
            await fetch_fast()
            assert asyncio.get_running_loop().get_task_factory() is None

        @pytest.mark.asyncio(loop_scope="module")
        async def test_a_shared_loop_gets_a_factory_of_its_own():
            asyncio.get_running_loop().set_task_factory(own_factory)

        @pytest.mark.asyncio(loop_scope="module")
        @pytest.mark.loopwatch
        async def test_watched_on_the_shared_loop():
            await fetch_fast()
            assert asyncio.get_running_loop().get_task_factory() not in (None, own_factory)

        @pytest.mark.asyncio(loop_scope="module")
        async def test_the_shared_loop_is_left_as_it_was():
            assert asyncio.get_running_loop().get_task_factory() is own_factory
        """
    )
    before = patchable_state()
    result = pytester.runpytest()
    result.assert_outcomes(passed=6)
    assert patchable_state() == before
