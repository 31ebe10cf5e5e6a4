"""The warnings loopwatch records on tests."""

from __future__ import annotations

import pytest


class LoopwatchWarning(pytest.PytestWarning):
    """A stall, reported as a warning under --loopwatch-mode=warn."""


class LoopwatchInternalWarning(pytest.PytestWarning):
    """An error of loopwatch itself; the test's outcome is left to the test."""
