"""The pytest hooks: the plugin's whole surface, handing the work to settings, watch and report."""

from __future__ import annotations

import os
from collections.abc import Generator

import pytest

from .durations import ACCEPTED_FORMS
from .interception import Interception
from .report import format_stalls
from .settings import (
    MARKER,
    MARKER_SIGNATURE,
    THRESHOLD_ENV,
    Settings,
    session_settings,
    settings_for_test,
)
from .watch import Watch, shutdown, start, stop

RUN_SETTINGS = pytest.StashKey[Settings]()
TEST_SETTINGS = pytest.StashKey[Settings]()
TEST_WATCH = pytest.StashKey[Watch]()
INTERCEPTION = pytest.StashKey[Interception]()
INTERNAL_ERRORS = pytest.StashKey[list[str]]()

REPORT_SECTION = "loopwatch"


def pytest_addoption(parser: pytest.Parser) -> None:
    """Register `--loopwatch`, `--loopwatch-threshold` and their ini keys."""
    group = parser.getgroup("loopwatch", "fail tests whose ASGI app code stalls the event loop")
    group.addoption(
        "--loopwatch",
        action="store_true",
        default=None,
        help="watch every ASGI app called through httpx/httpx2 ASGITransport or TestClient",
    )
    group.addoption(
        "--loopwatch-threshold",
        metavar="DURATION",
        default=None,
        help=f"longest a stretch of app code may hold the loop: {ACCEPTED_FORMS} "
        f"(default 100ms; env {THRESHOLD_ENV})",
    )
    parser.addini(
        "loopwatch", "watch ASGI apps in every test, as --loopwatch", type="bool", default=False
    )
    parser.addini("loopwatch_threshold", "default for --loopwatch-threshold", default="")


def _getini(config: pytest.Config, name: str, accepted: str) -> object:
    # pytest's own coercion of a bad value ends in a message that names neither the
    # option nor what it takes (or, on older pytest, in an INTERNALERROR).
    try:
        return config.getini(name)
    except (pytest.UsageError, ValueError, TypeError) as error:
        raise pytest.UsageError(f"ini option {name}: {error}; use {accepted}") from None


def pytest_configure(config: pytest.Config) -> None:
    """Validate every setting up front, so a typo stops the run before any test (exit 4)."""
    config.addinivalue_line(
        "markers",
        f"{MARKER_SIGNATURE}: watch this test's ASGI apps for event-loop stalls "
        "(or, with False, do not)",
    )
    config.stash[RUN_SETTINGS] = session_settings(
        cli_enabled=config.getoption("loopwatch"),
        cli_threshold=config.getoption("loopwatch_threshold"),
        env_threshold=os.environ.get(THRESHOLD_ENV),
        ini_enabled=_getini(config, "loopwatch", "true or false"),
        ini_threshold=_getini(config, "loopwatch_threshold", f"a string: {ACCEPTED_FORMS}"),
    )
    config.stash[INTERCEPTION] = Interception()
    config.stash[INTERNAL_ERRORS] = []


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Settle each test's settings now, so a bad marker fails the run before any test runs."""
    run = config.stash[RUN_SETTINGS]
    for item in items:
        marker = item.get_closest_marker(MARKER)
        try:
            item.stash[TEST_SETTINGS] = settings_for_test(
                run,
                None if marker is None else marker.args,
                {} if marker is None else dict(marker.kwargs),
                "loopwatch" in getattr(item, "fixturenames", ()),
            )
        except pytest.UsageError as error:
            raise pytest.UsageError(f"{item.nodeid}: {error}") from None


def _internal_error(item: pytest.Item, error: BaseException | str) -> None:
    item.config.stash[INTERNAL_ERRORS].append(f"{item.nodeid}: {error!s}")


def _settings(item: pytest.Item) -> Settings:
    return item.stash.get(TEST_SETTINGS, None) or item.config.stash[RUN_SETTINGS]


def _begin(item: pytest.Item) -> None:
    settings = _settings(item)
    watch = Watch(settings.threshold)
    item.stash[TEST_WATCH] = watch
    if not settings.enabled:
        return
    try:
        item.config.stash[INTERCEPTION].install()
        start(watch)
    except Exception as error:  # noqa: BLE001 - loopwatch must never break the suite
        _internal_error(item, f"could not start watching: {error!r}")


def _check(item: pytest.Item, when: str, failed: bool) -> None:
    """Fail this phase with the stalls it recorded; next to an existing failure, add them."""
    watch = item.stash.get(TEST_WATCH, None)
    if watch is None or not _settings(item).enabled:
        return
    try:
        item.config.stash[INTERCEPTION].install()  # clients imported during the phase
        stalls = watch.take_unreported()
        text = format_stalls(stalls, str(item.config.invocation_params.dir)) if stalls else ""
    except Exception as error:  # noqa: BLE001 - loopwatch must never break the suite
        _internal_error(item, f"could not report stalls: {error!r}")
        return
    if not text:
        return
    if failed:
        item.add_report_section(when, REPORT_SECTION, text)
    else:
        pytest.fail(text, pytrace=False)


def _end(item: pytest.Item) -> None:
    watch = item.stash.get(TEST_WATCH, None)
    if watch is None or not _settings(item).enabled:
        return
    try:
        stop(watch)
        item.config.stash[INTERCEPTION].uninstall()
    except Exception as error:  # noqa: BLE001 - loopwatch must never break the suite
        _internal_error(item, f"could not stop watching: {error!r}")
    for message in watch.internal_errors:
        _internal_error(item, message)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, None, None]:
    """Start watching before the first fixture, and fail setup if a fixture's request stalled."""
    _begin(item)
    try:
        result = yield
    except BaseException:
        _check(item, "setup", failed=True)
        raise
    _check(item, "setup", failed=False)
    return result


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    """Fail the test after it ran if its app code stalled the loop."""
    try:
        result = yield
    except BaseException:
        _check(item, "call", failed=True)
        raise
    _check(item, "call", failed=False)
    return result


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None, None, None]:
    """Stop watching after the last fixture, failing teardown if a finalizer's request stalled."""
    try:
        result = yield
    except BaseException:
        _check(item, "teardown", failed=True)
        raise
    finally:
        _end(item)
    _check(item, "teardown", failed=False)
    return result


@pytest.fixture
def loopwatch(request: pytest.FixtureRequest) -> Watch:
    """Watch this test's ASGI apps even without --loopwatch; holds its stalls and `wrap(app)`."""
    watch: Watch = request.node.stash[TEST_WATCH]
    return watch


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say so when loopwatch itself failed somewhere; the tests' outcomes stay the users'."""
    errors = terminalreporter.config.stash.get(INTERNAL_ERRORS, [])
    if errors:
        terminalreporter.section("loopwatch internal errors", yellow=True)
        for error in errors:
            terminalreporter.line(error)


def pytest_unconfigure(config: pytest.Config) -> None:
    """Leave nothing behind: no patched class, no watchdog thread."""
    interception = config.stash.get(INTERCEPTION, None)
    if interception is not None:
        interception.uninstall()
    shutdown()
