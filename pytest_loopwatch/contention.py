"""How much of a long stretch the machine, not the app, took: time spent waiting for a CPU.

On a busy CI machine a stretch of app code can take long without the app blocking
anything: the loop thread was ready to run but the OS gave its core to another process,
or the loop thread waited a moment for another thread of this process (one holding the
GIL, or a worker thread being started) that was itself waiting for a core, or the
hypervisor took the virtual CPU away (steal time). Linux counts each of these:

- `/proc/self/task/<tid>/schedstat`: nanoseconds each thread ran, and waited while ready
  to run, since it started;
- `/proc/stat`: ticks the hypervisor stole from every CPU, since boot.

The loop thread's own wait is all the machine's. What it spent off the CPU by itself,
neither running nor ready to run, was either the app blocking (a `sleep`, a socket, a
lock held by its own worker) or a wait on a thread that was kept from running; only the
other threads' waits and the stolen time can be the machine's share of it. Elsewhere,
nothing is read and nothing is taken off.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

_TASKS = "/proc/self/task"
_TICK_SECONDS = 1 / os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 0.01


@dataclass(frozen=True, slots=True)
class CpuTimes:
    """What the OS counted for this process's threads, at one moment."""

    threads: dict[int, tuple[int, int]]
    """Native thread id -> (nanoseconds run, nanoseconds ready to run but waiting)."""
    stolen: float
    """Seconds the hypervisor has stolen from all CPUs since boot."""


def read_cpu_times() -> CpuTimes | None:
    """The counts as they stand, or None where the OS does not keep them."""
    try:
        names = os.listdir(_TASKS)
    except OSError:
        return None
    threads = {}
    for name in names:
        try:
            with open(f"{_TASKS}/{name}/schedstat", "rb") as counts:
                ran, waited = counts.read().split()[:2]
        except (OSError, ValueError):
            continue  # the thread ended meanwhile, or the kernel keeps no schedstat
        threads[int(name)] = (int(ran), int(waited))
    if not threads:
        return None
    return CpuTimes(threads, _stolen_seconds())


def _stolen_seconds() -> float:
    try:
        with open("/proc/stat", "rb") as stat:
            fields = stat.readline().split()
        # cpu user nice system idle iowait irq softirq steal ...
        return int(fields[8]) * _TICK_SECONDS
    except (OSError, IndexError, ValueError):
        return 0.0


def time_kept_from_cpu(
    before: CpuTimes, after: CpuTimes, seconds: float, loop_thread: int, ignored: int | None
) -> float:
    """Seconds of the `seconds` between two readings that the loop thread lost to the machine.

    `ignored`: a thread of ours that never holds up the loop (the watchdog, which wakes
    often and so is often ready to run).
    """
    ran_before, waited_before = before.threads.get(loop_thread, (0, 0))
    ran_after, waited_after = after.threads.get(loop_thread, (ran_before, waited_before))
    waited = (waited_after - waited_before) / 1e9
    off_cpu = max(0.0, seconds - (ran_after - ran_before) / 1e9 - waited)
    others_waited = 0
    for thread, (_, thread_waited) in after.threads.items():
        if thread not in (loop_thread, ignored):
            # A thread born since the first reading has waited only since then.
            others_waited += thread_waited - before.threads.get(thread, (0, 0))[1]
    machine_share_of_off_cpu = others_waited / 1e9 + max(0.0, after.stolen - before.stolen)
    return min(seconds, waited + min(off_cpu, machine_share_of_off_cpu))
