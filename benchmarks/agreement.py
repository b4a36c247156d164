"""When the team agrees, one round: a scripted coding session through the real LiteLLM proxy, with
`skip_voting_when_unanimous` on (the default) and off (what every step cost before it).

    python -m benchmarks.agreement              # 3 repeats of each session, 300 ms a model call
    python -m benchmarks.agreement --quick      # one short pass (a smoke test)

A coding agent (the OpenAI SDK, as an agent app uses it) works through the proxy on a ten-step task with four tools
of its own (`list_files`, `read_file`, `run_tests`, `edit_file`). Each step is one request to `massgen/coder`, a team
of three scripted models on the loopback server (`massgen_litellm.testing`): every agent proposes the step's tool
call (the last step: the final text reply), after a fixed latency. In seven steps the three propose the very same
call (its arguments written differently: key order, spacing) or the same text (in different case and spacing); in
three (two edits and a look-up) they propose different ones, then vote for agent1's. The winning call is "run" by the
app (a canned result) and the conversation goes on, so both settings walk the same conversation; the two settings
alternate step by step, so both see the same machine.

Reported per step: wall time of the request, as the app sees it, and tokens, as the provider reported them for every
call of the run; the target is 0.6x or less with the setting on, on the steps where the agents agree. A second
session where the agents differ at every step shows the setting changes nothing there.
"""

from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import argparse
import json
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from benchmarks.machine import header
from massgen_litellm.testing.loopback import LoopbackServer
from massgen_litellm.testing.openai_chat import Call, FakeLLM, Reply, answer, text, vote

ROOT = Path(__file__).resolve().parent.parent
TARGET = 0.6
TASK = "The tests of the calc package fail. Find out why, fix it, and tell me what you changed."
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {"type": "object", "properties": properties, "required": list(properties)},
        },
    }
    for name, description, properties in (
        ("list_files", "List the files under a directory.", {"dir": {"type": "string"}}),
        ("read_file", "Read a file.", {"path": {"type": "string"}}),
        ("run_tests", "Run the tests under a path.", {"target": {"type": "string"}}),
        (
            "edit_file",
            "Replace text in a file.",
            {"path": {"type": "string"}, "old": {"type": "string"}, "new": {"type": "string"}},
        ),
    )
]


@dataclass(frozen=True)
class Step:
    tool: str | None  # None: the final text reply
    arguments: tuple[dict[str, Any], ...]  # per agent (agent1, agent2, agent3); all equal where they agree
    result: str  # what the app's tool returns (or the reply's text)

    @property
    def agree(self) -> bool:
        return all(arguments == self.arguments[0] for arguments in self.arguments)


def same(arguments: dict[str, Any]) -> tuple[dict[str, Any], ...]:
    return (arguments, arguments, arguments)


FINAL = "All 14 tests pass. I fixed the off-by-one in calc.add and the parsing of negative numbers in calc.parse."
SESSION = [
    Step("list_files", same({"dir": "src/calc"}), "src/calc/__init__.py\nsrc/calc/add.py\nsrc/calc/parse.py"),
    Step("run_tests", same({"target": "tests"}), "2 failed, 12 passed: test_add_small, test_parse_negative"),
    Step("read_file", same({"path": "src/calc/add.py"}), "def add(a, b):\n    return a + b + 1\n"),
    Step(
        "edit_file",
        (
            {"path": "src/calc/add.py", "old": "a + b + 1", "new": "a + b"},
            {"path": "src/calc/add.py", "old": "return a + b + 1", "new": "return a + b"},
            {"path": "src/calc/add.py", "old": "+ 1", "new": ""},
        ),
        "edited src/calc/add.py",
    ),
    Step("run_tests", same({"target": "tests"}), "1 failed, 13 passed: test_parse_negative"),
    Step("read_file", same({"path": "src/calc/parse.py"}), "def parse(s):\n    return int(s.strip('-'))\n"),
    Step(
        "edit_file",
        (
            {"path": "src/calc/parse.py", "old": "int(s.strip('-'))", "new": "int(s)"},
            {"path": "src/calc/parse.py", "old": "s.strip('-')", "new": "s.strip()"},
            {"path": "src/calc/parse.py", "old": "return int(s.strip('-'))", "new": "return int(s.strip())"},
        ),
        "edited src/calc/parse.py",
    ),
    Step("run_tests", same({"target": "tests"}), "14 passed"),
    Step(
        "read_file",
        ({"path": "CHANGELOG.md"}, {"path": "README.md"}, {"path": "src/calc/__init__.py"}),
        "# Changelog\n",
    ),
    Step(None, same({"text": FINAL}), FINAL),
]


