"""The tests' scripted OpenAI-compatible server (`tests/loopback.py`), in a process of its own, for benchmarks.

Every model it is asked for runs the same two-round script after a fixed latency: answer, then vote for agent1
once agent1 has answered, then present. It prints its base URL on one line and serves until stdin closes, so it
never outlives the benchmark that started it.

    python -m benchmarks.fake_server --latency 0.2
"""

from __future__ import annotations

import argparse
import sys

from tests.fake_llm import FakeLLM, answer_then_vote
from tests.loopback import LoopbackServer


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fake_server", description=__doc__)
    parser.add_argument("--latency", type=float, default=0.2, help="seconds before every reply (default 0.2)")
    args = parser.parse_args()
    script = answer_then_vote("The answer is 4: two plus two makes four.", "agent1", delay=args.latency)
    with LoopbackServer(FakeLLM(default=script)) as server:
        print(server.base_url, flush=True)
        sys.stdin.read()


if __name__ == "__main__":
    main()
