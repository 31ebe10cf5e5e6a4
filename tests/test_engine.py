"""The engine on its own: durations, the stretch timer, the watchdog's samples, the wrapper."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import itertools
import os
import subprocess
import sys
import threading
import time
import warnings
from collections import Counter
from collections.abc import Coroutine, Iterator, MutableMapping
from pathlib import Path
from typing import Any

import pytest
from conftest import line_of

from pytest_loopwatch import Frame, LoopwatchMiddleware, Request, Stall, Watch, wrap
from pytest_loopwatch._asgi import ASGIApp
from pytest_loopwatch._contention import CpuTimes, read_cpu_times, time_kept_from_cpu
from pytest_loopwatch._durations import InvalidDuration, format_duration, parse_duration
from pytest_loopwatch._engine import Engine
from pytest_loopwatch._findings import Finding
from pytest_loopwatch._stacks import blocking_stack, is_user_code
from pytest_loopwatch._stretches import running_stretches
from pytest_loopwatch._summary import summary_lines

engine = Engine(intercept=False)
"""Watches the apps wrapped with `wrap`; the clients are not intercepted."""


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("250ms", 0.25), ("0.25s", 0.25), ("0.25", 0.25), (" 2 s ", 2.0), ("1e-3s", 0.001), (3, 3.0)],
)
def test_durations_are_read_in_seconds(text: object, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text", ["", "ms", "-1", "0", "0.0s", "1h", "nan", "inf", "1e999", True, None, [1]]
)
def test_anything_but_a_positive_duration_is_refused(text: object) -> None:
    with pytest.raises(InvalidDuration):
        parse_duration(text)


def test_durations_are_shown_in_milliseconds() -> None:
    assert [format_duration(s) for s in (1.0023, 0.1, 0.0052)] == ["1002 ms", "100 ms", "5.2 ms"]


async def serve(app: ASGIApp, scope: dict[str, Any]) -> None:
    """Call the app as a server would; these apps neither receive nor send."""

    async def receive() -> MutableMapping[str, Any]:
        return {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        pass

    await app(scope, receive, send)


def run_watched(threshold: float, main: Coroutine[Any, Any, None]) -> Watch:
    """Run `main` on a new loop while a watch with `threshold` is active; that watch."""
    watch = Watch(threshold=threshold)
    engine.begin(watch)
    try:
        asyncio.run(main)
    finally:
        engine.end(watch)
    return watch


@pytest.fixture
def watch() -> Iterator[Watch]:
    watch = Watch(threshold=0.05)
    engine.begin(watch)
    yield watch
    engine.end(watch)
    engine.shutdown()


async def blocking_app(scope: Any, receive: Any, send: Any) -> None:
    await asyncio.sleep(0)
    time.sleep(0.1)
    await asyncio.sleep(0.3)  # awaiting is not a stall


def test_only_the_stretch_between_awaits_is_timed(watch: Watch) -> None:
    asyncio.run(serve(wrap(blocking_app), {"type": "http", "method": "GET", "path": "/x"}))
    (stall,) = watch.stalls
    assert 0.1 <= stall.duration < 0.3
    assert stall.location is not None
    assert stall.location.function == "blocking_app"
    assert stall.location.code == "time.sleep(0.1)"
    assert stall.samples >= 1


def test_trio_runs_the_same_engine(watch: Watch) -> None:
    trio = pytest.importorskip("trio")

    async def trio_app(scope: Any, receive: Any, send: Any) -> None:
        await trio.sleep(0)
        time.sleep(0.1)

    trio.run(serve, wrap(trio_app), {"type": "http", "method": "GET", "path": "/trio"})
    (stall,) = watch.stalls
    assert stall.request.path == "/trio"
    assert stall.location is not None
    assert stall.location.function.endswith("trio_app")


def test_uvloop_runs_the_same_engine(watch: Watch) -> None:
    uvloop = pytest.importorskip("uvloop")
    uvloop.run(serve(wrap(blocking_app), {"type": "http", "method": "GET", "path": "/uv"}))
    (stall,) = watch.stalls
    assert stall.location is not None
    assert stall.location.code == "time.sleep(0.1)"


def test_exceptions_and_cancellation_pass_through_untouched(watch: Watch) -> None:
    async def failing_app(scope: Any, receive: Any, send: Any) -> None:
        await asyncio.sleep(0)
        raise KeyError("from the app")

    with pytest.raises(KeyError, match="from the app"):
        asyncio.run(serve(wrap(failing_app), {"type": "http"}))

    async def cancel_it() -> None:
        task = asyncio.ensure_future(serve(wrap(blocking_app), {"type": "http"}))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancel_it())


def test_between_watches_nothing_is_recorded_and_at_rest_nothing_is_timed() -> None:
    timed: list[bool] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        timed.append(threading.get_ident() in running_stretches)
        time.sleep(0.06)

    watch = Watch(threshold=0.05)
    engine.begin(watch)
    try:
        asyncio.run(serve(wrap(app), {"type": "http"}))
    finally:
        engine.end(watch)
    # Between two watched tests the timing stays on, for the next one, and records nowhere.
    asyncio.run(serve(wrap(app), {"type": "http"}))
    engine.rest()  # before a test that is not watched
    asyncio.run(serve(wrap(app), {"type": "http"}))
    assert timed == [True, True, False]
    assert len(watch.stalls) == 1


def test_a_watched_app_inside_a_watched_app_is_timed_once(watch: Watch) -> None:
    inner = LoopwatchMiddleware(blocking_app)

    async def outer(scope: Any, receive: Any, send: Any) -> None:
        await inner(scope, receive, send)

    asyncio.run(serve(wrap(outer), {"type": "http"}))
    assert len(watch.stalls) == 1


def test_the_blocking_location_is_the_most_sampled_user_line() -> None:
    user = __file__
    library = asyncio.__file__
    samples = Counter(
        {
            ((user, 10, "handler", "app", True), (library, 5, "run", "asyncio", False)): 3,
            ((user, 10, "handler", "app", True), (library, 6, "run", "asyncio", False)): 3,
            ((user, 20, "handler", "app", True),): 4,
        }
    )
    found = blocking_stack(samples)
    assert found is not None
    stack, index, reached_from = found
    assert stack[index][:2] == (user, 10)
    assert reached_from is None
    assert is_user_code(user)
    assert not is_user_code(library)


def test_time_the_garbage_collector_takes_is_not_the_apps(watch: Watch) -> None:
    class Node:
        def __init__(self) -> None:
            self.me = self

    garbage = [Node() for _ in range(300_000)]

    async def app(scope: Any, receive: Any, send: Any) -> None:
        garbage.clear()
        time.sleep(0.06)
        collecting = time.perf_counter()
        gc.collect()
        collected_for.append(time.perf_counter() - collecting)

    collected_for: list[float] = []
    asyncio.run(serve(wrap(app), {"type": "http"}))
    (stall,) = watch.stalls
    assert collected_for[0] > 0.01, "too little garbage to tell the collector's time apart"
    assert stall.duration < 0.06 + collected_for[0] / 2


def test_a_collection_on_another_thread_is_still_the_apps_stall(watch: Watch) -> None:
    """The loop thread sleeping in the app while another thread collects was blocked by the
    app all the same: the collection cannot shorten the stall."""

    def slow_collection(phase: str, info: dict[str, int]) -> None:
        # Runs after loopwatch's own callback noted the start: the collection lasts 0.1 s.
        if phase == "start" and threading.current_thread() is collector:
            time.sleep(0.1)

    collector = threading.Thread(target=gc.collect, args=(0,))

    async def app(scope: Any, receive: Any, send: Any) -> None:
        collector.start()
        time.sleep(0.12)
        collector.join()

    gc.callbacks.append(slow_collection)
    try:
        asyncio.run(serve(wrap(app), {"type": "http"}))
    finally:
        gc.callbacks.remove(slow_collection)
    (stall,) = watch.stalls
    assert stall.duration >= 0.11


def test_the_summary_puts_the_worst_stall_first() -> None:
    def finding(test: str, route: str, duration: float, line: int) -> Finding:
        location = Frame("/app.py", line, "handler", "block()", True)
        return Finding(
            test,
            Stall(duration, 0.1, Request("http", "GET", route), route, None, location, (), 1),
        )

    lines = summary_lines(
        [
            finding("t::a", "/mild", 0.2, 1),
            finding("t::b", "/worst", 0.9, 2),
            finding("t::c", "/mild", 0.3, 1),
        ],
        base="/",
    )
    assert lines == [
        "GET /worst  route /worst: 1 stall, worst 900 ms, total 900 ms",
        "  at app.py:2: block()",
        "  in t::b",
        "GET /mild  route /mild: 2 stalls, worst 300 ms, total 500 ms",
        "  at app.py:1: block()",
        "  in t::a",
        "  in t::c",
    ]


def cpu_times(ran: float, waited: float, stolen: float = 0.0, thread: int = 1) -> CpuTimes:
    """Counts given as seconds run and seconds waited for a CPU."""
    return CpuTimes(thread, round(ran * 1e9), round(waited * 1e9), stolen)


def test_the_loop_threads_own_wait_for_a_cpu_is_the_machines() -> None:
    before = cpu_times(1.0, 1.0)
    after = cpu_times(1.1, 1.4)
    assert time_kept_from_cpu(before, after, 0.5) == pytest.approx(0.4)


def test_a_stretch_off_the_cpu_is_the_apps_however_busy_the_machine() -> None:
    # A sleep, a socket or a child process: the CI run that failed had a 300 ms
    # `subprocess.run` erased when the waits of every thread counted.
    before = cpu_times(0.0, 0.0, stolen=5.0)
    after = cpu_times(0.0, 0.0, stolen=5.25)
    assert time_kept_from_cpu(before, after, 0.3) == pytest.approx(0.0)


def test_a_cpu_bound_stretch_loses_the_cpus_stolen_share_of_its_running() -> None:
    # A third of the CPU stolen: 0.2 s ran of the 0.3 s the loop thread meant to run.
    before = cpu_times(0.0, 0.0, stolen=5.0)
    after = cpu_times(0.2, 0.0, stolen=5.1)
    assert time_kept_from_cpu(before, after, 0.3) == pytest.approx(0.1)


def test_a_wild_steal_reading_never_takes_more_than_the_stretch_was_off_the_cpu() -> None:
    before = cpu_times(0.0, 0.0, stolen=5.0)
    after = cpu_times(0.25, 0.0, stolen=50.0)
    assert time_kept_from_cpu(before, after, 0.3) == pytest.approx(0.05)


def test_readings_of_two_threads_take_nothing_off() -> None:
    other_thread = cpu_times(0.0, 0.0, stolen=5.0, thread=2)
    loop_thread = cpu_times(90.0, 30.0, stolen=5.1)
    assert time_kept_from_cpu(other_thread, loop_thread, 0.3) == 0.0
    assert time_kept_from_cpu(loop_thread, other_thread, 0.3) == 0.0


@pytest.mark.skipif(
    read_cpu_times(threading.get_native_id()) is None,
    reason="the OS keeps no per-thread CPU counts",
)
def test_the_cpu_counts_of_a_running_thread_grow_as_it_runs() -> None:
    me = threading.get_native_id()
    before = read_cpu_times(me)
    # 50 ms of this thread's CPU, however busy the machine: the same clock the kernel counts.
    deadline = time.thread_time() + 0.05
    while time.thread_time() < deadline:
        pass
    after = read_cpu_times(me)
    assert before is not None
    assert after is not None
    assert after.ran - before.ran > 0.02e9


def noting_samples(monkeypatch: pytest.MonkeyPatch) -> list[tuple[float, float]]:
    """For each look that samples a stretch from now on: when that stretch began, and when
    the alarm that woke the watchdog for it was due. The OS decides when a due alarm is
    heard; the watchdog decides when it is due, which is what a test can hold it to."""
    import pytest_loopwatch._watchdog as watchdog_module
    from pytest_loopwatch import _stretches

    due = [0.0]
    sampled: list[tuple[float, float]] = []
    set_alarm = watchdog_module.Watchdog._set_alarm
    look_at = _stretches.look_at

    def noting_the_alarm(self: Any, when: float, look_after: float) -> None:
        due[0] = when
        set_alarm(self, when, look_after)

    def noting_the_stretch(thread: int, stretch: Any) -> Any:
        sampled.append((stretch[0], due[0]))
        return look_at(thread, stretch)

    monkeypatch.setattr(watchdog_module.Watchdog, "_set_alarm", noting_the_alarm)
    monkeypatch.setattr(watchdog_module, "look_at", noting_the_stretch)
    return sampled


def first_look_was_due(sampled: list[tuple[float, float]], stall_began: float) -> float:
    """Seconds into the stretch that held `stall_began` its first look was due (at once,
    if an earlier alarm that rang late brought it)."""
    # The app notes when it began just after its stretch did: an earlier stretch is not it.
    holding = [start for start, _ in sampled if stall_began - 0.05 <= start <= stall_began]
    assert holding, "the stretch was never looked at"
    began = max(holding)
    return max(0.0, min(due for start, due in sampled if start == began) - began)


def noting_looks(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """When the watchdog looks at the running stretches, from now on."""
    from pytest_loopwatch._watchdog import Watchdog

    looked_at: list[float] = []
    look = Watchdog._sample_long_stretches

    def noting_the_time(self: Watchdog, look_after: float, interval: float) -> float | None:
        looked_at.append(time.perf_counter())
        return look(self, look_after, interval)

    monkeypatch.setattr(Watchdog, "_sample_long_stretches", noting_the_time)
    return looked_at


def test_a_look_keeps_the_gil_from_a_computing_loop_thread() -> None:
    # Reading the CPU counts once let go of the GIL a dozen times, each taking up to a
    # switch interval to get back from the computing loop thread: the watchdog then took
    # no sample for 46-90 ms of a 100 ms computation. A first look (the one that reads
    # the counts) must let go of it never: another thread that waits for the GIL all
    # through the look never gets it. No switch interval runs out meanwhile, so only a
    # look that lets go of the GIL by itself lets that thread run.
    from pytest_loopwatch._clock import clock
    from pytest_loopwatch._watchdog import Watchdog

    ran = [0]
    stopping = threading.Event()

    def wanting_the_gil() -> None:
        while not stopping.is_set():
            ran[0] += 1
            time.sleep(0.0001)  # then waits for the GIL: through the whole look, often

    other = threading.Thread(target=wanting_the_gil)
    switch_interval = sys.getswitchinterval()
    sys.setswitchinterval(100.0)
    other.start()
    watchdog = Watchdog()
    let_go = 0
    try:
        for _ in range(50):
            time.sleep(0.001)
            assert other.ident is not None
            # New each time: the first look at a stretch is the one that reads the counts.
            running_stretches[other.ident] = (clock() - 1.0, never_called, None)
            before = ran[0]
            watchdog._sample_long_stretches(0.01, 0.01)
            let_go += ran[0] != before
    finally:
        sys.setswitchinterval(switch_interval)
        running_stretches.pop(other.ident or 0, None)
        stopping.set()
        other.join()
    assert ran[0] > 50  # it did run, between the looks
    assert let_go == 0


def never_called(*args: object) -> None:
    raise AssertionError(args)


@pytest.fixture(params=["timer of the OS", "condition"])
def alarm(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The watchdog's alarm, each kind: Linux's timerfd and the condition used elsewhere."""
    import pytest_loopwatch._alarm as alarm_module
    import pytest_loopwatch._watchdog as watchdog_module

    engine.shutdown()  # the next watch starts a watchdog with the alarm chosen here
    if request.param == "condition":
        monkeypatch.setattr(watchdog_module, "new_alarm", alarm_module._ConditionAlarm)
    else:
        kernel_alarm = alarm_module.new_alarm()
        kernel_alarm.close()
        if not isinstance(kernel_alarm, alarm_module._KernelAlarm):
            pytest.skip("no timerfd here")
    yield request.param
    engine.shutdown()


