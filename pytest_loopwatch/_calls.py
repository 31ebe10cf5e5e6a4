"""Blocking calls: known blocking APIs that app code calls on the loop, however fast.

A threshold catches what is slow on this machine today; a `time.sleep(0.01)`, a query to
an in-memory SQLite or a request to a mocked transport is fast in a test and blocks in
production. Python announces most blocking primitives as audit events (PEP 578): one hook,
which returns at once for any other event. What Python does not announce is wrapped while
tests are watched, and restored before a test that is not and at the end of the session:
the known blocking APIs of `_blocking_apis` that are imported, the socket methods that
send and receive, `os.read` and `os.write`, `time.sleep` before Python 3.13, and SQLite
statements (a trace callback on each connection opened once the hook listens). A mock
that a test put in place of a known blocking API (`unittest.mock.patch`) counts as that
API when app code calls it.

Code that bound a wrapped function to a name of its own before the test began
(`from bcrypt import hashpw`) keeps the unwrapped one.

A call counts when the thread making it is inside a timed stretch of a watched request's
app code, neither the called function nor any frame between the app's coroutine and the
call matches an allowed `module:function` pattern, and, for a socket or descriptor, it can
block at all.
"""

from __future__ import annotations

import contextlib
import fnmatch
import functools
import inspect
import os
import re
import sys
import types
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from threading import get_ident
from types import FrameType
from typing import Any

from ._blocking_apis import CATALOGUE, BlockingApi, resolve
from ._internal_errors import note
from ._stretches import (
    CALLBACK_CODE,
    STRETCH_CODE,
    debugger_entered,
    running_stretches,
    sample_stack,
    stopped_in_a_debugger,
)

LAZY_INITIALISATION = (
    "importlib.*:*",
    "linecache:*",
    "mimetypes:*",
    "zoneinfo.*:*",
    "jinja2.loaders:*",
    "jinja2.utils:open_if_exists",
    "fastapi.openapi.*:*",
    "fastapi.applications:FastAPI.openapi",
    "fastapi.applications:FastAPI.setup.<locals>.*",
    "inspect:getsource*",
    "inspect:findsource",
    "starlette.applications:Starlette.build_middleware_stack",
)
"""Allowed by default, blocking calls and stalls alike: one-time work on first use that is
not the user's to change. Imports and source lookups for tracebacks read files; the
standard library reads its MIME table and time-zone data on first use, Jinja2 a template
on its first render; FastAPI builds its OpenAPI schema on the first `/openapi.json` (and
serves it, and its docs pages, from endpoints of its own). A framework reading the source
of an endpoint to describe it (FastAPI, on each route's first request: 55-70 ms on a quiet
machine) is introspection, whatever the framework calls it. A mounted Starlette app builds
its middleware stack inside the first request that reaches it (the watched app's own is
built before its first call is timed)."""

LOGGING_TO_FILES = (
    "logging:FileHandler.*",
    "logging.handlers:BaseRotatingHandler.*",
    "logging.handlers:*FileHandler.*",
)
"""The standard library's file handlers, opening (`delay=True`), rotating and reopening
their files: whichever request logs first or at the size limit makes the call, so the
finding would move from test to test with the order. Network handlers (socket, SMTP, HTTP)
are not among them. A `QueueHandler` on the loop, with its file handler behind a
`QueueListener`, takes the writing off the loop in production too."""

ALLOWED_CALLS_ONLY = ("asyncio.*:*", "trio.*:*", "_pytest.*:*", *LOGGING_TO_FILES)
"""Allowed for blocking calls only: asyncio and trio start subprocesses with a short
blocking fork on behalf of their own async APIs; pytest's own hooks (its unraisable-exception
hook formatting a traceback when the collector finalises an object) can run inside a
stretch, and are not the app's; nor are logging's file handlers (above)."""

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
            or ":" in (pattern[0], pattern[-1])
        ):
            raise InvalidAllowPattern(pattern)


class AllowRules:
    """`module:function` patterns, fnmatch on both sides, and one expression for them all:
    every frame between a blocking call and the app is asked, and nearly none matches."""

    __slots__ = ("_expression", "patterns")

    def __init__(self, patterns: tuple[str, ...]) -> None:
        self.patterns = patterns
        # Compiled when first asked: the default rules make one expression that takes
        # 3 ms to compile, which a session whose tests make no blocking call never needs.
        self._expression: re.Pattern[str] | None = None

    def rule_for(self, name: str) -> str | None:
        """The first pattern `name` matches (which rule let a finding pass, for the
        allow-list's audit), if any."""
        expression = self._expression
        if expression is None:
            expression = self._expression = _compiled(self.patterns)
        if not expression.match(name):
            return None
        return next(p for p in self.patterns if _compiled((p,)).match(name))


def allow_rules(patterns: Iterable[str]) -> AllowRules:
    return _allow_rules(tuple(patterns))


