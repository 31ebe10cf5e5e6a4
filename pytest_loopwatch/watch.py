"""A watch collects the stalls of one span of time, usually one test."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from . import stretches
from .records import Stall
from .spawned import follower
from .stretches import report_stretches_longer_than, wait_for_other_threads
from .watchdog import watchdog

if TYPE_CHECKING:
    from .asgi import ASGIApp


class Watch:
    """The stalls seen while this watch was active, and the threshold that defines one.

    This is the object the `loopwatch` fixture returns.
    """

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self._stalls: list[Stall] = []
        self._reported = 0
        self.internal_errors: list[str] = []
        self._lock = threading.Lock()

    @property
    def stalls(self) -> tuple[Stall, ...]:
        """Every stall recorded so far, oldest first."""
        with self._lock:
            return tuple(self._stalls)

    def wrap(self, app: ASGIApp) -> ASGIApp:
        """Watch `app` wherever it is served (uvicorn in a thread, a custom transport)."""
        from .asgi import wrap

        return wrap(app)

    def record(self, stall: Stall) -> None:
        with self._lock:
            self._stalls.append(stall)

    def take_unreported(self) -> tuple[Stall, ...]:
        """The stalls recorded since the last call; the plugin reports each once.

        App code still running on another thread (a live server answering the request the
        test just got its response to) may be about to record a stall of this test: it
        gets a moment to end first.
        """
        wait_for_other_threads(timeout=max(1.0, 10 * self.threshold))
        with self._lock:
            fresh = tuple(self._stalls[self._reported :])
            self._reported = len(self._stalls)
            return fresh


_active: list[Watch] = []


def active_watch() -> Watch | None:
    """The watch that stalls are recorded into now, if any."""
    return _active[-1] if _active else None


def start(watch: Watch) -> None:
    """Make `watch` active until `stop`; watches nest (a pytester run inside a test)."""
    _active.append(watch)
    report_stretches_longer_than(watch.threshold)
    watchdog.watch(watch.threshold)


def stop(watch: Watch) -> None:
    """Deactivate `watch`, and take back the watchdog's findings about this span."""
    if watch in _active:
        _active.remove(watch)
    for errors in (watchdog.errors, stretches.errors):
        watch.internal_errors.extend(errors)
        errors.clear()
    outer = active_watch()
    if outer is None:
        report_stretches_longer_than(None)
        follower.stop_following()
        watchdog.pause()
    else:
        report_stretches_longer_than(outer.threshold)
        watchdog.watch(outer.threshold)


def shutdown() -> None:
    """End the watchdog thread; nothing of loopwatch runs after this."""
    watchdog.stop()
