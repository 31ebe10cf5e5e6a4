"""The run's summary: stalls grouped by route and blocking line, worst first."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from .durations import format_duration
from .findings import Finding
from .report import describe_request, display_path


@dataclass
class _Group:
    where: str
    code: str
    request: str
    durations: list[float] = field(default_factory=list)
    tests: dict[str, None] = field(default_factory=dict)


def summary_lines(findings: Iterable[Finding], base: str) -> list[str]:
    """A paragraph per (route, blocking line): count, worst and total time, the tests."""
    groups: dict[tuple[str | None, str], _Group] = {}
    for finding in findings:
        stall = finding.stall
        location = stall.location
        where = (
            "(no stack sample)"
            if location is None
            else f"{display_path(location.file, base)}:{location.line}"
        )
        key = (stall.route or stall.request.path, where)
        group = groups.get(key)
        if group is None:
            group = groups[key] = _Group(
                where, "" if location is None else location.code, describe_request(stall)
            )
        group.durations.append(stall.duration)
        group.tests[finding.test] = None
    lines: list[str] = []
    for group in sorted(groups.values(), key=lambda g: (-max(g.durations), -sum(g.durations))):
        times = "1 stall" if len(group.durations) == 1 else f"{len(group.durations)} stalls"
        lines.append(
            f"{group.request}: {times}, worst {format_duration(max(group.durations))}, "
            f"total {format_duration(sum(group.durations))}"
        )
        lines.append(f"  at {group.where}" + (f": {group.code}" if group.code else ""))
        lines.extend(f"  in {test}" for test in group.tests)
    return lines
