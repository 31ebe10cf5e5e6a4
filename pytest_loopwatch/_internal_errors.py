"""The single sink for loopwatch's own errors.

Code that runs inside the user's app must never raise, so every module notes its trouble
here instead; the engine hands what was noted to the test that was running (as one
`LoopwatchInternalWarning`), or to the run's summary.
"""

from __future__ import annotations

_noted: list[str] = []


def note(message: str) -> None:
    """Record one error of loopwatch itself; safe from any thread."""
    _noted.append(message)


def take() -> list[str]:
    """Every error noted since the last call, oldest first."""
    taken = _noted[: len(_noted)]
    del _noted[: len(taken)]
    return taken
