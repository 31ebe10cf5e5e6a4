"""What --loopwatch must catch, through both ways tests call an app, and what it must let pass."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from conftest import NoStalls, line_of

BOTH_CLIENTS = textwrap.dedent(
    """
    import pytest

    @pytest.fixture
    def url(request):
        # Only the sync HTTP call needs the slow server: its thread wakes every half second,
        # and a busy thread can take the GIL first when a C call returns (see README).
        return request.getfixturevalue("slow_server") if "{path}".endswith("/http") else ""

    @pytest.mark.anyio
    async def test_through_asgi_transport(async_client, url):
        response = await async_client.get("{path}", params={{"url": url}})
        assert response.status_code == 200

    def test_through_test_client(test_client, url):
        response = test_client.get("{path}", params={{"url": url}})
        assert response.status_code == 200
    """
)


@pytest.mark.parametrize(
    ("path", "tag"),
    [
        ("/sleep", "SLEEP"),
        ("/cpu", "CPU"),
        ("/http", "HTTP"),
        ("/subprocess", "SUBPROCESS"),
        ("/dependency", "ASYNC-DEPENDENCY"),
        ("/json", "JSON"),
    ],
)
def test_a_blocking_async_handler_fails_with_its_blocking_line(
    pytester: pytest.Pytester, app_files: Path, path: str, tag: str
) -> None:
    pytester.makepyfile(BOTH_CLIENTS.format(path=path))
    # A C call that holds the GIL is located only if the watchdog takes the GIL first when
    # the call returns (README, Limits): in a process of its own, not one where earlier
    # sessions left threads behind. Even so a loaded CI machine let the loop thread run on
    # into the framework first (`at contextlib.py:778`, or no sample): timed always,
    # located mostly, so here only its stall is asserted; `benchmarks/accuracy.py` counts
    # how often it is located.
    run = pytester.runpytest_subprocess if tag == "JSON" else pytester.runpytest
    result = run("--loopwatch")
    result.assert_outcomes(failed=2)
    blocked = f"  blocked * ms at app.py:{line_of(app_files, tag)} in *"
    result.stdout.fnmatch_lines(
        [
            "*_ test_through_asgi_transport _*",
            "loopwatch: the event loop was blocked 1 time (threshold 100 ms)",
            f"  GET {path}  route {path}",
            blocked if tag != "JSON" else "  blocked * ms*",
            "*_ test_through_test_client _*",
            "loopwatch: the event loop was blocked 1 time (threshold 100 ms)",
            blocked if tag != "JSON" else "  blocked * ms*",
        ]
    )


@pytest.mark.slow
def test_a_new_thread_holding_the_gil_while_the_loop_waits_for_it_to_start_is_a_stall(
    pytester: pytest.Pytester, app_files: Path
) -> None:
    pytester.makepyfile(
        """
        import pytest

        # Until one stall, up to 30 requests. The loop thread waits inside the request's
        # stretch if the new thread reaches json.loads before it takes the GIL back, and
        # idles meanwhile if the OS ordered them the other way (one request in ten on a
        # loaded CI machine; once, five in a row): timed then by the beat, and once only.
        @pytest.mark.anyio
        async def test_through_asgi_transport(async_client, loopwatch):
            for _ in range(30):
                assert (await async_client.get("/await/new-thread/json")).status_code == 200
                if loopwatch.stalls:
                    break

        def test_through_test_client(test_client, loopwatch):
            for _ in range(30):
                assert test_client.get("/await/new-thread/json").status_code == 200
                if loopwatch.stalls:
                    break

        @pytest.mark.anyio
        async def test_a_new_thread_that_lets_go(async_client):
            for _ in range(5):
                assert (await async_client.get("/await/new-thread/spin")).status_code == 200
        """
    )
    # In a process of its own, as the other GIL-holding call (/json): no threads left behind.
    result = pytester.runpytest_subprocess("--loopwatch")
    result.assert_outcomes(passed=1, failed=2)
    # Timed, not always located: the watchdog can look only once json.loads lets go of
    # the GIL, when the loop thread may take it first and end the stretch (README, Limits).
    once = [
        "loopwatch: the event loop was blocked 1 time (threshold 100 ms)",
        "",
        "  GET /await/new-thread/json  route /await/new-thread/json",
        "  endpoint app.await_new_thread_json (app.py:*)",
        "  blocked * ms*",
    ]
    result.stdout.fnmatch_lines(
        ["*_ test_through_asgi_transport _*", *once, "*_ test_through_test_client _*", *once]
    )


def test_a_worker_thread_holding_the_gil_while_the_request_waits_is_a_stall(
    pytester: pytest.Pytester, app_files: Path
) -> None:
    pytester.makepyfile(
        """
        import asyncio
        import time

        import pytest

        # A fast request first: a hold while modules are imported is let pass (one-time
        # loading), and the first request to a worker thread imports some. Then until one
        # stall, up to 3 requests: CI's trio run once missed one through TestClient, a
        # cause not found (20 of 20 reported in accuracy.py, and under four busy processes).
        @pytest.mark.anyio
        async def test_through_asgi_transport(async_client, loopwatch):
            assert (await async_client.get("/sync/fast")).status_code == 200
            for _ in range(3):
                assert (await async_client.get("/sync/json")).status_code == 200
                if loopwatch.stalls:
                    break

        def test_through_test_client(test_client, loopwatch):
            with test_client:
                assert test_client.get("/sync/fast").status_code == 200
                for _ in range(3):
                    assert test_client.get("/sync/json").status_code == 200
                    if loopwatch.stalls:
                        break

        @pytest.mark.anyio
        async def test_python_code_in_a_worker_lets_the_loop_run(async_client):
            assert (await async_client.get("/sync/cpu")).status_code == 200

        def test_python_code_in_a_worker_lets_the_loop_run_through_test_client(test_client):
            with test_client:
                assert test_client.get("/sync/cpu").status_code == 200

        # The collector's work, though the loop thread gets the GIL before it ends.
        @pytest.mark.anyio
        async def test_a_collection_in_a_worker_is_not_the_app(async_client):
            assert (await async_client.get("/sync/collect")).status_code == 200

        def test_a_collection_in_a_worker_is_not_the_app_through_test_client(test_client):
            with test_client:
                assert test_client.get("/sync/collect").status_code == 200

        # The loop thread sleeps in the test's own code while the worker computes: late,
        # but not for the GIL (it woke once, not every switch interval to ask for it).
        @pytest.mark.anyio
        async def test_the_test_sleeping_on_the_loop_while_a_worker_computes(async_client):
            request = asyncio.ensure_future(async_client.get("/sync/cpu"))
            await asyncio.sleep(0.05)
            time.sleep(0.2)  # shorter than the worker's 0.3 s: it still computes after
            assert (await request).status_code == 200
        """
    )
    # In a process of its own, as the other GIL-holding calls: no threads left behind.
    result = pytester.runpytest_subprocess("--loopwatch")
    result.assert_outcomes(passed=5, failed=2)
    # Its line only mostly: the holder's stack is taken once it let go of the GIL, and a
    # thread that took the GIL before the loop thread (the watchdog) lets it run on.
    held = [
        "loopwatch: the event loop was blocked 1 time (threshold 100 ms)",
        "",
        "  GET /sync/json  route /sync/json",
        "  endpoint app.sync_json (app.py:*)",
        "  blocked * ms*",
        "  fix: the work runs in a thread, but its C call keeps the GIL*",
    ]
    result.stdout.fnmatch_lines(
        ["*_ test_through_asgi_transport _*", *held, "*_ test_through_test_client _*", *held]
    )


@pytest.mark.slow
def test_a_worker_thread_holding_the_gil_is_a_stall_on_uvloop(
    pytester: pytest.Pytester, app_files: Path
) -> None:
    pytest.importorskip("uvloop")
    options = '("asyncio", {"use_uvloop": True})'
    pytester.makepyfile(
        f"""
        import pytest
        from starlette.testclient import TestClient

        import app

        @pytest.fixture
        def anyio_backend():
            return {options}

        # Until one stall, up to 3 requests, as on asyncio.
        @pytest.mark.anyio
        @pytest.mark.parametrize("path", ["/sync/json", "/sync/cpu"])
        async def test_through_asgi_transport(async_client, loopwatch, path):
            assert (await async_client.get("/sync/fast")).status_code == 200
            for _ in range(3):
                assert (await async_client.get(path)).status_code == 200
                if loopwatch.stalls:
                    break

        @pytest.mark.parametrize("path", ["/sync/json", "/sync/cpu"])
        def test_through_test_client(anyio_backend, loopwatch, path):
            backend, backend_options = anyio_backend
            client = TestClient(app.app, backend=backend, backend_options=backend_options)
            with client:
                assert client.get("/sync/fast").status_code == 200
                for _ in range(3):
                    assert client.get(path).status_code == 200
                    if loopwatch.stalls:
                        break
        """
    )
    result = pytester.runpytest_subprocess("--loopwatch")
    result.assert_outcomes(passed=2, failed=2)
    held = ["  GET /sync/json  route /sync/json", "  endpoint app.sync_json (app.py:*)"]
    result.stdout.fnmatch_lines(
        [
            "*_ test_through_asgi_transport?/sync/json? _*",
            *held,
            "*_ test_through_test_client?/sync/json? _*",
            *held,
        ]
    )


@pytest.mark.slow
def test_a_worker_thread_holding_the_gil_is_a_stall_on_trio(
    pytester: pytest.Pytester, app_files: Path
) -> None:
    pytest.importorskip("trio")
    pytester.makepyfile(
        """
        import time

        import pytest
        import trio
        import trio.testing
        from starlette.testclient import TestClient

        import app

        @pytest.fixture
        def anyio_backend():
            return "trio"

        # Until one stall, up to 3 requests, as on asyncio.
        @pytest.mark.anyio
        @pytest.mark.parametrize("path", ["/sync/json", "/sync/cpu"])
        async def test_through_asgi_transport(async_client, loopwatch, path):
            assert (await async_client.get("/sync/fast")).status_code == 200
            for _ in range(3):
                assert (await async_client.get(path)).status_code == 200
                if loopwatch.stalls:
                    break

        @pytest.mark.parametrize("path", ["/sync/json", "/sync/cpu"])
        def test_through_test_client(loopwatch, path):
            with TestClient(app.app, backend="trio") as client:
                assert client.get("/sync/fast").status_code == 200
                for _ in range(3):
                    assert client.get(path).status_code == 200
                    if loopwatch.stalls:
                        break

        # The beat's deadlines would keep a task waiting for all others to be blocked
        # with a cushion from ever waking: the beat stops for it, then hears a hold again.
        @pytest.mark.anyio
        async def test_waiting_for_idle_then_a_hold(async_client, loopwatch):
            assert (await async_client.get("/sync/fast")).status_code == 200
            with trio.fail_after(5):
                await trio.testing.wait_all_tasks_blocked(0.1)
            for _ in range(3):
                assert (await async_client.get("/sync/json")).status_code == 200
                if loopwatch.stalls:
                    break

        # anyio runs these tests with trio as a guest, waiting for I/O in a thread of its
        # own: the test sleeping while a worker computes is late, but not for the GIL.
        @pytest.mark.anyio
        async def test_the_test_sleeping_on_the_loop_while_a_worker_computes(async_client):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(async_client.get, "/sync/cpu")
                await trio.sleep(0.05)
                time.sleep(0.2)  # shorter than the worker's 0.3 s: it still computes after
        """
    )
    result = pytester.runpytest_subprocess("--loopwatch")
    result.assert_outcomes(passed=3, failed=3)
    held = ["  GET /sync/json  route /sync/json", "  endpoint app.sync_json (app.py:*)"]
    result.stdout.fnmatch_lines(
        [
            "*_ test_through_asgi_transport?/sync/json? _*",
            *held,
            "*_ test_through_test_client?/sync/json? _*",
            *held,
            "*_ test_waiting_for_idle_then_a_hold _*",
            *held,
        ]
    )
    result.stdout.no_fnmatch_line("*TooSlowError*")


@pytest.mark.parametrize(
    "path",
    [
        "/sync/sleep",
        "/sync/cpu",
        "/sync/http",
        "/sync/subprocess",
        "/sync/dependency",
        "/await/sleep",
        "/await/threadpool",
        "/await/to-thread",
    ],
)
def test_the_same_work_off_the_loop_passes(
    pytester: pytest.Pytester, app_files: Path, path: str, assert_no_stalls: NoStalls
) -> None:
    pytester.makepyfile(BOTH_CLIENTS.format(path=path))
    assert_no_stalls(pytester.runpytest("--loopwatch"), passed=2, app_calls=2)


def test_a_thousand_fast_requests_in_one_test_pass(
    pytester: pytest.Pytester, app_files: Path, assert_no_stalls: NoStalls
) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.anyio
        async def test_through_asgi_transport(async_client):
            for _ in range(1000):
                assert (await async_client.get("/fast")).status_code == 200

        def test_through_test_client(test_client):
            with test_client:
                for _ in range(1000):
                    assert test_client.get("/fast").status_code == 200
        """
    )
    # The lifespan of `with test_client` is an app call too.
    assert_no_stalls(pytester.runpytest("--loopwatch"), passed=2, app_calls=2001)


