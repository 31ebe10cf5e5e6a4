"""The frameworks' own test clients: Litestar's, Quart's and Django's, watched as they come.

Each session holds a blocking handler and its clean twin, so that a client loopwatch no
longer watches fails here: the blocking test would pass.
"""

from __future__ import annotations

import pytest
from conftest import INI, line_of

ANYIO_ON_ASYNCIO = """
import pytest

@pytest.fixture
def anyio_backend():
    return "asyncio"
"""

LITESTAR = """
import time

import pytest
from litestar import Litestar, get, websocket
from litestar.connection import WebSocket
from litestar.testing import AsyncTestClient, TestClient, create_test_client


@get("/items/{item_id:int}")  # LITESTAR-ITEM
async def read_item(item_id: int) -> dict[str, int]:
    time.sleep(0.3)  # LITESTAR-SLEEP
    return {"id": item_id}


@get("/items-off-the-loop/{item_id:int}", sync_to_thread=True)
def read_item_off_the_loop(item_id: int) -> dict[str, int]:
    time.sleep(0.3)
    return {"id": item_id}


@websocket("/ws")  # LITESTAR-TALK
async def talk(socket: WebSocket) -> None:
    await socket.accept()
    time.sleep(0.3)  # LITESTAR-WS
    await socket.send_text("hi")
    await socket.close()


app = Litestar([read_item, read_item_off_the_loop, talk])


def test_test_client():
    with TestClient(app) as client:
        assert client.get("/items/3").json() == {"id": 3}
        assert client.app is app  # what users read stays their app


def test_test_client_off_the_loop():
    with TestClient(app) as client:
        assert client.get("/items-off-the-loop/3").json() == {"id": 3}


@pytest.mark.anyio
async def test_async_test_client():
    async with AsyncTestClient(app) as client:
        assert (await client.get("/items/4")).json() == {"id": 4}


@pytest.mark.anyio
async def test_async_test_client_off_the_loop():
    async with AsyncTestClient(app) as client:
        assert (await client.get("/items-off-the-loop/4")).json() == {"id": 4}


def test_create_test_client():
    with create_test_client([read_item]) as client:
        client.get("/items/5")


def test_websocket():
    with TestClient(app) as client, client.websocket_connect("/ws") as socket:
        assert socket.receive_text() == "hi"
"""


@pytest.mark.slow
def test_litestar_clients_are_watched_with_their_route_and_handler(
    pytester: pytest.Pytester,
) -> None:
    pytest.importorskip("litestar")
    pytester.makeconftest(ANYIO_ON_ASYNCIO)
    path = pytester.makepyfile(test_litestar=LITESTAR)
    item, sleep = line_of(path, "LITESTAR-ITEM"), line_of(path, "LITESTAR-SLEEP")
    # Litestar 2.25 under PYTHONDEVMODE (tox) deprecates `item_id: int` for a path
    # parameter; the spelling it asks for is newer than the oldest Litestar supported.
    pytester.makeini(INI + "filterwarnings =\n    ignore:.*deprecated inferred style\n")
    # In a process of its own: Litestar's app points the root logger, through a queue and
    # a thread of its own, at the session's captured stderr, closed once the session ends;
    # in CI a later test's log record made that thread raise, failing the test then running.
    result = pytester.runpytest_subprocess("--loopwatch")
    result.assert_outcomes(passed=2, failed=4)
    for test, request in (
        ("test_test_client", "GET /items/3"),
        ("test_async_test_client", "GET /items/4"),
        ("test_create_test_client", "GET /items/5"),
    ):
        result.stdout.fnmatch_lines(
            [
                f"*_ {test} _*",
                "loopwatch: the event loop was blocked 1 time (threshold 100 ms)",
                f"  {request}  route /items/{{item_id}}",
                f"  endpoint test_litestar.read_item (test_litestar.py:{item})",
                f"  blocked * ms at test_litestar.py:{sleep} in read_item, calling time.sleep(0.3)",
            ]
        )
    result.stdout.fnmatch_lines(
        [
            "*_ test_websocket _*",
            "  WEBSOCKET /ws  route /ws",
            f"  endpoint test_litestar.talk (test_litestar.py:{line_of(path, 'LITESTAR-TALK')})",
            f"  blocked * ms at test_litestar.py:{line_of(path, 'LITESTAR-WS')} in talk, "
            "calling time.sleep(0.3)",
        ]
    )


