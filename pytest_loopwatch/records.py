"""The typed records that describe a stall; JSON is made from them only at the edge."""

from __future__ import annotations

from dataclasses import dataclass


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


@dataclass(frozen=True)
class Endpoint:
    """The function or class the router picked for the request."""

    name: str
    file: str | None
    line: int | None


@dataclass(frozen=True)
class Stall:
    """One stretch of app code that held the event loop longer than the threshold, or, in
    strict mode, one known blocking call that app code made on the loop."""

    duration: float
    threshold: float
    request: Request
    route: str | None
    endpoint: Endpoint | None
    location: Frame | None
    stack: tuple[Frame, ...]
    samples: int
    call: str | None = None
    """The blocking call strict mode caught, summed up (`time.sleep(0.01)`); its duration
    is not measured, and is 0."""

    @property
    def kind(self) -> str:
        """`stall` for a stretch over the threshold, `call` for a blocking call."""
        return "stall" if self.call is None else "call"
