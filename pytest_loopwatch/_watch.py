"""A watch collects the stalls and blocking calls of one span of time, usually one test,
and turns what the engine recorded into the `Stall` records a developer reads."""

from __future__ import annotations

import inspect
import threading
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import replace

from ._asgi import ASGIApp, wrap
from ._blocking_apis import FIXES
from ._calls import LAZY_INITIALISATION, allow_rules, call_catcher
from ._framework_work import app_line_for, body_models, framework_work
from ._records import GIL_HELD_ELSEWHERE, Endpoint, Frame, RawStall, SampledStack, Stall
from ._routes import match_again
from ._stacks import blocking_line, blocking_stack, to_frame
from ._stretches import running_stretches, wait_for_other_threads

OFF_THE_LOOP = (
    "move the work off the loop: `await anyio.to_thread.run_sync(...)` "
    "(FastAPI: `run_in_threadpool`), or make the endpoint a `def`"
)
GIL_HELD_BY_A_THREAD = (
    "the work runs in a thread, but its C call keeps the GIL, which the loop needs: run it "
    "in a process (`ProcessPoolExecutor`), in smaller pieces, or with a library that lets go "
    "of the GIL"
)
SERIALISING = (
    "the framework serialises what the endpoint returns on the loop, after it returned: "
    "return less (paginate), or a `Response` whose body you built off the loop"
)
PARSING = (
    "the framework parses and validates the request body{models} on the loop, before the "
    "endpoint runs: accept smaller bodies, or read `await request.body()` and parse it off "
    "the loop"
)
LIFESPAN_WORK = (
    "the lifespan runs on the loop: requests wait for its set-up, and for the tasks it "
    "starts; do slow work there in a thread (`await anyio.to_thread.run_sync(...)`) or "
    "with an async API"
)
FRAMEWORK_WORK_FOR_A_DEF = (
    "the endpoint is a `def`, yet FastAPI parses and validates the body and serialises "
    "the response on the loop: send or return less, or build the `Response` in the endpoint"
)


