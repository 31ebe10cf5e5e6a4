"""What loopwatch's audit hook costs each audit event it does not listen for.

Python calls every audit hook for every audit event of the process: `builtins.id` alone
fired 9,510 times in one FastAPI OpenAPI schema build. The hook returns at once for events
it does not care about; this times `id()` (which raises `builtins.id`) in a fresh process
without the hook and with it, and prints the difference per event.

    python benchmarks/audit_hook.py [--events 2000000]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys

TIMING = """
import sys, time
{install}
values = list(range(1000))
best = float("inf")
for _ in range(7):
    started = time.perf_counter()
    for _ in range({rounds}):
        for value in values:
            id(value)
    best = min(best, time.perf_counter() - started)
print(best / ({rounds} * 1000))
"""

WITH_HOOK = (
    "from pytest_loopwatch._calls import call_catcher; call_catcher.install_hook(); "
    "call_catcher.catch(())"
)


def per_event(install: str, events: int) -> float:
    code = TIMING.format(install=install, rounds=max(events // 1000, 1))
    output = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    return float(output.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=2_000_000, help="events per timing")
    args = parser.parse_args()
    without = statistics.median(per_event("", args.events) for _ in range(3))
    with_hook = statistics.median(per_event(WITH_HOOK, args.events) for _ in range(3))
    print(f"id() without the hook: {without * 1e9:.0f} ns, with it: {with_hook * 1e9:.0f} ns")
    print(f"the hook's cost per event it ignores: {(with_hook - without) * 1e9:.0f} ns")


if __name__ == "__main__":
    main()
