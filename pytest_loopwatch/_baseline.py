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


EXPECTED_SHAPE = (
    f'a JSON object {{"schema": {_VERSION}, "stalls": [{{"test": ..., "route": ..., '
    '"location": ...}, ...]}, as --loopwatch-update-baseline writes it'
)


class InvalidBaseline(ValueError):
    """A baseline file that cannot be read, or is not a baseline of this version."""


def load_baseline(path: Path) -> set[BaselineKey]:
    """The known stalls; none when the file does not exist yet. Raises InvalidBaseline."""
    if not path.exists():
        return set()
    if path.is_dir():
        raise InvalidBaseline(f"{path} is a directory")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise InvalidBaseline(f"{path} cannot be read: {error}") from None
    try:
        document = json.loads(text)
    except ValueError:
        raise InvalidBaseline(f"{path} is not JSON; expected {EXPECTED_SHAPE}") from None
    if not isinstance(document, dict) or document.get("schema") != _VERSION:
        found = document.get("schema") if isinstance(document, dict) else None
        raise InvalidBaseline(
            f"{path} is not a loopwatch baseline of schema {_VERSION} (schema {found!r}); "
            f"expected {EXPECTED_SHAPE}"
        )
    stalls = document.get("stalls")
    if not isinstance(stalls, list) or not all(map(_is_entry, stalls)):
        raise InvalidBaseline(f"{path} has malformed stalls; expected {EXPECTED_SHAPE}")
    return {(entry["test"], entry["route"], entry["location"]) for entry in stalls}


def _is_entry(entry: object) -> bool:
    return (
        isinstance(entry, dict)
        and isinstance(entry.get("test"), str)
        and isinstance(entry.get("route"), (str, type(None)))
        and isinstance(entry.get("location"), str)
    )


def baseline_document(findings: Iterable[Finding], base: str) -> dict[str, Any]:
    keys = sorted({stall_key(f.test, f.stall, base) for f in findings}, key=str)
    return {
        "schema": _VERSION,
        "stalls": [
            {"test": test, "route": route, "location": where} for test, route, where in keys
        ],
    }