@functools.cache
def _allow_rules(patterns: tuple[str, ...]) -> AllowRules:
    # Every watched test asks for the run's same patterns: translated once (0.5 ms a test).
    return AllowRules(patterns)


@functools.cache
def _compiled(patterns: tuple[str, ...]) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns) or "(?!)")


ALLOW_ALL = "loopwatch.allow()"
"""How the audit names `with loopwatch.allow():`, which lets every call pass."""


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
    if _made_by_tempfile(sys._getframe(1)):
        # `tempfile.TemporaryFile` opens the directory, for a file with no name in it.
        shown = f"a temporary file in {shown}"
    return f"open({shown}{'' if mode is None else ', ' + _shorten(mode)})"


def _made_by_tempfile(frame: FrameType | None) -> bool:
    """Whether the call being described, still on the stack, was made by `tempfile`."""
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if module == "tempfile":
            return True
        if frame.f_code is STRETCH_CODE or frame.f_code is CALLBACK_CODE:
            return False
        frame = frame.f_back
    return False


_Describe = Callable[[str, tuple[Any, ...]], str]

_AUDITED: dict[str, tuple[_Describe, str]] = {
    "time.sleep": (_first_arguments(1), "sleep"),
    "socket.connect": (_socket_address, "socket"),
    "socket.sendto": (_socket_address, "socket"),
    "socket.getaddrinfo": (_first_arguments(2), "socket"),
    "socket.gethostbyname": (_first_arguments(1), "socket"),
    "socket.gethostbyaddr": (_first_arguments(1), "socket"),
    "socket.getnameinfo": (_first_arguments(1), "socket"),
    "open": (_open, "file"),
    "subprocess.Popen": (lambda event, args: f"{event}({_shorten(args[1])})", "subprocess"),
    "os.system": (_first_arguments(1), "subprocess"),
    "os.posix_spawn": (_first_arguments(2), "subprocess"),
    "os.spawn": (
        lambda event, args: f"{event}({_shorten(args[1])}, {_shorten(args[2])})",
        "subprocess",
    ),
    "os.exec": (_first_arguments(2), "subprocess"),
    "sqlite3.connect": (_first_arguments(1), "database"),
    # The file system: a directory listed or walked (`os.walk`, `pathlib.Path.iterdir` and
    # `.glob` list through these), files copied, moved and removed. Well under a
    # millisecond on a test's small tree, seconds on a production one.
    **{
        event: (_first_arguments(1), "file")
        for event in ("os.scandir", "os.listdir", "shutil.rmtree", "os.remove", "os.rmdir")
    },
    **{
        event: (_first_arguments(2), "file")
        for event in ("shutil.copyfile", "shutil.copytree", "shutil.move", "os.rename")
    },
    "glob.glob": (_first_arguments(1), "file"),
    "glob.glob/2": (lambda event, args: f"glob.glob({_shorten(args[0])})", "file"),
}
"""The audit events of blocking calls: how each call is summed up, and its kind."""

_AUDITED_AS = {
    event: "builtins:open" if event == "open" else event.partition("/")[0].replace(".", ":", 1)
    for event in _AUDITED
}
"""Each audited call as an allow pattern names it: `module:function` (`time:sleep`)."""

_ON_PATHS = frozenset(
    event for event, (_, family) in _AUDITED.items() if family == "file" and event != "os.rename"
)
"""The file events whose first argument is a path: one under the interpreter's or a
library's own files is that library's data, not the app's."""

_NEW_SQLITE_CONNECTION = "sqlite3.connect/handle"
_IMPORT = "import"
_DEBUGGER_STARTS = frozenset(
    ("builtins.breakpoint", "sys.settrace", "sys.monitoring.register_callback")
)
"""How a debugger announces itself: `breakpoint()`, and the tracing pdb (`pdb.set_trace`)
and IDE debuggers set up on the thread they stop."""
_HEARD = frozenset((*_AUDITED, *_DEBUGGER_STARTS, _NEW_SQLITE_CONNECTION, _IMPORT))

imports_by_thread: dict[int, int] = {}
"""Thread id -> how many imports it began since the hook listens: a thread that imported
while it kept the loop off the GIL was loading code (reading and running a module keeps
the GIL for long stretches), one-time work that is not the app's. Cleared between tests."""

_imports_heard = 0
"""Imports begun in the process since the hook listens, by any thread."""


def modules_mark() -> tuple[int, int]:
    """Changes whenever a module is imported, or dropped from `sys.modules`: whoever looked
    at the imported modules compares marks instead of looking again (every watched test
    would otherwise look at every known client and API, three times).

    Both counts: `importlib.import_module` raises no audit event, and a module imported
    afresh after it was dropped (pytester's in-process sessions) leaves the size as it was.
    """
    return len(sys.modules), _imports_heard


