"""massgen/<preset> through LiteLLM's real entry points, participants on LiteLLM's real OpenAI path (respx)."""

from __future__ import annotations

import asyncio
import json
import math

import litellm
import pytest

from massgen_litellm.config import AgentConfig
from massgen_litellm.participant import pick_protocol
from massgen_litellm.testing.openai_chat import (
    Call,
    FakeLLM,
    Reply,
    answer,
    answer_then_vote,
    fail,
    sequence,
    text,
    vote,
)
from tests.conftest import agent, write_preset

QUESTION = [{"role": "user", "content": "What is 2 + 2?"}]


def trio(fake: FakeLLM, registered, **options) -> None:
    fake.script("a", answer_then_vote("4", delay=0.0))
    fake.script("b", answer_then_vote("4", delay=0.01))
    fake.script("c", answer_then_vote("5", delay=0.02))
    write_preset(registered, "team", [agent("a"), agent("b"), agent("c")], **options)


async def test_all_agree_and_the_winner_presents(fake, registered):
    trio(fake, registered)
    response = await litellm.acompletion(model="massgen/team", messages=QUESTION)
    record = response.massgen
    assert record["end_reason"] == "consensus"
    assert record["winner"] == "agent1"
    assert record["tally"]["agent1"] == 3
    assert response.choices[0].message.content == "Final: 4"
    assert response.choices[0].finish_reason == "stop"
    assert response.model == "massgen/team"
    assert record["presented_by"] == "agent1"
    presentation = [c for c in fake.calls if c.is_presentation]
    assert len(presentation) == 1 and presentation[0].model == "a"


async def test_every_agent_sees_the_whole_conversation_and_only_anonymous_ids(fake, registered):
    trio(fake, registered)
    conversation = [
        {"role": "system", "content": "Answer tersely."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "What is 2 + 2?"},
    ]
    await litellm.acompletion(model="massgen/team", messages=conversation)
    for call in fake.calls:
        assert call.messages[: len(conversation)] == conversation
        assert "openai/" not in call.prompt and "openai/a" not in json.dumps(call.body.get("tools"))
    voting = [c for c in fake.calls if "vote" in c.tools]
    enum = voting[0].body["tools"][-1]["function"]["parameters"]["properties"]["agent_id"]["enum"]
    assert enum == list(voting[0].answers)
    assert all(agent_id.startswith("agent") for agent_id in enum)


async def test_first_turn_offers_no_vote(fake, registered):
    trio(fake, registered)
    await litellm.acompletion(model="massgen/team", messages=QUESTION)
    first_calls = [fake.calls_of(m)[0] for m in ("a", "b", "c")]
    assert all(c.tools == ["new_answer"] for c in first_calls)


async def test_disagreement_then_convergence(fake, registered):
    def stubborn_then_convinced(call: Call) -> Reply:
        if call.is_presentation:
            return text("Final: 4")
        if "agent2" not in call.answers:
            return answer("5")
        if call.answers["agent2"] == "5" and "agent1" in call.answers:
            return answer("4, I was wrong")
        return vote("agent1", "agent1 is right")

    fake.script("a", answer_then_vote("4"))
    fake.script("b", stubborn_then_convinced)
    fake.script("c", answer_then_vote("4", delay=0.01))
    write_preset(registered, "team", [agent("a"), agent("b"), agent("c")])
    response = await litellm.acompletion(model="massgen/team", messages=QUESTION)
    record = response.massgen
    labels = [a["label"] for a in record["answers"]]
    assert "agent2.2" in labels
    assert record["end_reason"] == "consensus"
    assert record["tally"]["agent1"] == 3


async def test_new_answer_voids_votes_cast_before_it(fake, registered):
    fake.script("a", answer_then_vote("4"))
    fake.script("b", answer_then_vote("4", delay=0.01))
    # c refines its answer slowly, landing after a and b have voted: their votes no longer count; they vote again.
    fake.script("c", sequence(answer("four"), answer("4, refined", delay=0.2), answer_then_vote("4")))
    write_preset(registered, "team", [agent("a"), agent("b"), agent("c")])
    response = await litellm.acompletion(model="massgen/team", messages=QUESTION)
    record = response.massgen
    voided_by_c = {v["voter"] for v in record["votes"] if v["voided"] and "agent3.2" in v["voided_reason"]}
    assert voided_by_c == {"agent1", "agent2"}
    assert record["end_reason"] == "consensus"
    assert record["tally"]["agent1"] == 3


