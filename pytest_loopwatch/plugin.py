"""The pytest hooks: the plugin's whole surface, handing the work to the settings, the
engine and the reporting.

Importing this module (pytest does, in every run of every project that installs
loopwatch) loads none of the engine: it is imported on the first watched test.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import warnings
from collections.abc import Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import pytest

from . import _internal_errors
from ._annotations import workflow_commands
from ._baseline import BaselineKey, InvalidBaseline, baseline_document, load_baseline, stall_key
from ._blocking_lines import BlockingLine, blocking_lines, repository_root
from ._durations import ACCEPTED_FORMS, format_duration
from ._findings import Finding, from_json, report_document, to_json
from ._output_files import UnwritablePath, checked_output, refuse_shared, write_atomically
from ._report import format_grouped, format_stalls, one_line
from ._run import RunState, TestState
from ._sarif import sarif_log
from ._settings import (
    ALLOW_FORM,
    MARKER,
    MARKER_SIGNATURE,
    THRESHOLD_ENV,
    RunSettings,
    run_settings,
    settings_for_test,
)
from ._summary import summary_lines
from ._warnings import LoopwatchInternalWarning, LoopwatchWarning

if TYPE_CHECKING:
    from ._engine import Engine
    from ._watch import Watch

RUN = pytest.StashKey[RunState]()
TEST = pytest.StashKey[TestState]()
WORKER_OUTPUT_KEY = "loopwatch"

REPORT_SECTION = "loopwatch"

_CLI_OPTIONS = (
    "loopwatch",
    "loopwatch_threshold",
    "loopwatch_strict",
    "loopwatch_threshold_only",
    "loopwatch_mode",
    "loopwatch_hang",
    "loopwatch_report",
    "loopwatch_baseline",
    "loopwatch_update_baseline",
    "loopwatch_annotations",
    "loopwatch_sarif",
)
_INI_OPTIONS = {
    "loopwatch": "true or false",
    "loopwatch_threshold": f"a string: {ACCEPTED_FORMS}",
    "loopwatch_strict": "true or false",
    "loopwatch_mode": "fail or warn",
    "loopwatch_hang": f"a string: {ACCEPTED_FORMS}",
    "loopwatch_allow": f"one pattern per line: {ALLOW_FORM}",
    "loopwatch_annotations": "auto, github or off",
}


def pytest_addoption(parser: pytest.Parser) -> None:
    """Register the `--loopwatch*` options and the `loopwatch*` ini keys."""
    group = parser.getgroup("loopwatch", "fail tests whose ASGI app code blocks the event loop")
    group.addoption(
        "--loopwatch",
        action="store_true",
        default=None,
        help="watch every app called through httpx/httpx2 ASGITransport or a framework's "
        "test client (Starlette/FastAPI, Litestar, Quart, Django)",
    )
    group.addoption(
        "--loopwatch-threshold",
        metavar="DURATION",
        default=None,
        help=f"longest a stretch of app code may hold the loop: {ACCEPTED_FORMS} "
        f"(default 100ms; env {THRESHOLD_ENV})",
    )
    group.addoption(
        "--loopwatch-threshold-only",
        action="store_true",
        default=None,
        help="fail on stretches over the threshold only, not on known blocking calls "
        "(time.sleep, sync HTTP and database clients, files, subprocesses) however fast",
    )
    group.addoption(
        "--loopwatch-strict",
        action="store_true",
        default=None,
        help="watch, catching known blocking calls however fast (the default since 0.2)",
    )
    group.addoption(
        "--loopwatch-mode",
        default=None,
        metavar="fail|warn",
        help="fail the tests that block the loop (default), or only warn and summarise",
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
        "--loopwatch-sarif",
        metavar="PATH",
        default=None,
        help="write a SARIF 2.1.0 log to PATH for code scanning: one result per blocking line",
    )
    group.addoption(
        "--loopwatch-annotations",
        metavar="auto|github|off",
        default=None,
        help="print a GitHub Actions annotation per blocking line: github, off, or auto "
        "(the default: when GITHUB_ACTIONS=true)",
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
    parser.addini("loopwatch_threshold", "default for --loopwatch-threshold", default="")
    parser.addini(
        "loopwatch_strict",
        "false: only the threshold counts, as --loopwatch-threshold-only (default true)",
        default="",
    )
    parser.addini(
        "loopwatch_allow",
        f"blocking calls and stalls under these frames pass: {ALLOW_FORM}",
        type="linelist",
        default=[],
    )
    parser.addini("loopwatch_mode", "default for --loopwatch-mode: fail or warn", default="")
    parser.addini("loopwatch_hang", "default for --loopwatch-hang", default="")
    parser.addini(
        "loopwatch_annotations",
        "default for --loopwatch-annotations: auto, github or off",
        default="",
    )


def _ini(config: pytest.Config) -> dict[str, object]:
    values = {}
    for name, accepted in _INI_OPTIONS.items():
        # pytest's own coercion of a bad value ends in a message that names neither the
        # option nor what it takes (or, on older pytest, in an INTERNALERROR).
        try:
            values[name] = config.getini(name)
        except (pytest.UsageError, ValueError, TypeError) as error:
            raise pytest.UsageError(f"ini option {name}: {error}; use {accepted}") from None
    return values


def pytest_configure(config: pytest.Config) -> None:
    """Validate every setting up front, so a typo stops the run before any test (exit 4)."""
    config.addinivalue_line(
        "markers",
        f"{MARKER_SIGNATURE}: watch this test's ASGI apps for blocking calls and stalls "
        "(or, with False, do not)",
    )
    settings = run_settings(
        cli={name: config.getoption(name) for name in _CLI_OPTIONS},
        ini=_ini(config),
        env=os.environ,
    )
    config.stash[RUN] = RunState(
        settings=settings,
        baseline=_known_stalls(config, settings.baseline, settings.update_baseline),
    )
    _check_outputs(config, settings)
    if settings.test.enabled and settings.test.strict:
        from ._calls import call_catcher

        # Before the test modules import the app: SQLite connections opened at import
        # are traced only if the hook already listens.
        call_catcher.install_hook()
    # By its hook, not its name: loaded as `-p xdist.plugin` (a sealed run), xdist is not
    # registered as "xdist".
    if hasattr(config.pluginmanager.hook, "pytest_testnodedown"):
        config.pluginmanager.register(_XdistController(config), "loopwatch-xdist")


def _known_stalls(config: pytest.Config, path: str | None, update: bool) -> set[BaselineKey]:
    if path is None or update:
        return set()
    try:
        return load_baseline(Path(config.invocation_params.dir, path))
    except InvalidBaseline as error:
        raise pytest.UsageError(f"--loopwatch-baseline: {error}") from None


def _check_outputs(config: pytest.Config, settings: RunSettings) -> None:
    """Every file the run will write, writable and written by one option only; else a
    usage error before any test (a worker writes none)."""
    if _is_worker(config):
        return
    wanted = [
        ("--loopwatch-report", settings.report),
        ("--loopwatch-sarif", settings.sarif),
        ("--loopwatch-baseline", settings.baseline if settings.update_baseline else None),
    ]
    base = config.invocation_params.dir
    outputs = []
    for option, path in wanted:
        if path is None:
            continue
        try:
            outputs.append((option, checked_output(path, base)))
        except UnwritablePath as error:
            raise pytest.UsageError(
                f"{option}: {error}; give the path of a file to write, e.g. {option}=loopwatch.json"
            ) from None
    try:
        refuse_shared(outputs)
    except UnwritablePath as error:
        raise pytest.UsageError(f"{error}; give each its own file") from None


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def pytest_report_header(config: pytest.Config) -> str | None:
    """Say that loopwatch watches every test, what it fails on, and its threshold."""
    settings = config.stash[RUN].settings.test
    if not settings.enabled:
        return None
    calls = "blocking calls and " if settings.strict else ""
    return (
        f"loopwatch: watching every test for {calls}stalls over "
        f"{format_duration(settings.threshold)}"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Settle each test's settings now, so a bad marker fails the run before any test runs."""
    run = config.stash[RUN]
    for item in items:
        marker = item.get_closest_marker(MARKER)
        try:
            item.stash[TEST] = TestState(
                settings_for_test(
                    run.settings.test,
                    None if marker is None else marker.args,
                    {} if marker is None else dict(marker.kwargs),
                    "loopwatch" in getattr(item, "fixturenames", ()),
                ),
                run,
            )
        except pytest.UsageError as error:
            raise pytest.UsageError(f"{item.nodeid}: {error}") from None


