"""Timing each synchronous stretch of app code between two awaits.

A coroutine runs on the loop only inside `send` or `throw`; everything between two of
those calls is the loop's, not the app's. Driving the app's coroutine ourselves and
timing those calls measures app code exactly, on any event loop (asyncio, uvloop,
trio), and never counts test code or other tasks.
"""

from __future__ import annotations

import gc
import threading
import time
import types
from collections import Counter
from collections.abc import Awaitable, Callable, Generator
from contextvars import ContextVar
from types import FrameType
from typing import Any, Protocol, TypeAlias

from ._clock import clock
from ._contention import CpuTimes, read_cpu_times, time_kept_from_cpu
from ._contention import prepare as prepare_to_read_cpu_times
from ._internal_errors import note
from ._records import GIL_HELD_ELSEWHERE, SampledFrame, SampledStack
from ._stacks import is_user_code


class LongStretchHandler(Protocol):
    """Called after a stretch over the limit with its context, duration and the watchdog's
    samples; also during a stretch, with a blocking call it made and the call's kind."""

    def __call__(
        self,
        context: Any,
        duration: float,
        samples: Counter[SampledStack] | None,
        call: str | None = None,
        family: str | None = None,
        started: float | None = None,
        /,
    ) -> None: ...


Stretch: TypeAlias = tuple[float, LongStretchHandler, Any]
"""A running stretch: (start, its handler, its context).

Compared by identity.

A plain tuple, because one is made for every step of every watched request.
"""

SpawnHook: TypeAlias = tuple[dict[str, Any], Callable[..., Any], Callable[..., Any] | None]
"""(an asyncio loop's attributes, a task factory, a `call_soon`): the factory is the
loop's, and the `call_soon` shadows the loop's own, while each stretch of the request runs
on it, so that they see the tasks and callbacks the request's code creates."""

running_stretches: dict[int, Stretch] = {}
"""Thread id -> the stretch of app code that thread is running now."""

stopped_in_a_debugger: dict[int, Stretch] = {}
"""Thread id -> its running stretch, if a debugger took the thread over during it
(`breakpoint()`): the time at the prompt is the developer's, not the app's, and the
stretch is neither reported nor shown as a hang."""


def debugger_entered(thread: int) -> None:
    """A debugger starts on `thread` (heard from the audit hook)."""
    stretch = running_stretches.get(thread)
    if stretch is not None:
        stopped_in_a_debugger[thread] = stretch


Work: TypeAlias = tuple[LongStretchHandler, Any]
"""Whose work a stretch is: the handler its long stretches go to, and their context."""

current_work: ContextVar[list[Work | None] | None] = ContextVar("loopwatch_work", default=None)
"""A cell holding the request whose code runs in this context. A worker thread the request
starts (`run_in_threadpool`, `asyncio.to_thread`) copies the context, and what the thread
sends back to the loop is the request's work too.

A cell, set into a task's context once, then filled and emptied by the outermost timed
call: setting a context variable for each request cost it 1.3 µs (every set makes each
variable's next read slow), a third of all watching costs a fast request."""


def work_of_this_context() -> Work | None:
    cell = current_work.get()
    return None if cell is None else cell[0]


alarm_stale_after = float("inf")
"""A stretch that starts later than this calls `keep_alarm_ahead`: the watchdog's alarm is
not set, or would ring while the stretch is too young for a look."""


def _no_watchdog(start: float) -> None:
    pass


keep_alarm_ahead: Callable[[float], None] = _no_watchdog
"""The watchdog's: moves its alarm to when a stretch that started at `start` is worth a
look. Called once the stretch is in `running_stretches`: a watchdog that has just rung
and not yet looked either finds the stretch, or has cleared the alarm for it to set."""


def set_alarm_keeper(keeper: Callable[[float], None] | None) -> None:
    """The watchdog hands in how a stretch keeps its alarm ahead; None: there is none."""
    global keep_alarm_ahead
    keep_alarm_ahead = _no_watchdog if keeper is None else keeper


