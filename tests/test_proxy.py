"""End to end through the real LiteLLM proxy process, called with the official `openai` client and with curl.

One proxy (about 15 s to start) serves the whole module; each test scripts the shared loopback fake afresh.
"""

from __future__ import annotations

import asyncio
import json
import re
import shlex
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import litellm
import openai
import pytest

from massgen_litellm.testing.loopback import LoopbackServer, until
from massgen_litellm.testing.openai_chat import FakeLLM, answer, answer_then_vote, vote
from tests.proxy import MASTER_KEY, LiteLLMProxy

pytest.importorskip("fastapi", reason="the LiteLLM proxy's dependencies are missing: pip install -e '.[test,proxy]'")
pytest.importorskip("uvicorn", reason="the LiteLLM proxy's dependencies are missing: pip install -e '.[test,proxy]'")

QUESTION = [{"role": "user", "content": "What is 2 + 2?"}]
LONG = "Four. Two plus two is four, because adding two to two gives four."


@pytest.fixture
def backend(upstream: LoopbackServer, proxy: LiteLLMProxy) -> FakeLLM:
    """The loopback fake, with no scripts and no calls left over from the previous test."""
    upstream.fake.scripts.clear()
    upstream.fake.calls.clear()
    return upstream.fake


@pytest.fixture
def client(proxy: LiteLLMProxy) -> openai.OpenAI:
    return proxy.client(timeout=30)


def test_a_completion_through_the_proxy(backend: FakeLLM, client: openai.OpenAI) -> None:
    backend.script("proxy-a", answer_then_vote("4"))
    backend.script("proxy-b", answer_then_vote("four", delay=0.05))

    response = client.chat.completions.create(model="massgen/duo", messages=QUESTION)

    assert response.choices[0].message.content == "Final: 4"
    assert response.model == "massgen/duo"
    reported = backend.reported_usage()
    assert response.usage is not None
    assert response.usage.prompt_tokens == reported["prompt_tokens"]
    assert response.usage.completion_tokens == reported["completion_tokens"]
    record = (response.model_extra or {})["massgen"]
    assert record["winner"] == "agent1"
    assert record["tally"] == {"agent1": 2, "agent2": 0}
    assert record["end_reason"] == "consensus"
    assert len(record["calls"]) == len(backend.calls)


def test_the_named_model_entry_serves_its_preset(backend: FakeLLM, client: openai.OpenAI) -> None:
    backend.script("proxy-a", answer_then_vote("4"))
    backend.script("proxy-b", answer_then_vote("4"))
    response = client.chat.completions.create(model="team", messages=QUESTION)
    assert response.choices[0].message.content == "Final: 4"
    assert (response.model_extra or {})["massgen"]["preset"] == "duo"


def test_streaming_through_the_proxy(backend: FakeLLM, client: openai.OpenAI) -> None:
    backend.script("proxy-a", answer_then_vote(LONG))
    backend.script("proxy-b", answer_then_vote("four", delay=0.05))

    stream = client.chat.completions.create(
        model="massgen/duo", messages=QUESTION, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)

    content = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(content) > 5
    assert "".join(content) == f"Final: {LONG}"
    progress = "".join(
        (c.choices[0].delta.model_extra or {}).get("reasoning_content") or "" for c in chunks if c.choices
    )
    assert "agent1 answered" in progress and "agent2 voted for agent1" in progress
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens == backend.reported_usage()["total_tokens"]
    records = [(c.model_extra or {})["massgen"] for c in chunks if "massgen" in (c.model_extra or {})]
    assert len(records) == 1 and records[0]["winner"] == "agent1"
    events = [(c.model_extra or {})["massgen_event"] for c in chunks if "massgen_event" in (c.model_extra or {})]
    assert events[0]["kind"] == "start" and [a["model"] for a in events[0]["agents"]] == [
        "openai/proxy-a",
        "openai/proxy-b",
    ]
    assert events[-1]["kind"] == "done" and events[-1]["target"] == "agent1"


