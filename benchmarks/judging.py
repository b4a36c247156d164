"""Can a preset's agents judge each other's answers? The step that should make a team better than its members.

    python -m benchmarks.judging --preset local --items 40

For each item, every agent answers alone (as in `benchmarks.quality`). Where the agents disagree on what is right
(some answers right, some wrong), each agent is then shown all the answers, in the coordination turn a run really
sends (the text protocol, answer order rotated per voter), twice: once when it may only vote, once when it may vote
or answer again. Reported: how many of its replies the protocol can read as a vote, how many of those votes went to
a right answer against what choosing at random would give, and whether answers written after seeing the others are
right more often than the agents' own first answers. A model that cannot judge gains nothing from the turns after
its first answer, which is why the `local` preset stops there (see docs/quality.md).
"""

from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import argparse
import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

import litellm

from benchmarks.machine import header
from benchmarks.quality import alone, is_right, reach, runnable_agents
from benchmarks.quality_items import Item, items
from massgen_litellm import register_with_litellm
from massgen_litellm.config import AgentConfig
from massgen_litellm.coordination import NewAnswer, View, Vote
from massgen_litellm.protocol import parse_reply, turn_messages


@dataclass
class Tally:
    turns: int = 0
    votes: int = 0
    votes_right: int = 0
    votes_by_chance: float = 0.0
    answers: int = 0
    answers_right: int = 0
    first_answers_right: int = 0  # the same agents' own first answers, on the same turns


async def judge(agent: AgentConfig, agent_id: str, n: int, item: Item, view: View) -> str:
    messages = turn_messages(
        [{"role": "user", "content": item.question}], agent_id, n, view, "text", agent.system_message
    )
    model, params = await reach(agent)
    response = await litellm.acompletion(model=model, messages=messages, **params)
    return response.choices[0].message.content or ""


async def evaluate(preset_name: str, chosen: Sequence[Item]) -> None:
    agents = runnable_agents(preset_name)
    if agents is None:
        return
    only_vote, vote_or_answer, disputed = Tally(), Tally(), 0
    for item in chosen:
        first = [(await alone(agent, item))[0] for agent in agents]
        right = [is_right(text, item) for text in first]
        if all(right) or not any(right):
            continue
        disputed += 1
        for position, agent in enumerate(agents):
            # Rotated so that no answer is always shown first (small models favour the first).
            order = [(position + k) % len(agents) for k in range(len(agents))]
            shown = {f"agent{k + 1}": first[k] for k in order}
            for tally, can_answer in ((only_vote, False), (vote_or_answer, True)):
                view = View(version=1, answers=shown, can_answer=can_answer)
                reply = await judge(agent, f"agent{position + 1}", len(agents), item, view)
                parsed = parse_reply(reply, [], view)
                tally.turns += 1
                if isinstance(parsed, Vote):
                    tally.votes += 1
                    tally.votes_right += right[int(parsed.agent_id.removeprefix("agent")) - 1]
                    tally.votes_by_chance += sum(right) / len(right)
                elif isinstance(parsed, NewAnswer):
                    tally.answers += 1
                    tally.answers_right += is_right(parsed.content, item)
                    tally.first_answers_right += right[position]
    print(f"\nmassgen/{preset_name}: {disputed} of {len(chosen)} items had right and wrong first answers")
    print("| turn | replies | read as votes | votes for a right answer (at random) | new answers right (first) |")
    print("|---|---:|---:|---:|---:|")
    for name, tally in (("may only vote", only_vote), ("may vote or answer", vote_or_answer)):
        print(
            f"| {name} | {tally.turns} | {tally.votes} | {tally.votes_right} ({tally.votes_by_chance:.1f}) | "
            f"{tally.answers_right} of {tally.answers} ({tally.first_answers_right}) |"
        )


async def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.judging", description=__doc__)
    parser.add_argument("--preset", action="append", help="preset(s) to evaluate (default: local)")
    parser.add_argument("--items", type=int, default=100, help="the first N items (default: all 100)")
    args = parser.parse_args(argv)
    print(header("benchmarks.judging"), flush=True)
    register_with_litellm(load_env=True)
    litellm.suppress_debug_info = True
    for preset in args.preset or ["local"]:
        await evaluate(preset, items()[: args.items])


if __name__ == "__main__":
    asyncio.run(main())
