"""pytest-loopwatch: fail the tests whose ASGI app code blocks the event loop.

How one request becomes a verdict, module by module (each imports only those below it;
`tox -e lint` checks it):

- `plugin`: the pytest hooks. They resolve the settings (`_settings`), check the files the
  run will write (`_output_files`), make the session's one engine on the first watched test
  and begin and end its watch around each one (`_engine`), and report (`_report`,
  `_summary`, `_findings`, `_baseline`; for CI, `_annotations` and `_sarif`, by the
  repository lines of `_blocking_lines`), keeping what the run found in one `RunState`
  (`_run`).
- `_watch`: the `Watch` a test records into; it resolves what the engine recorded into
  `Stall` records, off the loop, when the test's phase ends.
- `_engine`: sets the rest up once per session, switches it on and off around each watch,
  and drains the one internal-error sink.
- `_interception`: hands the test clients (httpx's and httpx2's ASGITransport; Starlette's,
  Litestar's, Quart's and Django's) the app wrapped by `_asgi`, whose middleware drives the
  app's coroutine and records long stretches and blocking calls as `RawStall`s, with the
  route and endpoint `_routes` reads from each framework.
- `_spawned` follows the tasks a request creates; `_calls` catches known blocking calls
  (audit events, wrapped entry points of `_blocking_apis`, mocks standing in for them);
  `_watchdog` samples the stack of long stretches while they run.
- `_stretches` times each synchronous stretch of app code between two awaits;
  `_contention` reads what the OS counted, `_alarm` wakes the watchdog, `_stacks` turns
  samples into frames and finds the blocking line.
- `_records`, `_durations`, `_clock`, `_internal_errors`: the records, and what all share.

Importing this package loads none of the engine; the public names below load it on use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._warnings import LoopwatchInternalWarning, LoopwatchWarning

if TYPE_CHECKING:
    from ._asgi import LoopwatchMiddleware, wrap
    from ._records import Endpoint, Frame, Request, Stall
    from ._watch import Watch

__all__ = [
    "Endpoint",
    "Frame",
    "LoopwatchInternalWarning",
    "LoopwatchMiddleware",
    "LoopwatchWarning",
    "Request",
    "Stall",
    "Watch",
    "wrap",
]
__version__ = "0.2.0"

_LAZY = {
    "LoopwatchMiddleware": "_asgi",
    "wrap": "_asgi",
    "Endpoint": "_records",
    "Frame": "_records",
    "Request": "_records",
    "Stall": "_records",
    "Watch": "_watch",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    globals()[name] = value
    return value
