"""A hostile client of a shared proxy, replayed against the real LiteLLM proxy with the config of docs/proxy.md.

The client holds only a key that may call `massgen/*`. An "attacker" loopback server stands for a host the client
controls: it records every request that reaches it, and answers with bytes that must never come back to the client.
The legitimate upstream (the operator's, `OPENAI_API_BASE`) is another loopback server. Every case checks that no
key, no environment value and no byte of the attacker's reached the attacker or the client, that the caps held, and
at the end that the proxy's memory came back.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from massgen_litellm.testing.loopback import LoopbackServer, until
from massgen_litellm.testing.openai_chat import Call, FakeLLM, Reply, answer, answer_then_vote, fail, vote
from tests.proxy import MASTER_KEY, LiteLLMProxy
from tests.test_proxy import QUESTION, burst, descendants, rss_mb

pytest.importorskip("fastapi", reason="the LiteLLM proxy's dependencies are missing: pip install -e '.[test,proxy]'")

PROVIDER_KEY = "sk-test-not-a-real-key"  # the proxy's OPENAI_API_KEY (tests/proxy.py)
PLANTED = {"ACME_DATABASE_PASSWORD": "pw-planted-in-the-proxy-env-7f3a"}
SECRETS = [MASTER_KEY, PROVIDER_KEY, *PLANTED.values()]
ATTACKER_BYTES = "ATTACKER-READBACK-0b9d"


@pytest.fixture(scope="module")
def attacker() -> Iterator[LoopbackServer]:
    """A host the client controls: every model answers 200 with a body that is not JSON."""
    backend = FakeLLM(default=lambda call: Reply(body=f"<html>{ATTACKER_BYTES}</html>".encode()))
    with LoopbackServer(backend) as server:
        yield server


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The proxy's MASSGEN_LOG_DIR: one record per coordination it ran."""
    return tmp_path_factory.mktemp("records")


@pytest.fixture(scope="module")
def proxy(upstream: LoopbackServer, records: Path) -> Iterator[LiteLLMProxy]:
    with LiteLLMProxy(upstream.base_url, env={**PLANTED, "MASSGEN_LOG_DIR": str(records)}) as running:
        yield running


@pytest.fixture(scope="module")
def start_rss(proxy: LiteLLMProxy, upstream: LoopbackServer) -> float:
    """The proxy's memory once warm (first calls build clients and caches), before any hostile case."""
    upstream.fake.script("proxy-a", answer_then_vote("4"))
    upstream.fake.script("proxy-b", answer_then_vote("4"))
    asyncio.run(burst(proxy, 20, 10))
    assert proxy.pid is not None
    return rss_mb(proxy.pid)


@pytest.fixture
def backend(upstream: LoopbackServer, attacker: LoopbackServer, start_rss: float) -> Iterator[FakeLLM]:
    upstream.fake.scripts.clear()
    upstream.fake.calls.clear()
    upstream.fake.script("proxy-a", answer_then_vote("4"))
    upstream.fake.script("proxy-b", answer_then_vote("4"))
    yield upstream.fake
    # After every case: nothing reached the attacker, and nothing the proxy sent upstream carried a planted secret.
    assert attacker.fake.calls == []
    for call in upstream.fake.calls:
        sent = json.dumps(call.body)
        assert not [s for s in PLANTED.values() if s in sent]


def post(proxy: LiteLLMProxy, body: dict[str, object]) -> httpx.Response:
    response = httpx.post(
        f"{proxy.base_url}/v1/chat/completions",
        json=body,
        headers={"authorization": f"Bearer {MASTER_KEY}"},
        timeout=60,
    )
    assert_clean(response.text)
    return response


def assert_clean(text: str) -> None:
    """Nothing a client may not see: a secret, the attacker's bytes, a traceback, a server path."""
    leaked = [s for s in [*SECRETS, ATTACKER_BYTES] if s in text]
    assert not leaked, leaked
    assert "Traceback" not in text and ".py" not in text and "/work/" not in text and "site-packages" not in text


