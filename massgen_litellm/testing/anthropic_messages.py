"""A scripted Anthropic Messages API (`POST /v1/messages`), keyed by model name, that holds requests to the API's rules.

Participants are ordinary LiteLLM models (`anthropic/<name>` with `api_base` set to this backend and any key), so
every call goes through LiteLLM's real Anthropic transformation, request and response, JSON and SSE. Scripts are the
ones of `openai_chat` (functions of the request returning a `Reply`): `Call` here reads an Anthropic body the way the
OpenAI one reads a chat body (`prompt`, `tools`, `answers`, `agent_id`...), so the same script drives either wire.

What the real API would refuse, this one refuses too, with a 400 `invalid_request_error` whose message is Anthropic's
own (https://docs.claude.com/en/api/messages, .../build-with-claude/extended-thinking, .../tool-use):

* the body: only the Messages API's fields (`response_format: Extra inputs are not permitted`); `max_tokens` required,
  and at most the model's output limit when one is configured (`max_output`);
* thinking: `budget_tokens` >= 1024 and below `max_tokens` (unless the interleaved-thinking beta is on);
  `temperature` only 1; no `tool_choice` that forces a tool;
* thinking blocks: every `thinking` block must carry the signature this backend issued for that text and model, every
  `redacted_thinking` block data it issued; with thinking on, the assistant turn that is still running (its tool
  results are in the last user message) must start with its thinking block(s): "Expected `thinking` or
  `redacted_thinking`, but found `tool_use`"; with thinking off, a final assistant message may not hold thinking;
* tools: a `tool_result` for every `tool_use` at the start of the very next message, none for an id that was not used
  there; `tools` defined whenever the messages hold tool blocks; tool names `^[a-zA-Z0-9_-]{1,128}$`; an object
  `input_schema`;
* content: no empty text blocks; a final assistant message without trailing whitespace.

Replies: a `thinking` block first when the request enables thinking and a new assistant turn starts (every reply,
with the interleaved-thinking beta), `redacted_thinking` instead if the backend is made with `redacted=True`; then
text and `tool_use` blocks; `usage` with `input_tokens`, `output_tokens` and both cache fields. A text-only reply
longer than `max_tokens` is cut there, with `stop_reason: "max_tokens"`, as the real API does.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import time
from dataclasses import dataclass
from typing import Any

import httpx

from massgen_litellm.testing import openai_chat
from massgen_litellm.testing.openai_chat import Reply, Script, play

BASE = "http://fake-anthropic.test"  # LiteLLM appends /v1/messages
KEY = "sk-ant-test-not-a-real-key"
PATH = "/v1/messages"
DOCS = "https://docs.claude.com/en/docs/build-with-claude/extended-thinking"
MIN_THINKING_BUDGET = 1024

_FIELDS = frozenset(
    {
        "model", "messages", "max_tokens", "system", "metadata", "stop_sequences", "stream", "temperature", "top_p",
        "top_k", "tools", "tool_choice", "thinking", "service_tier", "container", "mcp_servers", "context_management",
        "output_format", "output_config",
    }
)  # fmt: skip
_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")
_THINKING = ("thinking", "redacted_thinking")


@dataclass
class Call(openai_chat.Call):
    """One request as the backend saw it, read like a chat request so that `openai_chat`'s scripts work unchanged."""

    @property
    def api_key(self) -> str:
        return self.headers.get("x-api-key") or self.headers.get("authorization", "").removeprefix("Bearer ")

    @property
    def system(self) -> str:
        system = self.body.get("system") or ""
        return system if isinstance(system, str) else "\n".join(b.get("text", "") for b in system)

    @property
    def prompt(self) -> str:
        """The text of the last user message (our instruction; LiteLLM merges it with any tool results before it)."""
        content = self.messages[-1].get("content") if self.messages else ""
        return _text(content, tool_results=False)

    @property
    def tools(self) -> list[str]:
        return [t["name"] for t in self.body.get("tools") or []]

    @property
    def agent_id(self) -> str | None:
        for text in [self.system, *(_text(m.get("content")) for m in self.messages)]:
            match = openai_chat._SELF.search(text)
            if match:
                return match.group(1)
        return None

    @property
    def is_retry(self) -> bool:
        return any("could not be used" in _text(m.get("content")) for m in self.messages)

    @property
    def thinking(self) -> bool:
        return (self.body.get("thinking") or {}).get("type") in ("enabled", "adaptive")

    @property
    def tool_results(self) -> list[str]:
        """The text of every tool_result block, in order."""
        return [
            _text(block.get("content"))
            for message in self.messages
            if isinstance(message.get("content"), list)
            for block in message["content"]
            if block.get("type") == "tool_result"
        ]

    def blocks(self, role: str = "assistant") -> list[dict[str, Any]]:
        """Every content block of the messages with this role, in order."""
        return [
            block
            for message in self.messages
            if message.get("role") == role and isinstance(message.get("content"), list)
            for block in message["content"]
        ]