def _internal_error(item: pytest.Item, error: BaseException | str) -> None:
    """Loopwatch's own trouble, as a warning naming the test."""
    _record_warning(
        item, LoopwatchInternalWarning(f"loopwatch internal error: {error!s}"), "runtest"
    )


def _record_warning(item: pytest.Item, warning: Warning, when: str) -> None:
    """Put `warning` in pytest's warnings summary, past the warnings filters: a project's
    `filterwarnings = error` must not turn warn mode's findings, or loopwatch's own trouble,
    into the test's failure."""
    path, line, _ = item.location
    item.ihook.pytest_warning_recorded.call_historic(
        kwargs={
            "warning_message": warnings.WarningMessage(
                warning, type(warning), path, (line or 0) + 1
            ),
            "when": when,
            "nodeid": item.nodeid,
            "location": None,
        }
    )


def _test_state(item: pytest.Item) -> TestState:
    state = item.stash.get(TEST, None)
    if state is None:  # an item that was not collected the usual way
        run = item.config.stash[RUN]
        state = item.stash[TEST] = TestState(run.settings.test, run)
    return state


def _begin(item: pytest.Item, state: TestState) -> None:
    run = state.run
    run.running_test = item.nodeid
    run.running_item = item
    state.held, state.failed = [], False  # a rerun (pytest-rerunfailures) starts afresh
    if not state.settings.enabled:
        if run.engine is not None:  # an earlier test watched: its wrappers go now
            run.engine.rest()
        return
    run.any_watched = True
    try:
        if run.engine is None:
            run.engine = _new_engine(item.config)
        settings = state.settings
        from ._watch import Watch

        state.watch = Watch(
            settings.threshold,
            strict=settings.strict,
            allowed=run.settings.allowed,
            test=item.nodeid,
        )
        run.engine.begin(state.watch)
    except Exception as error:  # noqa: BLE001 - loopwatch must never break the suite
        _internal_error(item, f"could not start watching: {error!r}")


