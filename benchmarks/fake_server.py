"""The scripted OpenAI-compatible server (`massgen_litellm/testing/loopback.py`), in a process of its own, for
benchmarks.

Every model it is asked for runs the same two-round script after a fixed latency: answer, then vote for agent1
once agent1 has answered, then present. Each agent's answer names the agent, so the answers differ and the run goes
through its vote round (a team whose first answers are all the same would end after round one: unanimous).
`--dialect massgen` reads the prompts of the `massgen` package instead of ours, so the same scenario can be run
through it. It prints its base URL on one line and serves until stdin closes, so it never outlives the benchmark
that started it.

    python -m benchmarks.fake_server --latency 0.2 [--dialect massgen]
"""

from __future__ import annotations

import argparse
import re
import sys

from massgen_litellm.testing.loopback import LoopbackServer
from massgen_litellm.testing.openai_chat import Call, FakeLLM, Reply, Script, answer, answer_then_vote, text, vote

ANSWER = "The answer is 4: two plus two makes four."
# How massgen shows existing answers: `<agent1> ... <end of agent1>` inside its CURRENT ANSWERS block.
_MASSGEN_ANSWER = re.compile(r"<(agent\d+)(?:\.\d+)?> ")


def massgen_script(latency: float) -> Script:
    def script(call: Call) -> Reply:
        prompt = "\n".join(str(m.get("content") or "") for m in call.messages)
        if "vote" in call.tools and "agent1" in _MASSGEN_ANSWER.findall(prompt):
            return vote("agent1", "agent1 is right", delay=latency)
        if "new_answer" in call.tools:
            return answer(ANSWER, delay=latency)
        return text(f"Final: {ANSWER}", delay=latency)

    return script


def our_script(latency: float) -> Script:
    """Answer (an answer of one's own: `ANSWER (agentN)`), vote for agent1 once it has answered, present."""

    def script(call: Call) -> Reply:
        return answer_then_vote(f"{ANSWER} ({call.agent_id})", "agent1", delay=latency)(call)

    return script


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fake_server", description=__doc__)
    parser.add_argument("--latency", type=float, default=0.2, help="seconds before every reply (default 0.2)")
    parser.add_argument("--dialect", choices=["ours", "massgen"], default="ours")
    args = parser.parse_args()
    script = massgen_script(args.latency) if args.dialect == "massgen" else our_script(args.latency)
    with LoopbackServer(FakeLLM(default=script), keep_alive=True) as server:  # as providers keep connections
        print(server.base_url, flush=True)
        sys.stdin.read()


if __name__ == "__main__":
    main()
