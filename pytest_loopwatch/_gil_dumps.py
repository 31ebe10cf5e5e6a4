"""Where a thread holding the GIL is: every thread's stack, dumped from C on a timer.

A loop thread inside one long C call that holds the GIL (`json.loads` of a big document,
a catastrophic regex) keeps the watchdog, a Python thread, from looking until the call
returns; a stretch that ends soon after, or a loop thread waiting for a new thread that
holds the GIL, then goes unsampled. faulthandler dumps the Python stack of every thread
from a signal handler, reading the frames without the GIL. A second kernel timer, set
with the watchdog's alarm but a little later, sends that signal to the watchdog thread
alone: a watchdog that got the GIL in time has set the timer later again, and nothing is
dumped. Linux only (timer_create, SIGEV_THREAD_ID), and only with a real-time signal
nobody handles; elsewhere nothing is dumped.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import os
import re
import signal
import threading
from typing import TypeAlias

from ._clock import clock
from ._internal_errors import note

DumpedFrame: TypeAlias = tuple[str, int, str]
"""(file, line, function name) as faulthandler writes them."""

DumpedStacks: TypeAlias = dict[int, list[DumpedFrame]]
"""Thread id (`threading.get_ident`) -> its frames, innermost first."""

_KEPT_BYTES = 1 << 20
"""The dumps' file is emptied once it is larger than this."""

_THREAD_LINE = re.compile(rb"^(?:Current thread|Thread) 0x([0-9a-f]+) \(most recent call first\):$")
_FRAME_LINE = re.compile(rb'^  File "(.*)", line (\d+) in (.*)$')


