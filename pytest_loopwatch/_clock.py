"""The one clock that times app code, as it was before any test could patch `time`."""

from __future__ import annotations

import time
from collections.abc import Callable

# Captured at import so that a test patching `time.perf_counter` (monkeypatch) cannot
# skew or freeze the measurement; and as its bound `__call__`, which is not `is` the
# function: freezegun also replaces every module attribute that is.
clock: Callable[[], float] = time.perf_counter.__call__  # type: ignore[operator]