class Watch:
    """The stalls seen while this watch was active, and the threshold that defines one.

    This is the object the `loopwatch` fixture returns.
    """

    def __init__(
        self,
        threshold: float,
        *,
        strict: bool = True,
        allowed: Sequence[str] = (),
        test: str = "",
    ) -> None:
        self.threshold = threshold
        self.test = test
        """The node id of the test this watch watches (the plugin's); empty elsewhere."""
        self.strict = strict
        """Whether known blocking calls count however fast (the default), or only the
        threshold does."""
        self.allowed = tuple(allowed)
        """`module:function` patterns under which calls and stalls are let pass."""
        self.app_calls = 0
        """How many calls of watched apps began while this watch was active."""
        # A dict, not a Counter: made for every watched test, and nearly always left empty.
        self.allowed_counts: dict[str, int] = {}
        """Allow rule -> the stalls it let pass."""
        self._recorded: list[RawStall] = []
        self._calls_seen: set[tuple[str, int] | None] = set()
        self._first_calls: dict[float, RawStall] = {}
        """Stretch start -> the first blocking call of that stretch, until the stretch's stall
        (if any) takes it; the oldest go past a few dozen, as the stretches have ended."""
        self._stalls: list[Stall] = []
        self._reported = 0
        self._lock = threading.Lock()

    @property
    def stalls(self) -> tuple[Stall, ...]:
        """Every stall and blocking call recorded so far, oldest first."""
        self._resolve()
        with self._lock:
            return tuple(self._stalls)

    def wrap(self, app: ASGIApp) -> ASGIApp:
        """Watch `app` wherever it is served (uvicorn in a thread, a custom transport)."""
        return wrap(app)

    def allow(self, *patterns: str) -> AbstractContextManager[None]:
        """Inside the block, blocking calls made under `patterns` (`module:function`) are
        let pass; with no pattern, every blocking call."""
        return call_catcher.allowing(patterns)

    def record(self, stall: RawStall) -> None:
        """On the loop thread, inside the app's call: keep it, resolve nothing."""
        with self._lock:
            started = stall.stretch_started
            if stall.call is not None and started is not None:
                if started not in self._first_calls:
                    self._first_calls[started] = stall
                    if len(self._first_calls) > _STRETCHES_REMEMBERED:
                        del self._first_calls[next(iter(self._first_calls))]
            elif stall.call is None and started is not None and self._first_calls:
                call = self._first_calls.pop(started, None)
                if call is not None:
                    stall = replace(stall, call_in_stretch=call)
            if stall.call is not None and stall.request.type != "lifespan":
                # A loop of a thousand sleeps is one finding, not a thousand; and a line
                # that blocks is named once per test, by its first call (subprocess.run:
                # Popen, not the read of its error pipe that follows). A lifespan's calls
                # only name its stalls, below: they never stand for a line of a request.
                line = blocking_line(next(iter(stall.samples))) if stall.samples else None
                if line in self._calls_seen:
                    return
                self._calls_seen.add(line)
            self._recorded.append(stall)

    def has_unreported(self) -> bool:
        """Whether `take_unreported` may have anything to give, at once."""
        return bool(self._recorded or running_stretches) or self._reported != len(self._stalls)

    def take_unreported(self) -> tuple[Stall, ...]:
        """The stalls recorded since the last call; the plugin reports each once.

        App code still running on another thread (a live server answering the request the
        test just got its response to) may be about to record a stall of this test: it
        gets a moment to end first.
        """
        if running_stretches:
            wait_for_other_threads(timeout=max(1.0, 10 * self.threshold))
        if not self._recorded and self._reported == len(self._stalls):
            return ()  # nearly every phase of every test
        self._resolve()
        with self._lock:
            fresh = tuple(self._stalls[self._reported :])
            self._reported = len(self._stalls)
            return fresh

    def _resolve(self) -> None:
        """Turn what was recorded into stalls: off the loop, since it reads source files."""
        with self._lock:
            recorded, self._recorded = self._recorded, []
        resolved = _merge_calls_into_stalls(
            [stall for raw in recorded if (stall := self._resolved(raw)) is not None]
        )
        with self._lock:
            self._stalls.extend(resolved)

    def _allowing(self, stack: SampledStack) -> str | None:
        """The allow rule that a frame of a stall's sampled stack matches, if any."""
        # Asked only of a stall, off the loop: a watch that sees none never translates them.
        rules = allow_rules((*LAZY_INITIALISATION, *self.allowed))
        for frame in stack:
            rule = rules.rule_for(f"{frame[3]}:{frame[2]}")
            if rule is not None:
                return rule
        return None

    def _resolved(self, raw: RawStall) -> Stall | None:
        """The stall a developer reads; None for a stall in allowed frames."""
        found = blocking_stack(raw.samples) if raw.samples else None
        call = raw.call_in_stretch
        if call is not None and call.samples and (found is None or not _reaches_app(found)):
            # The stretch called a known blocking API, and the watchdog saw no app code (it
            # looked late, the call over): the call is what held the loop, at its line.
            raw = replace(raw, samples=call.samples, call=call.call, family=call.family)
            found = blocking_stack(call.samples)
        stack: tuple[Frame, ...] = ()
        location = reached_from = None
        if found is not None:
            sampled, index, reached_index = found
            rule = None if raw.call is not None else self._allowing(sampled)
            if rule is not None:
                self.allowed_counts[rule] = self.allowed_counts.get(rule, 0) + 1
                return None
            stack = tuple(to_frame(frame) for frame in sampled)
            location = stack[index]
            reached_from = None if reached_index is None else stack[reached_index]
        route, endpoint_object = raw.route, raw.endpoint
        if route is None and endpoint_object is None:
            route, endpoint_object = match_again(raw.app, raw.request)
        endpoint = _endpoint(endpoint_object)
        work = None
        if (
            found is not None
            and reached_from is None
            and location is not None
            and not location.is_user_code
            and endpoint_object is not None
        ):
            # No app frame: the endpoint has returned, or not begun. Its line, from source.
            work = framework_work(found[0])
            if work is not None:
                reached_from = app_line_for(work, endpoint_object)
        return Stall(
            duration=raw.duration,
            threshold=raw.threshold,
            request=raw.request,
            route=route,
            endpoint=endpoint,
            location=location,
            stack=stack,
            samples=sum(raw.samples.values()) if raw.samples else 0,
            call=raw.call,
            fix=_fix(raw, endpoint, location, reached_from, work, endpoint_object),
            reached_from=reached_from,
        )


