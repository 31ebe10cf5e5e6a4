"""The one thread that looks at long stretches while they run, to say where they block.

Timing says how long; only a look at the loop thread's stack during the stretch can say
where. The watchdog can look only when the loop thread lets go of the GIL: at once when
it sleeps or does I/O, at the next switch interval (5 ms) in pure-Python loops, and right
after a C call that holds the GIL returns, which is still the blocking line.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable
from types import FrameType

from ._alarm import Alarm, new_alarm
from ._clock import clock
from ._contention import read_cpu_times
from ._internal_errors import note
from ._records import SampledStack
from ._stretches import (
    Look,
    look_at,
    running_stretches,
    set_alarm_keeper,
    set_alarm_stale_after,
    stopped_in_a_debugger,
)
from ._stretches import (
    sample_stack as sample_stack,  # the benchmarks and tests time its calls here
)
from ._thread_frames import thread_frames

_TIMER_FILE = sample_stack.__code__.co_filename
_THREADING_FILE = threading.__file__

_LONGEST_GAP = 0.5
"""Seconds between two looks at a stretch at most. Looks thin out as a stretch grows
(the next after half its age): each takes the GIL from a computing loop thread, and on a
busy machine the loop thread waits besides for the watchdog to be given a CPU. Looking
every eighth of the threshold put 20-50 ms of those waits into a 300 ms stall under load
(20 looks); thinned out, 6 looks."""


class Watchdog:
    """Samples every stretch that has run for `look_after` seconds, then every `interval`.

    It wakes only when its alarm rings. Each stretch that starts keeps the alarm at least
    half of `look_after` ahead of itself; under a stream of fast requests it never rings.
    """

    def __init__(self) -> None:
        self._timing: tuple[float, float] | None = None
        """(look_after, interval); None: paused."""
        self._alarm: Alarm | None = None
        self._alarm_at = 0.0
        """When the alarm rings; 0: not set, and the next stretch sets it."""
        # Setting the alarm is read, decide, set: the watchdog and the loop threads take
        # turns. Taken about twice per `look_after` while requests run.
        self._setting = threading.Lock()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._hang_after: float | None = None
        """Seconds after which a stretch still running is a hang, shown at once."""
        self._on_hang: Callable[[str], None] | None = None
        """Shows a hang's description while it lasts (on the terminal, past the capture)."""

    def show_hangs(
        self, after: float | None, show: Callable[[str], None] | None
    ) -> tuple[float | None, Callable[[str], None] | None]:
        """Show a stretch still running after `after` seconds through `show`; returns the
        previous pair, for a session inside a session (pytester) to hand back."""
        previous = (self._hang_after, self._on_hang)
        self._hang_after, self._on_hang = after, show
        return previous

    def watch(self, threshold: float) -> None:
        """Look at stretches nearly half of `threshold` old; start the thread if needed."""
        # The first look comes a switch interval early: against a computing loop thread,
        # which lets go of the GIL only then, it still happens by half the threshold,
        # long before the stretch becomes a stall. Looks follow every eighth of the
        # threshold.
        look_after = max(threshold / 2 - sys.getswitchinterval(), threshold / 4)
        if self._alarm is None:
            self._alarm = new_alarm()
        with self._setting:
            self._timing = (look_after, max(threshold / 8, 0.001))
            # Set for the timing before, if at all: the next stretch sets it anew.
            self._alarm_at = 0.0
            set_alarm_stale_after(-math.inf)
            set_alarm_keeper(self._keep_alarm_ahead)
            if running_stretches:  # begun before this watch (a live server's): a look now
                self._set_alarm(clock(), look_after)
        if self._thread is None:
            self._stopping = False
            self._thread = threading.Thread(
                target=self._run, args=(self._alarm,), name="loopwatch-watchdog", daemon=True
            )
            self._thread.start()

    def pause(self) -> None:
        """Sleep until the next `watch`, costing nothing meanwhile."""
        with self._setting:
            self._timing = None
            set_alarm_stale_after(math.inf)

    def stop(self) -> None:
        """End the thread; `watch` starts a new one."""
        thread, alarm = self._thread, self._alarm
        if thread is None or alarm is None:
            return
        self._thread = self._alarm = None
        with self._setting:
            # Paused first, so that no stretch sets the alarm later again.
            self._timing = None
            set_alarm_stale_after(math.inf)
            self._stopping = True
            try:
                alarm.ring_at(clock())
                rung = True
            except Exception as error:  # noqa: BLE001 - closing the alarm may end its wait
                note(f"stopping the watchdog: {error!r}")
                rung = False
        if rung:
            thread.join()
            alarm.close()
        else:
            alarm.close()  # the last way to end its wait
            thread.join(timeout=1.0)  # past that, a daemon left waiting for nothing

    def forget_parent(self) -> None:
        """In a child the process forked: the thread is the parent's, and the alarm's
        timer is one the child would move for the parent too."""
        self._setting = threading.Lock()  # the parent's may have been held by any thread
        self._timing = None
        set_alarm_stale_after(math.inf)
        alarm, self._thread, self._alarm = self._alarm, None, None
        if alarm is not None:
            with contextlib.suppress(OSError):
                alarm.close()

    def _set_alarm(self, when: float, look_after: float) -> None:
        """With `_setting` held."""
        self._alarm_at = when
        # An alarm further ahead than a stretch starting now may wait for its first look (a
        # long stretch's looks thin out) is stale at once: each stretch that starts brings
        # it nearer.
        far = when > clock() + look_after
        set_alarm_stale_after(-math.inf if far else when - look_after / 2)
        try:
            if self._alarm is not None:
                self._alarm.ring_at(when)
        except Exception as error:  # noqa: BLE001 - a stretch's timing goes on without looks
            note(f"setting the watchdog's alarm: {error!r}")

    def _keep_alarm_ahead(self, start: float) -> None:
        """On a loop thread, as the stretch that started at `start` begins."""
        with self._setting:
            timing = self._timing
            if timing is None:
                return
            look_after = timing[0]
            alarm_at = self._alarm_at
            if alarm_at:
                if alarm_at <= start:
                    return  # it has rung: the watchdog, about to look, finds this stretch
                if alarm_at > start + look_after:
                    pass  # too far ahead for this stretch's first look: brought nearer
                elif alarm_at >= start + look_after / 2:
                    return  # set far enough ahead since this stretch read it
                elif len(running_stretches) > 1:
                    return  # another thread's stretch may need it this soon
            self._set_alarm(start + look_after, look_after)

    def _run(self, alarm: Alarm) -> None:
        while True:
            try:
                alarm.wait()
            except OSError as error:  # the alarm is gone: stretches are still timed, unseen
                note(f"watchdog: waiting for its alarm: {error!r}")
                return
            if self._stopping:
                return
            with self._setting:
                timing = self._timing
                if timing is None:
                    continue
                # Before looking: a stretch that begins from here on sets the alarm itself.
                self._alarm_at = 0.0
                set_alarm_stale_after(-math.inf)
            look_after, interval = timing
            try:
                next_look = self._sample_long_stretches(look_after, interval)
            except Exception as error:  # noqa: BLE001 - the watchdog must outlive its bugs
                note(f"watchdog: {error!r}")
                next_look = clock() + interval
            if next_look is None:
                continue
            with self._setting:
                if self._timing is timing and not 0.0 < self._alarm_at <= next_look:
                    self._set_alarm(next_look, look_after)

    def _sample_long_stretches(self, look_after: float, interval: float) -> float | None:
        """Sample the stretches older than `look_after`; return when to look again, or
        None if no stretch runs (the next one sets the alarm).

        A look every `interval` follows only while a stretch is that old; a younger one
        gets its look when it turns `look_after` old.
        """
        now = clock()
        next_look = math.inf
        for thread, stretch in list(running_stretches.items()):
            age = now - stretch[0]
            if age < look_after:
                next_look = min(next_look, stretch[0] + look_after)
                continue
            next_look = min(next_look, now + max(interval, min(age / 2, _LONGEST_GAP)))
            look = look_at(thread, stretch)
            frame = thread_frames().get(thread)
            stack = sample_stack(frame)
            if stack and stack[0][0] == _TIMER_FILE:
                continue  # the stretch is over, and its timer is reporting it
            if running_stretches.get(thread) is not stretch:
                continue
            look.samples[stack] += 1
            if stopped_in_a_debugger.get(thread) is stretch:
                continue  # at a debugger's prompt: no hang, and nothing printed into it
            if self._hangs(look, now) and self._on_hang is not None:
                self._on_hang(_describe_hang(now - stretch[0], stack))
            if look.counted_from is None:
                # The machine's share of the stretch is known from here on. After the
                # sample, never before: finding the thread may wait for a lock, letting go
                # of the GIL, and a loop thread that held it in a C call (json.loads) would
                # end its stretch meanwhile, unseen.
                native_id = _native_id(thread)
                look.counted_from = (
                    clock(),
                    None if native_id is None else read_cpu_times(native_id),
                )
                look.process_cpu_from = time.process_time()
                look.started_thread_ran = _started_thread_ran(frame)
        if next_look == math.inf:
            return None
        return max(next_look, now + 0.0005)

    def _hangs(self, look: Look, now: float) -> bool:
        """Whether the stretch has just become a hang; each is shown once."""
        if self._hang_after is None or look.hang_shown or now - look.stretch[0] < self._hang_after:
            return False
        look.hang_shown = True
        return True


