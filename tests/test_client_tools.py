"""The team as the model of an agent app, in process: the caller's tools, its tool results, structured output.

The agents are scripted models on LiteLLM's real OpenAI path (respx). tests/test_agent_apps.py does the same through
the real proxy with the official SDK and an agent framework.
"""

from __future__ import annotations

import json

import litellm
import pytest

from massgen_litellm.testing.openai_chat import Call, Reply, answer, text, vote
from tests.conftest import agent, write_preset

QUESTION = [{"role": "user", "content": "What is the weather in Paris?"}]
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["C", "F"]}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}
TIME = {
    "type": "function",
    "function": {"name": "get_time", "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}}},
}


def call_weather(city: str = "Paris", **more: object) -> Reply:
    return Reply(tool="get_weather", arguments={"city": city, **more})


def proposer(proposal: Reply) -> object:
    """agent1's script: propose, then vote for its own proposal."""
    return lambda call: vote("agent1") if "agent1" in call.answers else proposal


def voter(call: Call) -> Reply:
    """agent2's script: vote for agent1 once it has answered, else a plain answer."""
    return vote("agent1", "agent1 calls the right tool") if "agent1" in call.answers else answer("I cannot know.")


@pytest.fixture
def team(fake, registered):
    write_preset(registered, "team", [agent("a"), agent("b")])
    return fake


async def test_the_winning_proposal_comes_back_as_tool_calls(team):
    team.script("a", proposer(call_weather(unit="C")))
    team.script("b", voter)

    response = await litellm.acompletion(model="massgen/team", messages=QUESTION, tools=[WEATHER, TIME])

    choice = response.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    [tool_call] = choice.message.tool_calls
    assert tool_call.id.startswith("call_") and tool_call.type == "function"
    assert tool_call.function.name == "get_weather"
    assert json.loads(tool_call.function.arguments) == {"city": "Paris", "unit": "C"}
    # The agents were offered the caller's tools beside their own, and agent2 saw the proposal fenced, as a call.
    assert set(team.calls[0].tools) == {"new_answer", "get_weather", "get_time"}
    shown = next(c.answers["agent1"] for c in team.calls_of("b") if "agent1" in c.answers)
    assert 'CALL: get_weather {"city": "Paris", "unit": "C"}' in shown
    record = response.massgen
    assert record["winner"] == "agent1" and record["tally"]["agent1"] == 2
    proposal = next(a for a in record["answers"] if a["agent_id"] == "agent1")
    assert proposal["tool_calls"] == [{"name": "get_weather", "arguments": '{"city": "Paris", "unit": "C"}'}]
    assert not [c for c in team.calls if c.is_presentation]  # a proposal is returned as voted


async def test_several_calls_in_one_proposal_and_parallel_tool_calls_false(team):
    both = Reply(tool="get_weather", arguments={"city": "Paris"}, more_tools=[("get_time", {"zone": "CET"})])
    team.script("a", proposer(both))
    team.script("b", voter)
    response = await litellm.acompletion(model="massgen/team", messages=QUESTION, tools=[WEATHER, TIME])
    assert [c.function.name for c in response.choices[0].message.tool_calls] == ["get_weather", "get_time"]

    team.calls.clear()
    one_at_a_time = iter([both, call_weather()])
    team.script("a", lambda call: vote("agent1") if "agent1" in call.answers else next(one_at_a_time))
    response = await litellm.acompletion(
        model="massgen/team", messages=QUESTION, tools=[WEATHER, TIME], parallel_tool_calls=False
    )
    assert [c.function.name for c in response.choices[0].message.tool_calls] == ["get_weather"]
    retry = next(c for c in team.calls_of("a") if c.is_retry)
    assert "one tool call at a time" in json.dumps(retry.messages)


async def test_arguments_are_checked_against_the_schema_and_corrected(team):
    attempts = iter([call_weather(unit="Kelvin"), Reply(tool="get_weather", arguments="{not json"), call_weather()])
    team.script("a", lambda call: vote("agent1") if "agent1" in call.answers else next(attempts))
    team.script("b", voter)
    response = await litellm.acompletion(model="massgen/team", messages=QUESTION, tools=[WEATHER])
    assert json.loads(response.choices[0].message.tool_calls[0].function.arguments) == {"city": "Paris"}
    # The first turn: the schema's complaint sent back, then JSON that does not parse, so the turn failed; the second
    # turn's proposal was valid.
    [correction] = [json.dumps(c.messages) for c in team.calls_of("a") if c.is_retry]
    assert "do not match its schema" in correction and "Kelvin" in correction
    assert response.massgen["agents"][0]["failed_turns"] == 1


@pytest.mark.parametrize(
    ("tool_choice", "reply", "correction"),
    [
        ("required", answer("It is sunny."), "must propose a call of one of the user's tools"),
        ({"type": "function", "function": {"name": "get_time"}}, call_weather(), "the only tool you may propose"),
    ],
)
async def test_tool_choice_is_enforced(team, tool_choice, reply, correction):
    wanted = Reply(tool="get_time", arguments={"zone": "CET"})
    attempts = iter([reply, wanted])
    team.script("a", lambda call: vote("agent1") if "agent1" in call.answers else next(attempts))
    team.script("b", lambda call: vote("agent1") if "agent1" in call.answers else wanted)
    response = await litellm.acompletion(
        model="massgen/team", messages=QUESTION, tools=[WEATHER, TIME], tool_choice=tool_choice
    )
    assert response.choices[0].message.tool_calls[0].function.name == "get_time"
    assert correction in json.dumps(next(c for c in team.calls_of("a") if c.is_retry).messages)


async def test_tool_choice_none_offers_no_client_tool(team):
    team.script("a", lambda call: vote("agent1") if "agent1" in call.answers else answer("Probably mild."))
    team.script("b", voter)
    response = await litellm.acompletion(model="massgen/team", messages=QUESTION, tools=[WEATHER], tool_choice="none")
    assert response.choices[0].finish_reason == "stop" and not response.choices[0].message.tool_calls
    assert all("get_weather" not in c.tools for c in team.calls)


async def test_a_conversation_with_tool_results_goes_on_to_an_answer(team):
    conversation = [
        *QUESTION,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_9",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_9", "content": "18 C, light rain"},
    ]
    team.script("a", lambda call: vote("agent1") if "agent1" in call.answers else answer("18 C and light rain."))
    team.script("b", voter)
    response = await litellm.acompletion(model="massgen/team", messages=conversation, tools=[WEATHER])
    assert response.choices[0].finish_reason == "stop"
    first = team.calls_of("a")[0].messages
    assert first[1]["role"] == "assistant" and first[1]["tool_calls"][0]["id"] == "call_9"
    assert first[2] == {"role": "tool", "tool_call_id": "call_9", "content": "18 C, light rain"}


