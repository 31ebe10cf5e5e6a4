"""Watching the apps that test clients call, without touching their code.

httpx's and httpx2's `ASGITransport` and Starlette's `TestClient` keep the app in an
instance attribute `app` and read it each time they call it. A data descriptor named
`app` on their classes takes precedence over that instance attribute, so it hands the
clients the app watched, also in clients created before the test began; removing the
descriptor restores the classes exactly.
"""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import Awaitable, Callable, Iterator
from types import CodeType, CoroutineType, FunctionType
from typing import Any, TypeAlias

from ._asgi import (
    WATCHED_MARK,
    ASGIApp,
    LoopwatchMiddleware,
    Scope,
    watched_by_its_class,
    watched_call,
    watched_handler_call,
)
from ._calls import modules_mark

_MISSING = object()

_Class: TypeAlias = tuple[str, str]
"""(module, class name)."""

# (the class, the classes whose code reads its `app` for calling it, or None for every
# reader). Transports are read on every request and hardly ever by users: every read
# gets the watched app. A test client's `app` is what users read
# (`client.app.dependency_overrides`, `client.app.state`): only its own code and the
# transports and sessions it hands itself to get the watched app. (Looking at the caller
# costs 2% of a fast request, too much for the transports.)
# Only modules the test suite has imported are patched, so that loopwatch never imports
# a client (with side effects such as Starlette's warning about httpx) on its own.
_CALLERS: tuple[tuple[_Class, tuple[_Class, ...] | None], ...] = (
    (("httpx", "ASGITransport"), None),
    (("httpx2", "ASGITransport"), None),
    (("httpx2.websockets._transport", "ASGIWebSocketAsyncNetworkStream"), None),
    (("starlette.testclient", "_TestClientTransport"), None),
    (("starlette.testclient", "WebSocketTestSession"), None),
    (("starlette.testclient", "TestClient"), (("starlette.testclient", "TestClient"),)),
    (
        ("litestar.testing.client.base", "BaseTestClient"),
        (
            ("litestar.testing.transport", "TestClientTransport"),
            ("litestar.testing.life_span_handler", "LifeSpanHandler"),
            ("litestar.testing.websocket_test_session", "WebSocketTestSession"),
        ),
    ),
    # Quart's test client hands the app to a connection per request, which calls it.
    (("quart.testing.connections", "TestHTTPConnection"), None),
    (("quart.testing.connections", "TestWebsocketConnection"), None),
    (("quart.testing.app", "TestApp"), None),
    # asgi-lifespan's LifespanManager runs an app's lifespan as a task of the test's loop.
    (("asgi_lifespan._manager", "LifespanManager"), None),
)

_APPS: tuple[_Class, ...] = (
    ("starlette.applications", "Starlette"),
    ("litestar.app", "Litestar"),
    ("quart.app", "Quart"),
    ("django.core.handlers.asgi", "ASGIHandler"),
)
"""The frameworks' app classes: every call of their apps is watched, however it is driven
(a hand-written driver, a live server in a thread), by their own `__call__`; test clients
then hand them out as they are. A subclass with a `__call__` of its own is watched where
the clients call it."""

_DELEGATING_APPS: tuple[_Class, ...] = (("fastapi.applications", "FastAPI"),)
"""App classes whose `__call__` only awaits their base's, which is watched: theirs is marked,
not replaced. Replaced too, it would nest one watched call in another, and the plain
function that decides to pass through costs each request a call (0.4 µs, 0.3%)."""

_HANDLERS: tuple[_Class, ...] = (("django.test.client", "AsyncClientHandler"),)
"""Test clients that call no ASGI app but a handler's `async def __call__(scope)`:
Django's `AsyncClient`, whose handler runs the middleware and the view on the loop."""


_MODULE_FUNCTIONS: tuple[_Class, ...] = (("django.core.handlers.base", "async_to_sync"),)
"""Where Django's sync `Client` turns an `async def` view into a call that runs it on a
loop of its own: each such view's coroutine is timed there."""


def _class(name: _Class) -> type | None:
    cls = getattr(sys.modules.get(name[0]), name[1], None)
    return cls if isinstance(cls, type) else None


@functools.lru_cache(maxsize=8)
def _codes_of(cls: type) -> frozenset[CodeType]:
    """The code of every method of `cls`, with the functions nested in them; looked up
    once per class, not once per watched test."""
    return frozenset(_walk_codes(cls))


