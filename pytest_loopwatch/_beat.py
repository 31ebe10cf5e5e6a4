"""A beat on each watched event loop, for the stall no stretch can time: the loop kept
off the GIL by a thread working for a request.

A `def` endpoint runs in a worker thread while the loop idles. A C call there that keeps
the GIL (`json.loads` of a large document, a catastrophic regex, pydantic-core on a huge
input) freezes the loop as surely as one on it: the loop thread, woken for its next
event, waits for the GIL until the call returns. No app code runs on the loop meanwhile,
so no stretch times it.

A callback that reschedules itself every quarter threshold runs late then. Lateness alone
says nothing of why; the OS's counts of the loop thread over the gap say it:

- it hardly ran: code of its own (the app's, timed as stretches; the test's) held nothing;
- it was put on a CPU again and again: a thread waiting for the GIL is woken every switch
  interval (5 ms) to ask for it, while one that sleeps in a call (`time.sleep`, `select`)
  is woken once (so a hold of under three switch intervals is not told);
- its waits for a CPU are the machine's, and come off, as does garbage collection on any
  thread (up to now, for a collection under way).

The holder is the thread of the process that ran most over the gap, and what it ran is
the hold's length (no more than the loop thread waited); its stack, taken once it has let
go of the GIL, stands just past its call, and the context it runs in says which request
it works for. A holder whose context names none (it ran on past its call before the loop
thread got the GIL; or it works for no request: the test's own thread, a library's) is
taken for the call that began last on the loop, if that call is in flight, and reported
without a stack; with none in flight, it is left alone.

trio runs no plain callbacks: there the beat is a system task that sleeps. A task waiting
for every other to be blocked (`trio.testing.wait_all_tasks_blocked` with a cushion) would
wait for good behind its deadlines; the beat stops for it until the next watched call. A
trio run as a guest of another loop (anyio's pytest plugin runs trio tests so) waits for
I/O in a worker of trio's thread cache, while the loop thread sleeps on its host's queue:
that worker is the one that asks for the GIL, and its asks count as the loop thread's.
"""

from __future__ import annotations

import asyncio
import functools
import sys
import threading
import time
import weakref
from collections import Counter
from contextvars import Context
from types import BuiltinMethodType, FrameType, ModuleType
from typing import NamedTuple

# The module, not its attributes: the watch and the collector change them as they run.
import pytest_loopwatch._stretches as _stretches

from ._calls import call_catcher, imports_by_thread
from ._clock import clock
from ._contention import CpuTimes, read_cpu_times
from ._internal_errors import note
from ._records import GIL_HELD_ELSEWHERE, SampledStack
from ._stacks import is_user_code
from ._stretches import Work, current_work, sample_stack
from ._thread_frames import thread_frames
from ._trio_run import current_trio_run

_BEATS_PER_THRESHOLD = 4
_ASKED_PER_SWITCH_INTERVAL = 0.7
"""How often, at least, a loop thread kept off the GIL is put on a CPU, per switch
interval of the hold."""
_TRIO_IDLE_WORKER = "Trio thread "
"""How trio's thread cache names a worker between jobs, and while it waits for I/O for a
guest run (trio 0.26-0.35)."""


class _Counts(NamedTuple):
    """The OS's counts at one beat."""

    at: float
    loop_thread: CpuTimes
    threads: dict[int, tuple[int, float]]
    """The process's other threads: id -> (native id, CPU seconds)."""
    collected: float
    """`collected_so_far()` then."""
    imports: dict[int, int]
    """`imports_by_thread` then."""
    helpers: dict[int, int]
    """Threads that wait for I/O for a trio guest run: native id -> times on a CPU."""


class _Beat:
    """One loop's beat: when it is due, and the counts of the last one."""

    # A plain class, as the engine's other records: a dataclass costs a millisecond to
    # make at import, which every watched session pays.
    __slots__ = ("counts", "due", "generation", "interval", "native_thread", "on_trio", "thread")

    def __init__(
        self,
        generation: int,
        thread: int,
        native_thread: int,
        counts: _Counts | None,
        *,
        on_trio: bool = False,
    ) -> None:
        self.generation = generation
        self.thread = thread
        self.native_thread = native_thread
        self.counts = counts
        self.due = 0.0
        self.interval = 0.0
        self.on_trio = on_trio


