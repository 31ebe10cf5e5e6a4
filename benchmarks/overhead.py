"""Overhead on fast requests: plain, --loopwatch, its threshold alone, and asyncio debug mode.

One client per case; in each round a batch of requests runs once per side, in an order
that rotates from round to round. `loopwatch` is exactly what `--loopwatch` does for a
test (client classes patched, a watch active, the watchdog polling), switched on and off
around its batch (blocking calls caught, the default); `threshold only` is
`--loopwatch-threshold-only`; `asyncio debug` is the loop's own
debug mode, what pytest-asyncio's `--asyncio-debug` turns on. Batches in one process
cancel the drift of a shared machine, and many short batches outvote its hiccups; each
batch starts after a full garbage collection, so that none pays for another's garbage.
Each figure is the median over the rounds of a side's batch time divided by plain's in
the same round (paired: a round's sides ran within a second of each other), with the
smallest and largest of those ratios. Asyncio debug mode gets rounds of its own, against
a plain of its own: its batches, three to thirty-five times longer, leave the machine
otherwise than they found it (among the others', they raised the TestClient figure of
loopwatch from 1.025 to 1.046).

    python benchmarks/overhead.py [--requests 200] [--rounds 60] [--plot docs/overhead.png]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager

import httpx
from fastapi import FastAPI
from fastapi.testclient import TestClient

from pytest_loopwatch import Watch
from pytest_loopwatch._engine import Engine

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


SIDES = ("plain", "loopwatch", "threshold only", "asyncio debug")
ROUNDS_OF = (("plain", "loopwatch", "threshold only"), ("plain", "asyncio debug"))
"""The sides measured in the same rounds."""


engine = Engine()
"""The session's engine, as `--loopwatch` makes it."""


@contextmanager
def watching(strict: bool) -> Iterator[None]:
    """What --loopwatch (or with --loopwatch-threshold-only) does around one test."""
    watch = Watch(threshold=0.1, strict=strict)
    engine.begin(watch)
    try:
        yield
    finally:
        engine.end(watch)
    assert not watch.stalls, watch.stalls


@contextmanager
def not_watching() -> Iterator[None]:
    """What a test that is not watched gets: the client classes and calls as they are."""
    engine.rest()
    yield


def side_context(side: str) -> AbstractContextManager[None]:
    if side == "loopwatch":
        return watching(strict=True)
    if side == "threshold only":
        return watching(strict=False)
    return not_watching()


def rounds_of_sides(sides: tuple[str, ...], rounds: int) -> Iterator[str]:
    for number in range(rounds):
        shift = number % len(sides)
        yield from sides[shift:] + sides[:shift]


def summary(times: dict[str, list[float]]) -> dict[str, tuple[float, float, float]]:
    """Per side but plain: (median, smallest and largest ratio to plain within a round)."""
    ratios = {
        side: [t / p for t, p in zip(side_times, times["plain"], strict=True)]
        for side, side_times in times.items()
        if side != "plain"
    }
    return {side: (statistics.median(r), min(r), max(r)) for side, r in ratios.items()}


def through_asgi_transport(
    path: str, requests: int, rounds: int, sides: tuple[str, ...]
) -> dict[str, list[float]]:
    async def run() -> dict[str, list[float]]:
        times: dict[str, list[float]] = {side: [] for side in sides}
        loop = asyncio.get_running_loop()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            for _ in range(max(requests // 10, 1)):  # warm-up
                await http.get(path)
            for side in rounds_of_sides(sides, rounds):
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


def through_test_client(
    path: str, requests: int, rounds: int, sides: tuple[str, ...]
) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {side: [] for side in sides}
    with ExitStack() as clients:
        http = clients.enter_context(TestClient(app))
        # The portal's loop takes debug mode when it starts: a client of its own for that side.
        client_of = {
            side: clients.enter_context(TestClient(app, backend_options={"debug": True}))
            if side == "asyncio debug"
            else http
            for side in sides
        }
        for client in {http, *client_of.values()}:
            for _ in range(max(requests // 10, 1)):
                client.get(path)
        for side in rounds_of_sides(sides, rounds):
            client = client_of[side]
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
    axes.set_title("Overhead on fast requests (median ratio to plain in a round; bars: min-max)")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--requests", type=int, default=200, help="requests in a batch")
    parser.add_argument("--rounds", type=int, default=60, help="rounds of batches per case")
    parser.add_argument("--plot", default=None, help="write a PNG plot here")
    args = parser.parse_args()
    Run = Callable[[str, int, int, tuple[str, ...]], dict[str, list[float]]]
    cases: list[tuple[str, Run, str, int]] = [
        ("ASGITransport", through_asgi_transport, "/fast", args.requests),
        ("TestClient", through_test_client, "/fast", args.requests),
        # A tenth of the requests, each spawning 100 tasks that each await once.
        ("ASGITransport, 100 tasks", through_asgi_transport, "/spawn", args.requests // 10),
    ]
    print(f"batches of {args.requests} requests, {args.rounds} rounds; median of time / plain time")
    print(f"{'case':<26}{'plain µs':>10}" + "".join(f"{side:>26}" for side in SIDES[1:]))
    results = []
    for name, run, path, requests in cases:
        figures: dict[str, tuple[float, float, float]] = {}
        plain_batches: list[float] = []
        for sides in ROUNDS_OF:
            times = run(path, requests, args.rounds, sides)
            figures.update(summary(times))
            plain_batches.extend(times["plain"])
        results.append((name, figures))
        plain_per_request = statistics.median(plain_batches) / requests * 1e6
        cells = "".join(
            f"{f'{ratio:.3f} ({low:.2f}-{high:.2f})':>26}"
            for ratio, low, high in (figures[side] for side in SIDES[1:])
        )
        print(f"{name:<26}{plain_per_request:>10.1f}{cells}")
    if args.plot:
        plot(args.plot, results)
        print(f"plot: {args.plot}")
    engine.shutdown()


if __name__ == "__main__":
    main()