def _walk_codes(cls: type) -> Iterator[CodeType]:
    pending: list[CodeType] = []
    for attribute in vars(cls).values():
        function = getattr(attribute, "__func__", attribute)
        if isinstance(function, FunctionType):
            pending.append(function.__code__)
    while pending:
        code = pending.pop()
        yield code
        pending.extend(const for const in code.co_consts if isinstance(const, CodeType))


class _WatchedOnRead(functools.partial[Awaitable[None]]):
    """The watched app handed out on reading `app`; never stored back.

    A `partial` of `watched_call`, so that calling it costs no Python frame of its own:
    this runs on every request.
    """

    @property
    def app(self) -> ASGIApp:
        app: ASGIApp = self.args[0]
        return app

    def __getattr__(self, name: str) -> Any:
        # A user's `transport.app.state` still finds the app's attributes.
        return getattr(self.args[0], name)


class _WatchedAppAttribute:
    """The `app` attribute, watched: for every reader, or only for the client's own code."""

    def __init__(self, client_code: set[CodeType] | None) -> None:
        self._client_code = client_code
        self._last: tuple[object, Any] = (None, None)
        """The app read last and the watched app handed out for it: a test's requests
        nearly always go to one app, which then costs no new wrapper per request."""

    def __get__(self, instance: object, owner: type | None = None) -> Any:
        if instance is None:
            return self
        try:
            app: ASGIApp = instance.__dict__["app"]
        except KeyError:
            raise AttributeError("app") from None
        last_app, last_watched = self._last
        if last_app is app and self._client_code is None:
            return last_watched
        if self._client_code is not None and sys._getframe(1).f_code not in self._client_code:
            return app
        if isinstance(app, LoopwatchMiddleware):
            watched: Any = app  # watched by its wrapper
        elif watched_by_its_class(app):
            # Watched by its class too, but a client only awaits: it gets the call of the
            # class's own `__call__`, not the coroutine around it that anyone else gets.
            own_call = type(app).__call__
            watched = _WatchedOnRead(
                watched_call, app, method=getattr(own_call, "__wrapped__", own_call)
            )
        else:
            watched = _WatchedOnRead(watched_call, app)
        self._last = (app, watched)
        return watched

    def __set__(self, instance: object, app: ASGIApp) -> None:
        # TestClient hands its app to its transport: storing the original keeps the
        # wrapper from outliving the test inside long-lived clients.
        instance.__dict__["app"] = app.app if isinstance(app, _WatchedOnRead) else app


def _watched_app_call(original: Callable[[Any, Scope, Any, Any], Awaitable[None]]) -> Any:
    # A plain function, not a coroutine function around the original: nested in another
    # watched call (FastAPI's `__call__` awaits Starlette's), it hands back the original's
    # coroutine, with no frame of its own to step through on every step. Marked as a
    # coroutine function, though: servers and frameworks ask (uvicorn's ASGI 2 or 3,
    # Starlette's `is_async_callable`). Where it times the call, it returns a coroutine
    # too: `create_task(app(...))` and anyio's `start_soon(app, ...)` take nothing else
    # (found in Starlette's own suite).
    @functools.wraps(original)
    def __call__(app: Any, scope: Scope, receive: Any, send: Any) -> Awaitable[None]:
        call = watched_call(app, scope, receive, send, original)
        return call if isinstance(call, CoroutineType) else _awaiting(call)

    setattr(__call__, WATCHED_MARK, True)
    return _marked_as_coroutine_function(__call__)


async def _awaiting(awaitable: Awaitable[Any]) -> Any:
    __tracebackhide__ = True  # pytest: a traceback through here points at the app
    return await awaitable


def _marked_as_coroutine_function(function: Any) -> Any:
    mark = getattr(inspect, "markcoroutinefunction", None)  # Python 3.12+
    if mark is not None:
        return mark(function)
    # Python 3.11: what asyncio.iscoroutinefunction looks for (inspect's cannot be told).
    function._is_coroutine = sys.modules["asyncio.coroutines"]._is_coroutine
    return function


def _watched_handler(original: Callable[[Any, Scope], Awaitable[Any]]) -> Any:
    def __call__(handler: Any, scope: Scope) -> Awaitable[Any]:
        return watched_handler_call(handler, original, scope)

    __call__.__wrapped__ = original  # type: ignore[attr-defined]
    return __call__