_CATALOGUE_MODULES = tuple(dict.fromkeys(api.module for api in CATALOGUE if not api.stand_in_only))

_SOCKET_METHODS = ("send", "sendall", "recv", "recv_into", "recvfrom", "recvfrom_into", "accept")

_LIBRARY_DATA = (
    *{
        os.path.join(os.path.realpath(p), "")
        for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix)
    },
    # zoneinfo's C implementation opens the system's time-zone files with no Python frame
    # of its own on the stack.
    "/usr/share/zoneinfo/",
    "/usr/lib/zoneinfo/",
    "/usr/share/lib/zoneinfo/",
    "/etc/zoneinfo/",
    "/etc/localtime",
)
"""Files opened under Python's own installation (the standard library, site-packages) and
the system's time-zone data are what a library loads once (time zones, MIME types,
botocore's service models). Opening a file of the project's own, or anywhere else, is the
app's."""


class _AssignmentsHeard(types.ModuleType):
    """The class a module holding known blocking APIs takes while calls are caught: a
    test's own `requests.get = fake` (no monkeypatch) is heard, and the fake is that API
    when app code calls it. Reading attributes costs what it did: only setting them runs
    here."""

    __loopwatch__ = True
    heard: Callable[[types.ModuleType, str, Any], Any] | None = None
    """What an assignment puts in place instead of the value given; never raises."""

    def __setattr__(self, name: str, value: Any) -> None:
        heard = _AssignmentsHeard.heard
        if heard is not None and name != "__class__":
            value = heard(self, name, value)
        super().__setattr__(name, value)