async def test_tie_is_broken_by_preset_order(fake, registered):
    def vote_for_other(me: str, other: str):
        def script(call: Call) -> Reply:
            if call.is_presentation:
                return text(f"Final from {me}")
            return vote(other, "theirs") if len(call.answers) == 2 else answer(f"answer {me}")

        return script

    fake.script("a", vote_for_other("agent1", "agent2"))
    fake.script("b", vote_for_other("agent2", "agent1"))
    write_preset(registered, "duo", [agent("a"), agent("b")])
    response = await litellm.acompletion(model="massgen/duo", messages=QUESTION)
    assert response.massgen["tally"] == {"agent1": 1, "agent2": 1}
    assert response.massgen["winner"] == "agent1"
    assert response.choices[0].message.content == "Final from agent1"


async def test_max_answers_per_agent_then_vote_only(fake, registered):
    def keeps_answering(call: Call) -> Reply:
        if call.is_presentation:
            return text("done")
        return answer("again") if "new_answer" in call.tools else vote("agent1", "ok")

    fake.script("a", keeps_answering)
    fake.script("b", keeps_answering)
    # The same answer twice would end the run unanimous, before the vote turns this is about.
    write_preset(registered, "duo", [agent("a"), agent("b")], max_answers_per_agent=1, skip_voting_when_unanimous=False)
    response = await litellm.acompletion(model="massgen/duo", messages=QUESTION)
    assert [a["answers"] for a in response.massgen["agents"]] == [1, 1]
    later = [c for c in fake.calls if not c.is_presentation][2:]
    assert later and all(c.tools == ["vote"] for c in later)


async def test_request_overrides_preset_limits(fake, registered):
    fake.script("a", lambda call: answer("x") if "new_answer" in call.tools else vote("agent1"))
    write_preset(registered, "solo", [agent("a")], max_answers_per_agent=5)
    response = await litellm.acompletion(
        model="massgen/solo", messages=QUESTION, max_answers_per_agent=1, final="winner_answer"
    )
    assert response.massgen["agents"][0]["answers"] == 1
    assert response.massgen["final"] == "winner_answer"


async def test_run_timeout_ends_the_run_with_what_exists(fake, registered):
    fake.script("a", answer_then_vote("4"))
    fake.script("b", answer_then_vote("4"))
    # slow answers, then never finishes its next turn: the votes of a and b decide at the timeout.
    fake.script("slow", sequence(answer("4"), answer("late", delay=30)))
    write_preset(
        registered, "team", [agent("a"), agent("b"), agent("slow")], run_timeout=1.5, skip_voting_when_unanimous=False
    )
    response = await litellm.acompletion(model="massgen/team", messages=QUESTION)
    record = response.massgen
    assert record["duration_seconds"] < 30  # it did not wait for the slow agent's 30 s
    assert record["end_reason"] == "timeout"
    assert record["winner"] == "agent1"
    # run_timeout bounds the whole run: there is no time left to present, so the voted answer comes back verbatim.
    assert response.choices[0].message.content == "4"
    assert not [c for c in fake.calls if c.is_presentation]
    assert any("run_timeout" in note for note in record["notes"])
    assert next(a for a in record["agents"] if a["id"] == "agent3")["status"] == "stopped"


async def test_run_timeout_with_no_answer_is_a_timeout_error(fake, registered):
    fake.script("slow", lambda call: answer("late", delay=30))
    write_preset(registered, "slow", [agent("slow")], run_timeout=0.3)
    with pytest.raises(litellm.Timeout, match="run_timeout"):
        await litellm.acompletion(model="massgen/slow", messages=QUESTION)


async def test_one_participant_failing_does_not_take_the_run_down(fake, registered):
    fake.script("a", answer_then_vote("4"))
    fake.script("b", answer_then_vote("4", delay=0.01))
    fake.script("broken", lambda call: fail(500, "upstream exploded"))
    write_preset(registered, "team", [agent("a"), agent("b"), agent("broken", num_retries=0)])
    response = await litellm.acompletion(model="massgen/team", messages=QUESTION)
    record = response.massgen
    broken = next(a for a in record["agents"] if a["id"] == "agent3")
    assert broken["status"] == "failed"
    assert "upstream exploded" in broken["error"]
    # The two left gave the same answer: a failed agent does not stand in the way of that, and the winner presents.
    assert record["end_reason"] == "unanimous" and record["chosen_by"] == "unanimous"
    assert response.choices[0].message.content == "Final: 4"


