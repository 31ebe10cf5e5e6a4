"""Accuracy: reported against true stall durations, which thresholds catch which stalls, how
soon after a stall starts the watchdog takes its first stack sample, and how often a C call
that holds the GIL (json.loads of a large document) gets its blocking line: on the loop,
alone and while other threads compute, and in a thread while the loop waits for it (on
asyncio and on trio).

An ASGI app blocks for a set time, by sleeping or by computing, and measures itself how
long it blocked: that is the true duration. loopwatch watches it as `--loopwatch` does.

    python benchmarks/accuracy.py [--repeats 5] [--plot docs/accuracy.png] [--gil-only]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx

import pytest_loopwatch._watchdog as watchdog_module
from pytest_loopwatch import Stall, Watch, wrap
from pytest_loopwatch._engine import Engine

engine = Engine(intercept=False)
"""Watches the apps wrapped with `wrap`; the clients are not intercepted."""

STALLS_MS = (2, 5, 10, 20, 50, 100, 300, 1000)
THRESHOLDS_MS = (1, 2, 5, 10, 20, 50, 100, 200, 500)
LATENCY_THRESHOLDS_MS = (20, 50, 100, 200)


def spin(seconds: float) -> None:
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        pass


BLOCKS: dict[str, Callable[[float], None]] = {"sleep": time.sleep, "cpu": spin}


class BlockingApp:
    """Blocks for `seconds` on each request; remembers when each block began and ended."""

    def __init__(self, block: Callable[[float], None], seconds: float) -> None:
        self.block = block
        self.seconds = seconds
        self.started = 0.0
        self.true_duration = 0.0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        self.started = time.perf_counter()
        self.block(self.seconds)
        self.true_duration = time.perf_counter() - self.started
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})


@contextmanager
def first_samples() -> Iterator[list[float]]:
    """The times at which the watchdog took stack samples, while the block is active."""
    taken: list[float] = []
    original = watchdog_module.sample_stack

    def recording(frame: Any) -> Any:
        taken.append(time.perf_counter())
        return original(frame)

    watchdog_module.sample_stack = recording
    try:
        yield taken
    finally:
        watchdog_module.sample_stack = original


def watched_request(app: Any, threshold: float, on_trio: bool = False) -> tuple[Stall, ...]:
    """One request to `app`, watched as `--loopwatch-threshold-only` watches a test (timing
    alone: a sleep is also a blocking call), on asyncio or trio; the stalls it made."""
    watch = Watch(threshold, strict=False)

    async def request() -> None:
        transport = httpx.ASGITransport(app=wrap(app))
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            await client.get("/")

    engine.begin(watch)
    try:
        if on_trio:
            import trio

            trio.run(request)
        else:
            asyncio.run(request())
    finally:
        engine.end(watch)
    return watch.stalls


def run_once(kind: str, stall: float, threshold: float) -> tuple[float, float | None, float | None]:
    """(true duration, reported duration or None, first sample after the start or None)."""
    app = BlockingApp(BLOCKS[kind], stall)
    with first_samples() as taken:
        stalls = watched_request(app, threshold)
    reported = stalls[0].duration if stalls else None
    after_start = [moment - app.started for moment in taken if moment >= app.started]
    return app.true_duration, reported, (min(after_start) if after_start else None)


def accuracy(repeats: int) -> list[tuple[str, int, float, float]]:
    """Per kind and stall: median and worst absolute error of the reported duration, in ms."""
    rows = []
    for kind in BLOCKS:
        for stall_ms in STALLS_MS:
            errors = []
            for _ in range(repeats):
                true, reported, _ = run_once(kind, stall_ms / 1000, stall_ms / 2000)
                assert reported is not None, (kind, stall_ms)
                errors.append(abs(reported - true) * 1000)
            rows.append((kind, stall_ms, statistics.median(errors), max(errors)))
    return rows


def caught(kind: str) -> dict[int, int | None]:
    """Per threshold: the smallest injected stall it caught."""
    smallest: dict[int, int | None] = {}
    for threshold_ms in THRESHOLDS_MS:
        found = [
            stall_ms
            for stall_ms in STALLS_MS
            if stall_ms <= 300 and run_once(kind, stall_ms / 1000, threshold_ms / 1000)[1]
        ]
        smallest[threshold_ms] = min(found) if found else None
    return smallest


def latency(repeats: int) -> list[tuple[str, int, float, float]]:
    """Per kind and threshold: median and worst delay to the first sample, in ms."""
    rows = []
    for kind in BLOCKS:
        for threshold_ms in LATENCY_THRESHOLDS_MS:
            delays = []
            for _ in range(repeats):
                _, _, first = run_once(kind, 2 * threshold_ms / 1000, threshold_ms / 1000)
                assert first is not None, (kind, threshold_ms)
                delays.append(first * 1000)
            rows.append((kind, threshold_ms, statistics.median(delays), max(delays)))
    return rows


def document_taking(seconds: float) -> str:
    """A JSON document json.loads takes at least `seconds` of CPU time to parse here."""
    items = 100_000
    while True:
        document = "[" + "1.5," * items + "1]"
        started = time.thread_time()
        json.loads(document)
        if time.thread_time() - started >= seconds:
            return document
        items *= 2


def compute_until(stopped: threading.Event) -> None:
    while not stopped.is_set():
        sum(range(1000))


async def parse_in_a_new_thread(scope: Any, receive: Any, send: Any) -> None:
    """The loop's first `to_thread` starts a thread, which takes the GIL at once."""
    await asyncio.to_thread(json.loads, DOCUMENT[0])
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b""})


