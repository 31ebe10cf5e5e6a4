"""The endpoints through httpx's ASGITransport; `pytest --loopwatch` fails the blocking twins."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from example_app.main import app

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


async def test_weather(client: httpx.AsyncClient) -> None:
    response = await client.get("/weather/berlin")
    assert response.json() == {"city": "berlin", "temperature": 21}


async def test_weather_blocking(client: httpx.AsyncClient) -> None:
    response = await client.get("/weather-blocking/berlin")
    assert response.json() == {"city": "berlin", "temperature": 21}


async def test_calculate(client: httpx.AsyncClient) -> None:
    response = await client.post("/calculate/", json={"numbers": [1, 2, 3]})
    assert response.json() == {"result": 6}


async def test_calculate_blocking(client: httpx.AsyncClient) -> None:
    response = await client.post("/calculate-blocking/", json={"numbers": [1, 2, 3]})
    assert response.json() == {"result": 6}
