"""Every setting, resolved in one place and one documented order: ini < env < CLI < marker.

Values arrive raw (strings from the command line, the environment and ini files) and are
validated here, before any test runs: a bad one is a `pytest.UsageError` naming where it
came from and the forms it accepts (exit code 4).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import pytest

from ._durations import ACCEPTED_FORMS, InvalidDuration, parse_duration

DEFAULT_THRESHOLD = 0.1
"""Seconds; asyncio's own `slow_callback_duration`."""

DEFAULT_HANG = 10.0
"""Seconds of one stretch after which the watchdog prints where app code is, at once."""

THRESHOLD_ENV = "LOOPWATCH_THRESHOLD"
MARKER = "loopwatch"
MARKER_SIGNATURE = "loopwatch(enabled=True, *, threshold=None, strict=None)"
MODES = ("fail", "warn")
ANNOTATIONS = ("auto", "github", "off")
"""`auto`: GitHub Actions annotations when GitHub Actions runs the tests (`GITHUB_ACTIONS`)."""
ALLOW_FORM = "module:function, each side an fnmatch pattern (e.g. logging:* or myapp.db:connect)"

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True)
class Settings:
    """What one test is watched with."""

    enabled: bool
    threshold: float
    strict: bool = True
    """Whether known blocking calls fail the test however fast (the default), or only
    stretches longer than the threshold do."""


@dataclass(frozen=True)
class RunSettings:
    """The run's settings: each test's defaults, and what only the run has."""

    test: Settings
    mode: str
    hang_after: float
    allowed: tuple[str, ...]
    report: str | None
    baseline: str | None
    update_baseline: bool
    annotations: bool = False
    """Whether to print a GitHub Actions workflow command per blocking line."""
    sarif: str | None = None


def _duration(value: object, where: str, what: str = "threshold") -> float:
    try:
        return parse_duration(value)
    except InvalidDuration:
        raise pytest.UsageError(
            f"{value!r} is not a valid {what} for {where}; use {ACCEPTED_FORMS}"
        ) from None


def _flag(value: object, where: str) -> bool | None:
    """A yes/no ini value; None when it is not set."""
    if value in (None, "", []):
        return None
    if isinstance(value, bool):
        return value
    text = value.strip().lower() if isinstance(value, str) else None
    if text in _TRUE | _FALSE:
        return text in _TRUE
    raise pytest.UsageError(f"{value!r} is not a valid value for {where}; use true or false")


def _allowed(patterns: object) -> tuple[str, ...]:
    entries = list(patterns) if isinstance(patterns, list) else []
    for pattern in entries:
        if pattern.count(":") != 1 or ":" in (pattern[0], pattern[-1]):
            raise pytest.UsageError(
                f"ini option loopwatch_allow: {pattern!r} is not valid; use {ALLOW_FORM}"
            )
    return tuple(entries)


