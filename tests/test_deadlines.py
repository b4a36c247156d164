"""Deadlines for awaits: `Deadline`, one timer for a task's awaits in turn, behaves as `asyncio.timeout` does."""

from __future__ import annotations

import asyncio
import sys

import pytest

from massgen_litellm.deadlines import Deadline, within


async def test_an_await_past_its_time_is_a_timeout_and_the_task_goes_on() -> None:
    deadline = Deadline()
    with pytest.raises(asyncio.TimeoutError), deadline.after(0.05):
        await asyncio.sleep(5)
    if sys.version_info >= (3, 11):
        assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]
    await asyncio.sleep(0)  # not cancelled any more: the task goes on


async def test_awaits_in_turn_each_get_their_own_time() -> None:
    """The timer set for the first await fires while a later one runs: that one is not due yet, and is left to run
    its own time; then it is cut at that time, not at the first await's."""
    deadline = Deadline()
    loop = asyncio.get_running_loop()
    for _ in range(3):
        with deadline.after(0.2):
            await asyncio.sleep(0.1)  # each well within its time, together past the first await's
    began = loop.time()
    with pytest.raises(asyncio.TimeoutError), deadline.after(0.3):
        await asyncio.sleep(5)
    assert 0.3 - 0.01 <= loop.time() - began < 2


async def test_an_earlier_due_than_the_idle_timer_is_kept() -> None:
    deadline = Deadline()
    with deadline.after(60):
        await asyncio.sleep(0)
    loop = asyncio.get_running_loop()
    began = loop.time()
    with pytest.raises(asyncio.TimeoutError), deadline.after(0.05):
        await asyncio.sleep(5)
    assert loop.time() - began < 2


async def test_a_cancellation_from_elsewhere_stays_a_cancellation() -> None:
    deadline = Deadline()

    async def waits() -> None:
        with deadline.after(60):
            await asyncio.sleep(5)

    task = asyncio.create_task(waits())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_reply_in_time_is_the_reply_and_close_drops_the_timer() -> None:
    deadline = Deadline()

    async def reply() -> str:
        await asyncio.sleep(0)
        return "4"

    with deadline.after(0.05):
        assert await reply() == "4"
    deadline.close()
    await asyncio.sleep(0.1)  # past the first time: nothing fires on the task
    with deadline.after(0.05):  # and a later await sets a timer again
        assert await reply() == "4"
    with pytest.raises(asyncio.TimeoutError), deadline.after(0.05):
        await asyncio.sleep(5)


async def test_within_bounds_one_await() -> None:
    assert await within(asyncio.sleep(0, result="done"), 1) == "done"
    with pytest.raises(asyncio.TimeoutError):
        await within(asyncio.sleep(5), 0.05)