def test_extra_body_models_replace_the_preset_agents(backend: FakeLLM, client: openai.OpenAI) -> None:
    backend.script("proxy-c", answer_then_vote("4"))
    backend.script("proxy-d", answer_then_vote("4"))
    models = ["openai/proxy-c", {"model": "openai/proxy-d", "protocol": "tools"}]

    # massgen/open lets proxy clients choose among openai/proxy-* (tests/proxy_presets/open.yaml).
    response = client.chat.completions.create(model="massgen/open", messages=QUESTION, extra_body={"models": models})

    assert response.choices[0].message.content == "Final: 4"
    assert {call.model for call in backend.calls} == {"proxy-c", "proxy-d"}
    agents = (response.model_extra or {})["massgen"]["agents"]
    assert [a["model"] for a in agents] == ["openai/proxy-c", "openai/proxy-d"]


def test_an_unknown_preset_is_a_400_that_names_it(backend: FakeLLM, client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="massgen/nope", messages=QUESTION)
    assert caught.value.status_code == 400
    assert "unknown preset 'nope'" in caught.value.message
    assert "duo" in caught.value.message  # the available presets are listed
    assert backend.calls == []


@pytest.mark.parametrize(
    ("models", "named"),
    [("openai/proxy-a", "models must be a list"), ([], "models is empty"), ([{"modle": "x"}], "models[0]")],
)
def test_a_bad_models_value_is_a_400_that_names_it(
    backend: FakeLLM, client: openai.OpenAI, models: object, named: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="massgen/open", messages=QUESTION, extra_body={"models": models})
    assert caught.value.status_code == 400
    assert named in caught.value.message
    assert backend.calls == []


def test_without_the_master_key_nothing_runs(backend: FakeLLM, proxy: LiteLLMProxy) -> None:
    backend.script("proxy-a", answer_then_vote("4"))
    backend.script("proxy-b", answer_then_vote("4"))
    body = {"model": "massgen/duo", "messages": QUESTION}
    url = f"{proxy.base_url}/v1/chat/completions"

    # No key at all (the openai client refuses to send a request without one, hence plain httpx).
    missing = httpx.post(url, json=body, timeout=30)
    assert missing.status_code == 401
    assert "No api key passed in" in missing.json()["error"]["message"]
    # A wrong key is refused too, but LiteLLM (1.110) says so with a 400 "No connected db.": with no database it
    # cannot look the key up as a virtual key. What matters here is that no participant runs.
    wrong = httpx.post(url, json=body, headers={"authorization": "Bearer sk-wrong"}, timeout=30)
    assert wrong.status_code in (400, 401)
    assert backend.calls == []


@pytest.mark.parametrize("stream", [False, True])
async def test_a_client_that_hangs_up_cancels_the_calls_in_flight(
    backend: FakeLLM, proxy: LiteLLMProxy, stream: bool
) -> None:
    # Both agents answer at once, then think for a minute about their votes: the run is mid-flight when the client
    # leaves.
    backend.script("proxy-a", lambda call: answer("4") if not call.answers else vote("agent1", delay=60))
    backend.script("proxy-b", lambda call: answer("four") if not call.answers else vote("agent1", delay=60))
    client = proxy.async_client()

    async def request() -> None:
        if not stream:
            await client.chat.completions.create(model="massgen/duo", messages=QUESTION)
            return
        chunks = await client.chat.completions.create(model="massgen/duo", messages=QUESTION, stream=True)
        async for _ in chunks:
            pass

    task = asyncio.create_task(request())
    # Both long calls are in flight: each agent's second turn.
    await until(lambda: len([c for c in backend.calls if not c.ended]) == 2, 10, "two calls in flight")
    in_flight = [c for c in backend.calls if not c.ended]
    hung_up = time.monotonic()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await client.close()

    await until(lambda: all(c.ended for c in in_flight), 30, "the participant calls have ended")
    # Cut off by the hang-up (the server saw the socket close), not answered after their 60 s.
    assert all(c.cancelled for c in in_flight)
    assert max(c.ended for c in in_flight) - hung_up < 30


