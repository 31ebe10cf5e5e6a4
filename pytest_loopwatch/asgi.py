"""The ASGI middleware that times an app's own code and turns long stretches into stalls."""

from __future__ import annotations

import inspect
from asyncio import _get_running_loop
from collections import Counter
from collections.abc import Awaitable, Callable, MutableMapping
from threading import get_ident
from typing import Any, TypeAlias

from . import stretches
from .locations import blocking_stack, to_frames
from .records import Endpoint, Frame, Request, Stall
from .spawned import follower
from .stretches import SampledStack, running_stretches, timed
from .watch import active_watch

Scope: TypeAlias = MutableMapping[str, Any]
Message: TypeAlias = MutableMapping[str, Any]
Receive: TypeAlias = Callable[[], Awaitable[Message]]
Send: TypeAlias = Callable[[Message], Awaitable[None]]
ASGIApp: TypeAlias = Callable[[Scope, Receive, Send], Awaitable[None]]


class LoopwatchMiddleware:
    """ASGI middleware: records every stretch of `app`'s code that stalls the loop.

    Stalls go to the watch active when they end (the running test); with none active,
    the app runs untouched. Usable as `app.add_middleware(LoopwatchMiddleware)`.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await watched_call(self.app, scope, receive, send)


def watched_call(app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
    """Call `app`, timed while a watch is active and no watched call around it times it."""
    thread = get_ident()
    if not stretches.timing or thread in running_stretches:
        return app(scope, receive, send)
    # An asyncio loop followed last is still the one running here while it runs on this
    # thread: a check that spares each request asking for the running loop, which on
    # Python 3.11 costs a system call (getpid).
    followed = follower.followed_loop_attributes
    if followed is None or followed["_thread_id"] != thread:
        loop = _get_running_loop()
        if loop is None or loop is not follower.followed_loop:  # trio has no asyncio loop
            try:
                follower.follow(loop)
            except Exception as error:  # noqa: BLE001 - never raise into the app; time it anyway
                watch = active_watch()
                if watch is not None:
                    watch.internal_errors.append(f"following the tasks of a request: {error!r}")
    phase: list[str] | None = None
    if scope.get("type") == "lifespan":
        phase, receive = _following_lifespan_phase(receive)
    return timed(
        app(scope, receive, send),
        _record_stall,
        (scope, scope.get("root_path", ""), phase),
        follower.spawn_hook,
    )


def _following_lifespan_phase(receive: Receive) -> tuple[list[str], Receive]:
    """A `receive` that notes whether the app is starting up or shutting down."""
    phase = ["startup"]

    async def receive_noting_phase() -> Message:
        message = await receive()
        phase[0] = str(message.get("type", "")).removeprefix("lifespan.")
        return message

    return phase, receive_noting_phase


def _record_stall(
    call: tuple[Scope, str, list[str] | None],
    duration: float,
    samples: Counter[SampledStack] | None,
    blocking_call: str | None = None,
    /,
) -> None:
    watch = active_watch()
    if watch is None:
        return
    if blocking_call is not None and call[0].get("type") == "lifespan":
        return  # opening files and connecting at startup is what a lifespan is for
    try:
        watch.record(_stall(call, duration, watch.threshold, samples, blocking_call))
    except Exception as error:  # noqa: BLE001 - never raise into the app
        watch.internal_errors.append(f"recording a stall: {error!r}")


def wrap(app: ASGIApp) -> ASGIApp:
    """`app`, watched; an app that is watched already comes back as it is."""
    if isinstance(app, LoopwatchMiddleware):
        return app
    return LoopwatchMiddleware(app)


def _stall(
    call: tuple[Scope, str, list[str] | None],
    duration: float,
    threshold: float,
    samples: Counter[SampledStack] | None,
    blocking_call: str | None,
) -> Stall:
    scope, entry_root_path, phase = call
    found = blocking_stack(samples) if samples else None
    stack: tuple[Frame, ...] = ()
    location: Frame | None = None
    if found is not None:
        sampled, index = found
        stack = to_frames(sampled)
        location = stack[index]
    return Stall(
        duration=duration,
        threshold=threshold,
        request=Request(
            type=str(scope.get("type", "")),
            method=scope.get("method"),
            path=scope.get("path"),
            phase=None if phase is None else phase[0],
        ),
        route=_route(scope, entry_root_path),
        endpoint=_endpoint(scope.get("endpoint")),
        location=location,
        stack=stack,
        samples=sum(samples.values()) if samples else 0,
        call=blocking_call,
    )


def _route(scope: Scope, entry_root_path: str) -> str | None:
    """The matched route's path template, with the prefix of the mounts it sits under."""
    template = getattr(scope.get("route"), "path", None)
    if not isinstance(template, str):
        return None
    root_path = scope.get("root_path", "")
    mounted_under = (
        root_path[len(entry_root_path) :] if root_path.startswith(entry_root_path) else ""
    )
    return mounted_under + template


def _endpoint(endpoint: object) -> Endpoint | None:
    if endpoint is None:
        return None
    target = inspect.unwrap(endpoint) if callable(endpoint) else endpoint
    module = getattr(target, "__module__", None)
    qualname = getattr(target, "__qualname__", None) or type(target).__qualname__
    name = f"{module}.{qualname}" if module else qualname
    code = getattr(target, "__code__", None)
    if code is not None:
        return Endpoint(name=name, file=code.co_filename, line=code.co_firstlineno)
    try:
        file = inspect.getsourcefile(target)  # type: ignore[arg-type]
        line = inspect.getsourcelines(target)[1]  # type: ignore[arg-type]
    except (TypeError, OSError):
        return Endpoint(name=name, file=None, line=None)
    return Endpoint(name=name, file=file, line=line)
