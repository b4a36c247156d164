"""A scripted Gemini API backend (Google AI Studio's `generateContent`), keyed by model name.

Participants are ordinary LiteLLM models, `gemini/<name>` with an `api_base` ending in `/v1beta` (and some api_key:
LiteLLM wants one even with a custom base), so every call goes through LiteLLM's real Gemini transformation and reaches
this backend over HTTP: `POST {api_base}/models/<name>:generateContent` and, streamed,
`:streamGenerateContent?alt=sse`.

Scripts are the same functions of the request as for the OpenAI fake (`openai_chat.Script`): a `GeminiCall` shows the
request's `contents` as chat messages (`messages`, `tools`, `answers`...), so one script drives a mixed team. The reply
goes out in Gemini's shapes: `text` and `functionCall` parts, `usageMetadata` (promptTokenCount,
candidatesTokenCount, thoughtsTokenCount, totalTokenCount) and, streamed, one `data:` event per piece with no
`[DONE]`.

A model registered with `thinking=True` behaves like a Gemini 3 thinking model: each reply starts with a `thought`
part (`"thought": true`), carries a `thoughtSignature` on its first `functionCall` part (on the last part when it
calls nothing) and spends `thoughtsTokenCount`. As the API does (https://ai.google.dev/gemini-api/docs/thought-
signatures), it refuses a request whose *current turn* (everything after the last user content with text) holds a
model `functionCall` step without its signature ("Function call `X` in the `N.` content block is missing a
`thought_signature`") or with one it did not issue ("Corrupted thought signature"). Google's placeholder
`SKIP_SIGNATURE` passes, as it does there; LiteLLM sends it in place of a missing signature, so `GeminiCall.signatures`
is how a test tells a signature that travelled back from one that was lost. Every model refuses, as the API does, a
function-response turn whose count of `functionResponse` parts differs from the `functionCall` parts before it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from massgen_litellm.testing.openai_chat import CUT_HEADER, Call, FakeLLM, Reply, Script, play

BASE = "http://fake-gemini.test/v1beta"
KEY = "gemini-test-not-a-real-key"
# Google's documented last resort for a history without signatures ("will negatively impact model performance"):
# accepted, as by the API; LiteLLM sends it on its own when a call it replays has no signature.
SKIP_SIGNATURE = base64.b64encode(b"skip_thought_signature_validator").decode()
_ROUTE = re.compile(r"/models/([^/:]+):(generateContent|streamGenerateContent)$")


@dataclass
class GeminiCall(Call):
    """One `generateContent` request as the backend saw it; `body` is Gemini's, the properties read it as chat."""

    streamed: bool = False
    issued: str | None = None  # the thoughtSignature the reply carried
    problems: list[str] = field(default_factory=list)  # what the backend refused in the request, if anything

    @property
    def api_key(self) -> str:
        return self.headers.get("x-goog-api-key", "")

    @property
    def messages(self) -> list[dict[str, Any]]:
        return chat_messages(self.body)

    @property
    def tools(self) -> list[str]:
        return [d["name"] for t in self.body.get("tools") or [] for d in t.get("functionDeclarations") or []]

    @property
    def signatures(self) -> list[str]:
        """Every thoughtSignature the request carries, in order."""
        return [
            part["thoughtSignature"]
            for content in self.body.get("contents") or []
            for part in content.get("parts") or []
            if "thoughtSignature" in part
        ]


def chat_messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    """A Gemini request's system instruction and contents as OpenAI-style chat messages, for scripts."""
    messages: list[dict[str, Any]] = []
    system = body.get("systemInstruction")
    if system:
        messages.append({"role": "system", "content": "".join(p.get("text", "") for p in system.get("parts") or [])})
    for content in body.get("contents") or []:
        parts = content.get("parts") or []
        text = "".join(p["text"] for p in parts if "text" in p and not p.get("thought"))
        calls = [p["functionCall"] for p in parts if "functionCall" in p]
        results = [p["functionResponse"] for p in parts if "functionResponse" in p]
        if content.get("role") == "model":
            message: dict[str, Any] = {"role": "assistant", "content": text or None}
            if calls:
                message["tool_calls"] = [
                    {
                        "id": c.get("id") or f"call_{i}",
                        "type": "function",
                        "function": {"name": c["name"], "arguments": json.dumps(c.get("args") or {})},
                    }
                    for i, c in enumerate(calls)
                ]
            messages.append(message)
        elif results:
            messages += [
                {"role": "tool", "tool_call_id": r.get("id"), "name": r.get("name"), "content": _result_text(r)}
                for r in results
            ]
        else:
            messages.append({"role": "user", "content": text})
    return messages


