"""A Starlette app whose blocking work happens inside the library, reached through app code
that only awaits it; copied into the pytester sessions."""

from __future__ import annotations

import time

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

FIELDS = 200_000
"""Form fields of the large form: Starlette parses them in pure Python on the loop,
hundreds of milliseconds on any machine."""


def spin(seconds: float = 0.3) -> None:
    deadline = time.thread_time() + seconds
    while time.thread_time() < deadline:  # SPIN
        pass


async def large_form(request: Request) -> PlainTextResponse:
    form = await request.form(max_fields=FIELDS + 1)  # AWAITS-THE-PARSER
    return PlainTextResponse(str(len(form)))


async def small_form(request: Request) -> PlainTextResponse:
    form = await request.form()
    return PlainTextResponse(str(len(form)))


async def computing(request: Request) -> PlainTextResponse:
    spin()
    return PlainTextResponse("done")


class PassingThrough:
    """A pure ASGI middleware of the app's own: it only awaits what it wraps."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)  # MIDDLEWARE-AWAITS


routes = [
    Route("/large-form", large_form, methods=["POST"]),
    Route("/small-form", small_form, methods=["POST"]),
    Route("/computing", computing, methods=["POST"]),
]
app = PassingThrough(Starlette(routes=routes))
