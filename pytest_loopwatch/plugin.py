"""The pytest hooks: the plugin's whole surface, handing the work to settings, watch and report."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import tempfile
import warnings
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

import pytest

from .baseline import BaselineKey, baseline_document, load_baseline, stall_key
from .durations import ACCEPTED_FORMS, format_duration
from .findings import Finding, from_json, report_document, to_json
from .interception import Interception
from .report import format_stalls, one_line
from .settings import (
    MARKER,
    MARKER_SIGNATURE,
    THRESHOLD_ENV,
    Settings,
    hang_after,
    run_mode,
    session_settings,
    settings_for_test,
)
from .strict import ALLOW_FORM, InvalidAllowPattern, check_allowed, strict_mode
from .summary import summary_lines
from .watch import Watch, shutdown, start, stop
from .watchdog import watchdog

RUN_SETTINGS = pytest.StashKey[Settings]()
TEST_SETTINGS = pytest.StashKey[Settings]()
TEST_WATCH = pytest.StashKey[Watch]()
INTERCEPTION = pytest.StashKey[Interception]()
INTERNAL_ERRORS = pytest.StashKey[list[str]]()
FINDINGS = pytest.StashKey[list[Finding]]()
MODE = pytest.StashKey[str]()
BASELINE = pytest.StashKey[set[BaselineKey]]()
ANY_WATCHED = pytest.StashKey[bool]()
ALLOWED = pytest.StashKey[tuple[str, ...]]()
RUNNING_TEST = pytest.StashKey[str]()
OUTER_HANG = pytest.StashKey[tuple[float | None, Callable[[str], None] | None]]()
WORKER_OUTPUT_KEY = "loopwatch_stalls"

REPORT_SECTION = "loopwatch"


class LoopwatchWarning(pytest.PytestWarning):
    """A stall, reported as a warning under --loopwatch-mode=warn."""


class LoopwatchInternalWarning(pytest.PytestWarning):
    """An error of loopwatch itself; the test's outcome is left to the test."""


def pytest_addoption(parser: pytest.Parser) -> None:
    """Register `--loopwatch`, `--loopwatch-threshold`, `--loopwatch-report` and the ini keys."""
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
    group.addoption(
        "--loopwatch-mode",
        default=None,
        metavar="fail|warn",
        help="fail the tests that stall (default), or only warn and summarise",
    )
    group.addoption(
        "--loopwatch-baseline",
        metavar="PATH",
        default=None,
        help="stalls recorded in PATH do not fail; new ones do",
    )
    group.addoption(
        "--loopwatch-update-baseline",
        action="store_true",
        default=False,
        help="write this run's stalls to the --loopwatch-baseline file; fail none",
    )
    group.addoption(
        "--loopwatch-report",
        metavar="PATH",
        default=None,
        help="write every stall of the run to PATH as JSON (schema: report.schema.json)",
    )
    group.addoption(
        "--loopwatch-strict",
        action="store_true",
        default=None,
        help="also fail on known blocking calls (time.sleep, sockets, files, subprocesses, "
        "sqlite3) that app code makes on the loop, however fast",
    )
    group.addoption(
        "--loopwatch-hang",
        metavar="DURATION",
        default=None,
        help="when app code has held the loop this long, print where at once (default 10s)",
    )
    parser.addini(
        "loopwatch", "watch ASGI apps in every test, as --loopwatch", type="bool", default=False
    )
    parser.addini("loopwatch_hang", "default for --loopwatch-hang", default="")
    parser.addini("loopwatch_strict", "default for --loopwatch-strict", type="bool", default=False)
    parser.addini(
        "loopwatch_allow",
        f"strict mode lets pass the blocking calls made under these frames: {ALLOW_FORM}",
        type="linelist",
        default=[],
    )
    parser.addini("loopwatch_threshold", "default for --loopwatch-threshold", default="")
    parser.addini("loopwatch_mode", "default for --loopwatch-mode: fail or warn", default="")


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
        cli_strict=config.getoption("loopwatch_strict"),
        ini_strict=_getini(config, "loopwatch_strict", "true or false"),
    )
    allowed = list(config.getini("loopwatch_allow"))
    try:
        check_allowed(allowed)
    except InvalidAllowPattern as error:
        raise pytest.UsageError(
            f"ini option loopwatch_allow: {error.args[0]!r} is not valid; use {ALLOW_FORM}"
        ) from None
    config.stash[ALLOWED] = tuple(allowed)
    if config.stash[RUN_SETTINGS].strict:
        # Before the tests' modules import the app: SQLite connections opened at import
        # are traced only if the hook already listens.
        strict_mode.install_hook()
    config.stash[INTERCEPTION] = Interception()
    config.stash[INTERNAL_ERRORS] = []
    config.stash[FINDINGS] = []
    config.stash[ANY_WATCHED] = False
    config.stash[MODE] = run_mode(
        cli_mode=config.getoption("loopwatch_mode"),
        ini_mode=_getini(config, "loopwatch_mode", "fail or warn"),
    )
    config.stash[BASELINE] = _known_stalls(config)
    config.stash[OUTER_HANG] = (watchdog.hang_after, watchdog.on_hang)
    watchdog.hang_after = hang_after(
        cli_hang=config.getoption("loopwatch_hang"),
        ini_hang=_getini(config, "loopwatch_hang", f"a string: {ACCEPTED_FORMS}"),
    )
    watchdog.on_hang = functools.partial(_show_hang, config)
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(_XdistController(config), "loopwatch-xdist")


