"""Running our async code from LiteLLM's sync entry points (`completion`, `completion(stream=True)`).

One long-lived event loop on a daemon thread serves every sync call. A fresh `asyncio.run` per call would be
simpler, but LiteLLM caches its async HTTP clients, and a client made on a loop that has since closed fails on its
next use; a single loop keeps every cached client valid. It also works when the caller is itself inside a running
loop (a notebook), where `asyncio.run` is refused.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator
from typing import Any, TypeVar

T = TypeVar("T")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None


def loop() -> asyncio.AbstractEventLoop:
    """The process's long-lived background loop: what must outlive any one caller's loop (LiteLLM's cached clients,
    MCP server connections) lives here."""
    return _portal_loop()


async def run_there(coro: Coroutine[Any, Any, T]) -> T:
    """Await `coro` on the portal loop from any loop, without blocking the caller's; cancelling cancels it there."""
    target = _portal_loop()
    if asyncio.get_running_loop() is target:
        return await coro
    return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, target))


def _portal_loop() -> asyncio.AbstractEventLoop:
    global _loop
    with _lock:
        if _loop is None or _loop.is_closed():
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="massgen-portal", daemon=True).start()
            _loop = loop
        return _loop


def call(coro: Coroutine[Any, Any, T]) -> T:
    future = asyncio.run_coroutine_threadsafe(coro, _portal_loop())
    try:
        return future.result()
    except BaseException:
        # KeyboardInterrupt in the caller must not leave the run going on the portal thread.
        future.cancel()
        raise


def iterate(agen: AsyncIterator[T]) -> Iterator[T]:
    """Drive an async iterator from sync code; closing the sync iterator early cancels the async one."""
    loop = _portal_loop()
    try:
        while True:
            future: concurrent.futures.Future[T] = asyncio.run_coroutine_threadsafe(agen.__anext__(), loop)  # type: ignore[arg-type]
            try:
                item = future.result()
            except StopAsyncIteration:
                return
            except BaseException:
                future.cancel()
                raise
            yield item
    finally:
        aclose = getattr(agen, "aclose", None)
        if aclose is not None:
            asyncio.run_coroutine_threadsafe(aclose(), loop).result()
