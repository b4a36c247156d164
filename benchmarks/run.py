"""How much a coordination run costs beyond its models, measured through the real `litellm.acompletion` path.

Participants are the tests' scripted OpenAI-compatible server (`benchmarks/fake_server.py`), in its own process on
127.0.0.1, answering every call after a fixed latency on kept-alive connections, as providers do. The scripted run
has two rounds (everyone answers, each answer its own; everyone votes for agent1) and a presentation, so its floor
is, from the server's own log, the slowest call of each round plus the presentation call.

"LiteLLM alone" replays the very same calls with plain `litellm.acompletion` and nothing of ours: each participant
call keyword for keyword, as a run made it (recorded from a run: messages, tools, timeout, metadata...), round by
round with the same concurrency, and the outer call itself (`model="massgen-replay/..."`, the same messages) to a
custom provider that answers at once, which is what LiteLLM spends on any custom provider's call. What is left over
is ours. Every section prints ratios measured in this one run next to the absolute times, under a header naming the
machine (`benchmarks/machine.py`).

    python -m benchmarks.run            # the full tables (about 4 minutes on 2 idle cores)
    python -m benchmarks.run --quick    # a smoke run of every section (CI)
"""

from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no price-list fetch: this runs offline

import argparse
import asyncio
import gc
import importlib.util
import json
import math
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import litellm
import yaml
from litellm import CustomLLM
from litellm.litellm_core_utils.logging_worker import GLOBAL_LOGGING_WORKER
from litellm.types.utils import ModelResponse, Usage

from benchmarks.fake_server import our_script
from benchmarks.machine import header
from massgen_litellm import register_with_litellm
from massgen_litellm.testing.openai_chat import Call, completion_body

ROOT = Path(__file__).resolve().parent.parent
KEY = "sk-bench-not-a-real-key"
QUESTION = [{"role": "user", "content": "What is 2 + 2? Explain briefly."}]
REPLAY_PROVIDER = "massgen-replay"
# Targets (issue 23): our CPU per agent turn against LiteLLM's per call; wall time against LiteLLM alone; the
# handler's import on top of LiteLLM's.
CPU_TARGET = 0.03
CPU_PRECISION = 0.005  # the 95% interval the CPU section aims for, either side of the mean (time allowing)
WALL_TARGET = 1.02
IMPORT_TARGET = 0.01
# At least this many participant calls per repeat of the CPU measurement (ten repeats), so that the ratio is stable:
# LiteLLM's own CPU per call varies by ~10% from one batch of ten calls to the next, on an idle machine.
MIN_CALLS = 300
CPU_SECONDS = 240.0  # the most the CPU section spends on one agent count, narrowing its interval
BURSTS = 10  # pairs of 50-run bursts (ours, LiteLLM alone's): about 4 seconds a pair


class InstantProvider(CustomLLM):
    """The outer call of the replay: a custom provider that answers at once, with a reply shaped like ours (text,
    usage, a cost), so LiteLLM does for it what it does for a `massgen/...` call."""

    async def acompletion(self, model: str, messages: list[Any], *args: Any, **kwargs: Any) -> ModelResponse:
        response = kwargs.get("model_response") or ModelResponse()
        response.model = f"{REPLAY_PROVIDER}/{model}"
        response.choices[0].message.content = "Final: the answer is 4."
        response.choices[0].finish_reason = "stop"
        response.usage = Usage(prompt_tokens=1000, completion_tokens=100, total_tokens=1100)
        response._hidden_params["response_cost"] = 0.0004
        return response


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
    def __init__(self, base_url: str, presets_dir: Path, prefix: str = "bench") -> None:
        self.base_url = base_url
        self.presets_dir = presets_dir
        self.prefix = prefix
        self.http = httpx.Client(base_url=base_url, timeout=30)

    def preset(self, n_agents: int) -> str:
        name = f"{self.prefix}{n_agents}"
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


def spread(values: Sequence[float], fmt: str = "{:.3f}") -> str:
    """The median, with the lowest and highest of the repeats."""
    if len(values) == 1:
        return fmt.format(values[0])
    low, mid, high = min(values), statistics.median(values), max(values)
    return f"{fmt.format(mid)} ({fmt.format(low)}–{fmt.format(high)})"


def verdict(value: float, target: float) -> str:
    return "met" if value <= target else "not met"


