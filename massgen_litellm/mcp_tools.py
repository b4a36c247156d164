"""The agents' own tools: MCP servers a preset declares, reached with the `mcp` SDK (`pip install
'massgen-litellm[tools]'`).

A server runs once per process and is shared by every run (unless the preset marks it `per_run`: a stateful server
gets a fresh process for each run, so one run's state never leaks into another's). Its connection lives on the
portal's long-lived loop, whichever loop a run is on, and is closed at exit; a stdio server's stdin closes with its
parent, so even a parent killed outright leaves none behind.

Nothing a server does can take a run down: a server that will not start within `server_start_timeout`, crashes,
hangs past `tool_timeout` or answers with an error becomes an error result that the agent reads like any other, and
that the record keeps.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import os
import tempfile
from collections.abc import Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

from . import portal
from .config import ENV_KEY_PREFIX, McpServer

SEPARATOR = "__"  # an agent sees a server's tool `get_time` as `time__get_time`


@dataclass(frozen=True)
class ToolResult:
    text: str
    error: bool = False


class Unavailable(Exception):
    """The server could not be started or reached; the message says why, without secrets."""


class Connection:
    """One MCP server, connected on the portal loop by a task that holds the SDK's client open until stopped.

    Starting is on its own clock (`server_start_timeout`), apart from a tool call's (`tool_timeout`): a server
    started with `npx -y` may spend a minute fetching its package the first time, while its calls take milliseconds.
    A shared server whose start outlasts one run's wait goes on starting, so the next run finds it ready.
    """

    def __init__(self, server: McpServer) -> None:
        self.server = server
        self.tools: list[Any] = []
        self._task: asyncio.Task[None] | None = None
        self._started: asyncio.Event | None = None  # set once the start has succeeded or failed
        self._failure: Unavailable | None = None  # why the last start failed, or why the server stopped
        self._began = 0.0  # when the pending start began (loop time)
        self._stop: asyncio.Event | None = None
        self._client: Any = None
        self._lock: asyncio.Lock | None = None

    async def ensure(self, start_timeout: float) -> None:
        """Connected, or Unavailable; a dead connection, or a start pending for longer than `start_timeout`, is
        started again. Runs on the portal loop."""
        self._lock = self._lock or asyncio.Lock()
        loop = asyncio.get_running_loop()
        async with self._lock:
            live = self._task is not None and not self._task.done()
            pending = self._started is not None and not self._started.is_set()
            stale = pending and loop.time() - self._began > start_timeout
            if not live or stale or (not pending and self._failure is not None):
                await self.stop()
                self._started, self._failure, self._began = asyncio.Event(), None, loop.time()
                self._stop = asyncio.Event()
                self._task = asyncio.create_task(self._hold(), name=f"massgen-mcp-{self.server.name}")
            started = self._started
            assert started is not None
            wait = max(0.0, start_timeout - (loop.time() - self._began))
        try:
            await asyncio.wait_for(started.wait(), wait)
        except asyncio.TimeoutError:
            raise Unavailable(
                f"MCP server '{self.server.name}' did not start within server_start_timeout={start_timeout:g}s"
            ) from None
        if self._failure is not None:
            raise self._failure

    async def _hold(self) -> None:
        assert self._started is not None and self._stop is not None
        started = self._started
        try:
            async with AsyncExitStack() as stack:
                from mcp import Client

                self._client = await stack.enter_async_context(Client(self._transport(stack), mode="legacy"))
                listing = await self._client.list_tools()
                allowed = self.server.tools
                self.tools = [t for t in listing.tools if allowed is None or t.name in allowed]
                started.set()
                await self._stop.wait()
        except Exception as exc:
            if not started.is_set():
                self._failure = Unavailable(f"MCP server '{self.server.name}' could not start: {_why(exc)}")
        finally:
            self._client = None
            if self._failure is None:  # stopped, crashed or cancelled after (or while) starting
                self._failure = Unavailable(f"MCP server '{self.server.name}' stopped")
            started.set()

    def _transport(self, stack: AsyncExitStack) -> Any:
        if self.server.url is not None:
            import httpx2
            from mcp.client.streamable_http import streamable_http_client

            client = httpx2.AsyncClient(headers=_resolved(self.server.headers), timeout=30)
            stack.push_async_callback(client.aclose)
            return streamable_http_client(self.server.url, http_client=client)
        from mcp.client.stdio import StdioServerParameters, stdio_client

        assert self.server.command is not None
        # The server's stderr goes to a file of its own, not into the proxy's log.
        errlog = stack.enter_context(tempfile.TemporaryFile(mode="w+", prefix="massgen-mcp-"))  # noqa: SIM115
        params = StdioServerParameters(
            command=self.server.command, args=list(self.server.args), env=_resolved(self.server.env) or None
        )
        return stdio_client(params, errlog=errlog)

    async def call(self, name: str, arguments: dict[str, Any], timeout: float, start_timeout: float) -> ToolResult:
        """Runs on the portal loop."""
        if self.server.tools is not None and name not in self.server.tools:
            # The allow-list is what keeps a read-only context path read-only: it holds here too, not only in the
            # list of tools the agents are offered.
            return ToolResult(f"the tool {name} is not allowed on the MCP server '{self.server.name}'", error=True)
        await self.ensure(start_timeout)
        try:
            result = await asyncio.wait_for(self._client.call_tool(name, arguments), timeout)
        except asyncio.TimeoutError:
            return ToolResult(f"the tool did not answer within tool_timeout={timeout:g}s", error=True)
        except Exception as exc:
            await self.stop()  # the next call starts the server again
            return ToolResult(f"the MCP server '{self.server.name}' failed: {_why(exc)}", error=True)
        text = "\n".join(getattr(part, "text", None) or f"[{part.type} content]" for part in result.content)
        if not text and result.structured_content is not None:
            text = json.dumps(result.structured_content)
        return ToolResult(text, error=bool(result.is_error))

    async def stop(self) -> None:
        if self._stop is not None:
            self._stop.set()
        if self._task is not None:
            if self._started is not None and not self._started.is_set():
                self._task.cancel()  # still starting: there is nothing to close cleanly yet
            await asyncio.gather(self._task, return_exceptions=True)
        self._task = None


_shared: dict[str, Connection] = {}


def _key(server: McpServer) -> str:
    return server.model_dump_json()


class ToolBox:
    """One agent's MCP tools for one run: OpenAI tool schemas under `server__tool` names, and calls of them."""

    def __init__(
        self, servers: Sequence[McpServer], timeout: float, result_chars: int, start_timeout: float = 60.0
    ) -> None:
        self.timeout = timeout
        self.start_timeout = start_timeout
        self.result_chars = result_chars
        self.connections: dict[str, Connection] = {}
        self._own: list[Connection] = []  # per-run servers, stopped with the run
        self.problems: list[str] = []
        for server in servers:
            if server.per_run:
                connection = Connection(server)
                self._own.append(connection)
            else:
                connection = _shared.setdefault(_key(server), Connection(server))
            self.connections[server.name] = connection
        self.schemas: list[dict[str, Any]] = []

    async def open(self) -> None:
        """Start (or reuse) every server and learn its tools; a server that will not start is left out, and said."""
        for name, connection in self.connections.items():
            try:
                await portal.run_there(connection.ensure(self.start_timeout))
            except Unavailable as exc:
                self.problems.append(str(exc))
                continue
            for tool in connection.tools:
                self.schemas.append(
                    {
                        "type": "function",
                        "function": {
                            "name": f"{name}{SEPARATOR}{tool.name}",
                            "description": (tool.description or "")[:1000],
                            "parameters": tool.input_schema or {"type": "object", "properties": {}},
                        },
                    }
                )

    def owns(self, tool_name: str) -> bool:
        return any(s["function"]["name"] == tool_name for s in self.schemas)

    async def call(self, tool_name: str, arguments: str) -> ToolResult:
        server, _, name = tool_name.partition(SEPARATOR)
        try:
            parsed = json.loads(arguments or "{}")
        except ValueError:
            return ToolResult("the arguments were not valid JSON", error=True)
        if not isinstance(parsed, dict):
            return ToolResult("the arguments must be a JSON object", error=True)
        try:
            result = await portal.run_there(
                self.connections[server].call(name, parsed, self.timeout, self.start_timeout)
            )
        except Unavailable as exc:
            result = ToolResult(str(exc), error=True)
        if len(result.text) > self.result_chars:
            return ToolResult(
                result.text[: self.result_chars] + f"\n[cut at {self.result_chars} characters]", result.error
            )
        return result

    async def close(self) -> None:
        for connection in self._own:
            await portal.run_there(connection.stop())


