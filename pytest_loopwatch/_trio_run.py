"""The trio run the caller is in, found without importing trio: a suite that never
imports it pays nothing for it."""

from __future__ import annotations

import sys
from types import ModuleType


def current_trio_run() -> tuple[ModuleType, object] | None:
    """trio, and the root task of the run this thread is in (a key for the run); None
    outside `trio.run`, or before its root task exists."""
    trio = sys.modules.get("trio")
    if trio is None:
        return None
    try:
        run = trio.lowlevel.current_root_task()
    except RuntimeError:  # not inside trio.run
        return None
    return None if run is None else (trio, run)
