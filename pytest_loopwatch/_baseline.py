"""Stalls already known: once recorded in a baseline file they no longer fail; new ones do.

A stall is known by its test, its route and the function of its blocking line, never by
its duration, which varies from run to run.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeAlias

from ._findings import Finding
from ._records import Stall
from ._report import display_path

BaselineKey: TypeAlias = tuple[str, str | None, str]
"""(test node id, route, blocking location as `file in function`, followed by the called
function for strict mode's blocking calls: `file in function: time.sleep`).

The function, not the line: a CPU-bound loop is sampled on any of its lines from run to
run, and a known stall must stay known."""

_VERSION = 1


def stall_key(test: str, stall: Stall, base: str) -> BaselineKey:
    location = stall.location
    where = (
        "?" if location is None else f"{display_path(location.file, base)} in {location.function}"
    )
    if stall.kind == "call" and stall.call is not None:
        where += ": " + stall.call.partition("(")[0]
    return (test, stall.route or stall.request.path, where)


def load_baseline(path: Path) -> set[BaselineKey]:
    """The known stalls; none when the file does not exist yet. Raises ValueError if unreadable."""
    if not path.exists():
        return set()
    try:
        document = json.loads(path.read_text())
        return {(s["test"], s["route"], s["location"]) for s in document["stalls"]}
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{path} is not a loopwatch baseline: {error!r}") from None


def baseline_document(findings: Iterable[Finding], base: str) -> dict[str, Any]:
    keys = sorted({stall_key(f.test, f.stall, base) for f in findings}, key=str)
    return {
        "schema": _VERSION,
        "stalls": [
            {"test": test, "route": route, "location": where} for test, route, where in keys
        ],
    }