def _new_engine(config: pytest.Config) -> Engine:
    """The session's engine, made on its first watched test: set up once, for every one."""
    # By module path, never `from . import _engine`: that takes the package's attribute,
    # which an in-process pytester session may leave pointing at an engine it dropped from
    # sys.modules while the rest is imported afresh.
    import pytest_loopwatch._engine as engine_module

    engine = engine_module.Engine()
    engine.show_hangs(config.stash[RUN].settings.hang_after, _hang_display(config))
    return engine


def _hang_display(config: pytest.Config) -> Any:
    on_a_worker = _is_worker(config)

    def show(description: str) -> None:
        """Print a hang on the terminal now, past pytest's capture: the test may never end.

        A pytest-xdist worker's terminal output goes nowhere until its test ends; its
        standard error is the run's own, so the hang goes there.
        """
        capture = config.pluginmanager.getplugin("capturemanager")
        test = config.stash[RUN].running_test
        title = f"loopwatch: hang in {test}" if test else "loopwatch: hang"
        with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
            if on_a_worker and sys.__stderr__ is not None:
                sys.__stderr__.write(f"\n{title}\n{description}\n")
                sys.__stderr__.flush()
                return
            writer = config.get_terminal_writer()
            writer.line()
            writer.sep("!", title)
            writer.line(description)
            writer.flush()

    return show