def _text(content: Any, tool_results: bool = True) -> str:
    if isinstance(content, str):
        return content
    parts = []
    for block in content or []:
        if block.get("type") == "text":
            parts.append(block.get("text", ""))
        elif block.get("type") == "tool_result" and tool_results:
            parts.append(_text(block.get("content")))
    return "\n".join(parts)


class Refused(Exception):
    """What the real API would answer with a 400 (or `status`)."""

    def __init__(self, message: str, status: int = 400, kind: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.message, self.status, self.kind = message, status, kind


class FakeAnthropic(openai_chat.FakeLLM):
    """The scripted backend; `script(name, fn)` returns the agent's model string, `anthropic/<name>`.

    `max_output`: output-token limits by model name, enforced as the real API does. `cached_tokens`: reported as
    `cache_read_input_tokens` on every call (the rest of the prompt as `input_tokens`). `redacted`: thinking comes
    back as `redacted_thinking` blocks.
    """

    base_path = ""

    def __init__(
        self,
        default: Script | None = None,
        *,
        max_output: dict[str, int] | None = None,
        cached_tokens: int = 0,
        redacted: bool = False,
    ) -> None:
        super().__init__(default)
        self.max_output = dict(max_output or {})
        self.cached_tokens = cached_tokens
        self.redacted = redacted
        self._secret = os.urandom(32)  # signatures from another backend (another "account") never verify here
        self.refusals: list[str] = []  # the message of every 400 this backend sent, in order

    def script(self, model: str, script: Script) -> str:
        self.scripts[model] = script
        return f"anthropic/{model}"

    def reported_usage(self) -> dict[str, int]:
        totals = dict.fromkeys(
            ("input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens"), 0
        )
        for call in self.calls:
            for key in totals:
                totals[key] += (call.usage or {}).get(key, 0)
        return totals

    # -- signatures ---------------------------------------------------------------------------------------------

    def sign(self, model: str, thinking: str) -> str:
        digest = hmac.new(self._secret, f"{model}\0{thinking}".encode(), hashlib.sha256).digest()
        return base64.b64encode(digest).decode()

    def _redacted_data(self, model: str) -> str:
        nonce = os.urandom(12)
        tag = hmac.new(self._secret, model.encode() + b"\0" + nonce, hashlib.sha256).digest()
        return base64.b64encode(nonce + tag).decode()

    def _valid_redacted(self, model: str, data: Any) -> bool:
        try:
            raw = base64.b64decode(str(data), validate=True)
        except ValueError:
            return False
        nonce, tag = raw[:12], raw[12:]
        expected = hmac.new(self._secret, model.encode() + b"\0" + nonce, hashlib.sha256).digest()
        return hmac.compare_digest(tag, expected)

    # -- the endpoint -------------------------------------------------------------------------------------------

    async def handle(self, request: httpx.Request) -> httpx.Response:
        if not request.url.path.endswith(PATH):
            return httpx.Response(
                404, json={"type": "error", "error": {"type": "not_found_error", "message": "Not found"}}
            )
        try:
            body = json.loads(request.content)
        except ValueError:
            return _error(Refused("There was an error parsing the body"))
        call = Call(model=str(body.get("model")), body=body, started=time.monotonic(), headers=dict(request.headers))
        self.calls.append(call)
        self._arrived.set()
        try:
            self._check(call, request)
        except Refused as refusal:
            self.refusals.append(refusal.message)
            call.ended = time.monotonic()
            return _error(refusal)
        script = self.scripts.get(call.model, self.default)
        if script is None:
            return _error(Refused(f"model: {call.model}", 404, "not_found_error"))
        reply = await play(script, call)
        if reply.status != 200:
            kind = {429: "rate_limit_error", 529: "overloaded_error"}.get(reply.status, "api_error")
            kind = "invalid_request_error" if reply.status == 400 else kind
            return _error(Refused(reply.error, reply.status, kind), reply.headers)
        if reply.body is not None:
            return httpx.Response(200, content=reply.body, headers={"content-type": "application/json"})
        message = self._message(call, reply)
        if body.get("stream"):
            return httpx.Response(200, content=_sse(message), headers={"content-type": "text/event-stream"})
        return httpx.Response(200, json=message)

    def _message(self, call: Call, reply: Reply) -> dict[str, Any]:
        content: list[dict[str, Any]] = []
        if call.thinking and (self._new_turn(call) or "interleaved-thinking" in call.headers.get("anthropic-beta", "")):
            if self.redacted:
                content.append({"type": "redacted_thinking", "data": self._redacted_data(call.model)})
            else:
                thought = f"{call.model} weighs a request of {len(call.messages)} messages."
                content.append({"type": "thinking", "thinking": thought, "signature": self.sign(call.model, thought)})
        stop = "end_turn"
        if reply.content:
            content.append({"type": "text", "text": reply.content})
        if reply.tool is not None:
            stop = "tool_use"
            for index, (name, arguments) in enumerate([(reply.tool, reply.arguments), *reply.more_tools], start=1):
                if isinstance(arguments, str):
                    raise ValueError("a tool_use input is a JSON object on the Anthropic wire; script a dict")
                tool_id = f"toolu_{len(self.calls):04d}{index:02d}"
                content.append({"type": "tool_use", "id": tool_id, "name": name, "input": arguments})
        output = len(json.dumps(content)) // 4 + 1
        limit = int(call.body["max_tokens"])
        if output > limit and reply.tool is None and content and content[-1]["type"] == "text":
            # The real API stops where max_tokens runs out; a text reply is cut there.
            keep = max(0, len(content[-1]["text"]) - (output - limit) * 4)
            content[-1] = {"type": "text", "text": content[-1]["text"][:keep]}
            output, stop = limit, "max_tokens"
        prompt = len(json.dumps([call.body.get("system"), call.messages])) // 4 + 1
        cached = min(self.cached_tokens, prompt)
        call.usage = {
            "input_tokens": prompt - cached,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": cached,
            "output_tokens": output,
        }
        return {
            "id": f"msg_{len(self.calls):06d}",
            "type": "message",
            "role": "assistant",
            "model": call.model,
            "content": content,
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": {**call.usage, "service_tier": "standard"},
        }

    @staticmethod
    def _new_turn(call: Call) -> bool:
        """The request starts an assistant turn: its last user message answers no tool call of the turn."""
        last = call.messages[-1] if call.messages else {}
        content = last.get("content")
        return not (isinstance(content, list) and any(b.get("type") == "tool_result" for b in content))

    # -- the rules ----------------------------------------------------------------------------------------------

    def _check(self, call: Call, request: httpx.Request) -> None:
        body = call.body
        if not call.api_key:
            raise Refused("x-api-key header is required", 401, "authentication_error")
        if not request.headers.get("anthropic-version"):
            raise Refused("anthropic-version: header is required")
        for name in body:
            if name not in _FIELDS:
                raise Refused(f"{name}: Extra inputs are not permitted")
        for name in ("model", "messages", "max_tokens"):
            if name not in body:
                raise Refused(f"{name}: Field required")
        max_tokens = body["max_tokens"]
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
            raise Refused("max_tokens: Input should be greater than or equal to 1")
        limit = self.max_output.get(call.model)
        if limit is not None and max_tokens > limit:
            raise Refused(
                f"max_tokens: {max_tokens} > {limit}, which is the maximum allowed number of output tokens for "
                f"{call.model}"
            )
        self._check_thinking_params(call)
        self._check_tools(body)
        self._check_messages(call)

    def _check_thinking_params(self, call: Call) -> None:
        body = call.body
        thinking = body.get("thinking")
        if thinking is None:
            return
        kind = thinking.get("type") if isinstance(thinking, dict) else None
        if kind not in ("enabled", "disabled", "adaptive"):
            raise Refused(
                f"thinking: Input tag '{kind}' found using 'type' does not match any of the expected tags: "
                "'adaptive', 'disabled', 'enabled'"
            )
        if kind != "enabled":
            return
        budget = thinking.get("budget_tokens")
        if not isinstance(budget, int) or budget < MIN_THINKING_BUDGET:
            raise Refused(
                f"thinking.enabled.budget_tokens: Input should be greater than or equal to {MIN_THINKING_BUDGET}"
            )
        interleaved = "interleaved-thinking" in call.headers.get("anthropic-beta", "")
        if budget >= body["max_tokens"] and not interleaved:
            raise Refused(
                "`max_tokens` must be greater than `thinking.budget_tokens`. Please consult our documentation at "
                f"{DOCS}#max-tokens-and-context-window-size"
            )
        if body.get("temperature", 1) != 1:
            raise Refused(
                "`temperature` may only be set to 1 when thinking is enabled. Please consult our documentation at "
                f"{DOCS}#feature-compatibility"
            )
        if (body.get("tool_choice") or {}).get("type") in ("any", "tool"):
            raise Refused("Thinking may not be enabled when tool_choice forces tool use.")

    @staticmethod
    def _check_tools(body: dict[str, Any]) -> None:
        for index, tool in enumerate(body.get("tools") or []):
            if "input_schema" not in tool:  # a server tool (web search...) has a type and no schema
                continue
            if not _TOOL_NAME.match(str(tool.get("name", ""))):
                raise Refused(f"tools.{index}.custom.name: String should match pattern '^[a-zA-Z0-9_-]{{1,128}}$'")
            if (tool.get("input_schema") or {}).get("type") != "object":
                raise Refused(f"tools.{index}.custom.input_schema.type: Input should be 'object'")

    def _check_messages(self, call: Call) -> None:
        messages = call.messages
        if not isinstance(messages, list) or not messages:
            raise Refused("messages: at least one message is required")
        uses_tools = False
        for i, message in enumerate(messages):
            if message.get("role") not in ("user", "assistant"):
                raise Refused(f"messages.{i}.role: Input should be 'user' or 'assistant'")
            content = message.get("content")
            blocks = content if isinstance(content, list) else [{"type": "text", "text": content}]
            for j, block in enumerate(blocks):
                kind = block.get("type")
                uses_tools = uses_tools or kind in ("tool_use", "tool_result")
                if kind == "text" and not block.get("text"):
                    raise Refused("messages: text content blocks must be non-empty")
                if kind == "thinking":
                    if not block.get("signature"):
                        raise Refused(f"messages.{i}.content.{j}.thinking.signature: Field required")
                    if not hmac.compare_digest(
                        str(block["signature"]), self.sign(call.model, block.get("thinking", ""))
                    ):
                        raise Refused(f"messages.{i}.content.{j}: Invalid `signature` in `thinking` block")
                if kind == "redacted_thinking" and not self._valid_redacted(call.model, block.get("data")):
                    raise Refused(f"messages.{i}.content.{j}: Invalid `data` in `redacted_thinking` block")
            if message["role"] == "assistant":
                self._check_tool_results(messages, i, blocks)
            elif i == 0 or messages[i - 1].get("role") != "assistant":
                for j, block in enumerate(blocks):
                    if block.get("type") == "tool_result":
                        raise Refused(
                            f"messages.{i}.content.{j}: unexpected `tool_use_id` found in `tool_result` blocks: "
                            f"{block.get('tool_use_id')}. Each `tool_result` block must have a corresponding "
                            "`tool_use` block in the previous message."
                        )
        if uses_tools and not call.body.get("tools"):
            raise Refused("Requests which include `tool_use` or `tool_result` blocks must define tools.")
        last = messages[-1]
        if last["role"] == "assistant":
            text = last["content"] if isinstance(last["content"], str) else _text(last["content"])
            if text != text.rstrip():
                raise Refused("messages: final assistant content cannot end with trailing whitespace")
        self._check_thinking_turn(call)

    @staticmethod
    def _check_tool_results(messages: list[dict[str, Any]], i: int, blocks: list[dict[str, Any]]) -> None:
        used = [b.get("id") for b in blocks if b.get("type") == "tool_use"]
        following = messages[i + 1] if i + 1 < len(messages) else None
        answered: list[str] = []
        if following is not None and isinstance(following.get("content"), list):
            for block in following["content"]:  # tool results count only at the start of the next message
                if block.get("type") != "tool_result":
                    break
                answered.append(block.get("tool_use_id"))
        missing = [tool_id for tool_id in used if tool_id not in answered]
        if missing and following is not None:
            raise Refused(
                f"messages.{i}: `tool_use` ids were found without `tool_result` blocks immediately after: "
                f"{', '.join(map(str, missing))}. Each `tool_use` block must have a corresponding `tool_result` block "
                "in the next message."
            )
        if following is not None:
            for j, tool_id in enumerate(answered):
                if tool_id not in used:
                    raise Refused(
                        f"messages.{i + 1}.content.{j}: unexpected `tool_use_id` found in `tool_result` blocks: "
                        f"{tool_id}. Each `tool_result` block must have a corresponding `tool_use` block in the "
                        "previous message."
                    )

    @staticmethod
    def _check_thinking_turn(call: Call) -> None:
        """The turn still running (its tool results are in the last user message) starts with its thinking."""
        messages = call.messages
        last = messages[-1]
        if not call.thinking:
            if last["role"] == "assistant" and isinstance(last["content"], list):
                for j, block in enumerate(last["content"]):
                    if block.get("type") in _THINKING:
                        raise Refused(
                            f"messages.{len(messages) - 1}.content.{j}: When thinking is disabled, an `assistant` "
                            "message in the final position cannot contain `thinking`. To use thinking blocks, enable "
                            "`thinking` in your request."
                        )
            return
        # The assistant turn runs back from the end over assistant messages and user messages of tool results.
        start = None
        for i in range(len(messages) - 1, -1, -1):
            message = messages[i]
            content = message.get("content")
            if message["role"] == "assistant":
                start = i
            elif not (isinstance(content, list) and any(b.get("type") == "tool_result" for b in content)):
                break
        if start is None:
            return
        turn = [b for m in messages[start:] if m["role"] == "assistant" for b in _blocks(m)]
        if not any(b.get("type") == "tool_use" for b in turn):
            return
        first = _blocks(messages[start])
        if not first or first[0].get("type") not in _THINKING:
            found = first[0].get("type") if first else "nothing"
            raise Refused(
                f"messages.{start}.content.0.type: Expected `thinking` or `redacted_thinking`, but found `{found}`. "
                "When `thinking` is enabled, a final `assistant` message must start with a thinking block "
                "(preceeding the lastmost set of `tool_use` and `tool_result` blocks). We recommend you include "
                "thinking blocks from previous turns. To avoid this requirement, disable `thinking`. Please consult "
                f"our documentation at {DOCS}"
            )


def _blocks(message: dict[str, Any]) -> list[dict[str, Any]]:
    content = message.get("content")
    return content if isinstance(content, list) else [{"type": "text", "text": content}]


def _error(refusal: Refused, headers: dict[str, str] | None = None) -> httpx.Response:
    body = {"type": "error", "error": {"type": refusal.kind, "message": refusal.message}, "request_id": "req_fake"}
    return httpx.Response(refusal.status, json=body, headers=headers)


def _sse(message: dict[str, Any]) -> bytes:
    """Anthropic's event sequence: message_start, a ping, each block's start/deltas/stop, message_delta with the
    output usage, message_stop."""
    usage = message["usage"]
    start = {**message, "content": [], "stop_reason": None, "usage": {**usage, "output_tokens": 1}}
    events: list[tuple[str, dict[str, Any]]] = [("message_start", {"type": "message_start", "message": start})]
    events.append(("ping", {"type": "ping"}))
    for index, block in enumerate(message["content"]):
        kind = block["type"]
        if kind == "thinking":
            opening: dict[str, Any] = {"type": "thinking", "thinking": "", "signature": ""}
            deltas = [{"type": "thinking_delta", "thinking": p} for p in _pieces(block["thinking"])]
            deltas.append({"type": "signature_delta", "signature": block["signature"]})
        elif kind == "redacted_thinking":
            opening, deltas = block, []
        elif kind == "text":
            opening = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": p} for p in _pieces(block["text"])]
        else:
            opening = {**block, "input": {}}
            deltas = [{"type": "input_json_delta", "partial_json": p} for p in _pieces(json.dumps(block["input"]))]
        events.append(
            ("content_block_start", {"type": "content_block_start", "index": index, "content_block": opening})
        )
        events += [("content_block_delta", {"type": "content_block_delta", "index": index, "delta": d}) for d in deltas]
        events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
    delta = {"stop_reason": message["stop_reason"], "stop_sequence": None}
    events.append(("message_delta", {"type": "message_delta", "delta": delta, "usage": usage}))
    events.append(("message_stop", {"type": "message_stop"}))
    return "".join(f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in events).encode()


def _pieces(text: str, size: int = 16) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]
