"""The one thread that looks at long stretches while they run, to say where they block.

Timing says how long; only a look at the loop thread's stack during the stretch can say
where. The watchdog can look only when the loop thread lets go of the GIL: at once when
it sleeps or does I/O, at the next switch interval (5 ms) in pure-Python loops, and right
after a C call that holds the GIL returns, which is still the blocking line.
"""

from __future__ import annotations

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
    """Samples every stretch that has run for `look_after` seconds, every `interval`."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._look_after: float | None = None
        self._interval = 0.025
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.errors: list[str] = []
        self.hang_after: float | None = None
        """Seconds after which a stretch still running is a hang, shown at once."""
        self.on_hang: Callable[[str], None] | None = None
        """Shows a hang's description while it lasts (on the terminal, past the capture)."""

    def watch(self, threshold: float) -> None:
        """Look at stretches longer than a quarter of `threshold`; start the thread if needed."""
        with self._changed:
            # Looking at stretches older than a quarter of the threshold, every eighth of
            # it, puts the first sample within 3/8 of the threshold plus a switch interval
            # (a CPU-bound loop thread lets go of the GIL only then): before the stretch
            # becomes a stall. Each look costs the loop thread a GIL hand-off.
            self._look_after = threshold / 4
            self._interval = max(threshold / 8, 0.001)
            self._changed.notify()
        if self._thread is None:
            self._stopping = False
            self._thread = threading.Thread(
                target=self._run, name="loopwatch-watchdog", daemon=True
            )
            self._thread.start()

    def pause(self) -> None:
        """Sleep until the next `watch`, costing nothing meanwhile."""
        with self._changed:
            self._look_after = None

    def stop(self) -> None:
        """End the thread; `watch` starts a new one."""
        thread = self._thread
        if thread is None:
            return
        with self._changed:
            self._stopping = True
            self._changed.notify()
        thread.join()
        self._thread = None

    def _run(self) -> None:
        while True:
            with self._changed:
                while self._look_after is None and not self._stopping:
                    self._changed.wait()
                if self._stopping:
                    return
                # Condition.wait times out on the C monotonic clock, so a test that
                # patches the `time` module cannot make the watchdog sleep forever.
                self._changed.wait(self._interval)
                look_after = self._look_after
            if look_after is not None:
                try:
                    self._sample_long_stretches(look_after)
                except Exception as error:  # noqa: BLE001 - the watchdog must outlive its bugs
                    self.errors.append(f"watchdog: {error!r}")

    def _sample_long_stretches(self, look_after: float) -> None:
        now = clock()
        for thread, stretch in list(running_stretches.items()):
            if now - stretch[0] < look_after:
                continue
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
                # sample, never before: reading releases the GIL, and a loop thread that
                # held it in a C call (json.loads) would end its stretch meanwhile, unseen.
                look.counted_from = (clock(), read_cpu_times())

    def _hangs(self, look: Look, now: float) -> bool:
        """Whether the stretch has just become a hang; each is shown once."""
        if self.hang_after is None or look.hang_shown or now - look.stretch[0] < self.hang_after:
            return False
        look.hang_shown = True
        return True


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