# Values that are the caller's own data (arguments, results, schemas): their keys are never renamed.
_OPAQUE = frozenset({"args", "response", "parameters", "parametersJsonSchema", "responseSchema", "responseJsonSchema"})


def camel_case(value: Any) -> Any:
    """A request body with proto field names in camelCase: the API accepts both spellings (LiteLLM sends
    `function_call`, `system_instruction`...), the backend reads one."""
    if isinstance(value, list):
        return [camel_case(item) for item in value]
    if not isinstance(value, dict):
        return value
    renamed = {}
    for key, item in value.items():
        key = re.sub(r"_([a-z])", lambda m: m.group(1).upper(), key)
        renamed[key] = item if key in _OPAQUE else camel_case(item)
    return renamed


def _result_text(result: dict[str, Any]) -> str:
    response = result.get("response")
    if isinstance(response, dict) and set(response) <= {"content", "output", "result"} and response:
        value = next(iter(response.values()))
        return value if isinstance(value, str) else json.dumps(value)
    return json.dumps(response)


class FakeGemini(FakeLLM):
    """The Gemini API, scripted. `script(model, script, thinking=True)` makes a thinking model (see the module)."""

    base_path = "/v1beta"

    def __init__(self, default: Script | None = None) -> None:
        super().__init__(default)
        self.thinking: set[str] = set()
        self._issued: dict[str, str] = {}  # thoughtSignature -> the model that issued it

    def script(self, model: str, script: Script, thinking: bool = False) -> str:
        super().script(model, script)
        if thinking:
            self.thinking.add(model)
        return f"gemini/{model}"

    def reported_usage(self) -> dict[str, int]:
        """What the provider said, in OpenAI terms: thoughts are output tokens (they are billed as such), and they are
        the reasoning tokens (`completion_tokens_details.reasoning_tokens`), as for `FakeLLM.reported_usage`."""
        totals = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0, "reasoning_tokens": 0}
        for call in self.calls:
            usage = call.usage or {}
            totals["prompt_tokens"] += usage.get("promptTokenCount", 0)
            totals["completion_tokens"] += usage.get("candidatesTokenCount", 0) + usage.get("thoughtsTokenCount", 0)
            totals["total_tokens"] += usage.get("totalTokenCount", 0)
            totals["reasoning_tokens"] += usage.get("thoughtsTokenCount", 0)
        return totals

    async def handle(self, request: httpx.Request) -> httpx.Response:
        route = _ROUTE.search(request.url.path)
        if request.method != "POST" or route is None:
            return _error(404, "NOT_FOUND", f"no route {request.method} {request.url.path}")
        model, method = route.groups()
        body = camel_case(json.loads(request.content))
        streamed = method == "streamGenerateContent"
        call = GeminiCall(model=model, body=body, started=time.monotonic(), headers=dict(request.headers))
        call.streamed = streamed
        self.calls.append(call)
        self._arrived.set()
        if not call.api_key and not request.url.params.get("key"):
            return _error(403, "PERMISSION_DENIED", "Method doesn't allow unregistered callers. Please use API Key.")
        if streamed and request.url.params.get("alt") != "sse":
            return _error(400, "INVALID_ARGUMENT", "this fake streams only as server-sent events (alt=sse)")
        script = self.scripts.get(model, self.default)
        if script is None:
            return _error(404, "NOT_FOUND", f"models/{model} is not found for API version v1beta")
        call.problems = self._problems(model, body)
        if call.problems:
            call.ended = time.monotonic()
            return _error(400, "INVALID_ARGUMENT", call.problems[0])
        reply = await play(script, call)
        if reply.status != 200:
            status = {400: "INVALID_ARGUMENT", 429: "RESOURCE_EXHAUSTED", 503: "UNAVAILABLE"}.get(
                reply.status, "INTERNAL"
            )
            return _error(reply.status, status, reply.error, reply.headers)
        if reply.body is not None:
            return httpx.Response(200, content=reply.body, headers={"content-type": "application/json"})
        parts = self._parts(call, reply)
        call.usage = _usage(body, parts)
        finish = "STOP"
        if streamed:
            response = _sse(parts, call.usage, finish, model)
            if reply.cut_after is not None:
                response.headers[CUT_HEADER] = str(reply.cut_after)
            return response
        return httpx.Response(200, json=_response(parts, call.usage, finish, model))

    def _parts(self, call: GeminiCall, reply: Reply) -> list[dict[str, Any]]:
        thinking = call.model in self.thinking
        serial = self.calls.index(call) + 1
        parts: list[dict[str, Any]] = []
        if thinking:
            parts.append({"text": f"**Thinking** about call {serial}.", "thought": True})
        if reply.content:
            parts.append({"text": reply.content})
        calls = [(reply.tool, reply.arguments), *reply.more_tools] if reply.tool is not None else []
        for name, arguments in calls:
            args = json.loads(arguments) if isinstance(arguments, str) else arguments
            parts.append({"functionCall": {"name": name, "args": args}})
        if thinking:
            # The signature goes on the first functionCall part; with no call, on the last part (the docs' rule).
            signed = next((p for p in parts if "functionCall" in p), parts[-1])
            signature = base64.b64encode(hashlib.sha256(f"{call.model}/{serial}".encode()).digest()).decode()
            signed["thoughtSignature"] = signature
            self._issued[signature] = call.model
            call.issued = signature
        return parts

    def _problems(self, model: str, body: dict[str, Any]) -> list[str]:
        """What the real API refuses in a request's contents: unanswered function calls, and, for thinking models,
        function-call steps of the current turn without their signature."""
        problems = []
        contents = body.get("contents") or []
        for index, content in enumerate(contents[1:], start=1):
            results = [p for p in content.get("parts") or [] if "functionResponse" in p]
            calls = [p for p in contents[index - 1].get("parts") or [] if "functionCall" in p]
            if results and len(results) != len(calls):
                problems.append(
                    "Please ensure that the number of function response parts is equal to the number of function "
                    "call parts of the function call turn."
                )
        if model in self.thinking:
            start = max(
                (
                    i
                    for i, c in enumerate(contents)
                    if c.get("role") == "user" and any("text" in p for p in c.get("parts") or [])
                ),
                default=0,
            )
            for index, content in enumerate(contents[start:], start=start):
                calls = [p for p in content.get("parts") or [] if "functionCall" in p]
                if content.get("role") != "model" or not calls:
                    continue
                signature = calls[0].get("thoughtSignature")
                if signature is None:
                    problems.append(
                        f"Function call `{calls[0]['functionCall']['name']}` in the {index + 1}. content block is "
                        "missing a `thought_signature`. Learn more: https://ai.google.dev/gemini-api/docs/thought-signatures"
                    )
                elif signature != SKIP_SIGNATURE and self._issued.get(signature) != model:
                    problems.append(f"Corrupted thought signature in the {index + 1}. content block.")
        return problems


