"""Work a watched request spawns on the loop belongs to that request, and is timed too.

A task created while a watched stretch runs on a thread was created by that request's
code: a BaseHTTPMiddleware's call_next, an anyio task group, a handler's create_task.
On asyncio (uvloop included) a task factory times such a task's coroutine; on trio, an
instrument times the steps of such a task.

So is a plain callback the request's code schedules (`loop.call_soon`, `call_later`,
`call_at`), and what a thread of the request sends back to the loop
(`call_soon_threadsafe`: `anyio.from_thread.run`, `asyncio.run_coroutine_threadsafe`):
the thread knows its request from the context it copied (`current_work`). The loop's own
scheduling methods are shadowed on the loop object: `call_later`, `call_at` and
`call_soon_threadsafe` while it is followed (a fast request calls none of them), and on
asyncio's own loops `call_soon` only while a stretch of a request runs, as the factory:
every task step outside the request calls it, and a shadow in place all the time cost a
TestClient request 3.5% and one spawning 100 tasks 20% (`benchmarks/overhead.py`).

On asyncio's own loops the factory is in place only while a watched stretch runs: the
tasks the loop creates meanwhile for others (a TestClient's portal creates eight per
request) then cost nothing; measured, a factory in place all the time costs a TestClient
1% of each request. On other loops (uvloop) and on loops with a factory of their own, a
factory that hands on to the loop's own is installed on the first watched call and
removed when watching ends; so is a trio instrument.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable, Coroutine
from threading import get_ident
from types import CoroutineType
from typing import Any

from ._stretches import (
    SpawnHook,
    Stretch,
    Work,
    finish_stretch,
    running_stretches,
    start_stretch,
    timed,
    timed_callback,
    work_of_this_context,
)
from ._trio_run import current_trio_run

TaskFactory = Callable[..., "asyncio.Future[Any]"]


async def _timed_task(
    coroutine: Coroutine[Any, Any, Any], parent: Stretch, spawn_hook: SpawnHook | None
) -> Any:
    __tracebackhide__ = True  # pytest: a traceback through here points at the app
    # asyncio.Task takes only native coroutines, hence this thin one around `timed`.
    return await timed(coroutine, parent[1], parent[2], spawn_hook)


_TIMED_TASK_CODE = _timed_task.__code__


def spawned_task() -> str | None:
    """What the running asyncio task runs (`consume()`), if a request spawned it; asked
    only when a stall is recorded (naming every task as it is created cost a request
    spawning 100 tasks 5%). Only memory is read."""
    try:
        task = asyncio.current_task()
    except RuntimeError:  # no asyncio loop runs here (trio)
        return None
    coroutine = None if task is None else task.get_coro()
    if getattr(coroutine, "cr_code", None) is not _TIMED_TASK_CODE:
        return None
    spawned = coroutine.cr_frame.f_locals.get("coroutine")  # type: ignore[union-attr]
    return f"{getattr(spawned, '__qualname__', '?')}()"


def _timed_if_spawned(coroutine: Any, spawn_hook: SpawnHook | None) -> Any:
    """`coroutine`, timed as part of the stretch running on this thread, if one is."""
    parent = running_stretches.get(get_ident())
    if parent is not None and type(coroutine) is CoroutineType:
        return _timed_task(coroutine, parent, spawn_hook)
    return coroutine


class _TaskFactoryDuringStretches:
    """The factory of one asyncio loop while a watched stretch runs on it."""

    def __init__(self, loop_attributes: dict[str, Any], call_soon: Any) -> None:
        # One bound method, made once: the stretch that installs it recognises it by identity.
        self.spawn_hook: SpawnHook = (loop_attributes, self.create_task, call_soon)

    def create_task(
        self, loop: asyncio.AbstractEventLoop, coroutine: Any, **options: Any
    ) -> asyncio.Future[Any]:
        coroutine = _timed_if_spawned(coroutine, self.spawn_hook)
        return asyncio.Task(coroutine, loop=loop, **options)


class _FollowingTaskFactory:
    """Times the tasks created during watched stretches, then hands on to the loop's factory."""

    def __init__(self, previous: TaskFactory | None) -> None:
        self.previous = previous

    def __call__(
        self, loop: asyncio.AbstractEventLoop, coroutine: Any, **options: Any
    ) -> asyncio.Future[Any]:
        coroutine = _timed_if_spawned(coroutine, None)
        if self.previous is not None:
            return self.previous(loop, coroutine, **options)
        return asyncio.Task(coroutine, loop=loop, **options)


_SCHEDULERS = ("call_soon", "call_later", "call_at", "call_soon_threadsafe")


_SLEEP_ENDING = getattr(asyncio.futures, "_set_result_unless_cancelled", None)
"""What `asyncio.sleep` schedules: the sleeping task is timed already, if it is the request's."""


