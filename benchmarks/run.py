"""How much a coordination run costs beyond its models, measured through the real `litellm.acompletion` path.

Participants are the tests' scripted OpenAI-compatible server (`benchmarks/fake_server.py`), in its own process on
127.0.0.1, answering every call after a fixed latency. The scripted run has two rounds (everyone answers, everyone
votes for agent1) and a presentation, so its floor is, from the server's own log, the slowest call of each round
plus the presentation call. Everything above the floor is ours (and LiteLLM's, measured apart).

    python -m benchmarks.run            # the full tables (a few minutes)
    python -m benchmarks.run --quick    # a smoke run of every section (CI)
"""

from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no price-list fetch: this runs offline

import argparse
import asyncio
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import litellm
import yaml

from massgen_litellm import register_with_litellm

ROOT = Path(__file__).resolve().parent.parent
KEY = "sk-bench-not-a-real-key"
QUESTION = [{"role": "user", "content": "What is 2 + 2? Explain briefly."}]


@contextmanager
def fake_server(latency: float, dialect: str = "ours") -> Iterator[str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.fake_server", "--latency", str(latency), "--dialect", dialect],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        yield process.stdout.readline().strip()
    finally:
        assert process.stdin is not None
        process.stdin.close()  # the server stops when its stdin closes
        process.wait(10)


class Bench:
    def __init__(self, base_url: str, presets_dir: Path) -> None:
        self.base_url = base_url
        self.presets_dir = presets_dir
        self.http = httpx.Client(base_url=base_url, timeout=30)

    def preset(self, n_agents: int) -> str:
        name = f"bench{n_agents}"
        agents = [
            {"model": "openai/gpt-4o-mini", "api_base": self.base_url, "api_key": KEY, "protocol": "tools"}
            for i in range(1, n_agents + 1)
        ]
        # Limits well above what the script needs, so that only the script decides how the run goes.
        preset = {"agents": agents, "max_turns_per_agent": 6, "run_timeout": 120, "call_timeout": 60}
        (self.presets_dir / f"{name}.yaml").write_text(yaml.safe_dump(preset))
        return f"massgen/{name}"

    def calls(self, clear: bool = True) -> list[dict[str, Any]]:
        return self.http.request("DELETE" if clear else "GET", "/calls").json()


def floor(calls: Sequence[dict[str, Any]]) -> float:
    """Round by round, the slowest call, from the server's own clock; then the presentation."""
    total = 0.0
    for kind in ("first", "turn", "present"):
        durations = [c["ended"] - c["started"] for c in calls if c["kind"] == kind]
        total += max(durations, default=0.0)
    return total


def prompt_tokens(calls: Sequence[dict[str, Any]]) -> int:
    """Real token counts (LiteLLM's tokenizer for gpt-4o-mini) of what each call sent, tool schemas included."""
    return sum(
        litellm.token_counter(model="gpt-4o-mini", messages=c["messages"], tools=c["tools"] or None) for c in calls
    )


async def one_run(model: str) -> float:
    began = time.perf_counter()
    response = await litellm.acompletion(model=model, messages=QUESTION)
    wall = time.perf_counter() - began
    assert response.massgen["end_reason"] == "consensus", response.massgen["end_reason"]
    assert response.choices[0].message.content.startswith("Final:")
    return wall


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---:" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


async def scaling(bench: Bench, counts: Sequence[int], repeats: int) -> str:
    rows = []
    for n in counts:
        model = bench.preset(n)
        await one_run(model)  # warm-up: LiteLLM's first call to a provider builds its clients
        bench.calls()
        walls, floors, alone, cpus = [], [], [], []
        calls: list[dict[str, Any]] = []
        for _ in range(repeats):
            cpu = time.process_time()
            walls.append(await one_run(model))
            cpus.append(time.process_time() - cpu)
            calls = bench.calls()
            floors.append(floor(calls))
            began = time.perf_counter()
            await replay(bench, calls)
            alone.append(time.perf_counter() - began)
            bench.calls()
        wall, least, baseline = statistics.median(walls), statistics.median(floors), statistics.median(alone)
        rows.append(
            [
                n,
                f"{wall * 1000:.0f} ms",
                f"{least * 1000:.0f} ms",
                f"{wall / least:.3f}",
                f"{baseline * 1000:.0f} ms",
                f"{wall / baseline:.3f}",
                len(calls),
                prompt_tokens(calls),
                f"{statistics.median(cpus) * 1000 / len(calls):.2f} ms",
            ]
        )
    headers = [
        "agents",
        "wall",
        "floor",
        "wall/floor",
        "LiteLLM alone",
        "wall/LiteLLM alone",
        "calls",
        "prompt tokens",
        "client CPU per call",
    ]
    return table(headers, rows)


async def replay(bench: Bench, calls: Sequence[dict[str, Any]]) -> None:
    """LiteLLM alone making the same calls, round by round with the same concurrency, and nothing of ours."""
    for kind in ("first", "turn", "present"):
        await asyncio.gather(
            *(
                litellm.acompletion(
                    model=f"openai/{c['model']}",
                    messages=c["messages"],
                    tools=c["tools"] or None,
                    api_base=bench.base_url,
                    api_key=KEY,
                )
                for c in calls
                if c["kind"] == kind
            )
        )


async def orchestrator_cpu(bench: Bench, n: int, repeats: int) -> str:
    """Process CPU of a run, minus LiteLLM making the same calls alone, per agent turn."""
    model = bench.preset(n)
    await one_run(model)
    calls = bench.calls()
    await replay(bench, calls)
    bench.calls()
    ours, theirs = [], []
    for _ in range(repeats):
        cpu = time.process_time()
        await one_run(model)
        ours.append(time.process_time() - cpu)
        calls = bench.calls()
        cpu = time.process_time()
        await replay(bench, calls)
        theirs.append(time.process_time() - cpu)
        bench.calls()
    turns = sum(1 for c in calls if c["kind"] != "present")
    run_cpu, litellm_cpu = statistics.median(ours), statistics.median(theirs)
    rows = [
        [
            n,
            turns,
            f"{run_cpu * 1000:.1f} ms",
            f"{litellm_cpu * 1000:.1f} ms",
            f"{(run_cpu - litellm_cpu) * 1000 / turns:.3f} ms",
        ]
    ]
    headers = ["agents", "agent turns", "CPU, whole run", "CPU, LiteLLM alone", "ours per agent turn"]
    return table(headers, rows)


def peak_rss_reset() -> None:
    # Linux: writing 5 resets the peak resident set size (VmHWM) to the current size.
    Path("/proc/self/clear_refs").write_text("5")


def rss(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise LookupError(field)


async def concurrency(bench: Bench, runs: int) -> str:
    model = bench.preset(3)
    await one_run(model)
    single = statistics.median([await one_run(model) for _ in range(3)])
    calls = bench.calls()[-7:]  # one run's calls, to replay
    peak_rss_reset()
    before = rss("VmRSS")
    began = time.perf_counter()
    await asyncio.gather(*(one_run(model) for _ in range(runs)))
    total = time.perf_counter() - began
    peak = rss("VmHWM")
    served = len(bench.calls())
    began = time.perf_counter()
    await asyncio.gather(*(replay(bench, calls) for _ in range(runs)))
    alone = time.perf_counter() - began
    bench.calls()
    rows = [
        [
            runs,
            served,
            f"{single * 1000:.0f} ms",
            f"{total * 1000:.0f} ms",
            f"{total / single:.2f}",
            f"{alone * 1000:.0f} ms",
            f"{before:.0f} MB",
            f"+{peak - before:.0f} MB",
        ]
    ]
    headers = [
        "runs of 3 agents at once",
        "calls",
        "one run alone",
        "all of them",
        "ratio",
        "LiteLLM alone, same calls",
        "RSS before",
        "peak",
    ]
    return table(headers, rows)


def span(calls: Sequence[dict[str, Any]]) -> float:
    """From the first call's arrival to the last call's reply, on the server's clock."""
    return max(c["ended"] for c in calls) - min(c["started"] for c in calls)


def massgen_kind(call: dict[str, Any]) -> str:
    """The round of a call made by the massgen package, from its own prompt format."""
    prompt = "\n".join(str(m.get("content") or "") for m in call["messages"])
    if "VOTING RESULTS" in prompt:
        return "present"
    return "turn" if re.search(r"<agent\d+(?:\.\d+)?> ", prompt) else "first"


def massgen_config(base_url: str, n: int) -> str:
    agents = [
        {"id": f"agent_{i}", "backend": {"type": "chatcompletion", "model": f"bench-{i}", "base_url": base_url}}
        for i in range(1, n + 1)
    ]
    return yaml.safe_dump({"agents": agents, "ui": {"display_type": "simple", "logging_enabled": False}})


async def anchor(bench: Bench, massgen: str, counts: Sequence[int], latency: float) -> str:
    """The same scenario through the massgen package (its own virtual environment) and through us."""
    rows = []
    with fake_server(latency, dialect="massgen") as massgen_url, tempfile.TemporaryDirectory() as work:
        for n in counts:
            await one_run(bench.preset(n))
            ours = bench.calls()
            config = Path(work) / f"massgen{n}.yaml"
            config.write_text(massgen_config(massgen_url, n))
            env = {"PATH": os.environ.get("PATH", ""), "HOME": work, "OPENAI_API_KEY": KEY}
            command = [massgen, "--config", str(config), "--automation", "--no-logs", QUESTION[0]["content"]]
            done = await asyncio.to_thread(
                subprocess.run, command, cwd=work, env=env, capture_output=True, text=True, timeout=600
            )
            theirs = (await asyncio.to_thread(httpx.delete, f"{massgen_url}/calls")).json()
            if done.returncode != 0 or not theirs:
                raise RuntimeError(f"massgen failed ({done.returncode}): {done.stdout[-2000:]}{done.stderr[-2000:]}")
            for call in theirs:
                call["kind"] = massgen_kind(call)
            rows.append(
                [
                    n,
                    f"{span(ours) / floor(ours):.3f}",
                    f"{span(theirs) / floor(theirs):.3f}",
                    len(ours),
                    len(theirs),
                    prompt_tokens(ours),
                    prompt_tokens(theirs),
                ]
            )
    headers = ["agents", "span/floor, ours", "massgen", "calls, ours", "massgen", "prompt tokens, ours", "massgen"]
    return table(headers, rows)


def import_times(repeats: int) -> str:
    code = (
        "import time; t0 = time.perf_counter(); import litellm; t1 = time.perf_counter(); {stmt}; "
        "t2 = time.perf_counter(); print(t1 - t0, t2 - t1)"
    )
    rows = []
    for stmt in ("import massgen_litellm", "from massgen_litellm import handler", "import massgen_litellm.cli"):
        litellm_s, ours_s = [], []
        for _ in range(repeats):
            env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
            out = subprocess.run(
                [sys.executable, "-c", code.format(stmt=stmt)], capture_output=True, text=True, env=env, check=True
            ).stdout.split()
            litellm_s.append(float(out[0]))
            ours_s.append(float(out[1]))
        rows.append(
            [f"`{stmt}`", f"{statistics.median(litellm_s) * 1000:.0f} ms", f"{statistics.median(ours_s) * 1000:.1f} ms"]
        )
    return table(["on top of `import litellm`", "`import litellm`", "added"], rows)


def view_tokens() -> str:
    """What one agent is sent per turn, part by part, for a vote turn with n answers of a typical length."""
    from massgen_litellm.coordination import View
    from massgen_litellm.protocol import render_answers, tool_schemas, turn_messages

    answer = "The answer is 4: two plus two makes four. " * 6  # about 60 tokens
    rows = []
    for n in (3, 9):
        answers = {f"agent{i}": answer for i in range(1, n + 1)}
        view = View(version=n, answers=answers, can_answer=True)
        messages = turn_messages(QUESTION, "agent1", n, view, "tools", None)
        whole = litellm.token_counter(model="gpt-4o-mini", messages=messages, tools=tool_schemas(view))
        bare = sum(litellm.token_counter(model="gpt-4o-mini", text=a) for a in answers.values())
        fenced = litellm.token_counter(model="gpt-4o-mini", text=render_answers(answers))
        question = litellm.token_counter(model="gpt-4o-mini", messages=QUESTION)
        rows.append([n, whole, question, bare, fenced - bare, whole - question - fenced])
    headers = ["answers shown", "turn prompt", "user's messages", "answers", "fences", "instruction + tools"]
    return table(headers, rows)


async def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="one small pass of every section (a smoke test)")
    parser.add_argument("--latency", type=float, default=0.2, help="the fake models' latency in seconds")
    parser.add_argument(
        "--massgen",
        metavar="EXECUTABLE",
        help="the `massgen` command of a virtual environment holding the massgen package, to run it side by side",
    )
    args = parser.parse_args(argv)
    counts, repeats, runs = ((2, 3), 1, 5) if args.quick else ((2, 3, 5, 9, 16), 5, 50)

    litellm.suppress_debug_info = True
    sections: list[tuple[str, Callable[[], Any]]] = []
    with tempfile.TemporaryDirectory() as presets, fake_server(args.latency) as base_url:
        register_with_litellm(presets_dir=presets, load_env=False)
        bench = Bench(base_url, Path(presets))
        # LiteLLM's first calls import provider modules and build clients: not what is being measured.
        for _ in range(3):
            await one_run(bench.preset(2))
        bench.calls()
        latency = f"{args.latency * 1000:.0f} ms per call"
        sections = [
            (f"Wall time against the floor ({latency})", lambda: scaling(bench, counts, repeats)),
            ("Orchestrator CPU per agent turn", lambda: orchestrator_cpu(bench, 5, repeats)),
            ("Concurrent runs", lambda: concurrency(bench, runs)),
        ]
        if args.massgen:
            title = f"The same scenario through the massgen package ({latency})"
            sections.append((title, lambda: anchor(bench, args.massgen, counts, args.latency)))
        for title, section in sections:
            print(f"\n### {title}\n\n{await section()}", flush=True)
    print(f"\n### Import time\n\n{import_times(1 if args.quick else 7)}")
    print(f"\n### What an agent is sent per turn (tokens)\n\n{view_tokens()}")


if __name__ == "__main__":
    asyncio.run(main())