def test_the_proxy_reports_the_run_cost(backend: FakeLLM, client: openai.OpenAI) -> None:
    backend.script("gpt-4o-mini", answer_then_vote("4"))

    raw = client.chat.completions.with_raw_response.create(model="massgen/priced", messages=QUESTION)

    response = raw.parse()
    assert response.choices[0].message.content == "4"
    expected = 0.0
    for call in backend.calls:
        assert call.usage is not None
        prompt, completion = litellm.cost_per_token(
            model="gpt-4o-mini",
            prompt_tokens=call.usage["prompt_tokens"],
            completion_tokens=call.usage["completion_tokens"],
        )
        expected += prompt + completion
    assert expected > 0
    assert float(raw.headers["x-litellm-response-cost"]) == pytest.approx(expected, rel=1e-6)
    assert (response.model_extra or {})["massgen"]["cost"] == pytest.approx(expected, rel=1e-9)


def docs_curl() -> str:
    page = (Path(__file__).parent.parent / "docs" / "proxy.md").read_text()
    blocks = re.findall(r"```bash\n(curl .*?)```", page, re.DOTALL)
    assert len(blocks) == 1, "the proxy page has one curl example"
    return blocks[0]


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_the_docs_curl_example(backend: FakeLLM, proxy: LiteLLMProxy) -> None:
    backend.script("proxy-a", answer_then_vote("4"))
    backend.script("proxy-b", answer_then_vote("4"))
    # The proxy page's command as written, aimed at this proxy and at a preset whose agents are scripted.
    command = docs_curl().replace("\\\n", " ").replace("http://127.0.0.1:4000", proxy.base_url)
    command = command.replace("massgen/build", "massgen/duo")
    assert "$LITELLM_MASTER_KEY" in command
    argv = [arg.replace("$LITELLM_MASTER_KEY", MASTER_KEY) for arg in shlex.split(command)]

    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True)

    body = json.loads(done.stdout)
    assert body["choices"][0]["message"]["content"] == "Final: 4"
    assert body["massgen"]["winner"] == "agent1"


def rss_mb(pid: int) -> float:
    """Resident memory of the proxy and any worker processes it forked."""
    total = 0.0
    for candidate in [pid, *descendants(pid)]:
        for line in _proc_text(f"/proc/{candidate}/status").splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) / 1024
    return total


def descendants(pid: int) -> list[int]:
    """The processes `pid` started, and theirs, found through /proc."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in _proc_text(str(task / "children")).split():
            found += [int(child), *descendants(int(child))]
    return found


def _proc_text(path: str) -> str:
    """A /proc file's text, or nothing if its thread or process ended since it was listed (the proxy's threads come
    and go while it serves)."""
    try:
        return Path(path).read_text()
    except (FileNotFoundError, ProcessLookupError):
        return ""


async def burst(proxy: LiteLLMProxy, runs: int, at_once: int) -> list[str]:
    client = proxy.async_client()
    gate = asyncio.Semaphore(at_once)

    async def one() -> str:
        async with gate:
            response = await client.chat.completions.create(model="massgen/duo", messages=QUESTION)
            assert (response.model_extra or {})["massgen"]["end_reason"] == "consensus"
            return response.choices[0].message.content or ""

    try:
        return await asyncio.gather(*(one() for _ in range(runs)))
    finally:
        await client.close()


async def test_load_200_runs_20_at_a_time(backend: FakeLLM, proxy: LiteLLMProxy) -> None:
    backend.script("proxy-a", answer_then_vote("4", delay=0.02))
    backend.script("proxy-b", answer_then_vote("4", delay=0.02))
    assert proxy.pid is not None
    await burst(proxy, 40, 20)  # warm: first calls build clients and caches
    settled = rss_mb(proxy.pid)

    began = time.monotonic()
    first = await burst(proxy, 200, 20)
    took = time.monotonic() - began
    after_first = rss_mb(proxy.pid)
    second = await burst(proxy, 200, 20)
    after_second = rss_mb(proxy.pid)

    assert first + second == ["Final: 4"] * 400  # zero errors, every answer right
    # A leak would grow with every burst; the second one must leave memory where the first did.
    assert after_second - after_first < 15, (settled, after_first, after_second)
    print(
        f"\nload: 200 runs, 20 at a time, in {took:.1f}s ({200 / took:.0f} runs/s, {len(backend.calls)} participant "
        f"calls over both bursts); proxy RSS {settled:.0f} MB warm, {after_first:.0f} MB after 200 runs, "
        f"{after_second:.0f} MB after 400"
    )
