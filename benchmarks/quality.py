"""Does the team answer better than its best member? Measured on the same items, team and each agent alone.

    python -m benchmarks.quality --preset local            # the 100 items (benchmarks/quality_items.py)
    python -m benchmarks.quality --preset local --items 20 # a prefix of them
    python -m benchmarks.quality --quick                   # 2 items, nothing asserted (CI)

Each agent alone is one plain call of its model with its own system message and sampling, no coordination. The team
is `massgen/<preset>`. A reply is right when one of the item's answers, normalised, appears in the normalised reply
as whole words (see `normalise`). Reported per system: right answers with a 95% Wilson interval, calls, tokens and
the median seconds a question; then the team against its best member on the same items: the difference with its
95% interval, and an exact two-sided McNemar (sign) test on the items where exactly one of the two was right: how
sure the difference is on a set this small. A keyed preset whose keys are missing is skipped, with the reason.
"""

from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import argparse
import asyncio
import json
import math
import re
import statistics
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import litellm

from benchmarks.machine import header
from benchmarks.quality_items import Item, items
from massgen_litellm import local_server, register_with_litellm
from massgen_litellm.config import AgentConfig, is_local_model
from massgen_litellm.presets import PresetStore
from massgen_litellm.request import agent_problems

_SMALL = {
    "zero": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
    "ten": "10",
    "eleven": "11",
    "twelve": "12",
}


def normalise(text: str) -> str:
    """Lower case, words and numbers only, number words up to twelve as digits, thousands separators dropped."""
    text = re.sub(r"(?<=\d),(?=\d{3})", "", text.lower())
    words = re.findall(r"[a-z0-9]+", text)
    return " ".join(_SMALL.get(word, word) for word in words if word not in ("a", "an", "the"))


def is_right(reply: str, item: Item) -> bool:
    said = f" {normalise(reply)} "
    return any(f" {normalise(answer)} " in said for answer in item.answers)


@dataclass
class Score:
    name: str
    right: list[bool] = field(default_factory=list)
    calls: int = 0
    tokens: int = 0
    seconds: list[float] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)

    def add(self, item: Item, reply: str, calls: int, tokens: int, seconds: float) -> bool:
        right = is_right(reply, item)
        self.right.append(right)
        self.kinds.append(item.kind)
        self.calls, self.tokens = self.calls + calls, self.tokens + tokens
        self.seconds.append(seconds)
        return right

    def by_kind(self) -> str:
        counts = Counter(kind for kind, right in zip(self.kinds, self.right, strict=True) if right)
        return ", ".join(f"{counts[kind]}/{self.kinds.count(kind)} {kind}" for kind in sorted(set(self.kinds)))

    def row(self) -> str:
        n = len(self.right)
        low, high = wilson(sum(self.right), n)
        median = statistics.median(self.seconds) if self.seconds else 0.0
        return (
            f"| {self.name} | {sum(self.right)}/{n} ({low:.0%}–{high:.0%}) | {self.calls / max(n, 1):.1f} | "
            f"{self.tokens / max(n, 1):.0f} | {median:.1f} s | {self.by_kind()} |"
        )


def wilson(right: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return 0.0, 0.0
    p = right / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def mcnemar(team: Sequence[bool], member: Sequence[bool]) -> tuple[int, int, float]:
    """(items only the team got, items only the member got, exact two-sided p)."""
    only_team = sum(t and not m for t, m in zip(team, member, strict=True))
    only_member = sum(m and not t for t, m in zip(team, member, strict=True))
    n, k = only_team + only_member, min(only_team, only_member)
    p = min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2**n) if n else 1.0
    return only_team, only_member, p


