"""A watch collects the stalls of one span of time, usually one test."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

from . import stretches
from .records import Stall
from .spawned import follower
from .stretches import report_stretches_longer_than, wait_for_other_threads
from .strict import strict_mode
from .watchdog import watchdog

if TYPE_CHECKING:
    from .asgi import ASGIApp


class Watch:
    """The stalls seen while this watch was active, and the threshold that defines one.

    This is the object the `loopwatch` fixture returns.
    """

    def __init__(
        self, threshold: float, *, strict: bool = False, allowed: Sequence[str] = ()
    ) -> None:
        self.threshold = threshold
        self.strict = strict
        """Whether known blocking calls count, however fast (strict mode)."""
        self.allowed = tuple(allowed)
        """`module:function` patterns under which strict mode lets blocking calls pass."""
        self._stalls: list[Stall] = []
        self._calls_seen: set[tuple[object, ...]] = set()
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

    def allow(self, *patterns: str) -> AbstractContextManager[None]:
        """Inside the block, strict mode lets pass the blocking calls made under `patterns`
        (`module:function`), or every blocking call when no pattern is given."""
        return strict_mode.allowing(patterns)

    def record(self, stall: Stall) -> None:
        with self._lock:
            if stall.call is not None:
                # A loop of a thousand sleeps is one finding, not a thousand; and a line
                # that blocks is named once, by its first call (subprocess.run: Popen,
                # not the read of its error pipe that follows).
                location = stall.location
                line = None if location is None else (location.file, location.line)
                seen = (stall.request, stall.route, line)
                if seen in self._calls_seen:
                    return
                self._calls_seen.add(seen)
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
    _follow(watch)


def _follow(watch: Watch) -> None:
    report_stretches_longer_than(watch.threshold)
    watchdog.watch(watch.threshold)
    if watch.strict:
        strict_mode.catch(watch.allowed)
    else:
        strict_mode.stop()


def stop(watch: Watch) -> None:
    """Deactivate `watch`, and take back the watchdog's findings about this span."""
    if watch in _active:
        _active.remove(watch)
    for errors in (watchdog.errors, stretches.errors, strict_mode.errors):
        watch.internal_errors.extend(errors)
        errors.clear()
    outer = active_watch()
    if outer is None:
        report_stretches_longer_than(None)
        follower.stop_following()
        watchdog.pause()
        strict_mode.stop()
    else:
        _follow(outer)


def shutdown() -> None:
    """End the watchdog thread; nothing of loopwatch runs after this."""
    watchdog.stop()
