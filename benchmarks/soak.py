"""Soak: 10,000 watched requests in one pytest session, fast, streaming and websocket mixed.

Runs a generated suite under `pytest --loopwatch` in a fresh process, records the
process's resident memory after every test, and prints the growth from the end of the
first tenth of the tests (imports and caches warm) to the end, with the stalls reported.

    python benchmarks/soak.py [--requests 10000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

REQUESTS_PER_TEST = 100

SUITE = textwrap.dedent(
    """
    import os

    import httpx
    import pytest
    from fastapi import FastAPI, WebSocket
    from fastapi.responses import StreamingResponse
    from starlette.testclient import TestClient

    app = FastAPI()


    @app.get("/fast")
    async def fast():
        return {{"ok": True}}


    @app.get("/stream")
    async def stream():
        async def body():
            for chunk in (b"a", b"b", b"c"):
                yield chunk

        return StreamingResponse(body())


    @app.websocket("/ws")
    async def echo(socket: WebSocket):
        await socket.accept()
        await socket.send_text(await socket.receive_text())
        await socket.close()


    @pytest.fixture
    def anyio_backend():
        return "asyncio"


    @pytest.mark.parametrize("batch", range({tests}))
    @pytest.mark.anyio
    async def test_asgi_transport(batch):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            for number in range({per_test}):
                response = await client.get("/stream" if number % 2 else "/fast")
                assert response.status_code == 200


    @pytest.mark.parametrize("batch", range({tests}))
    def test_test_client(batch):
        with TestClient(app) as client:
            for number in range({per_test}):
                if number % 3 == 0:
                    with client.websocket_connect("/ws") as socket:
                        socket.send_text("hi")
                        assert socket.receive_text() == "hi"
                else:
                    path = "/stream" if number % 3 == 1 else "/fast"
                    assert client.get(path).status_code == 200
    """
)

CONFTEST = textwrap.dedent(
    """
    import json
    import os

    import pytest

    PAGE = os.sysconf("SC_PAGE_SIZE")
    RESIDENT = []


    def pytest_runtest_teardown(item, nextitem):
        with open("/proc/self/statm") as statm:
            RESIDENT.append(int(statm.read().split()[1]) * PAGE)


    def pytest_sessionfinish(session):
        with open("resident.json", "w") as out:
            json.dump(RESIDENT, out)
    """
)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--requests", type=int, default=10_000, help="watched requests in all")
    args = parser.parse_args()
    tests = max(args.requests // REQUESTS_PER_TEST // 2, 1)
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        (root / "test_soak.py").write_text(SUITE.format(tests=tests, per_test=REQUESTS_PER_TEST))
        (root / "conftest.py").write_text(CONFTEST)
        (root / "pytest.ini").write_text(
            "[pytest]\nasyncio_default_fixture_loop_scope = function\n"
        )
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:randomly",
                "-p",
                "no:cacheprovider",
                "--loopwatch",
                "--loopwatch-report=report.json",
            ],
            cwd=root,
            capture_output=True,
            text=True,
            check=False,
        )
        if run.returncode != 0:
            sys.exit(f"the soak suite failed:\n{run.stdout}\n{run.stderr}")
        resident = json.loads((root / "resident.json").read_text())
        stalls = json.loads((root / "report.json").read_text())["stalls"]
    warm = resident[max(len(resident) // 10, 1) - 1]
    growth = (resident[-1] - warm) / 2**20
    print(f"requests {2 * tests * REQUESTS_PER_TEST}, tests {len(resident)}")
    print(
        f"resident after the first tenth {warm / 2**20:.1f} MiB, at the end "
        f"{resident[-1] / 2**20:.1f} MiB, growth {growth:+.1f} MiB"
    )
    print(f"stalls reported {len(stalls)}")


if __name__ == "__main__":
    main()
