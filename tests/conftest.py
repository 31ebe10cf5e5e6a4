"""Shared pieces for the pytester sessions: an app with every kind of handler, and its clients."""

from __future__ import annotations

import os
import sys

# Imported here, before any inner session: pytester drops the modules an in-process session
# imported first, and a later `from unittest import mock` would then get that dropped
# module from the package while pytest (its patch-argument count) and loopwatch (the mocks
# it follows) look at the one in sys.modules.
import unittest.mock  # noqa: F401
from pathlib import Path
from typing import Protocol

# Likewise bcrypt: a PyO3 module of the lowest tested release cannot be initialised twice.
import bcrypt  # noqa: F401
import pytest

APPS = Path(__file__).parent / "apps"
"""The apps and inner conftests the pytester sessions copy: real files, linted and typed."""

STALL = 0.3
"""Seconds each blocking handler of `apps/handlers.py` holds the loop."""


INNER_ADDOPTS = "-p no:randomly -p no:rerunfailures"
"""The inner sessions' options: the installed plugins but those two."""

INI = "[pytest]\nasyncio_default_fixture_loop_scope = function\n"
"""The inner sessions' ini; tests that write their own ini start from it."""


HTTPX = os.environ.get("LOOPWATCH_TEST_HTTPX", "httpx")
"""The client the inner sessions' ASGITransport tests use: tox's httpx2 env sets httpx2."""


@pytest.fixture(scope="session")
def json_items() -> str:
    """How large a JSON document must be for json.loads to take STALL seconds here: measured
    once, not in each inner session that imports the app (0.6 s each)."""
    sys.path.insert(0, str(APPS))
    try:
        from handlers import json_items_taking
    finally:
        sys.path.remove(str(APPS))
    return str(json_items_taking(STALL))


@pytest.fixture
def pytester(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, json_items: str
) -> pytest.Pytester:
    """pytester, with an ini that keeps pytest-asyncio quiet in the inner sessions.

    With LOOPWATCH_TEST_HTTPX=httpx2, every inner `import httpx` imports httpx2 instead.
    """
    pytester.makeini(INI)
    monkeypatch.setenv("LOOPWATCH_TEST_JSON_ITEMS", json_items)
    # Under CI, pytest prints whole failure messages in the short summary, and loopwatch
    # annotates on GitHub Actions; the inner sessions should read the same everywhere.
    for variable in ("CI", "BUILD_NUMBER", "GITHUB_ACTIONS", "GITHUB_WORKSPACE"):
        monkeypatch.delenv(variable, raising=False)
    # pytest-randomly (installed for the coexistence tests) would reorder the inner
    # sessions' tests, and pytest-rerunfailures leaves a server thread behind each session
    # under xdist; the tests that want them set INNER_ADDOPTS without them. Not sealed with
    # PYTEST_DISABLE_PLUGIN_AUTOLOAD: `-p module` of a plugin already imported warns
    # (PytestAssertRewriteWarning) where the package is installed as a wheel, as in tox.
    monkeypatch.setenv("PYTEST_ADDOPTS", INNER_ADDOPTS)
    if HTTPX != "httpx":
        makepyfile = pytester.makepyfile

        def with_other_httpx(*args: str, **files: str) -> Path:
            swap = f"import {HTTPX} as httpx\n"
            return makepyfile(
                *(text.replace("import httpx\n", swap) for text in args),
                **{name: text.replace("import httpx\n", swap) for name, text in files.items()},
            )

        monkeypatch.setattr(pytester, "makepyfile", with_other_httpx)
    return pytester


class NoStalls(Protocol):
    def __call__(self, result: pytest.RunResult, *, passed: int, app_calls: int) -> None: ...


@pytest.fixture
def assert_no_stalls() -> NoStalls:
    """Check that a session's tests all passed with no stall while loopwatch watched
    `app_calls` calls of their apps: a pass that broken interception could not fake."""

    def check(result: pytest.RunResult, *, passed: int, app_calls: int) -> None:
        result.assert_outcomes(passed=passed)
        calls = "1 app call" if app_calls == 1 else f"{app_calls} app calls"
        result.stdout.fnmatch_lines([f"loopwatch: no stalls (threshold *, {calls} watched)"])

    return check


@pytest.fixture
def app_files(pytester: pytest.Pytester) -> Path:
    """`app.py` with handlers of every kind, and a conftest with clients and a slow server."""
    pytester.makepyfile(
        app=(APPS / "handlers.py").read_text(), conftest=(APPS / "clients.py").read_text()
    )
    return pytester.path / "app.py"


def line_of(path: Path, tag: str) -> int:
    """The line of `path` that carries the comment `# tag`."""
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if line.rstrip().endswith(f"# {tag}"):
            return number
    raise LookupError(tag)
