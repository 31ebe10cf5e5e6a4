"""The text a developer reads when a test stalled the loop."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

from ._durations import format_duration
from ._records import Frame, Request, Stall
from ._stacks import LIBRARY_ROOTS, is_user_code, library_name


def display_path(file: str, base: str) -> str:
    """`file` relative to `base` where it lies below it, so that `path.py:LINE` is clickable."""
    try:
        relative = os.path.relpath(file, base)
    except ValueError:
        return file
    return file if relative.startswith(os.pardir) else relative


def shown_path(file: str, base: str) -> str:
    """`file` as a report shows it: below `base` relative to it, in an installed package
    from the package on (`starlette/routing.py`), else as it is."""
    if is_user_code(file):
        return display_path(file, base)
    for root in LIBRARY_ROOTS:
        if file.startswith(root):
            return file[len(root) :]
    return display_path(file, base)


def request_head(request: Request) -> str:
    """`GET /items/3`, `WEBSOCKET /ws`, `lifespan startup`."""
    if request.type == "http":
        return f"{request.method} {request.path}"
    if request.type == "websocket":
        return f"WEBSOCKET {request.path}"
    if request.type == "lifespan":
        head = f"lifespan {request.phase}" if request.phase else "lifespan"
        # A task the lifespan started runs on while the tests run: name it, and who started it.
        return f"task {request.task}, started at {head}" if request.task else head
    return request.type or "ASGI call"


def describe_request(stall: Stall) -> str:
    head = request_head(stall.request)
    return f"{head}  route {stall.route}" if stall.route else head


def _what(stall: Stall) -> str:
    if stall.kind == "call":
        return f"called {stall.call}"
    return f"blocked {format_duration(stall.duration)}"


def _calling(stall: Stall) -> str:
    return f", calling {stall.call}" if stall.kind == "stall" and stall.call else ""


def one_line(stall: Stall, base: str) -> str:
    """A stall in one line, for JUnit properties and warnings summaries."""
    location = stall.location
    where = "" if location is None else f" at {display_path(location.file, base)}:{location.line}"
    return f"{describe_request(stall)}: {_what(stall)}{where}"


def _headline(stalls: Sequence[Stall]) -> str:
    blocked = sum(stall.kind == "stall" for stall in stalls)
    calls = len(stalls) - blocked
    parts = []
    if blocked:
        times = "1 time" if blocked == 1 else f"{blocked} times"
        parts.append(
            f"the event loop was blocked {times} (threshold {format_duration(stalls[0].threshold)})"
        )
    if calls:
        made = "1 blocking call was" if calls == 1 else f"{calls} blocking calls were"
        parts.append(f"{made} made on the event loop")
    return "loopwatch: " + "; ".join(parts)


def format_stalls(stalls: Sequence[Stall], base: str) -> str:
    """The failure text for the stalls and blocking calls of one test phase."""
    return format_grouped([(None, stalls)], base)


def format_grouped(groups: Sequence[tuple[str | None, Sequence[Stall]]], base: str) -> str:
    """The failure text for a test's findings, each group under where in the test it was
    found (`setup of fixture client`; None: the test body)."""
    lines = [_headline([stall for _, stalls in groups for stall in stalls])]
    labelled = len(groups) > 1 or groups[0][0] is not None
    for during, stalls in groups:
        if labelled:
            lines.extend(("", f"  during {during or 'the test'}:"))
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
        if stall.fix:
            yield f"  fix: {stall.fix}"
        return
    library = "" if location.is_user_code else " (library code)"
    where = f"{shown_path(location.file, base)}:{location.line} in {location.function}"
    yield f"{what} at {where}{library}{_calling(stall)}"
    if location.code:
        yield f"      {location.code}"
    reached_from = stall.reached_from
    if reached_from is not None:
        yield (
            f"  reached from {display_path(reached_from.file, base)}:{reached_from.line} "
            f"in {reached_from.function}"
        )
        if reached_from.code:
            yield f"      {reached_from.code}"
    if stall.fix:
        yield f"  fix: {stall.fix}"
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
            yield f"    {shown_path(frame.file, base)}:{frame.line} in {frame.function}"
            if frame.code:
                yield f"        {frame.code}"