def within_target(mean: float, half: float, target: float) -> str:
    """The verdict on a mean with the half-width of its 95% interval: met if the whole interval is within the target,
    not met if it is wholly above, not shown if it straddles it."""
    return "met" if mean + half <= target else ("not met" if mean - half > target else "not shown")


async def scaling(bench: Bench, counts: Sequence[int], repeats: int) -> str:
    """Wall time of a run against its floor and against LiteLLM alone, repeated, each run followed by its replay."""
    rows = []
    for n in counts:
        model = bench.preset(n)
        await one_run(model)  # warm-up: LiteLLM's first call to a provider builds its clients
        recorded = rounds(await recorded_run(model))
        bench.calls()
        walls, floors, ratios, alone, cpus = [], [], [], [], []
        calls: list[dict[str, Any]] = []
        for _ in range(repeats):
            cpu = time.process_time()
            walls.append(await one_run(model))
            cpus.append(time.process_time() - cpu)
            calls = bench.calls()
            floors.append(floor(calls))
            began = time.perf_counter()
            await replay(recorded)
            alone.append(time.perf_counter() - began)
            ratios.append(walls[-1] / alone[-1])
            bench.calls()
        wall, least, baseline = statistics.median(walls), statistics.median(floors), statistics.median(alone)
        ratio = statistics.median(ratios)
        rows.append(
            [
                n,
                f"{wall * 1000:.0f} ms",
                f"{least * 1000:.0f} ms",
                f"{wall / least:.3f}",
                f"{baseline * 1000:.0f} ms",
                spread(ratios),
                verdict(ratio, WALL_TARGET),
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
        "wall/LiteLLM alone (range)",
        f"<= {WALL_TARGET}",
        "calls",
        "prompt tokens",
        "client CPU per call",
    ]
    note = f"Median of {repeats} runs, each followed by LiteLLM alone replaying its requests; the ratio is run by run."
    return f"{note}\n\n{table(headers, rows)}"


async def outer_call() -> None:
    """The replay's outer call: the run's own `litellm.acompletion`, to a provider that answers at once."""
    await litellm.acompletion(model=f"{REPLAY_PROVIDER}/bench", messages=QUESTION)


async def replay_participants(recorded: Sequence[Sequence[dict[str, Any]]]) -> None:
    """LiteLLM alone making a run's participant calls, round by round with the same concurrency, keyword for keyword
    (`recorded_run`)."""
    for calls in recorded:
        await asyncio.gather(*(litellm.acompletion(**{**c, "metadata": dict(c["metadata"])}) for c in calls))


async def replay(recorded: Sequence[Sequence[dict[str, Any]]]) -> None:
    """LiteLLM alone making a run's calls, with nothing of ours: the outer call, then the participant calls."""
    await outer_call()
    await replay_participants(recorded)


@contextmanager
def participant_calls(handle: Callable[..., Awaitable[Any]]) -> Iterator[None]:
    """`litellm.acompletion` with each participant call handed to `handle(original, **kwargs)`; the outer calls (ours
    and the replay's) go to LiteLLM as they are."""
    original = litellm.acompletion

    async def acompletion(**kwargs: Any) -> Any:
        if kwargs["model"].startswith(("massgen/", f"{REPLAY_PROVIDER}/")):
            return await original(**kwargs)
        return await handle(original, **kwargs)

    litellm.acompletion = acompletion
    try:
        yield
    finally:
        litellm.acompletion = original


async def recorded_run(model: str) -> list[dict[str, Any]]:
    """One run, and each participant call as the run asked LiteLLM for it: every keyword of its
    `litellm.acompletion` (the metadata copied, since LiteLLM adds to it), so that LiteLLM alone can replay the very
    same calls."""
    calls: list[dict[str, Any]] = []

    async def record(original: Callable[..., Awaitable[Any]], **kwargs: Any) -> Any:
        calls.append({**kwargs, "metadata": dict(kwargs.get("metadata") or {})})
        return await original(**kwargs)

    with participant_calls(record):
        await one_run(model)
    return calls


def rounds(calls: Sequence[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Recorded calls by round, in order: each agent's first turn, its second, ..., then the presentation."""
    grouped: dict[tuple[bool, int], list[dict[str, Any]]] = {}
    for call in calls:
        meta = call["metadata"]
        grouped.setdefault((meta["massgen_call"] == "present", meta.get("massgen_turn") or 0), []).append(call)
    return [grouped[key] for key in sorted(grouped)]


def answered_in_process(spent: list[float]) -> AbstractContextManager[None]:
    """Participant calls answered in-process by the fake server's own script, each distinct reply built once as a
    LiteLLM `ModelResponse`: a run's CPU is then ours and the outer call's, with no participant call of LiteLLM's.
    The script's own CPU is added to `spent`, to be taken out."""
    script = our_script(0.0)
    replies: dict[str, ModelResponse] = {}

    async def answer(original: Callable[..., Awaitable[Any]], **kwargs: Any) -> Any:
        # A real call yields to the loop before it returns: without this, the first agent's first turn would end
        # before the others start theirs, and the run would take fewer turns than the one it stands in for.
        await asyncio.sleep(0)
        began = time.process_time()
        body = {"model": kwargs["model"], "messages": kwargs["messages"], "tools": kwargs.get("tools")}
        call = Call(model=kwargs["model"], body={k: v for k, v in body.items() if v is not None}, started=0.0)
        completion = completion_body(call, script(call))
        key = json.dumps(completion["choices"])
        if key not in replies:
            replies[key] = ModelResponse(**completion)
            replies[key]._hidden_params["response_cost"] = 0.0001
        spent.append(time.process_time() - began)
        return replies[key]

    return participant_calls(answer)


async def cpu_of(work: Awaitable[Any]) -> float:
    """The process CPU, in seconds, of awaiting `work`, and of LiteLLM's background logging of its calls: the logging
    worker runs a call's success callbacks after the call has returned, so without waiting for them part of one
    window's LiteLLM work would be counted in the next (ours or the replay's)."""
    began = time.process_time()
    await work
    await GLOBAL_LOGGING_WORKER.flush()
    await asyncio.sleep(0.002)  # and the thread pool's share of it (sync callbacks)
    return time.process_time() - began


# Student's t, 97.5th percentile, by degrees of freedom (1 to 9; above that 2.23, which is what 10 has and more than
# any larger count needs): a 95% interval from a handful of repeats is wider than two standard errors.
_T975 = (12.71, 4.30, 3.18, 2.78, 2.57, 2.45, 2.36, 2.31, 2.26)


def interval(values: Sequence[float]) -> tuple[float, float]:
    """The mean and the half-width of its 95% interval (Student's t over the repeats; infinite for one repeat)."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, math.inf
    t = _T975[len(values) - 2] if len(values) - 1 <= len(_T975) else 2.23
    return mean, t * statistics.stdev(values) / math.sqrt(len(values))


async def orchestrator_cpu(
    bench: Bench, counts: Sequence[int], repeats: int, min_calls: int, seconds: float = 0.0
) -> str:
    """Process CPU of runs, minus LiteLLM alone making the very same calls (keyword for keyword, recorded from a run),
    per agent turn, against LiteLLM's CPU per participant call. Each repeat covers at least `min_calls`
    participant calls; run and replay alternate, in turn first and second, so both see the same machine. After
    `repeats` repeats, more are made while the 95% interval is wider than CPU_PRECISION either side and this agent
    count has had less than `seconds`: the same calls cost LiteLLM 20-30% more or less from one run to the next on a
    shared virtual machine, and only more of them narrows the interval."""
    rows = []
    for n in counts:
        model = bench.preset(n)
        await one_run(model)  # warm clients
        recorded = rounds(await recorded_run(model))
        for _ in range(2):
            await replay_participants(recorded)
        bench.calls()
        per_run = sum(len(calls) for calls in recorded)
        turns = sum(len(calls) for calls in recorded[:-1])
        runs = math.ceil(min_calls / per_run)
        ratios: list[float] = []
        ours_per_turn: list[float] = []
        litellm_per_call: list[float] = []
        outer_per_call: list[float] = []
        began = time.monotonic()
        while len(ratios) < repeats or (interval(ratios)[1] > CPU_PRECISION and time.monotonic() - began < seconds):
            ours = calls_cpu = outer_cpu = 0.0
            for i in range(runs):
                for mine in (True, False) if i % 2 == 0 else (False, True):
                    if mine:
                        ours += await cpu_of(one_run(model))
                    else:
                        outer_cpu += await cpu_of(outer_call())
                        calls_cpu += await cpu_of(replay_participants(recorded))
                bench.calls()
            per_call = calls_cpu / (runs * per_run)
            mine = (ours - calls_cpu - outer_cpu) / (runs * turns)
            litellm_per_call.append(per_call * 1000)
            outer_per_call.append(outer_cpu / runs * 1000)
            ours_per_turn.append(mine * 1000)
            ratios.append(mine / per_call)
        direct = await direct_cpu(model, turns, runs)
        mean, half = interval(ratios)
        rows.append(
            [
                n,
                f"{runs} x {len(ratios)}",
                f"{per_run} / {turns}",
                spread(litellm_per_call, "{:.2f} ms"),
                spread(outer_per_call, "{:.2f} ms"),
                spread(ours_per_turn, "{:.3f} ms"),
                spread(ratios, "{:.1%}"),
                f"{mean:.1%} ± {half:.1%}",
                within_target(mean, half, CPU_TARGET),
                f"{direct:.3f} ms ({direct / statistics.median(litellm_per_call):.1%})",
            ]
        )
    headers = [
        "agents",
        "runs x repeats",
        "calls / agent turns a run",
        "LiteLLM CPU per participant call",
        "LiteLLM CPU, the outer call",
        "ours per agent turn",
        "ours / LiteLLM's per call",
        "mean, 95% interval",
        f"<= {CPU_TARGET:.0%}",
        "ours per turn, measured directly",
    ]
    note = (
        f"Medians over the repeats (at least {repeats}, then more while the 95% interval was wider than "
        f"±{CPU_PRECISION:.1%}, up to {seconds:.0f} s an agent count; lowest–highest), each of at least {min_calls} "
        "participant calls, against a "
        "fake server that answers at once (CPU is what is compared; latency would only stretch the section). Ours: a "
        "run's process CPU minus LiteLLM alone making the very same participant calls (every keyword, recorded from "
        "a run) and the outer call (to a provider that answers at once), per agent turn. *Met* means the whole 95% "
        "interval of the mean is within the target, *not met* that it is wholly above, *not shown* that it straddles "
        "it. *Measured directly*: the same runs with every participant call answered in-process by a canned LiteLLM "
        "reply (no LiteLLM participant call to subtract), minus the outer call; the percentage is of the LiteLLM CPU "
        "per call beside it. The garbage collector's long-lived objects (LiteLLM's import leaves ~400k) are frozen "
        "after the warm-up, so that a full collection (hundreds of ms on 2 slow cores) cannot land on one side of the "
        "comparison by chance."
    )
    return f"{note}\n\n{table(headers, rows)}"


async def direct_cpu(model: str, turns: int, runs: int) -> float:
    """Our CPU per agent turn with the participant calls answered in-process (`answered_in_process`), in ms: a
    run's CPU, less the script's and the outer call's, run and outer call alternating."""
    script_cpu: list[float] = []
    with answered_in_process(script_cpu):
        for _ in range(3):
            await one_run(model)
        script_cpu.clear()
        ours = outer = 0.0
        for _ in range(runs):
            ours += await cpu_of(one_run(model))
            outer += await cpu_of(outer_call())
    return (ours - sum(script_cpu) - outer) / (runs * turns) * 1000


def peak_rss_reset() -> None:
    # Linux: writing 5 resets the peak resident set size (VmHWM) to the current size.
    Path("/proc/self/clear_refs").write_text("5")


def rss(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise LookupError(field)


async def concurrency(bench: Bench, runs: int, repeats: int) -> str:
    """`runs` runs of 3 agents started at once, against LiteLLM alone making the same requests at once: `repeats`
    pairs of bursts, in turn ours first and LiteLLM's first, so that a machine slowing down or speeding up during the
    section weighs on both alike. A burst is bound by CPU, and its wall time on a shared machine moves by several
    percent from one burst to the next: the verdict is the 95% interval's (see `interval`), as for the CPU."""
    model = bench.preset(3)
    one = rounds(await recorded_run(model))
    await replay(one)
    single = statistics.median([await one_run(model) for _ in range(3)])
    bench.calls()
    peak_rss_reset()
    before = rss("VmRSS")
    totals, alones, ratios, served = [], [], [], 0
    for i in range(repeats):
        for mine in (True, False) if i % 2 == 0 else (False, True):
            began = time.perf_counter()
            if mine:
                await asyncio.gather(*(one_run(model) for _ in range(runs)))
                totals.append(time.perf_counter() - began)
                served = len(bench.calls())
            else:
                await asyncio.gather(*(replay(one) for _ in range(runs)))
                alones.append(time.perf_counter() - began)
                bench.calls()
        ratios.append(totals[-1] / alones[-1])
    peak = rss("VmHWM")
    total, alone = statistics.median(totals), statistics.median(alones)
    mean, half = interval(ratios)
    rows = [
        [
            runs,
            served,
            f"{single * 1000:.0f} ms",
            f"{total * 1000:.0f} ms",
            f"{total / single:.2f}",
            f"{alone * 1000:.0f} ms",
            spread(ratios),
            f"{mean:.3f} ± {half:.3f}",
            within_target(mean, half, WALL_TARGET),
            f"{before:.0f} MB",
            f"+{peak - before:.0f} MB",
        ]
    ]
    headers = [
        "runs of 3 agents at once",
        "calls",
        "one run alone",
        "all of them",
        "against one run",
        "LiteLLM alone, same requests",
        "all of them / LiteLLM alone (range)",
        "mean, 95% interval",
        f"<= {WALL_TARGET}",
        "RSS before",
        "peak",
    ]
    note = (
        f"Medians of {repeats} pairs of bursts (ours first in every other pair); the ratio is pair by pair. *Met* "
        "means the whole 95% interval of the mean ratio is within the target, *not met* that it is wholly above, "
        "*not shown* that it straddles it."
    )
    return f"{note}\n\n{table(headers, rows)}"


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


IMPORTS = ("import massgen_litellm", "from massgen_litellm import handler", "import massgen_litellm.cli")


def import_times(repeats: int) -> str:
    """CPU time of each import in a fresh process, on top of `import litellm` (CPU time, so that other processes on
    the machine do not count), and what `-X importtime` says the handler's import adds, module by module."""
    code = (
        "import time; t0 = time.process_time(); import litellm; t1 = time.process_time(); {stmt}; "
        "t2 = time.process_time(); print(t1 - t0, t2 - t1)"
    )
    # As installed: with bytecode caches (pip writes them; an editable checkout writes them on first import unless
    # PYTHONDONTWRITEBYTECODE says not to, and then every import compiles our sources again).
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    subprocess.run([sys.executable, "-c", "import massgen_litellm.cli, massgen_litellm.provider"], env=env, check=True)
    rows = []
    for stmt in IMPORTS:
        litellm_s, ours_s = [], []
        for _ in range(repeats):
            out = subprocess.run(
                [sys.executable, "-c", code.format(stmt=stmt)], capture_output=True, text=True, env=env, check=True
            ).stdout.split()
            litellm_s.append(float(out[0]))
            ours_s.append(float(out[1]))
        theirs, ours = statistics.median(litellm_s), statistics.median(ours_s)
        target = verdict(ours / theirs, IMPORT_TARGET) if stmt == IMPORTS[1] else ""
        rows.append([f"`{stmt}`", f"{theirs * 1000:.0f} ms", f"{ours * 1000:.1f} ms", f"{ours / theirs:.2%}", target])
    headers = ["on top of `import litellm`", "`import litellm` (CPU)", "added (CPU)", "ratio"]
    headers.append(f"<= {IMPORT_TARGET:.0%}")
    note = f"Median of {repeats} fresh processes each."
    return f"{note}\n\n{table(headers, rows)}\n\n{import_breakdown(env)}"


def import_breakdown(env: dict[str, str]) -> str:
    """`python -X importtime`: the modules `from massgen_litellm import handler` loads once LiteLLM is in, the
    costliest first (self time, microseconds, from one process)."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import litellm; from massgen_litellm import handler"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    lines = [line for line in done.stderr.splitlines() if line.startswith("import time:") and "|" in line]
    # Lines come as imports finish; LiteLLM's own top-level line closes its import, and what follows is ours.
    after = next(i for i, line in enumerate(lines) if line.split("|")[2].rstrip() == " litellm") + 1
    added, total = [], 0
    for line in lines[after:]:
        self_us, cumulative_us, name = line.removeprefix("import time:").split("|")
        if name.strip().startswith("litellm"):  # LiteLLM's own, which its import finishes loading after its line
            continue
        added.append((int(self_us), int(cumulative_us), name.strip()))
        if not name[1:].startswith(" "):  # top level: what the import statement itself loaded
            total += int(cumulative_us)
    rows = [[f"`{name}`", self_us, cumulative] for self_us, cumulative, name in sorted(added, reverse=True)[:8]]
    heading = (
        f"`-X importtime` (wall time, one process): {len(added)} modules loaded after LiteLLM's, {total / 1000:.1f} ms "
        "in all; the costliest by self time:"
    )
    return f"{heading}\n\n{table(['module', 'self (µs)', 'cumulative (µs)'], rows)}"


def ask_local(repeats: int) -> str:
    """End to end, as a user runs it: `massgen-litellm ask ... --preset local` (the local extra), wall time."""
    command = shutil.which("massgen-litellm")
    if importlib.util.find_spec("llama_cpp") is None or command is None:
        return "Skipped: needs the `local` extra (`pip install 'massgen-litellm[local]'`) and the command on PATH."
    question = "What is the capital of France?"
    walls, answers = [], []
    for _ in range(repeats):
        began = time.perf_counter()
        done = subprocess.run([command, "ask", question, "--preset", "local"], capture_output=True, text=True)
        walls.append(time.perf_counter() - began)
        answers.append(done.stdout.strip().splitlines()[0] if done.returncode == 0 and done.stdout.strip() else "")
        if done.returncode != 0:
            return f"`massgen-litellm ask` failed ({done.returncode}): {done.stderr[-500:]}"
    code = "import time; t = time.perf_counter(); import litellm; print(time.perf_counter() - t)"
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    litellm_import = statistics.median(
        float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env).stdout)
        for _ in range(repeats)
    )
    rows = [
        [
            f"`massgen-litellm ask {question!r} --preset local`",
            spread(walls, "{:.1f} s"),
            f"{litellm_import:.1f} s",
            answers[0][:60],
        ]
    ]
    headers = ["command", f"wall, median of {repeats} (range)", "`import litellm` alone (wall)", "answer"]
    return table(headers, rows)


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
    if args.quick:
        counts, repeats, runs, cpu_counts, cpu_repeats, min_calls, cpu_seconds = (2, 3), 1, 5, (3,), 2, 14, 0.0
    else:
        counts, repeats, runs = (2, 3, 5, 9, 16), 5, 50
        cpu_counts, cpu_repeats, min_calls, cpu_seconds = (3, 5, 16), 10, MIN_CALLS, CPU_SECONDS

    print(header("benchmarks.run"), flush=True)
    litellm.suppress_debug_info = True
    sections: list[tuple[str, Callable[[], Any]]] = []
    with tempfile.TemporaryDirectory() as presets, fake_server(args.latency) as base_url, fake_server(0) as at_once:
        register_with_litellm(presets_dir=presets, load_env=False)
        others = [entry for entry in litellm.custom_provider_map if entry.get("provider") != REPLAY_PROVIDER]
        litellm.custom_provider_map = [*others, {"provider": REPLAY_PROVIDER, "custom_handler": InstantProvider()}]
        bench = Bench(base_url, Path(presets))
        cpu = Bench(at_once, Path(presets), prefix="cpu")
        # LiteLLM's first calls import provider modules and build clients: not what is being measured.
        await replay(rounds(await recorded_run(bench.preset(2))))
        for _ in range(2):
            await one_run(bench.preset(2))
        bench.calls()
        gc.collect()
        gc.freeze()  # see orchestrator_cpu
        latency = f"{args.latency * 1000:.0f} ms per call"
        sections = [
            (f"Wall time against the floor and LiteLLM alone ({latency})", lambda: scaling(bench, counts, repeats)),
            (
                "Orchestrator CPU per agent turn",
                lambda: orchestrator_cpu(cpu, cpu_counts, cpu_repeats, min_calls, cpu_seconds),
            ),
            ("Concurrent runs", lambda: concurrency(bench, runs, 1 if args.quick else BURSTS)),
        ]
        if args.massgen:
            title = f"The same scenario through the massgen package ({latency})"
            sections.append((title, lambda: anchor(bench, args.massgen, counts, args.latency)))
        for title, section in sections:
            print(f"\n### {title}\n\n{await section()}", flush=True)
    print(f"\n### Import time\n\n{import_times(1 if args.quick else 5)}", flush=True)
    print(f"\n### What an agent is sent per turn (tokens)\n\n{view_tokens()}", flush=True)
    if not args.quick:
        print(f"\n### The run command, end to end\n\n{ask_local(3)}", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
