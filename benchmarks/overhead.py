"""Overhead on fast requests: plain, --loopwatch, --loopwatch-strict and asyncio debug mode.

One client per case; in each round a batch of requests runs once per side, in an order
that rotates from round to round. `loopwatch` is exactly what `--loopwatch` does for a
test (client classes patched, a watch active, the watchdog polling), switched on and off
around its batch; `strict` adds `--loopwatch-strict`; `asyncio debug` is the loop's own
debug mode, what pytest-asyncio's `--asyncio-debug` turns on. Batches in one process
cancel the drift of a shared machine, and many short batches outvote its hiccups; each
batch starts after a full garbage collection, so that none pays for another's garbage.
Each figure is the ratio of the side's median batch time to plain's, with the smallest and
largest ratio within a round.

    python benchmarks/overhead.py [--requests 200] [--rounds 40] [--plot docs/overhead.png]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext

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


SIDES = ("plain", "loopwatch", "strict", "asyncio debug")


@contextmanager
def watching(strict: bool) -> Iterator[None]:
    """What --loopwatch (and --loopwatch-strict) does around one test."""
    interception = Interception()
    watch = Watch(threshold=0.1, strict=strict)
    interception.install()
    start(watch)
    try:
        yield
    finally:
        stop(watch)
        interception.uninstall()
    assert not watch.stalls, watch.stalls


def side_context(side: str) -> AbstractContextManager[None]:
    if side == "loopwatch":
        return watching(strict=False)
    if side == "strict":
        return watching(strict=True)
    return nullcontext()


def rounds_of_sides(rounds: int) -> Iterator[str]:
    for number in range(rounds):
        shift = number % len(SIDES)
        yield from SIDES[shift:] + SIDES[:shift]


def summary(times: dict[str, list[float]]) -> dict[str, tuple[float, float, float]]:
    """Per side but plain: (ratio of medians, smallest and largest ratio within a round)."""
    plain = times["plain"]
    result = {}
    for side in SIDES[1:]:
        ratios = [t / p for t, p in zip(times[side], plain, strict=True)]
        result[side] = (
            statistics.median(times[side]) / statistics.median(plain),
            min(ratios),
            max(ratios),
        )
    return result


def through_asgi_transport(path: str, requests: int, rounds: int) -> dict[str, list[float]]:
    async def run() -> dict[str, list[float]]:
        times: dict[str, list[float]] = {side: [] for side in SIDES}
        loop = asyncio.get_running_loop()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            for _ in range(max(requests // 10, 1)):  # warm-up
                await http.get(path)
            for side in rounds_of_sides(rounds):
                loop.set_debug(side == "asyncio debug")
                gc.collect()
                with side_context(side):
                    started = time.perf_counter()
                    for _ in range(requests):
                        await http.get(path)
                    times[side].append(time.perf_counter() - started)
                loop.set_debug(False)
        return times

    return asyncio.run(run())


def through_test_client(path: str, requests: int, rounds: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {side: [] for side in SIDES}
    # The portal's loop takes debug mode when it starts: a client of its own for that side.
    with TestClient(app) as http, TestClient(app, backend_options={"debug": True}) as debug:
        for client in (http, debug):
            for _ in range(max(requests // 10, 1)):
                client.get(path)
        for side in rounds_of_sides(rounds):
            client = debug if side == "asyncio debug" else http
            gc.collect()
            with side_context(side):
                started = time.perf_counter()
                for _ in range(requests):
                    client.get(path)
                times[side].append(time.perf_counter() - started)
    return times


def plot(path: str, results: list[tuple[str, dict[str, tuple[float, float, float]]]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(10, 4.2))
    width = 0.8 / (len(SIDES) - 1)
    for index, side in enumerate(SIDES[1:]):
        centres = [number + (index - 1) * width for number in range(len(results))]
        ratios = [figures[side][0] for _, figures in results]
        low = [figures[side][0] - figures[side][1] for _, figures in results]
        high = [figures[side][2] - figures[side][0] for _, figures in results]
        axes.bar(centres, ratios, width, yerr=[low, high], capsize=3, label=side)
    axes.axhline(1.0, color="black", linewidth=0.8)
    axes.axhline(1.03, color="grey", linestyle="--", linewidth=0.8, label="goal: 1.03")
    axes.set_xticks(range(len(results)), [name for name, _ in results])
    # asyncio debug costs tens of times plain where requests spawn tasks: a log scale keeps
    # the few percent of the other sides readable beside it.
    axes.set_yscale("log")
    axes.set_ylim(bottom=0.8)
    axes.set_ylabel("time / plain time (log scale)")
    axes.set_title("Overhead on fast requests (median of the rounds; bars: min-max)")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--requests", type=int, default=200, help="requests in a batch")
    parser.add_argument("--rounds", type=int, default=40, help="rounds of batches per case")
    parser.add_argument("--plot", default=None, help="write a PNG plot here")
    args = parser.parse_args()
    cases: list[tuple[str, Callable[[str, int, int], dict[str, list[float]]], str, int]] = [
        ("ASGITransport", through_asgi_transport, "/fast", args.requests),
        ("TestClient", through_test_client, "/fast", args.requests),
        # A tenth of the requests, each spawning 100 tasks that each await once.
        ("ASGITransport, 100 tasks", through_asgi_transport, "/spawn", args.requests // 10),
    ]
    print(f"batches of {args.requests} requests, {args.rounds} rounds; time / plain time")
    print(f"{'case':<26}" + "".join(f"{side:>26}" for side in SIDES[1:]))
    results = []
    for name, run, path, requests in cases:
        figures = summary(run(path, requests, args.rounds))
        results.append((name, figures))
        cells = "".join(
            f"{f'{ratio:.3f} ({low:.2f}-{high:.2f})':>26}"
            for ratio, low, high in (figures[side] for side in SIDES[1:])
        )
        print(f"{name:<26}{cells}")
    if args.plot:
        plot(args.plot, results)
        print(f"plot: {args.plot}")
    shutdown()


if __name__ == "__main__":
    main()
