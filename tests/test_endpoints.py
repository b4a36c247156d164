"""The team behind every endpoint of the real LiteLLM proxy: `/v1/messages` with the `anthropic` SDK, `/v1/responses`
with the `openai` SDK's `responses.create`, and `/v1/chat/completions`, streamed and not, each with a tool round trip.

Two things are checked on each: where the client finds the run's record (docs/records.md), and that the history the
client hands back reaches the agents without the team's own progress text (which streamed as reasoning) while the
user's messages, the tool calls and the tool results do.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from massgen_litellm.testing.loopback import LoopbackServer
from massgen_litellm.testing.openai_chat import Call, FakeLLM
from tests.conftest import weather_agent
from tests.proxy import MASTER_KEY, LiteLLMProxy

pytest.importorskip("fastapi", reason="the LiteLLM proxy's dependencies are missing: pip install -e '.[test,proxy]'")

RUN_ID_HEADER = "x-massgen-run-id"
QUESTION = "What is the weather in Paris?"
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
ANTHROPIC_TOOL = {"name": "get_weather", "description": "The current weather in a city.", "input_schema": SCHEMA}
RESPONSES_TOOL = {"type": "function", "name": "get_weather", "description": "The weather.", "parameters": SCHEMA}
CHAT_TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": SCHEMA}}
FINAL = "Final: In Paris it is 18 C, light rain."
# Words of the progress lines the team streams as reasoning (events.py): none may reach an agent.
PROGRESS = ("agents at work:", "is working (turn", "'s answer was chosen")


@pytest.fixture(scope="module")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("records")


@pytest.fixture(scope="module")
def proxy(upstream: LoopbackServer, log_dir: Path) -> Iterator[LiteLLMProxy]:
    """The real proxy, keeping every run's record on the server (MASSGEN_LOG_DIR), as an operator would."""
    with LiteLLMProxy(upstream.base_url, env={"MASSGEN_LOG_DIR": str(log_dir)}) as running:
        yield running


@pytest.fixture
def backend(upstream: LoopbackServer, proxy: LiteLLMProxy) -> FakeLLM:
    upstream.fake.scripts.clear()
    upstream.fake.calls.clear()
    upstream.fake.script("proxy-a", weather_agent)
    upstream.fake.script("proxy-b", weather_agent)
    return upstream.fake


@pytest.fixture
def claude(proxy: LiteLLMProxy) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=proxy.base_url, api_key=MASTER_KEY, max_retries=0, timeout=60)


def saved_record(log_dir: Path, run_id: str) -> dict[str, Any]:
    [path] = log_dir.glob(f"*-{run_id}.json")
    return json.loads(path.read_text())


def assert_clean_history(calls: list[Call]) -> None:
    """Every agent call of the second run saw the question, its own team's tool call and the app's result, in
    order, and nothing of the progress text the client handed back."""
    assert calls
    for call in calls:
        conversation = call.messages[:3]
        assert [m["role"] for m in conversation] == ["user", "assistant", "tool"]
        assert QUESTION in str(conversation[0]["content"])
        assert [c["function"]["name"] for c in conversation[1]["tool_calls"]] == ["get_weather"]
        assert conversation[2]["content"] == "18 C, light rain"
        assert not any(words in json.dumps(call.messages) for words in PROGRESS)
        assert not any({"reasoning_content", "thinking_blocks"} & set(message) for message in call.messages)


# /v1/messages: the Anthropic Messages API, through LiteLLM's bridge.


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_the_anthropic_sdk_tool_round_trip(
    backend: FakeLLM, claude: anthropic.Anthropic, log_dir: Path, stream: bool
) -> None:
    messages: list[dict[str, Any]] = [{"role": "user", "content": QUESTION}]
    first, headers, body = _messages(claude, messages, stream)

    assert first.stop_reason == "tool_use"
    [tool_use] = [block for block in first.content if block.type == "tool_use"]
    assert (tool_use.name, tool_use.input) == ("get_weather", {"city": "Paris"})
    # The progress, as Claude Code shows it: a thinking block (only a stream has one: it is the live view).
    thinking = [block.thinking for block in first.content if block.type == "thinking"]
    assert bool(thinking) == stream and all("every agent has voted" in t for t in thinking)
    # The bridge builds its reply from fixed fields and lets nothing of ours through: the run id header is the way
    # to the record, which the server keeps.
    run_id = headers[RUN_ID_HEADER]
    assert '"tally"' not in body and '"end_reason"' not in body
    record = saved_record(log_dir, run_id)
    assert record["run_id"] == run_id and record["end_reason"] == "consensus"
    assert record["answers"][0]["tool_calls"][0]["name"] == "get_weather"

    # The app hands the reply back whole, thinking block included, with its tool's result.
    messages.append({"role": "assistant", "content": [block.model_dump(exclude_none=True) for block in first.content]})
    messages.append(
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": tool_use.id, "content": "18 C, light rain"}],
        }
    )
    backend.calls.clear()
    second, headers, _ = _messages(claude, messages, stream)

    assert second.stop_reason == "end_turn"
    assert [block.text for block in second.content if block.type == "text"] == [FINAL]
    assert headers[RUN_ID_HEADER] != run_id
    assert_clean_history(backend.calls)


