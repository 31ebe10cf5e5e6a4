"""How much of a long stretch the machine, not the app, took: time spent waiting for a CPU.

On a busy CI machine a stretch of app code can take long without the app blocking
anything: the loop thread was ready to run but the OS gave its core to another process,
or the hypervisor took the virtual CPU away while the loop thread ran (steal time).
Linux counts both:

- `/proc/self/task/<tid>/schedstat`: nanoseconds a thread ran, and waited while ready
  to run, since it started, and how many times it was put on a CPU;
- `/proc/stat`: ticks the hypervisor stole from the CPUs, since boot.

The loop thread's own wait is all the machine's. Of the time it spent off the CPU by
itself, neither running nor ready to run, only the steal while it was running can be:
the rest is the app waiting (a `sleep`, a socket, a child process), however busy the
machine or the app's other threads were meanwhile. Elsewhere, nothing is read and nothing
is taken off.
"""

from __future__ import annotations

import functools
import os
from typing import NamedTuple

_TICK_SECONDS = 1 / os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 0.01


class CpuTimes(NamedTuple):
    """What the OS counted for one thread, at one moment."""

    thread: int
    """The thread's native id."""
    ran: int
    """Nanoseconds the thread has run."""
    waited: int
    """Nanoseconds the thread has waited for a CPU while ready to run."""
    stolen: float
    """Seconds the hypervisor has stolen from one CPU, on average, since boot."""
    timeslices: int = 0
    """How many times the thread was put on a CPU: a thread waiting for the GIL is woken
    every switch interval to ask for it, one sleeping in a call once."""


class _GilHoldingReader:
    """Reads small /proc files without letting go of the GIL.

    The watchdog reads while the loop thread may be computing; every read that let go of
    the GIL (any file I/O from Python does) would wait a switch interval, 5 ms, to get it
    back from that thread: a dozen of them kept the watchdog from its next samples for
    the rest of a 40 ms stall. Through `ctypes.PyDLL` the calls keep the GIL; reading
    /proc never blocks.
    """

    def __init__(self) -> None:
        import ctypes  # here, not at import: pytest runs without --loopwatch need none of it

        self._new_buffer = ctypes.create_string_buffer
        libc = ctypes.PyDLL(None)
        self._open = libc.open
        self._open.argtypes = (ctypes.c_char_p, ctypes.c_int)
        self._open.restype = ctypes.c_int
        self._read = libc.read
        self._read.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t)
        self._read.restype = ctypes.c_ssize_t
        self._close = libc.close
        self._close.argtypes = (ctypes.c_int,)
        self._close.restype = ctypes.c_int

    def read(self, path: bytes, size: int) -> bytes | None:
        """Up to `size` bytes from the start of `path`, or None if it cannot be read."""
        descriptor = self._open(path, os.O_RDONLY)
        if descriptor < 0:
            return None
        try:
            # Per call, not shared: another thread may read between two of these lines.
            buffer = self._new_buffer(size)
            count = self._read(descriptor, buffer, size)
            return buffer.raw[:count] if count >= 0 else None
        finally:
            self._close(descriptor)


@functools.cache
def _proc_reader() -> tuple[_GilHoldingReader, int] | None:
    """The reader and the CPUs /proc/stat counts, or None where no C library can be called
    (Windows). Made once: making it loads ctypes and reads /proc/stat, letting go of the
    GIL, which `prepare` does before any stretch runs."""
    try:
        reader = _GilHoldingReader()
    except (ImportError, OSError, TypeError, AttributeError):
        return None
    return reader, _count_cpus()


def prepare() -> None:
    """Make ready to read the counts; called when timing starts."""
    _proc_reader()


def _count_cpus() -> int:
    """The CPUs /proc/stat counts: in a container, the host's, maybe many more than ours."""
    try:
        with open("/proc/stat", "rb") as stat:
            return max(1, sum(1 for line in stat if line.startswith(b"cpu")) - 1)
    except OSError:
        return 1


def read_cpu_times(thread: int, *, steal: bool = True) -> CpuTimes | None:
    """The counts of the thread with native id `thread` as they stand, or None where the
    OS does not keep them; without `steal`, the CPUs' stolen time is not read (0: it is
    most of the reading's cost)."""
    proc = _proc_reader()
    if proc is None:
        return None
    reader, cpus = proc
    counts = reader.read(b"/proc/self/task/%d/schedstat" % thread, 128)
    if not counts:
        return None  # the thread has ended, or the kernel keeps no schedstat
    try:
        ran, waited, timeslices = counts.split()[:3]
        stolen = _stolen_seconds(reader, cpus) if steal else 0.0
        return CpuTimes(thread, int(ran), int(waited), stolen, int(timeslices))
    except ValueError:
        return None


def _stolen_seconds(reader: _GilHoldingReader, cpus: int) -> float:
    # The first line: cpu user nice system idle iowait irq softirq steal ..., for all CPUs.
    stat = reader.read(b"/proc/stat", 512)
    try:
        return int((stat or b"").split(b"\n", 1)[0].split()[8]) * _TICK_SECONDS / cpus
    except (IndexError, ValueError):
        return 0.0


_MOST_STOLEN = 0.9
"""The largest share of a CPU taken as stolen, so that a bad reading cannot erase a stall."""


def time_kept_from_cpu(before: CpuTimes, after: CpuTimes, seconds: float) -> float:
    """Seconds of the `seconds` between two readings that their thread lost to the machine."""
    if before.thread != after.thread:
        return 0.0  # another thread's counts say nothing of this one's
    ran = (after.ran - before.ran) / 1e9
    waited = (after.waited - before.waited) / 1e9
    off_cpu = max(0.0, seconds - ran - waited)
    # The kernel does not count stolen time as running; of the time the loop thread meant
    # to run, the CPU's stolen share went missing: ran = (1 - share) * meant to run.
    share = min(_MOST_STOLEN, max(0.0, after.stolen - before.stolen) / seconds) if seconds else 0.0
    stolen_while_running = ran * share / (1 - share)
    return min(seconds, waited + min(off_cpu, stolen_while_running))
