"""pytest-loopwatch: fail the tests whose ASGI app code stalls the event loop."""

from __future__ import annotations

from .asgi import LoopwatchMiddleware, wrap
from .records import Endpoint, Frame, Request, Stall
from .watch import Watch

__all__ = ["Endpoint", "Frame", "LoopwatchMiddleware", "Request", "Stall", "Watch", "wrap"]
__version__ = "0.1.0"