def _show_hang(config: pytest.Config, description: str) -> None:
    """Print a hang on the terminal now, past pytest's capture: the test may never end."""
    capture = config.pluginmanager.getplugin("capturemanager")
    writer = config.get_terminal_writer()
    test = config.stash.get(RUNNING_TEST, "")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        writer.line()
        writer.sep("!", f"loopwatch: hang in {test}" if test else "loopwatch: hang")
        writer.line(description)
        writer.flush()


def _known_stalls(config: pytest.Config) -> set[BaselineKey]:
    path = config.getoption("loopwatch_baseline")
    if path is None:
        if config.getoption("loopwatch_update_baseline"):
            raise pytest.UsageError("--loopwatch-update-baseline needs --loopwatch-baseline=PATH")
        return set()
    if config.getoption("loopwatch_update_baseline"):
        return set()
    try:
        return load_baseline(Path(config.invocation_params.dir, path))
    except ValueError as error:
        raise pytest.UsageError(f"--loopwatch-baseline: {error}") from None


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def pytest_report_header(config: pytest.Config) -> str | None:
    """Say that loopwatch watches every test, and with which threshold."""
    settings = config.stash[RUN_SETTINGS]
    if not settings.enabled:
        return None
    strict = ", strict" if settings.strict else ""
    return (
        f"loopwatch: watching every test, threshold {format_duration(settings.threshold)}{strict}"
    )


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
    """One warning naming the test; recorded, not raised, so `-W error` cannot turn
    loopwatch's own trouble into the test's failure."""
    path, line, _ = item.location
    warning = LoopwatchInternalWarning(f"loopwatch internal error: {error!s}")
    item.ihook.pytest_warning_recorded.call_historic(
        kwargs={
            "warning_message": warnings.WarningMessage(
                warning, type(warning), path, (line or 0) + 1
            ),
            "when": "runtest",
            "nodeid": item.nodeid,
            "location": None,
        }
    )


def _settings(item: pytest.Item) -> Settings:
    return item.stash.get(TEST_SETTINGS, None) or item.config.stash[RUN_SETTINGS]


def _begin(item: pytest.Item) -> None:
    settings = _settings(item)
    allowed = item.config.stash[ALLOWED]
    watch = Watch(settings.threshold, strict=settings.strict, allowed=allowed)
    item.stash[TEST_WATCH] = watch
    item.config.stash[RUNNING_TEST] = item.nodeid
    if not settings.enabled:
        return
    item.config.stash[ANY_WATCHED] = True
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
    config = item.config
    base = str(config.invocation_params.dir)
    try:
        stalls = watch.take_unreported()
        config.stash[FINDINGS].extend(Finding(item.nodeid, stall) for stall in stalls)
        for stall in stalls:
            item.user_properties.append(("loopwatch_stall", one_line(stall, base)))
        known = config.stash[BASELINE]
        new = [s for s in stalls if stall_key(item.nodeid, s, base) not in known]
        text = format_stalls(new, base) if new else ""
    except Exception as error:  # noqa: BLE001 - loopwatch must never break the suite
        _internal_error(item, f"could not report stalls: {error!r}")
        return
    if not text or config.getoption("loopwatch_update_baseline"):
        return
    if failed:
        item.add_report_section(when, REPORT_SECTION, text)
    elif config.stash[MODE] == "warn":
        warnings.warn(LoopwatchWarning(text), stacklevel=1)
    else:
        pytest.fail(text, pytrace=False)


