"""Hard deadlines for awaits, as plain asyncio.

`within(call, seconds)` is one await's deadline (`asyncio.timeout` where there is one). `Deadline` is the deadline of
one task's awaits taken one after another, each due no earlier than the one before: a participant's calls. It keeps
one timer for all of them where `asyncio.timeout` would make, schedule and cancel one per call (about 5 µs each, two
coroutines and a timer handle, more where the event loop holds many timers: LiteLLM's and httpx's).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable
from types import TracebackType
from typing import TypeVar

T = TypeVar("T")

# Python 3.11+: a task counts the cancellations asked of it (`Task.cancelling`, `Task.uncancel`), which is how a
# deadline tells its own cancellation from a caller's. On 3.10 it cannot, and a caller's cancellation landing with
# the deadline would be taken for a timeout and lost: there `within` (asyncio.wait_for) bounds each await instead.
TASKS_COUNT_CANCELLATIONS = sys.version_info >= (3, 11)

# A timer may fire this much before its time (the event loop's clock resolution and rounding): an await that has
# lasted its time within it has lasted its time.
TIMER_SLACK = 0.001


async def within(call: Awaitable[T], seconds: float) -> T:
    """`call`, cancelled after `seconds` (asyncio.TimeoutError). On Python 3.11+ in the caller's own task
    (asyncio.timeout); 3.10 has only wait_for, which runs it in a task of its own, a cost paid on every use."""
    if sys.version_info >= (3, 11):
        async with asyncio.timeout(seconds):
            return await call
    return await asyncio.wait_for(call, seconds)


class Deadline:
    """`with deadline.after(seconds): await ...` cancels the await when `seconds` have passed and raises
    `asyncio.TimeoutError` in its place, as `asyncio.timeout` does; a cancellation from elsewhere stays a
    cancellation. For awaits one after another, never two at once, each due no earlier than the one before: the
    timer set for one await is kept, idle, and at its time it looks at the await then running and, if that one is
    not due yet, waits for it. So one timer serves every await that starts before it fires. The task is taken at
    each `after`: a participant's turns run in its agent's task, its presentation later in the caller's.
    Python 3.11+ only (`TASKS_COUNT_CANCELLATIONS`)."""

    __slots__ = ("_cancelling", "_due", "_expired", "_task", "_timer")

    def __init__(self) -> None:
        self._due: float | None = None  # the running await's time (the loop's clock), None between awaits
        self._expired = False
        self._task: asyncio.Task[object] | None = None
        self._cancelling = 0
        self._timer: asyncio.TimerHandle | None = None

    def after(self, seconds: float) -> Deadline:
        if sys.version_info < (3, 11):
            raise RuntimeError("Deadline needs Python 3.11+ (Task.uncancel); on 3.10 use within()")
        loop = asyncio.get_running_loop()
        task = self._task = asyncio.current_task()
        assert task is not None, "a deadline is kept for a task"
        due = self._due = loop.time() + seconds
        self._expired = False
        self._cancelling = task.cancelling()  # asked before: not ours to turn into a timeout
        timer = self._timer
        if timer is None or timer.when() > due:  # no timer, or one set for a later await (not in the usual order)
            if timer is not None:
                timer.cancel()
            self._timer = loop.call_at(due, self._check)
        return self

    def __enter__(self) -> Deadline:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._due = None
        if not self._expired:
            return
        self._expired = False
        assert self._task is not None
        if sys.version_info >= (3, 11):  # always, where a Deadline is made (see `after`)
            if self._task.uncancel() > self._cancelling:
                return  # cancelled from elsewhere too: that cancellation goes on
            if kind is asyncio.CancelledError:
                raise asyncio.TimeoutError from exc

    def _check(self) -> None:
        self._timer = None
        due, task = self._due, self._task
        if due is None or task is None:
            return  # between awaits: the next one sets its own timer
        loop = asyncio.get_running_loop()  # the timer's own: it runs there
        if loop.time() >= due - TIMER_SLACK:
            self._expired = True
            task.cancel()
        else:
            self._timer = loop.call_at(due, self._check)

    def close(self) -> None:
        """Drop the idle timer (the task is done with its awaits); a later `after` sets another."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