def differing(steps: list[Step]) -> list[Step]:
    """The same session with the agents proposing different things at every step."""
    out = []
    for step in steps:
        if not step.agree:
            out.append(step)
        elif step.tool is None:
            texts = [FINAL, FINAL + " Nothing else changed.", "Fixed add and parse; all 14 tests pass now."]
            out.append(Step(None, tuple({"text": t} for t in texts), FINAL))
        else:
            key = next(iter(step.arguments[0]))
            value = step.arguments[0][key]
            variants = ({key: value}, {key: value + "/"}, {key: "./" + value})
            out.append(Step(step.tool, variants, step.result))
    return out


SESSIONS = {"coder": SESSION, "differ": differing(SESSION)}


def written(arguments: dict[str, Any], agent: int) -> str:
    """The same arguments, written as each agent's model would: key order and spacing differ, the JSON does not."""
    if agent == 1:
        return json.dumps(arguments)
    if agent == 2:
        return json.dumps(dict(reversed(arguments.items())), separators=(",", ":"))
    return json.dumps(arguments, indent=1)


def script(latency: float) -> Any:
    def reply(call: Call) -> Reply:
        if call.is_presentation:
            return text(f"Final: {call.answers.get(call.agent_id or '', FINAL)}", delay=latency)
        if call.answers:  # a turn after round one: everyone goes with agent1
            return vote("agent1", "agent1's step is the right one", delay=latency)
        session = SESSIONS[call.model.split("-")[0]]
        step = session[sum(1 for m in call.messages if m.get("role") == "tool")]
        agent = int((call.agent_id or "agent1").removeprefix("agent"))
        if step.tool is None:
            said = step.arguments[agent - 1]["text"]
            # The same text in other case and spacing, where they agree.
            said = {1: said, 2: said.upper(), 3: "  " + said.replace(" ", "  ")}[agent] if step.agree else said
            return answer(said, delay=latency)
        return Reply(tool=step.tool, arguments=written(step.arguments[agent - 1], agent), delay=latency)

    return reply


def write_presets(folder: Path) -> None:
    for name in SESSIONS:
        agents = [{"model": f"openai/{name}-{i}", "protocol": "tools"} for i in (1, 2, 3)]
        (folder / f"{name}.yaml").write_text(yaml.safe_dump({"agents": agents, "max_turns_per_agent": 4}))


@dataclass
class Measured:
    wall: float
    tokens: int
    calls: int
    end_reason: str


def one_step(client: Any, fake: FakeLLM, preset: str, conversation: list[dict[str, Any]], skip: bool) -> tuple:
    before = len(fake.calls)
    began = time.perf_counter()
    response = client.chat.completions.create(
        model=f"massgen/{preset}",
        messages=conversation,
        tools=TOOLS,
        extra_body={"skip_voting_when_unanimous": skip},
    )
    wall = time.perf_counter() - began
    calls = fake.calls[before:]
    tokens = sum((c.usage or {}).get("total_tokens", 0) for c in calls)
    record = (response.model_extra or {}).get("massgen") or {}
    return response, Measured(wall, tokens, len(calls), str(record.get("end_reason", "?")))


def walk(client: Any, fake: FakeLLM, preset: str, steps: int) -> tuple[list[Measured], list[Measured]]:
    """One session, each step asked with the setting off, then on; the conversation goes on with the (same) reply."""
    conversation: list[dict[str, Any]] = [{"role": "user", "content": TASK}]
    off, on = [], []
    session = SESSIONS[preset]
    for index in range(steps):
        response, today = one_step(client, fake, preset, conversation, skip=False)
        response_on, measured = one_step(client, fake, preset, conversation, skip=True)
        off.append(today)
        on.append(measured)
        message, other = response.choices[0].message, response_on.choices[0].message
        if proposed(message) != proposed(other) or (message.content or "") != (other.content or ""):
            raise AssertionError(f"step {index + 1}: the two settings replied differently")
        if not message.tool_calls:
            break
        calls = [c.model_dump(include={"id", "type", "function"}) for c in message.tool_calls]
        conversation.append({"role": "assistant", "content": message.content, "tool_calls": calls})
        result = session[index].result
        conversation += [{"role": "tool", "tool_call_id": c.id, "content": result} for c in message.tool_calls]
    return off, on