def error_of(response: httpx.Response, status: int = 400) -> str:
    assert response.status_code == status, response.text
    return response.json()["error"]["message"]


# 1. Who may set what --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", ["openai/gpt-4o-mini", "anthropic/claude-haiku-4-5"])
def test_a_client_cannot_point_an_agent_at_its_own_host(
    backend: FakeLLM, proxy: LiteLLMProxy, attacker: LoopbackServer, provider: str
) -> None:
    models = [{"model": provider, "api_base": attacker.base_url}]
    message = error_of(post(proxy, {"model": "massgen/duo", "messages": QUESTION, "models": models}))
    assert "models" in message and "clients: models:" in message and "duo.yaml" in message
    # Where models are allowed, the host still is not, and the 400 names the setting that would allow it.
    message = error_of(
        post(
            proxy, {"model": "massgen/open", "messages": QUESTION, "models": [{**models[0], "model": "openai/proxy-a"}]}
        )
    )
    assert "models[0].api_base" in message and "clients: agent_fields:" in message
    assert backend.calls == []


@pytest.mark.parametrize("name", ["LITELLM_MASTER_KEY", "ACME_DATABASE_PASSWORD", "NO_SUCH_VARIABLE_HERE"])
def test_a_client_cannot_send_a_server_variable_anywhere_nor_probe_which_exist(
    backend: FakeLLM, proxy: LiteLLMProxy, name: str
) -> None:
    entry = {"model": "openai/proxy-a", "api_key": f"os.environ/{name}"}
    # Where the client may not set keys at all,
    assert "models[0].api_key: a request through the proxy may not set it" in error_of(
        post(proxy, {"model": "massgen/open", "messages": QUESTION, "models": [entry]})
    )
    # and where it may bring its own: the message is the same for a set and an unset variable.
    message = error_of(post(proxy, {"model": "massgen/byok", "messages": QUESTION, "models": [entry]}))
    assert message.startswith(
        "litellm.BadRequestError: massgen: models[0].api_key: a request through the proxy may not name a server "
        "environment variable"
    )
    assert "not set" not in message
    assert backend.calls == []


def test_a_client_key_where_the_operator_allows_one_goes_to_the_operators_host(
    backend: FakeLLM, proxy: LiteLLMProxy
) -> None:
    models = [{"model": "openai/proxy-a", "api_key": "sk-the-clients-own-key", "temperature": 0.3}]
    response = post(proxy, {"model": "massgen/byok", "messages": QUESTION, "models": models})
    assert response.status_code == 200, response.text
    assert {call.api_key for call in backend.calls} == {"sk-the-clients-own-key"}
    assert response.json()["massgen"]["trusted"] is False


@pytest.mark.parametrize(
    ("models", "named"),
    [
        (["massgen/duo"], "'massgen/duo' is not a model"),
        (["local/smollm2"], "'local/smollm2' is not a model"),
        (["openai/gpt-4o"], "'openai/gpt-4o' is not a model"),
        ([{"model": "openai/proxy-a", "num_retries": 10}], "models[0].num_retries"),
    ],
)
def test_only_the_operators_models_and_fields(
    backend: FakeLLM, proxy: LiteLLMProxy, models: list[object], named: str
) -> None:
    assert proxy.pid is not None
    children = set(descendants(proxy.pid))
    message = error_of(post(proxy, {"model": "massgen/open", "messages": QUESTION, "models": models}))
    assert named in message and "'clients:" in message
    assert backend.calls == []
    assert set(descendants(proxy.pid)) == children  # no local model server was started


def test_models_within_the_allow_list_run(backend: FakeLLM, proxy: LiteLLMProxy) -> None:
    backend.script("proxy-c", answer_then_vote("4"))
    models = ["openai/proxy-c", {"model": "openai/proxy-a", "temperature": 0.1, "system_message": "Be brief."}]
    response = post(proxy, {"model": "massgen/open", "messages": QUESTION, "models": models})
    assert response.status_code == 200, response.text
    assert {c.model for c in backend.calls} == {"proxy-c", "proxy-a"}


