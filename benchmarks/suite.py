"""What a whole suite pays for --loopwatch: synthetic suites of fast tests, plain and watched.

The per-request figure of `overhead.py` is not what a team feels: a large suite is mostly
fast tests, each paying whatever watching costs per test (starting and ending a watch), per
client it makes, per connection it opens. Each kind of suite below is written once into a
temporary directory; then, round after round, pytest runs it plain and with `--loopwatch`,
in an order that alternates from round to round. The figure is the CPU time (user and
system) of the pytest process, a child of this one, which a machine's other work changes
less than wall time does; each kind's ratio is the median over the rounds of watched / plain
in the same round, with the smallest and largest. With two CPUs the two sides of a round
run at once, one on each, swapping CPUs from round to round (`measure`).

    python benchmarks/suite.py [--tests 2000] [--rounds 3] [--kinds no-app,sqlite3]

Every run is sealed (no plugin autoload beyond the ones named, no cache), so that the two
sides differ in `--loopwatch` alone.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path

APP = """
import asyncio
import sqlite3

from fastapi import FastAPI

app = FastAPI()


@app.get("/fast")
async def fast() -> dict[str, bool]:
    return {"ok": True}


@app.get("/items/{number}")
def item(number: int) -> dict[str, int]:
    # A `def` endpoint: the thread pool runs it, as FastAPI runs a sync repository.
    connection = sqlite3.connect(":memory:")
    try:
        connection.execute("create table item (number integer)")
        connection.execute("insert into item values (?)", (number,))
        (found,) = connection.execute("select number from item").fetchone()
    finally:
        connection.close()
    return {"number": found}


async def child() -> None:
    await asyncio.sleep(0)


@app.get("/spawn")
async def spawn() -> dict[str, bool]:
    await asyncio.gather(*(asyncio.create_task(child()) for _ in range(100)))
    return {"ok": True}
"""

CONFTEST = """
import pytest


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
"""

# Each kind: (a module's header, one test with {n} in its name); the suite has `tests` tests,
# 100 to a module.
KINDS: dict[str, tuple[str, str]] = {
    "no-app": (
        "",
        "def test_{n}():\n    assert {n} + 1 > {n}\n",
    ),
    "asgi-transport-per-test": (
        "import httpx\nimport pytest\nfrom app import app\n\npytestmark = pytest.mark.anyio\n",
        "async def test_{n}():\n"
        "    transport = httpx.ASGITransport(app=app)\n"
        "    async with httpx.AsyncClient(transport=transport, base_url='http://t') as client:\n"
        "        assert (await client.get('/fast')).status_code == 200\n",
    ),
    "test-client-per-module": (
        "import pytest\nfrom fastapi.testclient import TestClient\nfrom app import app\n\n\n"
        "@pytest.fixture(scope='module')\ndef client():\n"
        "    with TestClient(app) as client:\n        yield client\n",
        "def test_{n}(client):\n    assert client.get('/fast').status_code == 200\n",
    ),
    "test-client-per-test": (
        "from fastapi.testclient import TestClient\nfrom app import app\n",
        "def test_{n}():\n    assert TestClient(app).get('/fast').status_code == 200\n",
    ),
    "sqlite3": (
        "import pytest\nfrom fastapi.testclient import TestClient\nfrom app import app\n\n\n"
        "@pytest.fixture(scope='module')\ndef client():\n"
        "    with TestClient(app) as client:\n        yield client\n",
        "def test_{n}(client):\n    assert client.get('/items/{n}').json() == {{'number': {n}}}\n",
    ),
    "spawn-100-tasks": (
        "import pytest\nfrom fastapi.testclient import TestClient\nfrom app import app\n\n\n"
        "@pytest.fixture(scope='module')\ndef client():\n"
        "    with TestClient(app) as client:\n        yield client\n",
        "def test_{n}(client):\n    assert client.get('/spawn').status_code == 200\n",
    ),
}

PER_MODULE = 100
PLUGINS = ("-p", "anyio", "-p", "pytest_loopwatch.plugin")


def write_suite(directory: Path, kind: str, tests: int) -> None:
    header, test = KINDS[kind]
    (directory / "app.py").write_text(APP)
    (directory / "conftest.py").write_text(CONFTEST)
    for first in range(0, tests, PER_MODULE):
        body = "\n\n".join(test.format(n=n) for n in range(first, min(first + PER_MODULE, tests)))
        (directory / f"test_{first:06d}.py").write_text(header + "\n\n" + body)


def _environment() -> dict[str, str]:
    environment = {**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1", "PYTHONPATH": "."}
    environment.pop("LOOPWATCH_THRESHOLD", None)
    # As on a developer's machine: modules compiled once, not at every run (this workplace
    # sets PYTHONDONTWRITEBYTECODE, which would make each run compile loopwatch afresh).
    environment.pop("PYTHONDONTWRITEBYTECODE", None)
    return environment


def cpu_seconds_of(runs: Sequence[tuple[list[str], int | None]], directory: Path) -> list[float]:
    """The user and system CPU time of pytest runs started together, each on its own CPU
    (None: wherever the OS puts it); every run must pass."""
    with ExitStack() as logs:
        started = []
        for command, cpu in runs:
            log = logs.enter_context(tempfile.TemporaryFile(mode="w+"))
            pin = None if cpu is None else functools.partial(os.sched_setaffinity, 0, {cpu})
            process = subprocess.Popen(
                command, cwd=directory, env=_environment(), stdout=log, stderr=log, preexec_fn=pin
            )
            started.append((command, process, log))
        seconds = []
        for command, process, log in started:
            _, status, usage = os.wait4(process.pid, 0)
            process.returncode = os.waitstatus_to_exitcode(status)
            if process.returncode != 0:
                log.seek(0)
                raise SystemExit(f"{' '.join(command)} failed:\n{log.read()[-3000:]}")
            seconds.append(usage.ru_utime + usage.ru_stime)
    return seconds


def measure(kind: str, tests: int, rounds: int) -> tuple[float, float, float, float]:
    """(plain CPU seconds, median ratio, smallest, largest) for one kind of suite.

    With two CPUs, each round runs both sides at once, one on each CPU, swapping CPUs from
    round to round: both meet the same machine at the same moment (a virtual machine's
    speed drifts by more than the few percent measured here), and neither core favours a
    side. With one, the sides alternate."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    with tempfile.TemporaryDirectory(prefix=f"loopwatch-suite-{kind}-") as name:
        directory = Path(name)
        write_suite(directory, kind, tests)
        base = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *PLUGINS]
        watched = [*base, "--loopwatch"]
        cpu_seconds_of([(base, None), (watched, None)], directory)  # warm-up: bytecode caches
        ratios, plain_seconds = [], []
        for number in range(rounds):
            if len(cpus) >= 2:
                first, second = (cpus[0], cpus[1]) if number % 2 == 0 else (cpus[1], cpus[0])
                plain, with_loopwatch = cpu_seconds_of(
                    [(base, first), (watched, second)], directory
                )
            else:
                order = [(base, None), (watched, None)]
                if number % 2:
                    order.reverse()
                times = cpu_seconds_of(order[:1], directory) + cpu_seconds_of(order[1:], directory)
                plain, with_loopwatch = times if number % 2 == 0 else times[::-1]
            ratios.append(with_loopwatch / plain)
            plain_seconds.append(plain)
    return statistics.median(plain_seconds), statistics.median(ratios), min(ratios), max(ratios)