_STRETCHES_REMEMBERED = 32


def _reaches_app(found: tuple[SampledStack, int, int | None]) -> bool:
    """Whether a sampled stack's blocking frame is the app's, or is reached from it."""
    sampled, index, reached_index = found
    return reached_index is not None or to_frame(sampled[index]).is_user_code


def _fix(
    raw: RawStall,
    endpoint: Endpoint | None,
    location: Frame | None,
    reached_from: Frame | None,
    work: str | None = None,
    endpoint_object: object = None,
) -> str | None:
    if raw.family == GIL_HELD_ELSEWHERE:
        return GIL_HELD_BY_A_THREAD
    if raw.request.type == "lifespan":
        return LIFESPAN_WORK
    if raw.family is not None:
        return FIXES.get(raw.family)
    if work == "serialising":
        return SERIALISING
    if work == "parsing":
        models = ", ".join(body_models(endpoint_object))
        return PARSING.format(models=f" (into {models})" if models else "")
    if reached_from is not None or (location is not None and location.is_user_code):
        return OFF_THE_LOOP  # app code on the loop: a `def` endpoint's too, sent back to it
    if endpoint is not None and endpoint.is_async is False:
        return FRAMEWORK_WORK_FOR_A_DEF
    return None


def _merge_calls_into_stalls(stalls: list[Stall]) -> list[Stall]:
    """A blocking call that, at the same line of the same request, made a stall is one
    finding: the stall, naming the call (with the call's fix, but in a lifespan, whose
    advice is its own). A lifespan's calls are findings only so: opening files and
    connecting at startup is what a lifespan is for."""
    calls = {_place(stall): stall for stall in stalls if stall.kind == "call"}
    naming: dict[int, Stall] = {}
    for stall in stalls:
        call = calls.get(_place(stall)) if stall.kind == "stall" else None
        if call is not None:
            naming[id(stall)] = call
    absorbed = {id(call) for call in naming.values()}
    return [
        replace(
            stall,
            call=stall.call or naming[id(stall)].call,
            fix=stall.fix if stall.request.type == "lifespan" else naming[id(stall)].fix,
        )
        if id(stall) in naming
        else stall
        for stall in stalls
        if id(stall) not in absorbed
        and not (stall.kind == "call" and stall.request.type == "lifespan")
    ]


def _place(stall: Stall) -> tuple[object, ...]:
    return (stall.request, stall.route, _line(stall.location))


def _line(frame: Frame | None) -> tuple[str, int] | None:
    return None if frame is None else (frame.file, frame.line)


def _endpoint(endpoint: object) -> Endpoint | None:
    if endpoint is None:
        return None
    target = inspect.unwrap(endpoint) if callable(endpoint) else endpoint
    module = getattr(target, "__module__", None)
    qualname = getattr(target, "__qualname__", None) or type(target).__qualname__
    name = f"{module}.{qualname}" if module else qualname
    is_async = inspect.iscoroutinefunction(target) if inspect.isfunction(target) else None
    code = getattr(target, "__code__", None)
    if code is not None:
        return Endpoint(name, code.co_filename, code.co_firstlineno, is_async)
    try:
        file = inspect.getsourcefile(target)  # type: ignore[arg-type]
        line = inspect.getsourcelines(target)[1]  # type: ignore[arg-type]
    except (TypeError, OSError):
        return Endpoint(name, None, None, is_async)
    return Endpoint(name, file, line, is_async)