def set_alarm_stale_after(when: float) -> None:
    """The watchdog says from when a starting stretch must move its alarm."""
    global alarm_stale_after
    alarm_stale_after = when


class Look:
    """What the watchdog saw of one running stretch."""

    # A plain class: a dataclass costs a millisecond to make at import.
    __slots__ = (
        "counted_from",
        "hang_shown",
        "process_cpu_from",
        "samples",
        "started_thread_ran",
        "stretch",
    )

    def __init__(
        self, stretch: Stretch, *, counted_from: tuple[float, CpuTimes | None] | None = None
    ) -> None:
        self.stretch = stretch
        self.samples: Counter[SampledStack] = Counter()
        """How often each stack was seen."""
        self.hang_shown = False
        """Whether the watchdog has shown this stretch as a hang."""
        self.counted_from = counted_from
        """When the watchdog first sampled the stretch, and the OS's CPU counts then: from
        these, the machine's share of the rest of the stretch."""
        self.process_cpu_from: float | None = None
        """The process's CPU time at the first look: what the other threads did meanwhile."""
        self.started_thread_ran: float | None = None
        """At the first look, if the loop thread was starting a thread: that thread's CPU
        time."""

    def time_kept_from_cpu(self, now: CpuTimes | None) -> float:
        """Seconds of the whole stretch that the machine, not the app, took, where no
        counts were read as it began; `now`, the loop thread's counts at its end.

        The counters are read at the first look and at the end. The part before the first
        look (nearly half the threshold, if the look was on time) is taken to have lost
        the same share as the part after it, but no longer a part than was measured; a
        stretch that slept then computed loses at most that share of its sleep.
        """
        since, before = self.counted_from or (0.0, None)
        kept_and_measured = None if before is None else _kept_since(since, before, now)
        if kept_and_measured is None:
            return 0.0
        kept, measured = kept_and_measured
        if measured <= 0:
            return kept
        unmeasured = min(since - self.stretch[0], measured)
        return kept + unmeasured * min(1.0, kept / measured)


def _kept_since(since: float, before: CpuTimes, now: CpuTimes | None) -> tuple[float, float] | None:
    """Seconds the machine kept a thread from a CPU since `since`, when its counts were
    `before` and are `now`, and the seconds measured; None if they could not be read."""
    if now is None:
        return None
    measured = clock() - since
    return time_kept_from_cpu(before, now, measured), measured


def _counts_now() -> CpuTimes | None:
    """The calling thread's counts, read once at the end of a long stretch for every use."""
    try:
        return read_cpu_times(threading.get_native_id())
    except Exception as error:  # noqa: BLE001 - runs inside the app's call
        note(f"reading CPU times: {error!r}")
        return None


looks: dict[int, Look] = {}
"""Thread id -> what the watchdog saw of the stretch that thread is running."""

counted_at_start: dict[int, tuple[float, CpuTimes, float]] = {}
"""Thread id -> (a start of one of its stretches, the OS's CPU counts of that thread then,
the process's CPU time then). Read on a thread's first watched call, and then as a
starting stretch moves the watchdog's alarm (about every quarter of the threshold while
requests run), not as every stretch starts: that would cost each fast request two system
calls."""


def count_cpu_from(thread: int, start: float) -> None:
    """Keep the CPU counts of the calling thread, whose stretch began at `start`, unless
    they were read a little while ago: while another thread's stretch is long, every
    stretch that starts calls this (reading each time took 20 µs of a fast request's 30)."""
    native_id = threading.get_native_id()
    counted = counted_at_start.get(thread)
    if (
        counted is not None
        and counted[1].thread == native_id
        and 0.0 <= start - counted[0] < _limit / 8
    ):
        return
    try:
        counts = read_cpu_times(native_id)
    except Exception as error:  # noqa: BLE001 - runs inside the app's call
        note(f"reading CPU times: {error!r}")
        return
    if counts is not None:
        counted_at_start[thread] = (start, counts, time.process_time())


