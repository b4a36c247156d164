"""Does counterbalanced answer order reduce position bias? Measured on the coordination core with a scripted fleet.

`python -m benchmarks.position_bias [--runs N]`. Three agents; in each run one of them, at random, holds the right
answer. Every agent answers, then votes: with probability `bias` for the answer it is shown first, otherwise for the
right one, the way a position-biased judge would. The runs are pure asyncio (no model calls, no sleeps), seeded, so
the figures repeat exactly. Reported: how often the right answer wins, with and without counterbalancing.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random

from benchmarks.machine import header
from massgen_litellm.coordination import Action, Coordinator, Limits, NewAnswer, View, Vote

AGENTS = ["agent1", "agent2", "agent3"]


async def one_run(right: str, bias: float, rng: random.Random, counterbalance: bool) -> bool:
    async def take_turn(agent_id: str, view: View) -> Action:
        await asyncio.sleep(0)
        if agent_id not in view.answers:
            return NewAnswer("right" if agent_id == right else f"wrong, says {agent_id}")
        target = next(iter(view.answers)) if rng.random() < bias else right
        return Vote(target, "looks best")

    outcome = await Coordinator(AGENTS, take_turn, Limits(counterbalance=counterbalance)).run()
    return outcome.winner == right


async def measure(runs: int, bias: float, counterbalance: bool, seed: int = 7) -> float:
    rng = random.Random(seed)
    wins = 0
    for index in range(runs):
        wins += await one_run(AGENTS[index % len(AGENTS)], bias, rng, counterbalance)
    return wins / runs


def interval(p: float, n: int) -> str:
    half = 1.96 * math.sqrt(p * (1 - p) / n)
    return f"{p:.1%} ± {half:.1%}"


async def main(runs: int) -> None:
    print(header("benchmarks.position_bias") + "\n", flush=True)
    print("| bias (votes for the first answer shown) | right answer wins, agent order | counterbalanced |")
    print("|---:|---:|---:|")
    for bias in (0.2, 0.4, 0.6):
        plain = await measure(runs, bias, counterbalance=False)
        rotated = await measure(runs, bias, counterbalance=True)
        print(f"| {bias:.0%} | {interval(plain, runs)} | {interval(rotated, runs)} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m benchmarks.position_bias", description=__doc__)
    parser.add_argument("--runs", type=int, default=3000)
    asyncio.run(main(parser.parse_args().runs))