def run_settings(
    *, cli: Mapping[str, Any], ini: Mapping[str, Any], env: Mapping[str, str]
) -> RunSettings:
    """The run's settings from the command line, the ini file and the environment.

    `cli` and `ini` map option names (`loopwatch_threshold`) to what pytest read; a CLI
    option that was not given is None.
    """
    if cli.get("loopwatch_strict") and cli.get("loopwatch_threshold_only"):
        raise pytest.UsageError(
            "--loopwatch-strict and --loopwatch-threshold-only contradict each other; "
            "use one (blocking calls are caught by default)"
        )
    ini_enabled = _flag(ini.get("loopwatch"), "ini option loopwatch")
    ini_strict = _flag(ini.get("loopwatch_strict"), "ini option loopwatch_strict")
    strict = ini_strict if ini_strict is not None else True
    if cli.get("loopwatch_strict"):
        strict = True
    elif cli.get("loopwatch_threshold_only"):
        strict = False
    # --loopwatch-strict asks for watching too: on its own it must never watch nothing.
    enabled = bool(cli.get("loopwatch") or cli.get("loopwatch_strict") or ini_enabled)
    threshold = DEFAULT_THRESHOLD
    for value, where in (
        (ini.get("loopwatch_threshold"), "ini option loopwatch_threshold"),
        (env.get(THRESHOLD_ENV), f"environment variable {THRESHOLD_ENV}"),
        (cli.get("loopwatch_threshold"), "--loopwatch-threshold"),
    ):
        if value not in (None, ""):
            threshold = _duration(value, where)
    mode = "fail"
    for value, where in (
        (ini.get("loopwatch_mode"), "ini option loopwatch_mode"),
        (cli.get("loopwatch_mode"), "--loopwatch-mode"),
    ):
        if value in (None, ""):
            continue
        if value not in MODES:
            raise pytest.UsageError(f"{value!r} is not a valid mode for {where}; use fail or warn")
        mode = str(value)
    hang_after = DEFAULT_HANG
    for value, where in (
        (ini.get("loopwatch_hang"), "ini option loopwatch_hang"),
        (cli.get("loopwatch_hang"), "--loopwatch-hang"),
    ):
        if value not in (None, ""):
            hang_after = _duration(value, where, "duration")
    baseline = cli.get("loopwatch_baseline")
    update_baseline = bool(cli.get("loopwatch_update_baseline"))
    if update_baseline and baseline is None:
        raise pytest.UsageError("--loopwatch-update-baseline needs --loopwatch-baseline=PATH")
    annotations = "auto"
    for value, where in (
        (ini.get("loopwatch_annotations"), "ini option loopwatch_annotations"),
        (cli.get("loopwatch_annotations"), "--loopwatch-annotations"),
    ):
        if value in (None, ""):
            continue
        if value not in ANNOTATIONS:
            raise pytest.UsageError(
                f"{value!r} is not a valid value for {where}; use auto, github or off"
            )
        annotations = str(value)
    return RunSettings(
        test=Settings(enabled=enabled, threshold=threshold, strict=strict),
        mode=mode,
        hang_after=hang_after,
        allowed=_allowed(ini.get("loopwatch_allow")),
        report=cli.get("loopwatch_report"),
        baseline=baseline,
        update_baseline=update_baseline,
        annotations=annotations == "github"
        or (annotations == "auto" and env.get("GITHUB_ACTIONS") == "true"),
        sarif=cli.get("loopwatch_sarif"),
    )


def _marker_arguments(
    enabled: object = True, *, threshold: object = None, strict: object = None
) -> tuple[object, object, object]:
    return enabled, threshold, strict


def settings_for_test(
    run: Settings,
    marker_args: tuple[Any, ...] | None,
    marker_kwargs: dict[str, Any],
    uses_fixture: bool,
) -> Settings:
    """One test's settings: its closest `loopwatch` marker wins, then the fixture, then the run.

    `marker_args` is None when the test has no marker.
    """
    if marker_args is None:
        return replace(run, enabled=True) if uses_fixture else run
    usage = (
        f"use @pytest.mark.{MARKER_SIGNATURE}, threshold being {ACCEPTED_FORMS}, "
        "strict True or False"
    )
    try:
        enabled, threshold, strict = _marker_arguments(*marker_args, **marker_kwargs)
    except TypeError as error:
        reason = str(error).replace("_marker_arguments()", f"@pytest.mark.{MARKER}")
        raise pytest.UsageError(f"{reason}; {usage}") from None
    if not isinstance(enabled, bool):
        raise pytest.UsageError(f"@pytest.mark.{MARKER}({enabled!r}) is not valid; {usage}")
    if strict is not None and not isinstance(strict, bool):
        raise pytest.UsageError(f"@pytest.mark.{MARKER}(strict={strict!r}) is not valid; {usage}")
    return Settings(
        enabled=enabled,
        threshold=run.threshold
        if threshold is None
        else _duration(threshold, f"@pytest.mark.{MARKER}(threshold=...)"),
        strict=run.strict if strict is None else strict,
    )