def _usage(body: dict[str, Any], parts: list[dict[str, Any]]) -> dict[str, int]:
    """Deterministic, request-dependent token counts (so sums are checkable and not constants)."""
    prompt = (
        len(json.dumps(body.get("contents") or [])) // 4 + len(json.dumps(body.get("systemInstruction") or "")) // 4 + 1
    )
    thoughts = sum(len(p["text"]) for p in parts if p.get("thought")) // 4
    candidates = len(json.dumps([p for p in parts if not p.get("thought")])) // 4 + 1
    usage = {
        "promptTokenCount": prompt,
        "candidatesTokenCount": candidates,
        "totalTokenCount": prompt + candidates + thoughts,
    }
    if thoughts:
        usage["thoughtsTokenCount"] = thoughts
    return usage


def _response(parts: list[dict[str, Any]], usage: dict[str, int], finish: str | None, model: str) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
    if finish:
        candidate["finishReason"] = finish
    return {"candidates": [candidate], "usageMetadata": usage, "modelVersion": model, "responseId": "fake-gemini"}


def _sse(parts: list[dict[str, Any]], usage: dict[str, int], finish: str, model: str) -> httpx.Response:
    """One event per part, text split in pieces; every event has usage so far, the last one the finish reason."""
    pieces: list[dict[str, Any]] = []
    for part in parts:
        if "text" in part and not part.get("thought") and len(part["text"]) > 4:
            text = part["text"]
            chunks = [text[i : i + 4] for i in range(0, len(text), 4)]
            # A signature on a text part comes with its last piece.
            pieces += [{"text": chunk} for chunk in chunks[:-1]]
            pieces.append({**part, "text": chunks[-1]})
        else:
            pieces.append(part)
    partial = {k: v for k, v in usage.items() if k != "candidatesTokenCount"}
    events = [_response([piece], partial, None, model) for piece in pieces[:-1]]
    events.append(_response([pieces[-1]], usage, finish, model))
    data = "".join(f"data: {json.dumps(e)}\r\n\r\n" for e in events)
    return httpx.Response(200, content=data.encode(), headers={"content-type": "text/event-stream"})


def _error(status: int, kind: str, message: str, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(
        status, json={"error": {"code": status, "message": message, "status": kind}}, headers=headers or {}
    )
