"""Overhead of --loopwatch on fast requests, as paired runs of plain and watched batches.

One client per case; batches of requests alternate between plain and watched, where
watched is exactly what `--loopwatch` does for a test (client classes patched, a watch
active, the watchdog polling), switched on and off around each batch. Alternating
batches in one process cancels the drift of a shared machine; the figure is the ratio
of the median batch times, with the smallest and largest ratio of a pair.

    python benchmarks/overhead.py [--requests 2000] [--rounds 15] [--strict]

With --strict, the watched side is what `--loopwatch --loopwatch-strict` does.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractContextManager, asynccontextmanager, contextmanager

import httpx
from fastapi import FastAPI
from fastapi.testclient import TestClient

from pytest_loopwatch.interception import Interception
from pytest_loopwatch.watch import Watch, shutdown, start, stop

app = FastAPI()


@app.get("/fast")
async def fast() -> dict[str, bool]:
    return {"ok": True}


async def child() -> None:
    await asyncio.sleep(0)


@app.get("/spawn")
async def spawn() -> dict[str, bool]:
    await asyncio.gather(*(asyncio.create_task(child()) for _ in range(100)))
    return {"ok": True}


STRICT = False


@contextmanager
def watching() -> Iterator[None]:
    """What --loopwatch (with STRICT, --loopwatch --loopwatch-strict) does around one test."""
    interception = Interception()
    watch = Watch(threshold=0.1, strict=STRICT)
    interception.install()
    start(watch)
    try:
        yield
    finally:
        stop(watch)
        interception.uninstall()
    assert not watch.stalls, watch.stalls


class Pairs:
    """Batch times of both sides, alternating which side goes first."""

    def __init__(self) -> None:
        self.plain: list[float] = []
        self.watched: list[float] = []

    def batches(self, rounds: int) -> Iterator[tuple[list[float], AbstractContextManager[None]]]:
        for round_number in range(rounds):
            sides = [(self.plain, _nothing()), (self.watched, watching())]
            yield from sides if round_number % 2 else reversed(sides)

    def summary(self) -> tuple[float, float, float]:
        ratios = [w / p for w, p in zip(self.watched, self.plain, strict=True)]
        ratio = statistics.median(self.watched) / statistics.median(self.plain)
        return ratio, min(ratios), max(ratios)


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def through_asgi_transport(path: str, requests: int, rounds: int) -> Pairs:
    @asynccontextmanager
    async def client() -> AsyncIterator[httpx.AsyncClient]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client

    async def run() -> Pairs:
        pairs = Pairs()
        async with client() as http:
            for _ in range(max(requests // 10, 1)):  # warm-up
                await http.get(path)
            for times, side in pairs.batches(rounds):
                with side:
                    started = time.perf_counter()
                    for _ in range(requests):
                        await http.get(path)
                    times.append(time.perf_counter() - started)
        return pairs

    return asyncio.run(run())


def through_test_client(path: str, requests: int, rounds: int) -> Pairs:
    pairs = Pairs()
    with TestClient(app) as http:
        for _ in range(max(requests // 10, 1)):
            http.get(path)
        for times, side in pairs.batches(rounds):
            with side:
                started = time.perf_counter()
                for _ in range(requests):
                    http.get(path)
                times.append(time.perf_counter() - started)
    return pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests in a batch")
    parser.add_argument("--rounds", type=int, default=15, help="paired batches per case")
    parser.add_argument("--strict", action="store_true", help="watch in strict mode")
    args = parser.parse_args()
    global STRICT
    STRICT = args.strict
    cases: list[tuple[str, Callable[[str, int, int], Pairs], str, int]] = [
        ("ASGITransport", through_asgi_transport, "/fast", args.requests),
        ("TestClient", through_test_client, "/fast", args.requests),
        # A tenth of the requests, each spawning 100 tasks that each await once.
        (
            "ASGITransport, 100 tasks a request",
            through_asgi_transport,
            "/spawn",
            args.requests // 10,
        ),
    ]
    mode = "strict" if STRICT else "watched"
    print(f"batches of {args.requests} requests, {args.rounds} pairs ({mode} / plain)")
    print(f"{'case':<36} {'median ratio':>12} {'min':>7} {'max':>7}")
    for name, run, path, requests in cases:
        ratio, low, high = run(path, requests, args.rounds).summary()
        print(f"{name:<36} {ratio:>12.3f} {low:>7.3f} {high:>7.3f}")
    shutdown()


if __name__ == "__main__":
    main()