# 2. Bounded work ------------------------------------------------------------------------------------------------------


def test_a_client_may_lower_limits_but_not_raise_them(backend: FakeLLM, proxy: LiteLLMProxy) -> None:
    for name, value in [("max_turns_per_agent", 50), ("max_calls", 10_000), ("run_timeout", 86_400)]:
        message = error_of(post(proxy, {"model": "massgen/duo", "messages": QUESTION, name: value}))
        assert f"{name}={value} is above this preset's" in message
    assert backend.calls == []
    response = post(proxy, {"model": "massgen/duo", "messages": QUESTION, "max_turns_per_agent": 2})
    assert response.status_code == 200
    assert response.json()["massgen"]["options"]["max_turns_per_agent"] == 2


def test_a_client_may_skip_the_vote_when_unanimous_either_way_within_the_caps(
    backend: FakeLLM, proxy: LiteLLMProxy
) -> None:
    # Either value is the coordination as designed, under the run's caps: on saves the vote round, off runs it as
    # far as the caps allow and no further (duo keeps the vote; both agents answer "4"; a call reserves 3 of
    # max_calls, so 9 leave room for the two answers and one vote). Only a boolean is taken.
    body = {"model": "massgen/duo", "messages": QUESTION, "max_calls": 9, "final": "winner_answer"}
    on = post(proxy, {**body, "skip_voting_when_unanimous": True}).json()["massgen"]
    assert on["end_reason"] == "unanimous" and on["options"]["skip_voting_when_unanimous"] is True
    assert len(backend.calls) == 2
    backend.calls.clear()
    off = post(proxy, {**body, "skip_voting_when_unanimous": False}).json()["massgen"]
    assert off["end_reason"] == "budget" and off["requests_reserved"] <= 9 and len(backend.calls) == 3
    backend.calls.clear()
    message = error_of(post(proxy, {**body, "skip_voting_when_unanimous": "sometimes"}))
    assert "skip_voting_when_unanimous" in message and backend.calls == []


def test_max_calls_holds_across_turns_corrections_and_retries(backend: FakeLLM, proxy: LiteLLMProxy) -> None:
    # Three agents that give a malformed reply and then, corrected, a new answer, every turn;
    # a fourth whose provider fails every request (LiteLLM retries it twice). None ever votes.
    def stubborn(call: Call) -> Reply:
        return answer(f"answer {len(backend.calls)}") if call.is_retry else Reply(tool="new_answer", arguments="{")

    for n in (1, 2, 3):
        backend.script(f"stubborn-{n}", stubborn)
    backend.script("broken", lambda call: fail(500))

    response = post(proxy, {"model": "massgen/capped", "messages": QUESTION})

    assert response.status_code == 200, response.text
    record = response.json()["massgen"]
    assert record["end_reason"] == "budget"
    assert len(backend.calls) <= 24  # every HTTP request the upstream saw, retries included
    assert record["requests_reserved"] <= 24
    assert 2 <= len(backend.calls_of("broken")) <= 3  # one call, LiteLLM's retries (num_retries=1), then dropped


def test_a_failed_run_is_not_run_again_by_the_proxy(backend: FakeLLM, proxy: LiteLLMProxy, records: Path) -> None:
    backend.script("proxy-a", lambda call: fail(500))
    backend.script("proxy-b", lambda call: fail(503))
    before = set(records.iterdir())
    message = error_of(post(proxy, {"model": "massgen/duo", "messages": QUESTION}), 502)
    assert "every participant failed" in message
    # One coordination (one record), whose agents each made one call with LiteLLM's retries of it: the router did not
    # run it again, though the documented config sets no num_retries.
    ran = [json.loads(path.read_text()) for path in set(records.iterdir()) - before]
    assert [r["end_reason"] for r in ran] == ["all_failed"]
    assert len(backend.calls) <= ran[0]["requests_reserved"] == 6