_beating: weakref.WeakSet[object] = weakref.WeakSet()
"""The loops (asyncio's; the root task of trio's) a beat runs on, for the watch now: weak,
as TestClient makes a loop a request."""

_stopped_on_trio: weakref.WeakKeyDictionary[object, object] = weakref.WeakKeyDictionary()
"""trio run (its root task) -> its beat's task, stopped while a task waits for idle."""

_generation = 0
_began_since_stop = False
"""Whether a beat began since `stop_beating`: one name tells a test that called no app
that there is nothing to stop."""
"""Counts the watches stopped: a beat of an earlier one ends at its next run."""

_reported: dict[int, float] = {}
"""Native id of a holder -> when a hold of it was reported: a test watching two loops (its
own and a TestClient's) sees one hold late on both, and reports it once."""


def keep_beating(loop: asyncio.AbstractEventLoop | None) -> None:
    """Start a beat on `loop`, the running asyncio loop (None: the trio run the caller is
    in, if any), unless one runs there for this watch."""
    if sys.platform != "linux":
        return
    if loop is None:
        _keep_beating_on_trio()
        return
    if loop in _beating:
        return
    call_catcher.install_hook()  # which counts imports, also where calls are not caught
    _beating.add(loop)
    _began()
    beat = _new_beat()
    if _listening(beat, first=True):
        _schedule(loop, beat)


def _keep_beating_on_trio() -> None:
    """Called for each watched call on trio: starts the run's beat, or wakes it."""
    found = current_trio_run()
    if found is None:
        return
    trio, run = found
    stopped = _stopped_on_trio.pop(run, None)
    if stopped is not None:
        trio.lowlevel.reschedule(stopped)
        return
    if run in _beating:
        return
    call_catcher.install_hook()
    _beating.add(run)
    _began()
    beat = _new_beat(on_trio=True)
    if _listening(beat, first=True):
        trio.lowlevel.spawn_system_task(
            _beat_on_trio, trio, run, beat, name="pytest_loopwatch beat"
        )


async def _beat_on_trio(trio: ModuleType, run: object, beat: _Beat) -> None:
    while True:
        if _waited_for_idle(trio):
            _stopped_on_trio[run] = trio.lowlevel.current_task()
            await trio.lowlevel.wait_task_rescheduled(lambda _: trio.lowlevel.Abort.SUCCEEDED)
            # Back for a watched call: the gap was the test's waiting, not a hold; the beat
            # starts afresh, as it first did.
            beat.counts = _count(beat)
            if not _listening(beat, first=True):
                return
        await trio.sleep(beat.interval)
        if not _listening(beat):
            return


def _waited_for_idle(trio: ModuleType) -> bool:
    """Whether a task of this run waits for all the others to be blocked: trio wakes it
    only when no deadline comes sooner than its cushion. Read from trio's runner, as no
    public call tells; False where it is not found."""
    runner = getattr(getattr(trio, "_core", None), "_run", None)
    runner = getattr(getattr(runner, "GLOBAL_RUN_CONTEXT", None), "runner", None)
    return bool(getattr(runner, "waiting_for_idle", None))


def _began() -> None:
    global _began_since_stop
    _began_since_stop = True


def stop_beating() -> None:
    """End every beat at its next run."""
    global _generation, _began_since_stop
    if not _began_since_stop:
        return  # no beat began since the last stop
    _began_since_stop = False
    _generation += 1
    _beating.clear()
    _reported.clear()
    # A stopped beat is let go: it stays parked, holding no deadline, until its run ends.
    _stopped_on_trio.clear()