def _counted_from_start(thread: int, stretch: Stretch) -> tuple[float, CpuTimes, float] | None:
    """The counts that stand for the stretch's start: read as it, or a stretch at most half
    a threshold before it, began, on the OS thread running it now."""
    counted = counted_at_start.get(thread)
    if (
        counted is not None
        and stretch[0] - _limit / 2 <= counted[0] <= stretch[0]
        and counted[1].thread == threading.get_native_id()
    ):
        return counted
    return None


def _time_kept_from_cpu(
    thread: int, stretch: Stretch, look: Look | None, now: CpuTimes | None
) -> float | None:
    """Seconds of a long stretch that the machine took; None: not known.

    Counts read as the stretch, or one shortly before it, began hold the machine's share
    of the whole stretch and of the moments before it: the true share lies at most those
    moments below them. The watchdog's first look measures the rest of the stretch exactly
    and puts that rate on the part before it: an estimate, kept within those bounds (a
    look the GIL delayed measures a few loaded milliseconds, whose rate once took all of a
    300 ms `json.loads` away; taking the smaller of the two left 5 ms of a loaded
    machine's share in a 300 ms stall). Without counts of the start, the look's estimate.
    """
    from_look = (
        look.time_kept_from_cpu(now) if look is not None and look.counted_from is not None else None
    )
    counted = _counted_from_start(thread, stretch)
    kept_and_measured = None if counted is None else _kept_since(counted[0], counted[1], now)
    if counted is None or kept_and_measured is None:
        return from_look
    kept = kept_and_measured[0]
    if from_look is None:
        return kept
    return min(kept, max(from_look, kept - (stretch[0] - counted[0])))


def look_at(thread: int, stretch: Stretch) -> Look:
    """The watchdog's record of `stretch`, running on `thread`: begun on its first look."""
    look = looks.get(thread)
    if look is None or look.stretch is not stretch:
        look = looks[thread] = Look(stretch)
    return look


_limit = float("inf")

timing = False
"""Whether long stretches are reported at all; a plain global, read on every request."""

collected_in_stretch: dict[int, tuple[float, float]] = {}
"""Thread id -> (wall, CPU) seconds the garbage collector ran on that thread during its
running stretch."""
collected_anywhere = 0.0
"""Wall seconds the garbage collector ran, on any thread, while timing: a collection in
a worker thread holds the GIL too, and is no more the app's than one on the loop."""
_collection_started = (0.0, 0.0)
_collecting = False


def collected_so_far() -> float:
    """`collected_anywhere`, with the collection under way, if one is, counted up to now.

    A collection that calls back into Python (a weak reference's callback, a `__del__`)
    lets other threads take the GIL before it ends: seen in the suite, a loop thread got it
    inside a worker thread's collection of 1.3 s, in `_weakrefset._remove`, and would have
    taken the whole of it for a hold of the worker's.
    """
    if not _collecting:
        return collected_anywhere
    return collected_anywhere + clock() - _collection_started[0]


def _on_collection(phase: str, info: dict[str, int]) -> None:
    # A collection the loop thread runs inside a stretch is not the app holding the loop
    # (seen: 180 ms in a fast request under PYTHONDEVMODE, collecting the garbage of a
    # thousand earlier requests). One that another thread runs is left to the stretch: the
    # loop thread may have slept through it in the app's `time.sleep` (the watchdog's own
    # collection during a 300 ms sleep would otherwise take the stall away). Callbacks run
    # on the collecting thread, one collection at a time.
    # Its CPU time too: its wait for a CPU is the machine's, which the loop thread's own
    # counts take off (once) where the watchdog looked.
    global _collection_started, _collecting, collected_anywhere
    if phase == "start":
        _collection_started = (clock(), time.thread_time())
        _collecting = True
        return
    took = clock() - _collection_started[0]
    collected_anywhere += took
    _collecting = False
    thread = threading.get_ident()
    if thread not in running_stretches:
        return
    wall, cpu = collected_in_stretch.get(thread, (0.0, 0.0))
    collected_in_stretch[thread] = (
        wall + took,
        cpu + time.thread_time() - _collection_started[1],
    )