def _started_thread_ran(frame: FrameType | None) -> float | None:
    """Seconds of CPU the thread the loop thread is starting has run, if it is starting
    one (`Thread.start`, waiting): a new thread that already ran most of the stretch holds
    the GIL (the loop thread cannot get it back), one that has not run waits for the OS."""
    while frame is not None:
        code = frame.f_code
        if code.co_name == "start" and code.co_filename == _THREADING_FILE:
            started = frame.f_locals.get("self")
            native_id = getattr(started, "native_id", None)
            times = None if native_id is None else read_cpu_times(native_id)
            return 0.0 if times is None else times.ran / 1e9
        frame = frame.f_back
    return None


def _native_id(thread: int) -> int | None:
    """The OS's id of the thread `threading` knows as `thread`, for its CPU counts."""
    for known in threading.enumerate():
        if known.ident == thread:
            return known.native_id
    return None


def _describe_hang(seconds: float, stack: SampledStack) -> str:
    """Where app code is now, from its coroutine inwards, as a traceback reads."""
    lines = [
        f"loopwatch: app code has held the event loop for {seconds:.1f} s and still does; "
        "where it is now, most recent call last:"
    ]
    frames = [traceback.FrameSummary(frame[0], frame[1], frame[2]) for frame in stack]
    lines.extend(line.rstrip("\n") for line in traceback.format_list(frames))
    return "\n".join(lines)


watchdog = Watchdog()
"""The process's one watchdog."""

if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=watchdog.forget_parent)
