"""Shared pieces for the pytester sessions: an app with every kind of handler, and its clients."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

STALL = 0.3
"""Seconds each blocking handler holds the loop: three times the default threshold."""

APP = textwrap.dedent(
    f'''
    import asyncio
    import json
    import re
    import subprocess
    import sys
    import time
    import urllib.request

    import anyio.to_thread
    from fastapi import Depends, FastAPI
    from starlette.concurrency import run_in_threadpool

    STALL = {STALL}
    app = FastAPI()


    def make_document(target=STALL):
        """A JSON document that takes json.loads at least `target` seconds on this machine."""
        size = 200_000
        while True:
            document = "[" + "1.5," * size + "1]"
            start = time.perf_counter()
            json.loads(document)
            if time.perf_counter() - start >= target:
                return document
            size *= 2


    DOCUMENT = make_document()


    def spin():
        # STALL seconds of this thread's CPU, however busy the machine is.
        deadline = time.thread_time() + STALL
        while time.thread_time() < deadline:  # CPU
            pass


    def sleep_dependency():
        time.sleep(STALL)  # DEF-DEPENDENCY


    async def blocking_dependency():
        time.sleep(STALL)  # ASYNC-DEPENDENCY


    @app.get("/sleep")
    async def sleep():
        time.sleep(STALL)  # SLEEP


    @app.get("/cpu")  # CPU-ENDPOINT
    async def cpu():
        spin()


    @app.get("/http")
    async def http(url: str):
        urllib.request.urlopen(url).read()  # HTTP


    SLEEPER = [sys.executable, "-c", "import time; time.sleep({STALL})"]


    @app.get("/subprocess")
    async def run_subprocess():
        subprocess.run(SLEEPER, check=True)  # SUBPROCESS


    @app.get("/dependency")
    async def dependency(_=Depends(blocking_dependency)):
        return "ok"


    @app.get("/json")
    async def parse_json():
        return len(json.loads(DOCUMENT))  # JSON


    @app.get("/sync/sleep")
    def sync_sleep():
        time.sleep(STALL)


    @app.get("/sync/cpu")
    def sync_cpu():
        spin()


    @app.get("/sync/http")
    def sync_http(url: str):
        urllib.request.urlopen(url).read()


    @app.get("/sync/subprocess")
    def sync_subprocess():
        subprocess.run(SLEEPER, check=True)


    @app.get("/sync/dependency")
    async def sync_dependency(_=Depends(sleep_dependency)):
        return "ok"


    @app.get("/sync/json")
    def sync_json():
        return len(json.loads(DOCUMENT))


    @app.get("/await/sleep")
    async def await_sleep():
        await asyncio.sleep(STALL)


    @app.get("/await/threadpool")
    async def await_threadpool():
        await run_in_threadpool(time.sleep, STALL)


    @app.get("/await/to-thread")
    async def await_to_thread():
        await anyio.to_thread.run_sync(spin)


    @app.get("/fast")
    async def fast():
        return "ok"
    '''
)

CLIENTS = textwrap.dedent(
    '''
    import http.server
    import threading
    import time

    import httpx
    import pytest
    from starlette.testclient import TestClient

    import app as app_module


    @pytest.fixture
    def anyio_backend():
        return "asyncio"


    @pytest.fixture(scope="session")
    def slow_server():
        """A real HTTP server on loopback that answers after app_module.STALL seconds."""

        class SlowHandler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                time.sleep(app_module.STALL)
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"slow")

            def log_message(self, *args):
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), SlowHandler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        yield f"http://127.0.0.1:{server.server_address[1]}/"
        server.shutdown()
        server.server_close()
        thread.join()


    @pytest.fixture
    async def async_client():
        transport = httpx.ASGITransport(app=app_module.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


    @pytest.fixture
    def test_client():
        return TestClient(app_module.app)
    '''
)


INI = "[pytest]\nasyncio_default_fixture_loop_scope = function\n"
"""The inner sessions' ini; tests that write their own ini start from it."""


HTTPX = os.environ.get("LOOPWATCH_TEST_HTTPX", "httpx")
"""The client the inner sessions' ASGITransport tests use: tox's httpx2 env sets httpx2."""


@pytest.fixture
def pytester(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """pytester, with an ini that keeps pytest-asyncio quiet in the inner sessions.

    With LOOPWATCH_TEST_HTTPX=httpx2, every inner `import httpx` imports httpx2 instead.
    """
    pytester.makeini(INI)
    # Under CI, pytest prints whole failure messages in the short summary; the inner
    # sessions should read the same everywhere.
    for variable in ("CI", "BUILD_NUMBER"):
        monkeypatch.delenv(variable, raising=False)
    # pytest-randomly (installed for the coexistence tests) would reorder the inner
    # sessions' tests, and pytest-rerunfailures leaves a server thread behind each session
    # under xdist; the tests that want them take this away.
    monkeypatch.setenv("PYTEST_ADDOPTS", "-p no:randomly -p no:rerunfailures")
    if HTTPX != "httpx":
        makepyfile = pytester.makepyfile

        def with_other_httpx(*args: str, **files: str) -> Path:
            swap = f"import {HTTPX} as httpx\n"
            return makepyfile(
                *(text.replace("import httpx\n", swap) for text in args),
                **{name: text.replace("import httpx\n", swap) for name, text in files.items()},
            )

        monkeypatch.setattr(pytester, "makepyfile", with_other_httpx)
    return pytester


@pytest.fixture
def app_files(pytester: pytest.Pytester) -> Path:
    """`app.py` with handlers of every kind, and a conftest with clients and a slow server."""
    pytester.makepyfile(app=APP, conftest=CLIENTS)
    return pytester.path / "app.py"


def line_of(path: Path, tag: str) -> int:
    """The line of `path` that carries the comment `# tag`."""
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if line.rstrip().endswith(f"# {tag}"):
            return number
    raise LookupError(tag)