def parse_document() -> int:
    return len(json.loads(DOCUMENT[0]))


async def parse_in_a_running_thread(scope: Any, receive: Any, send: Any) -> None:
    """As a `def` endpoint's worker: the thread runs already when it takes the GIL, and the
    loop idles meanwhile, with no stretch of app code to time."""
    await asyncio.to_thread(int)  # starts the loop's worker thread
    await asyncio.to_thread(parse_document)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b""})


async def parse_in_a_running_thread_on_trio(scope: Any, receive: Any, send: Any) -> None:
    """The same on trio, through anyio as Starlette's `def` endpoints."""
    import anyio.to_thread

    await anyio.to_thread.run_sync(int)
    await anyio.to_thread.run_sync(parse_document)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b""})


DOCUMENT = [""]
"""The document `gil_located` parses, made once."""


def gil_located(repeats: int) -> list[tuple[str, int, int, int]]:
    """Per case (on the loop beside 0, 1, 3 computing threads; in a new thread; in a
    running thread, on asyncio and trio): (case, stalls, reported, located)."""
    DOCUMENT[0] = document_taking(0.3)
    cases: list[tuple[str, Any, int, bool]] = [
        (
            "on the loop, alone" if not threads else f"beside {threads} computing thread(s)",
            BlockingApp(lambda _: json.loads(DOCUMENT[0]), 0.3),
            threads,
            False,
        )
        for threads in (0, 1, 3)
    ]
    cases.append(("in a new thread (to_thread)", parse_in_a_new_thread, 0, False))
    cases.append(("in a running thread (to_thread)", parse_in_a_running_thread, 0, False))
    cases.append(("the same on trio", parse_in_a_running_thread_on_trio, 0, True))
    rows = []
    for case, app, threads, on_trio in cases:
        reported = located = 0
        stopped = threading.Event()
        computing = [
            threading.Thread(target=compute_until, args=(stopped,)) for _ in range(threads)
        ]
        for thread in computing:
            thread.start()
        try:
            for _ in range(repeats):
                stalls = watched_request(app, 0.1, on_trio)
                reported += bool(stalls)
                # At a line of this file: the call, or the await that handed it on.
                located += bool(stalls) and _located_here(stalls[0])
        finally:
            stopped.set()
            for thread in computing:
                thread.join()
        rows.append((case, repeats, reported, located))
    return rows