def _watched_async_to_sync(original: Callable[..., Any]) -> Any:
    def async_to_sync(function: Callable[..., Any], **options: Any) -> Any:
        if not inspect.iscoroutinefunction(function):
            return original(function, **options)

        @functools.wraps(function)
        async def timed_view(request: Any, *args: Any, **kwargs: Any) -> Any:
            scope = {
                "type": "http",
                "method": getattr(request, "method", None),
                "path": getattr(request, "path", None),
            }

            # The request stands for the app: a Django object, by which the route is found.
            def view(request: Any, _scope: Any) -> Any:
                return function(request, *args, **kwargs)

            return await watched_handler_call(request, view, scope)

        return original(timed_view, **options)

    async_to_sync.__wrapped__ = original  # type: ignore[attr-defined]
    return async_to_sync


class Interception:
    """Installs the watched `app` attribute on every client class imported so far."""

    def __init__(self) -> None:
        self._saved: list[tuple[object, str, object]] = []
        """(class or module, attribute, its value before): what `uninstall` puts back."""
        self._client_code: set[CodeType] = set()
        self._installed_at: tuple[int, int] | None = None
        """`modules_mark()` when `install` last looked at the client modules; None: never
        since `uninstall`."""
        self._installed_with: tuple[int, ...] = ()
        """The client modules, by identity, when `install` last looked at them."""

    def install(self) -> None:
        """Patch the client classes imported since the last call; idempotent, and at once
        when no module was imported since (every phase of every watched test asks)."""
        mark = modules_mark()
        if mark == self._installed_at:
            return
        self._installed_at = mark
        imported = tuple(id(sys.modules.get(module)) for module in _MODULES)
        if self._saved and imported == self._installed_with:
            return  # the same modules as at the last call: their classes are patched
        self._installed_with = imported
        patched = {(cls, name) for cls, name, _ in self._saved}
        try:
            for client, readers in _CALLERS:
                cls = _class(client)
                if cls is None or (cls, "app") in patched:
                    continue
                for reader in readers or ():
                    reading_class = _class(reader)
                    if reading_class is not None:
                        self._client_code.update(_codes_of(reading_class))
                self._saved.append((cls, "app", cls.__dict__.get("app", _MISSING)))
                cls.app = _WatchedAppAttribute(  # type: ignore[attr-defined]
                    None if readers is None else self._client_code
                )
            for app_class in _APPS:
                cls = _class(app_class)
                if cls is None or (cls, "__call__") in patched or "__call__" not in vars(cls):
                    continue
                self._saved.append((cls, "__call__", cls.__dict__["__call__"]))
                cls.__call__ = _watched_app_call(cls.__dict__["__call__"])  # type: ignore[method-assign]
            for app_class in _DELEGATING_APPS:
                cls = _class(app_class)
                function = None if cls is None else cls.__dict__.get("__call__")
                if function is None or (function, WATCHED_MARK) in patched:
                    continue
                self._saved.append((function, WATCHED_MARK, _MISSING))
                setattr(function, WATCHED_MARK, True)
            for handler in _HANDLERS:
                cls = _class(handler)
                if cls is None or (cls, "__call__") in patched:
                    continue
                self._saved.append((cls, "__call__", cls.__dict__["__call__"]))
                cls.__call__ = _watched_handler(cls.__dict__["__call__"])  # type: ignore[method-assign]
            for module_name, name in _MODULE_FUNCTIONS:
                module = sys.modules.get(module_name)
                original = getattr(module, name, None)
                if original is None or (module, name) in patched:
                    continue
                self._saved.append((module, name, original))
                setattr(module, name, _watched_async_to_sync(original))
        except BaseException:
            self.uninstall()
            raise

    def uninstall(self) -> None:
        """Put every patched class back as it was."""
        while self._saved:
            cls, name, original = self._saved.pop()
            if original is _MISSING:
                delattr(cls, name)
            else:
                setattr(cls, name, original)
        self._client_code.clear()
        self._installed_at = None
        self._installed_with = ()


_MODULES = tuple(
    dict.fromkeys(
        [client[0] for client, _ in _CALLERS]
        + [reader[0] for _, readers in _CALLERS for reader in readers or ()]
        + [app_class[0] for app_class in (*_APPS, *_DELEGATING_APPS)]
        + [handler[0] for handler in _HANDLERS]
        + [function[0] for function in _MODULE_FUNCTIONS]
    )
)
"""Every module whose classes are patched or read: a new one imported means a new look."""
