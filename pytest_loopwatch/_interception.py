"""Watching the apps that test clients call, without touching their code.

httpx's and httpx2's `ASGITransport` and Starlette's `TestClient` keep the app in an
instance attribute `app` and read it each time they call it. A data descriptor named
`app` on their classes takes precedence over that instance attribute, so it hands the
clients the app watched, also in clients created before the test began; removing the
descriptor restores the classes exactly.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Awaitable, Iterator
from types import CodeType, FunctionType
from typing import Any

from ._asgi import ASGIApp, LoopwatchMiddleware, watched_call

_MISSING = object()

# (module, class, whether users read its `app`). Transports are read on every request and
# hardly ever by users: every read gets the watched app. `TestClient.app` is what users
# read (`client.app.dependency_overrides`) and the client itself reads only for the
# lifespan: there, only reads by the client's own code get the watched app. (Looking at
# the caller costs 2% of a fast request, too much for the transports.)
# Only modules the test suite has imported are patched, so that loopwatch never imports
# a client (with side effects such as Starlette's warning about httpx) on its own.
_CALLERS = (
    ("httpx", "ASGITransport", False),
    ("httpx2", "ASGITransport", False),
    ("httpx2.websockets._transport", "ASGIWebSocketAsyncNetworkStream", False),
    ("starlette.testclient", "_TestClientTransport", False),
    ("starlette.testclient", "WebSocketTestSession", False),
    ("starlette.testclient", "TestClient", True),
)


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
        if isinstance(app, LoopwatchMiddleware) or (
            self._client_code is not None and sys._getframe(1).f_code not in self._client_code
        ):
            return app
        watched = _WatchedOnRead(watched_call, app)
        self._last = (app, watched)
        return watched

    def __set__(self, instance: object, app: ASGIApp) -> None:
        # TestClient hands its app to its transport: storing the original keeps the
        # wrapper from outliving the test inside long-lived clients.
        instance.__dict__["app"] = app.app if isinstance(app, _WatchedOnRead) else app


class Interception:
    """Installs the watched `app` attribute on every client class imported so far."""

    def __init__(self) -> None:
        self._saved: list[tuple[type, object]] = []
        self._client_code: set[CodeType] = set()
        self._installed_with: tuple[int, ...] = ()
        """The client modules, by identity, when `install` last looked at them."""

    def install(self) -> None:
        """Patch the client classes imported since the last call; idempotent."""
        imported = tuple(id(sys.modules.get(module_name)) for module_name, _, _ in _CALLERS)
        if self._saved and imported == self._installed_with:
            return  # the same modules as at the last call: their classes are patched
        self._installed_with = imported
        patched = {cls for cls, _ in self._saved}
        try:
            for module_name, class_name, users_read_it in _CALLERS:
                cls = getattr(sys.modules.get(module_name), class_name, None)
                if not isinstance(cls, type) or cls in patched:
                    continue
                if users_read_it:
                    self._client_code.update(_codes_of(cls))
                self._saved.append((cls, cls.__dict__.get("app", _MISSING)))
                cls.app = _WatchedAppAttribute(  # type: ignore[attr-defined]
                    self._client_code if users_read_it else None
                )
        except BaseException:
            self.uninstall()
            raise

    def uninstall(self) -> None:
        """Put every patched class back as it was."""
        while self._saved:
            cls, original = self._saved.pop()
            if original is _MISSING:
                del cls.app  # type: ignore[attr-defined]
            else:
                cls.app = original  # type: ignore[attr-defined]
        self._client_code.clear()
        self._installed_with = ()
