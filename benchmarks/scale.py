"""Scale: what watching costs per request as a request spawns more tasks or schedules more
callbacks (`loop.call_soon`), and as more requests are in flight at once (1 to 1,000). The
cost should not grow faster than the work; the extra microseconds per spawned task and per
callback are printed at the end.

Each cell times the same work plain and watched, alternating, and prints microseconds per
request both ways and their ratio (median of the rounds).

    python benchmarks/scale.py [--rounds 7] [--plot docs/scale.png]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

import httpx

from pytest_loopwatch import Watch, wrap
from pytest_loopwatch._engine import Engine

engine = Engine(intercept=False)
"""Watches the apps wrapped with `wrap`; the clients are not intercepted."""

COUNTS = (1, 10, 100, 1000)


async def child() -> None:
    await asyncio.sleep(0)


def callback(pending: list[int], done: asyncio.Future[None]) -> None:
    pending[0] -= 1
    if not pending[0]:
        done.set_result(None)


async def app(scope: Any, receive: Any, send: Any) -> None:
    """Spawns the tasks (`t=N`), each awaiting once, or schedules the callbacks (`c=N`)
    its query string says."""
    if scope["type"] != "http":
        return
    kind, _, number = scope["query_string"].decode().partition("=")
    count = int(number or 0)
    if kind == "t" and count:
        await asyncio.gather(*(asyncio.create_task(child()) for _ in range(count)))
    if kind == "c" and count:
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        pending = [count]
        for _ in range(count):
            loop.call_soon(callback, pending, done)
        await done
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


async def batch(client: httpx.AsyncClient, work: str, concurrent: int, requests: int) -> float:
    """Seconds per request for `requests` requests, `concurrent` at a time."""
    started = time.perf_counter()
    for _ in range(max(requests // concurrent, 1)):
        await asyncio.gather(*(client.get(f"/?{work}") for _ in range(concurrent)))
    return (time.perf_counter() - started) / (max(requests // concurrent, 1) * concurrent)


def cell(tasks: int, concurrent: int, rounds: int, kind: str = "t") -> tuple[float, float, float]:
    """(µs per request plain, µs per request watched, median ratio)."""
    requests = max(2000 // max(tasks, 1), concurrent, 20)
    work = f"{kind}={tasks}"

    async def run() -> tuple[list[float], list[float]]:
        plain: list[float] = []
        watched: list[float] = []
        transport = httpx.ASGITransport(app=wrap(app))
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            await batch(client, work, concurrent, requests)  # warm-up
            for round_number in range(rounds):
                for side in ("plain", "watched") if round_number % 2 else ("watched", "plain"):
                    if side == "plain":
                        plain.append(await batch(client, work, concurrent, requests))
                        continue
                    watch = Watch(threshold=0.1)
                    engine.begin(watch)
                    try:
                        watched.append(await batch(client, work, concurrent, requests))
                    finally:
                        engine.end(watch)
        return plain, watched

    plain, watched = asyncio.run(run())
    ratios = [w / p for w, p in zip(watched, plain, strict=True)]
    return (
        statistics.median(plain) * 1e6,
        statistics.median(watched) * 1e6,
        statistics.median(ratios),
    )


def plot(
    path: str,
    by_tasks: list[tuple[int, float, float, float]],
    by_requests: list[tuple[int, float, float, float]],
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for axes, rows, label in (
        (left, by_tasks, "tasks spawned per request"),
        (right, by_requests, "requests in flight at once"),
    ):
        counts = [row[0] for row in rows]
        axes.plot(
            counts,
            [row[1] / max(row[0], 1) if axes is left else row[1] for row in rows],
            "o-",
            label="plain",
        )
        axes.plot(
            counts,
            [row[2] / max(row[0], 1) if axes is left else row[2] for row in rows],
            "s-",
            label="watched",
        )
        axes.set(xscale="log", xlabel=label)
        axes.legend()
    left.set(ylabel="µs per spawned task")
    left.set_title("Cost per task as requests spawn more")
    right.set(ylabel="µs per request")
    right.set_title("Cost per request as more run at once")
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7, help="alternating rounds per cell")
    parser.add_argument("--plot", default=None, help="write a PNG plot here")
    args = parser.parse_args()
    by_tasks = [(count, *cell(count, 1, args.rounds)) for count in COUNTS]
    by_callbacks = [(count, *cell(count, 1, args.rounds, "c")) for count in COUNTS]
    by_requests = [(count, *cell(0, count, args.rounds)) for count in COUNTS]
    for title, rows in (
        ("tasks spawned per request", by_tasks),
        ("callbacks per request", by_callbacks),
        ("requests in flight", by_requests),
    ):
        print(f"{title:<26} {'plain µs':>10} {'watched µs':>11} {'ratio':>7}")
        for count, plain, watched, ratio in rows:
            print(f"{count:<26} {plain:>10.1f} {watched:>11.1f} {ratio:>7.3f}")
        print()
    for what, rows in (("spawned task", by_tasks), ("callback", by_callbacks)):
        count, plain, watched, _ = rows[-1]
        print(f"watching costs {(watched - plain) / count:.2f} µs per {what} (at {count})")
    if args.plot:
        plot(args.plot, by_tasks, by_requests)
        print(f"plot: {args.plot}")
    engine.shutdown()


if __name__ == "__main__":
    main()
