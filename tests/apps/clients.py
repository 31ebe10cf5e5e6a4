"""The inner sessions' conftest: clients of `app.py` and a slow HTTP server on loopback."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import AsyncIterator, Iterator

import app as app_module  # type: ignore[import-not-found]  # the session copies handlers.py there
import httpx
import pytest
from starlette.testclient import TestClient


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def slow_server() -> Iterator[str]:
    """A real HTTP server on loopback that answers after app_module.STALL seconds."""

    class SlowHandler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            time.sleep(app_module.STALL)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"slow")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), SlowHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
async def async_client() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app_module.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


@pytest.fixture
def test_client() -> TestClient:
    return TestClient(app_module.app)
