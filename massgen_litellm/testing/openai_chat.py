"""A scripted OpenAI-compatible chat backend, keyed by model name.

Participants in tests are ordinary LiteLLM models (`openai/<name>` with an `api_base`), so every call goes through
LiteLLM's real OpenAI path and reaches this backend over HTTP (respx here). A script is a function of the request
(`Call`) that returns a reply: a tool call, plain text, an HTTP error, optionally after a delay. The backend logs
every call with the usage it reported, so tests compare our sums with what the "provider" really said.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

BASE = "http://fake-llm.test/v1"
KEY = "sk-test-not-a-real-key"
CUT_HEADER = "x-fake-cut-after"  # read by the loopback server, never sent
ENDLESS_HEADER = "x-fake-endless"  # read by the loopback server: repeat the body's first event until the client leaves

_FENCE = re.compile(r"<<<ANSWER (agent\d+) ([0-9a-f]+)>>>\n(.*?)\n<<<END ANSWER \1 \2>>>", re.DOTALL)
_SELF = re.compile(r"You are (agent\d+)")


@dataclass
class Reply:
    content: str | None = None
    tool: str | None = None
    arguments: Any = None  # dict, or a raw string for malformed JSON
    status: int = 200
    error: str = ""
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None  # sent as is, with status 200: broken JSON, a response without choices...
    cut_after: int | None = None  # over a real socket: send this many bytes of the body, then drop the connection
    endless: float | None = None  # over a real socket, streamed: one content chunk every this many seconds, forever
    more_tools: list[tuple[str, Any]] = field(default_factory=list)  # further tool calls in the same reply
    reasoning_tokens: int = 0  # reported in usage.completion_tokens_details, as reasoning models do


def answer(content: str, delay: float = 0.0) -> Reply:
    return Reply(tool="new_answer", arguments={"content": content}, delay=delay)


def vote(agent_id: str, reason: str = "it is right", delay: float = 0.0) -> Reply:
    return Reply(tool="vote", arguments={"agent_id": agent_id, "reason": reason}, delay=delay)


def text(content: str, delay: float = 0.0) -> Reply:
    return Reply(content=content, delay=delay)


def fail(status: int = 500, error: str = "upstream exploded", delay: float = 0.0) -> Reply:
    return Reply(status=status, error=error, delay=delay)


@dataclass
class Call:
    """One request as the backend saw it."""

    model: str
    body: dict[str, Any]
    started: float
    ended: float = 0.0
    cancelled: bool = False  # the client hung up (or the server stopped) before the reply was sent
    usage: dict[str, Any] | None = None

    headers: dict[str, str] = field(default_factory=dict)

    @property
    def api_key(self) -> str:
        return self.headers.get("authorization", "").removeprefix("Bearer ")

    @property
    def messages(self) -> list[dict[str, Any]]:
        return self.body["messages"]

    @property
    def prompt(self) -> str:
        return self.messages[-1].get("content") or ""

    @property
    def tools(self) -> list[str]:
        return [t["function"]["name"] for t in self.body.get("tools") or []]

    @property
    def answers(self) -> dict[str, str]:
        """The answers fenced in the coordination instruction, by agent id."""
        return {m.group(1): m.group(3) for m in _FENCE.finditer(self.prompt)}

    @property
    def agent_id(self) -> str | None:
        for message in self.messages:
            match = _SELF.search(str(message.get("content") or ""))
            if match:
                return match.group(1)
        return None

    @property
    def is_presentation(self) -> bool:
        return "The agents have finished" in self.prompt

    @property
    def is_retry(self) -> bool:
        return any("could not be used" in (m.get("content") or "") for m in self.messages)


Script = Callable[[Call], Reply]


async def play(script: Script, call: Call) -> Reply:
    """The script's reply to `call`, after the reply's delay. A client that hangs up meanwhile cancels this: the call
    is marked `cancelled`, and either way `ended` says when it stopped. Shared by every wire format's backend."""
    reply = script(call)
    try:
        if reply.delay:
            await asyncio.sleep(reply.delay)
    except asyncio.CancelledError:
        call.cancelled = True
        raise
    finally:
        call.ended = time.monotonic()
    return reply


def answer_then_vote(content: str, for_agent: str = "agent1", delay: float = 0.0) -> Script:
    """Answer until `for_agent` has answered, then vote for it; present the winning answer. Speaks the protocol it
    is offered: tool calls when the request has tools, the text protocol when it has none."""

    def script(call: Call) -> Reply:
        if call.is_presentation:
            return text(f"Final: {call.answers.get(call.agent_id or '', content)}", delay=delay)
        if "tools" not in call.body:
            if for_agent in call.answers:
                return text(f"VOTE: {for_agent}\nREASON: {for_agent} is right", delay=delay)
            return text(content, delay=delay)
        if "vote" in call.tools and for_agent in call.answers:
            return vote(for_agent, f"{for_agent} is right", delay=delay)
        return answer(content, delay=delay)

    return script


def sequence(*replies: Reply | Script) -> Script:
    """Replies in order, one per call; the last one repeats."""
    queue = list(replies)

    def script(call: Call) -> Reply:
        item = queue.pop(0) if len(queue) > 1 else queue[0]
        return item(call) if callable(item) else item

    return script


