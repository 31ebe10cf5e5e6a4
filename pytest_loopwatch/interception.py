"""Watching the apps that test clients call, without touching their code.

httpx's and httpx2's `ASGITransport` and Starlette's `TestClient` keep the app in an
instance attribute `app` and read it each time they call it. A data descriptor named
`app` on their classes takes precedence over that instance attribute: reads made by the
clients' own methods get the app watched, any other read (`client.app.state`,
`dependency_overrides`) gets the app itself. Removing the descriptor restores the classes
exactly, and it works for clients created before the test began.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from types import CodeType, FunctionType
from typing import Any

from .asgi import ASGIApp, LoopwatchMiddleware

_MISSING = object()

# Only modules the test suite has imported are patched, so that loopwatch never imports
# a client (with side effects such as Starlette's warning about httpx) on its own.
_CALLERS = (
    ("httpx", "ASGITransport"),
    ("httpx2", "ASGITransport"),
    ("httpx2.websockets._transport", "ASGIWebSocketAsyncNetworkStream"),
    ("starlette.testclient", "_TestClientTransport"),
    ("starlette.testclient", "WebSocketTestSession"),
    ("starlette.testclient", "TestClient"),
)


def _codes_of(cls: type) -> Iterator[CodeType]:
    """The code of every method of `cls`, with the functions nested in them."""
    pending: list[CodeType] = []
    for attribute in vars(cls).values():
        function = getattr(attribute, "__func__", attribute)
        if isinstance(function, FunctionType):
            pending.append(function.__code__)
    while pending:
        code = pending.pop()
        yield code
        pending.extend(const for const in code.co_consts if isinstance(const, CodeType))


class _WatchedOnRead(LoopwatchMiddleware):
    """The wrapper a client's own read of `app` gets; never stored back."""


class _WatchedAppAttribute:
    """The `app` attribute: watched for the clients' code, untouched for everyone else."""

    def __init__(self, client_code: set[CodeType]) -> None:
        self._client_code = client_code

    def __get__(self, instance: object, owner: type | None = None) -> Any:
        if instance is None:
            return self
        try:
            app: ASGIApp = instance.__dict__["app"]
        except KeyError:
            raise AttributeError("app") from None
        if sys._getframe(1).f_code not in self._client_code or isinstance(app, LoopwatchMiddleware):
            return app
        return _WatchedOnRead(app)

    def __set__(self, instance: object, app: ASGIApp) -> None:
        # TestClient hands its app to its transport: storing the original keeps the
        # wrapper from outliving the test inside long-lived clients.
        instance.__dict__["app"] = app.app if isinstance(app, _WatchedOnRead) else app


class Interception:
    """Installs the watched `app` attribute on every client class imported so far."""

    def __init__(self) -> None:
        self._saved: list[tuple[type, object]] = []
        self._client_code: set[CodeType] = set()

    def install(self) -> None:
        """Patch the client classes imported since the last call; idempotent."""
        patched = {cls for cls, _ in self._saved}
        try:
            for module_name, class_name in _CALLERS:
                cls = getattr(sys.modules.get(module_name), class_name, None)
                if not isinstance(cls, type) or cls in patched:
                    continue
                self._client_code.update(_codes_of(cls))
                self._saved.append((cls, cls.__dict__.get("app", _MISSING)))
                cls.app = _WatchedAppAttribute(self._client_code)  # type: ignore[attr-defined]
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
