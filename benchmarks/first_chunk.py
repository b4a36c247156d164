"""What holding the progress lines back costs a stream: time to its first chunk, live progress against the default.

`python -m benchmarks.first_chunk [--latency 0.2] [--repeats 3]`. Two scripted agents behind a loopback server
answer after `latency`, then vote for agent1; agent1 presents (`final: present`). The default (progress held back
until the run has a winner, so that a router can still fall back) sends its first chunk after the answer round and
the vote round; `enable_live_progress: true` sends it at once. Both reach the answer's first character at the same
time: only the first chunk moves. Printed as medians and as the ratio of the two, measured in the same run.
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

from massgen_litellm import register_with_litellm
from massgen_litellm.testing.loopback import LoopbackServer
from massgen_litellm.testing.openai_chat import KEY, FakeLLM, answer_then_vote

QUESTION = [{"role": "user", "content": "What is 2 + 2?"}]


async def timed(preset: str) -> tuple[float, float]:
    """Seconds to the stream's first chunk, and to the first character of the answer."""
    began = time.monotonic()
    first = answer = None
    stream = await litellm.acompletion(model=f"massgen/{preset}", messages=QUESTION, stream=True)
    async for chunk in stream:
        now = time.monotonic() - began
        first = now if first is None else first
        if answer is None and chunk.choices and chunk.choices[0].delta.content:
            answer = now
    assert first is not None and answer is not None
    return first, answer


async def measure(latency: float, repeats: int) -> None:
    await timed("held")  # warm: clients and caches
    results = {}
    for preset in ("live", "held"):
        runs = [await timed(preset) for _ in range(repeats)]
        results[preset] = (statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs))
    print(f"| progress (latency {latency:.2f} s a call) | median first chunk | median first answer character |")
    print("|---|---:|---:|")
    for preset, label in (("live", "enable_live_progress: true"), ("held", "held back (default)")):
        first, answer = results[preset]
        print(f"| {label} | {first:.3f} s | {answer:.3f} s |")
    ratio = results["held"][0] / results["live"][0]
    answers = results["held"][1] / results["live"][1]
    print(f"\nfirst chunk: held back / live = {ratio:.1f}x; first answer character: {answers:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.first_chunk", description=__doc__)
    parser.add_argument("--latency", type=float, default=0.2, help="seconds each scripted call takes")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with (
        LoopbackServer(FakeLLM(answer_then_vote("4", delay=args.latency))) as server,
        tempfile.TemporaryDirectory() as folder,
    ):
        agents = [
            {"model": f"openai/{n}", "api_base": server.base_url, "api_key": KEY, "protocol": "tools"} for n in "ab"
        ]
        for name, live in (("held", False), ("live", True)):
            Path(folder, f"{name}.yaml").write_text(yaml.safe_dump({"agents": agents, "enable_live_progress": live}))
        register_with_litellm(presets_dir=folder, load_env=False)
        asyncio.run(measure(args.latency, args.repeats))


if __name__ == "__main__":
    main()
