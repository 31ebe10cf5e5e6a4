"""Real projects whose history fixes an `async def` that blocked the loop: was the bug caught
and pinpointed by plain `pytest --loopwatch` at the commit before the fix, and is it gone at
the fix?

Each project was checked out at both commits, installed with its own test dependencies in a
virtual environment of its own beside pytest-loopwatch, and its tests were run as its
maintainers run them, adding only `--loopwatch --loopwatch-report=REPORT`. Nothing of the
projects is kept here, nor how to build them: only what their tests showed. This script
reads the two reports of each project and says whether the known bug's line was reported
before the fix and not after.

    python benchmarks/real_projects.py REPORTS_DIR

REPORTS_DIR holds `<name>_pre.json` and `<name>_fix.json` for each project below.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class KnownBug:
    name: str
    repository: str
    before: str
    """The commit before the fix."""
    fix: str
    tests: str
    """What the tests do to the blocking work."""
    blocking: tuple[str, ...]
    """`file:line` suffixes, any of which is the known bug's line: the blocking line, or
    the endpoint's line that reached it where other endpoints, not the bug's, reach the
    same blocking line."""


PROJECTS = (
    KnownBug(
        "lso",
        "workfloworchestrator/lso",
        "28e1210~1",
        "28e1210",
        "`subprocess.run` of a small test script from `async def run_executable_endpoint`",
        ("lso/execute.py:40",),
    ),
    KnownBug(
        "taskdog",
        "Kohei-Wada/taskdog",
        "8daeb42c~1",
        "8daeb42c",
        "sync SQLAlchemy over an in-memory SQLite, from 27 `async def` endpoints",
        (
            "sqlite_audit_log_repository.py:69",
            "sqlite_audit_log_repository.py:86",
            "sqlite_audit_log_repository.py:116",
            "sqlite_backup_store.py:68",
        ),
    ),
    KnownBug(
        "blueprint",
        "Mr-DooSun/fastapi-agent-blueprint",
        "3b32104~1",
        "3b32104",
        "bcrypt at its default cost (12) in `async def` register and login",
        ("src/_core/common/security.py:5", "src/_core/common/security.py:9"),
    ),
    KnownBug(
        "h5grove",
        "silx-kit/h5grove",
        "5024e0d~1",
        "5024e0d",
        "HDF5 files opened with `h5py.File` (C-level I/O, 2-4 ms) from `async def` endpoints",
        ("src/h5grove/utils.py:381",),
    ),
    KnownBug(
        "ods",
        "Osmantic/ODS",
        "60f35831~1",
        "60f35831",
        "`urllib.request.urlopen` of GitHub's release API in `async def get_update_dry_run`"
        " (dream-server/extensions/services/dashboard-api; the tests mock urlopen)",
        ("routers/updates.py:237",),
    ),
    KnownBug(
        "codeframe",
        "frankbria/codeframe",
        "0db6880d~1",
        "0db6880d",
        "`sqlite3.connect` of the workspace's database (core/workspace.py:87) from nine"
        " `async def` task and cost endpoints; the lines of those endpoints that reach it",
        (
            "ui/routers/tasks_v2.py:237",
            "ui/routers/tasks_v2.py:268",
            "ui/routers/tasks_v2.py:310",
            "ui/routers/tasks_v2.py:363",
            "ui/routers/tasks_v2.py:390",
            "ui/routers/tasks_v2.py:440",
            "ui/routers/tasks_v2.py:1077",
            "ui/routers/tasks_v2.py:1100",
            "ui/routers/costs_v2.py:122",
            "ui/routers/costs_v2.py:306",
            "ui/routers/costs_v2.py:325",
        ),
    ),
)


def blocking_lines(report: Path) -> list[list[str]]:
    """For every finding in a loopwatch JSON report, the `file:line` of its blocking line
    and of each frame of its stack."""
    document = json.loads(report.read_text())
    return [
        [
            f"{frame['file']}:{frame['line']}"
            for frame in (stall["location"], *stall.get("stack", ()))
            if frame is not None
        ]
        for stall in document["stalls"]
    ]


def hits(findings: list[list[str]], bug: KnownBug) -> int:
    """How many findings have the known bug's line in their stack."""
    return sum(any(line.endswith(bug.blocking) for line in lines) for lines in findings)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("reports", type=Path, help="folder of <name>_pre.json and <name>_fix.json")
    args = parser.parse_args()
    all_held = True
    print(f"{'project':<36}{'before: findings at the line':>30}{'after the fix':>16}")
    for bug in PROJECTS:
        before = hits(blocking_lines(args.reports / f"{bug.name}_pre.json"), bug)
        after = hits(blocking_lines(args.reports / f"{bug.name}_fix.json"), bug)
        held = before > 0 and after == 0
        all_held = all_held and held
        print(f"{bug.repository:<36}{before:>30}{after:>16}  {'ok' if held else 'MISSED'}")
        print(f"  {bug.tests}")
    sys.exit(0 if all_held else 1)


if __name__ == "__main__":
    main()
