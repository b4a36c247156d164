"""LiteLLM's in-process cache on a team: a repeated request answered without a run, against the run itself.

`python -m benchmarks.cache [--latency 0.2] [--repeats 5]`. Two scripted agents behind a loopback server answer
after `latency`, vote, and agent1 presents: a run is three rounds of calls. With `litellm.cache = Cache()` (in
memory) the same request again is answered from the cache, the first run's record included, and no agent is called.
Printed as medians and their ratio, measured in the same run.
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
from massgen_litellm.testing.loopback import LoopbackServer, until
from massgen_litellm.testing.openai_chat import KEY, FakeLLM, answer_then_vote


async def measure(server: LoopbackServer, repeats: int) -> None:
    runs, hits = [], []
    for index in range(repeats):
        question = [{"role": "user", "content": f"What is 2 + {index}?"}]
        began = time.monotonic()
        first = await litellm.acompletion(model="massgen/pair", messages=question)
        runs.append(time.monotonic() - began)
        calls = len(server.fake.calls)
        await until(lambda n=index: len(litellm.cache.cache.cache_dict) > n, 30, "the reply in the cache")
        began = time.monotonic()
        again = await litellm.acompletion(model="massgen/pair", messages=question)
        hits.append(time.monotonic() - began)
        assert again._hidden_params.get("cache_hit") and len(server.fake.calls) == calls
        assert again.massgen["run_id"] == first.massgen["run_id"]
    run, hit = statistics.median(runs), statistics.median(hits)
    print("| request | median time to answer |")
    print("|---|---:|")
    print(f"| first (a run) | {run:.3f} s |")
    print(f"| repeated (LiteLLM's in-memory cache, record included, no agent called) | {hit:.4f} s |")
    print(f"\ncached / run = {hit / run:.4f} ({run / hit:.0f}x faster)")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cache", description=__doc__)
    parser.add_argument("--latency", type=float, default=0.2, help="seconds each scripted call takes")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with (
        LoopbackServer(FakeLLM(answer_then_vote("4", delay=args.latency))) as server,
        tempfile.TemporaryDirectory() as folder,
    ):
        agents = [
            {"model": f"openai/{n}", "api_base": server.base_url, "api_key": KEY, "protocol": "tools"} for n in "ab"
        ]
        Path(folder, "pair.yaml").write_text(yaml.safe_dump({"agents": agents}))
        register_with_litellm(presets_dir=folder, load_env=False)
        litellm.cache = litellm.Cache(type="local")
        asyncio.run(measure(server, args.repeats))


if __name__ == "__main__":
    main()
