"""The coordination core alone: plain asyncio, scripted turn takers, no LiteLLM."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from massgen_litellm.coordination import Action, Coordinator, Event, Limits, NewAnswer, TurnFailed, View, Vote

Policy = Callable[[View], Action]


def taker(policies: dict[str, Policy], delays: dict[str, float] | None = None, seen: list | None = None):
    async def take_turn(agent_id: str, view: View) -> Action:
        if seen is not None:
            seen.append((agent_id, view))
        await asyncio.sleep((delays or {}).get(agent_id, 0.0))
        return policies[agent_id](view)

    return take_turn


def answer_or_vote(content: str, target: str) -> Policy:
    return lambda view: Vote(target, "best") if target in view.answers else NewAnswer(content)


async def run(policies, limits=None, delays=None, seen=None, events=None):
    coordinator = Coordinator(
        list(policies), taker(policies, delays, seen), limits or Limits(), events.append if events is not None else None
    )
    return await coordinator.run()


async def test_consensus_on_the_first_answer_once_all_have_voted():
    outcome = await run(
        {a: answer_or_vote(f"answer of {a}", "agent1") for a in ("agent1", "agent2", "agent3")},
        delays={"agent1": 0.0, "agent2": 0.02, "agent3": 0.02},
    )
    assert outcome.end_reason == "consensus"
    assert outcome.winner == "agent1" and outcome.chosen_by == "votes"
    assert outcome.tally["agent1"] == 3
    assert all(state.status == "voted" for state in outcome.agents.values())


async def test_a_waiting_agent_is_woken_only_when_it_may_go_on(monkeypatch):
    """Agents wait at round one's barrier and after voting. An answer that leaves round one open, or a vote, lets
    none of them go on: waking them all for each would be O(agents^2) wake-ups a run, for nothing."""
    waits = []
    wait = asyncio.Event.wait

    async def counted(event: asyncio.Event) -> bool:
        waits.append(event)
        return await wait(event)

    monkeypatch.setattr(asyncio.Event, "wait", counted)
    agents = [f"agent{i}" for i in range(1, 17)]
    outcome = await run(
        {a: answer_or_vote(f"answer of {a}", "agent1") for a in agents},
        delays={a: 0.001 * i for i, a in enumerate(agents)},  # one after another: each answer finds the others waiting
        limits=Limits(skip_voting_when_unanimous=False),
    )
    assert outcome.end_reason == "consensus" and outcome.tally["agent1"] == 16
    # Each agent waits once at the barrier and once after its vote; the coordinator waits once for the end.
    assert len(waits) <= 2 * len(agents) + 1


async def test_round_one_is_a_barrier_so_no_turn_is_taken_on_a_partial_view():
    seen: list = []
    outcome = await run(
        {a: answer_or_vote(f"answer of {a}", "agent1") for a in ("agent1", "agent2", "agent3")},
        delays={"agent1": 0.0, "agent2": 0.01, "agent3": 0.05},
        seen=seen,
    )
    # Every second turn saw all three answers, so no vote had to be voided and nobody went a third time.
    assert all(len(view.answers) == 3 for _, view in seen[3:])
    assert not any(v.voided for v in outcome.votes)
    assert [state.turns for state in outcome.agents.values()] == [2, 2, 2]
    assert outcome.end_reason == "consensus"


async def test_an_agent_that_votes_without_answering_releases_the_barrier():
    # agent2 fails to answer at first, then votes for agent1 on its second turn without ever answering. agent1,
    # waiting at the barrier for agent2's first answer, must wake and vote too: consensus, not a timeout.
    turns = {"agent2": 0}

    def agent2(view: View) -> Action:
        turns["agent2"] += 1
        if "agent1" not in view.answers:
            raise TurnFailed("not yet")
        return Vote("agent1", "right")

    policies = {"agent1": answer_or_vote("4", "agent1"), "agent2": agent2}
    outcome = await asyncio.wait_for(run(policies, delays={"agent2": 0.02}, limits=Limits(run_timeout=30)), 5)
    assert outcome.end_reason == "consensus" and outcome.tally == {"agent1": 2}
    assert outcome.duration < 10  # the alternative is run_timeout=30: far from either, on any machine


async def test_a_failed_agent_releases_the_barrier():
    async def take_turn(agent_id: str, view: View) -> Action:
        if agent_id == "agent3":
            await asyncio.sleep(0.05)
            raise ConnectionError("provider down")
        return answer_or_vote("A", "agent1")(view)

    outcome = await asyncio.wait_for(Coordinator(["agent1", "agent2", "agent3"], take_turn, Limits()).run(), 2)
    assert outcome.end_reason == "consensus"
    assert outcome.agents["agent3"].status == "failed"
    assert outcome.tally["agent1"] == 2


def refine_once(first: str, second: str, then_vote_for: str) -> Policy:
    """Answer, answer again once every agent has answered, then vote."""

    def policy(view: View) -> Action:
        if second in view.answers.values():
            return Vote(then_vote_for, "settled")
        return NewAnswer(second if first in view.answers.values() else first)

    return policy


async def test_new_answer_voids_earlier_votes_and_voters_decide_again():
    seen: list = []
    outcome = await run(
        {
            "agent1": answer_or_vote("A", "agent1"),
            "agent2": answer_or_vote("B", "agent1"),
            # agent3 is slow: its refined answer lands after the others have voted.
            "agent3": refine_once("C", "C, refined", "agent1"),
        },
        delays={"agent1": 0.0, "agent2": 0.01, "agent3": 0.05},
        seen=seen,
    )
    voided = [v for v in outcome.votes if v.voided]
    assert {v.voter for v in voided if "agent3.2" in (v.voided_reason or "")} == {"agent1", "agent2"}
    # agent2 was asked again and this time saw agent3's refined answer.
    assert any(agent == "agent2" and view.answers.get("agent3") == "C, refined" for agent, view in seen)
    assert outcome.end_reason == "consensus"
    assert outcome.tally["agent1"] == 3


async def test_vote_cast_on_a_stale_view_is_void_and_the_agent_goes_again():
    async def take_turn(agent_id: str, view: View) -> Action:
        policies = {
            "agent1": answer_or_vote("A", "agent1"),
            "agent2": answer_or_vote("B", "agent1"),
            "agent3": refine_once("C", "C, refined", "agent1"),
        }
        # agent2's vote takes long enough for agent3's refined answer to land while it is in flight; agent1 votes
        # at once, before it lands.
        delays = {"agent1": 0.0, "agent2": 0.1 if view.answers else 0.02, "agent3": 0.02}
        await asyncio.sleep(delays[agent_id])
        return policies[agent_id](view)

    coordinator = Coordinator(["agent1", "agent2", "agent3"], take_turn, Limits())
    outcome = await asyncio.wait_for(coordinator.run(), 2)
    stale = [v for v in outcome.votes if v.voided_reason == "cast on answers that had since changed"]
    assert [v.voter for v in stale] == ["agent2"]
    assert outcome.end_reason == "consensus"
    assert outcome.agents["agent2"].turns == 3


async def test_tie_goes_to_the_agent_listed_first():
    outcome = await run(
        {
            "agent1": lambda view: Vote("agent2", "b") if len(view.answers) == 2 else NewAnswer("A"),
            "agent2": lambda view: Vote("agent1", "a") if len(view.answers) == 2 else NewAnswer("B"),
        }
    )
    assert outcome.tally == {"agent1": 1, "agent2": 1}
    assert outcome.winner == "agent1"


async def test_max_answers_per_agent_leaves_only_the_vote():
    seen: list = []
    outcome = await run(
        {
            a: (lambda view, a=a: NewAnswer(f"again, says {a}") if view.can_answer else Vote("agent1", "x"))
            for a in ("agent1", "agent2")
        },
        limits=Limits(max_answers_per_agent=1),
        seen=seen,
    )
    assert all(state.answers == 1 for state in outcome.agents.values())
    assert all(not view.can_answer for _, view in seen[2:])
    assert outcome.end_reason == "consensus"


async def test_turn_limit_ends_the_run_and_the_latest_answer_wins_without_votes():
    outcome = await run(
        {"agent1": lambda view: NewAnswer("first"), "agent2": lambda view: NewAnswer("second")},
        limits=Limits(max_answers_per_agent=3, max_turns_per_agent=3),
        delays={"agent1": 0.0, "agent2": 0.01},
    )
    assert outcome.end_reason == "turn_limit"
    assert not any(outcome.tally.values())
    assert outcome.winner == outcome.answers[-1].agent_id == "agent2"


async def test_timeout_ends_the_run_with_the_current_votes():
    policies = {"agent1": answer_or_vote("A", "agent1"), "agent2": answer_or_vote("B", "agent1")}
    take = taker(policies)

    async def take_turn(agent_id: str, view: View) -> Action:
        if agent_id != "agent3":
            return await take(agent_id, view)
        if not view.answers.get("agent3"):
            return NewAnswer("C")
        await asyncio.sleep(60)  # agent3 never votes
        raise AssertionError("unreachable")

    coordinator = Coordinator(["agent1", "agent2", "agent3"], take_turn, Limits(run_timeout=0.2))
    outcome = await asyncio.wait_for(coordinator.run(), 2)
    assert outcome.end_reason == "timeout"
    assert outcome.winner == "agent1" and outcome.tally["agent1"] == 2
    assert outcome.agents["agent3"].status == "stopped"


async def test_an_agent_that_never_answers_holds_round_one_until_the_timeout():
    async def take_turn(agent_id: str, view: View) -> Action:
        if agent_id == "agent2":
            await asyncio.sleep(60)
        return answer_or_vote("A", "agent1")(view)

    outcome = await asyncio.wait_for(Coordinator(["agent1", "agent2"], take_turn, Limits(run_timeout=0.2)).run(), 2)
    # agent1 waited rather than vote on a view certain to change; with no votes, its answer (the latest) wins.
    assert outcome.end_reason == "timeout"
    assert outcome.agents["agent1"].turns == 1
    assert outcome.winner == "agent1" and not any(outcome.tally.values())


async def test_failing_agent_is_dropped_and_the_rest_finish():
    def broken(view: View) -> Action:
        raise ConnectionError("provider down")

    outcome = await run(
        {"agent1": answer_or_vote("A", "agent1"), "agent2": broken, "agent3": answer_or_vote("C", "agent1")}
    )
    assert outcome.agents["agent2"].status == "failed"
    assert "provider down" in (outcome.agents["agent2"].error or "")
    assert outcome.end_reason == "consensus"
    assert outcome.winner == "agent1"


async def test_all_failing_ends_with_no_winner():
    def broken(view: View) -> Action:
        raise ConnectionError("down")

    outcome = await run({"agent1": broken, "agent2": broken})
    assert outcome.end_reason == "all_failed"
    assert outcome.winner is None


async def test_failed_turns_count_against_the_turn_limit():
    def garbled(view: View) -> Action:
        raise TurnFailed("bad JSON")

    outcome = await run(
        {"agent1": answer_or_vote("A", "agent1"), "agent2": garbled}, limits=Limits(max_turns_per_agent=2)
    )
    assert outcome.agents["agent2"].failed_turns == 2
    assert outcome.agents["agent2"].status == "exhausted"
    assert outcome.end_reason == "turn_limit"
    assert outcome.winner == "agent1"


async def test_same_outputs_give_the_same_run():
    def policies():
        return {a: answer_or_vote(f"answer {a}", "agent2") for a in ("agent1", "agent2", "agent3")}

    delays = {"agent1": 0.01, "agent2": 0.0, "agent3": 0.02}
    first, second = await run(policies(), delays=delays), await run(policies(), delays=delays)

    def shape(o):
        return (
            o.end_reason,
            o.winner,
            o.tally,
            [(a.label, a.content) for a in o.answers],
            [(v.voter, v.target, v.voided) for v in o.votes],
        )

    assert shape(first) == shape(second)


async def test_events_tell_the_story_in_order():
    events: list[Event] = []
    await run({a: answer_or_vote(f"answer of {a}", "agent1") for a in ("agent1", "agent2")}, events=events)
    kinds = [e.kind for e in events]
    assert kinds[-1] == "done" and events[-1].target == "agent1"
    assert kinds.index("answer") < kinds.index("vote")


async def test_cancelling_the_run_cancels_every_turn():
    started = asyncio.Event()
    cancelled: list[str] = []

    async def hang(agent_id: str, view: View) -> Action:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.append(agent_id)
            raise
        raise AssertionError("unreachable")

    task = asyncio.create_task(Coordinator(["agent1", "agent2"], hang, Limits()).run())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sorted(cancelled) == ["agent1", "agent2"]


async def test_answers_are_shown_in_agent_order_not_arrival_order():
    seen: list = []
    await run(
        {a: answer_or_vote(f"answer of {a}", "agent1") for a in ("agent1", "agent2", "agent3")},
        delays={"agent1": 0.03, "agent2": 0.02, "agent3": 0.0},
        seen=seen,
    )
    assert all(list(view.answers) == sorted(view.answers) for _, view in seen if view.answers)
    assert any(list(view.answers) == ["agent1", "agent2", "agent3"] for _, view in seen)


async def answered_alone(answers, delays=None):
    """A run in which every agent gives its one answer without seeing another, and nobody votes."""
    return await run(
        {agent_id: (lambda view, text=text: NewAnswer(text)) for agent_id, text in answers.items()},
        limits=Limits(max_answers_per_agent=1, max_turns_per_agent=1),
        delays=delays,
    )


async def test_with_no_votes_and_only_independent_answers_the_most_agreed_wins():
    answers = {
        "agent1": "Lyon, surely.",
        "agent2": "The capital of France is Paris.",
        "agent3": "Paris is the capital.",
    }
    # agent1, the odd one out, answers last.
    outcome = await answered_alone(answers, delays={"agent1": 0.02, "agent2": 0.0, "agent3": 0.01})
    assert outcome.end_reason == "turn_limit" and not any(outcome.tally.values())
    assert outcome.winner == "agent2"  # agrees with agent3 as much as agent3 with it; listed first
    assert outcome.chosen_by == "most_agreed"
    assert not any(a.informed for a in outcome.answers)


async def test_agreement_leaves_out_the_words_every_answer_has():
    # Two agents say 42 in their own words, one says 38. Counting "17", "25" and "is", which every answer has,
    # the short wrong answer is the closest to both long right ones; without them the two that agree win.
    answers = {
        "agent1": "17 + 25 is 38",
        "agent2": "Adding them up very carefully, 17 + 25 is 42",
        "agent3": "We know that in base ten 17 + 25 is 42",
    }
    outcome = await answered_alone(answers)
    assert outcome.chosen_by == "most_agreed" and outcome.winner == "agent2"
    # Answers with nothing but the shared words agree with each other fully.
    outcome = await answered_alone({"agent1": "Not Paris: Lyon.", "agent2": "Paris", "agent3": "Paris!"})
    assert outcome.winner == "agent2"


async def test_a_straggler_no_longer_holds_the_others_once_its_round_closes():
    # agent3 takes 30 s a turn, the others 10 ms. Round one closes after 0.1 s + 0.05 s grace: agents 1 and 2 vote
    # without agent3's answer, and the run ends in consensus without waiting for it.
    policies = {a: answer_or_vote(f"answer of {a}", "agent1") for a in ("agent1", "agent2", "agent3")}
    events: list[Event] = []
    outcome = await run(
        policies,
        limits=Limits(initial_round_timeout=0.1, subsequent_round_timeout=0.1, round_timeout_grace=0.05),
        delays={"agent1": 0.01, "agent2": 0.01, "agent3": 30.0},
        events=events,
    )
    assert outcome.end_reason == "consensus" and outcome.winner == "agent1"
    assert outcome.duration < 30  # it did not wait for agent3's turn
    assert [e.agent_id for e in events if e.kind == "late"] == ["agent3"]
    assert outcome.agents["agent3"].status == "stopped"


async def test_a_turn_begun_just_after_its_round_is_late_once_it_has_lasted_the_timeout():
    # With no grace, the round's timer fires when the round has lasted its timeout; a turn begun a few ms after the
    # round (behind another agent's synchronous set-up, as LiteLLM's is) has not lasted that long yet. It must still
    # be found late a moment later, not waited for until the run's end.
    straggler = asyncio.Event()  # never set: agent2's first turn lasts until it is stopped

    async def take_turn(agent_id: str, view: View) -> Action:
        if agent_id == "agent2":
            await straggler.wait()
        if not view.answers:
            time.sleep(0.02)  # noqa: ASYNC251 (blocking on purpose: synchronous work that delays agent2's turn)
            return NewAnswer("4")
        return Vote("agent1", "right")

    limits = Limits(initial_round_timeout=0.1, round_timeout_grace=0.0, run_timeout=10)
    events: list[Event] = []
    outcome = await Coordinator(["agent1", "agent2"], take_turn, limits, events.append).run()
    assert [e.agent_id for e in events if e.kind == "late"] == ["agent2"]
    assert outcome.end_reason == "consensus" and outcome.winner == "agent1"
    assert outcome.duration < 5  # found late after about 0.12 s, not held until the run's end


async def test_without_round_timeouts_the_straggler_is_waited_for():
    policies = {a: answer_or_vote(f"answer of {a}", "agent1") for a in ("agent1", "agent2", "agent3")}
    outcome = await run(policies, delays={"agent1": 0.01, "agent2": 0.01, "agent3": 0.3})
    assert outcome.duration >= 0.6 and outcome.tally["agent1"] == 3


async def test_a_late_agent_rejoins_with_the_view_of_the_moment():
    # agent2's first turn outlasts round one (0.05 s), so agent1 goes on without it, refining its answer until
    # agent2's answer arrives; agent2, back, is counted again: it sees the view of the moment and votes.
    # agent2's first turn ends only once agent1 has gone on without it (a turn the round-one barrier would have
    # held), not after a fixed sleep: on a loaded machine a sleep can end in the same loop pass as the round.
    went_on = asyncio.Event()

    async def take_turn(agent_id: str, view: View) -> Action:
        if agent_id == "agent2":
            if "agent2" not in view.answers:
                await went_on.wait()
                return NewAnswer("late answer")
            return Vote("agent1", "ok")
        if "agent1" in view.answers:
            went_on.set()
        await asyncio.sleep(0.01)
        return Vote("agent1", "mine") if "agent2" in view.answers else NewAnswer(f"4, take {view.version}")

    limits = Limits(
        initial_round_timeout=0.05,
        subsequent_round_timeout=5,
        run_timeout=5,
        max_answers_per_agent=50,
        max_turns_per_agent=60,
    )
    events: list[Event] = []
    outcome = await Coordinator(["agent1", "agent2"], take_turn, limits, events.append).run()
    assert [e.agent_id for e in events if e.kind == "late"] == ["agent2"]
    assert outcome.end_reason == "consensus" and outcome.tally == {"agent1": 2, "agent2": 0}
    assert "agent2" in {a.agent_id for a in outcome.answers}


async def test_max_new_answers_global_leaves_only_votes():
    seen: list = []
    policies = {
        a: (lambda view: NewAnswer("x") if view.can_answer else Vote("agent1", "y"))
        for a in ("agent1", "agent2", "agent3")
    }
    outcome = await run(policies, limits=Limits(max_new_answers_global=2, max_answers_per_agent=5), seen=seen)
    assert len(outcome.answers) == 2 and outcome.end_reason == "consensus"


async def test_counterbalanced_views_rotate_the_order_but_keep_the_ids():
    seen: list = []
    policies = {a: answer_or_vote(f"answer of {a}", "agent1") for a in ("agent1", "agent2", "agent3")}
    await run(policies, limits=Limits(counterbalance=True), seen=seen)
    orders = {agent_id: list(view.answers) for agent_id, view in seen if len(view.answers) == 3}
    assert orders == {
        "agent1": ["agent1", "agent2", "agent3"],
        "agent2": ["agent2", "agent3", "agent1"],
        "agent3": ["agent3", "agent1", "agent2"],
    }