def test_slow_code_in_the_test_itself_is_not_a_stall(
    pytester: pytest.Pytester, app_files: Path, assert_no_stalls: NoStalls
) -> None:
    pytester.makepyfile(
        """
        import time
        import pytest

        @pytest.mark.anyio
        async def test_through_asgi_transport(async_client):
            await async_client.get("/fast")
            time.sleep(0.3)
            await async_client.get("/fast")

        def test_through_test_client(test_client):
            test_client.get("/fast")
            time.sleep(0.3)
            test_client.get("/fast")
        """
    )
    assert_no_stalls(pytester.runpytest("--loopwatch"), passed=2, app_calls=4)


def test_creating_the_app_inside_the_test_is_not_a_stall(
    pytester: pytest.Pytester, assert_no_stalls: NoStalls
) -> None:
    pytester.makepyfile(
        """
        import httpx
        import pytest
        from fastapi import FastAPI
        from starlette.testclient import TestClient

        def make_app():
            app = FastAPI()
            for number in range(300):
                app.get(f"/item-{number}")(lambda: number)
            return app

        @pytest.fixture
        def anyio_backend():
            return "asyncio"

        @pytest.mark.anyio
        async def test_through_asgi_transport():
            transport = httpx.ASGITransport(app=make_app())
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                assert (await client.get("/item-7")).status_code == 200

        def test_through_test_client():
            with TestClient(make_app()) as client:
                assert client.get("/item-7").status_code == 200
        """
    )
    assert_no_stalls(pytester.runpytest("--loopwatch"), passed=2, app_calls=3)