async def test_all_failing_names_every_cause(fake, registered):
    fake.script("x", lambda call: fail(500, "x is down"))
    fake.script("y", lambda call: fail(503, "y is overloaded"))
    write_preset(registered, "doomed", [agent("x", num_retries=0), agent("y", num_retries=0)])
    with pytest.raises(litellm.APIError) as info:
        await litellm.acompletion(model="massgen/doomed", messages=QUESTION)
    message = str(info.value)
    assert "agent1" in message and "x is down" in message
    assert "agent2" in message and "y is overloaded" in message


async def test_malformed_tool_call_gets_one_corrective_retry(fake, registered):
    fake.script(
        "garbled",
        sequence(Reply(tool="new_answer", arguments="{not json"), answer_then_vote("4")),
    )
    fake.script("b", answer_then_vote("4", delay=0.01))
    write_preset(registered, "duo", [agent("garbled"), agent("b")])
    response = await litellm.acompletion(model="massgen/duo", messages=QUESTION)
    retry = fake.calls_of("garbled")[1]
    assert retry.is_retry
    assert retry.messages[-1]["role"] == "tool" and "not valid JSON" in retry.messages[-1]["content"]
    assert response.massgen["agents"][0]["failed_turns"] == 0
    assert [c["kind"] for c in response.massgen["calls"] if c["agent_id"] == "agent1"][:2] == ["turn", "retry"]


async def test_twice_malformed_turn_fails_but_the_agent_stays(fake, registered):
    bad_vote = Reply(tool="vote", arguments={"agent_id": "agent9", "reason": "?"})
    fake.script("confused", sequence(answer("4"), bad_vote, bad_vote, answer_then_vote("4")))
    fake.script("b", answer_then_vote("4", delay=0.02))
    write_preset(registered, "duo", [agent("confused"), agent("b")], skip_voting_when_unanimous=False)
    response = await litellm.acompletion(model="massgen/duo", messages=QUESTION)
    confused = response.massgen["agents"][0]
    assert confused["failed_turns"] == 1
    assert confused["status"] == "voted"


async def test_plain_text_reply_is_an_answer_and_vote_line_is_a_vote(fake, registered):
    def texter(call: Call) -> Reply:
        if call.is_presentation:
            return text("Final: 4")
        return text("**VOTE:** agent1\nREASON: correct") if "agent1" in call.answers else text("It is 4.")

    fake.script("a", texter)
    fake.script("b", texter)
    write_preset(registered, "duo", [agent("a"), agent("b")], skip_voting_when_unanimous=False)
    response = await litellm.acompletion(model="massgen/duo", messages=QUESTION)
    record = response.massgen
    assert record["answers"][0]["content"] == "It is 4."
    assert record["tally"]["agent1"] == 2
    assert {v["reason"] for v in record["votes"] if not v["voided"]} == {"correct"}


async def test_text_protocol_sends_no_tools(fake, registered):
    def texter(call: Call) -> Reply:
        if call.is_presentation:
            return text("Final: 4")
        return text("VOTE: agent1\nREASON: fine") if call.answers else text("4")

    fake.script("plain", texter)
    agents = [agent("plain", protocol="text"), agent("plain", protocol="text")]
    write_preset(registered, "plain", agents, skip_voting_when_unanimous=False)
    response = await litellm.acompletion(model="massgen/plain", messages=QUESTION)
    assert all("tools" not in c.body for c in fake.calls)
    # agent1 sees the answers in agent order (agent2, with counterbalance_answer_order, sees them rotated).
    assert "first line `VOTE: agent1`" in next(c for c in fake.calls if c.answers and c.agent_id == "agent1").prompt
    assert response.massgen["end_reason"] == "consensus"
    assert [a["protocol"] for a in response.massgen["agents"]] == ["text", "text"]


