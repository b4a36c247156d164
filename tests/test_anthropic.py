"""Teams with Claude agents, on the Anthropic wire: `anthropic/<model>` participants reach the scripted Anthropic
Messages API (massgen_litellm.testing.anthropic_messages) through LiteLLM's real Anthropic transformation, JSON and SSE,
behind respx or a real socket. The fake holds every request to Anthropic's rules (thinking blocks and signatures,
tool_use/tool_result pairing, max_tokens and thinking budgets), so a request the real API would refuse fails here.

Also: the output-limit rule (a client's max_tokens bounds only its reply; every call within its model's ceiling) and
what counts as a provider refusing tools.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic as anthropic_sdk
import litellm
import pytest
import respx

from massgen_litellm.errors import MassGenInputError
from massgen_litellm.participant import _plain, _refuses_tools
from massgen_litellm.presets import PresetStore
from massgen_litellm.request import build_request
from massgen_litellm.testing import anthropic_messages, openai_chat
from massgen_litellm.testing.anthropic_messages import Call, FakeAnthropic
from massgen_litellm.testing.loopback import LoopbackServer
from massgen_litellm.testing.openai_chat import FakeLLM, Reply, answer, answer_then_vote, fail, text, vote
from tests.conftest import agent, write_preset

# Names LiteLLM knows (it sends `thinking` only to models it knows can think): the fake serves any name.
SONNET = "claude-sonnet-4-5-20250929"
HAIKU = "claude-haiku-4-5-20251001"
SONNET_MAX_OUTPUT = 64_000  # litellm.get_model_info("anthropic/claude-sonnet-4-5-20250929")["max_output_tokens"]
THINKING = {"type": "enabled", "budget_tokens": 2048}
QUESTION = [{"role": "user", "content": "What is 2 + 2?"}]
# A server of its own for each run: a shared one would carry this file's server state into test_mcp_tools.py.
OWN = {"name": "own", "command": sys.executable, "args": ["-m", "tests.mcp_server"], "per_run": True}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
# A client conversation after its app ran a tool the team proposed: that call carries no thinking of any agent's.
TOOL_HISTORY = [
    {"role": "user", "content": "Should I take an umbrella in Paris?"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "call_w1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
        ],
    },
    {"role": "tool", "tool_call_id": "call_w1", "content": "Rain all afternoon, 14 C."},
]


@pytest.fixture
def wires() -> Iterator[tuple[FakeAnthropic, FakeLLM]]:
    """The Anthropic fake (Sonnet's output ceiling enforced) and the OpenAI one, behind one respx router."""
    claude, openai = FakeAnthropic(max_output={SONNET: SONNET_MAX_OUTPUT}, cached_tokens=3), FakeLLM()
    with respx.mock(assert_all_called=False, assert_all_mocked=True) as router:
        router.post(f"{anthropic_messages.BASE}{anthropic_messages.PATH}").mock(side_effect=claude.handle)
        router.post(f"{openai_chat.BASE}/chat/completions").mock(side_effect=openai.handle)
        yield claude, openai


@pytest.fixture
def claude(wires: tuple[FakeAnthropic, FakeLLM]) -> FakeAnthropic:
    return wires[0]


def member(model: str, **fields: Any) -> dict[str, Any]:
    """An agent entry for a model of the Anthropic fake, protocol auto unless given."""
    return {
        "model": f"anthropic/{model}",
        "api_base": anthropic_messages.BASE,
        "api_key": anthropic_messages.KEY,
        **fields,
    }


def first_assistant_blocks(call: Call) -> list[str]:
    """The block types of each assistant message of a request."""
    return [b["type"] for b in call.blocks("assistant")]


def answers_then_votes_with_own_tool(call: Call) -> Reply:
    """Echo once with the agent's own MCP tool, answer from its result, then vote for agent1."""
    if call.is_presentation:
        return text(f"Final: {call.answers.get(call.agent_id or '', '?')}")
    if "agent1" in call.answers:
        return vote("agent1", "its work checks out")
    if not call.tool_results or all("echo:" not in r for r in call.tool_results):
        return Reply(tool="own__echo", arguments={"text": "four"})
    return answer(f"From my tool: {[r for r in call.tool_results if 'echo:' in r][-1]}")


# -- teams on the Anthropic wire -----------------------------------------------------------------------------------


async def test_a_claude_team_answers_votes_and_presents_with_the_usage_it_reported(wires, registered):
    claude, _ = wires
    claude.script(SONNET, answer_then_vote("4"))
    claude.script(HAIKU, answer_then_vote("4"))
    write_preset(registered, "claude", [member(SONNET), member(HAIKU)], skip_voting_when_unanimous=False)

    response = await litellm.acompletion(model="massgen/claude", messages=QUESTION)

    assert response.choices[0].message.content == "Final: 4"
    record = response.massgen
    assert [a["protocol"] for a in record["agents"]] == ["tools", "tools"] and record["tally"]["agent1"] == 2
    assert not claude.refusals
    # Our tools reached Anthropic as tools; the answers and votes came back as tool_use blocks.
    turn = next(c for c in claude.calls if not c.is_presentation)
    assert {"new_answer"} <= set(turn.tools) and all("input_schema" in t for t in turn.body["tools"])
    # LiteLLM counts cached prompt tokens as prompt tokens; the record's totals are the provider's own numbers.
    reported = claude.reported_usage()
    assert reported["cache_read_input_tokens"] == 3 * len(claude.calls)
    assert record["usage"]["prompt_tokens"] == reported["input_tokens"] + reported["cache_read_input_tokens"]
    assert record["usage"]["completion_tokens"] == reported["output_tokens"]


async def test_a_mixed_team_streams_the_claude_winners_presentation(wires, registered):
    claude, openai = wires
    claude.script(SONNET, answer_then_vote("Four, because two and two make four."))
    openai.script("gpt", answer_then_vote("4"))
    write_preset(registered, "mixed", [member(SONNET), agent("gpt", protocol="auto")], skip_voting_when_unanimous=False)

    stream = await litellm.acompletion(model="massgen/mixed", messages=QUESTION, stream=True)
    pieces = [c.choices[0].delta.content async for c in stream if c.choices and c.choices[0].delta.content]

    assert "".join(pieces) == "Final: Four, because two and two make four."
    presentation = next(c for c in claude.calls if c.is_presentation)
    assert presentation.body.get("stream") is True  # the winner's own SSE stream, passed through
    assert openai.calls and not claude.refusals


async def test_claude_agents_propose_a_call_of_the_clients_tool(claude, registered):
    def script(call: Call) -> Reply:
        if "agent1" in call.answers and call.agent_id != "agent1":
            return vote("agent1", "that is the call to make")
        return Reply(tool="get_weather", arguments={"city": "Paris"})

    claude.script(SONNET, script)
    write_preset(registered, "claude", [member(SONNET), member(SONNET)], skip_voting_when_unanimous=False)

    response = await litellm.acompletion(model="massgen/claude", messages=QUESTION, tools=[WEATHER])

    calls = response.choices[0].message.tool_calls
    assert [(c.function.name, json.loads(c.function.arguments)) for c in calls] == [("get_weather", {"city": "Paris"})]
    offered = next(t for t in claude.calls[0].body["tools"] if t["name"] == "get_weather")
    assert offered["input_schema"]["required"] == ["city"] and not claude.refusals


async def test_a_conversation_with_tool_results_reaches_claude_as_tool_blocks(claude, registered):
    claude.script(SONNET, answer_then_vote("Yes: rain all afternoon."))
    write_preset(registered, "claude", [member(SONNET), member(SONNET)], skip_voting_when_unanimous=False)

    response = await litellm.acompletion(model="massgen/claude", messages=TOOL_HISTORY, tools=[WEATHER])

    assert response.choices[0].message.content == "Final: Yes: rain all afternoon."
    # Without thinking, the history keeps its shape: the call as tool_use, the result as tool_result.
    first = claude.calls[0]
    assert "tool_use" in first_assistant_blocks(first) and "Rain all afternoon, 14 C." in first.tool_results
    assert not claude.refusals


@pytest.mark.parametrize("thinking", [None, THINKING], ids=["plain", "thinking"])
async def test_response_format_is_honoured_on_the_anthropic_wire(claude, registered, thinking):
    verdict = {"answer": 4, "sure": True}

    def script(call: Call) -> Reply:
        if call.is_presentation:
            if "json_tool_call" in call.tools:  # how LiteLLM asks Anthropic for a format: a tool to call
                return Reply(tool="json_tool_call", arguments=verdict)
            return text(json.dumps(verdict))
        return answer_then_vote(json.dumps(verdict))(call)

    claude.script(SONNET, script)
    extra = {"thinking": thinking} if thinking else {}
    write_preset(
        registered, "claude", [member(SONNET, **extra), member(SONNET, **extra)], skip_voting_when_unanimous=False
    )
    schema = {
        "type": "object",
        "properties": {"answer": {"type": "integer"}, "sure": {"type": "boolean"}},
        "required": ["answer", "sure"],
        "additionalProperties": False,
    }

    response = await litellm.acompletion(
        model="massgen/claude",
        messages=QUESTION,
        response_format={"type": "json_schema", "json_schema": {"name": "verdict", "schema": schema}},
    )

    assert json.loads(response.choices[0].message.content) == verdict
    assert response.massgen["presented_by"] == "agent1" and not claude.refusals
    presentation = next(c for c in claude.calls if c.is_presentation)
    assert "response_format" not in presentation.body  # translated, never passed through
    assert "json_tool_call" in presentation.tools or "output_format" in presentation.body


@pytest.mark.parametrize("thinking", [None, THINKING], ids=["plain", "thinking"])
async def test_claude_agents_use_their_own_mcp_tools(claude, registered, thinking):
    pytest.importorskip("mcp", reason="MCP tools need the `tools` extra: pip install -e '.[test,tools]'")
    claude.script(SONNET, answers_then_votes_with_own_tool)
    extra = {"thinking": thinking} if thinking else {}
    write_preset(
        registered,
        "claude",
        [member(SONNET, **extra), member(SONNET, **extra)],
        mcp_servers=[OWN],
        skip_voting_when_unanimous=False,
    )

    response = await litellm.acompletion(model="massgen/claude", messages=QUESTION)

    assert response.choices[0].message.content.startswith("Final: From my tool: echo: four\n[Work behind")
    record = response.massgen
    assert not claude.refusals, claude.refusals
    assert record["agents"][0]["protocol"] == "tools" and record["agents"][0]["protocol_note"] is None
    work = next(a for a in record["answers"] if a["agent_id"] == "agent1")["work"]
    assert work[0]["tool"] == "own__echo" and work[0]["result"] == "echo: four"
    if thinking:
        # The call after the tool result sent the agent's reply back whole: its signed thinking, then its tool_use.
        after = next(c for c in claude.calls if "echo: four" in c.tool_results and c.agent_id == "agent1")
        assert first_assistant_blocks(after)[:2] == ["thinking", "tool_use"]


# -- thinking agents through corrections and history ---------------------------------------------------------------


@pytest.mark.parametrize("redacted", [False, True], ids=["thinking", "redacted_thinking"])
async def test_a_thinking_agents_corrective_retry_carries_its_thinking(registered, redacted):
    claude = FakeAnthropic(redacted=redacted)

    def script(call: Call) -> Reply:
        if call.is_presentation:
            return text(f"Final: {call.answers.get('agent1', '?')}")
        if "agent1" in call.answers:
            return vote("agent1", "right")
        if call.agent_id == "agent1" and not call.is_retry:
            return Reply(tool="new_answer", arguments={"content": ""})  # unusable: corrected in the same turn
        return answer("4")

    claude.script(SONNET, script)
    write_preset(
        registered,
        "claude",
        [member(SONNET, thinking=THINKING), member(SONNET, thinking=THINKING)],
        skip_voting_when_unanimous=False,
    )
    with respx.mock(assert_all_mocked=True) as router:
        router.post(f"{anthropic_messages.BASE}{anthropic_messages.PATH}").mock(side_effect=claude.handle)
        response = await litellm.acompletion(model="massgen/claude", messages=QUESTION)

    assert response.choices[0].message.content == "Final: 4"
    assert not claude.refusals, claude.refusals
    retry = next(c for c in claude.calls if c.is_retry)
    kind = "redacted_thinking" if redacted else "thinking"
    assert first_assistant_blocks(retry)[:2] == [kind, "tool_use"]
    record = response.massgen
    assert record["agents"][0]["protocol"] == "tools" and record["agents"][0]["protocol_note"] is None
    assert any(c["kind"] == "retry" and c["error"] is None for c in record["calls"])


async def test_thinking_agents_answer_a_conversation_that_holds_a_tool_call_and_present_it(claude, registered):
    claude.script(SONNET, answer_then_vote("Yes: rain all afternoon."))
    write_preset(
        registered,
        "claude",
        [member(SONNET, thinking=THINKING), member(SONNET, thinking=THINKING)],
        skip_voting_when_unanimous=False,
    )

    stream = await litellm.acompletion(model="massgen/claude", messages=TOOL_HISTORY, tools=[WEATHER], stream=True)
    content = "".join([c.choices[0].delta.content async for c in stream if c.choices and c.choices[0].delta.content])

    assert content == "Final: Yes: rain all afternoon."
    assert not claude.refusals, claude.refusals
    # Every call kept its thinking, and saw the earlier call and its result, as text: they carry no thinking of its.
    assert all(c.body["thinking"] == THINKING for c in claude.calls)
    assert all("tool_use" not in first_assistant_blocks(c) for c in claude.calls)
    assert all("Rain all afternoon, 14 C." in json.dumps(c.messages) for c in claude.calls)
    assert any(c.is_presentation for c in claude.calls)


async def test_the_fake_refuses_what_anthropic_refuses(claude):
    """The rules the fake holds LiteLLM's requests to, seen through LiteLLM: each is a 400 with Anthropic's words."""
    base = {"model": f"anthropic/{SONNET}", "api_base": anthropic_messages.BASE, "api_key": anthropic_messages.KEY}
    claude.script(SONNET, lambda call: Reply(tool="get_weather", arguments={"city": "Paris"}))
    first = await litellm.acompletion(messages=QUESTION, tools=[WEATHER], thinking=THINKING, **base)
    message = first.choices[0].message
    call = message.tool_calls[0]
    bare = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.function.name, "arguments": call.function.arguments},
            }
        ],
    }
    result = {"role": "tool", "tool_call_id": call.id, "content": "sunny"}
    forged = {**bare, "thinking_blocks": [{**message.thinking_blocks[0], "thinking": "something else"}]}
    cases = [
        ([bare, result], THINKING, 4000, "Expected `thinking` or `redacted_thinking`, but found `tool_use`"),
        ([forged, result], THINKING, 4000, "Invalid `signature` in `thinking` block"),
        (
            [],
            {"type": "enabled", "budget_tokens": 4096},
            4096,
            "`max_tokens` must be greater than `thinking.budget_tokens`",
        ),
        ([], THINKING, SONNET_MAX_OUTPUT + 1, f"{SONNET_MAX_OUTPUT + 1} > {SONNET_MAX_OUTPUT}, which is the maximum"),
    ]
    for extra, thinking, max_tokens, words in cases:
        with pytest.raises(litellm.BadRequestError, match=words.replace("`", ".").replace("(", ".").replace(")", ".")):
            await litellm.acompletion(
                messages=[*QUESTION, *extra], tools=[WEATHER], thinking=thinking, max_tokens=max_tokens, **base
            )
    # The same continuation with the thinking blocks LiteLLM returned is accepted.
    whole = {**bare, "thinking_blocks": message.thinking_blocks}
    await litellm.acompletion(messages=[*QUESTION, whole, result], tools=[WEATHER], thinking=THINKING, **base)
    assert len(claude.refusals) == len(cases)


