"""How much of a long stretch the machine, not the app, took: time spent waiting for a CPU.

On a busy CI machine a stretch of app code can take long without the app blocking
anything: the loop thread was ready to run but the OS gave its core to another process,
or the hypervisor took the virtual CPU away while the loop thread ran (steal time).
Linux counts both:

- `/proc/self/task/<tid>/schedstat`: nanoseconds each thread ran, and waited while ready
  to run, since it started;
- `/proc/stat`: ticks the hypervisor stole from the CPUs, since boot.

The loop thread's own wait is all the machine's. Of the time it spent off the CPU by
itself, neither running nor ready to run, only the steal while it was running can be:
the rest is the app waiting (a `sleep`, a socket, a child process), however busy the
machine or the app's other threads were meanwhile. Elsewhere, nothing is read and nothing
is taken off.
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
    """Seconds the hypervisor has stolen from one CPU, on average, since boot."""


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
            lines = stat.read().splitlines()
        # cpu user nice system idle iowait irq softirq steal ..., for all CPUs, then one
        # line per CPU: in a container, the host's, which may be many more than ours.
        cpus = sum(1 for line in lines if line.startswith(b"cpu")) - 1
        return int(lines[0].split()[8]) * _TICK_SECONDS / max(cpus, 1)
    except (OSError, IndexError, ValueError):
        return 0.0


_MOST_STOLEN = 0.9
"""The largest share of a CPU taken as stolen, so that a bad reading cannot erase a stall."""


def time_kept_from_cpu(
    before: CpuTimes, after: CpuTimes, seconds: float, loop_thread: int
) -> float:
    """Seconds of the `seconds` between two readings that the loop thread lost to the machine."""
    if loop_thread not in before.threads or loop_thread not in after.threads:
        # A reading that missed the loop thread would make its whole life the stretch's.
        return 0.0
    ran_before, waited_before = before.threads[loop_thread]
    ran_after, waited_after = after.threads[loop_thread]
    ran = (ran_after - ran_before) / 1e9
    waited = (waited_after - waited_before) / 1e9
    off_cpu = max(0.0, seconds - ran - waited)
    # The kernel does not count stolen time as running; of the time the loop thread meant
    # to run, the CPU's stolen share went missing: ran = (1 - share) * meant to run.
    share = min(_MOST_STOLEN, max(0.0, after.stolen - before.stolen) / seconds) if seconds else 0.0
    stolen_while_running = ran * share / (1 - share)
    return min(seconds, waited + min(off_cpu, stolen_while_running))
