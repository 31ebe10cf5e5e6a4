"""Turning the engine on and off: the one place that starts and stops timing, the
watchdog, the following of tasks and the loops' beats, the catching of blocking calls and
the watched clients.

One `Engine` serves a whole pytest session. What every watched test needs is set up once
and stays in place between watched tests, inert while none runs: the audit hook, the
watched client classes, the wrappers of blocking calls, the watchdog's sleeping thread. A
watched test then only switches recording, timing and catching on and off, which costs
the same however many clients, blocking APIs and modules there are; the clients and APIs
are looked at again only after a module was imported. (Set up and taken down around each
test, the same work made a suite of 2,000 tests that call no app 1.15 times as slow.)
Before a test that is not watched, everything is put back (`rest`).

Nothing of the engine is imported until the first watched test: a pytest run without
`--loopwatch` loads no asyncio, ssl, sqlite3 or ctypes because of loopwatch.
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from collections.abc import Callable
from typing import Protocol

from ._asgi import Recorder, begin_recording, end_recording, take_outlived
from ._beat import stop_beating
from ._calls import call_catcher
from ._interception import Interception
from ._internal_errors import take
from ._spawned import follower
from ._stretches import forget_the_threads_seen, report_stretches_longer_than
from ._watchdog import watchdog


class Watched(Recorder, Protocol):
    """What a watch is to the engine: where stalls go, and how to watch (a `Watch`)."""

    strict: bool
    allowed: tuple[str, ...]


HangDisplay = tuple[float | None, Callable[[str], None] | None]
"""After how many seconds a stretch still running is a hang, and how to show it."""


class Engine:
    """The engine of one pytest session (or of a benchmark): what it watches now, and the
    client classes it watches through."""

    def __init__(self, *, intercept: bool = True) -> None:
        """With `intercept`, every app the test clients call is watched; without, only the
        apps wrapped with `wrap`."""
        self._interception = Interception() if intercept else None
        self._watching: list[Watched] = []
        """What is watched now, innermost last (a pytester session inside a watched test)."""
        self._following: tuple[int, float, bool, tuple[str, ...]] | None = None
        """The process, and the threshold, strictness and allowed frames the engine times,
        looks and catches by; None: it does not."""
        self._outer_hangs: HangDisplay | None = None
        """The hang display before this engine's, handed back at `shutdown`."""
        # Before the test modules import the app: SQLite connections opened at import are
        # traced only if the hook already listens.
        call_catcher.install_hook()

    def show_hangs(self, after: float | None, show: Callable[[str], None] | None) -> None:
        """Print a stretch still running after `after` seconds through `show`."""
        previous = watchdog.show_hangs(after, show)
        if self._outer_hangs is None:
            self._outer_hangs = previous

    def begin(self, watch: Watched) -> None:
        """Record into `watch` until `end`."""
        self.watch_clients_imported_since()
        begin_recording(watch)
        self._watching.append(watch)
        self._follow(watch)

    def watch_clients_imported_since(self) -> None:
        """A test client imported since the last look (a fixture's import) is watched from
        now on; at once when nothing was imported."""
        if self._interception is not None:
            self._interception.install()

    def _follow(self, watch: Watched) -> None:
        """Time, look and catch as `watch` asks; nothing to do if the last watch asked the
        same (the timing stays on between watched tests: no app code runs there, as a rule,
        and what does is recorded nowhere)."""
        # A forked child has the parent's engine but not its watchdog's thread.
        following = (os.getpid(), watch.threshold, watch.strict, watch.allowed)
        if following == self._following:
            return
        self._following = following
        report_stretches_longer_than(watch.threshold)
        watchdog.watch(watch.threshold)
        if watch.strict:
            call_catcher.catch(watch.allowed)
        else:
            call_catcher.stop()

    def end(self, watch: Watched) -> None:
        """Stop recording into `watch`. With nothing else watched, the loops and threads the
        test used are let go: their tasks no longer followed, their beats stopped, what was
        kept for them dropped; the rest stays, inert, for the next watched test."""
        end_recording(watch)
        self._watching[:] = [w for w in self._watching if w is not watch]
        if self._watching:
            self._follow(self._watching[-1])
            return
        follower.stop_following()
        stop_beating()
        # Each asks for the living threads only if it kept something for a thread.
        forget_the_threads_seen(_living_threads)
        call_catcher.forget_the_threads_seen(_living_threads)

    def outlived(self) -> list[Recorder]:
        """The ended watches that got stalls since the last call: work their test's
        requests left running (a task not awaited, a lifespan's task) stalled later."""
        return take_outlived()

    def take_allowed_counts(self) -> Counter[str]:
        """The blocking calls each allow rule let pass since the last call."""
        return call_catcher.take_allowed_counts()

    def take_internal_errors(self) -> list[str]:
        """Every error of loopwatch itself noted since the last call."""
        return take()

    def rest(self) -> None:
        """Before a test that is not watched: nothing of loopwatch stays in place."""
        if self._watching or self._following is None:
            return
        self._following = None
        report_stretches_longer_than(None)
        watchdog.pause()
        call_catcher.stop()
        if self._interception is not None:
            self._interception.uninstall()

    def shutdown(self) -> None:
        """End the watchdog thread and restore what is wrapped; nothing of loopwatch runs
        after, and the hang display before this engine's is back."""
        self._watching.clear()
        self.rest()
        watchdog.stop()
        if self._outer_hangs is not None:
            watchdog.show_hangs(*self._outer_hangs)


def _living_threads() -> set[int]:
    return {thread.ident for thread in threading.enumerate() if thread.ident is not None}