def test_the_anthropic_sdk_streams_from_the_fake_over_a_real_socket():
    """The real `anthropic` client reads the fake's SSE (thinking_delta, signature_delta...) and its errors."""
    with LoopbackServer(FakeAnthropic()) as server:
        server.fake.script(SONNET, lambda call: Reply(content="Four.", tool="get_weather", arguments={"city": "Paris"}))
        client = anthropic_sdk.Anthropic(base_url=server.base_url, api_key=anthropic_messages.KEY, max_retries=0)
        tools = [{"name": "get_weather", "input_schema": WEATHER["function"]["parameters"]}]
        kwargs: dict[str, Any] = {"model": SONNET, "max_tokens": 4000, "thinking": THINKING, "tools": tools}
        with client.messages.stream(messages=QUESTION, **kwargs) as stream:
            final = stream.get_final_message()
        assert [b.type for b in final.content] == ["thinking", "text", "tool_use"]
        assert final.content[0].signature == server.fake.sign(SONNET, final.content[0].thinking)
        assert final.stop_reason == "tool_use" and final.usage.output_tokens > 0
        tool_use = final.content[2]
        result = {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_use.id, "content": "sunny"}]}
        # Sent back whole, the turn goes on; without its thinking, the fake refuses it as Anthropic does.
        again = client.messages.create(
            messages=[*QUESTION, {"role": "assistant", "content": final.content}, result], **kwargs
        )
        assert again.content[-1].type == "tool_use"
        with pytest.raises(anthropic_sdk.BadRequestError, match="Expected `thinking` or `redacted_thinking`"):
            client.messages.create(
                messages=[*QUESTION, {"role": "assistant", "content": final.content[1:]}, result], **kwargs
            )


