"""On a machine whose every core is taken by other processes, clean requests pass and blocking
ones still fail: time the OS kept the app waiting for a CPU is not the app blocking the loop."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator

import pytest
from conftest import line_of

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not os.path.exists("/proc/thread-self/schedstat"),
        reason="run-queue waits are read from Linux's schedstat",
    ),
    pytest.mark.skipif(
        "PYTEST_XDIST_WORKER" in os.environ,
        reason="its busy processes would load the other workers' timing tests too; "
        "it runs in the one-process run",
    ),
]

WORK_SECONDS = 0.3

APP = textwrap.dedent(
    """
    import asyncio
    import time

    import anyio.to_thread
    from fastapi import Depends, FastAPI
    from starlette.concurrency import run_in_threadpool

    STALL = {stall}
    app = FastAPI()


    def work():
        # A fixed amount of computation, measured on the idle machine to take STALL seconds:
        # on a busy one it takes longer by the time the OS gives the core to others.
        total = 0
        for number in range({loops}):
            total += number  # CPU
        return total


    def blocking_dependency():
        time.sleep(STALL)


    async def async_blocking_dependency():
        time.sleep(STALL)  # ASYNC-DEPENDENCY


    @app.get("/sleep")
    async def sleep():
        time.sleep(STALL)  # SLEEP


    @app.get("/cpu")
    async def cpu():
        work()


    @app.get("/dependency")
    async def dependency(_=Depends(async_blocking_dependency)):
        return "ok"


    @app.get("/sync/sleep")
    def sync_sleep():
        time.sleep(STALL)


    @app.get("/sync/cpu")
    def sync_cpu():
        work()


    @app.get("/sync/dependency")
    async def sync_dependency(_=Depends(blocking_dependency)):
        return "ok"


    @app.get("/await/sleep")
    async def await_sleep():
        await asyncio.sleep(STALL)


    @app.get("/await/threadpool")
    async def await_threadpool():
        await run_in_threadpool(work)


    @app.get("/await/to-thread")
    async def await_to_thread():
        await anyio.to_thread.run_sync(work)


    @app.get("/fast")
    async def fast():
        return "ok"
    """
)

TESTS = textwrap.dedent(
    """
    import httpx
    import pytest
    from starlette.testclient import TestClient

    from app import app

    CLEAN = ["/sync/sleep", "/sync/cpu", "/sync/dependency", "/await/sleep",
             "/await/threadpool", "/await/to-thread"] + ["/fast"] * 50
    BLOCKING = ["/sleep", "/cpu", "/dependency"]


    @pytest.fixture
    def anyio_backend():
        return "asyncio"


    @pytest.mark.parametrize("round", range({rounds}))
    @pytest.mark.anyio
    async def test_clean_through_asgi_transport(round):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            for path in CLEAN:
                assert (await client.get(path)).status_code == 200


    @pytest.mark.parametrize("round", range({rounds}))
    def test_clean_through_test_client(round):
        with TestClient(app) as client:
            for path in CLEAN:
                assert client.get(path).status_code == 200


    @pytest.mark.parametrize("path", BLOCKING)
    @pytest.mark.anyio
    async def test_blocking_through_asgi_transport(path):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            await client.get(path)


    @pytest.mark.parametrize("path", BLOCKING)
    def test_blocking_through_test_client(path):
        with TestClient(app) as client:
            client.get(path)
    """
)


def loops_taking(seconds: float) -> int:
    """How many additions the idle machine does in `seconds`, the best of a few tries."""
    loops = 200_000
    best = float("inf")
    for _ in range(3):
        start = time.process_time()
        total = 0
        for number in range(loops):
            total += number
        best = min(best, time.process_time() - start)
    return int(loops * seconds / best)


@pytest.fixture
def busy_cores() -> Iterator[None]:
    """Twice as many processes spinning as there are cores, for as long as the test runs."""
    spinners = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"])
        for _ in range(2 * (os.cpu_count() or 1))
    ]
    try:
        yield
    finally:
        for spinner in spinners:
            spinner.kill()
        for spinner in spinners:
            spinner.wait()


def test_clean_requests_pass_and_blocking_ones_fail_while_every_core_is_busy(
    pytester: pytest.Pytester, request: pytest.FixtureRequest
) -> None:
    pytester.makepyfile(
        app=APP.format(stall=WORK_SECONDS, loops=loops_taking(WORK_SECONDS)),
        test_under_load=TESTS.format(rounds=4),
    )
    request.getfixturevalue("busy_cores")
    result = pytester.runpytest("--loopwatch", "-p", "no:randomly")
    result.assert_outcomes(passed=8, failed=6)
    failed = {line.split()[1] for line in result.outlines if line.startswith("FAILED ")}
    assert failed == {
        f"test_under_load.py::test_blocking_through_{client}[{path}]"
        for client in ("asgi_transport", "test_client")
        for path in ("/sleep", "/cpu", "/dependency")
    }
    # Each blocking handler is named at its own line, and only once.
    for tag in ("SLEEP", "CPU", "ASYNC-DEPENDENCY"):
        line = line_of(pytester.path / "app.py", tag)
        assert sum(f"at app.py:{line} " in text for text in result.outlines) == 2, tag