_TASK_STEPS: set[type] = set()
"""The type of a task's scheduled step, learnt on the first one seen: each task a request
creates schedules one, and a type check is the cheapest way past it."""


def _untimed(callback: object) -> bool:
    """A callback timed already, or the loop's own: a task's step or wake-up, the end of a
    sleep (their task is timed, if it is the request's)."""
    if type(callback) in _TASK_STEPS or callback is timed_callback or callback is _SLEEP_ENDING:
        return True
    if not isinstance(getattr(callback, "__self__", None), asyncio.Future):
        return False
    if type(callback).__name__ == "TaskStepMethWrapper":
        _TASK_STEPS.add(type(callback))
    return True


class _FollowingCallbacks:
    """Shadows a loop's scheduling methods: each callback scheduled during a stretch of a
    request, or sent by a thread of one, runs through `timed_callback`."""

    def __init__(self, loop: asyncio.AbstractEventLoop, *, always: bool) -> None:
        self.spawn_hook: SpawnHook | None = None
        """How a callback's stretch follows the tasks it creates, on asyncio's own loops."""
        self._call_soon = loop.call_soon
        self._call_later = loop.call_later
        self._call_at = loop.call_at
        self._call_soon_threadsafe = loop.call_soon_threadsafe
        self.shadows = {
            name: getattr(self, name) for name in _SCHEDULERS if always or name != "call_soon"
        }
        """What is put on the loop while it is followed."""

    def call_soon(self, callback: Any, *args: Any, context: Any = None) -> asyncio.Handle:
        if type(callback) in _TASK_STEPS:  # the first step of a task the request creates
            return self._call_soon(callback, *args, context=context)
        work = _scheduling_work(from_a_thread=False)
        if work is None or _untimed(callback):
            return self._call_soon(callback, *args, context=context)
        return self._call_soon(
            timed_callback, work, self.spawn_hook, callback, *args, context=context
        )

    def call_later(
        self, delay: float, callback: Any, *args: Any, context: Any = None
    ) -> asyncio.TimerHandle:
        work = _scheduling_work(from_a_thread=False)
        if work is None or _untimed(callback):
            return self._call_later(delay, callback, *args, context=context)
        return self._call_later(
            delay, timed_callback, work, self.spawn_hook, callback, *args, context=context
        )

    def call_at(
        self, when: float, callback: Any, *args: Any, context: Any = None
    ) -> asyncio.TimerHandle:
        work = _scheduling_work(from_a_thread=False)
        if work is None or _untimed(callback):
            return self._call_at(when, callback, *args, context=context)
        return self._call_at(
            when, timed_callback, work, self.spawn_hook, callback, *args, context=context
        )

    def call_soon_threadsafe(
        self, callback: Any, *args: Any, context: Any = None
    ) -> asyncio.Handle:
        work = _scheduling_work(from_a_thread=True)
        if work is None or _untimed(callback):
            return self._call_soon_threadsafe(callback, *args, context=context)
        return self._call_soon_threadsafe(
            timed_callback, work, self.spawn_hook, callback, *args, context=context
        )


def _scheduling_work(*, from_a_thread: bool) -> Work | None:
    """The request whose code schedules a callback now: the stretch running on this thread,
    or, for what a thread sends to the loop, the request the thread's context belongs to."""
    stretch = running_stretches.get(get_ident())
    if stretch is not None:
        return stretch[1], stretch[2]
    return work_of_this_context() if from_a_thread else None


class _FollowingInstrument:
    """trio: times each step of the tasks spawned during watched stretches."""

    def __init__(self) -> None:
        self._parents: dict[object, Stretch] = {}
        self._running: dict[object, Stretch] = {}

    def task_spawned(self, task: object) -> None:
        parent = running_stretches.get(get_ident())
        if parent is not None:
            self._parents[task] = parent

    def before_task_step(self, task: object) -> None:
        parent = self._parents.get(task)
        if parent is not None:
            self._running[task] = start_stretch(get_ident(), parent[1], parent[2])

    def after_task_step(self, task: object) -> None:
        stretch = self._running.pop(task, None)
        if stretch is not None:
            finish_stretch(get_ident(), stretch)

    def task_exited(self, task: object) -> None:
        self._parents.pop(task, None)


