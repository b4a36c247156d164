"""The two protocols side by side: the same team, once answering and voting by tool calls, once in plain text.

`python -m benchmarks.protocols [--local N]`. The scripted fleet: three agents on the loopback fake (everyone
answers, everyone votes for agent1), reported as calls, prompt and completion tokens (as the fake counts them) and
time. With `--local N`, also the `local` team (SmolLM2-135M on llama.cpp's server, the `local` extra) on N simple
questions with each protocol: answers right, calls, and time per question.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import litellm

from benchmarks.machine import header
from massgen_litellm import register_with_litellm
from massgen_litellm.testing.loopback import LoopbackServer
from massgen_litellm.testing.openai_chat import KEY, FakeLLM, answer_then_vote

QUESTIONS = [
    ("What is the capital of France?", "paris"),
    ("What is 2 + 2?", "4"),
    ("How many legs does a spider have?", "eight"),
    ("What colour is the sky on a clear day?", "blue"),
    ("What is the largest planet in the solar system?", "jupiter"),
]


async def scripted() -> None:
    fake = FakeLLM(default=answer_then_vote("The answer is 4: two plus two makes four."))
    with LoopbackServer(fake) as server:
        columns = ["protocol", "calls", "prompt tokens", "completion tokens", "time", "tokens / tools", "time / tools"]
        print("| " + " | ".join(columns) + " |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        first: tuple[int, float] | None = None
        for protocol in ("tools", "text"):
            fake.calls.clear()
            models = [
                {"model": "openai/m", "api_base": server.base_url, "api_key": KEY, "protocol": protocol}
                for _ in range(3)
            ]
            began = time.monotonic()
            # The three answer alike: the vote round is kept, since voting is half of what a protocol is.
            await litellm.acompletion(
                model="massgen/build",
                messages=[{"role": "user", "content": "What is 2 + 2?"}],
                models=models,
                skip_voting_when_unanimous=False,
            )
            took = time.monotonic() - began
            used = fake.reported_usage()
            first = first or (used["total_tokens"], took)
            print(
                f"| {protocol} | {len(fake.calls)} | {used['prompt_tokens']} | {used['completion_tokens']} | "
                f"{took:.2f} s | {used['total_tokens'] / first[0]:.2f} | {took / first[1]:.2f} |"
            )


async def local(count: int) -> None:
    print("\n| local team, protocol | right | calls per question | median time per question |")
    print("|---|---:|---:|---:|")
    for protocol in ("text", "tools"):
        right, calls, times = 0, [], []
        for question, expected in QUESTIONS[:count]:
            models = [
                {"model": "local/smollm2", "protocol": protocol, "temperature": t, "max_tokens": 200, "seed": seed}
                for seed, t in ((1, 0.2), (2, 0.6), (3, 0.9))
            ]
            began = time.monotonic()
            # Three turns, as when this was first measured: answering and then voting, in each protocol.
            response = await litellm.acompletion(
                model="massgen/local",
                messages=[{"role": "user", "content": question}],
                models=models,
                max_turns_per_agent=3,
            )
            times.append(time.monotonic() - began)
            calls.append(len(response.massgen["calls"]))
            right += expected in (response.choices[0].message.content or "").lower()
        print(f"| {protocol} | {right}/{count} | {statistics.mean(calls):.1f} | {statistics.median(times):.1f} s |")


async def main(local_count: int) -> None:
    print(header("benchmarks.protocols") + "\n", flush=True)
    register_with_litellm(load_env=False)
    await scripted()
    if local_count:
        await local(local_count)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m benchmarks.protocols", description=__doc__)
    parser.add_argument("--local", type=int, default=0, help="also run the local team on this many questions")
    asyncio.run(main(parser.parse_args().local))