async def test_the_text_protocol_proposes_with_call_lines_and_sees_results_as_text(fake, registered):
    write_preset(registered, "plain", [agent("t", protocol="text"), agent("u", protocol="text")])
    conversation = [
        {"role": "user", "content": "And the time there?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "18 C"},
    ]

    def script(call: Call) -> Reply:
        if "agent1" in call.answers:
            return text("VOTE: agent1\nREASON: it asks for the time")
        return text('I will look it up.\nCALL: get_time {"zone": "CET"}')

    fake.script("t", script)
    fake.script("u", script)
    response = await litellm.acompletion(model="massgen/plain", messages=conversation, tools=[WEATHER, TIME])
    message = response.choices[0].message
    assert message.content == "I will look it up."
    assert message.tool_calls[0].function.name == "get_time"
    sent = fake.calls_of("t")[0]
    assert "tools" not in sent.body
    assert all(m["role"] != "tool" and not m.get("tool_calls") for m in sent.messages)
    assert any(m["content"] == "[Result of a tool call]\n18 C" for m in sent.messages)
    assert "CALL: tool_name" in sent.messages[0]["content"]  # the text form is explained


async def test_streaming_returns_tool_call_deltas(team):
    team.script("a", proposer(call_weather()))
    team.script("b", voter)
    chunks = [
        c
        async for c in await litellm.acompletion(model="massgen/team", messages=QUESTION, tools=[WEATHER], stream=True)
    ]
    calls = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert [(tc.function.name, json.loads(tc.function.arguments)) for tc in calls] == [
        ("get_weather", {"city": "Paris"})
    ]
    assert calls[0].id.startswith("call_") and calls[0].index == 0
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["tool_calls"]
    assert any(getattr(c, "massgen", None) for c in chunks)


async def test_legacy_functions_are_tools(team):
    team.script("a", proposer(call_weather()))
    team.script("b", voter)
    response = await litellm.acompletion(
        model="massgen/team", messages=QUESTION, functions=[WEATHER["function"]], function_call="auto"
    )
    assert response.choices[0].message.tool_calls[0].function.name == "get_weather"


# Structured output ------------------------------------------------------------------------------------------------

CITY = {
    "type": "json_schema",
    "json_schema": {
        "name": "city",
        "strict": True,
        "schema": {
            "type": "object",
            "properties": {"name": {"type": "string"}, "population": {"type": "integer"}},
            "required": ["name", "population"],
            "additionalProperties": False,
        },
    },
}
PARIS = {"name": "Paris", "population": 2100000}


async def test_json_schema_answers_are_checked_and_the_presentation_too(team):
    attempts = iter(
        [answer("Paris, about 2.1 million"), answer(json.dumps({"name": "Paris"})), answer(json.dumps(PARIS))]
    )

    def a(call: Call) -> Reply:
        if call.is_presentation:
            return text(json.dumps({**PARIS, "population": 2102650}))
        return vote("agent1") if "agent1" in call.answers else next(attempts)

    team.script("a", a)
    team.script("b", voter)
    response = await litellm.acompletion(model="massgen/team", messages=QUESTION, response_format=CITY)
    assert json.loads(response.choices[0].message.content) == {"name": "Paris", "population": 2102650}
    [correction] = [json.dumps(c.messages) for c in team.calls_of("a") if c.is_retry]
    assert "must be JSON" in correction
    assert response.massgen["agents"][0]["failed_turns"] == 1  # the retry's JSON lacked `population`
    presentation = next(c for c in team.calls if c.is_presentation)
    assert presentation.body["response_format"]["json_schema"]["name"] == "city"
    assert "matching this JSON Schema" in team.calls_of("a")[0].prompt


async def test_a_presentation_that_breaks_the_format_falls_back_to_the_valid_answer(team):
    def a(call: Call) -> Reply:
        if call.is_presentation:
            return text("Here you go: Paris!")
        return vote("agent1") if "agent1" in call.answers else answer(json.dumps(PARIS))

    team.script("a", a)
    team.script("b", voter)
    response = await litellm.acompletion(model="massgen/team", messages=QUESTION, response_format=CITY, stream=True)
    content = "".join([c.choices[0].delta.content or "" async for c in response if c.choices])
    assert json.loads(content) == PARIS


async def test_no_valid_json_answer_is_a_502(team):
    team.script("a", lambda call: answer("not json at all"))
    team.script("b", lambda call: answer("neither is this"))
    with pytest.raises(litellm.APIError, match="no agent gave a usable answer"):
        await litellm.acompletion(
            model="massgen/team", messages=QUESTION, response_format={"type": "json_object"}, max_turns_per_agent=2
        )


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"tools": [{**WEATHER, "function": {**WEATHER["function"], "name": "vote"}}]}, "clash"),
        (
            {"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "nonsense"}}}]},
            "not a valid JSON Schema",
        ),
        (
            {"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}},
            "not one of the request's tools",
        ),
        ({"tool_choice": "required"}, "has no tools"),
        ({"response_format": {"type": "xml"}}, "response_format"),
        ({"n": 2}, "n must be 1"),
    ],
)
async def test_bad_tool_and_format_requests_are_400s(registered, fields, named):
    with pytest.raises(litellm.BadRequestError, match=named):
        await litellm.acompletion(model="massgen/build", messages=QUESTION, **fields)
