"""A CPU-bound handler on a machine whose every core is taken: reported duration vs wall time.

The handler computes until its thread has had `--work` seconds of CPU, while twice as
many processes as cores spin. Its wall time stretches with the machine's load; the
duration loopwatch reports should stay near the work itself (Linux: the loop thread's
wait for a CPU and stolen time are taken off, counted from the stretch's start). A
handler of `--short` seconds of CPU, under the threshold, must not be reported at all,
however long the load makes it.

    python benchmarks/busy_machine.py [--work 0.3] [--short 0.06] [--runs 8]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time

import httpx
from fastapi import FastAPI

from pytest_loopwatch import Watch, wrap
from pytest_loopwatch._engine import Engine

engine = Engine(intercept=False)
"""Watches the apps wrapped with `wrap`; the clients are not intercepted."""

THRESHOLD = 0.1


def app_computing(seconds: float) -> FastAPI:
    app = FastAPI()

    @app.get("/cpu")
    async def cpu() -> None:
        until = time.thread_time() + seconds
        while time.thread_time() < until:
            pass

    return app


async def measure(app: FastAPI, runs: int) -> list[tuple[float, float]]:
    """(wall time, reported duration) of each request."""
    results = []
    transport = httpx.ASGITransport(app=wrap(app))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        for _ in range(runs):
            watch = Watch(threshold=THRESHOLD, strict=False)
            engine.begin(watch)
            try:
                started = time.perf_counter()
                await http.get("/cpu")
                wall = time.perf_counter() - started
            finally:
                engine.end(watch)
            results.append((wall, sum(stall.duration for stall in watch.stalls)))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--work", type=float, default=0.3, help="seconds of CPU the handler uses")
    parser.add_argument(
        "--short", type=float, default=0.06, help="seconds of CPU of a handler under the threshold"
    )
    parser.add_argument("--runs", type=int, default=8, help="requests")
    args = parser.parse_args()
    spinners = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"])
        for _ in range(2 * (os.cpu_count() or 1))
    ]
    try:
        time.sleep(0.5)  # every spinner running
        results = asyncio.run(measure(app_computing(args.work), args.runs))
        short = asyncio.run(measure(app_computing(args.short), args.runs))
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()
        engine.shutdown()
    print(
        f"{args.work * 1000:.0f} ms of work, {len(spinners)} spinning processes, "
        f"threshold {THRESHOLD * 1000:.0f} ms"
    )
    print(f"{'wall ms':>8} {'reported ms':>12}")
    for wall, duration in results:
        print(f"{wall * 1000:8.0f} {duration * 1000:12.0f}")
    walls = [wall for wall, _ in results]
    reported = [duration for _, duration in results]
    print(
        f"wall {min(walls) * 1000:.0f}-{max(walls) * 1000:.0f} ms, "
        f"reported {min(reported) * 1000:.0f}-{max(reported) * 1000:.0f} ms"
    )
    short_walls = [wall for wall, _ in short]
    print(
        f"{args.short * 1000:.0f} ms of work (wall {min(short_walls) * 1000:.0f}-"
        f"{max(short_walls) * 1000:.0f} ms): reported as a stall in "
        f"{sum(duration > 0 for _, duration in short)} of {len(short)} requests"
    )


if __name__ == "__main__":
    main()
