"""When every active agent's first answer is the same, the run ends after round one (`skip_voting_when_unanimous`):
the rule in the coordination core, then through LiteLLM with the caller's tools, and how the record, the progress
lines, the live view and the report say so."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import get_args

import litellm
import pytest
import yaml

from massgen_litellm.coordination import (
    Action,
    AgentFailed,
    Coordinator,
    EndReason,
    Event,
    Limits,
    NewAnswer,
    ToolCall,
    View,
    Vote,
)
from massgen_litellm.events import _END_REASONS, describe_event
from massgen_litellm.live import LiveView
from massgen_litellm.record import RunRecord
from massgen_litellm.report import render
from massgen_litellm.testing.loopback import LoopbackServer
from massgen_litellm.testing.openai_chat import KEY, Call, FakeLLM, Reply, answer, answer_then_vote, text, vote
from tests.conftest import agent, write_preset

AGENTS = ("agent1", "agent2", "agent3")
QUESTION = [{"role": "user", "content": "What is 2 + 2?"}]


def proposing(
    answers: dict[str, NewAnswer], turns: dict[str, int] | None = None, delays: dict[str, float] | None = None
):
    """Each agent gives its answer, then votes for agent1; `turns` counts the turns each took."""

    async def take_turn(agent_id: str, view: View) -> Action:
        if turns is not None:
            turns[agent_id] = turns.get(agent_id, 0) + 1
        await asyncio.sleep((delays or {}).get(agent_id, 0.0))
        return Vote("agent1", "agent1 is right") if agent_id in view.answers else answers[agent_id]

    return take_turn


async def run(answers: dict[str, NewAnswer], limits: Limits | None = None, **kwargs):
    events: list[Event] = []
    coordinator = Coordinator(list(answers), proposing(answers, **kwargs), limits or Limits(), events.append)
    return await coordinator.run(), events


async def test_the_same_text_up_to_case_and_spacing_ends_the_run_after_round_one():
    turns: dict[str, int] = {}
    said = {"agent1": "The answer is 4.", "agent2": "the answer  is 4.\n", "agent3": "  THE ANSWER IS\t4."}
    outcome, events = await run({a: NewAnswer(t) for a, t in said.items()}, turns=turns)
    assert outcome.end_reason == "unanimous" and outcome.chosen_by == "unanimous"
    assert outcome.winner == "agent1" and outcome.votes == []
    # No turn was started for a vote that could not change the outcome.
    assert turns == {"agent1": 1, "agent2": 1, "agent3": 1}
    assert [e.kind for e in events].count("turn") == 3
    assert all(state.status == "stopped" for state in outcome.agents.values())
    assert events[-1].kind == "done" and events[-1].detail == "unanimous" and events[-1].target == "agent1"


async def test_the_same_calls_with_arguments_written_differently_are_the_same_answer():
    written = [
        '{"path": "a.py", "lines": [1, 2]}',
        '{"lines":[1,2],"path":"a.py"}',
        '{\n "path": "a.py",\n "lines": [1, 2]\n}',
    ]
    answers = {
        agent_id: NewAnswer(f"{agent_id} reads it", (ToolCall("read_file", arguments),))
        for agent_id, arguments in zip(AGENTS, written, strict=True)
    }
    outcome, _ = await run(answers)
    assert outcome.end_reason == "unanimous" and outcome.winner == "agent1"
    assert outcome.latest_answers["agent1"].tool_calls[0].arguments == written[0]  # returned as agent1 wrote it


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ('{"n": 1}', '{"n": true}'),  # equal in Python (True == 1), not in JSON
        ('{"n": 1}', '{"n": 2}'),
        ('{"path": "a.py"}', '{"path": "b.py"}'),
    ],
)
async def test_different_arguments_go_to_the_vote(one: str, other: str):
    answers = {
        "agent1": NewAnswer("", (ToolCall("f", one),)),
        "agent2": NewAnswer("", (ToolCall("f", other),)),
    }
    outcome, _ = await run(answers)
    assert outcome.end_reason == "consensus" and outcome.chosen_by == "votes"


CALL = ToolCall("f", "{}")


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (NewAnswer("The answer is 4."), NewAnswer("The answer is 5.")),
        (NewAnswer("The answer is 4."), NewAnswer("The answer is 4.", (CALL,))),  # an action is not words
        (NewAnswer("", (CALL,)), NewAnswer("", (CALL, CALL))),  # a second call
        (NewAnswer("", (CALL,)), NewAnswer("", (ToolCall("g", "{}"),))),  # another tool
    ],
)
async def test_answers_that_differ_in_substance_go_to_the_vote(first: NewAnswer, second: NewAnswer):
    outcome, _ = await run({"agent1": first, "agent2": second})
    assert outcome.end_reason == "consensus"


async def test_off_the_vote_still_happens():
    outcome, _ = await run({a: NewAnswer("4") for a in AGENTS}, limits=Limits(skip_voting_when_unanimous=False))
    assert outcome.end_reason == "consensus" and outcome.tally == {"agent1": 3, "agent2": 0, "agent3": 0}


async def test_a_failed_agent_does_not_stand_in_the_way_but_one_answer_alone_is_not_agreement():
    async def two_agree(agent_id: str, view: View) -> Action:
        if agent_id == "agent3":
            raise AgentFailed("down")
        return Vote("agent1", "right") if agent_id in view.answers else NewAnswer("4")

    outcome = await Coordinator(list(AGENTS), two_agree, Limits()).run()
    assert outcome.end_reason == "unanimous" and outcome.agents["agent3"].status == "failed"

    async def one_left(agent_id: str, view: View) -> Action:
        if agent_id != "agent1":
            raise AgentFailed("down")
        return Vote("agent1", "right") if agent_id in view.answers else NewAnswer("4")

    outcome = await Coordinator(list(AGENTS), one_left, Limits()).run()
    assert outcome.end_reason == "consensus" and outcome.chosen_by == "votes"


async def test_a_late_agent_could_still_disagree_so_the_others_vote():
    # agent3 is still in its first turn when round one's timeout passes: the two who agree do not end the run on
    # their own, and vote.
    answers = {a: NewAnswer("4") for a in AGENTS}
    limits = Limits(initial_round_timeout=0.05, subsequent_round_timeout=5, run_timeout=10)
    outcome, _ = await run(answers, limits=limits, delays={"agent3": 0.5})
    assert outcome.end_reason != "unanimous" and outcome.tally["agent1"] >= 2


def test_every_end_reason_has_words_in_the_progress_lines():
    assert set(get_args(EndReason)) == set(_END_REASONS)
    line = describe_event(Event("done", None, 1.0, target="agent1", detail="unanimous"), max_turns=6)
    assert (
        line == "Done, every agent gave the same first answer, so no vote was needed: agent1's answer was chosen.\n\n"
    )


def proposer(arguments: dict[str, str]):
    """Proposes a call of the caller's `read_file`, arguments written its own way; presents as `Final: ...`."""

    def script(call: Call) -> Reply:
        if call.is_presentation:
            return text("Final: read it")
        if call.answers:
            return vote("agent1", "agent1's call is right")
        return Reply(tool="read_file", arguments=json.dumps(arguments, indent=len(arguments)))

    return script