class CallCatcher:
    """Reports, through each stretch's handler, the blocking calls app code makes on the loop."""

    def __init__(self) -> None:
        self.catching = False
        self._hooked = False
        self._allowed = allow_rules((*LAZY_INITIALISATION, *ALLOWED_CALLS_ONLY))
        self._suspended = 0
        self._extra_allowed: list[AllowRules] = []
        self.allowed_counts: Counter[str] = Counter()
        """Allow rule -> the blocking calls it let pass since `take_allowed_counts`."""
        self._untraced: dict[int, list[Any]] = {}
        """Thread id -> SQLite connections it opened, not yet traced: held until that
        thread's next audit event, when each either takes its trace callback or, closed
        meanwhile, is dropped (they cannot be weakly referenced); and dropped with their
        thread (`forget_the_threads_seen`). While any are held every audit event of the
        process looks here: none may stay."""
        self._restore: list[Callable[[], None]] = []
        self._stand_ins: dict[int, tuple[BlockingApi, Any]] = {}
        """id(mock) -> (the API a test replaced with it, the mock)."""
        self._in_place: dict[tuple[int, str], tuple[Any, str, Any]] = {}
        """(id(owner), name) -> (owner, name, what loopwatch put there), while in place."""
        self._apis_wrapped: list[tuple[BlockingApi, Any, str]] | None = None
        self._apis_found: list[tuple[BlockingApi, Any, str]] = []
        self._apis_found_with: tuple[int, ...] = ()
        """The catalogue's modules, by identity, when `_apis_found` was looked up."""
        self._wrapped_at: tuple[int, int] | None = None
        """`modules_mark()` when the wrappers were last put in place; None: not in place."""
        self._assigned_mocks: dict[int, int] = {}
        """id(a known API) -> id(the mock a test assigned in its place last)."""
        self._originals: dict[tuple[int, str], Any] = {}
        """(id(module), name) -> the known API there before anything was put in its place,
        for the modules whose assignments are heard."""

    # -- switching -----------------------------------------------------------------------

    def install_hook(self) -> None:
        """Listen to audit events from now on; a hook cannot be removed, so it is added once."""
        if not self._hooked:
            sys.addaudithook(self._audit_hook())
            self._hooked = True

    def catch(self, allowed: Iterable[str]) -> None:
        """Report blocking calls from now on, but for those made under `allowed` frames;
        wrap what was imported since the last call."""
        self.install_hook()
        self._allowed = allow_rules((*LAZY_INITIALISATION, *ALLOWED_CALLS_ONLY, *allowed))
        mark = modules_mark()
        if mark != self._wrapped_at:
            self._wrap_unannounced_calls()
            self._wrapped_at = mark
        self.catching = True

    def stop(self) -> None:
        """Report nothing, and restore every wrapped function."""
        self.catching = False
        while self._restore:
            self._restore.pop()()
        self._in_place.clear()
        self._apis_wrapped = None
        self._wrapped_at = None

    def forget_the_threads_seen(self, living: Callable[[], set[int]]) -> None:
        """Between tests: the imports counted per thread go (the beat compares them within
        a test), and so do the connections awaiting a trace callback of the threads that
        ended, by the ids `living` gives."""
        if imports_by_thread:
            imports_by_thread.clear()
        if self._untraced:
            alive = living()
            for thread in [thread for thread in self._untraced if thread not in alive]:
                del self._untraced[thread]

    def bookkeeping_size(self) -> int:
        """How many records the catcher keeps for threads and connections: the same after
        any number of them came and went."""
        return sum(map(len, self._untraced.values())) + len(imports_by_thread)

    @contextmanager
    def allowing(self, patterns: Sequence[str] = ()) -> Iterator[None]:
        """Inside the block, no call made under `patterns` is reported; with none, no call."""
        check_allowed(patterns)
        if not patterns:
            self._suspended += 1
        else:
            self._extra_allowed.append(allow_rules(patterns))
        try:
            yield
        finally:
            if not patterns:
                self._suspended -= 1
            else:
                self._extra_allowed.pop()

    # -- noticing ------------------------------------------------------------------------

    def _audit_hook(self) -> Callable[[str, tuple[Any, ...]], None]:
        heard = _HEARD
        catcher = self

        def on_audit_event(event: str, args: tuple[Any, ...]) -> None:
            # Runs for every audit event of the process (9,510 `builtins.id` in one OpenAPI
            # schema build): anything else returns here. An exception would abort the
            # call that raised the event: none may leave.
            if event in heard or catcher._untraced:
                try:
                    catcher._on_heard_event(event, args)
                except Exception as error:  # noqa: BLE001
                    note(f"catching blocking calls, on {event}: {error!r}")

        return on_audit_event

    def _on_heard_event(self, event: str, args: tuple[Any, ...]) -> None:
        global _imports_heard
        if event == _IMPORT:
            thread = get_ident()
            imports_by_thread[thread] = imports_by_thread.get(thread, 0) + 1
            _imports_heard += 1
            return
        if event in _DEBUGGER_STARTS:
            debugger_entered(get_ident())
            return
        if event == _NEW_SQLITE_CONNECTION:
            # Announced from inside Connection.__init__, before the connection can take a
            # trace callback: it gets one at the next event in this thread.
            self._untraced.setdefault(get_ident(), []).append(args[0])
            return
        if self._untraced:
            self._trace_new_connections()
        if not self.catching or event not in _AUDITED:
            return
        if event in ("socket.connect", "socket.sendto") and args[0].gettimeout() == 0.0:
            return  # a non-blocking socket, as an async library uses it
        if event in _ON_PATHS and (isinstance(args[0], int) or _is_library_data(args[0])):
            return  # a descriptor already open, or a library's own data
        describe, family = _AUDITED[event]
        self.notice(lambda: describe(event, args), family, _AUDITED_AS[event])

    def notice(self, describe: Callable[[], str], family: str, called: str) -> None:
        """Report the call of `called` (`module:function`) if app code made it on the loop;
        never raises into it."""
        thread = get_ident()
        stretch = running_stretches.get(thread)
        if stretch is None or not self.catching:
            return
        if stopped_in_a_debugger and stopped_in_a_debugger.get(thread) is stretch:
            return  # the debugger's own reading and writing
        try:
            if self._suspended:
                self.allowed_counts[ALLOW_ALL] += 1
                return
            frame = sys._getframe(1)
            rule = self._allowing(called) or self._allowing_frame(frame)
            if rule is not None:
                self.allowed_counts[rule] += 1
                return
            stack = sample_stack(frame)
            stretch[1](stretch[2], 0.0, Counter({stack: 1}), describe(), family, stretch[0])
        except Exception as error:  # noqa: BLE001 - runs inside the app's call
            note(f"catching a blocking call: {error!r}")

    def take_allowed_counts(self) -> Counter[str]:
        """The calls each rule let pass since the last call."""
        counts = self.allowed_counts
        if counts:  # nearly never: one empty counter serves every test that had none
            self.allowed_counts = Counter()
        return counts

    def _allowing(self, name: str) -> str | None:
        """The allow rule that `module:function` matches, if any."""
        for rules in (self._allowed, *self._extra_allowed):
            rule = rules.rule_for(name)
            if rule is not None:
                return rule
        return None

    def _allowing_frame(self, frame: FrameType | None) -> str | None:
        """The allow rule of a frame between the call and the app's coroutine, if any."""
        while frame is not None:
            code = frame.f_code
            if code is STRETCH_CODE or code is CALLBACK_CODE:
                return None
            module = frame.f_globals.get("__name__", "")
            if module.partition(".")[0] != _OWN_PACKAGE:
                rule = self._allowing(f"{module}:{code.co_qualname}")
                if rule is not None:
                    return rule
            frame = frame.f_back
        return None

    # -- what Python does not announce ---------------------------------------------------

    def _trace_new_connections(self) -> None:
        """Give each connection opened in this thread a trace callback that notices statements.

        The thread's next audit event comes after `Connection.__init__` returned (the event
        that announced the connection was its last): a connection that cannot take the
        callback then was closed meanwhile, and has no statement left to run.
        """
        connections = self._untraced.pop(get_ident(), None)
        for connection in connections or ():
            try:
                connection.set_trace_callback(self._statement_run)
            except Exception as error:  # noqa: BLE001 - runs inside the user's code
                if type(error).__name__ != "ProgrammingError":  # closed: nothing to trace
                    note(f"tracing a sqlite3 connection: {error!r}")

    def _statement_run(self, statement: str) -> None:
        if self.catching and get_ident() in running_stretches:
            self.notice(
                lambda: f"sqlite3.execute({_shorten(statement)})", "database", "sqlite3:execute"
            )

    def _wrap_unannounced_calls(self) -> None:
        """Wrap what is not wrapped yet: at once when nothing changed since the last test."""
        apis = self._imported_apis()
        if apis is self._apis_wrapped and all(
            vars(owner).get(name) is replacement
            for owner, name, replacement in self._in_place.values()
        ):
            return
        import socket  # here: importing loopwatch's plugin loads no socket, ssl or sqlite3

        for name in _SOCKET_METHODS:
            self._wrap(
                socket.socket, name, f"socket.{name}", "socket", _first(_in_blocking_mode), _peer
            )
        for name in ("read", "write"):
            self._wrap(os, name, f"os.{name}", "file", _first(_blocks), _first_argument)
        # A file's metadata, announced by no audit event: `os.path.exists` and friends and
        # `pathlib.Path.stat`/`.exists`/`.is_file` ask through these.
        for name in ("stat", "lstat"):
            self._wrap(
                os, name, f"os.{name}", "file", _first(_is_a_file_of_the_app), _first_argument
            )
        if sys.version_info < (3, 13):
            # Announced as the audit event time.sleep from 3.13 on.
            import time

            self._wrap(time, "sleep", "time.sleep", "sleep", None, _first_argument)
        for api, owner, name in apis:
            self._wrap(owner, name, api.name, api.family, _blocking_when(api), _arguments(api))
        mock = sys.modules.get("unittest.mock")
        if mock is not None and not self._is_ours(mock.CallableMixin, "_mock_call"):
            self._know_stand_ins(mock)
        # Looked up, never imported: the engine runs without pytest too.
        monkeypatch = getattr(sys.modules.get("pytest"), "MonkeyPatch", None)
        if monkeypatch is not None and not self._is_ours(monkeypatch, "setattr"):
            self._know_fakes(monkeypatch)
        self._hear_assignments()
        self._apis_wrapped = apis

    def _imported_apis(self) -> list[tuple[BlockingApi, Any, str]]:
        """The catalogue's entries to wrap whose modules are imported: looked up again only
        when one of those modules was imported (or imported afresh) since."""
        imported = tuple(id(sys.modules.get(name)) for name in _CATALOGUE_MODULES)
        if self._apis_found_with != imported:
            modules = dict(sys.modules)
            self._apis_found = [
                (api, found[0], found[1])
                for api in CATALOGUE
                if not api.stand_in_only and (found := resolve(api, modules)) is not None
            ]
            self._apis_found_with = imported
        return self._apis_found

    def _wrap(
        self,
        owner: Any,
        name: str,
        shown_as: str,
        family: str,
        blocks: Callable[[tuple[Any, ...]], bool] | None,
        describe: Callable[[str, tuple[Any, ...], dict[str, Any]], str],
    ) -> None:
        """Notice calls of `owner.name` (whose arguments say it `blocks`), until `stop`."""
        if self._is_ours(owner, name):
            return
        original = getattr(owner, name)
        catcher = self
        called = _called_as(owner, name)

        def watched(*args: Any, **kwargs: Any) -> Any:
            __tracebackhide__ = True  # pytest: a traceback through here points at the app
            if get_ident() in running_stretches and (blocks is None or blocks(args)):
                catcher.notice(lambda: describe(shown_as, args, kwargs), family, called)
            return original(*args, **kwargs)

        watched.__name__ = watched.__qualname__ = name
        watched.__wrapped__ = original  # type: ignore[attr-defined]
        watched.__loopwatch__ = True  # type: ignore[attr-defined]
        # A type defined in C takes no new attributes: its calls go unseen.
        with contextlib.suppress(TypeError, AttributeError):
            self._replace(owner, name, watched)

    # -- mocks standing in for blocking APIs ---------------------------------------------

    def _know_stand_ins(self, mock: Any) -> None:
        """Learn what each `unittest.mock.patch` replaces; a mock that replaced a known
        blocking API is that API when app code calls it (no library code runs then)."""
        patch_class, callable_mixin = mock._patch, mock.CallableMixin
        enter, exit_, mock_call = (
            patch_class.__enter__,
            patch_class.__exit__,
            callable_mixin._mock_call,
        )
        stand_ins = self._stand_ins
        catcher = self

        entered: dict[int, int] = {}
        """id(patch) -> id(the mock it put in place), while the patch is active."""

        def entering(patch: Any) -> Any:
            __tracebackhide__ = True  # pytest: a traceback through here points at the app
            new = enter(patch)
            try:
                api = _api_replaced_by(getattr(patch, "temp_original", None))
                if api is not None:
                    stand_ins[id(new)] = (api, new)
                    entered[id(patch)] = id(new)
            except Exception as error:  # noqa: BLE001 - inside the user's test
                note(f"following a mock.patch: {error!r}")
            return new

        def exiting(patch: Any, *exc_info: Any) -> Any:
            __tracebackhide__ = True  # pytest: a traceback through here points at the app
            stand_ins.pop(entered.pop(id(patch), -1), None)
            return exit_(patch, *exc_info)

        def called(self: Any, /, *args: Any, **kwargs: Any) -> Any:
            __tracebackhide__ = True  # pytest: a traceback through here points at the app
            if stand_ins and get_ident() in running_stretches:
                found = _stand_in_for(self, stand_ins)
                if found is not None:
                    api, path = found
                    catcher.notice(
                        lambda: f"{api.name}{path}(...), replaced by a mock",
                        api.family,
                        f"{api.module}:{api.attribute}",
                    )
            return mock_call(self, *args, **kwargs)

        self._replace(patch_class, "__enter__", entering)
        self._replace(patch_class, "__exit__", exiting)
        self._replace(callable_mixin, "_mock_call", called)

    # -- fakes a test puts in their place ----------------------------------------------

    def _hear_assignments(self) -> None:
        """Hear assignments to the modules that hold known APIs at their top level, by
        their own module's name or the public one (`requests.api.get`, `requests.get`)."""
        modules = dict(sys.modules)
        for api in CATALOGUE:
            if "." in api.attribute:
                continue  # a method: a class's attributes are not heard
            public, _, _ = api.name.rpartition(".")
            for name in dict.fromkeys((api.module, public)):
                module = modules.get(name)
                value = None if module is None else vars(module).get(api.attribute)
                if value is None or value is not getattr(modules[api.module], api.attribute, 0):
                    continue
                place = (id(module), api.attribute)
                placed = self._in_place.get(place)
                original = value if placed is None else getattr(placed[2], "__wrapped__", value)
                self._originals.setdefault(place, original)
                if type(module) is types.ModuleType:  # one with a class of its own keeps it
                    module.__class__ = _AssignmentsHeard
                    self._restore.append(functools.partial(_stop_hearing, module))
        _AssignmentsHeard.heard = self._assigned

    def _assigned(self, module: types.ModuleType, name: str, value: Any) -> Any:
        """What goes in place when a test sets `module.name` to `value`."""
        try:
            place = (id(module), name)
            original = self._originals.get(place)
            if original is None or not callable(value) or _is_loopwatchs(value):
                return value
            if value is original:  # put back: the wrapper, if loopwatch had one there
                placed = self._in_place.get(place)
                return value if placed is None else placed[2]
            api = _api_replaced_by(vars(module).get(name)) or _api_replaced_by(original)
            return value if api is None else self._standing_in_for(api, original, value)
        except Exception as error:  # noqa: BLE001 - inside the user's test
            note(f"following an assignment to {getattr(module, '__name__', '?')}.{name}: {error!r}")
            return value

    def _standing_in_for(self, api: BlockingApi, original: Any, fake: Any) -> Any:
        """`fake`, noticed as `api` when app code calls it on the loop; a fake class is a
        subclass whose construction, and its methods named as the real class's known ones,
        are noticed."""
        if isinstance(fake, type):
            return self._fake_class(api, fake) if isinstance(original, type) else fake
        if isinstance(fake, types.FunctionType):
            return self._standing_in(api, fake)
        mock = sys.modules.get("unittest.mock")
        if mock is not None and isinstance(fake, mock.NonCallableMock):
            # Left in place, the mock the test set up and asserts on: known as a stand-in,
            # as one `mock.patch` put there is (one entry per place, never more).
            self._stand_ins.pop(self._assigned_mocks.pop(id(api), 0), None)
            self._stand_ins[id(fake)] = (api, fake)
            self._assigned_mocks[id(api)] = id(fake)
            return fake
        return _StandingInCall(self, api, fake)  # called unbound, as it was

    def _fake_class(self, api: BlockingApi, fake: type) -> type:
        catcher = self
        called = f"{api.module}:{api.attribute}"
        shown = f"{api.name}(...), replaced by {fake.__qualname__}"

        def __init__(instance: Any, *args: Any, **kwargs: Any) -> None:
            __tracebackhide__ = True  # pytest: a traceback through here points at the app
            if get_ident() in running_stretches:
                catcher.notice(lambda: shown, api.family, called)
            fake.__init__(instance, *args, **kwargs)  # type: ignore[misc]

        namespace: dict[str, Any] = {
            "__init__": __init__,
            "__module__": fake.__module__,
            "__qualname__": fake.__qualname__,
            "__doc__": fake.__doc__,
            "__loopwatch__": True,
        }
        methods = f"{api.attribute}."
        for method_api in CATALOGUE:
            if method_api.module != api.module or not method_api.attribute.startswith(methods):
                continue
            method_name = method_api.attribute[len(methods) :]
            method = inspect.getattr_static(fake, method_name, None)
            if isinstance(method, types.FunctionType):
                namespace[method_name] = self._standing_in(method_api, method)
        try:
            standing_in = type(fake)(fake.__name__, (fake,), namespace)
        except Exception as error:  # noqa: BLE001 - a class that takes no subclass stays
            note(f"standing in for {fake.__qualname__}: {error!r}")
            return fake
        return standing_in

    def _know_fakes(self, monkeypatch_class: Any) -> None:
        """A function a test puts in place of a known blocking API with `monkeypatch.setattr`
        is that API when app code calls it: a fake `requests.get` in the test is a real one
        in production."""
        set_attribute = monkeypatch_class.setattr
        catcher = self

        def setting(patcher: Any, *args: Any, **kwargs: Any) -> None:
            __tracebackhide__ = True  # pytest: a traceback through here points at the app
            try:
                place = _place_set(args, kwargs)
                api_value = None if place is None else getattr(*place, None)
                api = _api_replaced_by(api_value)
            except Exception as error:  # noqa: BLE001 - inside the user's test
                note(f"following a monkeypatch.setattr: {error!r}")
                api = None
            set_attribute(patcher, *args, **kwargs)
            if api is None or place is None:  # nearly every call
                return
            owner, name = place
            fake = getattr(owner, name, None)
            if type(owner) is _AssignmentsHeard or fake is None or _is_loopwatchs(fake):
                return  # heard as an assignment already
            original = getattr(api_value, "__wrapped__", api_value)
            if callable(fake) and not isinstance(fake, staticmethod | classmethod):
                # Undone with the patch.
                setattr(owner, name, catcher._standing_in_for(api, original, fake))

        self._replace(monkeypatch_class, "setattr", setting)

    def _standing_in(self, api: BlockingApi, fake: Callable[..., Any]) -> Callable[..., Any]:
        catcher = self
        called = f"{api.module}:{api.attribute}"
        shown = f"{api.name}(...), replaced by {getattr(fake, '__qualname__', type(fake).__name__)}"

        @functools.wraps(fake)
        def standing_in(*args: Any, **kwargs: Any) -> Any:
            __tracebackhide__ = True  # pytest: a traceback through here points at the app
            if get_ident() in running_stretches:
                catcher.notice(lambda: shown, api.family, called)
            return fake(*args, **kwargs)

        standing_in.__loopwatch__ = True  # type: ignore[attr-defined]
        return standing_in

    def _is_ours(self, owner: Any, name: str) -> bool:
        """Whether `owner.name` is still what loopwatch put there."""
        placed = self._in_place.get((id(owner), name))
        return placed is not None and vars(owner).get(name) is placed[2]

    def _replace(self, owner: Any, name: str, replacement: Any) -> None:
        """Set `owner.name` to `replacement` until `stop`, which restores it if it is
        still ours: a patch laid over it since restores it itself."""
        own = name in vars(owner)
        original = vars(owner)[name] if own else None
        _set_unheard(owner, name, replacement)
        self._in_place[(id(owner), name)] = (owner, name, replacement)

        def restore() -> None:
            if vars(owner).get(name) is not replacement:
                return
            if own:
                _set_unheard(owner, name, original)
            else:
                delattr(owner, name)  # an inherited attribute was shadowed, not replaced

        self._restore.append(restore)