class SpawnFollower:
    """Follows the tasks spawned on each loop a watched call runs on; stops following them all."""

    def __init__(self) -> None:
        # Weak: TestClient makes a loop per request, which must not live on until the end.
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _FollowingTaskFactory] = (
            weakref.WeakKeyDictionary()
        )
        self._trio_runs: dict[object, _FollowingInstrument] = {}
        self._trio_token: tuple[type, Any, Any] | None = None
        """trio's token class, its `run_sync_soon` and the shadow put in its place."""
        self._followed_since_stop = False
        """Whether `follow` ran since `stop_following`: nearly every test that calls no
        app has nothing to put back, and is told so by one attribute."""
        self._callbacks: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, _FollowingCallbacks
        ] = weakref.WeakKeyDictionary()
        self.followed_loop: asyncio.AbstractEventLoop | None = None
        """The asyncio loop followed last: the same one serves request after request,
        which need not call `follow` then."""
        self.followed_loop_attributes: dict[str, Any] | None = None
        """Its attributes, if it is one of asyncio's own: while its `_thread_id` says it
        runs on a request's thread, it is the loop running there."""
        self.spawn_hook: SpawnHook | None = None
        """How the stretches of a request on that loop follow its tasks: None when a
        factory in place all the time does."""

    def follow(self, loop: asyncio.AbstractEventLoop | None) -> None:
        """Follow the tasks spawned on `loop`, the running asyncio loop; None: on the
        trio run the caller is in, if any."""
        self._followed_since_stop = True
        self.followed_loop = loop
        self.followed_loop_attributes = None
        self.spawn_hook = None
        if loop is not None:
            attributes = vars(loop) if isinstance(loop, asyncio.BaseEventLoop) else {}
            if "_thread_id" in attributes:
                self.followed_loop_attributes = attributes
            during_stretches = attributes.get("_task_factory", False) is None
            if not during_stretches and loop not in self._loops:
                factory = _FollowingTaskFactory(loop.get_task_factory())
                loop.set_task_factory(factory)
                self._loops[loop] = factory
            shadowing = self._follow_callbacks(loop, always=not during_stretches)
            if during_stretches:
                call_soon = None if shadowing is None else shadowing.call_soon
                self.spawn_hook = _TaskFactoryDuringStretches(attributes, call_soon).spawn_hook
                if shadowing is not None:
                    shadowing.spawn_hook = self.spawn_hook
            return
        found = current_trio_run()
        if found is None:  # not inside trio.run either
            return
        trio, run = found
        if run not in self._trio_runs:
            instrument = _FollowingInstrument()
            trio.lowlevel.add_instrument(instrument)
            self._trio_runs[run] = instrument
        self._follow_trio_callbacks(type(trio.lowlevel.current_trio_token()))

    def _follow_trio_callbacks(self, token_class: type) -> None:
        """trio's `call_soon`: `TrioToken.run_sync_soon`, shadowed on its class."""
        if self._trio_token is not None:
            return
        original = token_class.__dict__["run_sync_soon"]

        def run_sync_soon(token: Any, sync_fn: Any, *args: Any, idempotent: bool = False) -> None:
            work = _scheduling_work(from_a_thread=True)
            if work is None or sync_fn is timed_callback:
                original(token, sync_fn, *args, idempotent=idempotent)
            else:
                original(token, timed_callback, work, None, sync_fn, *args, idempotent=idempotent)

        token_class.run_sync_soon = run_sync_soon  # type: ignore[attr-defined]
        self._trio_token = (token_class, original, run_sync_soon)

    def _follow_callbacks(
        self, loop: asyncio.AbstractEventLoop, *, always: bool
    ) -> _FollowingCallbacks | None:
        """Shadow the scheduling methods of `loop`, once, `call_soon` too if `always`; a
        loop without instance attributes keeps its own."""
        shadowing = self._callbacks.get(loop)
        if shadowing is not None or not hasattr(loop, "__dict__"):
            return shadowing
        shadowing = _FollowingCallbacks(loop, always=always)
        vars(loop).update(shadowing.shadows)
        self._callbacks[loop] = shadowing
        return shadowing

    def stop_following(self) -> None:
        """Put every loop's task factory and scheduling methods back; instruments end with
        their trio run."""
        if not self._followed_since_stop:
            return  # a test that called no app
        self._followed_since_stop = False
        for loop, factory in list(self._loops.items()):
            if loop.get_task_factory() is factory:
                loop.set_task_factory(factory.previous)
        self._loops.clear()
        for loop, shadowing in list(self._callbacks.items()):
            attributes = vars(loop)
            for name, shadow in shadowing.shadows.items():
                if attributes.get(name) == shadow:
                    del attributes[name]
        self._callbacks.clear()
        self.followed_loop = None
        self.followed_loop_attributes = None
        self.spawn_hook = None
        # An instrument can only be removed from inside its run; it stays inert there
        # once nothing is watched, and goes with the run.
        self._trio_runs.clear()
        if self._trio_token is not None:
            token_class, original, shadow = self._trio_token
            if token_class.__dict__.get("run_sync_soon") is shadow:
                token_class.run_sync_soon = original  # type: ignore[attr-defined]
            self._trio_token = None


follower = SpawnFollower()
