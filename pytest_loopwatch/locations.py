"""Turning sampled stacks into frames, and finding the line that blocked."""

from __future__ import annotations

import linecache
import os
import sysconfig
from collections import Counter
from functools import cache

from .records import Frame
from .stretches import SampledStack


def _library_roots() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    roots = {paths[key] for key in ("stdlib", "platstdlib", "purelib", "platlib") if key in paths}
    roots.add(os.path.dirname(os.path.abspath(__file__)))
    # Longest first: site-packages lies inside the standard library's folder.
    real_roots = {os.path.join(os.path.realpath(root), "") for root in roots}
    return tuple(sorted(real_roots, key=len, reverse=True))


_LIBRARY_ROOTS = _library_roots()


@cache
def is_user_code(file: str) -> bool:
    """True for the project's own files: not the standard library, installed packages or us."""
    if file.startswith("<"):
        return False
    return not os.path.realpath(file).startswith(_LIBRARY_ROOTS)


def library_name(file: str) -> str:
    """The package or module a library file belongs to: `starlette`, `asyncio`, `socket`."""
    real = os.path.realpath(file)
    for root in _LIBRARY_ROOTS:
        if real.startswith(root):
            first = real[len(root) :].split(os.sep, 1)[0]
            return first.removesuffix(".py")
    return os.path.basename(file)


def to_frames(stack: SampledStack) -> tuple[Frame, ...]:
    """Full frame records, with each line's source."""
    return tuple(
        Frame(
            file=file,
            line=line,
            function=function,
            code=linecache.getline(file, line).strip(),
            is_user_code=is_user_code(file),
        )
        for file, line, function in stack
    )


def _blocking_index(stack: SampledStack) -> int:
    """The innermost frame of user code, else the innermost frame."""
    for index in range(len(stack) - 1, -1, -1):
        if is_user_code(stack[index][0]):
            return index
    return len(stack) - 1


def blocking_stack(samples: Counter[SampledStack]) -> tuple[SampledStack, int] | None:
    """The stack that shows where the stretch spent most of its samples, and its blocking frame.

    Samples are grouped by their blocking frame (file, line), so a CPU loop spread over
    many inner library calls still points at the one user line that drives it.
    """
    by_location: Counter[tuple[str, int]] = Counter()
    example: dict[tuple[str, int], tuple[SampledStack, int]] = {}
    for stack, count in samples.items():
        if not stack:
            continue
        index = _blocking_index(stack)
        key = (stack[index][0], stack[index][1])
        by_location[key] += count
        if key not in example or samples[example[key][0]] < count:
            example[key] = (stack, index)
    if not by_location:
        return None
    location, _ = by_location.most_common(1)[0]
    return example[location]