def _new_beat(*, on_trio: bool = False) -> _Beat:
    beat = _Beat(
        _generation, threading.get_ident(), threading.get_native_id(), None, on_trio=on_trio
    )
    beat.counts = _count(beat)
    return beat


def _schedule(loop: asyncio.AbstractEventLoop, beat: _Beat) -> None:
    # The class's `call_at`: the follower's, on the loop, would take the beat for the work
    # of a request whose stretch scheduled it (`call_later` calls `call_at`).
    type(loop).call_at(loop, loop.time() + beat.interval, _on_beat, beat)


def _on_beat(beat: _Beat) -> None:
    if _listening(beat):
        _schedule(asyncio.get_running_loop(), beat)


def _listening(beat: _Beat, *, first: bool = False) -> bool:
    """Whether the beat goes on; unless `first`, tell what kept it late. When it goes on,
    when it is due next."""
    if beat.generation != _generation:
        return False
    try:
        if not first:
            late = clock() - beat.due
            if late < -beat.interval / 2:
                # Early by the real clock: the loop keeps a time of its own (looptime's
                # fast-forwarding), which a beat would only hurry along.
                return False
            _tell(beat, late)
        # No more often than a waiting thread asks for the GIL: a shorter gap tells nothing.
        beat.interval = max(
            _stretches.stretch_limit() / _BEATS_PER_THRESHOLD, sys.getswitchinterval()
        )
        beat.due = clock() + beat.interval
        return True
    except Exception as error:  # noqa: BLE001 - runs on the loop, among the app's callbacks
        note(f"beating on the loop: {error!r}")
        return False


def _tell(beat: _Beat, late: float) -> None:
    """Count again; if the loop came back `late`, look for the thread that kept it."""
    counts = _count(beat)
    if counts is not None and beat.counts is not None and late > _stretches.stretch_limit():
        _look_for_a_holder(beat, beat.counts, counts, late)
    beat.counts = counts


def _count(beat: _Beat) -> _Counts | None:
    """The counts now; None where the OS keeps none."""
    loop_thread = beat.native_thread
    times = read_cpu_times(loop_thread, steal=False)  # a GIL holder's steal is still a hold
    if times is None:
        return None
    threads: dict[int, tuple[int, float]] = {}
    helpers: dict[int, int] = {}
    for thread in threading.enumerate():
        native = thread.native_id
        if native is None or native == loop_thread or thread.ident is None:
            continue
        try:
            threads[thread.ident] = (native, time.clock_gettime(_cpu_clock(native)))
        except OSError:
            continue  # it ended meanwhile
        # trio names an idle worker of its cache so, and runs a guest's waits for I/O under
        # that name (a request's work runs under a name of its own).
        if beat.on_trio and thread.name.startswith(_TRIO_IDLE_WORKER):
            helper = read_cpu_times(native, steal=False)
            if helper is not None:
                helpers[native] = helper.timeslices
    return _Counts(
        clock(), times, threads, _stretches.collected_so_far(), imports_by_thread.copy(), helpers
    )


def _cpu_clock(native_thread: int) -> int:
    """The CPU clock of a thread of this process, as Linux numbers it from the thread's id.

    Not `time.pthread_getcpuclockid`: it reads the thread's descriptor, which a thread
    that ended since `threading.enumerate` may have freed; for an id that ended, this
    clock fails with an error instead.
    """
    return (~native_thread << 3) | 6  # CPUCLOCK_PERTHREAD | CPUCLOCK_SCHED


