"""Handlers of every kind, each blocking twin beside the same work off the loop; copied into
the pytester sessions as `app.py`."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import gc
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from weakref import WeakSet

import anyio.to_thread
from fastapi import Depends, FastAPI
from starlette.concurrency import run_in_threadpool

STALL = 0.3
"""Seconds each blocking handler holds the loop: three times the default threshold."""

JSON_ITEMS = "LOOPWATCH_TEST_JSON_ITEMS"
"""The environment variable with the size of a document that takes json.loads STALL
seconds here: measured once per test session (`tests/conftest.py`), not in each of the
sessions that import this app."""

app = FastAPI()


def json_items_taking(seconds: float = STALL) -> int:
    """How many items a JSON list needs for json.loads to take `seconds` on this machine."""
    size = 200_000
    while True:
        # This thread's CPU time: measured on a busy machine, wall time would make the
        # document too small to stall once the machine is idle again.
        start = time.thread_time()
        json.loads(document_of(size))
        if time.thread_time() - start >= seconds:
            return size
        size *= 2


def document_of(items: int) -> str:
    return "[" + "1.5," * items + "1]"


DOCUMENT = document_of(int(os.environ.get(JSON_ITEMS) or json_items_taking()))


def spin() -> None:
    # STALL seconds of this thread's CPU, however busy the machine is.
    deadline = time.thread_time() + STALL
    while time.thread_time() < deadline:  # CPU
        pass


def sleep_dependency() -> None:
    time.sleep(STALL)  # DEF-DEPENDENCY


async def blocking_dependency() -> None:
    time.sleep(STALL)  # ASYNC-DEPENDENCY


@app.get("/sleep")
async def sleep() -> None:
    time.sleep(STALL)  # SLEEP


@app.get("/cpu")  # CPU-ENDPOINT
async def cpu() -> None:
    spin()


@app.get("/http")
async def http(url: str) -> None:
    urllib.request.urlopen(url).read()  # HTTP


SLEEPER = [sys.executable, "-c", f"import time; time.sleep({STALL})"]


@app.get("/subprocess")
async def run_subprocess() -> None:
    subprocess.run(SLEEPER, check=True)  # SUBPROCESS


@app.get("/dependency")
async def dependency(_: None = Depends(blocking_dependency)) -> str:
    return "ok"


@app.get("/json")
async def parse_json() -> int:
    return len(json.loads(DOCUMENT))  # JSON


@app.get("/sync/sleep")
def sync_sleep() -> None:
    time.sleep(STALL)


@app.get("/sync/cpu")
def sync_cpu() -> None:
    spin()


@app.get("/sync/http")
def sync_http(url: str) -> None:
    urllib.request.urlopen(url).read()


@app.get("/sync/subprocess")
def sync_subprocess() -> None:
    subprocess.run(SLEEPER, check=True)


@app.get("/sync/dependency")
async def sync_dependency(_: None = Depends(sleep_dependency)) -> str:
    return "ok"


@app.get("/sync/fast")
def sync_fast() -> str:
    return "ok"


class _Node:
    __slots__ = ("__weakref__", "other")
    other: _Node


@app.get("/sync/collect")
def sync_collect() -> None:
    # A collection of garbage that weak sets hold (a library's caches, let go of): it
    # calls back into Python for each member, letting the loop thread run before it ends.
    # 500,000 pairs: 0.4 s, 0.1 GB, as a thread other than the loop's runs it.
    gc.disable()
    members: WeakSet[_Node] = WeakSet()
    for _ in range(500_000):
        one, two = _Node(), _Node()
        one.other, two.other = two, one
        members.add(one)
    gc.enable()
    gc.collect()


@app.get("/sync/json")
def sync_json() -> int:
    # Off the loop, yet its C call keeps the GIL, which the loop thread waits for.
    return len(json.loads(DOCUMENT))  # WORKER-JSON


@app.get("/await/sleep")
async def await_sleep() -> None:
    await asyncio.sleep(STALL)


@app.get("/await/threadpool")
async def await_threadpool() -> None:
    await run_in_threadpool(time.sleep, STALL)


@app.get("/await/to-thread")
async def await_to_thread() -> None:
    await anyio.to_thread.run_sync(spin)


def in_a_new_thread(function: Callable[..., Any], *args: Any) -> Awaitable[Any]:
    """`function(*args)` in a thread started for it, whatever threads the loop has already,
    in a copy of the request's context, as `asyncio.to_thread` runs it."""
    executor = ThreadPoolExecutor(max_workers=1)
    call = functools.partial(contextvars.copy_context().run, function, *args)
    try:
        return asyncio.get_running_loop().run_in_executor(executor, call)
    finally:
        executor.shutdown(wait=False)


@app.get("/await/new-thread/json")
async def await_new_thread_json() -> int:
    # A new thread that holds the GIL at once: the loop thread, waiting for it to start,
    # cannot get the GIL back until json.loads returns.
    return len(await in_a_new_thread(json.loads, DOCUMENT))  # NEW-THREAD-JSON


@app.get("/await/new-thread/spin")
async def await_new_thread_spin() -> None:
    await in_a_new_thread(spin)


@app.get("/fast")
async def fast() -> str:
    return "ok"