@pytest.mark.parametrize(
    ("model", "protocol"),
    [
        ("openrouter/openai/gpt-5", "tools"),  # the seed's own example: LiteLLM has no data on it
        ("hosted_vllm/my-model", "tools"),
        ("ollama_chat/llama3", "tools"),
        ("openai/gpt-4o-mini", "tools"),
        ("deepseek/deepseek-reasoner", "text"),  # LiteLLM knows it has no function calling
    ],
)
def test_protocol_by_evidence_not_by_table(model, protocol):
    assert pick_protocol(AgentConfig(model=model)) == protocol


def test_a_model_registered_later_is_looked_up_again(monkeypatch):
    """The look-up is cached, but not past a change to LiteLLM's model list."""
    agent = AgentConfig(model="openai/registered-later-without-tools")
    assert pick_protocol(agent) == "tools"  # unknown to LiteLLM: tools, the stronger protocol
    monkeypatch.setattr(litellm, "model_cost", dict(litellm.model_cost))  # the registration is undone after the test
    litellm.register_model({agent.model: {"litellm_provider": "openai", "supports_function_calling": False}})
    assert pick_protocol(agent) == "text"


async def test_an_agent_whose_provider_refuses_tools_switches_to_text(fake, registered):
    def old_model(call: Call) -> Reply:
        if "tools" in call.body:
            return fail(400, "This model does not support tools (function calling).")
        return text("VOTE: agent1") if call.answers else text("4")

    fake.script("old", old_model)
    entry = agent("old", num_retries=0)
    del entry["protocol"]
    write_preset(registered, "m", [entry], final="winner_answer")
    response = await litellm.acompletion(model="massgen/m", messages=QUESTION)
    record = response.massgen["agents"][0]
    assert response.choices[0].message.content == "4"
    assert record["protocol"] == "text" and "its provider refused tools" in record["protocol_note"]
    assert ["tools" in c.body for c in fake.calls] == [True, False, False]


async def test_an_agent_whose_tool_replies_keep_failing_switches_to_text(fake, registered):
    def clumsy(call: Call) -> Reply:
        if "tools" in call.body:
            return Reply(tool="new_answer", arguments="{not json")
        return text("VOTE: agent1") if call.answers else text("4")

    fake.script("clumsy", clumsy)
    entry = agent("clumsy")
    del entry["protocol"]
    write_preset(registered, "m", [entry], final="winner_answer")
    response = await litellm.acompletion(model="massgen/m", messages=QUESTION)
    record = response.massgen["agents"][0]
    assert response.choices[0].message.content == "4"
    assert record["protocol"] == "text" and "2 turns in a row" in record["protocol_note"]
    assert record["failed_turns"] == 2


@pytest.mark.parametrize("form", ["optional_params", "keyword", "extra_body"])
async def test_three_ways_to_pass_models(fake, registered, form):
    fake.script("a", answer_then_vote("4"))
    fake.script("b", answer_then_vote("4", delay=0.01))
    write_preset(registered, "team", [agent("unused")])
    models = [agent("a"), agent("b"), agent("a", temperature=0.9)]
    kwargs = {
        "optional_params": {"optional_params": {"models": models}},
        "keyword": {"models": models},
        "extra_body": {"extra_body": {"models": models}},
    }[form]
    response = await litellm.acompletion(model="massgen/team", messages=QUESTION, **kwargs)
    assert [a["model"] for a in response.massgen["agents"]] == ["openai/a", "openai/b", "openai/a"]
    assert not fake.calls_of("unused")
    # The same model twice is two agents; the third one runs at its own temperature.
    third = [c for c in fake.calls_of("a") if c.agent_id == "agent3"]
    assert third and all(c.body["temperature"] == 0.9 for c in third)


async def test_string_models_and_outer_sampling_params_reach_participants_but_max_tokens_only_the_reply(
    fake, registered, monkeypatch
):
    monkeypatch.setenv("OPENAI_API_BASE", "http://fake-llm.test/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env-key")
    fake.script("a", answer_then_vote("4"))
    fake.script("b", answer_then_vote("4", delay=0.01))
    write_preset(registered, "team", [agent("unused")])
    response = await litellm.acompletion(
        model="massgen/team",
        messages=QUESTION,
        models=["openai/a", {"model": "openai/b", "temperature": 0.1}],
        temperature=0.5,
        max_tokens=77,
        final="winner_answer",
    )
    assert response.massgen["winner"] == "agent1"
    assert {c.body["temperature"] for c in fake.calls_of("a")} == {0.5}
    assert {c.body["temperature"] for c in fake.calls_of("b")} == {0.1}
    # The client's max_tokens bounds the reply it gets (a presentation; here the answer verbatim, not cut by it),
    # never the agents' coordination turns.
    assert all("max_tokens" not in c.body for c in fake.calls)
    assert response.choices[0].message.content == "4"


