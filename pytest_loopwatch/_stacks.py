"""Turning sampled stacks into frames, and finding the line that blocked.

Nothing here runs inside app code: deciding what is user code compares strings, and
source lines are read when a stall is reported, after the request.
"""

from __future__ import annotations

import linecache
import os
import sysconfig
from collections import Counter
from functools import cache

from ._records import Frame, SampledFrame, SampledStack

OWN_PACKAGE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "")


def _library_roots() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    roots = {paths[key] for key in ("stdlib", "platstdlib", "purelib", "platlib") if key in paths}
    # Each root as it is and resolved: code objects carry the path Python imported them
    # by, which need not be the real one (a venv behind a link).
    every = {os.path.join(path, "") for root in roots for path in (root, os.path.realpath(root))}
    # Longest first: site-packages lies inside the standard library's folder.
    return tuple(sorted(every, key=len, reverse=True))


LIBRARY_ROOTS = _library_roots()


@cache
def is_user_code(file: str) -> bool:
    """True for the project's own files: not the standard library, installed packages or us."""
    return not (file.startswith(("<", *LIBRARY_ROOTS)) or is_own(file))


@cache
def is_own(file: str) -> bool:
    """Whether `file` is one of loopwatch's own modules: never shown, never blamed."""
    return file.startswith(OWN_PACKAGE)


def library_name(file: str) -> str:
    """The package or module a library file belongs to: `starlette`, `asyncio`, `socket`."""
    for root in LIBRARY_ROOTS:
        if file.startswith(root):
            first = file[len(root) :].split(os.sep, 1)[0]
            return first.removesuffix(".py")
    return os.path.basename(file)


def without_own_frames(stack: SampledStack) -> SampledStack:
    return tuple(frame for frame in stack if not is_own(frame[0]))


def blocking_index(stack: SampledStack) -> tuple[int, int | None]:
    """(the blocking frame, the app frame that led there, if the blocking frame is not it).

    The blocking frame is the innermost frame of user code, unless that frame only awaits
    library code (a middleware's `await self.app(...)`): then the work is in the library,
    at its innermost frame, and the app's line is where it was reached from. With no user
    frame at all, the innermost frame.
    """
    for index in range(len(stack) - 1, -1, -1):
        if is_user_code(stack[index][0]):
            inner = index + 1
            if inner < len(stack) and stack[inner][4]:  # the app frame awaits the library
                return len(stack) - 1, index
            return index, None
    return len(stack) - 1, None


def blocking_line(stack: SampledStack) -> tuple[str, int] | None:
    """The blocking frame's (file, line), ignoring loopwatch's own frames."""
    stack = without_own_frames(stack)
    if not stack:
        return None
    frame = stack[blocking_index(stack)[0]]
    return frame[0], frame[1]


def to_frame(frame: SampledFrame) -> Frame:
    """A full frame record, with its line's source; reads files, so never inside app code."""
    file, line, function = frame[0], frame[1], frame[2]
    return Frame(
        file=file,
        line=line,
        function=function,
        code=linecache.getline(file, line).strip(),
        is_user_code=is_user_code(file),
    )


def blocking_stack(samples: Counter[SampledStack]) -> tuple[SampledStack, int, int | None] | None:
    """The stack that shows where the stretch spent most of its samples, its blocking frame
    and the app frame that led there, loopwatch's own frames left out.

    Samples are grouped by the innermost app frame (file, line), so a CPU loop spread over
    many inner library calls still points at the one user line that drives it.
    """
    by_location: Counter[tuple[str, int]] = Counter()
    example: dict[tuple[str, int], tuple[SampledStack, int, int | None, int]] = {}
    for sampled, count in samples.items():
        stack = without_own_frames(sampled)
        if not stack:
            continue
        index, reached_from = blocking_index(stack)
        anchor = stack[index if reached_from is None else reached_from]
        key = (anchor[0], anchor[1])
        by_location[key] += count
        if key not in example or example[key][3] < count:
            example[key] = (stack, index, reached_from, count)
    if not by_location:
        return None
    location, _ = by_location.most_common(1)[0]
    stack, index, reached_from, _ = example[location]
    return stack, index, reached_from
