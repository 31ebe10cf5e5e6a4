"""The run's findings gathered by the app line that blocked, as a repository knows it: what
CI annotations and code scanning show, one entry per line.

A stall's line is the app's own: where it blocked when that is app code, else the app line
that reached the library that blocked, else the innermost app frame sampled, else the
endpoint's definition. Lines outside the repository (an installed package) have no place on
a pull request's diff and are left to the run's own report.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ._findings import Finding
from ._records import Stall
from ._report import request_head


@dataclass
class BlockingLine:
    """Every finding of one kind (`stall` or `call`) at one line of the repository."""

    kind: str
    file: str
    """Relative to the repository root, with forward slashes."""
    line: int
    code: str
    threshold: float
    requests: dict[str, None] = field(default_factory=dict)
    calls: dict[str, None] = field(default_factory=dict)
    fixes: dict[str, None] = field(default_factory=dict)
    tests: dict[str, None] = field(default_factory=dict)
    durations: list[float] = field(default_factory=list)
    failing: bool = False
    """Whether any of its findings failed a test (not one the baseline knows, nor warn mode)."""


def repository_root(start: Path, environ: Mapping[str, str]) -> Path:
    """The root paths are given from: GitHub's checkout when it holds `start`, else the
    nearest directory above `start` with a `.git`, else `start`."""
    start = start.resolve()
    workspace = environ.get("GITHUB_WORKSPACE")
    if workspace:
        root = Path(workspace).resolve()
        if start == root or root in start.parents:
            return root
    for directory in (start, *start.parents):
        if (directory / ".git").exists():
            return directory
    return start


def _app_line(stall: Stall) -> tuple[str, int, str] | None:
    location = stall.location
    if location is not None and location.is_user_code:
        return location.file, location.line, location.code
    if stall.reached_from is not None:
        frame = stall.reached_from
        return frame.file, frame.line, frame.code
    for frame in reversed(stall.stack):
        if frame.is_user_code:
            return frame.file, frame.line, frame.code
    endpoint = stall.endpoint
    if endpoint is not None and endpoint.file is not None and endpoint.line is not None:
        return endpoint.file, endpoint.line, ""
    return None


def blocking_lines(
    findings: Iterable[Finding],
    *,
    base: str,
    root: Path,
    failing: Callable[[Finding], bool],
) -> list[BlockingLine]:
    """One entry per (kind, repository line), in the order of file and line: the same on
    every run, whatever order pytest-xdist's workers sent the findings in.

    Paths in findings are absolute or, from a pytest-xdist worker, relative to `base`.
    """
    lines: dict[tuple[str, int, str], BlockingLine] = {}
    for finding in findings:
        stall = finding.stall
        where = _app_line(stall)
        if where is None:
            continue
        file, number, code = where
        relative = os.path.relpath(os.path.join(base, file), root)
        if relative.startswith(os.pardir):
            continue
        relative = Path(relative).as_posix()
        entry = lines.get((relative, number, stall.kind))
        if entry is None:
            entry = lines[relative, number, stall.kind] = BlockingLine(
                stall.kind, relative, number, code, stall.threshold
            )
        head = request_head(stall.request)
        entry.requests[f"{head} (route {stall.route})" if stall.route else head] = None
        if stall.call is not None:
            entry.calls[stall.call] = None
        if stall.fix is not None:
            entry.fixes[stall.fix] = None
        entry.tests[finding.test] = None
        entry.durations.append(stall.duration)
        entry.failing = entry.failing or failing(finding)
    return [lines[key] for key in sorted(lines)]
