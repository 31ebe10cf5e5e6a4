"""The ASGI middleware that times an app's own code, and records its long stretches and
blocking calls into the recorder active when they end (the running test's watch)."""

from __future__ import annotations

import contextlib
from asyncio import _get_running_loop
from collections import Counter
from collections.abc import Awaitable, Callable, MutableMapping
from threading import get_ident
from typing import Any, Protocol, TypeAlias

# Not `from . import _stretches`: that takes the package's attribute, which can be a module
# an in-process pytester session dropped from sys.modules with the rest of the lazily
# imported engine; and `timing` is read from the module on every call.
import pytest_loopwatch._stretches as _stretches

from ._beat import keep_beating
from ._internal_errors import note
from ._records import RawStall, Request, SampledStack
from ._routes import endpoint_in_scope, route_in_scope
from ._spawned import follower, spawned_task
from ._stretches import running_stretches, timed

Scope: TypeAlias = MutableMapping[str, Any]
Message: TypeAlias = MutableMapping[str, Any]
Receive: TypeAlias = Callable[[], Awaitable[Message]]
Send: TypeAlias = Callable[[Message], Awaitable[None]]
ASGIApp: TypeAlias = Callable[[Scope, Receive, Send], Awaitable[None]]


class Recorder(Protocol):
    """Where stalls go: a `Watch`."""

    threshold: float
    app_calls: int
    """How many calls of watched apps began while this recorder was active."""

    def record(self, stall: RawStall) -> None: ...


_recorders: list[Recorder] = []
"""The recorders begun and not yet ended; the last one gets what is recorded now."""

_outlived: list[Recorder] = []
"""Recorders that ended, and then got a stall of work a request of theirs left running (a
task it did not await, a lifespan's task): that work is their test's, not the running
one's. Each once, until `take_outlived`."""


def take_outlived() -> list[Recorder]:
    """The ended recorders that got stalls since the last call."""
    if not _outlived:  # after nearly every test
        return []
    taken = _outlived[:]
    del _outlived[:]
    return taken


def begin_recording(recorder: Recorder) -> None:
    """Record into `recorder` until `end_recording`; recorders nest (pytester's sessions)."""
    _recorders.append(recorder)


def end_recording(recorder: Recorder) -> None:
    if recorder in _recorders:
        _recorders.remove(recorder)


def active_recorder() -> Recorder | None:
    return _recorders[-1] if _recorders else None


class LoopwatchMiddleware:
    """ASGI middleware: records every stretch of `app`'s code that stalls the loop.

    Stalls go to the watch active when they end (the running test); with none active,
    the app runs untouched. Usable as `app.add_middleware(LoopwatchMiddleware)`.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        __tracebackhide__ = True  # pytest: a traceback through here points at the app
        if watched_by_its_class(self.app):  # a framework's app, watched while a test runs
            await self.app(scope, receive, send)
        else:
            await watched_call(self.app, scope, receive, send)


WATCHED_MARK = "_loopwatch_watches_calls"
"""Set on a framework's `__call__` that loopwatch replaced to watch every call of its apps."""


def watched_by_its_class(app: object) -> bool:
    return getattr(type(app).__call__, WATCHED_MARK, False) is True


def wrap(app: ASGIApp) -> ASGIApp:
    """`app`, watched; an app that is watched already comes back as it is."""
    if isinstance(app, LoopwatchMiddleware):
        return app
    return LoopwatchMiddleware(app)


