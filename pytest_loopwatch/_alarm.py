"""The watchdog's alarm: set from any thread, heard only by the watchdog when it rings.

While requests are fast the watchdog has nothing to look at, and waking it costs more
than its look: on a virtual machine any thread's wake slows a TestClient's thread
hand-offs for a while after (measured: a process waking 40 times a second cost each
request 3.8%). So the stretches keep the alarm ahead of themselves, and it rings only
for a stretch that may be long. That needs an alarm a thread can move later without
waking the one that waits for it: a timer of the OS's (Linux's timerfd). Elsewhere a
condition stands in: an alarm moved later still wakes its waiter at the old time, which
then waits on, as a polling watchdog would.
"""

from __future__ import annotations

import os
import threading
from typing import Protocol

from ._clock import clock


class Alarm(Protocol):
    def ring_at(self, when: float) -> None:
        """Ring at `when` on `_clock.clock`, instead of when it was set for; from any thread."""

    def wait(self) -> None:
        """Return when the alarm rings."""

    def close(self) -> None:
        """Let go of what the alarm holds; nobody waits for it any more."""


class _KernelAlarm:
    """A Linux timerfd: setting it is one system call and wakes nobody."""

    _CLOCK_MONOTONIC = 1
    _TFD_CLOEXEC = 0o2000000

    def __init__(self) -> None:
        import ctypes  # only once watching starts

        class Timespec(ctypes.Structure):
            _fields_ = (("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long))

        class Itimerspec(ctypes.Structure):
            _fields_ = (("it_interval", Timespec), ("it_value", Timespec))

        # PyDLL keeps the GIL through the call: setting a timer never blocks, and a
        # stretch that let go of the GIL could wait a switch interval to get it back.
        libc = ctypes.PyDLL(None, use_errno=True)
        create = libc.timerfd_create
        create.argtypes = (ctypes.c_int, ctypes.c_int)
        create.restype = ctypes.c_int
        self._settime = libc.timerfd_settime
        self._settime.argtypes = (
            ctypes.c_int,
            ctypes.c_int,
            ctypes.POINTER(Itimerspec),
            ctypes.c_void_p,
        )
        self._settime.restype = ctypes.c_int
        self._new_setting = Itimerspec
        self._get_errno = ctypes.get_errno
        self._descriptor = create(self._CLOCK_MONOTONIC, self._TFD_CLOEXEC)
        if self._descriptor < 0:
            raise OSError(self._get_errno(), "timerfd_create")

    def ring_at(self, when: float) -> None:
        # Relative: no need for `clock` and the timer to share a clock.
        seconds = max(when - clock(), 1e-6)  # zero would stop the timer instead
        setting = self._new_setting()
        setting.it_value.tv_sec = int(seconds)
        setting.it_value.tv_nsec = int(seconds % 1 * 1e9)
        if self._settime(self._descriptor, 0, setting, None) < 0:
            raise OSError(self._get_errno(), "timerfd_settime")

    def wait(self) -> None:
        os.read(self._descriptor, 8)  # the number of rings since the last read

    def close(self) -> None:
        os.close(self._descriptor)


class _ConditionAlarm:
    """Where the OS has no timer to move: a condition the setter notifies if it comes sooner."""

    def __init__(self) -> None:
        self._changed = threading.Condition(threading.Lock())
        self._due: float | None = None

    def ring_at(self, when: float) -> None:
        with self._changed:
            sooner = self._due is None or when < self._due
            self._due = when
            if sooner:
                self._changed.notify()

    def wait(self) -> None:
        with self._changed:
            while True:
                left = None if self._due is None else self._due - clock()
                if left is not None and left <= 0:
                    self._due = None
                    return
                # A lock's timed wait, on the C monotonic clock: a test that patches the
                # `time` module cannot make the watchdog sleep forever.
                self._changed.wait(left)

    def close(self) -> None:
        pass


def new_alarm() -> Alarm:
    """The OS's timer where there is one to use, else the condition."""
    try:
        return _KernelAlarm()
    except (ImportError, OSError, AttributeError, TypeError):
        return _ConditionAlarm()