def test_a_claude_team_over_a_real_socket(registered):
    with LoopbackServer(FakeAnthropic()) as server:
        server.fake.script(SONNET, answer_then_vote("4"))
        entry = {"model": f"anthropic/{SONNET}", "api_base": server.base_url, "api_key": "any-key-will-do"}
        write_preset(registered, "net", [entry, {**entry, "thinking": THINKING}], skip_voting_when_unanimous=False)
        response = litellm.completion(model="massgen/net", messages=QUESTION)
    assert response.choices[0].message.content == "Final: 4"
    assert not server.fake.refusals and len(server.fake.calls) == len(response.massgen["calls"])


def test_a_tool_calls_thought_signature_travels_with_it():
    """Gemini's thought signature rides on the tool call (its provider fields, and its id): both are kept, so the
    call LiteLLM reads back in the same turn carries it."""
    from litellm.types.utils import ChatCompletionMessageToolCall, Function

    call = ChatCompletionMessageToolCall(
        id="call_1__thought__c2ln",
        type="function",
        function=Function(name="new_answer", arguments="{}"),
        provider_specific_fields={"thought_signature": "c2ln"},
    )
    plain = _plain(call)
    assert plain["id"] == "call_1__thought__c2ln" and plain["provider_specific_fields"] == {"thought_signature": "c2ln"}


