"""One straggler among three agents: time to answer with and without round timeouts, against the fast agents' floor.

`python -m benchmarks.stragglers [--latency 0.2] [--repeats 3]`. Two agents answer after `latency`, the third after
5 x `latency`; every agent answers, then votes for agent1 (`final: winner_answer`, so the run is one answer round
and one vote round). The floor is what the fast agents alone need: two latencies. Without round timeouts the run
waits for the straggler's answer and then its vote; with them (round one closing after 1.2 x latency, later rounds
likewise, 0.02 s of grace) the fast agents vote without it and the run ends in consensus among them.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import litellm
import yaml

from benchmarks.machine import header
from massgen_litellm import register_with_litellm
from massgen_litellm.testing.loopback import LoopbackServer
from massgen_litellm.testing.openai_chat import KEY, FakeLLM, answer_then_vote

QUESTION = [{"role": "user", "content": "What is 2 + 2?"}]


async def timed(preset: str) -> float:
    began = time.monotonic()
    response = await litellm.acompletion(model=f"massgen/{preset}", messages=QUESTION)
    assert response.massgen["winner"] == "agent1"
    return time.monotonic() - began


def write_presets(folder: str, base_url: str, latency: float) -> None:
    agents = [
        {"model": f"openai/{name}", "api_base": base_url, "api_key": KEY, "protocol": "tools"}
        for name in ("fast", "fast", "slow")
    ]
    # The three answer alike: the vote round is kept (skip_voting_when_unanimous off), since it is the straggler's
    # vote, as much as its answer, that round timeouts stop the others from waiting for.
    base = {"agents": agents, "final": "winner_answer", "skip_voting_when_unanimous": False}
    timeouts = {
        "initial_round_timeout_seconds": 1.2 * latency,
        "subsequent_round_timeout_seconds": 1.2 * latency,
        "round_timeout_grace_seconds": 0.02,
    }
    Path(folder, "waits.yaml").write_text(yaml.safe_dump(base))
    Path(folder, "rounds.yaml").write_text(yaml.safe_dump({**base, **timeouts}))


async def measure(latency: float, repeats: int) -> None:
    print(header("benchmarks.stragglers") + "\n", flush=True)
    await timed("waits")  # warm: clients and caches
    floor = 2 * latency
    print(f"| round timeouts | median time to answer | against the fast agents' floor ({floor:.2f} s) |")
    print("|---|---:|---:|")
    for preset, label in (("waits", "off"), ("rounds", "1.2 x latency + 0.02 s")):
        took = statistics.median([await timed(preset) for _ in range(repeats)])
        print(f"| {label} | {took:.2f} s | {took / floor:.2f}x |")


def main(latency: float, repeats: int) -> None:
    fake = FakeLLM()
    fake.script("fast", answer_then_vote("4", delay=latency))
    fake.script("slow", answer_then_vote("4", delay=5 * latency))
    with LoopbackServer(fake) as server, tempfile.TemporaryDirectory() as folder:
        write_presets(folder, server.base_url, latency)
        register_with_litellm(presets_dir=folder, load_env=False)
        asyncio.run(measure(latency, repeats))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m benchmarks.stragglers", description=__doc__)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--repeats", type=int, default=5)
    arguments = parser.parse_args()
    main(arguments.latency, arguments.repeats)
