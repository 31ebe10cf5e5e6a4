"""Reading and writing durations the way users type them: `250ms`, `0.25s`, `0.25`."""

from __future__ import annotations

import math
import re

ACCEPTED_FORMS = "a positive number of seconds or milliseconds, e.g. 0.25, 0.25s, 250ms"

_DURATION = re.compile(r"\s*(?P<number>[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(?P<unit>ms|s)?\s*")


class InvalidDuration(ValueError):
    """A value that is not a positive, finite duration."""


def parse_duration(value: object) -> float:
    """Return `value` in seconds; numbers are seconds, strings may end in `s` or `ms`."""
    if isinstance(value, bool):
        raise InvalidDuration(value)
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.fullmatch(value)):
        seconds = float(match["number"])
        if match["unit"] == "ms":
            seconds /= 1000
    else:
        raise InvalidDuration(value)
    if not math.isfinite(seconds) or seconds <= 0:
        raise InvalidDuration(value)
    return seconds


def format_duration(seconds: float) -> str:
    """Milliseconds, with a decimal only where a whole number would hide the size; a
    duration under a tenth of a millisecond in microseconds or nanoseconds, never as 0."""
    milliseconds = seconds * 1000
    if milliseconds >= 10:
        return f"{milliseconds:.0f} ms"
    if milliseconds >= 0.1:
        return f"{milliseconds:.1f} ms"
    if seconds >= 1e-6:
        return f"{seconds * 1e6:.3g} µs"
    return f"{seconds * 1e9:.3g} ns"