class _StandingInCall:
    """A callable object that is no descriptor: on a class it is called as the mock it
    stands for was, without the instance."""

    __slots__ = ("_api", "_catcher", "_fake", "_shown")
    __loopwatch__ = True

    def __init__(self, catcher: CallCatcher, api: BlockingApi, fake: Any) -> None:
        self._catcher, self._api, self._fake = catcher, api, fake
        self._shown = f"{api.name}(...), replaced by a {type(fake).__name__}"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        __tracebackhide__ = True  # pytest: a traceback through here points at the app
        if get_ident() in running_stretches:
            api = self._api
            self._catcher.notice(lambda: self._shown, api.family, f"{api.module}:{api.attribute}")
        return self._fake(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fake, name)  # the fake's own attributes, as the test set them


def _is_loopwatchs(value: Any) -> bool:
    """Whether loopwatch put `value` in place, as a wrapper or a stand-in (of this
    session's catcher or of one a pytester session inside it made): never wrapped again."""
    return getattr(value, "__loopwatch__", False) is True


def _set_unheard(owner: Any, name: str, value: Any) -> None:
    """Set `owner.name` past the assignments heard: loopwatch's own placing and restoring."""
    if getattr(type(owner), "__loopwatch__", False) is True:  # a module whose assignments are heard
        object.__setattr__(owner, name, value)
    else:
        setattr(owner, name, value)


