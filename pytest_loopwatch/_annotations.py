"""GitHub Actions annotations: one workflow command per blocking line, which GitHub shows on
the pull request's diff at that line.

The format is GitHub's `::error file=F,line=L,title=T::MESSAGE`: in the message `%`, CR and
LF are escaped as `%25`, `%0D`, `%0A`; in a property, `:` and `,` as well.
"""

from __future__ import annotations

from collections.abc import Iterable

from ._blocking_lines import BlockingLine
from ._durations import format_duration

_TITLES = {
    "stall": "loopwatch: the event loop was blocked",
    "call": "loopwatch: a blocking call on the event loop",
}


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def _message(entry: BlockingLine) -> str:
    requests = ", ".join(entry.requests)
    calls = ", ".join(entry.calls)
    count = len(entry.durations)
    if entry.kind == "call":
        times = "" if count == 1 else f" ({count} times)"
        head = f"{requests} called {calls} on the event loop{times}"
    else:
        times = "" if count == 1 else f" {count} times, worst"
        head = f"{requests} blocked the event loop{times} {format_duration(max(entry.durations))}"
        head += f" (threshold {format_duration(entry.threshold)})"
        if calls:
            head += f", calling {calls}"
    lines = [head]
    lines.extend(f"fix: {fix}" for fix in entry.fixes)
    lines.append("in " + ", ".join(entry.tests))
    return "\n".join(lines)


def workflow_commands(entries: Iterable[BlockingLine]) -> list[str]:
    """An `::error` per line that failed a test; `::warning` for lines that did not fail
    (warn mode, or known to the baseline)."""
    commands = []
    for entry in entries:
        level = "error" if entry.failing else "warning"
        properties = ",".join(
            f"{name}={_escape_property(value)}"
            for name, value in (
                ("file", entry.file),
                ("line", str(entry.line)),
                ("title", _TITLES[entry.kind]),
            )
        )
        commands.append(f"::{level} {properties}::{_escape_data(_message(entry))}")
    return commands
