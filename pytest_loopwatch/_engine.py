"""Turning the engine on and off: the one place that starts and stops timing, the
watchdog, the following of tasks and the loops' beats, the catching of blocking calls and
the watched clients.

Nothing of the engine is imported until the first watched test: a pytest run without
`--loopwatch` loads no asyncio, ssl, sqlite3 or ctypes because of loopwatch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from ._asgi import Recorder, begin_recording, end_recording
from ._beat import stop_beating
from ._calls import call_catcher
from ._interception import Interception
from ._internal_errors import take
from ._spawned import follower
from ._stretches import report_stretches_longer_than
from ._watchdog import watchdog


class Watched(Recorder, Protocol):
    """What a watch is to the engine: where stalls go, and how to watch (a `Watch`)."""

    strict: bool
    allowed: tuple[str, ...]


_watching: list[Watched] = []
"""What is watched now, innermost last (a pytester session inside a watched test)."""


def listen_for_calls() -> None:
    """Hear blocking calls from now on, before the test modules import the app: SQLite
    connections opened at import are traced only if the hook already listens."""
    call_catcher.install_hook()


def start(watch: Watched, interception: Interception | None = None) -> None:
    """Record into `watch` until `stop`; with `interception`, watch every app the test
    clients call, else only apps wrapped with `wrap`."""
    if interception is not None:
        interception.install()
    begin_recording(watch)
    _watching.append(watch)
    _follow(watch)


def watch_clients_imported_since(interception: Interception) -> None:
    """A test client imported by a fixture is watched from the next phase on."""
    interception.install()


def _follow(watch: Watched) -> None:
    report_stretches_longer_than(watch.threshold)
    watchdog.watch(watch.threshold)
    if watch.strict:
        call_catcher.catch(watch.allowed)
    else:
        call_catcher.stop()


def stop(watch: Watched, interception: Interception | None = None) -> None:
    """Stop recording into `watch`; with nothing else watched, stop everything but the
    watchdog's sleeping thread (`shutdown` ends it)."""
    end_recording(watch)
    _watching[:] = [w for w in _watching if w is not watch]
    if interception is not None:
        interception.uninstall()
    if _watching:
        _follow(_watching[-1])
        return
    report_stretches_longer_than(None)
    follower.stop_following()
    stop_beating()
    watchdog.pause()
    call_catcher.pause()


def rest() -> None:
    """Between watched tests, before one that is not watched: nothing of loopwatch stays in
    place (the wrappers that catch blocking calls stay between watched tests only)."""
    if not _watching:
        call_catcher.stop()


def internal_errors() -> list[str]:
    """Every error of loopwatch itself noted since the last call."""
    return take()


def show_hangs(
    after: float | None, show: Callable[[str], None] | None
) -> tuple[float | None, Callable[[str], None] | None]:
    """Print a stretch still running after `after` seconds through `show`; the previous pair
    comes back, for a session inside a session to hand back."""
    return watchdog.show_hangs(after, show)


def shutdown() -> None:
    """End the watchdog thread and restore what is wrapped; nothing of loopwatch runs after."""
    call_catcher.stop()
    watchdog.stop()
