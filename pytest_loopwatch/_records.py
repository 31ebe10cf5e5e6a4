"""The typed records that describe a stall; JSON is made from them only at the edge."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, TypeAlias

SampledFrame: TypeAlias = tuple[str, int, str, str, bool]
"""One frame as the engine samples it: (file, line, qualified function, module, whether
its code is a coroutine's). Plain data: sampled on the loop thread or with the GIL held
by the watchdog, never resolved to source there."""

SampledStack: TypeAlias = tuple[SampledFrame, ...]
"""Frames from the app's coroutine inwards."""

GIL_HELD_ELSEWHERE = "gil"
"""The family of a stall during which the loop thread waited for the GIL that another
thread of the process held (a C call in a thread the request started): its fix differs."""


@dataclass(frozen=True)
class Frame:
    """One frame of a sampled stack."""

    file: str
    line: int
    function: str
    code: str
    is_user_code: bool


@dataclass(frozen=True)
class Request:
    """What the ASGI scope says about the call: `http`, `websocket` or `lifespan`."""

    type: str
    method: str | None
    path: str | None
    phase: str | None = None
    """For `lifespan`: `startup` or `shutdown`."""
    task: str | None = None
    """For `lifespan`: the task the lifespan started that stalled (`consume()`), if it
    was not the lifespan itself."""


@dataclass(frozen=True)
class Endpoint:
    """The function or class the router picked for the request."""

    name: str
    file: str | None
    line: int | None
    is_async: bool | None = None
    """Whether it runs on the loop (`async def`); None when it is not a function."""


@dataclass(frozen=True)
class Stall:
    """One stretch of app code that held the event loop longer than the threshold, or one
    known blocking call that app code made on the loop."""

    duration: float
    threshold: float
    request: Request
    route: str | None
    endpoint: Endpoint | None
    location: Frame | None
    stack: tuple[Frame, ...]
    samples: int
    call: str | None = None
    """The blocking call made at `location`, summed up (`time.sleep(0.01)`). With a
    duration of 0 the call is the finding; with a duration, the stall it caused."""
    fix: str | None = None
    """What to do about it, in one line."""
    reached_from: Frame | None = None
    """Where the location is library code that app code awaited: the app's line."""

    @property
    def kind(self) -> str:
        """`stall` for a stretch over the threshold, `call` for a blocking call alone."""
        return "call" if self.call is not None and self.duration == 0 else "stall"


@dataclass(slots=True)
class RawStall:
    """A stall as the engine records it on the loop thread: nothing resolved yet.

    Paths, source lines and the endpoint's file are looked up later, off the loop,
    when the watch reports it (`Watch.take_unreported`).
    """

    duration: float
    threshold: float
    request: Request
    route: str | None
    endpoint: Any
    samples: Counter[SampledStack] | None
    call: str | None = None
    family: str | None = None
    """For a blocking call: what kind of API it is (`http`, `sleep`...), for the fix; for a
    stall, `GIL_HELD_ELSEWHERE` or None."""
    app: Any = None
    """The app called: Quart and Django requests are matched to their route by it."""
    stretch_started: float | None = None
    """When the stretch began that held the loop or made the call: a stall and the calls its
    stretch made are known to belong together by it."""
    call_in_stretch: RawStall | None = None
    """For a stall: the first blocking call its stretch made, if any."""