# -- what counts as a refusal of tools -----------------------------------------------------------------------------


def _bad_request(message: str) -> litellm.BadRequestError:
    return litellm.BadRequestError(message=message, model="m", llm_provider="p")


@pytest.mark.parametrize(
    "message",
    [
        "registry.ollama.ai/library/gemma:2b does not support tools",
        "Unsupported parameter: 'tools' is not supported with this model.",
        "Function calling is not enabled for models/gemini-1.0-pro-vision",
        "This model does not support tools (function calling).",
        '"auto" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set',
        "tools param requires --jinja flag",
        "litellm.UnsupportedParamsError: ollama does not support parameters: ['tools'], for model=x",
    ],
)
def test_a_real_refusal_of_tools_is_one(message):
    assert _refuses_tools(_bad_request(message))


@pytest.mark.parametrize(
    "message",
    [
        "messages.1.content.0.type: Expected `thinking` or `redacted_thinking`, but found `tool_use`. When `thinking` "
        "is enabled, a final `assistant` message must start with a thinking block (preceeding the lastmost set of "
        "`tool_use` and `tool_result` blocks).",
        "messages.2: `tool_use` ids were found without `tool_result` blocks immediately after: toolu_01",
        "Requests which include `tool_use` or `tool_result` blocks must define tools.",
        "Thinking may not be enabled when tool_choice forces tool use.",
        "tools.0.custom.name: String should match pattern '^[a-zA-Z0-9_-]{1,128}$'",
        "Invalid schema for function 'get_weather': 'object' is not valid under any of the given schemas.",
        "litellm.UnsupportedParamsError: anthropic does not support parameters: ['thinking'], for model=claude-x",
        "This model's maximum context length is 8192 tokens; your messages and functions resulted in 9000 tokens.",
    ],
)
def test_a_400_that_only_mentions_tools_is_not_a_refusal(message):
    assert not _refuses_tools(_bad_request(message))