def _hold(item: pytest.Item, state: TestState, during: str | None) -> None:
    """Take the findings recorded since the last take into the run's, and hold the new
    ones (not in the baseline) for the test's report under `during` (None: the body)."""
    if state.watch is None:
        return
    try:
        stalls = state.watch.take_unreported()
    except Exception as error:  # noqa: BLE001 - loopwatch must never break the suite
        _internal_error(item, f"could not report stalls: {error!r}")
        return
    if not stalls:  # nearly every phase of every test
        return
    config = item.config
    run = config.stash[RUN]
    base = str(config.invocation_params.dir)
    try:
        run.findings.extend(Finding(item.nodeid, stall, during=during) for stall in stalls)
        for stall in stalls:
            item.user_properties.append(("loopwatch_stall", one_line(stall, base)))
        new = [s for s in stalls if stall_key(item.nodeid, s, base) not in run.baseline]
    except Exception as error:  # noqa: BLE001 - loopwatch must never break the suite
        _internal_error(item, f"could not report stalls: {error!r}")
        return
    if new:
        state.held.append((during, new))


def _hold_for_fixture(config: pytest.Config, fixturedef: Any, phase: str) -> None:
    """A fixture's findings, named after it: reported with the test it ran for."""
    item = config.stash[RUN].running_item
    if item is None:
        return
    state = _test_state(item)
    if state.watch is None or not state.watch.has_unreported():
        return
    scope = fixturedef.scope
    kind = "fixture" if scope == "function" else f"{scope} fixture"
    _hold(item, state, f"{phase} of {kind} {fixturedef.argname}")


def _check(item: pytest.Item, state: TestState, when: str, failed: bool) -> None:
    """Report the test's findings so far: fail this phase with them, or add them beside a
    failure. Setup's wait for the test's end: a finding in a fixture (a client fixture
    that logs in) must not keep the body from running and showing its own."""
    if state.watch is None:
        return
    if state.watch.has_unreported():
        _hold(item, state, None if when == "call" else when)
    if not state.held or (when == "setup" and not failed):
        return
    groups, state.held = state.held, []
    run = item.config.stash[RUN]
    if run.settings.update_baseline:
        return
    try:
        text = format_grouped(groups, str(item.config.invocation_params.dir))
    except Exception as error:  # noqa: BLE001 - loopwatch must never break the suite
        _internal_error(item, f"could not report stalls: {error!r}")
        return
    if failed or state.failed:  # the test fails once: a second failure would hide nothing
        item.add_report_section(when, REPORT_SECTION, text)
    elif run.settings.mode == "warn":
        _record_warning(item, LoopwatchWarning(text), "runtest")
    else:
        state.failed = True
        pytest.fail(text, pytrace=False)


def _watch_clients_imported_since(item: pytest.Item, state: TestState) -> None:
    """A test client imported by the previous phase (a fixture's import) is watched from now on."""
    engine = state.run.engine
    if state.watch is None or engine is None:
        return
    try:
        engine.watch_clients_imported_since()
    except Exception as error:  # noqa: BLE001 - loopwatch must never break the suite
        _internal_error(item, f"could not watch the test clients: {error!r}")


def _end(item: pytest.Item, state: TestState) -> None:
    watch = state.watch
    run = state.run
    if watch is None or run.engine is None:
        return
    run.app_calls += watch.app_calls
    try:
        run.engine.end(watch)
        _collect_outlived(run)
        if watch.allowed_counts:
            run.allowed.update(watch.allowed_counts)
        allowed = run.engine.take_allowed_counts()
        if allowed:
            run.allowed.update(allowed)
    except Exception as error:  # noqa: BLE001 - loopwatch must never break the suite
        _internal_error(item, f"could not stop watching: {error!r}")
    for message in run.engine.take_internal_errors():
        _internal_error(item, message)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, None, None]:
    """Start watching before the first fixture, and fail setup if a fixture's request blocked."""
    state = _test_state(item)
    _begin(item, state)
    try:
        result = yield
    except BaseException:
        state.failed = True
        _check(item, state, "setup", failed=True)
        raise
    _check(item, state, "setup", failed=False)
    return result


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(
    fixturedef: Any, request: pytest.FixtureRequest
) -> Generator[None, Any, Any]:
    """Name a fixture's findings after it."""
    try:
        return (yield)
    finally:
        _hold_for_fixture(request.config, fixturedef, "setup")