def _stop_hearing(module: types.ModuleType) -> None:
    if type(module) is _AssignmentsHeard:
        object.__setattr__(module, "__class__", types.ModuleType)


def _called_as(owner: Any, name: str) -> str:
    """`module:function` of a wrapped attribute, as an allow pattern names it
    (`time:sleep`, `socket:socket.send`, `requests.sessions:Session.request`)."""
    if isinstance(owner, type):
        return f"{owner.__module__}:{owner.__qualname__}.{name}"
    return f"{getattr(owner, '__name__', '?')}:{name}"


def _place_set(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, str] | None:
    """(owner, attribute) that `monkeypatch.setattr(*args, **kwargs)` sets: its two forms
    are `(owner, "name", value)` and `("module.owner.name", value)`."""
    if len(args) >= 3 or (len(args) == 2 and "value" in kwargs):
        return (args[0], args[1]) if isinstance(args[1], str) else None
    if args and isinstance(args[0], str) and "." in args[0]:
        path, _, name = args[0].rpartition(".")
        import pkgutil  # here: a session that patches by dotted path is rare, pkgutil slow to load

        try:
            return pkgutil.resolve_name(path), name
        except (ImportError, AttributeError, ValueError):
            return None  # monkeypatch itself says what is wrong with the path
    return None


