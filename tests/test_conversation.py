"""`Conversation`: the history goes with each question, the events and the record come back, a cancelled turn stops
the team and leaves the history as it was. In process (respx), and through the real LiteLLM proxy."""

from __future__ import annotations

import asyncio

import litellm
import pytest

from massgen_litellm.conversation import Conversation, error_text
from massgen_litellm.testing.loopback import LoopbackServer, until
from massgen_litellm.testing.openai_chat import FakeLLM, answer, answer_then_vote, vote
from tests.conftest import agent, write_preset
from tests.proxy import MASTER_KEY, LiteLLMProxy


async def test_a_follow_up_carries_the_first_exchange(fake, registered):
    write_preset(registered, "duo", [agent("a"), agent("b")], skip_voting_when_unanimous=False)
    fake.script("a", answer_then_vote("Paris"))
    fake.script("b", answer_then_vote("Paris"))
    conversation = Conversation("duo")
    events: list[dict] = []
    pieces: list[str] = []

    first, record = await conversation.ask("Capital of France?", events.append, pieces.append)

    assert first == "Final: Paris" == "".join(pieces)
    assert record is not None and record["winner"] == "agent1" and record["trusted"] is True
    assert events[0]["kind"] == "start" and events[-1]["kind"] == "done"
    assert {e["kind"] for e in events} >= {"answer", "vote"}
    assert conversation.history == [
        {"role": "user", "content": "Capital of France?"},
        {"role": "assistant", "content": "Final: Paris"},
    ]
    asked_before = len(fake.calls)

    await conversation.ask("And of Italy?")

    follow_up = fake.calls[asked_before:]
    assert follow_up and all("Capital of France?" in str(c.messages) for c in follow_up)
    assert all("Final: Paris" in str(c.messages) for c in follow_up)
    assert len(conversation.history) == 4 and len(conversation.records) == 2

    conversation.new()
    asked_before = len(fake.calls)
    await conversation.ask("Capital of Spain?")
    assert all("France" not in str(c.messages) for c in fake.calls[asked_before:])


async def test_an_untrusted_conversation_is_held_to_the_clients_rules(fake, registered):
    write_preset(registered, "duo", [agent("a"), agent("b")], skip_voting_when_unanimous=False)
    fake.script("a", answer_then_vote("4"))
    fake.script("b", answer_then_vote("4"))

    _, record = await Conversation("duo", trusted=False).ask("2 + 2?")
    assert record is not None and record["trusted"] is False

    chooser = Conversation("duo", params={"models": ["openai/a"]}, trusted=False)
    with pytest.raises(litellm.BadRequestError) as caught:
        await chooser.ask("2 + 2?")
    assert "may not choose the agents of massgen/duo" in error_text(caught.value)
    assert not error_text(caught.value).startswith("litellm.")
    assert chooser.history == []  # a failed turn is as if it had not been asked


async def test_cancelling_a_turn_cancels_the_participant_calls(registered):
    backend = FakeLLM()
    backend.script("a", lambda call: answer("4") if not call.answers else vote("agent1", delay=60))
    backend.script("b", lambda call: answer("four") if not call.answers else vote("agent1", delay=60))
    with LoopbackServer(backend) as server:
        entries = [{**agent(m), "api_base": server.base_url} for m in ("a", "b")]
        write_preset(registered, "slow", entries, skip_voting_when_unanimous=False)
        conversation = Conversation("slow")
        task = asyncio.create_task(conversation.ask("2 + 2?"))
        await until(lambda: len([c for c in backend.calls if not c.ended]) == 2, 30, "two votes in flight")
        in_flight = [c for c in backend.calls if not c.ended]

        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

        await until(lambda: all(c.ended for c in in_flight), 30, "the participant calls have ended")
        assert all(c.cancelled for c in in_flight)
        assert conversation.history == []


async def test_through_a_proxy_the_same_events_and_history(upstream: LoopbackServer, proxy: LiteLLMProxy):
    upstream.fake.calls.clear()
    upstream.fake.script("proxy-a", answer_then_vote("4"))
    upstream.fake.script("proxy-b", answer_then_vote("4"))
    conversation = Conversation("duo", proxy=f"{proxy.base_url}/v1", proxy_key=MASTER_KEY)
    events: list[dict] = []

    first, record = await conversation.ask("2 + 2?", events.append)
    assert first == "Final: 4"
    assert record is not None and record["trusted"] is False  # the proxy makes it so
    assert events[0]["kind"] == "start" and events[-1]["kind"] == "done"

    asked_before = len(upstream.fake.calls)
    await conversation.ask("And 3 + 3?")
    assert all("Final: 4" in str(c.messages) for c in upstream.fake.calls[asked_before:])
