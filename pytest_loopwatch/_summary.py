"""The run's summary: stalls grouped by route and blocking line, worst first."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from ._durations import format_duration
from ._findings import Finding
from ._report import describe_request, shown_path


@dataclass
class _Group:
    where: str
    code: str
    request: str
    call: str | None
    durations: list[float] = field(default_factory=list)
    tests: dict[str, None] = field(default_factory=dict)


def summary_lines(findings: Iterable[Finding], base: str) -> list[str]:
    """A paragraph per (route, blocking line, call): count, worst and total time, the tests."""
    groups: dict[tuple[str | None, str, str | None], _Group] = {}
    for finding in findings:
        stall = finding.stall
        location = stall.location
        where = (
            "(no stack sample)"
            if location is None
            else f"{shown_path(location.file, base)}:{location.line}"
        )
        # Calls group by the function called; their arguments (a descriptor) may differ.
        called = None if stall.kind != "call" else (stall.call or "").partition("(")[0]
        key = (stall.route or stall.request.path, where, called)
        group = groups.get(key)
        if group is None:
            group = groups[key] = _Group(
                where,
                "" if location is None else location.code,
                describe_request(stall),
                stall.call if stall.kind == "call" else None,
            )
        group.durations.append(stall.duration)
        during = f" ({finding.during})" if finding.during else ""
        group.tests[finding.test + during] = None
    lines: list[str] = []
    # Stalls, worst first; then blocking calls, which have no duration.
    for group in sorted(
        groups.values(),
        key=lambda g: (g.call is not None, -max(g.durations), -sum(g.durations), g.request),
    ):
        count = len(group.durations)
        if group.call is not None:
            calls = "1 blocking call" if count == 1 else f"{count} blocking calls"
            lines.append(f"{group.request}: {calls}, {group.call}")
        else:
            times = "1 stall" if count == 1 else f"{count} stalls"
            lines.append(
                f"{group.request}: {times}, worst {format_duration(max(group.durations))}, "
                f"total {format_duration(sum(group.durations))}"
            )
        lines.append(f"  at {group.where}" + (f": {group.code}" if group.code else ""))
        lines.extend(f"  in {test}" for test in group.tests)
    call_count = sum(len(g.durations) for g in groups.values() if g.call is not None)
    if call_count:
        stall_count = sum(len(g.durations) for g in groups.values()) - call_count
        stalls = "1 stall" if stall_count == 1 else f"{stall_count} stalls"
        calls = "1 blocking call" if call_count == 1 else f"{call_count} blocking calls"
        lines.append(f"in all: {stalls}, {calls}")
    return lines