def test_a_conversation_beyond_the_token_budget_is_refused_before_any_call(
    backend: FakeLLM, proxy: LiteLLMProxy
) -> None:
    huge = [{"role": "user", "content": "word " * 1_000_000}]  # ~1.25M tokens by the 4-characters rule, x2 agents
    message = error_of(post(proxy, {"model": "massgen/duo", "messages": huge}))
    assert "max_run_tokens" in message
    assert backend.calls == []


# 3. Bounded memory and time -------------------------------------------------------------------------------------------


def test_ten_megabyte_answers_are_cut(backend: FakeLLM, proxy: LiteLLMProxy) -> None:
    huge = "x" * 10_000_000
    for n in (1, 2, 3, 4):
        backend.script(f"big-{n}", lambda call: vote("agent1") if "agent1" in call.answers else answer(huge))
    response = post(proxy, {"model": "massgen/big", "messages": QUESTION})
    assert response.status_code == 200
    body = response.json()
    content = body["choices"][0]["message"]["content"]
    assert len(content) < 41_000 and content.endswith("[cut at 40000 characters]")
    # What the others were shown was the cut answer, not 10 MB.
    assert max(len(json.dumps(c.messages)) for c in backend.calls) < 200_000
    assert any("cut from 10000000" in note for note in body["massgen"]["notes"])


def test_a_presentation_that_streams_forever_obeys_call_timeout(
    backend: FakeLLM, proxy: LiteLLMProxy, upstream: LoopbackServer
) -> None:
    for model in ("endless-a", "endless-b"):
        backend.script(model, presenting(Reply(content="tick", endless=0.05)))
    client = proxy.client()
    parts = []
    with pytest.raises(openai.APIError) as caught:
        for chunk in client.chat.completions.create(model="massgen/endless", messages=QUESTION, stream=True):
            if chunk.choices and chunk.choices[0].delta.content:
                parts.append(chunk.choices[0].delta.content)
    assert "".join(parts).startswith("tick0 tick1 ")
    # Only the presentation's own deadline (call_timeout=2) ends a stream that never ends: "incomplete" is its error,
    # where the client's 60 s timeout would have said something else.
    assert "incomplete" in str(caught.value)
    assert_clean(str(caught.value))
    asyncio.run(until(lambda: upstream.open_connections == 0, 5, "the endless stream's connection is closed"))


def test_a_presentation_that_floods_is_cut_at_max_answer_chars(
    backend: FakeLLM, proxy: LiteLLMProxy, upstream: LoopbackServer
) -> None:
    for model in ("flood-a", "flood-b"):
        backend.script(model, presenting(Reply(content="flood", endless=0.001)))
    client = proxy.client()
    chunks = list(client.chat.completions.create(model="massgen/flood", messages=QUESTION, stream=True))
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(content) == 2000
    record = next((c.model_extra or {})["massgen"] for c in chunks if "massgen" in (c.model_extra or {}))
    assert any("presentation was cut at max_answer_chars=2000" in note for note in record["notes"])
    asyncio.run(until(lambda: upstream.open_connections == 0, 5, "the flooding stream's connection is closed"))


def presenting(reply: Reply) -> object:
    """Answer, vote for agent1, and present with `reply`."""

    def script(call: Call) -> Reply:
        if call.is_presentation:
            return reply
        return vote("agent1") if "agent1" in call.answers else answer("4")

    return script


