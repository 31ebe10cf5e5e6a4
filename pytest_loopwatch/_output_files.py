"""The files a run writes (the JSON report, the SARIF log, an updated baseline): checked
before any test runs, written whole or not at all.

A path that cannot be written (a directory, a path under a file, a read-only mount, /proc)
is known before the first test: found only at the end, a whole run's findings would be
lost. The check writes and removes a temporary file beside the target, the one test that
tells every case alike, root's permissions included.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path


class UnwritablePath(ValueError):
    """An output path that cannot be written; the message says why."""


def checked_output(path: str, base: Path) -> Path:
    """`path` (relative to `base`), once known to be writable as a file; raises
    UnwritablePath."""
    if not path.strip():
        raise UnwritablePath("an empty path")
    target = Path(base, path)
    if target.is_dir():
        raise UnwritablePath(f"{path} is a directory")
    parent = target.parent
    for directory in (parent, *parent.parents):
        if directory.exists():
            if not directory.is_dir():
                raise UnwritablePath(f"{path}: {directory} is not a directory")
            break
    try:
        parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=parent, prefix=".loopwatch-", suffix=".tmp"):
            pass
    except OSError as error:
        raise UnwritablePath(f"{path} cannot be written: {error.strerror or error}") from None
    return target


def refuse_shared(outputs: Iterable[tuple[str, Path]]) -> None:
    """Raise UnwritablePath if two options write one file: the second would overwrite the first."""
    seen: dict[Path, str] = {}
    for option, path in outputs:
        resolved = path.resolve()
        if resolved in seen:
            raise UnwritablePath(f"{option} writes the same file as {seen[resolved]}: {path}")
        seen[resolved] = option


def write_atomically(path: Path, text: str) -> None:
    """Readers see the old file or the new one, never half of one; no temporary file is
    left behind, whatever fails."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=".loopwatch-", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(text)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
