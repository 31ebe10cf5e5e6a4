"""A SARIF 2.1.0 log of the run, for code scanning: one result per blocking line.

Results are sorted and carry no duration in their message, so that the same stalls make
the same file on every run (durations vary from run to run: they are in `properties`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ._blocking_lines import BlockingLine
from ._durations import format_duration

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
ROOT_ID = "SRCROOT"

_RULES: tuple[dict[str, Any], ...] = (
    {
        "id": "loopwatch/stall",
        "name": "EventLoopStall",
        "shortDescription": {"text": "App code held the event loop longer than the threshold"},
        "fullDescription": {
            "text": "While this line ran, no other request, timer or task of the app could "
            "run: the event loop waited for it."
        },
        "help": {
            "text": "Await an async API instead, move the work to a thread "
            "(asyncio.to_thread, anyio.to_thread.run_sync, Starlette's run_in_threadpool), "
            "or make the endpoint a plain `def`, which runs in a thread pool."
        },
        "defaultConfiguration": {"level": "error"},
    },
    {
        "id": "loopwatch/blocking-call",
        "name": "BlockingCallOnEventLoop",
        "shortDescription": {"text": "A known blocking call made on the event loop"},
        "fullDescription": {
            "text": "The call waits (for the network, a file, a process, a lock or the CPU) "
            "on the loop's thread; fast in a test, it freezes every request under load."
        },
        "help": {
            "text": "Use the library's async counterpart, or run the call in a thread "
            "(asyncio.to_thread, anyio.to_thread.run_sync, Starlette's run_in_threadpool)."
        },
        "defaultConfiguration": {"level": "error"},
    },
)
_RULE_INDEX = {"stall": 0, "call": 1}


def _message(entry: BlockingLine) -> str:
    requests = ", ".join(sorted(entry.requests))
    calls = ", ".join(sorted(entry.calls))
    if entry.kind == "call":
        text = f"{requests} called {calls} on the event loop."
    else:
        text = (
            f"{requests} blocked the event loop longer than the threshold "
            f"({format_duration(entry.threshold)})" + (f", calling {calls}." if calls else ".")
        )
    fixes = " ".join(f"Fix: {fix}." for fix in sorted(entry.fixes))
    return f"{text} {fixes}" if fixes else text


def _fingerprint(entry: BlockingLine) -> str:
    """By the line's text, not its number: the alert stays one alert when lines above move."""
    key = f"{_RULES[_RULE_INDEX[entry.kind]]['id']}\0{entry.file}\0{entry.code.strip()}"
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def _result(entry: BlockingLine) -> dict[str, Any]:
    index = _RULE_INDEX[entry.kind]
    region: dict[str, Any] = {"startLine": entry.line}
    if entry.code:
        region["snippet"] = {"text": entry.code}
    return {
        "ruleId": _RULES[index]["id"],
        "ruleIndex": index,
        "level": "error" if entry.failing else "warning",
        "message": {"text": _message(entry)},
        "locations": [
            {
                "physicalLocation": {
                    # A URI reference: a space or a `#` in a file name must be escaped.
                    "artifactLocation": {"uri": quote(entry.file), "uriBaseId": ROOT_ID},
                    "region": region,
                }
            }
        ],
        "partialFingerprints": {"loopwatchLine/v1": _fingerprint(entry)},
        "properties": {
            "tests": sorted(entry.tests),
            "requests": sorted(entry.requests),
            "count": len(entry.durations),
            "worstDurationSeconds": max(entry.durations),
        },
    }


def sarif_log(entries: Iterable[BlockingLine], root: Path, version: str) -> dict[str, Any]:
    """The whole log: one run of pytest-loopwatch, its two rules, a result per entry."""
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "pytest-loopwatch",
                        "version": version,
                        "semanticVersion": version,
                        "rules": list(_RULES),
                    }
                },
                "originalUriBaseIds": {ROOT_ID: {"uri": root.as_uri() + "/"}},
                "results": [_result(entry) for entry in entries],
            }
        ],
    }