def _patch_clients_imported_since(item: pytest.Item) -> None:
    """A test client imported by the previous phase (a fixture's import) is watched from now on."""
    if item.stash.get(TEST_WATCH, None) is None or not _settings(item).enabled:
        return
    try:
        item.config.stash[INTERCEPTION].install()
    except Exception as error:  # noqa: BLE001 - loopwatch must never break the suite
        _internal_error(item, f"could not watch the test clients: {error!r}")


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
    _patch_clients_imported_since(item)
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
    _patch_clients_imported_since(item)
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


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Hand a worker's stalls to the controller; write the JSON report where asked."""
    config = session.config
    findings = config.stash.get(FINDINGS, [])
    base = str(config.invocation_params.dir)
    if _is_worker(config):
        workeroutput: dict[str, Any] = config.workeroutput  # type: ignore[attr-defined]
        workeroutput[WORKER_OUTPUT_KEY] = [to_json(finding, base) for finding in findings]
        return
    path = config.getoption("loopwatch_report")
    if path is not None:
        document = report_document(findings, config.stash[RUN_SETTINGS].threshold, base)
        _write_json(config, path, document)
    baseline = config.getoption("loopwatch_baseline")
    if baseline is not None and config.getoption("loopwatch_update_baseline"):
        _write_json(config, baseline, baseline_document(findings, base))


def _write_json(config: pytest.Config, path: str, document: object) -> None:
    try:
        target = Path(config.invocation_params.dir, path)
        _write_atomically(target, json.dumps(document, indent=2) + "\n")
    except OSError as error:
        config.stash[INTERNAL_ERRORS].append(f"could not write {path}: {error}")


def _write_atomically(path: Path, text: str) -> None:
    """Readers see the old report or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as file:
        file.write(text)
    os.replace(file.name, path)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Stalls by route and blocking line, worst first; and any error of loopwatch itself."""
    config = terminalreporter.config
    if _is_worker(config):
        return
    findings = config.stash.get(FINDINGS, [])
    base = str(config.invocation_params.dir)
    known = config.stash.get(BASELINE, set())
    if findings:
        terminalreporter.section("loopwatch", yellow=True)
        for line in summary_lines(findings, base):
            terminalreporter.line(line)
    if known:
        seen = {stall_key(f.test, f.stall, base) for f in findings}
        stale = sorted(known - seen, key=str)
        terminalreporter.line(
            f"loopwatch baseline: {len(known & seen)} known stalls did not fail, "
            f"{len(stale)} stale entries"
        )
        for test, route, where in stale:
            terminalreporter.line(f"  stale: {test} {route} at {where}")
    if not findings and config.stash.get(ANY_WATCHED, False):
        threshold = format_duration(config.stash[RUN_SETTINGS].threshold)
        terminalreporter.line(f"loopwatch: no stalls (threshold {threshold})")
    errors = config.stash.get(INTERNAL_ERRORS, [])
    if errors:
        terminalreporter.section("loopwatch internal errors", yellow=True)
        for error in errors:
            terminalreporter.line(error)


class _XdistController:
    """Registered only with pytest-xdist: gathers the workers' stalls on the controller."""

    def __init__(self, config: pytest.Config) -> None:
        self._config = config

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: object) -> None:
        """Merge what one worker found, so summary and report cover each stall once."""
        payload = getattr(node, "workeroutput", {}).get(WORKER_OUTPUT_KEY, [])
        threshold = self._config.stash[RUN_SETTINGS].threshold
        findings = self._config.stash[FINDINGS]
        findings.extend(from_json(entry, threshold) for entry in payload)
        if payload:
            self._config.stash[ANY_WATCHED] = True


def pytest_unconfigure(config: pytest.Config) -> None:
    """Leave nothing behind: no patched class, no watchdog thread."""
    interception = config.stash.get(INTERCEPTION, None)
    if interception is not None:
        interception.uninstall()
    shutdown()
    # A session inside a session (pytester) hands the hang display back to the outer one.
    watchdog.hang_after, watchdog.on_hang = config.stash.get(OUTER_HANG, (None, None))