def paired_interval(gained: int, lost: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% (Wald) interval of the difference in accuracy of two systems scored on the same n items."""
    if n == 0:
        return 0.0, 0.0
    difference = (gained - lost) / n
    half = z * math.sqrt(max(gained + lost - (gained - lost) ** 2 / n, 0.0)) / n
    return difference - half, difference + half


async def reach(agent: AgentConfig) -> tuple[str, dict[str, Any]]:
    """The model string and call parameters of the agent's model, with its sampling."""
    model, params = agent.model, {**agent.sampling()}
    if is_local_model(model):
        model, api_base = await asyncio.to_thread(local_server.endpoint, model)
        params.update(api_base=api_base, api_key="sk-local-no-key")
    else:
        if agent.api_base:
            params["api_base"] = agent.api_base
        if agent.api_key:
            params["api_key"] = agent.resolved_api_key()
    return model, params


async def alone(agent: AgentConfig, item: Item) -> tuple[str, int, float]:
    """One plain call of the agent's model: its system message, its sampling, the question."""
    model, params = await reach(agent)
    messages = [{"role": "system", "content": agent.system_message}] if agent.system_message else []
    messages.append({"role": "user", "content": item.question})
    began = time.monotonic()
    response = await litellm.acompletion(model=model, messages=messages, **params)
    usage = getattr(response, "usage", None)
    return response.choices[0].message.content or "", getattr(usage, "total_tokens", 0), time.monotonic() - began


async def team(preset: str, item: Item) -> tuple[str, dict[str, Any], float]:
    began = time.monotonic()
    response = await litellm.acompletion(
        model=f"massgen/{preset}", messages=[{"role": "user", "content": item.question}]
    )
    return response.choices[0].message.content or "", response.massgen, time.monotonic() - began


def missing_keys(agents: Sequence[AgentConfig]) -> list[str]:
    problems = agent_problems(agents)
    for agent in agents:
        if is_local_model(agent.model) or agent.api_key or agent.api_base:
            continue
        try:
            found = litellm.validate_environment(model=agent.model)
        except Exception:
            continue
        problems += (
            [f"{agent.model} needs {', '.join(found.get('missing_keys') or [])}"]
            if not found.get("keys_in_environment")
            else []
        )
    return problems


def runnable_agents(preset_name: str) -> list[AgentConfig] | None:
    """The preset's agents, or None after saying why it is skipped (a missing key, say)."""
    agents = PresetStore().load(preset_name).agents
    problems = missing_keys(agents)
    if problems:
        print(f"massgen/{preset_name}: skipped, {problems[0]}")
        return None
    return agents


async def evaluate(preset_name: str, chosen: Sequence[Item]) -> list[dict[str, Any]]:
    """Print the preset's table; return each item's replies and the team's run (for --out)."""
    agents = runnable_agents(preset_name)
    if agents is None:
        return []
    members = [Score(f"agent{i} alone ({a.model})") for i, a in enumerate(agents, start=1)]
    whole = Score(f"team (massgen/{preset_name})")
    chosen_by: Counter[str] = Counter()
    rows: list[dict[str, Any]] = []
    for item in chosen:
        row: dict[str, Any] = {"question": item.question, "kind": item.kind, "alone": []}
        for agent, score in zip(agents, members, strict=True):
            reply, tokens, seconds = await alone(agent, item)
            row["alone"].append({"reply": reply, "right": score.add(item, reply, 1, tokens, seconds)})
        reply, record, seconds = await team(preset_name, item)
        right = whole.add(item, reply, len(record["calls"]), record["usage"]["total_tokens"], seconds)
        chosen_by[f"{record['end_reason']}, chosen by {record['chosen_by']}"] += 1
        row["team"] = {"reply": reply, "right": right, "seconds": round(seconds, 2), "run": record["run_id"]}
        row["team"].update({key: record[key] for key in ("end_reason", "chosen_by", "winner", "tally")})
        row["team"]["answers"] = {a["agent_id"]: a["content"] for a in record["answers"]}
        rows.append(row)
    print(f"\nmassgen/{preset_name}, {len(chosen)} items")
    print("| system | right (95% interval) | calls a question | tokens a question | median time | right by kind |")
    print("|---|---:|---:|---:|---:|---|")
    for score in [*members, whole]:
        print(score.row())
    best = max(members, key=lambda s: sum(s.right))
    gained, lost, p = mcnemar(whole.right, best.right)
    low, high = paired_interval(gained, lost, len(chosen))
    print(
        f"\nteam against its best member ({best.name}): {(gained - lost) / len(chosen):+.0%} (95% interval "
        f"{low:+.0%} to {high:+.0%}); right only for the team on {gained} items, only for the member on {lost}; "
        f"exact McNemar p = {p:.3f}"
    )
    print("how the team's runs ended: " + "; ".join(f"{why}: {n}" for why, n in chosen_by.most_common()))
    return rows


async def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.quality", description=__doc__)
    parser.add_argument("--preset", action="append", help="preset(s) to evaluate (default: local)")
    parser.add_argument("--items", type=int, default=100, help="the first N items (default: all 100)")
    parser.add_argument("--quick", action="store_true", help="2 items of the local preset, nothing asserted (CI)")
    parser.add_argument("--out", type=Path, help="a folder for <preset>.jsonl: each item's replies and team run")
    args = parser.parse_args(argv)
    print(header("benchmarks.quality"), flush=True)
    register_with_litellm(load_env=True)
    litellm.suppress_debug_info = True
    chosen = items()[: 2 if args.quick else args.items]
    for preset in args.preset or ["local"]:
        rows = await evaluate(preset, chosen)
        if args.out and rows:
            args.out.mkdir(parents=True, exist_ok=True)
            (args.out / f"{preset}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))


if __name__ == "__main__":
    asyncio.run(main())