def pytest_fixture_post_finalizer(fixturedef: Any, request: pytest.FixtureRequest) -> None:
    _hold_for_fixture(request.config, fixturedef, "teardown")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    """Fail the test after it ran if its app code, or its fixtures', blocked the loop."""
    state = _test_state(item)
    _watch_clients_imported_since(item, state)
    try:
        result = yield
    except BaseException:
        state.failed = True
        _check(item, state, "call", failed=True)
        raise
    _check(item, state, "call", failed=False)
    return result


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None, None, None]:
    """Stop watching after the last fixture, failing teardown if a finalizer's request
    blocked; then the test's watch goes (its stalls were reported)."""
    state = _test_state(item)
    _watch_clients_imported_since(item, state)
    try:
        try:
            result = yield
        except BaseException:
            _check(item, state, "teardown", failed=True)
            raise
        finally:
            _end(item, state)
            state.run.running_item = None
        _check(item, state, "teardown", failed=False)
        return result
    finally:
        # Kept no longer than its test: a session of many tests keeps no watch.
        state.watch, state.held = None, []


@pytest.fixture
def loopwatch(request: pytest.FixtureRequest) -> Watch:
    """Watch this test's ASGI apps even without --loopwatch; holds its stalls and `wrap(app)`."""
    watch = _test_state(request.node).watch
    if watch is None:  # watching could not start: the internal error says why
        from ._watch import Watch

        watch = Watch(_test_state(request.node).settings.threshold)
    return watch


def _collect_outlived(run: RunState) -> None:
    """The stalls of work that tests' requests left running, each with its own test."""
    if run.engine is None:
        return
    for recorder in run.engine.outlived():
        watch = cast("Watch", recorder)
        stalls = watch.take_unreported()
        run.findings.extend(Finding(watch.test, stall, outlived=True) for stall in stalls)


def _outlived_failing(config: pytest.Config, run: RunState) -> list[Finding]:
    """The findings of work that outlived its test which fail the run."""
    settings = run.settings
    if settings.mode != "fail" or settings.update_baseline:
        return []
    base = str(config.invocation_params.dir)
    return [
        finding
        for finding in run.findings
        if finding.outlived and stall_key(finding.test, finding.stall, base) not in run.baseline
    ]


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Hand a worker's stalls to the controller; write the JSON report where asked; fail
    the run for work that outlived its test (no test is running to fail for it)."""
    config = session.config
    run = config.stash.get(RUN, None)
    if run is None:
        return
    try:
        _collect_outlived(run)
    except Exception as error:  # noqa: BLE001 - loopwatch must never break the suite
        _internal_errors.note(f"could not collect the work that outlived its test: {error!r}")
    base = str(config.invocation_params.dir)
    if _is_worker(config):
        workeroutput: dict[str, Any] = config.workeroutput  # type: ignore[attr-defined]
        workeroutput[WORKER_OUTPUT_KEY] = {
            "stalls": [to_json(finding, base) for finding in run.findings],
            "allowed": dict(run.allowed),
            "app_calls": run.app_calls,
            "any_watched": run.any_watched,
        }
        return
    settings = run.settings
    if _outlived_failing(config, run) and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    if settings.report is not None:
        document = report_document(
            run.findings, settings.test.threshold, base, run.allowed, _unmatched(run)
        )
        _write_json(config, settings.report, document)
    if settings.baseline is not None and settings.update_baseline:
        _write_json(config, settings.baseline, baseline_document(run.findings, base))
    if settings.sarif is not None:
        from . import __version__

        root = _repository_root(config)
        _write_json(config, settings.sarif, sarif_log(_lines(config, run, root), root, __version__))


def _repository_root(config: pytest.Config) -> Path:
    return repository_root(config.invocation_params.dir, os.environ)


def _lines(config: pytest.Config, run: RunState, root: Path) -> list[BlockingLine]:
    """The run's blocking lines in the repository, each known to have failed a test or not."""
    base = str(config.invocation_params.dir)
    settings = run.settings

    def failing(finding: Finding) -> bool:
        return (
            settings.mode == "fail"
            and not settings.update_baseline
            and stall_key(finding.test, finding.stall, base) not in run.baseline
        )

    return blocking_lines(run.findings, base=base, root=root, failing=failing)