# 4. Input validated at the door ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"temperature": "hot"}, "temperature"),
        ({"temperature": 5}, "temperature"),
        ({"max_tokens": -1}, "max_tokens"),
        ({"top_p": 3}, "top_p"),
        ({"seed": "x"}, "seed"),
        ({"reasoning_effort": "maximal"}, "reasoning_effort"),
        ({"messages": "hello"}, "messages must be a list"),
        ({"messages": [{"role": "user", "content": 12345}]}, "messages[0].content"),
        ({"messages": [{"role": "user", "content": [{"text": "no type"}]}]}, "messages[0].content"),
        ({"messages": [{"role": "wizard", "content": "hi"}]}, "messages[0]"),
        ({"messages": [{"role": "user"}]}, "messages[0].content is missing"),
    ],
)
def test_bad_input_is_a_clean_400_before_any_call(
    backend: FakeLLM, proxy: LiteLLMProxy, fields: dict[str, object], named: str
) -> None:
    response = post(proxy, {"model": "massgen/duo", "messages": QUESTION, **fields})
    assert named in error_of(response)
    assert backend.calls == []


# 5. Streams complete for every client ---------------------------------------------------------------------------------


def test_a_stream_without_stream_options_gets_every_event_and_the_record(backend: FakeLLM, proxy: LiteLLMProxy) -> None:
    client = proxy.client()
    chunks = list(client.chat.completions.create(model="massgen/duo", messages=QUESTION, stream=True))
    events = [(c.model_extra or {})["massgen_event"] for c in chunks if "massgen_event" in (c.model_extra or {})]
    kinds = [e["kind"] for e in events]
    assert kinds[0] == "start" and kinds.count("turn") == 4 and kinds[-1] == "done"
    records = [(c.model_extra or {})["massgen"] for c in chunks if "massgen" in (c.model_extra or {})]
    assert len(records) == 1 and records[0]["winner"] == "agent1"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Final: 4"


# Memory, after every hostile case above -------------------------------------------------------------------------------


def test_zz_memory_returns_after_the_hostile_cases(backend: FakeLLM, proxy: LiteLLMProxy, start_rss: float) -> None:
    huge = "y" * 10_000_000
    for n in (1, 2, 3, 4):
        backend.script(f"big-{n}", lambda call: vote("agent1") if "agent1" in call.answers else answer(huge))
    for _ in range(3):
        assert post(proxy, {"model": "massgen/big", "messages": QUESTION}).status_code == 200
    assert proxy.pid is not None
    settled = rss_mb(proxy.pid)
    deadline = time.monotonic() + 10
    while settled - start_rss >= 50 and time.monotonic() < deadline:
        time.sleep(0.5)
        settled = rss_mb(proxy.pid)
    print(f"\nproxy RSS: {start_rss:.0f} MB warm, {settled:.0f} MB after the hostile cases")
    assert settled - start_rss < 50, (start_rss, settled)


# 6. More than one worker, more than one proxy -------------------------------------------------------------------------


def test_two_workers_and_two_proxies_serve_the_load(upstream: LoopbackServer) -> None:
    upstream.fake.scripts.clear()
    upstream.fake.script("proxy-a", answer_then_vote("4", delay=0.02))
    upstream.fake.script("proxy-b", answer_then_vote("4", delay=0.02))
    with (
        LiteLLMProxy(upstream.base_url, num_workers=2) as two_workers,
        LiteLLMProxy(upstream.base_url) as second,
    ):
        assert two_workers.pid is not None and len(set(descendants(two_workers.pid))) >= 2  # the workers are processes
        answers = asyncio.run(_spread([two_workers, second], runs=200, at_once=20))
    assert answers == ["Final: 4"] * 200


async def _spread(proxies: list[LiteLLMProxy], runs: int, at_once: int) -> list[str]:
    """`runs` runs, `at_once` at a time, across the proxies in turn: one configuration, several processes."""
    gate = asyncio.Semaphore(at_once)
    clients = [p.async_client() for p in proxies]

    async def one(index: int) -> str:
        async with gate:
            client = clients[index % len(clients)]
            response = await client.chat.completions.create(model="massgen/duo", messages=QUESTION)
            assert (response.model_extra or {})["massgen"]["end_reason"] == "consensus"
            return response.choices[0].message.content or ""

    try:
        return await asyncio.gather(*(one(i) for i in range(runs)))
    finally:
        for client in clients:
            await client.close()