def _located_here(stall: Stall) -> bool:
    """Whether the report names a line of this file: where it blocked, or reached from."""
    return any(
        frame is not None and frame.file == __file__
        for frame in (stall.location, stall.reached_from)
    )


def plot(
    path: str,
    errors: list[tuple[str, int, float, float]],
    delays: list[tuple[str, int, float, float]],
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for kind, marker in (("sleep", "o"), ("cpu", "s")):
        stalls = [stall for k, stall, _, _ in errors if k == kind]
        worst = [high for k, _, _, high in errors if k == kind]
        left.plot(stalls, worst, marker=marker, label=f"{kind}: worst error")
    left.plot(STALLS_MS, [max(1.0, 0.02 * s) for s in STALLS_MS], "k--", label="goal: 1 ms or 2%")
    left.set(
        xscale="log", yscale="log", xlabel="injected stall (ms)", ylabel="|reported - true| (ms)"
    )
    left.set_title("Duration error")
    left.legend()
    for kind, marker in (("sleep", "o"), ("cpu", "s")):
        thresholds = [t for k, t, _, _ in delays if k == kind]
        worst = [high for k, _, _, high in delays if k == kind]
        right.plot(thresholds, worst, marker=marker, label=f"{kind}: worst delay")
    right.plot(
        LATENCY_THRESHOLDS_MS,
        [t / 2 + 10 for t in LATENCY_THRESHOLDS_MS],
        "k--",
        label="goal: T/2 + 10 ms",
    )
    right.set(xlabel="threshold T (ms)", ylabel="first stack sample after stall start (ms)")
    right.set_title("Sampling latency")
    right.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def print_gil_located(repeats: int) -> None:
    print("GIL-holding C call (json.loads, 300 ms): stalls reported and located")
    print(f"{'case':<32} {'stalls':>6} {'reported':>8} {'located':>8}")
    for case, total, reported, located in gil_located(repeats):
        print(f"{case:<32} {total:>6} {reported:>8} {located:>8}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="runs per cell")
    parser.add_argument("--plot", default=None, help="write a PNG plot here")
    parser.add_argument("--gil-only", action="store_true", help="only the GIL-holding call")
    args = parser.parse_args()
    if args.gil_only:
        print_gil_located(max(args.repeats, 10))
        engine.shutdown()
        return

    errors = accuracy(args.repeats)
    print("duration error: |reported - true|, ms (threshold half the stall)")
    print(f"{'kind':<6} {'stall ms':>8} {'median':>8} {'worst':>8} {'goal':>8}")
    for kind, stall_ms, median, worst in errors:
        goal = max(1.0, 0.02 * stall_ms)
        print(f"{kind:<6} {stall_ms:>8} {median:>8.3f} {worst:>8.3f} {goal:>8.1f}")

    print("\nsmallest injected stall caught, per threshold (ms)")
    print(f"{'threshold':>9} " + " ".join(f"{kind:>6}" for kind in BLOCKS))
    smallest = {kind: caught(kind) for kind in BLOCKS}
    for threshold_ms in THRESHOLDS_MS:
        cells = " ".join(f"{smallest[kind][threshold_ms] or '-'!s:>6}" for kind in BLOCKS)
        print(f"{threshold_ms:>9} {cells}")

    delays = latency(args.repeats)
    print("\nfirst stack sample after the stall starts, ms (stall twice the threshold)")
    print(f"{'kind':<6} {'threshold':>9} {'median':>8} {'worst':>8} {'goal':>8}")
    for kind, threshold_ms, median, worst in delays:
        goal = threshold_ms / 2 + 10
        print(f"{kind:<6} {threshold_ms:>9} {median:>8.1f} {worst:>8.1f} {goal:>8.1f}")

    print()
    print_gil_located(max(args.repeats, 10))

    if args.plot:
        plot(args.plot, errors, delays)
        print(f"\nplot: {args.plot}")
    engine.shutdown()


if __name__ == "__main__":
    main()
