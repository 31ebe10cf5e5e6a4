"""Every thread's running frame, read without the deadlock CPython 3.11 risks there.

`sys._current_frames` holds the runtime's lock on the list of threads while it makes
frame objects; an allocation then can start a garbage collection whose finalizers run
Python code (an event loop's `__del__`), let go of the GIL, and wait to get it back from a
thread that, starting a thread, waits for that lock (CPython issue 106883: seen here, the
watchdog and `asyncio.run`'s executor shutdown hung for good). Python 3.12 collects no
garbage there; before it, the collector is off for the call.
"""

from __future__ import annotations

import gc
import sys
from types import FrameType

_COLLECTS_INSIDE = sys.version_info < (3, 12)


def thread_frames() -> dict[int, FrameType]:
    """Thread id -> the frame that thread runs now."""
    if not _COLLECTS_INSIDE or not gc.isenabled():
        return sys._current_frames()
    # Nothing between the two calls runs Python code of another thread but the bytecode
    # boundary before the call: a test switching the collector off just then is the only
    # switch this can undo.
    gc.disable()
    try:
        return sys._current_frames()
    finally:
        gc.enable()