def proposed(message: Any) -> list[tuple[str, Any]]:
    """The calls a reply proposes, arguments parsed."""
    return [(c.function.name, json.loads(c.function.arguments)) for c in message.tool_calls or []]


def ratio(on: float, off: float) -> str:
    return f"{on / off:.2f}" if off else "n/a"


def report(name: str, runs: list[tuple[list[Measured], list[Measured]]]) -> str:
    session = SESSIONS[name]
    steps = len(runs[0][0])
    rows, agreeing, differing_steps = [], [], []
    for index in range(steps):
        wall_off = statistics.median(r[0][index].wall for r in runs)
        wall_on = statistics.median(r[1][index].wall for r in runs)
        tokens_off = statistics.median(r[0][index].tokens for r in runs)
        tokens_on = statistics.median(r[1][index].tokens for r in runs)
        step = session[index]
        (agreeing if step.agree else differing_steps).append((wall_off, wall_on, tokens_off, tokens_on))
        rows.append(
            [
                index + 1,
                step.tool or "final reply",
                "yes" if step.agree else "no",
                f"{runs[0][0][index].end_reason}, {runs[0][0][index].calls} calls",
                f"{runs[0][1][index].end_reason}, {runs[0][1][index].calls} calls",
                f"{wall_off * 1000:.0f} ms",
                f"{wall_on * 1000:.0f} ms",
                ratio(wall_on, wall_off),
                f"{tokens_off:.0f}",
                f"{tokens_on:.0f}",
                ratio(tokens_on, tokens_off),
            ]
        )
    headers = [
        "step",
        "proposes",
        "agents agree",
        "off: ended by",
        "on: ended by",
        "wall, off",
        "wall, on",
        "on/off",
        "tokens, off",
        "tokens, on",
        "on/off",
    ]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---:" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]

    def summary(label: str, group: list[tuple[float, float, float, float]], target: bool) -> str:
        if not group:
            return ""
        wall_off, wall_on, tokens_off, tokens_on = (sum(column) for column in zip(*group, strict=True))
        wall, tokens = wall_on / wall_off, tokens_on / tokens_off
        verdict = ""
        if target:
            met = wall <= TARGET and tokens <= TARGET
            verdict = f" (target <= {TARGET}: {'met' if met else 'not met'})"
        return (
            f"- {label} ({len(group)}): wall {wall_on:.2f} s against {wall_off:.2f} s, {wall:.2f}x; tokens "
            f"{tokens_on:.0f} against {tokens_off:.0f}, {tokens:.2f}x{verdict}"
        )

    everything = agreeing + differing_steps
    sums = [
        summary("steps where the agents agree", agreeing, True),
        summary("steps where they differ", differing_steps, False),
        summary("the whole session", everything, False),
    ]
    return "\n".join(lines) + "\n\n" + "\n".join(s for s in sums if s)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.agreement", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="one pass of three steps, fast models (a smoke test)")
    parser.add_argument("--latency", type=float, default=0.3, help="seconds per model call (default 0.3)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    latency, repeats, steps = (0.05, 1, 4) if args.quick else (args.latency, args.repeats, len(SESSION))
    sys.path.insert(0, str(ROOT))  # tests.proxy: the real LiteLLM proxy as the tests start it
    from tests.proxy import LiteLLMProxy

    print(header("benchmarks.agreement"), flush=True)
    with tempfile.TemporaryDirectory() as folder, LoopbackServer(FakeLLM(default=script(latency))) as upstream:
        write_presets(Path(folder))
        with LiteLLMProxy(upstream.base_url, presets=[Path(folder)]) as proxy:
            client = proxy.client(timeout=120)
            walk(client, upstream.fake, "coder", 1)  # warm: the proxy's first request builds its clients
            for name in SESSIONS:
                runs = [walk(client, upstream.fake, name, steps) for _ in range(repeats)]
                title = "7 of 10 steps agree" if name == "coder" else "the agents differ at every step"
                print(
                    f"\n### A coding session through the proxy, {title} ({latency * 1000:.0f} ms a model call, "
                    f"median of {repeats})\n\n{report(name, runs)}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
