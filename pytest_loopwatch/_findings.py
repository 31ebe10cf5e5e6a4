"""Every stall of the run, with the test it failed: what the summary and JSON report show.

Entries cross process boundaries (pytest-xdist workers to the controller) as JSON-friendly
dicts, so the records are turned into JSON here, at the edge, and back.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ._records import Endpoint, Frame, Request, Stall
from ._report import display_path

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Finding:
    """A stall, and the test (node id) during which it happened, or, `outlived`, the test
    whose request left running the work that stalled after that test ended."""

    test: str
    stall: Stall
    outlived: bool = False
    during: str | None = None
    """Where in the test, when not its body: `setup of fixture client`, `teardown`."""


def _frame_to_json(frame: Frame, base: str) -> dict[str, Any]:
    return {
        "file": display_path(frame.file, base),
        "line": frame.line,
        "function": frame.function,
        "code": frame.code,
        "user_code": frame.is_user_code,
    }


def _frame_from_json(data: dict[str, Any]) -> Frame:
    return Frame(data["file"], data["line"], data["function"], data["code"], data["user_code"])


def to_json(finding: Finding, base: str) -> dict[str, Any]:
    """One entry of the report's `stalls`, paths relative to `base` where they lie below it."""
    stall = finding.stall
    request: dict[str, Any] = {
        "type": stall.request.type,
        "method": stall.request.method,
        "path": stall.request.path,
    }
    if stall.request.phase is not None:
        request["phase"] = stall.request.phase
    if stall.request.task is not None:
        request["task"] = stall.request.task
    endpoint = stall.endpoint
    return {
        "test": finding.test,
        "outlived_its_test": finding.outlived,
        "during": finding.during,
        "kind": stall.kind,
        "call": stall.call,
        "duration_s": stall.duration,
        "threshold_s": stall.threshold,
        "request": request,
        "route": stall.route,
        "endpoint": None
        if endpoint is None
        else {
            "name": endpoint.name,
            "file": None if endpoint.file is None else display_path(endpoint.file, base),
            "line": endpoint.line,
            "is_async": endpoint.is_async,
        },
        "location": None if stall.location is None else _frame_to_json(stall.location, base),
        "reached_from": None
        if stall.reached_from is None
        else _frame_to_json(stall.reached_from, base),
        "fix": stall.fix,
        "stack": [_frame_to_json(frame, base) for frame in stall.stack],
        "samples": stall.samples,
    }


def from_json(data: dict[str, Any], threshold: float) -> Finding:
    """The finding a worker sent, as records again; `threshold`, the run's, where the
    entry does not say its own."""
    request = data["request"]
    endpoint = data["endpoint"]
    return Finding(
        test=data["test"],
        outlived=data.get("outlived_its_test", False),
        during=data.get("during"),
        stall=Stall(
            duration=data["duration_s"],
            threshold=data.get("threshold_s", threshold),
            request=Request(
                request["type"],
                request["method"],
                request["path"],
                request.get("phase"),
                request.get("task"),
            ),
            route=data["route"],
            endpoint=None
            if endpoint is None
            else Endpoint(
                endpoint["name"], endpoint["file"], endpoint["line"], endpoint.get("is_async")
            ),
            location=None if data["location"] is None else _frame_from_json(data["location"]),
            stack=tuple(_frame_from_json(frame) for frame in data["stack"]),
            samples=data["samples"],
            call=data.get("call"),
            fix=data.get("fix"),
            reached_from=None
            if data.get("reached_from") is None
            else _frame_from_json(data["reached_from"]),
        ),
    )


def report_document(
    findings: list[Finding],
    threshold: float,
    base: str,
    allowed: Mapping[str, int] | None = None,
    unmatched: Sequence[str] = (),
) -> dict[str, Any]:
    """The whole JSON report: `schema`, `threshold_s`, every stall in the order seen, and
    the allow-list's audit: what each rule let pass, and the user's rules that never did."""
    return {
        "schema": SCHEMA_VERSION,
        "threshold_s": threshold,
        "stalls": [to_json(finding, base) for finding in findings],
        "allowed": dict(sorted((allowed or {}).items())),
        "unmatched_allow_rules": list(unmatched),
    }