def test_sync_completion(fake, registered):
    trio(fake, registered)
    response = litellm.completion(model="massgen/team", messages=QUESTION)
    assert response.choices[0].message.content == "Final: 4"
    again = litellm.completion(model="massgen/team", messages=QUESTION)
    assert again.massgen["run_id"] != response.massgen["run_id"]


def test_sync_streaming(fake, registered):
    trio(fake, registered)
    chunks = list(litellm.completion(model="massgen/team", messages=QUESTION, stream=True))
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert content == "Final: 4"


async def test_async_streaming_streams_progress_then_the_winners_own_stream(fake, registered):
    trio(fake, registered)
    stream = await litellm.acompletion(
        model="massgen/team", messages=QUESTION, stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk async for chunk in stream]
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    reasoning = "".join(getattr(d, "reasoning_content", None) or "" for d in deltas)
    content_pieces = [d.content for d in deltas if d.content]
    assert "agent1 answered" in reasoning and "voted for agent1" in reasoning
    # The fake streams the presentation four characters at a time; each piece arrives as its own chunk.
    assert content_pieces == ["Fina", "l: 4"]
    presentation = next(c for c in fake.calls if c.is_presentation)
    assert presentation.body["stream"] is True
    records = [c.massgen for c in chunks if getattr(c, "massgen", None)]
    assert len(records) == 1 and records[0]["winner"] == "agent1"
    assert records[0]["usage"]["total_tokens"] == fake.reported_usage()["total_tokens"]
    usage = chunks[-1].usage
    assert usage.prompt_tokens == fake.reported_usage()["prompt_tokens"]
    assert usage.completion_tokens == fake.reported_usage()["completion_tokens"]


async def test_usage_is_the_exact_sum_of_every_participant_call(fake, registered):
    trio(fake, registered)
    response = await litellm.acompletion(model="massgen/team", messages=QUESTION)
    reported = fake.reported_usage()
    assert response.usage.prompt_tokens == reported["prompt_tokens"]
    assert response.usage.completion_tokens == reported["completion_tokens"]
    assert response.usage.total_tokens == reported["total_tokens"]
    assert len(response.massgen["calls"]) == len(fake.calls)


async def test_cost_is_the_sum_of_litellms_per_call_costs(fake, registered):
    # A model LiteLLM knows the price of, served by the fake.
    for name in ("gpt-4o-mini", "gpt-4.1-mini"):
        fake.script(name, answer_then_vote("4", delay=0.01 if name == "gpt-4.1-mini" else 0.0))
    write_preset(registered, "priced", [agent("gpt-4o-mini"), agent("gpt-4.1-mini")])
    response = await litellm.acompletion(model="massgen/priced", messages=QUESTION)
    expected = sum(
        sum(
            litellm.cost_per_token(
                model=f"openai/{c.model}",
                prompt_tokens=c.usage["prompt_tokens"],
                completion_tokens=c.usage["completion_tokens"],
            )
        )
        for c in fake.calls
    )
    cost = response._hidden_params["response_cost"]
    assert cost > 0
    assert cost == pytest.approx(expected, rel=1e-9)
    assert response.massgen["cost"] == pytest.approx(cost)
    assert response.massgen["unpriced_calls"] == 0


@pytest.mark.parametrize("price", [math.nan, -1e-6])
async def test_a_price_that_is_no_amount_counts_the_call_as_unpriced(fake, registered, monkeypatch, price):
    """A custom price list can price a call at NaN or below zero. LiteLLM records such a price as 0 for the calls it
    prices itself; the streamed presentation, which we price, counts as unpriced, and the run still answers."""
    monkeypatch.setitem(
        litellm.model_cost, "openai/odd-price", {"input_cost_per_token": price, "output_cost_per_token": 0.0}
    )
    fake.script("odd-price", answer_then_vote("4"))
    write_preset(registered, "odd", [agent("odd-price"), agent("odd-price")])
    stream = await litellm.acompletion(model="massgen/odd", messages=QUESTION, stream=True)
    chunks = [chunk async for chunk in stream]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).endswith("Final: 4")
    record = next(c.massgen for c in chunks if getattr(c, "massgen", None))
    presentation = [call for call in record["calls"] if call["kind"] == "present"]
    assert presentation and presentation[0]["cost"] is None and record["unpriced_calls"] == 1
    assert all(math.isfinite(call["cost"]) for call in record["calls"] if call["kind"] != "present")