def _api_replaced_by(original: Any) -> BlockingApi | None:
    """The known blocking API that `original` is (or that our wrapper of it stands for)."""
    if original is None:
        return None
    modules = dict(sys.modules)
    for api in CATALOGUE:
        found = resolve(api, modules)
        if found is not None and found[2] is original:
            return api
    return None


def _stand_in_for(
    mock: Any, stand_ins: dict[int, tuple[BlockingApi, Any]]
) -> tuple[BlockingApi, str] | None:
    """The API that `mock`, or the mock it hangs from (`Client().get`), stands in for."""
    node, depth = mock, 0
    while node is not None and depth < 32:
        entry = stand_ins.get(id(node))
        if entry is not None and entry[1] is node:
            name = mock._extract_mock_name() if node is not mock else ""
            root = node._extract_mock_name()
            return entry[0], name[len(root) :] if name.startswith(root) else ""
        node, depth = node.__dict__.get("_mock_new_parent"), depth + 1
    return None


def _first(blocks: Callable[[Any], bool]) -> Callable[[tuple[Any, ...]], bool]:
    """A call blocks when its first argument says so."""
    return lambda args: bool(args) and blocks(args[0])


def _blocking_when(api: BlockingApi) -> Callable[[tuple[Any, ...]], bool] | None:
    """When a call of `api` blocks, from its arguments; None: always."""
    if api.path_argument is not None:
        at = api.path_argument + (1 if api.is_method else 0)
        return lambda args: len(args) > at and _is_a_file_of_the_app(args[at])
    return None if api.blocks is None else _first(api.blocks)


