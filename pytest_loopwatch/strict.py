"""Strict mode: known blocking calls made by app code on the loop, however fast they were.

A threshold catches what is slow on this machine today; a `time.sleep(0.01)` or a request
to a local mock is fast here and blocks in production. Python announces most blocking
calls as audit events (PEP 578); a hook ignores them at the cost of one check while strict
mode is off. What Python does not announce is wrapped only while strict mode is on: the
socket methods that send and receive, `os.read` and `os.write`, `time.sleep` before
Python 3.13, and SQLite statements (a trace callback on each connection opened once strict
mode was first used).

Code that bound a wrapped function to a name of its own before strict mode began
(`from time import sleep`, on Python before 3.13) keeps the unwrapped one.

A call counts when the thread making it is inside a timed stretch of a watched request's
app code, no frame between the app's coroutine and the call belongs to an allowed
`module:function` pattern, and, for a socket or descriptor, it can block at all.
"""

from __future__ import annotations

import fnmatch
import os
import re
import socket
import sqlite3
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from threading import get_ident
from types import FrameType
from typing import Any

from .stretches import STRETCH_CODE, running_stretches
from .watchdog import sample_stack

DEFAULT_ALLOWED = ("importlib.*:*", "linecache:*", "asyncio.*:*", "trio.*:*")
"""The import system and source lookups for tracebacks read files; asyncio and trio start
subprocesses with a short blocking fork on behalf of their own async APIs."""

ALLOW_FORM = "module:function, each side an fnmatch pattern (e.g. logging:* or myapp.db:connect)"

_OWN_PACKAGE = __name__.rpartition(".")[0]


class InvalidAllowPattern(ValueError):
    """An allow-list entry that is not `module:function`."""


def check_allowed(patterns: Iterable[str]) -> None:
    """Raise InvalidAllowPattern, naming the first entry that is not `module:function`."""
    for pattern in patterns:
        if (
            not isinstance(pattern, str)
            or pattern.count(":") != 1
            or ":"
            in (
                pattern[0],
                pattern[-1],
            )
        ):
            raise InvalidAllowPattern(pattern)