def stretch_limit() -> float:
    """Seconds over which a stretch is reported; infinite while nothing is timed."""
    return _limit


long_stretch_ended: dict[int, float] = {}
"""Thread id -> when a stretch last ended on it that was reported: what it held is that
stretch's, timed already."""

last_call_on: dict[int, list[Work | None]] = {}
"""Thread id -> the cell of the watched call that began on it last: the request a loop
held off the GIL is taken to be when the holder's context no longer says."""


def report_stretches_longer_than(seconds: float | None) -> None:
    """Hand stretches longer than `seconds` to their handlers; None: time nothing."""
    global _limit, timing, _collecting
    if seconds is not None:
        prepare_to_read_cpu_times()
        if _on_collection not in gc.callbacks:
            gc.callbacks.append(_on_collection)
    if seconds is None:
        forget_the_threads_seen()
        if _on_collection in gc.callbacks:
            gc.callbacks.remove(_on_collection)
        _collecting = False  # one under way now will not call back to say it ended
    timing = seconds is not None
    _limit = float("inf") if seconds is None else seconds


def forget_the_threads_seen(living: Callable[[], set[int]] | None = None) -> None:
    """Between tests: drop what is kept for the threads that ended, by the ids `living`
    gives (all of it without); the call a loop thread began last is over."""
    if last_call_on:
        last_call_on.clear()
    if not (counted_at_start or long_stretch_ended):
        return
    alive = set() if living is None else living()
    for kept in (counted_at_start, long_stretch_ended):
        for thread in [thread for thread in kept if thread not in alive]:
            del kept[thread]


def start_stretch(thread: int, on_long_stretch: LongStretchHandler, context: Any) -> Stretch:
    start = clock()
    stretch = (start, on_long_stretch, context)
    running_stretches[thread] = stretch
    if start > alarm_stale_after:
        keep_alarm_ahead(start)
        count_cpu_from(thread, start)
    return stretch


def app_time(
    wall: float,
    collector: tuple[float, float],
    machine: float | None,
    starting_a_thread: bool,
) -> float:
    """The part of a stretch's `wall` seconds that was the app's, each correction taken
    once.

    - `collector`: (wall, CPU) seconds of garbage collection on the loop thread;
    - `machine`: seconds the machine kept the loop thread from a CPU over the whole stretch
      (its wait for one, steal), collections included; None: not measured (no look);
    - `starting_a_thread`: every look saw the loop thread waiting for a thread it started
      to begin, and no other thread of the process ran meanwhile: the OS, slow to start
      it, took the stretch. None of it is the app's: the part before the first look is
      not known to be the app's either, and on a loaded machine that first look is late
      itself (seen: 174 ms of a stretch that only ever waited for `Thread.start`).
    """
    if starting_a_thread:
        return 0.0
    if machine is None:
        return wall - collector[0]
    # The machine's count holds the collector's wait for a CPU: of the collection, only
    # its own CPU time is taken off besides.
    return max(0.0, wall - collector[1] - machine)


_NO_COLLECTION = (0.0, 0.0)


