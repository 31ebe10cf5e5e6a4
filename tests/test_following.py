"""A stall anywhere the request runs is caught: child tasks, streams, background tasks,
websockets, lifespan, trio, uvloop, a live server, and among concurrent requests."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest
from conftest import STALL, line_of

SHAPES = textwrap.dedent(
    f"""
    import asyncio
    import time
    from contextlib import asynccontextmanager

    import anyio
    from fastapi import BackgroundTasks, FastAPI, Request, WebSocket
    from pydantic import BaseModel
    from starlette.responses import StreamingResponse

    STALL = {STALL}
    app = FastAPI()


    async def child(block):
        if block:
            time.sleep(STALL)  # CHILD-TASK
        else:
            await asyncio.sleep(STALL)


    async def middle(block):
        await asyncio.create_task(grandchild(block))


    async def grandchild(block):
        if block:
            time.sleep(STALL)  # GRANDCHILD-TASK
        else:
            await asyncio.sleep(STALL)


    async def in_group(block):
        if block:
            time.sleep(STALL)  # TASK-GROUP
        else:
            await anyio.sleep(STALL)


    @app.get("/child-task")
    async def child_task(block: int):
        await asyncio.create_task(child(block))


    @app.get("/grandchild-task")
    async def grandchild_task(block: int):
        await asyncio.create_task(middle(block))


    @app.get("/task-group")
    async def task_group(block: int):
        async with anyio.create_task_group() as group:
            group.start_soon(in_group, block)


    @app.get("/stream")
    async def stream(block: int):
        async def body():
            yield b"first"
            if block:
                time.sleep(STALL)  # STREAM
            else:
                await asyncio.sleep(STALL)
            yield b"second"

        return StreamingResponse(body())


    async def background_work(block):
        if block:
            time.sleep(STALL)  # BACKGROUND
        else:
            await asyncio.sleep(STALL)


    @app.get("/background")
    async def background(block: int, tasks: BackgroundTasks):
        tasks.add_task(background_work, block)
        return "queued"


    @app.websocket("/ws")
    async def websocket(socket: WebSocket):
        await socket.accept()
        if await socket.receive_text() == "block":
            time.sleep(STALL)  # WEBSOCKET
        else:
            await asyncio.sleep(STALL)
        await socket.send_text("done")
        await socket.close()


    @app.get("/sleep")
    async def sleep(block: int = 1):
        if block:
            time.sleep(STALL)  # SLEEP
        else:
            await anyio.sleep(STALL)


    @app.get("/fast")
    async def fast():
        return "fast"


    with_middleware = FastAPI()


    @with_middleware.middleware("http")
    async def passing_through(request, call_next):
        return await call_next(request)


    @with_middleware.get("/behind-middleware")
    async def behind_middleware(block: int):
        if block:
            time.sleep(STALL)  # BEHIND-MIDDLEWARE
        else:
            await asyncio.sleep(STALL)


    def run_callback(block, done):
        if block:
            time.sleep(STALL)  # CALLBACK
        done.set_result(None)


    @app.get("/call-soon")
    async def call_soon(block: int):
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        loop.call_soon(run_callback, block, done)
        await done


    @app.get("/call-later")
    async def call_later(block: int):
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        loop.call_later(0.01, run_callback, block, done)
        await done


    async def sent_back(block):
        if block:
            time.sleep(STALL)  # SENT-BACK
        else:
            await anyio.sleep(STALL)


    @app.get("/from-thread")
    def from_thread(block: int):
        anyio.from_thread.run(sent_back, block)


    @app.get("/from-thread-sync")
    def from_thread_sync(block: int):
        anyio.from_thread.run_sync(run_callback_soon, block)


    def run_callback_soon(block):
        if block:
            time.sleep(STALL)  # SENT-BACK-SYNC


    @app.get("/coroutine-threadsafe")
    async def coroutine_threadsafe(block: int):
        loop = asyncio.get_running_loop()

        def in_a_thread():
            asyncio.run_coroutine_threadsafe(sent_back(block), loop).result()

        await asyncio.to_thread(in_a_thread)


    def run_soon(block):
        if block:
            time.sleep(STALL)  # RUN-SYNC-SOON


    @app.get("/run-sync-soon")
    async def run_sync_soon(block: int):
        import trio  # this shape runs on trio only: its `call_soon`

        trio.lowlevel.current_trio_token().run_sync_soon(run_soon, block)
        await anyio.sleep(0.05)


    ROWS = [{{"id": i, "name": f"row {{i}}", "score": i / 3}} for i in range(60000)]


    @app.get("/large-response")
    async def large_response(block: int):
        rows = ROWS if block else ROWS[:10]
        return rows  # RETURN


    class Order(BaseModel):
        lines: list[dict[str, int]]


    @app.post("/large-body")
    async def large_body(order: Order):  # BODY-DEFINITION
        return len(order.lines)


    async def consume(queue):
        while True:
            block, done = await queue.get()
            if block:
                time.sleep(STALL)  # CONSUMER
            else:
                await asyncio.sleep(STALL)
            done.set_result(None)


    def app_with_consumer():
        @asynccontextmanager
        async def lifespan(app):
            app.state.queue = asyncio.Queue()
            consumer = asyncio.create_task(consume(app.state.queue))
            yield
            consumer.cancel()

        consuming = FastAPI(lifespan=lifespan)

        @consuming.get("/job")
        async def job(block: int, request: Request):
            done = asyncio.get_running_loop().create_future()
            await request.app.state.queue.put((block, done))
            await done

        return consuming


    def app_with_lifespan(block_startup, block_shutdown):
        @asynccontextmanager
        async def lifespan(app):
            if block_startup:
                time.sleep(STALL)  # STARTUP
            yield
            if block_shutdown:
                time.sleep(STALL)  # SHUTDOWN

        return FastAPI(lifespan=lifespan)
    """
)


@pytest.fixture
def shapes(pytester: pytest.Pytester) -> Path:
    pytester.makepyfile(shapes=SHAPES)
    return pytester.path / "shapes.py"


def run_twins(pytester: pytest.Pytester, path: str, app: str = "app") -> pytest.RunResult:
    """Blocking and non-blocking twins of `path`, through ASGITransport and TestClient."""
    pytester.makepyfile(
        textwrap.dedent(
            f"""
            import httpx
            import pytest
            from starlette.testclient import TestClient

            import shapes

            @pytest.fixture
            def anyio_backend():
                return "asyncio"

            @pytest.mark.parametrize("block", [0, 1])
            @pytest.mark.anyio
            async def test_asgi_transport(block):
                transport = httpx.ASGITransport(app=shapes.{app})
                async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                    response = await client.get("{path}", params={{"block": block}})
                assert response.status_code == 200

            @pytest.mark.parametrize("block", [0, 1])
            def test_test_client(block):
                response = TestClient(shapes.{app}).get("{path}", params={{"block": block}})
                assert response.status_code == 200
            """
        )
    )
    return pytester.runpytest("--loopwatch")


@pytest.mark.parametrize(
    ("path", "tag", "app"),
    [
        ("/child-task", "CHILD-TASK", "app"),
        ("/grandchild-task", "GRANDCHILD-TASK", "app"),
        ("/task-group", "TASK-GROUP", "app"),
        ("/stream", "STREAM", "app"),
        ("/background", "BACKGROUND", "app"),
        ("/behind-middleware", "BEHIND-MIDDLEWARE", "with_middleware"),
        ("/call-soon", "CALLBACK", "app"),
        ("/call-later", "CALLBACK", "app"),
        ("/from-thread", "SENT-BACK", "app"),
        ("/from-thread-sync", "SENT-BACK-SYNC", "app"),
        ("/coroutine-threadsafe", "SENT-BACK", "app"),
    ],
)
def test_a_stall_in_work_the_request_runs_is_the_requests(
    pytester: pytest.Pytester, shapes: Path, path: str, tag: str, app: str
) -> None:
    result = run_twins(pytester, path, app)
    result.assert_outcomes(passed=2, failed=2)
    report = [
        "loopwatch: the event loop was blocked 1 time (threshold 100 ms)",
        f"  GET {path}  route {path}",
        f"  blocked * ms at shapes.py:{line_of(shapes, tag)} in *",
    ]
    result.stdout.fnmatch_lines(
        ["*_ test_asgi_transport?1? _*", *report, "*_ test_test_client?1? _*", *report]
    )


def test_a_stall_in_a_websocket_handler_names_the_websocket(
    pytester: pytest.Pytester, shapes: Path
) -> None:
    pytester.makepyfile(
        """
        import pytest
        from starlette.testclient import TestClient

        import shapes

        @pytest.mark.parametrize("message", ["wait", "block"])
        def test_websocket(message):
            with TestClient(shapes.app).websocket_connect("/ws") as socket:
                socket.send_text(message)
                assert socket.receive_text() == "done"
        """
    )
    result = pytester.runpytest("--loopwatch")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*_ test_websocket?block? _*",
            "  WEBSOCKET /ws  route /ws",
            f"  blocked * ms at shapes.py:{line_of(shapes, 'WEBSOCKET')} in websocket, "
            "calling time.sleep(0.3)",
        ]
    )


def test_a_stall_in_the_lifespan_names_startup_or_shutdown(
    pytester: pytest.Pytester, shapes: Path
) -> None:
    pytester.makepyfile(
        """
        import pytest
        from asgi_lifespan import LifespanManager
        from starlette.testclient import TestClient

        import shapes

        @pytest.fixture
        def anyio_backend():
            return "asyncio"

        @pytest.mark.parametrize(("startup", "shutdown"), [(0, 0), (1, 0), (0, 1)])
        def test_test_client(startup, shutdown):
            with TestClient(shapes.app_with_lifespan(startup, shutdown)):
                pass

        @pytest.mark.anyio
        @pytest.mark.parametrize(("startup", "shutdown"), [(0, 0), (1, 0)])
        async def test_lifespan_manager(startup, shutdown, loopwatch):
            app = loopwatch.wrap(shapes.app_with_lifespan(startup, shutdown))
            async with LifespanManager(app):
                pass
        """
    )
    result = pytester.runpytest("--loopwatch")
    result.assert_outcomes(passed=2, failed=3)
    # A lifespan's stall names the call that made it, with the lifespan's own advice.
    startup = (
        f"  blocked * ms at shapes.py:{line_of(shapes, 'STARTUP')} in *lifespan, "
        "calling time.sleep(0.3)"
    )
    shutdown = (
        f"  blocked * ms at shapes.py:{line_of(shapes, 'SHUTDOWN')} in *lifespan, "
        "calling time.sleep(0.3)"
    )
    result.stdout.fnmatch_lines(
        [
            "*_ test_test_client?1-0? _*",
            "  lifespan startup",
            startup,
            "*_ test_test_client?0-1? _*",
            "  lifespan shutdown",
            shutdown,
            "*_ test_lifespan_manager?1-0? _*",
            "  lifespan startup",
            startup,
        ]
    )


def test_every_call_of_a_frameworks_app_is_watched_however_it_is_driven(
    pytester: pytest.Pytester, shapes: Path
) -> None:
    pytester.makepyfile(
        """
        import time

        import anyio
        import pytest
        from asgi_lifespan import LifespanManager
        from starlette.applications import Starlette
        from starlette.responses import PlainTextResponse
        from starlette.routing import Route

        import shapes

        async def starlette_sleep(request):
            if request.query_params["block"] == "1":
                time.sleep(0.3)
            return PlainTextResponse("slept")

        # Starlette's own class: its `__call__` is the one watched (FastAPI's awaits it).
        plain_starlette = Starlette(routes=[Route("/sleep", starlette_sleep)])

        @pytest.fixture
        def anyio_backend():
            return "asyncio"

        @pytest.mark.anyio
        @pytest.mark.parametrize("shutdown", [0, 1])
        async def test_lifespan_manager(shutdown):
            async with LifespanManager(shapes.app_with_lifespan(0, shutdown)):
                pass

        @pytest.mark.anyio
        @pytest.mark.parametrize("way", ["await", "start_soon"])
        @pytest.mark.parametrize("block", [0, 1])
        async def test_a_hand_written_driver(block, way):
            scope = {
                "type": "http", "http_version": "1.1", "method": "GET", "scheme": "http",
                "path": "/sleep", "raw_path": b"/sleep", "root_path": "", "headers": [],
                "query_string": b"block=%d" % block, "server": ("t", 80), "client": ("c", 1),
            }
            sent = []

            async def receive():
                return {"type": "http.request", "body": b"", "more_body": False}

            async def send(message):
                sent.append(message)

            if way == "await":
                await shapes.app(scope, receive, send)
            else:  # anyio's task takes only a coroutine: the watched call must still be one
                async with anyio.create_task_group() as group:
                    group.start_soon(plain_starlette, scope, receive, send)
            assert sent[0]["status"] == 200
        """
    )
    result = pytester.runpytest("--loopwatch")
    result.assert_outcomes(passed=3, failed=3)
    result.stdout.fnmatch_lines(
        [
            "*_ test_lifespan_manager?1? _*",
            "  lifespan shutdown",
            f"  blocked * ms at shapes.py:{line_of(shapes, 'SHUTDOWN')} in *lifespan, "
            "calling time.sleep(0.3)",
            "*_ test_a_hand_written_driver?1-await? _*",
            "  GET /sleep  route /sleep",
            f"  blocked * ms at shapes.py:{line_of(shapes, 'SLEEP')} in sleep, "
            "calling time.sleep(0.3)",
            "*_ test_a_hand_written_driver?1-start_soon? _*",
            # Newer Starlette puts the route in the scope; 0.40 (tox's lowest) does not.
            "  GET /sleep*",
            "  blocked * ms at *.py:* in starlette_sleep, calling time.sleep(0.3)",
        ]
    )


def test_a_task_the_lifespan_started_that_stalls_fails_the_test_and_is_named(
    pytester: pytest.Pytester, shapes: Path
) -> None:
    pytester.makepyfile(
        """
        import httpx
        import pytest
        from asgi_lifespan import LifespanManager
        from starlette.testclient import TestClient

        import shapes

        @pytest.fixture
        def anyio_backend():
            return "asyncio"

        @pytest.mark.anyio
        @pytest.mark.parametrize("block", [0, 1])
        async def test_lifespan_manager(block):
            async with LifespanManager(shapes.app_with_consumer()) as manager:
                transport = httpx.ASGITransport(app=manager.app)
                async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                    response = await client.get("/job", params={"block": block})
            assert response.status_code == 200

        @pytest.mark.parametrize("block", [0, 1])
        def test_test_client(block):
            with TestClient(shapes.app_with_consumer()) as client:
                assert client.get("/job", params={"block": block}).status_code == 200
        """
    )
    result = pytester.runpytest("--loopwatch")
    result.assert_outcomes(passed=2, failed=2)
    report = [
        "loopwatch: the event loop was blocked 1 time (threshold 100 ms)",
        "  task consume(), started at lifespan startup",
        f"  blocked * ms at shapes.py:{line_of(shapes, 'CONSUMER')} in consume, "
        "calling time.sleep(0.3)",
    ]
    result.stdout.fnmatch_lines(
        ["*_ test_lifespan_manager?1? _*", *report, "*_ test_test_client?1? _*", *report]
    )


def test_framework_work_names_the_endpoints_return_or_definition(
    pytester: pytest.Pytester, shapes: Path
) -> None:
    pytester.makepyfile(
        """
        import httpx
        import pytest
        from starlette.testclient import TestClient

        import shapes

        @pytest.fixture
        def anyio_backend():
            return "asyncio"

        def order(lines):
            return {"lines": [{"a": i, "b": i, "c": i} for i in range(lines)]}

        @pytest.mark.anyio
        @pytest.mark.parametrize("block", [0, 1])
        async def test_asgi_transport(block):
            transport = httpx.ASGITransport(app=shapes.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                assert (await client.get("/large-response", params={"block": block})).is_success
                body = order(block * 400000 + 10)
                assert (await client.post("/large-body", json=body)).is_success

        @pytest.mark.parametrize("block", [0, 1])
        def test_test_client(block):
            client = TestClient(shapes.app)
            assert client.get("/large-response", params={"block": block}).is_success
            assert client.post("/large-body", json=order(block * 400000 + 10)).is_success
        """
    )
    # Parsing the large body takes 240 ms here: five times the threshold.
    result = pytester.runpytest("--loopwatch", "--loopwatch-threshold=50ms")
    result.assert_outcomes(passed=2, failed=2)
    returned = [
        "  GET /large-response  route /large-response",
        "  blocked * ms at * (library code)",
        f"  reached from shapes.py:{line_of(shapes, 'RETURN')} in large_response",
        "      return rows  # RETURN",
        "  fix: the framework serialises what the endpoint returns on the loop, *",
    ]
    parsed = [
        "  POST /large-body  route /large-body",
        "  blocked * ms at * (library code)",
        f"  reached from shapes.py:{line_of(shapes, 'BODY-DEFINITION')} in large_body",
        "  fix: the framework parses and validates the request body (into Order) on the loop, *",
    ]
    result.stdout.fnmatch_lines(
        [
            "*_ test_asgi_transport?1? _*",
            *returned,
            *parsed,
            "*_ test_test_client?1? _*",
            *returned,
            *parsed,
        ]
    )


def test_trio_is_watched_through_anyio_and_test_client(
    pytester: pytest.Pytester, shapes: Path
) -> None:
    pytest.importorskip("trio")
    pytester.makepyfile(
        """
        import httpx
        import pytest
        from starlette.testclient import TestClient

        import shapes

        @pytest.fixture
        def anyio_backend():
            return "trio"

        @pytest.mark.anyio
        @pytest.mark.parametrize("path", ["/sleep", "/task-group"])
        @pytest.mark.parametrize("block", [0, 1])
        async def test_asgi_transport(path, block):
            transport = httpx.ASGITransport(app=shapes.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                assert (await client.get(path, params={"block": block})).status_code == 200

        @pytest.mark.parametrize("path", ["/sleep", "/task-group"])
        @pytest.mark.parametrize("block", [0, 1])
        def test_test_client(path, block):
            client = TestClient(shapes.app, backend="trio")
            assert client.get(path, params={"block": block}).status_code == 200
        """
    )
    result = pytester.runpytest("--loopwatch")
    result.assert_outcomes(passed=4, failed=4)
    for tag in ("SLEEP", "TASK-GROUP"):
        result.stdout.fnmatch_lines(
            [f"  blocked * ms at shapes.py:{line_of(shapes, tag)} in *"] * 2
        )


def test_callbacks_and_work_sent_from_threads_are_followed_on_trio(
    pytester: pytest.Pytester, shapes: Path
) -> None:
    pytest.importorskip("trio")
    pytester.makepyfile(
        """
        import httpx
        import pytest
        from starlette.testclient import TestClient

        import shapes

        @pytest.fixture
        def anyio_backend():
            return "trio"

        @pytest.mark.anyio
        @pytest.mark.parametrize("block", [0, 1])
        async def test_asgi_transport(block):
            transport = httpx.ASGITransport(app=shapes.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                assert (await client.get("/run-sync-soon", params={"block": block})).is_success

        @pytest.mark.parametrize("block", [0, 1])
        def test_test_client(block):
            client = TestClient(shapes.app, backend="trio")
            assert client.get("/from-thread", params={"block": block}).status_code == 200
        """
    )
    result = pytester.runpytest("--loopwatch")
    result.assert_outcomes(passed=2, failed=2)
    result.stdout.fnmatch_lines(
        [
            "*_ test_asgi_transport?1? _*",
            f"  blocked * ms at shapes.py:{line_of(shapes, 'RUN-SYNC-SOON')} in run_soon*",
            "*_ test_test_client?1? _*",
            f"  blocked * ms at shapes.py:{line_of(shapes, 'SENT-BACK')} in sent_back*",
        ]
    )


def test_uvloop_is_watched_through_pytest_asyncio_and_test_client(
    pytester: pytest.Pytester, shapes: Path
) -> None:
    pytest.importorskip("uvloop")
    pytester.makepyfile(
        """
        import httpx
        import pytest
        import uvloop
        from starlette.testclient import TestClient

        import shapes

        @pytest.fixture(scope="session")
        def event_loop_policy():
            return uvloop.EventLoopPolicy()

        @pytest.mark.asyncio
        @pytest.mark.parametrize("path", ["/sleep", "/child-task", "/call-soon", "/from-thread"])
        @pytest.mark.parametrize("block", [0, 1])
        async def test_asgi_transport(path, block):
            import asyncio
            assert isinstance(asyncio.get_running_loop(), uvloop.Loop)
            transport = httpx.ASGITransport(app=shapes.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                assert (await client.get(path, params={"block": block})).status_code == 200

        @pytest.mark.parametrize("path", ["/child-task", "/call-later", "/coroutine-threadsafe"])
        @pytest.mark.parametrize("block", [0, 1])
        def test_test_client(path, block):
            client = TestClient(shapes.app, backend_options={"use_uvloop": True})
            assert client.get(path, params={"block": block}).status_code == 200
        """
    )
    result = pytester.runpytest("--loopwatch", "-W", "ignore::DeprecationWarning")
    result.assert_outcomes(passed=7, failed=7)
    for tag, count in (("SLEEP", 1), ("CHILD-TASK", 2), ("CALLBACK", 2), ("SENT-BACK", 2)):
        result.stdout.fnmatch_lines(
            [f"  blocked * ms at shapes.py:{line_of(shapes, tag)} in *"] * count
        )


def test_a_loop_with_a_task_factory_of_its_own_keeps_it_and_is_followed(
    pytester: pytest.Pytester, shapes: Path
) -> None:
    pytester.makepyfile(
        """
        import asyncio
        import sys

        import httpx
        import pytest

        import shapes

        created = []

        def counting_factory(loop, coroutine, **options):
            created.append(coroutine)
            return asyncio.Task(coroutine, loop=loop, **options)

        factories = [counting_factory]
        if sys.version_info >= (3, 12):
            factories.append(asyncio.eager_task_factory)

        @pytest.mark.asyncio
        @pytest.mark.parametrize("factory", factories)
        @pytest.mark.parametrize("block", [0, 1])
        async def test_child_task(factory, block):
            loop = asyncio.get_running_loop()
            loop.set_task_factory(factory)
            transport = httpx.ASGITransport(app=shapes.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                assert (await client.get("/child-task", params={"block": block})).status_code == 200
            assert loop.get_task_factory() is not factory  # followed: handed on to it
            if factory is counting_factory:
                assert created  # and it made the tasks
        """
    )
    result = pytester.runpytest("--loopwatch", "-p", "no:randomly")
    factories = 2 if sys.version_info >= (3, 12) else 1
    result.assert_outcomes(passed=factories, failed=factories)
    result.stdout.fnmatch_lines(
        [f"  blocked * ms at shapes.py:{line_of(shapes, 'CHILD-TASK')} in *"] * factories
    )


def test_a_live_server_stall_lands_in_the_test_that_made_the_request(
    pytester: pytest.Pytester, shapes: Path
) -> None:
    pytester.makepyfile(
        """
        import socket
        import threading
        import time
        import urllib.request

        import pytest
        import uvicorn

        import shapes

        @pytest.fixture
        def live_url(loopwatch):
            listener = socket.socket()
            listener.bind(("127.0.0.1", 0))
            config = uvicorn.Config(loopwatch.wrap(shapes.app), log_level="warning", lifespan="off")
            server = uvicorn.Server(config)
            thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]})
            thread.start()
            while not server.started:
                time.sleep(0.01)
            yield "http://127.0.0.1:%d" % listener.getsockname()[1]
            server.should_exit = True
            thread.join()
            listener.close()

        @pytest.mark.parametrize("block", [0, 1])
        def test_live(live_url, block):
            with urllib.request.urlopen(f"{live_url}/sleep?block={block}") as response:
                assert response.status == 200
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*_ test_live?1? _*",
            "  GET /sleep  route /sleep",
            f"  blocked * ms at shapes.py:{line_of(shapes, 'SLEEP')} in sleep, "
            "calling time.sleep(0.3)",
        ]
    )


def test_of_two_concurrent_requests_only_the_blocking_one_is_named(
    pytester: pytest.Pytester, shapes: Path
) -> None:
    pytester.makepyfile(
        """
        import asyncio
        import httpx
        import pytest

        import shapes

        @pytest.mark.asyncio
        async def test_gather():
            transport = httpx.ASGITransport(app=shapes.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                await asyncio.gather(
                    client.get("/sleep", params={"block": 0}),
                    client.get("/sleep", params={"block": 1}),
                    client.get("/fast"),
                )
        """
    )
    result = pytester.runpytest("--loopwatch")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["loopwatch: the event loop was blocked 1 time*", "  GET /sleep  route /sleep"]
    )
    result.stdout.no_fnmatch_line("  GET /fast*")
