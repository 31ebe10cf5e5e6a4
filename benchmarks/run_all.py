"""Every benchmark, one after the other, with its plot written under docs/.

    python benchmarks/run_all.py

Prints each script's table as it finishes, and how long the whole took.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DOCS = HERE.parent / "docs"

RUNS = [
    ("overhead.py", ["--plot", str(DOCS / "overhead.png")]),
    ("accuracy.py", ["--plot", str(DOCS / "accuracy.png")]),
    ("scale.py", ["--plot", str(DOCS / "scale.png")]),
    ("soak.py", []),
    ("audit_hook.py", []),
    # Last: its spinning processes would slow whatever ran beside them.
    ("busy_machine.py", []),
]


def main() -> None:
    DOCS.mkdir(exist_ok=True)
    started = time.perf_counter()
    for script, arguments in RUNS:
        print(f"== {script} {' '.join(arguments)}", flush=True)
        subprocess.run([sys.executable, str(HERE / script), *arguments], check=True)
        print(flush=True)
    print(f"all benchmarks: {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