def finish_stretch(thread: int, stretch: Stretch, steps: Any = None) -> None:
    """Hand the stretch on if it was long, less what the collector and the machine took;
    `steps`, the coroutine it ran, says where it ended."""
    end = clock()
    wall = end - stretch[0]
    collector = (
        collected_in_stretch.get(thread, _NO_COLLECTION) if collected_in_stretch else _NO_COLLECTION
    )
    look = looks.get(thread) if looks else None
    if look is not None and look.stretch is not stretch:
        look = None  # what the watchdog saw of an earlier stretch
    try:
        duration = wall - collector[0]
        if duration > _limit and stopped_in_a_debugger.get(thread) is not stretch:
            now = _counts_now()
            duration = app_time(
                wall,
                collector,
                _time_kept_from_cpu(thread, stretch, look, now),
                look is not None and _only_starting_a_thread(look, end),
            )
            if duration > _limit:
                long_stretch_ended[thread] = end
                held_elsewhere = _held_elsewhere(thread, stretch, look, steps, now)
                if held_elsewhere is None:
                    samples = look.samples if look is not None else None
                    stretch[1](stretch[2], duration, samples, None, None, stretch[0])
                else:
                    stretch[1](
                        stretch[2], duration, held_elsewhere, None, GIL_HELD_ELSEWHERE, stretch[0]
                    )
    finally:
        # Only now: whoever waits for the running stretches to end (a test ending while a
        # live server's handler finishes) then finds the stall recorded; and the watchdog,
        # finding the look, does not take the stretch for a new one meanwhile.
        running_stretches.pop(thread, None)
        if looks:
            looks.pop(thread, None)
        if collected_in_stretch:
            # Dropped only once the stretch is gone: a collection while the handler records
            # the stall would otherwise be taken off this thread's next stretch.
            collected_in_stretch.pop(thread, None)
        if stopped_in_a_debugger:
            stopped_in_a_debugger.pop(thread, None)


_THREADING_FILE = threading.__file__


def _held_elsewhere(
    thread: int, stretch: Stretch, look: Look | None, steps: Any, now: CpuTimes | None
) -> Counter[SampledStack] | None:
    """If the loop thread waited for the GIL that another thread held, the stretch's
    samples, or where it ended when the watchdog never looked (or no stack: `steps` not
    known); None otherwise."""
    try:
        if not _waited_for_the_gil_held_elsewhere(thread, stretch, look, now):
            return None
        if look is not None and look.samples:
            return look.samples
        return Counter({_where_it_ended(steps): 1} if steps is not None else {})
    except Exception as error:  # noqa: BLE001 - runs inside the app's call
        note(f"telling a wait for the GIL: {error!r}")
        return None


def _waited_for_the_gil_held_elsewhere(
    thread: int, stretch: Stretch, look: Look | None, now: CpuTimes | None
) -> bool:
    """Whether the loop thread spent the stretch waiting for the GIL that another thread
    held: a new thread that took it at once (`asyncio.to_thread(json.loads, big)`).

    Seen by the watchdog: every look found the loop thread starting that thread, which had
    run most of the stretch. Unseen (the watchdog waits for the GIL too, and the loop
    thread may take it first when the call ends): from the counts of the stretch's start,
    the loop thread neither ran nor waited for a CPU through most of it, while the
    process's other threads ran; a loop thread that slept instead lets the watchdog look.
    """
    if look is not None and look.samples:
        return all(map(_starting_a_thread, look.samples)) and _started_thread_ran_most(look)
    counted = _counted_from_start(thread, stretch)
    if counted is None:
        return False
    since, before, process_before = counted
    if now is None:
        return False
    span = clock() - since
    ran = (now.ran - before.ran) / 1e9
    waited = (now.waited - before.waited) / 1e9
    others_ran = time.process_time() - process_before - ran
    return ran < span / 4 and waited < span / 4 and others_ran > span / 4


def _where_it_ended(steps: Any) -> SampledStack:
    """The app's await chain where the stretch ended, as `sample_stack` gives a stack, cut
    at its innermost app frame: the line whose await handed the work on."""
    stack: list[SampledFrame] = []
    awaited = steps
    while awaited is not None and len(stack) < _MAX_DEPTH:
        frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "gi_frame", None)
        if frame is None:
            break
        stack.append(_sampled_frame(frame))
        awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "gi_yieldfrom", None)
    for index in range(len(stack) - 1, -1, -1):
        if is_user_code(stack[index][0]):
            return tuple(stack[: index + 1])
    return tuple(stack)


