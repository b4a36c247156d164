"""A scripted backend as a real HTTP server on 127.0.0.1, for whatever cannot be intercepted in-process: a LiteLLM
proxy subprocess, real socket timeouts, benchmarks.

Any backend with `async handle(httpx.Request) -> httpx.Response`, a `calls` log and a `base_path` can be served:
`FakeLLM` (OpenAI chat), `FakeAnthropic` (Anthropic Messages), `FakeGemini` (Gemini). The backend routes its own API
(an unknown route is its 404), and its `base_path` is what follows host:port in the `api_base` LiteLLM is given
(`base_url`).

It runs its own event loop on a thread, so the code under test can be sync, async or another process. HTTP/1.1 with
Content-Length bodies, one request per connection unless `keep_alive`, is all OpenAI-compatible clients need from
it. A client that hangs up while its reply is being prepared cancels the scripted handler, so the call is logged as
`cancelled` at the moment the socket closed: that is how tests see a cancellation cross a process boundary.
`GET /v1/calls` returns the call log as JSON (`DELETE` empties it), for clients in another process.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from collections.abc import Callable, Coroutine
from types import TracebackType
from typing import Any, Generic, Protocol, TypeVar

import httpx

from massgen_litellm.testing.openai_chat import CUT_HEADER, ENDLESS_HEADER, Call


class Backend(Protocol):
    calls: list[Call]
    base_path: str  # what follows host:port in the backend's api_base: "/v1", "" (Anthropic), "/v1beta" (Gemini)

    async def handle(self, request: httpx.Request) -> httpx.Response: ...


B = TypeVar("B", bound=Backend)


class LoopbackServer(Generic[B]):
    def __init__(self, fake: B, keep_alive: bool = False) -> None:
        """`keep_alive`: serve request after request on a connection, as providers do, instead of one per
        connection (which lets a test see a cancellation as the socket closing). Benchmarks keep connections alive:
        a TCP connection set up and torn down per call costs the client CPU no real provider makes it spend."""
        self.fake = fake
        self.keep_alive = keep_alive
        self.port = 0
        self.open_connections = 0  # connections a client has open to us right now
        self.accepted = 0  # connections opened, in all
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.AbstractServer | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name="fake-llm-server", daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.fake.base_path}"

    def __enter__(self) -> LoopbackServer[B]:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, "127.0.0.1", 0), self._loop
        ).result(5)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def __exit__(self, *exc: object | TracebackType) -> None:
        async def stop() -> None:
            assert self._server is not None
            self._server.close()
            # Handlers still sleeping on a scripted delay would otherwise die with the loop, mid-coroutine.
            pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            await self._server.wait_closed()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.open_connections += 1
        self.accepted += 1
        try:
            while await self._serve_one(reader, writer):
                pass
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass  # the client went away, or the server is stopping; nothing to answer
        finally:
            writer.close()
            self.open_connections -= 1

    async def _serve_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """One request and its response; whether the connection may serve another."""
        head = await reader.readuntil(b"\r\n\r\n")
        request_line, *header_lines = head.decode("latin-1").split("\r\n")
        method, target, _ = request_line.split(" ", 2)
        headers = dict(line.split(": ", 1) for line in header_lines if ": " in line)
        length = int(next((v for k, v in headers.items() if k.lower() == "content-length"), "0"))
        body = await reader.readexactly(length)
        request = httpx.Request(method, f"http://127.0.0.1:{self.port}{target}", headers=headers, content=body)
        if method == "POST" and not target.endswith("/calls"):  # the backend routes its own API
            response = await _unless_hung_up(reader, self.fake.handle(request))
            if response is None:
                return False
        elif target.endswith("/calls") and method in ("GET", "DELETE"):
            response = self._calls(method)
        else:
            response = httpx.Response(404, json={"error": {"message": f"no route {method} {target}"}})
        payload = response.content
        status = f"HTTP/1.1 {response.status_code} {response.reason_phrase}\r\n"
        if ENDLESS_HEADER in response.headers:
            await _endless(writer, status, payload, float(response.headers[ENDLESS_HEADER]))
            return False
        cut = CUT_HEADER in response.headers  # a reply that stops half-way: the socket closes mid-body
        again = self.keep_alive and not cut
        fields = {"content-type": response.headers.get("content-type", "application/json")}
        fields |= {k: v for k, v in response.headers.items() if k.lower() == "retry-after"}
        fields |= {"content-length": str(len(payload)), "connection": "keep-alive" if again else "close"}
        if cut:
            payload = payload[: int(response.headers[CUT_HEADER])]
        writer.write((status + "".join(f"{k}: {v}\r\n" for k, v in fields.items()) + "\r\n").encode() + payload)
        await writer.drain()
        return again

    def _calls(self, method: str) -> httpx.Response:
        """The call log, for a client in another process (a benchmark); DELETE empties it."""
        log = [
            {
                "model": c.model,
                "started": c.started,
                "ended": c.ended,
                "cancelled": c.cancelled,
                "agent_id": c.agent_id,
                "kind": "present" if c.is_presentation else "turn" if c.answers else "first",
                "usage": c.usage,
                "messages": c.messages,
                "tools": c.body.get("tools"),
            }
            for c in self.fake.calls
        ]
        if method == "DELETE":
            self.fake.calls.clear()
        return httpx.Response(200, json=log)


async def _endless(writer: asyncio.StreamWriter, status: str, payload: bytes, every: float) -> None:
    """A stream that never ends: the body's first event again and again, numbered (LiteLLM stops a stream that
    repeats one chunk), until the client hangs up."""
    event = json.loads(payload.split(b"\n\n", 1)[0].removeprefix(b"data: "))
    delta = event["choices"][0]["delta"]
    content = delta.get("content") or ""
    writer.write((status + "content-type: text/event-stream\r\nconnection: close\r\n\r\n").encode())
    for count in itertools.count():
        delta["content"] = f"{content}{count} "
        writer.write(f"data: {json.dumps(event)}\n\n".encode())
        await writer.drain()
        await asyncio.sleep(every)


async def _unless_hung_up(
    reader: asyncio.StreamReader, handling: Coroutine[Any, Any, httpx.Response]
) -> httpx.Response | None:
    """The handler's response, or None if the client closed the connection first (the handler is then cancelled).

    A client sends nothing after its one request, so the only thing a read can return meanwhile is end-of-file.
    """
    handler = asyncio.ensure_future(handling)
    hangup = asyncio.ensure_future(reader.read(1))
    try:
        await asyncio.wait({handler, hangup}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        hangup.cancel()
        if not handler.done():
            handler.cancel()
        await asyncio.gather(handler, hangup, return_exceptions=True)
    return None if handler.cancelled() else handler.result()


async def until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll: the fake's log is written by its server thread, so there is no event on the caller's loop to wait for."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: still not so after {timeout}s")
        await asyncio.sleep(0.01)