async def fast_app(scope: Any, receive: Any, send: Any) -> None:
    await asyncio.sleep(0)


def stalling_for(seconds: float) -> tuple[ASGIApp, list[float]]:
    """An app that sleeps `seconds` on the loop, and when each of its calls began."""
    began: list[float] = []

    async def stalling_app(scope: Any, receive: Any, send: Any) -> None:
        began.append(time.perf_counter())
        time.sleep(seconds)

    return stalling_app, began


async def requests_for(seconds: float, app: ASGIApp) -> None:
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        await serve(app, {"type": "http"})


def test_the_watchdog_sleeps_through_fast_requests(
    alarm: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each wake of the watchdog slows a TestClient's next requests on a virtual machine:
    # polling every 45 ms cost each request 1-2%. Stretches keep its alarm ahead instead.
    looked_at = noting_looks(monkeypatch)
    called_at: list[float] = []

    async def noting_fast_app(scope: Any, receive: Any, send: Any) -> None:
        called_at.append(time.perf_counter())
        await asyncio.sleep(0)

    # A first look 45 ms into a stretch: polling, 22 looks in a second.
    watch = run_watched(0.1, requests_for(1.0, wrap(noting_fast_app)))
    assert not watch.stalls
    # The alarm rings only after 22.5 ms (a quarter of the threshold) without a stretch
    # starting: on a busy machine, the OS keeping the loop thread from a CPU. Each such
    # pause may bring a look or two.
    pauses = sum(later - earlier > 0.02 for earlier, later in itertools.pairwise(called_at))
    assert len(looked_at) <= 5 + 4 * pauses


def test_a_stall_after_fast_requests_is_sampled_by_half_the_threshold(
    alarm: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The fast requests keep moving the alarm later: it must still ring for the stall.
    sampled = noting_samples(monkeypatch)
    stalling_app, stall_began = stalling_for(0.25)

    async def requests() -> None:
        await requests_for(0.3, wrap(fast_app))
        await serve(wrap(stalling_app), {"type": "http"})

    watch = run_watched(0.1, requests())
    (stall,) = watch.stalls
    assert stall.samples >= 2
    # The first look is due 45 ms in: half the threshold, less a switch interval.
    assert first_look_was_due(sampled, stall_began[0]) < 0.05


def test_a_stall_right_after_a_long_one_is_looked_at_by_half_the_threshold(
    alarm: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Looks at a long stretch thin out, the next after half its age: the alarm, set that
    # far ahead, must not keep the next stretch from its first look (seen: a 103 ms stall
    # at a threshold of 20 ms never sampled).
    sampled = noting_samples(monkeypatch)
    long_app, _ = stalling_for(0.6)
    next_app, next_began = stalling_for(0.15)

    async def requests() -> None:
        await serve(wrap(long_app), {"type": "http"})
        await serve(wrap(next_app), {"type": "http"})

    watch = run_watched(0.1, requests())
    assert len(watch.stalls) == 2
    assert first_look_was_due(sampled, next_began[0]) < 0.05


def test_fast_requests_on_one_loop_do_not_put_off_the_look_at_a_stall_on_another(
    alarm: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A live server's loop in a thread stalls while the test's own loop serves fast
    # requests: those must not keep moving the alarm past the server's stall.
    sampled = noting_samples(monkeypatch)
    stalling_app, stall_began = stalling_for(0.4)

    watch = Watch(threshold=0.1)
    engine.begin(watch)
    try:
        asyncio.run(requests_for(0.1, wrap(fast_app)))  # the alarm is ahead of these now
        server = threading.Thread(target=asyncio.run, args=(serve(wrap(stalling_app), {}),))
        server.start()
        asyncio.run(requests_for(0.5, wrap(fast_app)))
        server.join()
    finally:
        engine.end(watch)
    (stall,) = watch.stalls
    assert stall.samples >= 2
    assert first_look_was_due(sampled, stall_began[0]) < 0.05


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork here")
def test_a_forked_child_that_watches_gets_a_watchdog_of_its_own() -> None:
    # The child has the parent's watchdog object but not its thread, and shares its
    # alarm's timer: moving that would put off the parent's looks.
    stalling_app, _ = stalling_for(0.25)

    def stall_sampled() -> bool:
        watch = run_watched(0.1, serve(wrap(stalling_app), {"type": "http"}))
        return len(watch.stalls) == 1 and watch.stalls[0].samples >= 2

    assert stall_sampled()  # the parent's watchdog runs, with its alarm
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # forking with threads
        child = os.fork()
    if child == 0:
        code = 2
        try:
            code = 0 if stall_sampled() else 1
        finally:
            os._exit(code)
    try:
        assert stall_sampled()
    finally:
        _, status = os.waitpid(child, 0)
        engine.shutdown()
    assert os.waitstatus_to_exitcode(status) == 0


def test_a_stretch_spent_starting_a_thread_is_told_from_one_that_blocks() -> None:
    from pytest_loopwatch._stretches import _starting_a_thread

    start = (threading.__file__, 999, "Thread.start", "threading", False)
    wait = (threading.__file__, 327, "Condition.wait", "threading", False)
    user = ("/app/main.py", 12, "handler", "main", True)
    assert _starting_a_thread((user, start, wait))
    assert not _starting_a_thread((user, wait))
    assert not _starting_a_thread((("/app/main.py", 3, "Thread.start", "main", False), wait))


def test_each_correction_is_taken_once() -> None:
    from pytest_loopwatch._stretches import app_time

    # Collector and machine: the collection's wait for a CPU is in the machine's count, so
    # only its CPU time comes off besides (400 ms of app work stays 400 ms, not 200 ms).
    assert app_time(0.8, (0.3, 0.1), 0.3, False) == pytest.approx(0.4)
    # No look, no machine's count: the collection's whole wall time comes off.
    assert app_time(0.5, (0.2, 0.1), None, False) == pytest.approx(0.3)
    # Starting a thread, with the machine's count or a collection beside it: the OS's.
    assert app_time(0.4, (0.0, 0.0), 0.3, True) == 0.0
    assert app_time(0.4, (0.2, 0.2), None, True) == 0.0
    # A count larger than the stretch (a bad reading) leaves nothing, never less.
    assert app_time(0.2, (0.1, 0.1), 0.5, False) == 0.0
    # Nothing to correct: the wall time is the app's.
    assert app_time(0.3, (0.0, 0.0), 0.0, False) == pytest.approx(0.3)


def test_a_look_the_gil_delayed_never_takes_the_whole_stretch_at_its_rate(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # CI: a 300 ms `json.loads` held the GIL, so the watchdog's first look came after it;
    # in the 10 ms measured then, the loop thread waited for a CPU 9, and that rate, put
    # on the 290 ms before, left the stall at 30 ms, unreported.
    from pytest_loopwatch import _stretches
    from pytest_loopwatch._clock import clock
    from pytest_loopwatch._stretches import Look, _time_kept_from_cpu

    thread, native = threading.get_ident(), threading.get_native_id()
    start = clock() - 0.3
    stretch = (start, never_called, None)
    look = Look(stretch, counted_from=(clock() - 0.01, cpu_times(0.29, 0.0, thread=native)))
    monkeypatch.setattr(_stretches, "_limit", 0.1)
    now = cpu_times(0.291, 0.009, 0, native)

    # Counts read as the stretch began measure all of it: the 9 ms waited are the machine's.
    at_start = (start, cpu_times(0.0, 0.0, 0, native), 0.0)
    monkeypatch.setitem(_stretches.counted_at_start, thread, at_start)
    assert _time_kept_from_cpu(thread, stretch, look, now) == pytest.approx(0.009, abs=0.001)
    # Counts read too long before it (more than half the threshold) are not used; nor are
    # another thread's that had the same id.
    stale_counts = [(start - 0.06, cpu_times(0, 0, 0, native)), (start, cpu_times(0, 0, 0, 1))]
    for stale in [(*counts, 0.0) for counts in stale_counts]:
        monkeypatch.setitem(_stretches.counted_at_start, thread, stale)
        # From the look: the rate measured is put on no longer a part before it than was
        # measured, 10 ms: 18 ms in all, not 270.
        assert _time_kept_from_cpu(thread, stretch, look, now) == pytest.approx(0.018, abs=0.002)
    # A look that measured a quiet part puts no share on the part before it; counts read
    # 2 ms before the stretch say the machine took 50 ms: at least 48 of them in it.
    quiet_look = Look(stretch, counted_from=(clock() - 0.01, cpu_times(0.29, 0.05, thread=native)))
    quiet_now = cpu_times(0.3, 0.05, 0, native)
    early = (start - 0.002, cpu_times(0.0, 0.0, 0, native), 0.0)
    monkeypatch.setitem(_stretches.counted_at_start, thread, early)
    assert quiet_look.time_kept_from_cpu(quiet_now) < 0.01
    kept = _time_kept_from_cpu(thread, stretch, quiet_look, quiet_now)
    assert kept == pytest.approx(0.048, abs=0.001)
    # Neither counts nor a look: not known.
    monkeypatch.delitem(_stretches.counted_at_start, thread)
    assert _time_kept_from_cpu(thread, stretch, None, now) is None


def test_a_stretch_unseen_while_another_thread_held_the_gil_is_located_where_it_ended(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A new thread's `json.loads` keeps the GIL; the watchdog waits for it as the loop
    # thread does, and the loop thread may take it first and end the stretch unseen.
    from pytest_loopwatch import _stretches
    from pytest_loopwatch._clock import clock
    from pytest_loopwatch._records import GIL_HELD_ELSEWHERE

    recorded: list[tuple[float, object, object]] = []

    def record(
        _: object,
        duration: float,
        samples: object,
        __: object = None,
        family: object = None,
        ___: object = None,
        /,
    ) -> None:
        recorded.append((duration, samples, family))

    async def hands_the_work_on() -> None:
        await asyncio.sleep(0)  # HANDED-ON

    thread, native = threading.get_ident(), threading.get_native_id()
    monkeypatch.setattr(_stretches, "_limit", 0.1)
    # (the loop thread ran, it waited for a CPU, the process's other threads ran), seconds
    held_elsewhere, slept, computed = (0.01, 0.0, 0.25), (0.01, 0.0, 0.0), (0.29, 0.0, 0.0)
    for ran, waited, others_ran in (held_elsewhere, slept, computed):
        steps = hands_the_work_on()
        steps.send(None)
        stretch = (clock() - 0.3, record, None)
        counted = (stretch[0], cpu_times(0, 0, 0, native), time.process_time() - others_ran - ran)
        monkeypatch.setitem(_stretches.counted_at_start, thread, counted)
        counts_now = cpu_times(ran, waited, 0, native)
        monkeypatch.setattr(_stretches, "read_cpu_times", lambda _, now=counts_now: now)
        _stretches.finish_stretch(thread, stretch, steps)
        steps.close()

    held, asleep, computing = recorded
    line = line_of(Path(__file__), "HANDED-ON")
    assert held[2] == GIL_HELD_ELSEWHERE
    assert held[1] == Counter(
        {((__file__, line, hands_the_work_on.__qualname__, __name__, True),): 1}
    )
    # A loop thread that slept lets the watchdog look: unseen, it is not told where. One that
    # computed held the GIL itself.
    assert asleep[1:] == (None, None)
    assert computing[1:] == (None, None)
    assert all(duration > 0.25 for duration, _, _ in recorded)


def test_a_late_beat_is_the_holders_request_once_no_correction_explains_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The loop idled while a request's worker kept the GIL: a beat 0.4 s late, each count
    # given, each correction taken away in turn.
    from pytest_loopwatch import _beat, _stretches
    from pytest_loopwatch._records import GIL_HELD_ELSEWHERE

    recorded: list[tuple[object, float, object]] = []

    def record(
        context: object,
        duration: float,
        _: object,
        __: object = None,
        family: object = None,
        ___: object = None,
        /,
    ) -> None:
        recorded.append((context, duration, family))

    monkeypatch.setattr(_stretches, "last_call_on", {})
    parked, release = threading.Event(), threading.Event()

    def park() -> None:
        parked.set()
        release.wait()

    def works_for(cell: list[object]) -> None:
        # As anyio's worker holds it: the context, a local of the frame that runs in it.
        context = contextvars.copy_context()
        context.run(_stretches.current_work.set, cell)  # type: ignore[arg-type]
        context.run(park)

    worker = threading.Thread(target=works_for, args=([(record, "the request")],))
    idle = threading.Thread(target=works_for, args=([None],))
    monkeypatch.setattr(_stretches, "_limit", 0.1)
    monkeypatch.setattr(_beat, "_reported", {})
    monkeypatch.setattr(_stretches, "long_stretch_ended", {})
    try:
        for thread in (worker, idle):
            parked.clear()
            thread.start()
            parked.wait()
        natives = {t.ident: t.native_id for t in (worker, idle) if t.ident and t.native_id}

        def late_beat(
            *,
            holder: threading.Thread = worker,
            holder_ran: float = 0.4,
            loop_ran: float = 0.005,
            loop_waited: float = 0.0,
            asked: int = 80,
            collected: float = 0.0,
            stretch_ended: float | None = None,
            imported: bool = False,
            helper_asked: int = 0,
        ) -> list[tuple[object, float, object]]:
            recorded.clear()
            _beat._reported.clear()
            _stretches.long_stretch_ended.clear()
            if stretch_ended is not None:
                _stretches.long_stretch_ended[1] = stretch_ended
            assert holder.ident is not None
            # trio's idle workers, one waiting for I/O for a guest run; the holder among
            # them once it is back in the cache, its own times on a CPU not asks.
            helpers_before = {77: 0, natives[holder.ident]: 0}
            before = _beat._Counts(
                10.0,
                CpuTimes(1, 0, 0, 0.0, 0),
                {i: (n, 1.0) for i, n in natives.items()},
                5.0,
                {},
                helpers_before,
            )
            after = _beat._Counts(
                10.5,
                CpuTimes(1, round(loop_ran * 1e9), round(loop_waited * 1e9), 0.0, asked),
                {i: (n, 1.0 + holder_ran * (i == holder.ident)) for i, n in natives.items()},
                5.0 + collected,
                {holder.ident: 1} if imported else {},
                {77: helper_asked, natives[holder.ident]: 500},
            )
            beat = _beat._Beat(0, thread=1, native_thread=1, counts=before)
            _beat._look_for_a_holder(beat, before, after, late=0.4)
            return list(recorded)

        [(context, duration, family)] = late_beat()
        assert (context, family) == ("the request", GIL_HELD_ELSEWHERE)
        assert duration == pytest.approx(0.4)
        # The collector's time, the machine's, the loop thread's own running; a loop thread
        # that slept instead of asking for the GIL; a stretch that timed the wait already; a
        # holder that imported meanwhile, that ran under the threshold (the machine kept it
        # from a CPU), or that works for no request.
        assert late_beat(collected=0.35) == []
        assert late_beat(loop_waited=0.35) == []
        assert late_beat(loop_ran=0.2) == []
        assert late_beat(asked=2) == []
        # A trio guest run: its thread waiting for I/O asked for the GIL instead.
        assert len(late_beat(asked=2, helper_asked=80)) == 1
        assert late_beat(stretch_ended=10.2) == []
        assert late_beat(imported=True) == []
        assert late_beat(holder_ran=0.05) == []
        assert late_beat(holder=idle) == []
        # A holder whose context no longer says (it ran on past its call): the call that
        # began last on the loop, while it is in flight, without a stack.
        monkeypatch.setitem(_stretches.last_call_on, 1, [(record, "the last call")])
        [(context, _, family)] = late_beat(holder=idle)
        assert (context, family) == ("the last call", GIL_HELD_ELSEWHERE)
        monkeypatch.setitem(_stretches.last_call_on, 1, [None])
        assert late_beat(holder=idle) == []
        # Partly the collector's, or the machine's: the rest is still the app's.
        [(_, duration, _)] = late_beat(collected=0.1)
        assert duration == pytest.approx(0.3)
        [(_, duration, _)] = late_beat(holder_ran=0.2)
        assert duration == pytest.approx(0.2)
    finally:
        release.set()
        worker.join()
        idle.join()


def test_a_collection_under_way_counts_for_the_collector_up_to_now(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A collection that calls back into Python lets the loop thread take the GIL before it
    # ends: a beat then must take off what it has run so far, not nothing.
    from pytest_loopwatch import _stretches

    now = [100.0]
    monkeypatch.setattr(_stretches, "clock", lambda: now[0])
    monkeypatch.setattr(_stretches, "collected_anywhere", 2.0)
    monkeypatch.setattr(_stretches, "_collecting", False)
    monkeypatch.setattr(_stretches, "running_stretches", {})
    _stretches._on_collection("start", {})
    now[0] = 101.25
    assert _stretches.collected_so_far() == pytest.approx(3.25)
    now[0] = 101.5
    _stretches._on_collection("stop", {})
    now[0] = 105.0
    assert _stretches.collected_so_far() == pytest.approx(3.5)


def test_nothing_kept_for_connections_threads_and_loops_outlives_them() -> None:
    # A real project's endpoints opened and closed a SQLite connection per request: each
    # waited for a trace callback it never got, and every audit event of the process then
    # walked all of them (300 requests: 20,000 `id()` calls took 442-786 ms, not 3 ms).
    import sqlite3

    from pytest_loopwatch import _stretches
    from pytest_loopwatch._calls import call_catcher

    async def app_with_a_connection(scope: Any, receive: Any, send: Any) -> None:
        await asyncio.to_thread(lambda: sqlite3.connect(":memory:").close())

    def connections_in_a_thread() -> None:
        for _ in range(10):
            sqlite3.connect(":memory:").close()

    watch = Watch(threshold=0.05)
    engine.begin(watch)
    try:
        for _ in range(100):  # a loop, and a worker thread, per request
            asyncio.run(serve(wrap(app_with_a_connection), {"type": "http"}))
        threads = [threading.Thread(target=connections_in_a_thread) for _ in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        sqlite3.connect(":memory:").close()  # on this thread, which lives on
        assert call_catcher.bookkeeping_size() > 0  # it does keep some while they run
    finally:
        engine.end(watch)
    try:
        id(watch)  # this thread's next audit event: its closed connection goes
        assert call_catcher.bookkeeping_size() == 0
        living = {thread.ident for thread in threading.enumerate()}
        assert set(_stretches.counted_at_start) <= living
        assert not _stretches.last_call_on
        assert not watch.stalls
    finally:
        engine.shutdown()  # no watchdog thread left for the tests after


def test_loopwatchs_own_wrapping_and_restoring_are_not_taken_for_a_tests_fakes() -> None:
    # A pytester session's engine inside a watched test wraps and restores the same
    # modules: heard as a test's assignments, its wrappers became "fakes" that outlived it.
    # In a process of its own: a catcher's audit hook stays for the process's life.
    code = """
import os, time
import requests
from pytest_loopwatch._calls import CallCatcher

before = time.sleep, os.stat, requests.get, requests.Session.request, type(time)
outer, inner = CallCatcher(), CallCatcher()
outer.catch(())
inner.catch(())
inner.stop()
outer.stop()
assert (time.sleep, os.stat, requests.get, requests.Session.request, type(time)) == before
"""
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_stall_the_watchdog_saw_only_after_its_blocking_call_is_that_calls() -> None:
    # Seen in CI under load: the watchdog's first look at a 300 ms `time.sleep` came as the
    # stretch was ending, in a weakref callback the loop ran after the endpoint returned. The
    # stall was reported at `_weakrefset.py` beside the sleep's call: two findings, one wrong.
    import _weakrefset

    from pytest_loopwatch._records import RawStall, Request

    app = (__file__, line_of(Path(__file__), "SLEEPS"), "sleeps", "tests.app", True)
    late = (_weakrefset.__file__, 39, "_remove", "_weakrefset", False)
    request = Request("http", "GET", "/sleep", None)
    common: dict[str, Any] = {"threshold": 0.1, "request": request, "route": "/sleep"}
    watch = Watch(0.1)
    watch.record(
        RawStall(
            duration=0.0,
            endpoint=None,
            samples=Counter({(app,): 1}),
            call="time.sleep(0.3)",
            family="sleep",
            stretch_started=1.0,
            **common,
        )
    )
    watch.record(
        RawStall(
            duration=0.306,
            endpoint=None,
            samples=Counter({(late,): 1}),
            stretch_started=1.0,
            **common,
        )
    )
    watch.record(  # another stretch's stall, seen at the same late line, stays its own
        RawStall(
            duration=0.2,
            endpoint=None,
            samples=Counter({(late,): 1}),
            stretch_started=2.0,
            **common,
        )
    )
    slept, other = watch.stalls
    assert (slept.kind, slept.call, slept.duration) == ("stall", "time.sleep(0.3)", 0.306)
    assert slept.location is not None
    assert (slept.location.file, slept.location.line) == (app[0], app[1])
    assert other.location is not None
    assert other.location.file == late[0]
    assert other.call is None


def sleeps() -> None:
    time.sleep(0)  # SLEEPS
