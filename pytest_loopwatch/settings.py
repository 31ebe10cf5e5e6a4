"""Where each setting comes from, in one documented order: ini < env < CLI < marker."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import pytest

from .durations import ACCEPTED_FORMS, InvalidDuration, parse_duration

DEFAULT_THRESHOLD = 0.1
"""Seconds; asyncio's own `slow_callback_duration`."""

THRESHOLD_ENV = "LOOPWATCH_THRESHOLD"
MARKER = "loopwatch"
MARKER_SIGNATURE = "loopwatch(enabled=True, *, threshold=None, strict=None)"

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


@dataclass(frozen=True)
class Settings:
    """Whether a test is watched, how long a stretch of app code may hold the loop, and
    whether known blocking calls count however fast (strict mode)."""

    enabled: bool
    threshold: float
    strict: bool = False


def _threshold(value: object, where: str, what: str = "threshold") -> float:
    try:
        return parse_duration(value)
    except InvalidDuration:
        raise pytest.UsageError(
            f"{value!r} is not a valid {what} for {where}; use {ACCEPTED_FORMS}"
        ) from None


def _flag(value: object, where: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise pytest.UsageError(f"{value!r} is not a valid value for {where}; use true or false")


def session_settings(
    *,
    cli_enabled: bool | None,
    cli_threshold: str | None,
    env_threshold: str | None,
    ini_enabled: object,
    ini_threshold: object,
    cli_strict: bool | None = None,
    ini_strict: object = False,
) -> Settings:
    """The run's settings; raises `pytest.UsageError` naming the source of a bad value."""
    enabled = cli_enabled if cli_enabled is not None else _flag(ini_enabled, "ini option loopwatch")
    strict = (
        cli_strict if cli_strict is not None else _flag(ini_strict, "ini option loopwatch_strict")
    )
    if cli_threshold is not None:
        threshold = _threshold(cli_threshold, "--loopwatch-threshold")
    elif env_threshold is not None:
        threshold = _threshold(env_threshold, f"environment variable {THRESHOLD_ENV}")
    elif ini_threshold not in (None, ""):
        threshold = _threshold(ini_threshold, "ini option loopwatch_threshold")
    else:
        threshold = DEFAULT_THRESHOLD
    return Settings(enabled=enabled, threshold=threshold, strict=strict)


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
        else _threshold(threshold, f"@pytest.mark.{MARKER}(threshold=...)"),
        strict=run.strict if strict is None else strict,
    )


MODES = ("fail", "warn")


def run_mode(*, cli_mode: str | None, ini_mode: object) -> str:
    """`fail` (the default) fails the tests that stall; `warn` only reports them."""
    for value, where in ((cli_mode, "--loopwatch-mode"), (ini_mode, "ini option loopwatch_mode")):
        if value in (None, ""):
            continue
        if value not in MODES:
            raise pytest.UsageError(f"{value!r} is not a valid mode for {where}; use fail or warn")
        return str(value)
    return "fail"


DEFAULT_HANG = 10.0
"""Seconds of one stretch after which the watchdog prints where app code is, at once."""


def hang_after(*, cli_hang: str | None, ini_hang: object) -> float:
    """How long a stretch runs before it is shown as a hang: command line, ini, or 10 s."""
    if cli_hang is not None:
        return _threshold(cli_hang, "--loopwatch-hang", "duration")
    if ini_hang not in (None, ""):
        return _threshold(ini_hang, "ini option loopwatch_hang", "duration")
    return DEFAULT_HANG
