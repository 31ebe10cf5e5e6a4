"""loopwatch next to the plugins and modes a real suite runs with: pytest-timeout,
pytest-randomly, pytest-rerunfailures, without pytest-asyncio, importlib imports, unittest."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from conftest import INI, line_of

BLOCKING_AND_CLEAN = textwrap.dedent(
    """
    import pytest

    @pytest.fixture
    def anyio_backend():
        return "asyncio"

    def test_blocking(test_client):
        test_client.get("/sleep")

    def test_clean(test_client):
        test_client.get("/await/sleep")

    @pytest.mark.anyio
    async def test_blocking_async(async_client):
        await async_client.get("/sleep")

    @pytest.mark.anyio
    async def test_clean_async(async_client):
        await async_client.get("/await/sleep")
    """
)


def assert_blocking_ones_failed_at_their_line(result: pytest.RunResult, app_files: Path) -> None:
    failed = sorted(line.split()[1] for line in result.outlines if line.startswith("FAILED "))
    tests = sorted(name.rpartition("::")[2] for name in failed)
    assert tests == ["test_blocking", "test_blocking_async"]
    assert result.stdout.str().count(f"at app.py:{line_of(app_files, 'SLEEP')} in sleep") == 2


@pytest.mark.parametrize("method", ["thread", "signal"])
def test_pytest_timeout_leaves_detection_as_it_is(
    pytester: pytest.Pytester, app_files: Path, method: str
) -> None:
    pytester.makepyfile(BLOCKING_AND_CLEAN)
    result = pytester.runpytest("--loopwatch", "--timeout=30", f"--timeout-method={method}")
    result.assert_outcomes(passed=2, failed=2)
    assert_blocking_ones_failed_at_their_line(result, app_files)


@pytest.mark.slow
def test_a_hang_is_shown_before_pytest_timeout_kills_the_run(
    pytester: pytest.Pytester, app_files: Path
) -> None:
    pytester.makepyfile(
        """
        def test_hangs(test_client):
            test_client.get("/hang")
        """
    )
    with app_files.open("a") as app:
        app.write("\n\n@app.get('/hang')\nasync def hang():\n    time.sleep(60)  # HANG\n")
    result = pytester.runpytest_subprocess(
        "--loopwatch", "--loopwatch-hang=0.5s", "--timeout=3", "--timeout-method=thread"
    )
    assert result.ret != 0
    output = result.stdout.str()
    hang_shown = output.index("loopwatch: app code has held the event loop for 0.5 s")
    assert f'app.py", line {line_of(app_files, "HANG")}, in hang' in output[hang_shown:]
    assert "Timeout" in output + result.stderr.str()


@pytest.mark.slow
def test_pytest_randomly_order_changes_nothing(
    pytester: pytest.Pytester, app_files: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PYTEST_ADDOPTS")  # the inner sessions' default turns randomly off
    pytester.makepyfile(BLOCKING_AND_CLEAN)
    for seed in (1, 2, 3):
        result = pytester.runpytest("--loopwatch", f"--randomly-seed={seed}")
        result.assert_outcomes(passed=2, failed=2)
        assert_blocking_ones_failed_at_their_line(result, app_files)


def test_pytest_rerunfailures_reruns_watched_and_a_fixed_rerun_passes(
    pytester: pytest.Pytester, app_files: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTEST_ADDOPTS", "-p no:randomly")  # rerunfailures on
    pytester.makepyfile(
        """
        import pytest

        RUNS = []

        def test_always_blocking(test_client):
            test_client.get("/sleep")

        def test_blocking_once(test_client):
            RUNS.append(1)
            test_client.get("/sleep" if len(RUNS) == 1 else "/fast")
        """
    )
    result = pytester.runpytest("--loopwatch", "--reruns=2", "-p", "no:randomly")
    outcomes = result.parseoutcomes()
    assert (outcomes["passed"], outcomes["failed"], outcomes["rerun"]) == (1, 1, 3)
    result.stdout.fnmatch_lines(["FAILED *::test_always_blocking*"])


def test_without_pytest_asyncio_anyio_tests_are_watched(
    pytester: pytest.Pytester, app_files: Path
) -> None:
    pytester.makepyfile(BLOCKING_AND_CLEAN)
    pytester.makeini("[pytest]\n")
    result = pytester.runpytest("--loopwatch", "-p", "no:asyncio")
    result.assert_outcomes(passed=2, failed=2)
    assert_blocking_ones_failed_at_their_line(result, app_files)


def test_importlib_import_mode_changes_nothing(pytester: pytest.Pytester, app_files: Path) -> None:
    pytester.makepyfile(BLOCKING_AND_CLEAN)
    pytester.makeini(INI + "pythonpath = .\n")  # importlib mode leaves sys.path alone
    result = pytester.runpytest("--loopwatch", "--import-mode=importlib")
    result.assert_outcomes(passed=2, failed=2)
    assert_blocking_ones_failed_at_their_line(result, app_files)


def test_unittest_style_tests_are_watched(pytester: pytest.Pytester, app_files: Path) -> None:
    pytester.makepyfile(
        """
        import unittest

        import httpx
        from starlette.testclient import TestClient

        import app as app_module


        class AsyncTests(unittest.IsolatedAsyncioTestCase):
            async def request(self, path):
                transport = httpx.ASGITransport(app=app_module.app)
                async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                    return await client.get(path)

            async def test_blocking_async(self):
                await self.request("/sleep")

            async def test_clean_async(self):
                await self.request("/await/sleep")


        class SyncTests(unittest.TestCase):
            def test_blocking(self):
                TestClient(app_module.app).get("/sleep")

            def test_clean(self):
                TestClient(app_module.app).get("/await/sleep")
        """
    )
    result = pytester.runpytest("--loopwatch")
    result.assert_outcomes(passed=2, failed=2)
    assert_blocking_ones_failed_at_their_line(result, app_files)