def _look_for_a_holder(beat: _Beat, before: _Counts, after: _Counts, late: float) -> None:
    """Report the request whose thread kept the loop off the GIL while this beat was late."""
    limit = _stretches.stretch_limit()
    was, now = before.loop_thread, after.loop_thread
    held = late - (after.collected - before.collected) - (now.waited - was.waited) / 1e9
    if held <= limit or (now.ran - was.ran) / 1e9 > held / 4:
        return
    holder, ran = _ran_most(before, after)
    if holder is None:
        return
    # Measured, every core busy: 1.03-1.17 times on a CPU per switch interval of the hold
    # while a worker kept the GIL; at most 0.41 for a loop thread that slept in the test's
    # code while a worker computed (woken on its way in and out, not through it).
    asked_for_the_gil = now.timeslices - was.timeslices
    asked_for_the_gil += _asked_by_helpers(before, after, after.threads[holder][0])
    if asked_for_the_gil < max(3.0, _ASKED_PER_SWITCH_INTERVAL * held / sys.getswitchinterval()):
        return
    if _stretches.long_stretch_ended.get(beat.thread, -1.0) > before.at:
        return  # the loop thread waited inside a stretch of app code: reported with it
    # Of the hold, what the holder ran: a machine that kept it from a CPU while it held
    # the GIL (twice as many busy processes as cores: 300 ms of work held the loop 900
    # ms) took the rest, as a stretch that waited for a CPU loses that wait.
    held = min(held, ran)
    if held <= limit:
        return
    if after.imports.get(holder) != before.imports.get(holder):
        # It imported meanwhile: one-time loading, let pass as imports on the loop are.
        return
    native = after.threads[holder][0]
    if _reported.get(native, -1.0) > before.at:
        return
    frame = thread_frames().get(holder)
    work = _work_of(frame)
    samples = Counter({_holder_stack(frame): 1})
    if work is None:
        # The holder ran on, out of the request's context, before the loop thread got the
        # GIL (the watchdog, woken meanwhile, took it first: seen in 1 of 20 TestClient
        # requests): the call that began last on this loop waited for it, unseen where.
        cell = _stretches.last_call_on.get(beat.thread)
        work, samples = None if cell is None else cell[0], Counter()
    if work is None:
        return
    _reported[native] = after.at
    work[0](work[1], held, samples, None, GIL_HELD_ELSEWHERE)


def _asked_by_helpers(before: _Counts, after: _Counts, holder: int) -> int:
    """How often the threads that wait for I/O for the loop, the holder aside, were put on
    a CPU between two beats."""
    return sum(
        timeslices - before.helpers[native]
        for native, timeslices in after.helpers.items()
        if native != holder and native in before.helpers
    )


def _ran_most(before: _Counts, after: _Counts) -> tuple[int | None, float]:
    """The thread that ran most between two beats, and its seconds of CPU."""
    holder, most = None, 0.0
    for thread, (native, cpu) in after.threads.items():
        earlier = before.threads.get(thread)
        ran = cpu - earlier[1] if earlier is not None and earlier[0] == native else cpu
        if ran > most:
            holder, most = thread, ran
    return holder, most


def _work_of(frame: FrameType | None) -> Work | None:
    """The request a thread works for: the one in the context it runs in, found in its
    frames from the innermost out (anyio's worker holds it as a local, asyncio's executor
    in the call it was handed)."""
    while frame is not None:
        for value in frame.f_locals.values():
            context = _context_in(value)
            cell = None if context is None else context.get(current_work)
            if cell is not None and cell[0] is not None:
                return cell[0]
        frame = frame.f_back
    return None


def _context_in(value: object) -> Context | None:
    """A context that `value` is, or runs a call in (`partial(context.run, ...)`, as
    `asyncio.to_thread` hands to an executor's work item). Types are compared, not
    `isinstance`d: that reads `__class__`, which a proxy among the thread's locals may
    answer by running code."""
    if type(value) is Context:
        return value
    work_items = sys.modules.get("concurrent.futures.thread")
    if work_items is not None and type(value) is work_items._WorkItem:
        value = vars(value).get("fn")
    if type(value) is functools.partial and type(value.func) is BuiltinMethodType:
        owner = value.func.__self__
        if type(owner) is Context:
            return owner
    return None


def _holder_stack(frame: FrameType | None) -> SampledStack:
    """The holder's stack from its outermost app frame in (the thread's machinery above
    it says nothing); all of it when no app frame is in it."""
    stack = sample_stack(frame)
    for index, sampled in enumerate(stack):
        if is_user_code(sampled[0]):
            return stack[index:]
    return stack