def _only_starting_a_thread(look: Look, end: float) -> bool:
    """Whether every look saw the loop thread waiting for a thread it started, while the
    process did nothing else from the first look to `end`.

    A new thread that holds the GIL at once (`asyncio.to_thread(json.loads, big)`) keeps
    the loop thread waiting too, but it runs (its CPU time at the first look, which the GIL
    delays to after its C call), or the process does after: that is the app's stall.
    """
    if not look.samples or not all(map(_starting_a_thread, look.samples)):
        return False
    if look.counted_from is None or look.process_cpu_from is None:
        return True
    if _started_thread_ran_most(look):
        return False
    first_look = look.counted_from[0]
    window = end - first_look
    return window <= 0 or time.process_time() - look.process_cpu_from <= window / 2


def _started_thread_ran_most(look: Look) -> bool:
    """Whether the thread the loop thread was starting had, at the first look, run more
    than half the stretch so far: it held the GIL that the loop thread waited for."""
    if look.counted_from is None:
        return False
    return (look.started_thread_ran or 0.0) > (look.counted_from[0] - look.stretch[0]) / 2


def _starting_a_thread(stack: SampledStack) -> bool:
    """Whether the loop thread was waiting for a thread it started to begin running.

    Starting a worker (anyio's, asyncio's executor) is how code moves off the loop; the
    start waits until the OS has run the new thread, which on a busy machine can take
    hundreds of milliseconds that no counter of this process shows.
    """
    return any(frame[0] == _THREADING_FILE and frame[2] == "Thread.start" for frame in stack)


def wait_for_other_threads(timeout: float) -> None:
    """Let stretches running on other threads end (a live server's), up to `timeout`."""
    if not running_stretches:  # nearly every phase of every test
        return
    me = threading.get_ident()
    deadline = clock() + timeout
    while any(thread != me for thread in list(running_stretches)) and clock() < deadline:
        time.sleep(0.001)


@types.coroutine
def timed(
    awaitable: Awaitable[Any],
    on_long_stretch: LongStretchHandler,
    context: Any,
    spawn_hook: SpawnHook | None = None,
) -> Generator[Any, Any, Any]:
    """Await `awaitable`, timing each of its stretches; long ones go to `on_long_stretch`.

    A generator-based coroutine rather than an object with `__await__`: this runs for
    every watched request, and one generator is the least it can cost. A step taken
    inside a stretch already timed (an eager task's first step) is left to that stretch.
    """
    __tracebackhide__ = True  # pytest: a traceback through here points at the app
    steps: Any = awaitable if isinstance(awaitable, types.CoroutineType) else awaitable.__await__()
    thread = threading.get_ident()
    loop_attributes, task_factory, call_soon = spawn_hook or (None, None, None)
    value: Any = None
    error: BaseException | None = None
    # The outermost timed call fills the context's cell, for the threads the request starts.
    cell = current_work.get()
    if cell is None:
        cell = [None]
        current_work.set(cell)
    outermost = cell[0] is None
    if outermost:
        cell[0] = (on_long_stretch, context)
        last_call_on[thread] = cell
    if timing:
        counted = counted_at_start.get(thread)
        # A thread not seen before (a TestClient's portal is new for each request outside
        # `with`, and Python hands the ended one's id to the next: the OS's id differs), or
        # not for longer than the counts of a stretch's start may be old.
        if (
            counted is None
            or counted[1].thread != threading.get_native_id()
            or clock() - counted[0] > _limit / 2
        ):
            count_cpu_from(thread, clock())
    try:
        while True:
            stretch = None
            if thread not in running_stretches:
                start = clock()
                stretch = (start, on_long_stretch, context)
                running_stretches[thread] = stretch
                if start > alarm_stale_after:
                    keep_alarm_ahead(start)
                    count_cpu_from(thread, start)
                # A factory the loop got during the test is left in place: its tasks go
                # unfollowed until the next test finds it.
                if loop_attributes is not None and loop_attributes["_task_factory"] is None:
                    loop_attributes["_task_factory"] = task_factory
                    if call_soon is not None:
                        loop_attributes["call_soon"] = call_soon
            try:
                yielded = steps.send(value) if error is None else steps.throw(error)
            except StopIteration as stop:
                return stop.value
            finally:
                if stretch is not None:
                    if (
                        loop_attributes is not None
                        and loop_attributes["_task_factory"] is task_factory
                    ):
                        loop_attributes["_task_factory"] = None
                        if call_soon is not None:
                            loop_attributes.pop("call_soon", None)
                    # Nearly every stretch is short, unseen and free of collections: it only
                    # has to go.
                    if (
                        looks
                        or collected_in_stretch
                        or stopped_in_a_debugger
                        or clock() - stretch[0] > _limit
                    ):
                        finish_stretch(thread, stretch, steps)
                    else:
                        running_stretches.pop(thread, None)
            try:
                value = yield yielded
                error = None
            except GeneratorExit:
                steps.close()
                raise
            except BaseException as thrown:  # noqa: BLE001 - handed on to the app, as await would
                value = None
                error = thrown
    finally:
        if outermost:
            cell[0] = None