async def test_winner_answer_mode_makes_no_presentation_call(fake, registered):
    trio(fake, registered, final="winner_answer")
    response = await litellm.acompletion(model="massgen/team", messages=QUESTION)
    assert response.choices[0].message.content == "4"
    assert not any(c.is_presentation for c in fake.calls)
    assert response.massgen["presented_by"] is None


async def test_failed_presentation_falls_back_to_the_voted_answer(fake, registered):
    def flaky_presenter(call: Call) -> Reply:
        return fail(500, "gone") if call.is_presentation else answer_then_vote("4")(call)

    fake.script("a", flaky_presenter)
    fake.script("b", answer_then_vote("4", delay=0.01))
    write_preset(registered, "duo", [agent("a", num_retries=0), agent("b")])
    response = await litellm.acompletion(model="massgen/duo", messages=QUESTION)
    assert response.choices[0].message.content == "4"
    assert any("presentation" in note for note in response.massgen["notes"])


async def test_concurrent_participants_overlap(fake, registered):
    for name in ("a", "b", "c"):
        fake.script(name, answer_then_vote("4", delay=1.0))
    write_preset(registered, "team", [agent("a"), agent("b"), agent("c")], final="winner_answer")
    await litellm.acompletion(model="massgen/team", messages=QUESTION)
    # Every first-round call started before any of them was answered: they were in flight together. (Read from the
    # backend's log, not the wall clock, so a slow machine cannot fail it.)
    first_round = fake.calls[:3]
    assert {c.model for c in first_round} == {"a", "b", "c"}
    assert max(c.started for c in first_round) < min(c.ended for c in first_round)


async def test_record_never_contains_a_literal_key(fake, registered):
    trio(fake, registered)
    response = await litellm.acompletion(model="massgen/team", messages=QUESTION)
    assert "sk-test-not-a-real-key" not in json.dumps(response.massgen)
    assert "sk-test-not-a-real-key" not in repr(registered)  # sanity: the fixture is the directory


async def test_cancelling_the_caller_cancels_participant_calls(fake, registered):
    fake.script("hang", lambda call: answer("never", delay=30))
    write_preset(registered, "hang", [agent("hang"), agent("hang")])
    task = asyncio.create_task(litellm.acompletion(model="massgen/hang", messages=QUESTION))
    await fake.wait_for_calls(2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # Each call was cut off by the cancellation, not answered after its 30 s.
    assert all(c.cancelled and c.ended for c in fake.calls)


async def test_a_seeded_agent_gets_a_fresh_seed_for_every_call(fake, registered):
    # The first call keeps the agent's own seed (the same reply as the model alone); every later one differs, since
    # the same prompt with the same seed is the same reply, and a turn taken again after an unusable one would be
    # spent on the reply already refused.
    def stubborn(call: Call) -> Reply:
        return text("VOTE: agent9") if call.answers else text("4")

    fake.script("s", stubborn)
    write_preset(registered, "seeded", [agent("s", protocol="text", seed=7)], max_turns_per_agent=3)
    response = await litellm.acompletion(model="massgen/seeded", messages=QUESTION)
    seeds = [c.body["seed"] for c in fake.calls_of("s")]
    assert response.massgen["agents"][0]["failed_turns"] >= 1
    assert seeds == list(range(7, 7 + len(seeds))) and len(seeds) >= 5
    # At the top of the range a seed counts down, so every call's seed stays one a provider accepts.
    fake.calls.clear()
    write_preset(registered, "seeded", [agent("s", protocol="text", seed=2**63 - 1)], max_turns_per_agent=3)
    await litellm.acompletion(model="massgen/seeded", messages=QUESTION)
    seeds = [c.body["seed"] for c in fake.calls_of("s")]
    assert seeds == [2**63 - 1 - n for n in range(len(seeds))] and len(seeds) >= 5