QUART = """
import time

import pytest
from quart import Quart, websocket

app = Quart(__name__)


@app.get("/items/<int:item_id>")  # QUART-ITEM
async def read_item(item_id: int) -> dict[str, int]:
    time.sleep(0.3)  # QUART-SLEEP
    return {"id": item_id}


@app.get("/fast/<int:item_id>")
async def read_fast(item_id: int) -> dict[str, int]:
    return {"id": item_id}


@app.websocket("/ws")  # QUART-TALK
async def talk() -> None:
    time.sleep(0.3)  # QUART-WS
    await websocket.send("hi")


@app.after_serving
async def close() -> None:
    time.sleep(0.3)  # QUART-SHUTDOWN


@pytest.mark.anyio
async def test_test_client():
    response = await app.test_client().get("/items/3")
    assert await response.get_json() == {"id": 3}


@pytest.mark.anyio
async def test_test_client_fast():
    response = await app.test_client().get("/fast/3")
    assert await response.get_json() == {"id": 3}


@pytest.mark.anyio
async def test_test_app_and_its_lifespan():
    async with app.test_app() as test_app:
        await test_app.test_client().get("/fast/4")


@pytest.mark.anyio
async def test_websocket():
    async with app.test_client().websocket("/ws") as socket:
        assert await socket.receive() == "hi"
"""


@pytest.mark.slow
def test_quart_clients_are_watched_with_their_route_and_handler(
    pytester: pytest.Pytester,
) -> None:
    pytest.importorskip("quart")
    pytester.makeconftest(ANYIO_ON_ASYNCIO)
    path = pytester.makepyfile(test_quart=QUART)
    # In a process of its own, as Litestar's: Quart logs through a queue and a thread to the
    # stderr of the session that imported it.
    result = pytester.runpytest_subprocess("--loopwatch")
    result.assert_outcomes(passed=1, failed=3)
    result.stdout.fnmatch_lines(
        [
            "*_ test_test_client _*",
            "  GET /items/3  route /items/<int:item_id>",
            f"  endpoint test_quart.read_item (test_quart.py:{line_of(path, 'QUART-ITEM')})",
            f"  blocked * ms at test_quart.py:{line_of(path, 'QUART-SLEEP')} in read_item, "
            "calling time.sleep(0.3)",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "*_ test_test_app_and_its_lifespan _*",
            "  lifespan shutdown",
            # A lifespan may open files and connect: its stretches count, naming the call
            # that made them; its calls alone do not.
            f"  blocked * ms at test_quart.py:{line_of(path, 'QUART-SHUTDOWN')} in close, "
            "calling time.sleep(0.3)",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "*_ test_websocket _*",
            "  WEBSOCKET /ws  route /ws",
            f"  endpoint test_quart.talk (test_quart.py:{line_of(path, 'QUART-TALK')})",
            f"  blocked * ms at test_quart.py:{line_of(path, 'QUART-WS')} in talk, "
            "calling time.sleep(0.3)",
        ]
    )


DJANGO_APP = """
import time

import django
from django.conf import settings
from django.http import JsonResponse
from django.urls import path

settings.configure(
    ROOT_URLCONF=__name__, ALLOWED_HOSTS=["*"], SECRET_KEY="test", MIDDLEWARE=[]
)
django.setup()


async def read_item(request, item_id):  # DJANGO-ITEM
    time.sleep(0.3)  # DJANGO-SLEEP
    return JsonResponse({"id": item_id})


def read_item_off_the_loop(request, item_id):
    time.sleep(0.3)
    return JsonResponse({"id": item_id})


urlpatterns = [
    path("items/<int:item_id>/", read_item),
    path("items-off-the-loop/<int:item_id>/", read_item_off_the_loop),
]
"""

DJANGO_TESTS = """
import pytest
from django.test import AsyncClient, Client

import views


@pytest.mark.anyio
async def test_async_client():
    response = await AsyncClient().get("/items/3/")
    assert response.json() == {"id": 3}


@pytest.mark.anyio
async def test_async_client_on_a_def_view():
    response = await AsyncClient().get("/items-off-the-loop/3/")
    assert response.json() == {"id": 3}


def test_client_on_an_async_view():
    assert Client().get("/items/4/").json() == {"id": 4}


def test_client_on_a_def_view():
    assert Client().get("/items-off-the-loop/4/").json() == {"id": 4}
"""


@pytest.mark.slow
def test_django_clients_are_watched_on_async_views_with_their_route_and_view(
    pytester: pytest.Pytester,
) -> None:
    pytest.importorskip("django")
    pytester.makeconftest(ANYIO_ON_ASYNCIO)
    pytester.makepyfile(views=DJANGO_APP, test_django=DJANGO_TESTS)
    views = pytester.path / "views.py"
    item, sleep = line_of(views, "DJANGO-ITEM"), line_of(views, "DJANGO-SLEEP")
    # In a subprocess: Django's settings are configured once per process.
    result = pytester.runpytest_subprocess("--loopwatch")
    result.assert_outcomes(passed=2, failed=2)
    for test, request in (
        ("test_async_client", "GET /items/3/"),
        ("test_client_on_an_async_view", "GET /items/4/"),
    ):
        result.stdout.fnmatch_lines(
            [
                f"*_ {test} _*",
                "loopwatch: the event loop was blocked 1 time (threshold 100 ms)",
                f"  {request}  route /items/<int:item_id>/",
                f"  endpoint views.read_item (views.py:{item})",
                f"  blocked * ms at views.py:{sleep} in read_item, calling time.sleep(0.3)",
            ]
        )
