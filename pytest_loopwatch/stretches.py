"""Timing each synchronous stretch of app code between two awaits.

A coroutine runs on the loop only inside `send` or `throw`; everything between two of
those calls is the loop's, not the app's. Driving the app's coroutine ourselves and
timing those calls measures app code exactly, on any event loop (asyncio, uvloop,
trio), and never counts test code or other tasks.
"""

from __future__ import annotations

import threading
import time
import types
from collections import Counter
from collections.abc import Awaitable, Callable, Generator
from typing import Any, TypeAlias

# Captured at import so that a test patching `time.perf_counter` (freezegun,
# time-machine, monkeypatch) cannot skew or freeze the measurement.
clock = time.perf_counter

SampledStack: TypeAlias = tuple[tuple[str, int, str], ...]
"""Frames from the app's coroutine inwards, as (file, line, qualified function name)."""

running_stretches: dict[int, float] = {}
"""Thread id -> start of the stretch of app code that thread is running now."""

stretch_samples: dict[int, tuple[float, Counter[SampledStack]]] = {}
"""Thread id -> (start of the sampled stretch, how often each stack was seen in it)."""

LongStretchHandler: TypeAlias = Callable[[float, float, "Counter[SampledStack] | None"], None]
"""Called with (start, duration, samples) after a stretch longer than `long_after()`."""


class TimedCoroutine:
    """Awaitable that runs `awaitable` and reports each of its long stretches."""

    __slots__ = ("_awaitable", "_long_after", "_on_long_stretch")

    def __init__(
        self,
        awaitable: Awaitable[Any],
        long_after: Callable[[], float],
        on_long_stretch: LongStretchHandler,
    ) -> None:
        self._awaitable = awaitable
        self._long_after = long_after
        self._on_long_stretch = on_long_stretch

    def __await__(self) -> Generator[Any, Any, Any]:
        awaitable = self._awaitable
        steps: Any = (
            awaitable if isinstance(awaitable, types.CoroutineType) else awaitable.__await__()
        )
        thread = threading.get_ident()
        value: Any = None
        error: BaseException | None = None
        while True:
            start = clock()
            running_stretches[thread] = start
            try:
                yielded = steps.send(value) if error is None else steps.throw(error)
            except StopIteration as stop:
                self._finish(thread, start)
                return stop.value
            except BaseException:
                self._finish(thread, start)
                raise
            self._finish(thread, start)
            try:
                value = yield yielded
                error = None
            except GeneratorExit:
                steps.close()
                raise
            except BaseException as thrown:
                value = None
                error = thrown

    def _finish(self, thread: int, start: float) -> None:
        duration = clock() - start
        running_stretches.pop(thread, None)
        samples = None
        if stretch_samples:
            entry = stretch_samples.pop(thread, None)
            if entry is not None and entry[0] is start:
                samples = entry[1]
        if duration > self._long_after():
            self._on_long_stretch(start, duration, samples)


STRETCH_CODE = TimedCoroutine.__await__.__code__
"""The driver's frame marks where app code begins in a sampled stack."""