async def test_a_claude_agent_whose_history_is_refused_fails_and_is_not_switched_to_text(claude, registered):
    order = (
        "messages.1.content.0.type: Expected `thinking` or `redacted_thinking`, but found `tool_use`. When "
        "`thinking` is enabled, a final `assistant` message must start with a thinking block."
    )
    claude.script(SONNET, answer_then_vote("4"))
    claude.script(HAIKU, lambda call: fail(400, order))
    write_preset(registered, "claude", [member(SONNET), member(HAIKU)], skip_voting_when_unanimous=False)

    response = await litellm.acompletion(model="massgen/claude", messages=QUESTION)

    refused = response.massgen["agents"][1]
    assert refused["status"] == "failed" and refused["protocol"] == "tools" and refused["protocol_note"] is None
    assert "Expected `thinking`" in refused["error"]
    assert all("tools" in c.body for c in claude.calls_of(HAIKU))


# -- output limits ---------------------------------------------------------------------------------------------------


async def test_a_clients_max_tokens_bounds_only_the_presentation(claude, registered):
    long = "Four. " * 400
    claude.script(SONNET, answer_then_vote(long))
    write_preset(
        registered, "claude", [member(SONNET), member(SONNET, max_tokens=5000)], skip_voting_when_unanimous=False
    )

    response = await litellm.acompletion(model="massgen/claude", messages=QUESTION, max_tokens=300)

    turns = [c for c in claude.calls if not c.is_presentation]
    presentation = next(c for c in claude.calls if c.is_presentation)
    # Turns keep the agents' own limits (LiteLLM's default for agent1, its own 5000 for agent2), never the client's.
    assert {c.body["max_tokens"] for c in turns if c.agent_id == "agent2"} == {5000}
    assert 300 not in {c.body["max_tokens"] for c in turns}
    assert presentation.body["max_tokens"] == 300
    assert len(response.choices[0].message.content) < len(long)  # the provider stopped at the client's bound


