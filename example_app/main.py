"""Two endpoints declared right, and their twins that block the event loop.

`async def` endpoints run on the event loop: they must only await. `def` endpoints run in
FastAPI's thread pool, where blocking work is fine. The `-blocking` twins do the same
work in `async def`, freezing every other request while they run.
"""

from __future__ import annotations

import asyncio
import time

from fastapi import FastAPI
from pydantic import BaseModel

app = FastAPI(title="loopwatch demo")

SLOW_API_SECONDS = 0.3
CPU_SECONDS = 0.3


class Calculation(BaseModel):
    numbers: list[int]


async def fetch_forecast(city: str) -> dict[str, str | int]:
    """Stands in for a call to a slow weather API made with an async client."""
    await asyncio.sleep(SLOW_API_SECONDS)
    return {"city": city, "temperature": 21}


@app.get("/weather/{city}")
async def get_weather(city: str) -> dict[str, str | int]:
    return await fetch_forecast(city)


@app.get("/weather-blocking/{city}")
async def get_weather_blocking(city: str) -> dict[str, str | int]:
    time.sleep(SLOW_API_SECONDS)  # a sync client in an async endpoint: the loop waits too
    return {"city": city, "temperature": 21}


def crunch(numbers: list[int]) -> int:
    """CPU-bound work: a busy loop for CPU_SECONDS of this thread's CPU time, then the sum."""
    deadline = time.thread_time() + CPU_SECONDS
    while time.thread_time() < deadline:
        pass
    return sum(numbers)


@app.post("/calculate/")
def calculate(calculation: Calculation) -> dict[str, int]:
    return {"result": crunch(calculation.numbers)}


@app.post("/calculate-blocking/")
async def calculate_blocking(calculation: Calculation) -> dict[str, int]:
    return {"result": crunch(calculation.numbers)}