def engine_work_per_watched_test(tests: int = 5000, rounds: int = 7) -> float:
    """Microseconds of loopwatch's own work for one watched test that calls no app, in this
    process: what the hooks ask of the engine (begin, three phase checks, two looks for new
    clients, end, the outlived work and the allow-list's counts); the median of `rounds`.
    Steadier than whole suites, whose rounds spread more than this costs."""
    from pytest_loopwatch import Watch
    from pytest_loopwatch._engine import Engine

    engine = Engine()
    per_test = []
    try:
        for _ in range(rounds):
            started = time.perf_counter()
            for _ in range(tests):
                watch = Watch(0.1, test="test_x")
                engine.begin(watch)
                for phase in range(3):
                    watch.take_unreported()
                    if phase:
                        engine.watch_clients_imported_since()
                engine.end(watch)
                engine.outlived()
                engine.take_allowed_counts()
            per_test.append((time.perf_counter() - started) / tests * 1e6)
    finally:
        engine.shutdown()
    return statistics.median(per_test)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--tests", type=int, default=2000, help="tests in each suite")
    parser.add_argument("--rounds", type=int, default=3, help="plain and watched runs of each")
    parser.add_argument(
        "--kinds", default=",".join(KINDS), help=f"comma-separated, of: {', '.join(KINDS)}"
    )
    args = parser.parse_args()
    kinds = [kind for kind in args.kinds.split(",") if kind]
    unknown = [kind for kind in kinds if kind not in KINDS]
    if unknown:
        parser.error(f"unknown kinds: {', '.join(unknown)}")
    print(f"loopwatch's own work per watched test: {engine_work_per_watched_test():.1f} µs")
    print(
        f"suites of {args.tests} tests, {args.rounds} rounds; "
        "CPU time of pytest, watched / plain (median, smallest-largest)"
    )
    print(f"{'suite':<26}{'plain s':>9}{'watched / plain':>26}")
    for kind in kinds:
        plain, ratio, low, high = measure(kind, args.tests, args.rounds)
        print(f"{kind:<26}{plain:>9.2f}{f'{ratio:.3f} ({low:.3f}-{high:.3f})':>26}", flush=True)


if __name__ == "__main__":
    main()