def _write_json(config: pytest.Config, path: str, document: object) -> None:
    try:
        target = Path(config.invocation_params.dir, path)
        write_atomically(target, json.dumps(document, indent=2) + "\n")
    except OSError as error:
        _internal_errors.note(f"could not write {path}: {error}")


def _unmatched(run: RunState) -> list[str]:
    """The user's allow rules that let nothing pass, where anything was watched."""
    if not run.any_watched:
        return []
    return [rule for rule in run.settings.allowed if not run.allowed.get(rule)]


def _count(number: int, what: str) -> str:
    return f"1 {what}" if number == 1 else f"{number} {what}s"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Stalls by route and blocking line, worst first; and any error of loopwatch itself."""
    config = terminalreporter.config
    run = config.stash.get(RUN, None)
    if run is None or _is_worker(config):
        return
    base = str(config.invocation_params.dir)
    outlived = _outlived_failing(config, run)
    if outlived:
        terminalreporter.section("loopwatch: work that outlived its test", red=True)
        for finding in outlived:
            terminalreporter.line(
                f"{finding.test}: a request of this test left work running that blocked "
                "the loop after the test ended (the run fails for it)"
            )
            terminalreporter.line(format_stalls([finding.stall], base))
    if run.findings:
        terminalreporter.section("loopwatch", yellow=True)
        for line in summary_lines(run.findings, base):
            terminalreporter.line(line)
        if run.settings.annotations:
            for command in workflow_commands(_lines(config, run, _repository_root(config))):
                terminalreporter.write_line(command)
    if run.baseline:
        seen = {stall_key(f.test, f.stall, base) for f in run.findings}
        stale = sorted(run.baseline - seen, key=str)
        terminalreporter.line(
            f"loopwatch baseline: {_count(len(run.baseline & seen), 'known stall')} did not "
            f"fail, {_count(len(stale), 'stale entry').replace('entrys', 'entries')}"
        )
        for test, route, where in stale:
            terminalreporter.line(f"  stale: {test} {route} at {where}")
    if not run.findings and run.any_watched:
        threshold = format_duration(run.settings.test.threshold)
        if run.app_calls:
            watched = f"{_count(run.app_calls, 'app call')} watched"
        else:
            watched = (
                "no app call watched: no test called an app through httpx's or httpx2's "
                "ASGITransport, a framework's test client or loopwatch.wrap()"
            )
        terminalreporter.line(f"loopwatch: no stalls (threshold {threshold}, {watched})")
    if run.allowed:
        let_pass = ", ".join(f"{rule} {count}" for rule, count in run.allowed.most_common())
        terminalreporter.line(f"loopwatch allow-list: let pass {let_pass}")
    unmatched = _unmatched(run)
    if unmatched:
        terminalreporter.line(
            f"loopwatch allow-list: never matched, can go: {', '.join(unmatched)}"
        )
    errors = _internal_errors.take()
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
        payload = getattr(node, "workeroutput", {}).get(WORKER_OUTPUT_KEY, {})
        run = self._config.stash[RUN]
        threshold = run.settings.test.threshold
        run.findings.extend(from_json(entry, threshold) for entry in payload.get("stalls", []))
        run.app_calls += payload.get("app_calls", 0)
        run.allowed.update(payload.get("allowed", {}))
        run.any_watched = run.any_watched or payload.get("any_watched", False)


def pytest_unconfigure(config: pytest.Config) -> None:
    """Leave nothing behind: no patched class, no watchdog thread."""
    run = config.stash.get(RUN, None)
    if run is None or run.engine is None:
        return
    run.engine.shutdown()