def test_any_asgi_app_is_watched_not_only_fastapi(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import time
        import httpx
        import pytest

        async def app(scope, receive, send):
            time.sleep(0.3)  # BLOCKS
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"done"})

        @pytest.fixture
        def anyio_backend():
            return "asyncio"

        @pytest.mark.anyio
        async def test_raw_asgi_app():
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                assert (await client.get("/raw")).text == "done"
        """
    )
    result = pytester.runpytest("--loopwatch")
    result.assert_outcomes(failed=1)
    test_file = pytester.path / "test_any_asgi_app_is_watched_not_only_fastapi.py"
    result.stdout.fnmatch_lines(
        [
            "  GET /raw",
            f"  blocked * ms at {test_file.name}:{line_of(test_file, 'BLOCKS')} in app, "
            "calling time.sleep(0.3)",
        ]
    )


def test_httpx2_asgi_transport_is_watched(pytester: pytest.Pytester, app_files: Path) -> None:
    pytester.makepyfile(
        """
        import httpx2
        import pytest
        import app as app_module

        @pytest.mark.anyio
        async def test_through_httpx2():
            transport = httpx2.ASGITransport(app=app_module.app)
            async with httpx2.AsyncClient(transport=transport, base_url="http://test") as client:
                assert (await client.get("/sleep")).status_code == 200
        """
    )
    result = pytester.runpytest("--loopwatch")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            f"  blocked * ms at app.py:{line_of(app_files, 'SLEEP')} in sleep, "
            "calling time.sleep(0.3)"
        ]
    )