def _messages(
    claude: anthropic.Anthropic, messages: list[dict[str, Any]], stream: bool
) -> tuple[anthropic.types.Message, httpx.Headers, str]:
    """The reply, the response headers and the raw body of one /v1/messages request."""
    request: dict[str, Any] = {"model": "massgen/duo", "max_tokens": 4096, "messages": messages}
    request["tools"] = [ANTHROPIC_TOOL]
    if not stream:
        raw = claude.messages.with_raw_response.create(**request)
        return raw.parse(), raw.headers, raw.http_response.text
    with claude.messages.stream(**request) as events:
        body = "".join(event.model_dump_json() for event in events)
        return events.get_final_message(), events.response.headers, body


# /v1/responses: the OpenAI Responses API, through LiteLLM's bridge.


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_the_responses_api_tool_round_trip(backend: FakeLLM, proxy: LiteLLMProxy, log_dir: Path, stream: bool) -> None:
    client = proxy.client()
    items: list[dict[str, Any]] = [{"role": "user", "content": QUESTION}]
    first, headers = _responses(client, items, stream)

    [call] = [item for item in first.output if item.type == "function_call"]
    assert (call.name, json.loads(call.arguments)) == ("get_weather", {"city": "Paris"})
    # The bridge keeps the provider-specific fields of our reply: the record is there, and the run id in a header.
    record = (first.model_extra or {})["provider_specific_fields"]["massgen"]
    assert record["run_id"] == headers[RUN_ID_HEADER]
    assert record["end_reason"] == "consensus" and record["answers"][0]["tool_calls"][0]["name"] == "get_weather"
    assert saved_record(log_dir, record["run_id"])["usage"] == record["usage"]
    # The progress, streamed: a reasoning item.
    reasoning = [item for item in first.output if item.type == "reasoning"]
    assert bool(reasoning) == stream

    # The app hands every output item back, reasoning included, with its tool's result.
    items += [item.model_dump(exclude_none=True) for item in first.output]
    items.append({"type": "function_call_output", "call_id": call.call_id, "output": "18 C, light rain"})
    backend.calls.clear()
    second, headers = _responses(client, items, stream)

    assert second.output_text == FINAL
    assert (second.model_extra or {})["provider_specific_fields"]["massgen"]["run_id"] == headers[RUN_ID_HEADER]
    assert_clean_history(backend.calls)


def _responses(
    client: openai.OpenAI, items: list[dict[str, Any]], stream: bool
) -> tuple[openai.types.responses.Response, httpx.Headers]:
    request: dict[str, Any] = {"model": "massgen/duo", "input": items, "tools": [RESPONSES_TOOL]}
    if not stream:
        raw = client.responses.with_raw_response.create(**request)
        return raw.parse(), raw.headers
    with client.responses.with_streaming_response.create(**request, stream=True) as raw:
        events = list(raw.parse())
        headers = raw.headers
    [completed] = [event for event in events if event.type == "response.completed"]
    return completed.response, headers


# /v1/chat/completions: the record on the reply or its last content chunk; the run id in a header here too.


def test_chat_completions_streamed_reasoning_handed_back(backend: FakeLLM, proxy: LiteLLMProxy) -> None:
    client = proxy.client()
    messages: list[dict[str, Any]] = [{"role": "user", "content": QUESTION}]
    with client.chat.completions.with_streaming_response.create(
        model="massgen/duo", messages=messages, tools=[CHAT_TOOL], stream=True
    ) as raw:
        chunks = list(raw.parse())
        run_id = raw.headers[RUN_ID_HEADER]
    [record] = [c.model_extra["massgen"] for c in chunks if (c.model_extra or {}).get("massgen")]
    assert record["run_id"] == run_id
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    reasoning = "".join((d.model_extra or {}).get("reasoning_content") or "" for d in deltas)
    [tool_call] = [tc for d in deltas for tc in d.tool_calls or []]
    assert "every agent has voted" in reasoning

    # A client that keeps the reasoning it was shown, in both of LiteLLM's fields for it.
    messages.append(
        {
            "role": "assistant",
            "content": None,
            "reasoning_content": reasoning,
            "thinking_blocks": [{"type": "thinking", "thinking": reasoning, "signature": ""}],
            "tool_calls": [{"id": tool_call.id, "type": "function", "function": tool_call.function.model_dump()}],
        }
    )
    messages.append({"role": "tool", "tool_call_id": tool_call.id, "content": "18 C, light rain"})
    backend.calls.clear()
    raw_reply = client.chat.completions.with_raw_response.create(
        model="massgen/duo", messages=messages, tools=[CHAT_TOOL]
    )
    reply = raw_reply.parse()

    assert reply.choices[0].message.content == FINAL
    assert (reply.model_extra or {})["massgen"]["run_id"] == raw_reply.headers[RUN_ID_HEADER]
    assert reply.id == f"chatcmpl-{raw_reply.headers[RUN_ID_HEADER]}"
    assert_clean_history(backend.calls)


def test_a_client_cannot_choose_the_run_id_header(backend: FakeLLM, proxy: LiteLLMProxy) -> None:
    """The header comes only from the run: a client's own `massgen_run_id` in its metadata is never echoed."""
    client = proxy.client()
    forged = {"massgen_run_id": "chosen-by-the-client"}
    question = [{"role": "user", "content": QUESTION}]
    raw = client.chat.completions.with_raw_response.create(model="massgen/duo", messages=question, metadata=forged)
    assert (
        raw.headers[RUN_ID_HEADER] == (raw.parse().model_extra or {})["massgen"]["run_id"] != forged["massgen_run_id"]
    )
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model="massgen/nope", messages=question, metadata=forged)  # type: ignore[arg-type]
    assert RUN_ID_HEADER not in refused.value.response.headers
