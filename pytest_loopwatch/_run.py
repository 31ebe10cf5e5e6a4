"""What one pytest run knows about watching: its settings, and everything it found.

One object, behind one StashKey of the config; the plugin's hooks read and change it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ._baseline import BaselineKey
from ._findings import Finding
from ._settings import RunSettings, Settings

if TYPE_CHECKING:
    import pytest

    from ._engine import Engine
    from ._records import Stall
    from ._watch import Watch


@dataclass
class RunState:
    settings: RunSettings
    baseline: set[BaselineKey]
    findings: list[Finding] = field(default_factory=list)
    allowed: Counter[str] = field(default_factory=Counter)
    """Allow rule -> the findings it let pass in the run, the default rules included."""
    app_calls: int = 0
    """How many calls of watched apps the run's tests made."""
    any_watched: bool = False
    running_test: str = ""
    running_item: pytest.Item | None = None
    """The test running now: a shared fixture's set-up belongs to it."""
    engine: Engine | None = None
    """Made on the first watched test, for the whole session: the engine is not imported
    before."""


@dataclass
class TestState:
    """One test's settings and, while it is watched, its watch."""

    __test__ = False  # not a test class, for pytest's collection

    settings: Settings
    run: RunState
    """The run's state, at hand: the config's stash costs two calls a look-up, and each
    phase of each test looks."""
    watch: Watch | None = None
    held: list[tuple[str | None, list[Stall]]] = field(default_factory=list)
    """Findings not yet reported, by where in the test: a fixture's finding waits for the
    test's end, so that the body runs and shows its own beside it."""
    failed: bool = False
    """Whether the test failed already: later findings go beside that failure."""