def _is_a_file_of_the_app(value: object) -> bool:
    """A path (not a file object or buffer) outside the libraries' own files."""
    return isinstance(value, (str, bytes, os.PathLike)) and not _is_library_data(value)


def _is_library_data(path: object) -> bool:
    try:
        shown = os.fsdecode(path)  # type: ignore[arg-type]
    except TypeError:
        return False
    return os.path.isabs(shown) and shown.startswith(_LIBRARY_DATA)


def _arguments(api: BlockingApi) -> Callable[[str, tuple[Any, ...], dict[str, Any]], str]:
    skip = 1 if api.is_method else 0

    def describe(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        # By keyword too: `requests.get(url)` calls `session.request(method=..., url=...)`.
        shown = [*args[skip : skip + api.shown_arguments], *kwargs.values()]
        return f"{name}({', '.join(_shorten(arg) for arg in shown[: api.shown_arguments])})"

    return describe


def _first_argument(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    return f"{name}({_shorten(args[0])})" if args else f"{name}()"


def _in_blocking_mode(sock: Any) -> bool:
    return bool(sock.gettimeout() != 0.0)


def _blocks(fd: int) -> bool:
    try:
        return os.get_blocking(fd)
    except (OSError, TypeError):
        return False  # the call itself will say what is wrong with the descriptor


def _peer(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    try:
        peer = args[0].getpeername()
    except OSError:
        peer = None  # not connected, or a listening socket
    return f"{name}({_shorten(peer) if peer else ''})"


call_catcher = CallCatcher()
"""The process's one catcher of blocking calls."""