class GilDumps:
    """A timer whose ring dumps every thread's stack into a file, and the dumps it made."""

    _CLOCK_MONOTONIC = 1
    _SIGEV_THREAD_ID = 4

    def __init__(self, watchdog_thread: int) -> None:
        import ctypes
        import faulthandler
        import tempfile

        self._signal = signal.SIGRTMAX - 2
        if signal.getsignal(self._signal) not in (signal.SIG_DFL, None):
            raise OSError("the real-time signal is taken")

        class Timespec(ctypes.Structure):
            _fields_ = (("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long))

        class Itimerspec(ctypes.Structure):
            _fields_ = (("it_interval", Timespec), ("it_value", Timespec))

        class Sigevent(ctypes.Structure):
            # glibc's struct sigevent: the value, the signal, how to notify, then a union
            # whose first member, for SIGEV_THREAD_ID, is the thread's id; 64 bytes.
            _fields_ = (
                ("value", ctypes.c_void_p),
                ("signo", ctypes.c_int),
                ("notify", ctypes.c_int),
                ("thread", ctypes.c_int),
                ("padding", ctypes.c_int * 11),
            )

        libc = ctypes.PyDLL(None, use_errno=True)  # keeps the GIL: none of these blocks
        create = libc.timer_create
        create.argtypes = (ctypes.c_int, ctypes.POINTER(Sigevent), ctypes.POINTER(ctypes.c_void_p))
        create.restype = ctypes.c_int
        self._settime = libc.timer_settime
        self._settime.argtypes = (
            ctypes.c_void_p,
            ctypes.c_int,
            ctypes.POINTER(Itimerspec),
            ctypes.c_void_p,
        )
        self._settime.restype = ctypes.c_int
        self._delete = libc.timer_delete
        self._delete.argtypes = (ctypes.c_void_p,)
        self._delete.restype = ctypes.c_int
        self._new_setting = Itimerspec
        self._get_errno = ctypes.get_errno

        self._file = tempfile.TemporaryFile()  # noqa: SIM115 - the handler writes to it until close()
        faulthandler.register(self._signal, file=self._file, all_threads=True, chain=False)
        self._registered = True
        self._timer = ctypes.c_void_p()
        event = Sigevent(None, self._signal, self._SIGEV_THREAD_ID, watchdog_thread)
        if create(self._CLOCK_MONOTONIC, ctypes.byref(event), ctypes.byref(self._timer)) < 0:
            error = self._get_errno()
            self.close()
            raise OSError(error, "timer_create")
        self._armed: collections.deque[tuple[float, float]] = collections.deque(maxlen=8)
        """(when set, when due) of the latest settings: which one rang says when a dump
        was made."""
        self._read_to = 0
        self._reading = threading.Lock()
        self._newest: tuple[float, DumpedStacks] | None = None

    def dump_at(self, when: float) -> None:
        """Dump at `when` on `_clock.clock`, instead of when it was set for; from any thread."""
        now = clock()
        self._set(max(when - now, 1e-6))  # zero would stop the timer instead
        self._armed.append((now, when))

    def disarm(self) -> None:
        self._set(0.0)

    def _set(self, seconds: float) -> None:
        setting = self._new_setting()
        setting.it_value.tv_sec = int(seconds)
        setting.it_value.tv_nsec = int(seconds % 1 * 1e9)
        if self._settime(self._timer, 0, setting, None) < 0:
            raise OSError(self._get_errno(), "timer_settime")

    def newest(self) -> tuple[float, DumpedStacks] | None:
        """The newest dump, and when it was made; None if none was. The watchdog and a
        loop thread ending its stretch may both want it: it stays until a newer one."""
        # Held only to read a few kilobytes; the timeout is for a watchdog gone wrong.
        if not self._reading.acquire(timeout=0.1):
            return self._newest
        try:
            fd = self._file.fileno()
            size = os.fstat(fd).st_size
            if size > self._read_to:
                text = os.pread(fd, size - self._read_to, self._read_to)
                self._read_to = size
                made = _made_at(list(self._armed), clock())
                if made is not None:
                    self._newest = (made, newest_dump(text))
                if size > _KEPT_BYTES:
                    # Emptied now and then. A dump the signal writes between these two
                    # calls lands past a hole of zeros: its first thread is lost.
                    os.ftruncate(fd, 0)
                    os.lseek(fd, 0, os.SEEK_SET)
                    self._read_to = 0
            return self._newest
        finally:
            self._reading.release()

    def close(self) -> None:
        import faulthandler

        with contextlib.suppress(AttributeError, OSError, ValueError):
            if getattr(self, "_timer", None) is not None and self._timer.value:
                self._delete(self._timer)
        if getattr(self, "_registered", False):
            with contextlib.suppress(RuntimeError, ValueError):
                faulthandler.unregister(self._signal)
            self._registered = False
        self._file.close()


def _made_at(armed: list[tuple[float, float]], now: float) -> float | None:
    """When the newest dump was made: the due time of the newest setting that was not
    replaced before it was due, and is due by now."""
    made = None
    for index, (_, due) in enumerate(armed):
        replaced_at = armed[index + 1][0] if index + 1 < len(armed) else None
        if due <= now and (replaced_at is None or replaced_at >= due):
            made = due
    return made


def newest_dump(text: bytes) -> DumpedStacks:
    """The stacks of the last dump in `text`: within one dump, faulthandler parts the
    threads with a blank line; a thread's line right after a frame begins another dump."""
    stacks: DumpedStacks = {}
    frames: list[DumpedFrame] | None = None
    after_blank = True
    for line in text.split(b"\n"):
        thread = _THREAD_LINE.match(line)
        if thread is not None:
            if not after_blank:
                stacks = {}
            frames = stacks[int(thread.group(1), 16)] = []
        elif (frame := _FRAME_LINE.match(line)) is not None and frames is not None:
            file, number, function = frame.groups()
            frames.append((_text(file), int(number), _text(function)))
        after_blank = not line
    return stacks


def _text(raw: bytes) -> str:
    # faulthandler writes ASCII, escaping the rest as \xNN, \uNNNN, \UNNNNNNNN.
    if b"\\" not in raw:
        return raw.decode("ascii", "replace")
    try:
        return raw.decode("ascii").encode("ascii").decode("unicode_escape")
    except UnicodeError:
        return raw.decode("ascii", "replace")


gil_dumps: GilDumps | None = None
"""The process's dumps, while the watchdog runs on Linux; None elsewhere."""


def start(watchdog_thread: int) -> None:
    """Dump to the watchdog thread with native id `watchdog_thread` from now on."""
    global gil_dumps
    stop()
    try:
        gil_dumps = GilDumps(watchdog_thread)
        # Before the interpreter's end, where faulthandler lets go of the signal, whose
        # default is to end the process: a timer still set would then kill it.
        atexit.unregister(stop)
        atexit.register(stop)
    except (ImportError, OSError, AttributeError, TypeError, ValueError, RuntimeError) as error:
        if not isinstance(error, OSError | ImportError | AttributeError):
            note(f"GIL dumps: {error!r}")
        gil_dumps = None


def stop() -> None:
    global gil_dumps
    dumps, gil_dumps = gil_dumps, None
    if dumps is not None:
        dumps.close()


def forget_parent() -> None:
    """In a forked child: the parent's timer is not the child's, its handler is."""
    global gil_dumps
    dumps, gil_dumps = gil_dumps, None
    if dumps is not None:
        dumps._timer.value = None
        dumps.close()


def dump_at(when: float) -> None:
    dumps = gil_dumps
    if dumps is not None:
        try:
            dumps.dump_at(when)
        except Exception as error:  # noqa: BLE001 - the alarm still rings without it
            note(f"setting the GIL dump's timer: {error!r}")


def disarm() -> None:
    dumps = gil_dumps
    if dumps is not None:
        try:
            dumps.disarm()
        except Exception as error:  # noqa: BLE001
            note(f"stopping the GIL dump's timer: {error!r}")


def newest() -> tuple[float, DumpedStacks] | None:
    dumps = gil_dumps
    if dumps is None:
        return None
    try:
        return dumps.newest()
    except Exception as error:  # noqa: BLE001 - runs inside the app's call too
        note(f"reading the GIL dump: {error!r}")
        return None
