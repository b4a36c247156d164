"""Gemini agents on the Gemini API's own wire format: `gemini/<name>` participants through LiteLLM's real Gemini
transformation, against the scripted Gemini backend (massgen_litellm/testing/gemini.py) behind respx and on a real
127.0.0.1 socket. Alone and beside OpenAI agents; protocol auto; streamed and not; the caller's tools, a
conversation with tool results, `response_format`; and a thinking agent whose thought signature must travel back
through a corrective retry.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import litellm
import pytest
import respx

from massgen_litellm.testing.gemini import BASE as GEMINI_BASE
from massgen_litellm.testing.gemini import KEY as GEMINI_KEY
from massgen_litellm.testing.gemini import SKIP_SIGNATURE, FakeGemini, GeminiCall
from massgen_litellm.testing.loopback import LoopbackServer
from massgen_litellm.testing.openai_chat import BASE, Call, FakeLLM, Reply, answer, answer_then_vote, text, vote
from tests.conftest import agent, weather_agent, write_preset

QUESTION = [{"role": "user", "content": "What is the weather in Paris?"}]
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def gemini_agent(model: str, **fields: Any) -> dict[str, Any]:
    """A Gemini agent entry on protocol auto: LiteLLM needs a key even with a custom `api_base`, which ends in
    /v1beta."""
    return {"model": f"gemini/{model}", "api_base": GEMINI_BASE, "api_key": GEMINI_KEY, **fields}


@pytest.fixture
def backends() -> Iterator[tuple[FakeLLM, FakeGemini]]:
    """The OpenAI and the Gemini backends, both behind respx; nothing else is reachable."""
    chat, gemini = FakeLLM(), FakeGemini()
    with respx.mock(assert_all_called=False, assert_all_mocked=True) as router:
        router.post(f"{BASE}/chat/completions").mock(side_effect=chat.handle)
        router.route(url__startswith=GEMINI_BASE).mock(side_effect=gemini.handle)
        yield chat, gemini


@pytest.fixture
def gemini(backends: tuple[FakeLLM, FakeGemini]) -> FakeGemini:
    return backends[1]


async def ask(model: str, stream: bool, **params: Any) -> tuple[str | None, list[Any], dict[str, Any]]:
    """The reply's text, its tool calls and the run's record, streamed or not."""
    if not stream:
        response = await litellm.acompletion(model=model, **params)
        message = response.choices[0].message
        return message.content, message.tool_calls or [], response.massgen
    chunks = [chunk async for chunk in await litellm.acompletion(model=model, stream=True, **params)]
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    calls = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or []]
    [record] = [c.massgen for c in chunks if getattr(c, "massgen", None)]
    return content or None, calls, record


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
async def test_a_team_of_gemini_agents(registered, gemini: FakeGemini, stream: bool) -> None:
    gemini.script("gem-a", answer_then_vote("Paris: 18 C, light rain."))
    gemini.script("gem-b", answer_then_vote("Paris: 18 C, light rain."))
    write_preset(registered, "gems", [gemini_agent("gem-a"), gemini_agent("gem-b")], skip_voting_when_unanimous=False)

    content, _, record = await ask("massgen/gems", stream, messages=QUESTION)

    assert content == "Final: Paris: 18 C, light rain."
    assert record["end_reason"] == "consensus" and record["winner"] == "agent1"
    # Protocol auto: LiteLLM knows Gemini calls tools, and the fake's functionCall parts were read as votes.
    assert [a["protocol"] for a in record["agents"]] == ["tools", "tools"]
    assert record["usage"] == gemini.reported_usage()
    assert all(call.api_key == GEMINI_KEY for call in gemini.calls)
    [presentation] = [c for c in gemini.calls if c.is_presentation]
    assert isinstance(presentation, GeminiCall) and presentation.streamed == stream  # the winner's own stream
    turns = [c for c in gemini.calls if not c.is_presentation]
    assert all(set(c.tools) == ({"new_answer", "vote"} if c.answers else {"new_answer"}) for c in turns)
    assert not any(c.streamed for c in turns)


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
async def test_a_mixed_team_of_gemini_and_openai_agents(
    registered, backends: tuple[FakeLLM, FakeGemini], stream: bool
) -> None:
    chat, gemini = backends
    chat.script("gpt", answer_then_vote("Paris: 18 C."))
    gemini.script("gem", answer_then_vote("Paris: 18 C, light rain.", for_agent="agent1"))
    write_preset(
        registered, "mixed", [agent("gpt", protocol="auto"), gemini_agent("gem")], skip_voting_when_unanimous=False
    )

    content, _, record = await ask("massgen/mixed", stream, messages=QUESTION)

    assert content == "Final: Paris: 18 C."
    assert [a["model"] for a in record["agents"]] == ["openai/gpt", "gemini/gem"]
    assert record["tally"] == {"agent1": 2, "agent2": 0}
    both = chat.reported_usage()
    assert record["usage"] == {name: both[name] + gemini.reported_usage()[name] for name in both}
    # Each saw the other's answer: the Gemini agent voted on what the OpenAI agent answered.
    assert any("Paris: 18 C." in c.answers.get("agent1", "") for c in gemini.calls)


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
async def test_client_tools_and_a_conversation_with_tool_results(registered, gemini: FakeGemini, stream: bool) -> None:
    gemini.script("gem-a", weather_agent)
    gemini.script("gem-b", weather_agent)
    write_preset(registered, "gems", [gemini_agent("gem-a"), gemini_agent("gem-b")], skip_voting_when_unanimous=False)

    _, calls, record = await ask("massgen/gems", stream, messages=QUESTION, tools=[WEATHER])
    assert record["winner"] == "agent1" and record["answers"][0]["tool_calls"][0]["name"] == "get_weather"

    [call] = calls
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris"}
    assert set(gemini.calls[0].tools) == {"get_weather", "new_answer"}
    messages = [
        *QUESTION,
        {
            "role": "assistant",
            "tool_calls": [{"id": call.id, "type": "function", "function": call.function.model_dump()}],
        },
        {"role": "tool", "tool_call_id": call.id, "content": "18 C, light rain"},
    ]
    gemini.calls.clear()

    content, calls, _ = await ask("massgen/gems", stream, messages=messages, tools=[WEATHER])

    assert content == "Final: In Paris it is 18 C, light rain." and not calls
    # Gemini got the history in its own shapes: the call as a model functionCall, the result as a functionResponse.
    contents = gemini.calls[0].body["contents"]
    assert [c["role"] for c in contents[:3]] == ["user", "model", "user"]
    assert contents[1]["parts"][0]["functionCall"] == {
        "name": "get_weather",
        "args": {"city": "Paris"},
        **_id(contents),
    }
    assert contents[2]["parts"][0]["functionResponse"]["response"] == {"content": "18 C, light rain"}


def _id(contents: list[dict[str, Any]]) -> dict[str, Any]:
    """The call id LiteLLM forwards on a functionCall, if it does (it pairs the call and its response)."""
    call = contents[1]["parts"][0]["functionCall"]
    return {"id": call["id"]} if "id" in call else {}


async def test_response_format_reaches_gemini_as_its_json_mode(registered, gemini: FakeGemini) -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "celsius": {"type": "integer"}},
        "required": ["city", "celsius"],
        "additionalProperties": False,
    }
    reply = json.dumps({"city": "Paris", "celsius": 18})

    def json_agent(call: Call) -> Reply:
        if call.is_presentation:
            return text(reply)
        return vote("agent1") if "agent1" in call.answers else answer(reply)

    # Models LiteLLM knows to take a schema (for a name it does not know, it sends JSON mode without one).
    gemini.script("gemini-2.5-flash", json_agent)
    gemini.script("gemini-2.5-pro", json_agent)
    write_preset(
        registered,
        "gems",
        [gemini_agent("gemini-2.5-flash"), gemini_agent("gemini-2.5-pro")],
        skip_voting_when_unanimous=False,
    )
    response_format = {"type": "json_schema", "json_schema": {"name": "weather", "schema": schema, "strict": True}}

    response = await litellm.acompletion(model="massgen/gems", messages=QUESTION, response_format=response_format)

    assert json.loads(response.choices[0].message.content) == {"city": "Paris", "celsius": 18}
    [presentation] = [c for c in gemini.calls if c.is_presentation]
    config = presentation.body["generationConfig"]
    assert config["responseMimeType"] == "application/json"
    assert (config.get("responseJsonSchema") or config.get("responseSchema"))["required"] == ["city", "celsius"]


async def test_a_thinking_gemini_agent_keeps_its_thought_signature_through_a_corrective_retry(
    registered, gemini: FakeGemini
) -> None:
    """Its first reply votes for an agent that does not exist: the retry sends that functionCall back with the
    correction, and Gemini 3 wants the signature it gave with it, the real one (not Google's skip placeholder)."""

    def sloppy(call: Call) -> Reply:
        if call.is_presentation:
            return text(f"Final: {call.answers.get('agent1', '')}")
        if not call.is_retry and not call.answers:
            return vote("agent7", "a vote for nobody")
        return vote("agent1") if "agent1" in call.answers else answer("Paris: 18 C.")

    gemini.script("gem-thinker", sloppy, thinking=True)
    write_preset(registered, "thinker", [gemini_agent("gem-thinker")], skip_voting_when_unanimous=False)

    response = await litellm.acompletion(model="massgen/thinker", messages=QUESTION)

    assert response.choices[0].message.content == "Final: Paris: 18 C."
    first, retry = gemini.calls[0], gemini.calls[1]
    assert isinstance(first, GeminiCall) and isinstance(retry, GeminiCall)
    assert retry.is_retry and not retry.problems
    assert first.issued is not None and retry.signatures == [first.issued]
    assert SKIP_SIGNATURE not in retry.signatures
    # Its thoughts count as output; they are not an answer.
    assert response.massgen["usage"] == gemini.reported_usage()
    assert all("**Thinking**" not in a["content"] for a in response.massgen["answers"])


def test_gemini_agents_over_a_real_socket(registered) -> None:
    with LoopbackServer(FakeGemini()) as server:
        assert server.base_url.endswith("/v1beta")
        server.fake.script("gem-a", answer_then_vote("Paris."))
        server.fake.script("gem-b", answer_then_vote("Paris."), thinking=True)
        entries = [{**gemini_agent(m), "api_base": server.base_url} for m in ("gem-a", "gem-b")]
        write_preset(registered, "gems", entries, skip_voting_when_unanimous=False)

        chunks = list(litellm.completion(model="massgen/gems", messages=QUESTION, stream=True))  # sync, this time

        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Final: Paris."
        assert {c.model for c in server.fake.calls} == {"gem-a", "gem-b"}
        log = httpx.get(f"{server.base_url}/calls").json()  # the call log, as another process reads it
        assert len(log) == len(server.fake.calls) and {entry["kind"] for entry in log} >= {"first", "present"}


# The fake's own rules, as the API states them.


async def test_the_fake_refuses_what_the_gemini_api_refuses(gemini: FakeGemini) -> None:
    gemini.script("gem-thinker", answer_then_vote("x"), thinking=True)
    url = f"{GEMINI_BASE}/models/gem-thinker:generateContent"
    headers = {"x-goog-api-key": GEMINI_KEY}
    question = {"role": "user", "parts": [{"text": "Weather?"}]}
    unsigned = {"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": {}}}]}
    result = {"functionResponse": {"name": "get_weather", "response": {"content": "18 C"}}}
    async with httpx.AsyncClient() as client:
        missing = await client.post(
            url, headers=headers, json={"contents": [question, unsigned, {"role": "user", "parts": [result]}]}
        )
        forged = {"role": "model", "parts": [{**unsigned["parts"][0], "thoughtSignature": "Zm9yZ2Vk"}]}
        corrupted = await client.post(
            url, headers=headers, json={"contents": [question, forged, {"role": "user", "parts": [result]}]}
        )
        skipped = {"role": "model", "parts": [{**unsigned["parts"][0], "thoughtSignature": SKIP_SIGNATURE}]}
        placeholder = await client.post(
            url, headers=headers, json={"contents": [question, skipped, {"role": "user", "parts": [result]}]}
        )
        uneven = await client.post(
            url, headers=headers, json={"contents": [question, skipped, {"role": "user", "parts": [result, result]}]}
        )
        keyless = await client.post(url, json={"contents": [question]})
        # A previous turn (before the last user text) is not validated, as the API's rule says.
        earlier = await client.post(
            url, headers=headers, json={"contents": [question, unsigned, {"role": "user", "parts": [result]}, question]}
        )

    assert missing.status_code == 400 and "missing a `thought_signature`" in missing.json()["error"]["message"]
    assert corrupted.status_code == 400 and "Corrupted thought signature" in corrupted.json()["error"]["message"]
    assert placeholder.status_code == 200 and earlier.status_code == 200
    assert uneven.status_code == 400 and "number of function response parts" in uneven.json()["error"]["message"]
    assert keyless.status_code == 403


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
async def test_thinking_gemini_3_agents_on_a_conversation_that_holds_tool_calls(
    registered, gemini: FakeGemini, stream: bool
) -> None:
    """The app's second request holds the team's earlier tool call (which no Gemini signed) and its result: a Gemini 3
    model refuses an unsigned call in the current turn, and LiteLLM, knowing the model by name, sends Google's
    placeholder signature for it. Every turn and the presentation go through."""
    for name in ("gemini-3-flash-preview", "gemini-3-pro-preview"):
        gemini.script(name, weather_agent, thinking=True)
    write_preset(
        registered,
        "gems",
        [gemini_agent("gemini-3-flash-preview"), gemini_agent("gemini-3-pro-preview")],
        skip_voting_when_unanimous=False,
    )
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
    messages = [
        *QUESTION,
        {"role": "assistant", "content": None, "reasoning_content": "agent1 is working (turn 1)", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18 C, light rain"},
    ]

    content, _, record = await ask("massgen/gems", stream, messages=messages, tools=[WEATHER])

    assert content == "Final: In Paris it is 18 C, light rain."
    assert [a["protocol"] for a in record["agents"]] == ["tools", "tools"] and not record["notes"]
    assert all(not c.problems and c.signatures[:1] == [SKIP_SIGNATURE] for c in gemini.calls)
    assert any(c.is_presentation and c.streamed == stream for c in gemini.calls)
