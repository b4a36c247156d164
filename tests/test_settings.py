"""MassGen's coordination settings, end to end on scripted models: voting sensitivity, answer novelty, the global cap
on new answers, round timeouts, the synthesize final strategy and counterbalanced answer order."""

from __future__ import annotations

import json

import litellm
import pytest

from massgen_litellm.testing.openai_chat import Call, Reply, answer, answer_then_vote, text, vote
from tests.conftest import agent, write_preset

QUESTION = [{"role": "user", "content": "Name the capital of France and one fact about it."}]


@pytest.mark.parametrize(
    ("sensitivity", "said"),
    [
        ("lenient", "If one of the answers is correct and complete"),
        ("balanced", "Vote only for an answer that is correct, complete and clearly explained"),
        ("strict", "Vote only for an answer you could not improve in any way"),
    ],
)
async def test_voting_sensitivity_is_what_agents_are_told(fake, registered, sensitivity, said):
    fake.script("a", answer_then_vote("Paris."))
    write_preset(
        registered,
        "team",
        [agent("a"), agent("a")],
        voting_sensitivity=sensitivity,
        final="winner_answer",
        skip_voting_when_unanimous=False,  # the same answer twice: only then is there a vote turn to read
    )
    response = await litellm.acompletion(model="massgen/team", messages=QUESTION)
    assert said in next(c for c in fake.calls if c.answers).prompt
    assert response.massgen["options"]["voting_sensitivity"] == sensitivity


async def test_a_near_copy_is_sent_back_as_not_new(fake, registered):
    # agent2 first restates agent1's answer with one word changed (over 70% of its words are agent1's): it is told
    # so, and votes instead.
    fake.script(
        "a",
        lambda call: (
            vote("agent1") if "agent1" in call.answers else answer("Paris is the capital of France, on the Seine.")
        ),
    )

    def copier(call: Call) -> Reply:
        if call.is_retry:
            return vote("agent1", "fair enough")
        if "agent1" in call.answers:
            return answer("Paris is the capital of France, on the river Seine.")
        return answer("Lyon is the capital of France.")

    fake.script("b", copier)
    write_preset(
        registered, "team", [agent("a"), agent("b")], answer_novelty_requirement="balanced", final="winner_answer"
    )
    response = await litellm.acompletion(model="massgen/team", messages=QUESTION)
    correction = json.dumps(next(c for c in fake.calls_of("b") if c.is_retry).messages)
    assert "shares" in correction and "of its words with agent1's answer" in correction
    assert response.massgen["winner"] == "agent1" and len(response.massgen["answers"]) == 2


async def test_max_new_answers_global(fake, registered):
    fake.script(
        "a",
        lambda call: (
            answer(f"take {len(fake.calls)}") if "vote" not in call.tools or len(call.answers) < 2 else vote("agent1")
        ),
    )
    write_preset(
        registered,
        "team",
        [agent("a"), agent("a"), agent("a")],
        max_new_answers_global=2,
        max_answers_per_agent=5,
        final="winner_answer",
    )
    response = await litellm.acompletion(model="massgen/team", messages=QUESTION)
    assert len(response.massgen["answers"]) == 2
    assert response.massgen["options"]["max_new_answers_global"] == 2


async def test_round_timeouts_leave_a_straggler_behind(fake, registered):
    fake.script("fast", answer_then_vote("Paris."))
    fake.script("slow", lambda call: answer("Paris, slowly.", delay=60))
    write_preset(
        registered,
        "team",
        [agent("fast"), agent("fast"), agent("slow")],
        initial_round_timeout_seconds=0.2,
        subsequent_round_timeout_seconds=0.2,
        round_timeout_grace_seconds=0.1,
        final="winner_answer",
    )
    response = await litellm.acompletion(model="massgen/team", messages=QUESTION)
    record = response.massgen
    assert record["duration_seconds"] < 60  # it did not wait for the straggler's 60 s
    assert record["end_reason"] == "consensus" and record["winner"] == "agent1"
    assert next(a for a in record["agents"] if a["id"] == "agent3")["status"] == "stopped"


async def test_synthesize_asks_the_winner_to_combine_every_answer(fake, registered):
    def a(call: Call) -> Reply:
        if call.is_presentation:
            return text("Paris, on the Seine, with the Louvre.")
        return vote("agent1") if "agent2" in call.answers else answer("Paris, on the Seine.")

    fake.script("a", a)
    fake.script("b", lambda call: vote("agent1") if "agent1" in call.answers else answer("Paris has the Louvre."))
    write_preset(registered, "team", [agent("a"), agent("b")], final="synthesize")
    response = await litellm.acompletion(model="massgen/team", messages=QUESTION)
    assert response.choices[0].message.content == "Paris, on the Seine, with the Louvre."
    assert "as a synthesis of all the answers" in next(c for c in fake.calls if c.is_presentation).prompt
    assert response.massgen["final"] == "synthesize"
