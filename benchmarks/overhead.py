"""Overhead of --loopwatch on fast requests, as paired runs: plain, then watched, many rounds.

Each round times the same batch of requests to a trivial FastAPI endpoint once without
loopwatch and once with it switched on exactly as `--loopwatch` does (client classes
patched, a watch active, the watchdog polling). The figure is the ratio of the medians.

    python benchmarks/overhead.py [--requests 2000] [--rounds 15]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Callable

import httpx
from fastapi import FastAPI
from fastapi.testclient import TestClient

from pytest_loopwatch.interception import Interception
from pytest_loopwatch.watch import Watch, shutdown, start, stop

app = FastAPI()


@app.get("/fast")
async def fast() -> dict[str, bool]:
    return {"ok": True}


def through_asgi_transport(requests: int) -> float:
    async def run() -> float:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            started = time.perf_counter()
            for _ in range(requests):
                await client.get("/fast")
            return time.perf_counter() - started

    return asyncio.run(run())


def through_test_client(requests: int) -> float:
    with TestClient(app) as client:
        started = time.perf_counter()
        for _ in range(requests):
            client.get("/fast")
        return time.perf_counter() - started


def watched(run: Callable[[int], float], requests: int) -> float:
    interception = Interception()
    watch = Watch(threshold=0.1)
    interception.install()
    start(watch)
    try:
        return run(requests)
    finally:
        stop(watch)
        interception.uninstall()
        assert not watch.stalls, watch.stalls


def measure(run: Callable[[int], float], requests: int, rounds: int) -> tuple[float, float, float]:
    """Median ratio watched/plain, with the smallest and largest per-round ratios."""
    run(requests // 10)  # warm up imports, routing caches and the thread pool
    plain, watched_times = [], []
    for round_number in range(rounds):
        # Alternate the order so that drift on the machine hits both sides alike.
        if round_number % 2:
            watched_times.append(watched(run, requests))
            plain.append(run(requests))
        else:
            plain.append(run(requests))
            watched_times.append(watched(run, requests))
    ratios = [w / p for w, p in zip(watched_times, plain, strict=True)]
    return statistics.median(watched_times) / statistics.median(plain), min(ratios), max(ratios)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=25)
    args = parser.parse_args()
    print(f"{args.requests} fast requests, {args.rounds} paired rounds")
    print(f"{'client':<16} {'median ratio':>12} {'min':>7} {'max':>7}")
    for name, run in [
        ("ASGITransport", through_asgi_transport),
        ("TestClient", through_test_client),
    ]:
        ratio, low, high = measure(run, args.requests, args.rounds)
        print(f"{name:<16} {ratio:>12.3f} {low:>7.3f} {high:>7.3f}")
    shutdown()


if __name__ == "__main__":
    main()
