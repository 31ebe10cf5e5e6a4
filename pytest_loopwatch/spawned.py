"""Work a watched request spawns on the loop belongs to that request, and is timed too.

A task created while a watched stretch runs on a thread was created by that request's
code: a BaseHTTPMiddleware's call_next, an anyio task group, a handler's create_task.
On asyncio (uvloop included) a task factory on the running loop times such a task's
coroutine; on trio, an instrument times the steps of such a task. Both are installed on
the first watched call that runs on a loop and removed when watching ends.
"""

from __future__ import annotations

import asyncio
import sys
import weakref
from collections.abc import Callable, Coroutine
from threading import get_ident
from types import CoroutineType
from typing import Any

from .stretches import Stretch, finish_stretch, running_stretches, start_stretch, timed

TaskFactory = Callable[..., "asyncio.Future[Any]"]


async def _timed_task(coroutine: Coroutine[Any, Any, Any], parent: Stretch) -> Any:
    # asyncio.Task takes only native coroutines, hence this thin one around `timed`.
    return await timed(coroutine, parent[1], parent[2])


class _FollowingTaskFactory:
    """Times the tasks created during watched stretches, then hands on to the loop's factory."""

    def __init__(self, previous: TaskFactory | None) -> None:
        self.previous = previous

    def __call__(
        self, loop: asyncio.AbstractEventLoop, coroutine: Any, **options: Any
    ) -> asyncio.Future[Any]:
        parent = running_stretches.get(get_ident())
        if parent is not None and type(coroutine) is CoroutineType:
            coroutine = _timed_task(coroutine, parent)
        if self.previous is not None:
            return self.previous(loop, coroutine, **options)
        return asyncio.Task(coroutine, loop=loop, **options)


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
    """Installs the factory or instrument on each loop a watched call runs on; removes them all."""

    def __init__(self) -> None:
        # Weak: TestClient makes a loop per request, which must not live on until the end.
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _FollowingTaskFactory] = (
            weakref.WeakKeyDictionary()
        )
        self._trio_runs: dict[object, _FollowingInstrument] = {}
        self.followed_loop: asyncio.AbstractEventLoop | None = None
        """The asyncio loop followed last: the same one serves request after request,
        which need not call `follow` then."""

    def follow(self, loop: asyncio.AbstractEventLoop | None) -> None:
        """Follow the tasks spawned on `loop`, the running asyncio loop; None: on the
        trio run the caller is in, if any."""
        if loop is not None:
            self.followed_loop = loop
            if loop not in self._loops:
                factory = _FollowingTaskFactory(loop.get_task_factory())
                loop.set_task_factory(factory)
                self._loops[loop] = factory
            return
        trio = sys.modules.get("trio")
        if trio is None:
            return
        try:
            run = trio.lowlevel.current_root_task()
        except RuntimeError:  # not inside trio.run either
            return
        if run not in self._trio_runs:
            instrument = _FollowingInstrument()
            trio.lowlevel.add_instrument(instrument)
            self._trio_runs[run] = instrument

    def stop_following(self) -> None:
        """Put every loop's task factory back; instruments end with their trio run."""
        for loop, factory in list(self._loops.items()):
            if loop.get_task_factory() is factory:
                loop.set_task_factory(factory.previous)
        self._loops.clear()
        self.followed_loop = None
        # An instrument can only be removed from inside its run; it stays inert there
        # once nothing is watched, and goes with the run.
        self._trio_runs.clear()


follower = SpawnFollower()