class FakeLLM:
    base_path = "/v1"  # where its API lives on a loopback server

    def __init__(self, default: Script | None = None) -> None:
        self.scripts: dict[str, Script] = {}
        self.default = default  # for models with no script of their own
        self.calls: list[Call] = []
        self._arrived = asyncio.Event()

    async def wait_for_calls(self, count: int, timeout: float = 5.0) -> None:
        """Until `count` requests have arrived."""

        async def arrivals() -> None:
            while len(self.calls) < count:
                self._arrived.clear()
                await self._arrived.wait()

        await asyncio.wait_for(arrivals(), timeout)

    def script(self, model: str, script: Script) -> str:
        """Register a scripted model; returns its LiteLLM agent entry's model string."""
        self.scripts[model] = script
        return f"openai/{model}"

    def calls_of(self, model: str) -> list[Call]:
        return [c for c in self.calls if c.model == model]

    def reported_usage(self) -> dict[str, int]:
        totals = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0, "reasoning_tokens": 0}
        for call in self.calls:
            usage: dict[str, Any] = call.usage or {}
            for key in ("prompt_tokens", "completion_tokens", "total_tokens"):
                totals[key] += usage.get(key, 0)
            totals["reasoning_tokens"] += (usage.get("completion_tokens_details") or {}).get("reasoning_tokens", 0)
        return totals

    async def handle(self, request: httpx.Request) -> httpx.Response:
        if not request.url.path.endswith("/chat/completions"):
            return httpx.Response(404, json={"error": {"message": f"no route {request.method} {request.url.path}"}})
        body = json.loads(request.content)
        call = Call(model=body["model"], body=body, started=time.monotonic(), headers=dict(request.headers))
        self.calls.append(call)
        self._arrived.set()
        script = self.scripts.get(call.model, self.default)
        if script is None:
            return httpx.Response(404, json={"error": {"message": f"no such model {call.model}", "type": "invalid"}})
        reply = await play(script, call)
        if reply.status != 200:
            return httpx.Response(
                reply.status,
                json={"error": {"message": reply.error, "type": "server_error"}},
                headers=reply.headers,
            )
        if reply.body is not None:
            return httpx.Response(200, content=reply.body, headers={"content-type": "application/json"})
        if body.get("stream"):
            message, finish = _message(reply)
            call.usage = _usage(body, message, reply)
            response = _sse(call, message, finish)
            if reply.cut_after is not None:
                response.headers[CUT_HEADER] = str(reply.cut_after)
            if reply.endless is not None:
                response.headers[ENDLESS_HEADER] = str(reply.endless)
            return response
        completion = completion_body(call, reply, f"chatcmpl-{len(self.calls)}")
        call.usage = completion["usage"]
        return httpx.Response(200, json=completion)


def completion_body(call: Call, reply: Reply, completion_id: str = "chatcmpl-1") -> dict[str, Any]:
    """The Chat Completions response (`chat.completion`, as JSON-ready data) the backend sends for `reply` to `call`;
    the benchmarks also build in-process replies from it."""
    message, finish = _message(reply)
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": 1,
        "model": call.model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": _usage(call.body, message, reply),
    }


def _message(reply: Reply) -> tuple[dict[str, Any], str]:
    if reply.tool is None:
        return {"role": "assistant", "content": reply.content}, "stop"
    tool_calls = [
        {
            "id": f"call_{index}",
            "type": "function",
            "function": {"name": name, "arguments": arguments if isinstance(arguments, str) else json.dumps(arguments)},
        }
        for index, (name, arguments) in enumerate([(reply.tool, reply.arguments), *reply.more_tools], start=1)
    ]
    return {"role": "assistant", "content": reply.content, "tool_calls": tool_calls}, "tool_calls"


def _usage(body: dict[str, Any], message: dict[str, Any], reply: Reply) -> dict[str, Any]:
    """Deterministic, request-dependent token counts, so sums are checkable and not constants."""
    prompt = sum(len(str(m.get("content") or "")) for m in body["messages"]) // 4 + 1
    completion = len(json.dumps(message)) // 4 + 1
    usage: dict[str, Any] = {"prompt_tokens": prompt, "completion_tokens": completion}
    usage["total_tokens"] = prompt + completion
    if reply.reasoning_tokens:
        # Reasoning is billed as completion: the reply's text tokens plus the reasoning it reports.
        usage["completion_tokens"] += reply.reasoning_tokens
        usage["total_tokens"] += reply.reasoning_tokens
        usage["completion_tokens_details"] = {"reasoning_tokens": reply.reasoning_tokens}
    return usage


def _sse(call: Call, message: dict[str, Any], finish: str) -> httpx.Response:
    content = message.get("content") or ""
    pieces = [content[i : i + 4] for i in range(0, len(content), 4)] or [""]
    base = {"id": "chatcmpl-s", "object": "chat.completion.chunk", "created": 1, "model": call.model}
    events = [{**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": p}}]} for p in pieces]
    for index, tool_call in enumerate(message.get("tool_calls") or []):
        events.append({**base, "choices": [{"index": 0, "delta": {"tool_calls": [{"index": index, **tool_call}]}}]})
    events.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
    if (call.body.get("stream_options") or {}).get("include_usage"):
        events.append({**base, "choices": [], "usage": call.usage})
    data = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
    return httpx.Response(200, content=data.encode(), headers={"content-type": "text/event-stream"})
