"""The one thread that looks at long stretches while they run, to say where they block.

Timing says how long; only a look at the loop thread's stack during the stretch can say
where. The watchdog can look only when the loop thread lets go of the GIL: at once when
it sleeps or does I/O, at the next switch interval (5 ms) in pure-Python loops, and right
after a C call that holds the GIL returns, which is still the blocking line.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import traceback
from collections.abc import Callable
from types import FrameType

from . import stretches
from .contention import read_cpu_times
from .stretches import STRETCH_CODE, Look, SampledStack, clock, looks, running_stretches

_MAX_DEPTH = 256
_TIMER_FILE = stretches.__file__


def sample_stack(frame: FrameType | None) -> SampledStack:
    """The frames from the app's coroutine inwards, outermost first."""
    stack: list[tuple[str, int, str]] = []
    while frame is not None and len(stack) < _MAX_DEPTH:
        code = frame.f_code
        if code is STRETCH_CODE:
            break
        stack.append((code.co_filename, frame.f_lineno or code.co_firstlineno, code.co_qualname))
        frame = frame.f_back
    stack.reverse()
    return tuple(stack)


class Watchdog:
    """Samples every stretch that has run for `look_after` seconds, then every `interval`."""

    def __init__(self) -> None:
        self._timing: tuple[float, float] | None = None
        """(look_after, interval); None: paused."""
        self._last_timing: tuple[float, float] | None = None
        """The timing of the last `watch`, kept through a pause."""
        self._asleep_until_nudged = True
        """Whether the thread waits for a nudge, not for its next look (or is not started)."""
        # Locked while nobody has a reason to wake the watchdog; released to wake it.
        # A bare lock: its timed acquire is all the watchdog runs between two looks.
        self._nudge = threading.Lock()
        self._nudge.acquire()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.errors: list[str] = []
        self.hang_after: float | None = None
        """Seconds after which a stretch still running is a hang, shown at once."""
        self.on_hang: Callable[[str], None] | None = None
        """Shows a hang's description while it lasts (on the terminal, past the capture)."""

    def watch(self, threshold: float) -> None:
        """Look at stretches nearly half of `threshold` old; start the thread if needed."""
        # The first look comes a switch interval early: against a computing loop thread,
        # which lets go of the GIL only then, it still happens by half the threshold,
        # long before the stretch becomes a stall. Looks follow every eighth of the
        # threshold. Not sooner: while requests are fast the watchdog wakes once per
        # `look_after`, and on a virtual machine every wake of any thread slows a
        # TestClient's thread hand-offs for a while after (measured with another process
        # waking: 40 times a second cost each request 3.8%, 20 times 1.9%).
        look_after = max(threshold / 2 - sys.getswitchinterval(), threshold / 4)
        timing = (look_after, max(threshold / 8, 0.001))
        self._timing = timing
        # One watch right after another with the same timing (the next test) finds the
        # thread still sleeping until its next look: a nudge would only take the GIL
        # from the loop thread as the test begins.
        if self._asleep_until_nudged or timing != self._last_timing:
            self._wake()
        self._last_timing = timing
        if self._thread is None:
            self._stopping = False
            self._thread = threading.Thread(
                target=self._run, name="loopwatch-watchdog", daemon=True
            )
            self._thread.start()

    def pause(self) -> None:
        """Sleep until the next `watch`, costing nothing meanwhile."""
        self._timing = None

    def stop(self) -> None:
        """End the thread; `watch` starts a new one."""
        thread = self._thread
        if thread is None:
            return
        self._stopping = True
        self._wake()
        thread.join()
        self._thread = None
        self._asleep_until_nudged = True

    def _wake(self) -> None:
        with contextlib.suppress(RuntimeError):  # woken already, and not yet awake
            self._nudge.release()

    def _run(self) -> None:
        sleep: float | None = None
        while True:
            # A lock's timed wait runs on the C monotonic clock, so a test that patches
            # the `time` module cannot make the watchdog sleep forever.
            self._nudge.acquire(timeout=-1 if sleep is None else sleep)
            # Before reading the timing: a `watch` from here on nudges the thread, which
            # may be about to wait for a nudge.
            self._asleep_until_nudged = True
            timing = self._timing
            if self._stopping:
                return
            if timing is None:
                sleep = None
                continue
            self._asleep_until_nudged = False
            look_after, interval = timing
            try:
                sleep = self._sample_long_stretches(look_after, interval)
            except Exception as error:  # noqa: BLE001 - the watchdog must outlive its bugs
                self.errors.append(f"watchdog: {error!r}")
                sleep = interval

    def _sample_long_stretches(self, look_after: float, interval: float) -> float:
        """Sample the stretches older than `look_after`; return when to look again.

        Each wake costs the loop thread a GIL hand-off: the watchdog sleeps until the
        oldest running stretch turns `look_after` old, and no stretch that starts later
        can turn so before. A look every `interval` follows only while one is that old.
        """
        now = clock()
        sleep = look_after
        for thread, stretch in list(running_stretches.items()):
            age = now - stretch[0]
            if age < look_after:
                sleep = min(sleep, look_after - age)
                continue
            sleep = min(sleep, interval)
            look = looks.get(thread)
            if look is None or look.stretch is not stretch:
                look = Look(stretch)
                looks[thread] = look
            stack = sample_stack(sys._current_frames().get(thread))
            if stack and stack[0][0] == _TIMER_FILE:
                continue  # the stretch is over, and its timer is reporting it
            if running_stretches.get(thread) is not stretch:
                continue
            look.samples[stack] += 1
            if self._hangs(look, now) and self.on_hang is not None:
                self.on_hang(_describe_hang(now - stretch[0], stack))
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
        return max(sleep, 0.0005)

    def _hangs(self, look: Look, now: float) -> bool:
        """Whether the stretch has just become a hang; each is shown once."""
        if self.hang_after is None or look.hang_shown or now - look.stretch[0] < self.hang_after:
            return False
        look.hang_shown = True
        return True


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
    frames = [traceback.FrameSummary(file, line, function) for file, line, function in stack]
    lines.extend(line.rstrip("\n") for line in traceback.format_list(frames))
    return "\n".join(lines)


watchdog = Watchdog()
"""The process's one watchdog."""
