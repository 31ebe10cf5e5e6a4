"""The endpoints through Starlette's TestClient, which runs the app on a thread of its own."""

from __future__ import annotations

from fastapi.testclient import TestClient

from example_app.main import app

client = TestClient(app)


def test_weather() -> None:
    assert client.get("/weather/berlin").json() == {"city": "berlin", "temperature": 21}


def test_weather_blocking() -> None:
    assert client.get("/weather-blocking/berlin").json() == {"city": "berlin", "temperature": 21}


def test_calculate() -> None:
    assert client.post("/calculate/", json={"numbers": [1, 2, 3]}).json() == {"result": 6}


def test_calculate_blocking() -> None:
    with TestClient(app) as lifespan_client:
        response = lifespan_client.post("/calculate-blocking/", json={"numbers": [1, 2, 3]})
    assert response.json() == {"result": 6}