def timed_callback(work: Work, spawn_hook: SpawnHook | None, callback: Any, *args: Any) -> None:
    """Run a plain callback of `work` (`loop.call_soon`, what a request's thread sends back
    to the loop) as one stretch of it, following the tasks it creates."""
    __tracebackhide__ = True  # pytest: a traceback through here points at the app
    thread = threading.get_ident()
    if thread in running_stretches:
        callback(*args)
        return
    loop_attributes, task_factory, call_soon = spawn_hook or (None, None, None)
    stretch = start_stretch(thread, work[0], work[1])
    if loop_attributes is not None and loop_attributes["_task_factory"] is None:
        loop_attributes["_task_factory"] = task_factory
        if call_soon is not None:
            loop_attributes["call_soon"] = call_soon
    try:
        callback(*args)
    finally:
        if loop_attributes is not None and loop_attributes["_task_factory"] is task_factory:
            loop_attributes["_task_factory"] = None
            if call_soon is not None:
                loop_attributes.pop("call_soon", None)
        if looks or collected_in_stretch or stopped_in_a_debugger or clock() - stretch[0] > _limit:
            finish_stretch(thread, stretch)
        else:  # as in `timed`: a short stretch, unseen and free of collections, only goes
            running_stretches.pop(thread, None)


STRETCH_CODE = timed.__code__
"""The driver's frame marks where app code begins in a sampled stack..."""
CALLBACK_CODE = timed_callback.__code__
"""...and so does the frame that runs a request's callback."""

_MAX_DEPTH = 256
_COROUTINE_FLAGS = 0x80 | 0x100 | 0x200  # CO_COROUTINE, CO_ITERABLE_COROUTINE, CO_ASYNC_GENERATOR


def sample_stack(frame: FrameType | None) -> SampledStack:
    """The frames from the app's coroutine inwards, outermost first; only memory is read."""
    stack: list[SampledFrame] = []
    while frame is not None and len(stack) < _MAX_DEPTH:
        code = frame.f_code
        if code is STRETCH_CODE or code is CALLBACK_CODE:
            break
        stack.append(_sampled_frame(frame))
        frame = frame.f_back
    stack.reverse()
    return tuple(stack)


def _sampled_frame(frame: FrameType) -> SampledFrame:
    code = frame.f_code
    return (
        code.co_filename,
        frame.f_lineno or code.co_firstlineno,
        code.co_qualname,
        frame.f_globals.get("__name__", ""),
        bool(code.co_flags & _COROUTINE_FLAGS),
    )