async def test_a_verbatim_answer_is_not_cut_by_the_clients_max_tokens(claude, registered):
    long = "Four. " * 400
    claude.script(SONNET, answer_then_vote(long))
    write_preset(
        registered, "claude", [member(SONNET), member(SONNET)], final="winner_answer", skip_voting_when_unanimous=False
    )

    response = await litellm.acompletion(model="massgen/claude", messages=QUESTION, max_tokens=5)

    assert response.choices[0].message.content == long.strip()
    assert all(c.body["max_tokens"] > 5 for c in claude.calls)


async def test_no_call_asks_for_more_output_than_the_model_gives_and_the_record_says_so(claude, registered):
    claude.script(SONNET, answer_then_vote("4"))
    write_preset(
        registered, "claude", [member(SONNET, max_tokens=200_000), member(SONNET)], skip_voting_when_unanimous=False
    )

    response = await litellm.acompletion(model="massgen/claude", messages=QUESTION, max_completion_tokens=100_000)

    assert response.choices[0].message.content == "Final: 4" and not claude.refusals
    assert {c.body["max_tokens"] for c in claude.calls if c.agent_id == "agent1"} == {SONNET_MAX_OUTPUT}
    notes = response.massgen["notes"]
    assert f"agent1's calls: max_tokens=200000 is more than the {SONNET_MAX_OUTPUT} output tokens" in notes[0]
    assert sum("agent1's calls" in n for n in notes) == 1  # said once, not once per call
    assert any("agent1's presentation: max_tokens=" in n and f"sent {SONNET_MAX_OUTPUT}" in n for n in notes)


@pytest.mark.parametrize(
    ("client_max", "sent_thinking"),
    [(3000, {"type": "enabled", "budget_tokens": 1500}), (900, None)],
    ids=["budget-halved", "thinking-left-out"],
)
async def test_a_thinking_presenters_budget_stays_below_the_clients_max_tokens(
    claude, registered, client_max, sent_thinking
):
    claude.script(SONNET, answer_then_vote("4"))
    own = {"type": "enabled", "budget_tokens": 4096}
    write_preset(
        registered,
        "claude",
        [member(SONNET, thinking=own), member(SONNET, thinking=own)],
        skip_voting_when_unanimous=False,
    )

    response = await litellm.acompletion(model="massgen/claude", messages=QUESTION, max_tokens=client_max)

    assert response.massgen["presented_by"] == "agent1" and not claude.refusals
    presentation = next(c for c in claude.calls if c.is_presentation)
    assert presentation.body["max_tokens"] == client_max and presentation.body.get("thinking") == sent_thinking
    assert all(c.body["thinking"] == own for c in claude.calls if not c.is_presentation)
    assert any("agent1's presentation: thinking" in n for n in response.massgen["notes"])


def test_a_proxy_clients_max_tokens_reaches_only_the_presentation_and_stays_bounded(tmp_path: Path):
    presets = tmp_path / "presets"
    presets.mkdir()
    write_preset(presets, "team", [member(SONNET)], skip_voting_when_unanimous=False)
    store = PresetStore([presets])
    request = build_request("team", QUESTION, {"max_tokens": 1_000_000, "temperature": 0.5}, store, trusted=False)
    assert request.presentation_params == {"max_tokens": 1_000_000} and request.sampling == {"temperature": 0.5}
    # Above any model's output: refused before any call (and every call is clamped to its model's ceiling anyway).
    with pytest.raises(MassGenInputError, match="max_tokens"):
        build_request("team", QUESTION, {"max_tokens": 10**7}, store, trusted=False)
