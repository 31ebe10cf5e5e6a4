"""The text a developer reads when a test stalled the loop."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

from .durations import format_duration
from .locations import library_name
from .records import Frame, Stall


def display_path(file: str, base: str) -> str:
    """`file` relative to `base` where it lies below it, so that `path.py:LINE` is clickable."""
    try:
        relative = os.path.relpath(file, base)
    except ValueError:
        return file
    return file if relative.startswith(os.pardir) else relative


def describe_request(stall: Stall) -> str:
    request = stall.request
    if request.type == "http":
        head = f"{request.method} {request.path}"
    elif request.type == "websocket":
        head = f"WEBSOCKET {request.path}"
    elif request.type == "lifespan":
        head = f"lifespan {request.phase}" if request.phase else "lifespan"
    else:
        head = request.type or "ASGI call"
    return f"{head}  route {stall.route}" if stall.route else head


def _what(stall: Stall) -> str:
    if stall.call is not None:
        return f"called {stall.call}"
    return f"blocked {format_duration(stall.duration)}"


def one_line(stall: Stall, base: str) -> str:
    """A stall in one line, for JUnit properties and warnings summaries."""
    location = stall.location
    where = "" if location is None else f" at {display_path(location.file, base)}:{location.line}"
    return f"{describe_request(stall)}: {_what(stall)}{where}"


def _headline(stalls: Sequence[Stall]) -> str:
    blocked = sum(stall.call is None for stall in stalls)
    calls = len(stalls) - blocked
    parts = []
    if blocked:
        times = "1 time" if blocked == 1 else f"{blocked} times"
        parts.append(
            f"the event loop was blocked {times} (threshold {format_duration(stalls[0].threshold)})"
        )
    if calls:
        made = "1 blocking call was" if calls == 1 else f"{calls} blocking calls were"
        parts.append(f"{made} made on the event loop (strict mode)")
    return "loopwatch: " + "; ".join(parts)


def format_stalls(stalls: Sequence[Stall], base: str) -> str:
    """The failure text for the stalls and blocking calls of one test phase."""
    lines = [_headline(stalls)]
    for stall in stalls:
        lines.append("")
        lines.extend(_stall_lines(stall, base))
    return "\n".join(lines)


def _stall_lines(stall: Stall, base: str) -> Iterable[str]:
    yield f"  {describe_request(stall)}"
    endpoint = stall.endpoint
    if endpoint is not None:
        where = f" ({display_path(endpoint.file, base)}:{endpoint.line})" if endpoint.file else ""
        yield f"  endpoint {endpoint.name}{where}"
    what = f"  {_what(stall)}"
    location = stall.location
    if location is None:
        yield f"{what} (no stack sample: the loop thread never let the watchdog look)"
        return
    yield f"{what} at {display_path(location.file, base)}:{location.line} in {location.function}"
    if location.code:
        yield f"      {location.code}"
    yield "  stack (most recent call last):"
    yield from _stack_lines(stall.stack, base)


def _stack_lines(stack: Sequence[Frame], base: str) -> Iterable[str]:
    """User frames in full; each run of library frames folded into one line."""
    folded: list[Frame] = []
    for frame in (*stack, None):
        if frame is not None and not frame.is_user_code:
            folded.append(frame)
            continue
        if folded:
            libraries = ", ".join(dict.fromkeys(library_name(f.file) for f in folded))
            count = "1 library frame" if len(folded) == 1 else f"{len(folded)} library frames"
            yield f"    ... {count} ({libraries})"
            folded = []
        if frame is not None:
            yield f"    {display_path(frame.file, base)}:{frame.line} in {frame.function}"
            if frame.code:
                yield f"        {frame.code}"