def watched_call(
    app: ASGIApp,
    scope: Scope,
    receive: Receive,
    send: Send,
    method: Callable[[Any, Scope, Receive, Send], Awaitable[Any]] | None = None,
) -> Awaitable[Any]:
    """Call `app` (through `method`, its class's own `__call__`, when given), timed while a
    watch is active and no watched call around it times it.

    One function, no helper: this runs for every request, and each Python call costs.
    """
    thread = get_ident()
    if not _stretches.timing or thread in running_stretches:
        return app(scope, receive, send) if method is None else method(app, scope, receive, send)
    if getattr(app, "middleware_stack", False) is None:
        _build_before_the_request(app)
    phase: list[str] | None = None
    if scope.get("type") == "lifespan":
        phase, receive = _following_lifespan_phase(receive)
    call = app(scope, receive, send) if method is None else method(app, scope, receive, send)
    if _recorders:
        _recorders[-1].app_calls += 1
    # An asyncio loop followed last is still the one running here while it runs on this
    # thread: a check that spares each request asking for the running loop, which on
    # Python 3.11 costs a system call (getpid).
    followed = follower.followed_loop_attributes
    if followed is None or followed["_thread_id"] != thread:
        loop = _get_running_loop()
        if loop is None or loop is not follower.followed_loop:  # trio has no asyncio loop
            try:
                follower.follow(loop)
                keep_beating(loop)
            except Exception as error:  # noqa: BLE001 - never raise into the app; time it anyway
                note(f"following the tasks of a request: {error!r}")
    return timed(
        call,
        _record_stall,
        (scope, scope.get("root_path", ""), phase, app, _recorders[-1] if _recorders else None),
        follower.spawn_hook,
    )


def _build_before_the_request(app: Any) -> None:
    """Build a Starlette (or FastAPI) app's middleware stack now, untimed: Starlette builds
    it inside the app's first call, running every middleware's constructor (one that reads
    a file once failed 8 tests of a real project), a moment later. That is the app being
    made, not the request's work; a stack that fails to build is left to Starlette, which
    raises where it always does."""
    build = getattr(app, "build_middleware_stack", None)
    if callable(build):
        # A failure is left to the app's own call, which builds the stack again and raises.
        with contextlib.suppress(Exception):
            app.middleware_stack = build()


def watched_handler_call(
    handler: object, method: Callable[[Any, Scope], Awaitable[Any]], scope: Scope
) -> Awaitable[Any]:
    """`method(handler, scope)`, a framework handler's call for the request in `scope`
    (Django's test client calls no ASGI app), timed as `watched_call` times an app's."""

    def call_handler(handler: Any, scope: Scope, _receive: Receive, _send: Send) -> Any:
        return method(handler, scope)

    return watched_call(handler, scope, _no_receive, _no_send, call_handler)  # type: ignore[arg-type]


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}


async def _no_send(message: Message) -> None:
    pass


def _following_lifespan_phase(receive: Receive) -> tuple[list[str], Receive]:
    """A `receive` that notes whether the app is starting up or shutting down."""
    phase = ["startup"]

    async def receive_noting_phase() -> Message:
        message = await receive()
        phase[0] = str(message.get("type", "")).removeprefix("lifespan.")
        return message

    return phase, receive_noting_phase


def _record_stall(
    call: tuple[Scope, str, list[str] | None, object, Recorder | None],
    duration: float,
    samples: Counter[SampledStack] | None,
    blocking_call: str | None = None,
    family: str | None = None,
    started: float | None = None,
    /,
) -> None:
    """On the loop thread, inside the app's call: only memory is read here."""
    scope, entry_root_path, phase, app, origin = call
    recorder = active_recorder()
    outlived = origin is not None and origin is not recorder and origin not in _recorders
    if outlived:
        recorder = origin  # the test whose request left this work running
    if recorder is None:
        return
    try:
        recorder.record(
            RawStall(
                duration=duration,
                threshold=recorder.threshold,
                request=Request(
                    type=str(scope.get("type", "")),
                    method=scope.get("method"),
                    path=scope.get("path"),
                    phase=None if phase is None else phase[0],
                    task=None if phase is None else spawned_task(),
                ),
                route=route_in_scope(scope, entry_root_path),
                endpoint=endpoint_in_scope(scope),
                samples=samples,
                call=blocking_call,
                family=family,
                app=app,
                stretch_started=started,
            )
        )
        if outlived and not any(known is recorder for known in _outlived):
            _outlived.append(recorder)
    except Exception as error:  # noqa: BLE001 - never raise into the app
        note(f"recording a stall: {error!r}")