def _shorten(value: object, limit: int = 80) -> str:
    # Bytes in these events are paths and commands, encoded for the OS.
    text = repr(os.fsdecode(value) if isinstance(value, bytes) else value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _first_arguments(count: int) -> Callable[[str, tuple[Any, ...]], str]:
    def describe(event: str, args: tuple[Any, ...]) -> str:
        return f"{event}({', '.join(_shorten(arg) for arg in args[:count])})"

    return describe


def _socket_address(event: str, args: tuple[Any, ...]) -> str:
    return f"{event}({_shorten(args[1])})"


def _open(event: str, args: tuple[Any, ...]) -> str:
    path, mode, _flags = args
    shown = repr(os.fsdecode(path) if isinstance(path, (str, bytes, os.PathLike)) else path)
    if len(shown) > 80:
        shown = "'..." + shown[-76:]  # a path's end names the file
    return f"open({shown}{'' if mode is None else ', ' + _shorten(mode)})"


_AUDITED: dict[str, Callable[[str, tuple[Any, ...]], str]] = {
    "time.sleep": _first_arguments(1),
    "socket.connect": _socket_address,
    "socket.sendto": _socket_address,
    "socket.getaddrinfo": _first_arguments(2),
    "socket.gethostbyname": _first_arguments(1),
    "socket.gethostbyaddr": _first_arguments(1),
    "socket.getnameinfo": _first_arguments(1),
    "open": _open,
    "subprocess.Popen": lambda event, args: f"{event}({_shorten(args[1])})",
    "os.system": _first_arguments(1),
    "os.posix_spawn": _first_arguments(2),
    "os.spawn": lambda event, args: f"{event}({_shorten(args[1])}, {_shorten(args[2])})",
    "os.exec": _first_arguments(2),
    "sqlite3.connect": _first_arguments(1),
}
"""The audit events of blocking calls, and how each call is summed up in a report."""

_SOCKET_METHODS = ("send", "sendall", "recv", "recv_into", "recvfrom", "recvfrom_into", "accept")


class StrictMode:
    """Reports, through each stretch's handler, the blocking calls app code makes on the loop."""

    def __init__(self) -> None:
        self.catching = False
        self._hooked = False
        self._allowed: re.Pattern[str] = self._compile(DEFAULT_ALLOWED)
        self._suspended = 0
        self._extra_allowed: list[re.Pattern[str]] = []
        self._untraced: list[tuple[sqlite3.Connection, int]] = []
        """Connections opened, with the thread that opened them, not yet traced: held only
        until that thread's next audit event (connections cannot be weakly referenced)."""
        self._restore: list[Callable[[], None]] = []
        self.errors: list[str] = []

    # -- switching -----------------------------------------------------------------------

    def install_hook(self) -> None:
        """Listen to audit events from now on; a hook cannot be removed, so it is added once."""
        if not self._hooked:
            sys.addaudithook(self._on_audit_event)
            self._hooked = True

    def catch(self, allowed: Iterable[str]) -> None:
        """Report blocking calls from now on, but for those made under `allowed` frames."""
        self.install_hook()
        self._allowed = self._compile((*DEFAULT_ALLOWED, *allowed))
        if self._untraced:
            self._trace_new_connections()
        if not self.catching:
            self._wrap_unannounced_calls()
            self.catching = True

    def stop(self) -> None:
        """Report nothing, and restore every wrapped function."""
        self.catching = False
        while self._restore:
            self._restore.pop()()

    @contextmanager
    def allowing(self, patterns: Sequence[str] = ()) -> Iterator[None]:
        """Inside the block, no call made under `patterns` is reported; with none, no call."""
        check_allowed(patterns)
        if not patterns:
            self._suspended += 1
        else:
            self._extra_allowed.append(self._compile(patterns))
        try:
            yield
        finally:
            if not patterns:
                self._suspended -= 1
            else:
                self._extra_allowed.pop()

    @staticmethod
    def _compile(patterns: Iterable[str]) -> re.Pattern[str]:
        return re.compile("|".join(f"(?:{fnmatch.translate(pattern)})" for pattern in patterns))

    # -- noticing ------------------------------------------------------------------------

    def _on_audit_event(self, event: str, args: tuple[Any, ...]) -> None:
        # An exception here would abort the call that raised the event: none may leave.
        try:
            if event == "sqlite3.connect/handle":
                # Announced from inside Connection.__init__, before the connection can
                # take a trace callback: it gets one at the next event in this thread.
                self._untraced.append((args[0], get_ident()))
                return
            if self._untraced:
                self._trace_new_connections()
            if not self.catching or event not in _AUDITED:
                return
            if event in ("socket.connect", "socket.sendto") and args[0].gettimeout() == 0.0:
                return  # a non-blocking socket, as an async library uses it
            if event == "open" and isinstance(args[0], int):
                return  # wrapping a descriptor already open
            self._notice(event, args, _AUDITED[event])
        except Exception as error:  # noqa: BLE001
            self.errors.append(f"strict mode, on {event}: {error!r}")

    def _notice(
        self, event: str, args: tuple[Any, ...], describe: Callable[[str, tuple[Any, ...]], str]
    ) -> None:
        """Report the call if app code made it on the loop; never raises into it."""
        stretch = running_stretches.get(get_ident())
        if stretch is None or self._suspended:
            return
        try:
            frame = sys._getframe(2)
            if self._made_by_allowed_code(frame):
                return
            stack = sample_stack(frame)
            stretch[1](stretch[2], 0.0, Counter({stack: 1}), describe(event, args))
        except Exception as error:  # noqa: BLE001 - runs inside the app's call
            self.errors.append(f"strict mode, on {event}: {error!r}")

    def _made_by_allowed_code(self, frame: FrameType | None) -> bool:
        """Whether a frame between the call and the app's coroutine is allowed, or ours."""
        while frame is not None:
            code = frame.f_code
            if code is STRETCH_CODE:
                return False
            module = frame.f_globals.get("__name__", "")
            if module.partition(".")[0] == _OWN_PACKAGE:
                return True  # the plugin describing a stall reads source lines
            name = f"{module}:{code.co_qualname}"
            if self._allowed.match(name) or any(p.match(name) for p in self._extra_allowed):
                return True
            frame = frame.f_back
        return False

    # -- what Python does not announce ---------------------------------------------------

    def _trace_new_connections(self) -> None:
        """Give each connection opened in this thread a trace callback that notices statements."""
        thread = get_ident()
        untraced = []
        for connection, opened_in in self._untraced:
            if opened_in != thread:
                untraced.append((connection, opened_in))
                continue
            try:
                connection.set_trace_callback(self._statement_run)
            except sqlite3.ProgrammingError:
                untraced.append((connection, opened_in))  # still inside its __init__
            except Exception as error:  # noqa: BLE001 - runs inside the user's code
                self.errors.append(f"strict mode, tracing a sqlite3 connection: {error!r}")
        self._untraced = untraced

    def _statement_run(self, statement: str) -> None:
        if self.catching and get_ident() in running_stretches:
            self._notice("sqlite3.execute", (statement,), _first_arguments(1))

    def _wrap_unannounced_calls(self) -> None:
        for name in _SOCKET_METHODS:
            self._wrap(socket.socket, name, f"socket.{name}", _in_blocking_mode, _peer)
        for name in ("read", "write"):
            self._wrap(os, name, f"os.{name}", _blocks, _first_arguments(1))
        if sys.version_info < (3, 13):
            # Announced as the audit event time.sleep from 3.13 on.
            self._wrap(time, "sleep", "time.sleep", _always, _first_arguments(1))

    def _wrap(
        self,
        owner: Any,
        name: str,
        event: str,
        blocks: Callable[[Any], bool],
        describe: Callable[[str, tuple[Any, ...]], str],
    ) -> None:
        """Notice calls of `owner.name` whose first argument `blocks`, until `stop`."""
        own = name in vars(owner)
        original = getattr(owner, name)
        notice = self._notice

        def watched(first: Any, /, *args: Any, **kwargs: Any) -> Any:
            if get_ident() in running_stretches and blocks(first):
                notice(event, (first,), describe)
            return original(first, *args, **kwargs)

        watched.__name__ = watched.__qualname__ = name
        setattr(owner, name, watched)
        # A method inherited from a base class is shadowed, not replaced: undone by deleting.
        self._restore.append(
            (lambda: setattr(owner, name, original)) if own else (lambda: delattr(owner, name))
        )


def _always(_: Any) -> bool:
    return True


def _in_blocking_mode(sock: socket.socket) -> bool:
    return sock.gettimeout() != 0.0


def _blocks(fd: int) -> bool:
    try:
        return os.get_blocking(fd)
    except (OSError, TypeError):
        return False  # the call itself will say what is wrong with the descriptor


def _peer(event: str, args: tuple[Any, ...]) -> str:
    try:
        peer = args[0].getpeername()
    except OSError:
        peer = None  # not connected, or a listening socket
    return f"{event}({_shorten(peer) if peer else ''})"


strict_mode = StrictMode()
"""The process's one strict mode."""