async def list_tools(servers: Sequence[McpServer], timeout: float = 60) -> dict[str, list[str] | str]:
    """Each server's tools, or why it cannot be reached: for `massgen-litellm check --connect`."""
    found: dict[str, list[str] | str] = {}
    for server in servers:
        connection = Connection(server)
        try:
            await connection.ensure(timeout)
            found[server.name] = [tool.name for tool in connection.tools]
        except Unavailable as exc:
            found[server.name] = str(exc)
        finally:
            await connection.stop()
    return found


@atexit.register
def stop_all() -> None:
    """Close every shared server's connection (and so stop its process) before the interpreter goes."""
    if not _shared:
        return
    loop = portal.loop()

    async def stop() -> None:
        await asyncio.gather(*(c.stop() for c in _shared.values()), return_exceptions=True)

    with contextlib.suppress(Exception):  # exiting anyway; a stdio server's stdin closes with us
        asyncio.run_coroutine_threadsafe(stop(), loop).result(10)
    _shared.clear()


def _resolved(values: dict[str, str]) -> dict[str, str]:
    resolved = {}
    for key, value in values.items():
        if value.startswith(ENV_KEY_PREFIX):
            found = os.environ.get(value[len(ENV_KEY_PREFIX) :])
            if not found:
                raise Unavailable("an environment variable it needs is not set")
            value = found
        resolved[key] = value
    return resolved


def _why(exc: BaseException) -> str:
    while getattr(exc, "exceptions", None):  # an anyio task group's ExceptionGroup: its first cause says it
        exc = exc.exceptions[0]  # type: ignore[attr-defined]
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}" if str(exc) else type(exc).__name__