READ_FILE = {
    "type": "function",
    "function": {
        "name": "read_file",
        "parameters": {
            "type": "object",
            "properties": {"path": {"type": "string"}, "mode": {"type": "string"}},
            "required": ["path"],
        },
    },
}


async def test_through_litellm_the_agreed_call_is_returned_after_one_round(fake, registered):
    fake.script("a", proposer({"path": "a.py", "mode": "r"}))
    fake.script("b", proposer({"mode": "r", "path": "a.py"}))
    write_preset(registered, "team", [agent("a"), agent("b")])
    response = await litellm.acompletion(model="massgen/team", messages=QUESTION, tools=[READ_FILE])
    record = response.massgen
    assert record["end_reason"] == "unanimous" and record["chosen_by"] == "unanimous" and record["winner"] == "agent1"
    # One call per agent, no presentation: a proposed action is returned as it was proposed.
    assert len(fake.calls) == 2 and [c["kind"] for c in record["calls"]] == ["turn", "turn"]
    calls = response.choices[0].message.tool_calls
    assert [(c.function.name, json.loads(c.function.arguments)) for c in calls] == [
        ("read_file", {"path": "a.py", "mode": "r"})
    ]
    assert response.choices[0].finish_reason == "tool_calls"
    assert record["options"]["skip_voting_when_unanimous"] is True


async def test_through_litellm_agreed_text_is_presented_as_final_says(fake, registered):
    fake.script("a", answer_then_vote("Four."))
    fake.script("b", lambda call: text("Final: 4") if call.is_presentation else answer("  four. "))
    write_preset(registered, "team", [agent("a"), agent("b")])
    response = await litellm.acompletion(model="massgen/team", messages=QUESTION)
    assert response.massgen["end_reason"] == "unanimous"
    assert response.choices[0].message.content == "Final: Four."  # agent1 presents, as `final: present` says
    assert [c.is_presentation for c in fake.calls] == [False, False, True]

    response = await litellm.acompletion(model="massgen/team", messages=QUESTION, final="winner_answer")
    assert response.choices[0].message.content == "Four."


async def test_the_record_the_live_view_and_the_report_say_it(fake, registered):
    fake.script("a", answer_then_vote("4"))
    write_preset(registered, "team", [agent("a"), agent("a")])
    chunks = [c async for c in await litellm.acompletion(model="massgen/team", messages=QUESTION, stream=True)]
    events = [c.massgen_event for c in chunks if getattr(c, "massgen_event", None)]
    view = LiveView()
    for event in events:
        view.apply(event)
    assert view.outcome == "unanimous (every agent gave the same first answer, so no vote was needed): agent1"
    thinking = "".join(getattr(c.choices[0].delta, "reasoning_content", None) or "" for c in chunks if c.choices)
    assert "Done, every agent gave the same first answer" in thinking
    record = RunRecord.model_validate(next(c.massgen for c in chunks if getattr(c, "massgen", None)))
    page = render(record)
    assert "ended by unanimous (every agent gave the same first answer" in page and "chosen by unanimous" in page


async def test_a_request_may_turn_it_off(fake, registered):
    fake.script("a", answer_then_vote("4"))
    write_preset(registered, "team", [agent("a"), agent("a")])
    response = await litellm.acompletion(model="massgen/team", messages=QUESTION, skip_voting_when_unanimous=False)
    assert response.massgen["end_reason"] == "consensus" and response.massgen["tally"] == {"agent1": 2, "agent2": 0}


def test_the_command_line_says_how_the_answer_was_chosen(tmp_path: Path) -> None:
    with LoopbackServer(FakeLLM(default=answer_then_vote("Four."))) as server:
        agents = [{"model": f"openai/m{i}", "api_base": server.base_url, "api_key": KEY} for i in (1, 2)]
        (tmp_path / "team.yaml").write_text(yaml.safe_dump({"agents": agents, "final": "winner_answer"}))
        env = {**os.environ, "MASSGEN_PRESETS_DIR": str(tmp_path), "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
        done = subprocess.run(
            [sys.executable, "-m", "massgen_litellm", "ask", "What is 2 + 2?", "--preset", "team"],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "Four."
    assert "[unanimous: every agent gave the same first answer, so agent1's was taken without a vote;" in done.stderr
