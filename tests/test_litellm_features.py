"""LiteLLM's own request fields and proxy features on `massgen/*`: they mean what they mean on any model.

In-process, participants are scripted models behind respx; through the proxy, the real LiteLLM proxy process
(tests/proxy_features_config.yaml) in front of the loopback fake, and for the cache two proxy processes sharing a
real Redis. docs/litellm-features.md names the test behind each feature.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import litellm
import openai
import pytest
from litellm.integrations.custom_logger import CustomLogger

from massgen_litellm.server_process import free_port
from massgen_litellm.testing.loopback import LoopbackServer, until
from massgen_litellm.testing.openai_chat import (
    BASE,
    KEY,
    Call,
    FakeLLM,
    Reply,
    answer,
    answer_then_vote,
    text,
)
from tests.conftest import agent, write_preset
from tests.proxy import HERE, LiteLLMProxy

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
PARIS = "Paris is the capital of France."


def duo(fake: FakeLLM, registered: Path, content: str = PARIS, **options: Any) -> None:
    fake.script("a", answer_then_vote(content))
    fake.script("b", answer_then_vote(content, delay=0.01))
    write_preset(registered, "team", [agent("a"), agent("b")], **options, skip_voting_when_unanimous=False)


class Seen(CustomLogger):
    """Every successful call as a logger sees it, read the way LiteLLM's Langfuse integration reads it: the trace
    is `existing_trace_id`, else the metadata's `trace_id`, else the standard logging payload's trace id."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[dict[str, Any]] = []
        self.before: list[str] = []  # each call's metadata as JSON, as loggers see it before the call is made

    def log_pre_api_call(self, model: Any, messages: Any, kwargs: Any) -> None:
        self.before.append(json.dumps((kwargs.get("litellm_params") or {}).get("metadata") or {}, default=str))

    async def async_log_success_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
        metadata = (kwargs.get("litellm_params") or {}).get("metadata") or {}
        standard = kwargs.get("standard_logging_object") or {}
        self.calls.append(
            {
                "model": kwargs.get("model"),
                "metadata": dict(metadata),
                "trace": metadata.get("existing_trace_id") or metadata.get("trace_id") or standard.get("trace_id"),
                "session": metadata.get("session_id"),
                "generation_name": metadata.get("generation_name"),
                "tags": metadata.get("tags"),
                "user": (kwargs.get("optional_params") or {}).get("user") or kwargs.get("user"),
            }
        )

    async def wait_for(self, count: int, timeout: float = 30) -> None:
        # LiteLLM delivers success events from its logging worker, after the call returns: poll, no event to wait on.
        await until(lambda: len(self.calls) >= count, timeout, f"{count} logged calls (so far {self.calls})")


@pytest.fixture
def seen(monkeypatch: pytest.MonkeyPatch) -> Iterator[Seen]:
    logger = Seen()
    # LiteLLM copies `callbacks` into lists of its own on the next call and keeps one logger of a class there: each
    # test gets copies of those lists, so that its logger is the one called and is gone afterwards.
    for name in (
        "input_callback",
        "success_callback",
        "failure_callback",
        "_async_success_callback",
        "_async_failure_callback",
    ):
        monkeypatch.setattr(litellm, name, list(getattr(litellm, name)))
    monkeypatch.setattr(litellm, "callbacks", [*litellm.callbacks, logger])
    yield logger


# --- 1. user and metadata -----------------------------------------------------------------------------------------


async def test_user_and_the_callers_metadata_reach_every_participant_call(fake, registered, seen):
    # Models of OpenAI's catalog: LiteLLM sends `user` on to those only (other OpenAI-compatible servers may refuse it).
    fake.script("gpt-4o-mini", answer_then_vote(PARIS))
    fake.script("gpt-4o", answer_then_vote(PARIS, delay=0.01))
    write_preset(registered, "team", [agent("gpt-4o-mini"), agent("gpt-4o")], skip_voting_when_unanimous=False)
    metadata = {
        "trace_id": "trace-1",
        "session_id": "session-1",
        "generation_name": "ask-capital",
        "tags": ["prod", "geo"],
        "massgen_run_id": "forged",  # ours win: a caller cannot forge them
        "user_api_key_hash": "forged",  # the proxy's billing fields never go on a participant call
    }
    response = await litellm.acompletion(model="massgen/team", messages=QUESTION, user="u-42", metadata=metadata)

    assert response.massgen["ignored_params"] == []
    assert len(fake.calls) == len(response.massgen["calls"]) >= 5
    assert all(call.body.get("user") == "u-42" for call in fake.calls), "the provider sees the end user"
    await seen.wait_for(len(fake.calls) + 1)
    participants = [c for c in seen.calls if c["model"] != "team"]
    assert len(participants) == len(fake.calls)
    for call in participants:
        assert call["trace"] == "trace-1" and call["session"] == "session-1"
        assert call["generation_name"] == "ask-capital" and call["tags"] == ["prod", "geo"]
        assert call["metadata"]["massgen_run_id"] == response.massgen["run_id"]
        assert "user_api_key_hash" not in call["metadata"]
        assert call["user"] == "u-42"


async def test_a_metadata_dict_passed_again_carries_nothing_of_the_last_run(fake, registered, seen):
    """LiteLLM writes a reply's hidden params (our whole record among them) back into the metadata dict it was given:
    a caller that passes the same dict again must not send one run's record with the next run's calls."""
    duo(fake, registered)
    metadata = {"tags": ["shared"]}  # one dict for every request, as a server's constant would be
    first = await litellm.acompletion(model="massgen/team", messages=QUESTION, metadata=metadata)
    await seen.wait_for(len(first.massgen["calls"]) + 1)  # LiteLLM writes into the dict as it logs the call
    assert first.massgen["run_id"] in json.dumps(metadata, default=str), "else this test would show nothing"
    seen.calls.clear()
    seen.before.clear()
    second = await litellm.acompletion(model="massgen/team", messages=QUESTION, metadata=metadata)
    participants = [m for m in seen.before if second.massgen["run_id"] in m and "massgen_agent_id" in m]
    assert len(participants) == len(second.massgen["calls"])
    assert all(first.massgen["run_id"] not in m and "shared" in m for m in participants)


async def test_without_a_trace_id_the_team_shares_the_outer_calls_trace(fake, registered, seen):
    duo(fake, registered)
    response = await litellm.acompletion(model="massgen/team", messages=QUESTION)
    await seen.wait_for(len(fake.calls) + 1)
    traces = {c["trace"] for c in seen.calls}
    assert len(traces) == 1 and None not in traces, "the outer call and every participant call, one trace"
    assert {c["metadata"].get("massgen_run_id") for c in seen.calls if c["model"] != "team"} == {
        response.massgen["run_id"]
    }


async def test_a_routers_bookkeeping_stays_with_the_outer_call(fake, registered, seen):
    duo(fake, registered)
    router = litellm.Router(model_list=[{"model_name": "front", "litellm_params": {"model": "massgen/team"}}])
    await router.acompletion(model="front", messages=QUESTION, metadata={"trace_id": "trace-2"})
    await seen.wait_for(len(fake.calls) + 1)
    for call in (c for c in seen.calls if c["model"] != "team"):
        assert call["trace"] == "trace-2"
        assert not {"model_group", "deployment", "model_info"} & set(call["metadata"]), call["metadata"]


# --- 2. stop ----------------------------------------------------------------------------------------------------------


async def test_stop_cuts_the_presented_reply_and_reaches_only_the_presentation_call(fake, registered):
    duo(fake, registered)
    response = await litellm.acompletion(model="massgen/team", messages=QUESTION, stop=["capital"])

    assert response.choices[0].message.content == "Final: Paris is the "
    assert response.choices[0].finish_reason == "stop"
    assert response.massgen["ignored_params"] == []
    presentation = [c for c in fake.calls if c.is_presentation]
    assert len(presentation) == 1 and presentation[0].body["stop"] == ["capital"]
    assert all("stop" not in c.body for c in fake.calls if not c.is_presentation), "coordination turns never get it"


async def test_stop_cuts_a_streamed_reply_across_chunk_boundaries(fake, registered):
    duo(fake, registered)
    # The fake streams four characters a chunk: "Final: Paris is the capital" splits "capital" as "e ca" "pita" "l".
    stream = await litellm.acompletion(model="massgen/team", messages=QUESTION, stop="capital", stream=True)
    chunks = [chunk async for chunk in stream]
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert content == "Final: Paris is the "
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]


async def test_a_presentation_cut_at_a_stop_sequence_is_in_the_record(fake, registered):
    """The stream stops reading the winner's presentation at the stop sequence; its call is still one of the run's,
    in the record the last chunk carries, with its tokens."""
    duo(fake, registered)
    stream = await litellm.acompletion(model="massgen/team", messages=QUESTION, stop="capital", stream=True)
    chunks = [chunk async for chunk in stream]
    record = next(c.massgen for c in chunks if getattr(c, "massgen", None))
    assert [c["kind"] for c in record["calls"]].count("present") == 1
    assert len(record["calls"]) == len(fake.calls)


@pytest.mark.parametrize("stream", [False, True])
async def test_stop_cuts_a_verbatim_answer(fake, registered, stream):
    duo(fake, registered, final="winner_answer")
    result = await litellm.acompletion(model="massgen/team", messages=QUESTION, stop=["\n", " of "], stream=stream)
    if stream:
        chunks = [chunk async for chunk in result]
        content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    else:
        content, finish = result.choices[0].message.content, [result.choices[0].finish_reason]
    assert content == "Paris is the capital"
    assert finish == ["stop"]
    assert not any(c.is_presentation for c in fake.calls)
    assert all("stop" not in c.body for c in fake.calls)


@pytest.mark.parametrize("stop", [["x" * 300], [""], 3, [None]])
async def test_a_malformed_stop_is_a_400_that_says_what_stop_may_be(fake, registered, stop):
    duo(fake, registered)
    with pytest.raises(litellm.BadRequestError, match="stop must be a string or a list of 1 to 4"):
        await litellm.acompletion(model="massgen/team", messages=QUESTION, stop=stop)
    assert fake.calls == []


# --- 3. usage ---------------------------------------------------------------------------------------------------------


def thinking_duo(fake: FakeLLM, registered: Path) -> None:
    """Two agents whose provider reports reasoning tokens on every reply, as reasoning models do."""

    def thinking(reasoning: int) -> Any:
        plain = answer_then_vote(PARIS)

        def script(call: Call) -> Reply:
            reply = plain(call)
            reply.reasoning_tokens = reasoning
            return reply

        return script

    fake.script("a", thinking(7))
    fake.script("b", thinking(11))
    write_preset(registered, "team", [agent("a"), agent("b")], skip_voting_when_unanimous=False)


def usage_fields(usage: Any) -> dict[str, Any]:
    return json.loads(usage.model_dump_json()) if hasattr(usage, "model_dump_json") else dict(usage)


async def test_streamed_usage_equals_the_non_streamed_usage_in_every_field(fake, registered):
    thinking_duo(fake, registered)
    response = await litellm.acompletion(model="massgen/team", messages=QUESTION)
    reported = fake.reported_usage()
    fake.calls.clear()
    stream = await litellm.acompletion(
        model="massgen/team", messages=QUESTION, stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk async for chunk in stream]
    assert fake.reported_usage() == reported, "the same run twice"

    streamed = usage_fields(chunks[-1].usage)
    assert streamed == usage_fields(response.usage)
    assert streamed["completion_tokens_details"]["reasoning_tokens"] == reported["reasoning_tokens"] > 0
    assert streamed["completion_tokens_details"]["text_tokens"] == (
        reported["completion_tokens"] - reported["reasoning_tokens"]
    )
    assert response.massgen["usage"]["reasoning_tokens"] == reported["reasoning_tokens"]


async def test_progress_text_is_never_counted_as_reasoning(fake, registered):
    duo(fake, registered)
    stream = await litellm.acompletion(
        model="massgen/team", messages=QUESTION, stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk async for chunk in stream]
    assert "".join(getattr(c.choices[0].delta, "reasoning_content", None) or "" for c in chunks if c.choices)
    details = chunks[-1].usage.completion_tokens_details
    assert details.reasoning_tokens == 0
    assert details.text_tokens == chunks[-1].usage.completion_tokens == fake.reported_usage()["completion_tokens"]


@pytest.mark.parametrize("stream", [False, True])
async def test_the_responses_bridge_reports_the_same_usage(fake, registered, stream):
    thinking_duo(fake, registered)
    result = await litellm.aresponses(model="massgen/team", input="What is the capital of France?", stream=stream)
    if stream:
        events = [event async for event in result]
        usage = next(e.response.usage for e in events if getattr(e, "type", "") == "response.completed")
    else:
        usage = result.usage
    reported = fake.reported_usage()
    assert usage.input_tokens == reported["prompt_tokens"]
    assert usage.output_tokens == reported["completion_tokens"]
    assert usage.output_tokens_details.reasoning_tokens == reported["reasoning_tokens"] > 0


# --- 4. fallbacks -----------------------------------------------------------------------------------------------------


def failing_team_and_backup(fake: FakeLLM, registered: Path, **options: Any) -> litellm.Router:
    """`team`: every agent fails (the fake has no script for it); `backup`: a plain model that answers."""
    fake.script("backup", lambda call: text("Backup says Paris."))
    write_preset(
        registered,
        "down",
        [agent("down", num_retries=0), agent("down", num_retries=0)],
        **options,
        skip_voting_when_unanimous=False,
    )
    backup = {"model": "openai/backup", "api_base": BASE, "api_key": KEY}
    return litellm.Router(
        model_list=[
            {"model_name": "team", "litellm_params": {"model": "massgen/down"}},
            {"model_name": "backup", "litellm_params": backup},
        ],
        fallbacks=[{"team": ["backup"]}],
        num_retries=0,
    )


async def test_a_router_falls_back_on_a_team_without_an_answer(fake, registered):
    router = failing_team_and_backup(fake, registered)
    response = await router.acompletion(model="team", messages=QUESTION)
    assert response.choices[0].message.content == "Backup says Paris."


async def test_a_router_falls_back_on_a_streamed_team_without_an_answer(fake, registered):
    router = failing_team_and_backup(fake, registered)
    stream = await router.acompletion(model="team", messages=QUESTION, stream=True)
    chunks = [chunk async for chunk in stream]
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert content == "Backup says Paris."
    assert fake.calls_of("down"), "the team did run first"
    assert not any(getattr(c.choices[0].delta, "reasoning_content", None) for c in chunks if c.choices)


async def test_live_progress_is_the_old_behaviour_a_stream_that_fails_after_its_first_chunk(fake, registered):
    router = failing_team_and_backup(fake, registered, enable_live_progress=True)
    stream = await router.acompletion(model="team", messages=QUESTION, stream=True)
    progress = []
    with pytest.raises(litellm.APIError, match="every participant failed"):
        async for chunk in stream:
            progress.append(getattr(chunk.choices[0].delta, "reasoning_content", None) if chunk.choices else None)
    assert any(progress), "progress came at once, so the router could no longer fall back"
    assert not fake.calls_of("backup")


async def test_progress_is_held_back_until_the_run_has_a_winner(fake, registered):
    duo(fake, registered)
    stream = await litellm.acompletion(model="massgen/team", messages=QUESTION, stream=True)
    first = await stream.__anext__()
    # The first chunk comes only once the run is decided: every agent's turns are already done.
    assert sum(1 for c in fake.calls if not c.is_presentation) == 4
    rest = [chunk async for chunk in stream]
    reasoning = "".join(getattr(c.choices[0].delta, "reasoning_content", None) or "" for c in [first, *rest])
    assert "agent1 answered" in reasoning and "voted for agent1" in reasoning


# --- 5. cache, in-process ---------------------------------------------------------------------------------------------


@pytest.fixture
def memory_cache(monkeypatch: pytest.MonkeyPatch) -> Iterator[litellm.Cache]:
    cache = litellm.Cache(type="local")
    monkeypatch.setattr(litellm, "cache", cache)
    yield cache


async def reply(result: Any, stream: bool) -> tuple[str, dict[str, Any] | None]:
    """The reply's text and its record, streamed or not."""
    if not stream:
        return result.choices[0].message.content, getattr(result, "massgen", None)
    chunks = [chunk async for chunk in result]
    records = [c.massgen for c in chunks if getattr(c, "massgen", None)]
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices), (records or [None])[0]


@pytest.mark.parametrize("stream", [False, True])
async def test_the_in_process_cache_answers_a_repeated_request_without_a_run(fake, registered, memory_cache, stream):
    duo(fake, registered)
    content, record = await reply(
        await litellm.acompletion(model="massgen/team", messages=QUESTION, stream=stream), stream
    )
    calls = len(fake.calls)
    # LiteLLM writes the cache entry in a task of its own, after the call returns.
    await until(lambda: bool(memory_cache.cache.cache_dict), 30, "the reply in the cache")

    again = await litellm.acompletion(model="massgen/team", messages=QUESTION, stream=stream)
    if not stream:
        assert again._hidden_params.get("cache_hit") is True
    cached_content, cached_record = await reply(again, stream)
    assert cached_content == content == "Final: Paris is the capital of France."
    assert len(fake.calls) == calls, "no participant was called"
    assert record is not None
    if not stream:  # a streamed reply is cached as LiteLLM rebuilds it from the chunks, without our record
        assert cached_record is not None and cached_record["run_id"] == record["run_id"], "the record comes with it"


async def test_a_preset_can_refuse_the_cache(fake, registered, memory_cache):
    duo(fake, registered, enable_cache=False)
    first = await litellm.acompletion(model="massgen/team", messages=QUESTION)
    calls = len(fake.calls)
    # Even a request that asks for the cache runs the team.
    again = await litellm.acompletion(model="massgen/team", messages=QUESTION, cache={"use-cache": True})
    assert again.massgen["run_id"] != first.massgen["run_id"]
    assert len(fake.calls) == 2 * calls


# --- Through the real proxy ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def spend_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("spend") / "spend.jsonl"


@pytest.fixture(scope="module")
def features_proxy(upstream: LoopbackServer, spend_file: Path) -> Iterator[LiteLLMProxy]:
    pytest.importorskip("fastapi", reason="the LiteLLM proxy's dependencies are missing: pip install -e '.[proxy]'")
    config = HERE / "proxy_features_config.yaml"
    with LiteLLMProxy(upstream.base_url, config=config, env={"SPEND_PROBE_FILE": str(spend_file)}) as running:
        yield running


@pytest.fixture
def backend(upstream: LoopbackServer, features_proxy: LiteLLMProxy) -> FakeLLM:
    upstream.fake.scripts.clear()
    upstream.fake.calls.clear()
    upstream.fake.scripts["proxy-backup"] = lambda call: text("Backup says Paris.")
    return upstream.fake


def spend_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.parametrize("stream", [False, True])
async def test_through_the_proxy_a_run_is_billed_once_to_the_key_and_the_end_user(
    backend, features_proxy, spend_file, stream
):
    """Streamed too: a client must not escape its key's, team's and end user's budgets by asking for a stream."""
    backend.script("gpt-4o-mini", answer_then_vote(PARIS))  # the `priced` preset: a model LiteLLM has prices for
    client = features_proxy.async_client()
    trace = f"trace-9-{stream}"
    metadata = {
        "trace_id": trace,
        "session_id": "session-9",
        "massgen_run_id": "forged",  # a client cannot forge ours...
        "user_api_key_end_user_id": "someone-else",  # ...nor the proxy's billing fields
        "user_api_key_hash": "forged",
    }
    request = {"model": "massgen/priced", "messages": QUESTION, "user": "u-42", "extra_body": {"metadata": metadata}}
    if stream:
        chunks = [c async for c in await client.chat.completions.create(**request, stream=True)]
        record = next(c.model_extra["massgen"] for c in chunks if (c.model_extra or {}).get("massgen"))
    else:
        record = ((await client.chat.completions.create(**request)).model_extra or {})["massgen"]
    assert record["cost"] > 0 and record["ignored_params"] == []

    def lines() -> list[dict[str, Any]]:
        return [line for line in spend_lines(spend_file) if line["caller_trace_id"] == trace]

    await until(lambda: len(lines()) >= len(record["calls"]) + 1, 60, "the run's calls in the spend probe")
    billed = [line for line in lines() if line["billed"]]
    assert len(billed) == 1, billed
    (outer,) = billed
    assert outer["massgen_agent_id"] is None and outer["end_user"] == "u-42" and outer["key"]
    assert outer["cost"] == pytest.approx(record["cost"])
    participants = [line for line in lines() if line["massgen_agent_id"]]
    assert len(participants) == len(record["calls"])
    for line in participants:
        assert line["massgen_run_id"] == record["run_id"], "ours win"
        assert (line["key"], line["team"], line["end_user"], line["user_id"]) == (None, None, None, None)
        assert line["trace_id"] == outer["trace_id"], "one trace"
    assert all(call.body.get("user") == "u-42" for call in backend.calls), "the provider sees the end user"


@pytest.mark.parametrize("stream", [False, True])
async def test_through_the_proxy_a_team_without_an_answer_is_answered_by_the_fallback(backend, features_proxy, stream):
    client = features_proxy.async_client()
    if stream:
        chunks = [
            c async for c in await client.chat.completions.create(model="team-failing", messages=QUESTION, stream=True)
        ]
        content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    else:
        raw = await client.chat.completions.with_raw_response.create(model="team-failing", messages=QUESTION)
        assert raw.headers.get("x-litellm-attempted-fallbacks") == "1"
        content = raw.parse().choices[0].message.content
    assert content == "Backup says Paris."
    assert backend.calls_of("proxy-down"), "the team ran first"


async def test_through_the_proxy_streamed_usage_equals_the_non_streamed_usage(backend, features_proxy):
    for model, reasoning in (("proxy-a", 5), ("proxy-b", 9)):
        plain = answer_then_vote(PARIS)

        def script(call: Call, plain: Any = plain, reasoning: int = reasoning) -> Reply:
            reply = plain(call)
            reply.reasoning_tokens = reasoning
            return reply

        backend.script(model, script)
    client = features_proxy.async_client()
    response = await client.chat.completions.create(model="massgen/duo", messages=QUESTION)
    reported = backend.reported_usage()
    backend.calls.clear()
    stream = await client.chat.completions.create(
        model="massgen/duo", messages=QUESTION, stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk async for chunk in stream]
    assert backend.reported_usage() == reported, "the same run twice"
    assert response.usage is not None and chunks[-1].usage is not None
    assert chunks[-1].usage.model_dump() == response.usage.model_dump()
    details = response.usage.completion_tokens_details
    assert details is not None and details.reasoning_tokens == reported["reasoning_tokens"] > 0


async def test_through_the_proxy_a_tpm_limit_counts_the_runs_total_tokens(backend, features_proxy):
    backend.script("proxy-a", answer_then_vote(PARIS))
    backend.script("proxy-b", answer_then_vote(PARIS))
    client = features_proxy.async_client()
    # `limited` is massgen/duo under tpm: 300. One run's total is far more than that: the next request within the
    # minute is refused before any agent is called.
    first = await client.chat.completions.create(model="limited", messages=QUESTION)
    assert first.usage is not None and first.usage.total_tokens > 300
    calls = len(backend.calls)
    with pytest.raises(openai.RateLimitError):
        await client.chat.completions.create(model="limited", messages=QUESTION)
    assert len(backend.calls) == calls


# --- 5. cache, on several machines: two proxies sharing one Redis -----------------------------------------------------


@pytest.fixture(scope="module")
def redis_port() -> Iterator[int]:
    """A real Redis server on 127.0.0.1 (Debian's `redis-server`), in memory only."""
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("redis-server is not installed (Debian: apt-get install redis-server); .ci/run installs it")
    redis = pytest.importorskip("redis", reason="the redis client is missing: pip install -e '.[proxy]'")
    port = free_port()
    command = [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        client = redis.Redis(host="127.0.0.1", port=port)
        deadline = time.monotonic() + 60
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not start on port {port}") from None
                time.sleep(0.1)
        yield port
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture(scope="module")
def two_proxies(upstream: LoopbackServer, redis_port: int, spend_file: Path) -> Iterator[list[LiteLLMProxy]]:
    pytest.importorskip("fastapi", reason="the LiteLLM proxy's dependencies are missing: pip install -e '.[proxy]'")
    env = {"REDIS_HOST": "127.0.0.1", "REDIS_PORT": str(redis_port), "SPEND_PROBE_FILE": str(spend_file)}
    config = HERE / "proxy_cache_config.yaml"
    with (
        LiteLLMProxy(upstream.base_url, config=config, env=env) as one,
        LiteLLMProxy(upstream.base_url, config=config, env=env) as two,
    ):
        yield [one, two]


def cached_replies(redis_port: int) -> int:
    """How many replies LiteLLM has in the shared Redis (its keys are sha256 digests)."""
    import redis

    client = redis.Redis(host="127.0.0.1", port=redis_port)
    return sum(1 for key in client.scan_iter() if len(key) == 64)


@pytest.fixture
def shared_backend(upstream: LoopbackServer, two_proxies: list[LiteLLMProxy]) -> FakeLLM:
    upstream.fake.scripts.clear()
    upstream.fake.calls.clear()
    upstream.fake.script("proxy-a", answer_then_vote(PARIS))
    upstream.fake.script("proxy-b", answer_then_vote(PARIS, delay=0.01))
    return upstream.fake


@pytest.mark.parametrize("stream", [False, True])
async def test_a_second_proxy_answers_the_first_ones_question_from_the_shared_cache(
    shared_backend, two_proxies, redis_port, stream
):
    one, two = (proxy.async_client() for proxy in two_proxies)
    question = [{"role": "user", "content": f"What is the capital of France? (stream={stream})"}]
    before = cached_replies(redis_port)

    async def ask(client: openai.AsyncOpenAI) -> tuple[str, dict[str, Any] | None]:
        if not stream:
            response = await client.chat.completions.create(model="massgen/duo", messages=question)
            return response.choices[0].message.content or "", (response.model_extra or {}).get("massgen")
        chunks = [
            c async for c in await client.chat.completions.create(model="massgen/duo", messages=question, stream=True)
        ]
        records = [(c.model_extra or {})["massgen"] for c in chunks if "massgen" in (c.model_extra or {})]
        return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices), (records or [None])[0]

    content, record = await ask(one)
    calls = len(shared_backend.calls)
    assert calls >= 5 and record is not None and not record["cache_hit"]
    # The first proxy stores the reply after it has sent it; only the reply, never the participants' calls.
    await until(lambda: cached_replies(redis_port) > before, 60, "the reply in Redis")
    assert cached_replies(redis_port) == before + 1

    cached_content, cached_record = await ask(two)
    assert cached_content == content == "Final: Paris is the capital of France."
    assert len(shared_backend.calls) == calls, "the second proxy called no participant"
    if not stream:  # a streamed reply is stored as LiteLLM rebuilds it from the chunks: without the record
        assert cached_record is not None and cached_record["cache_hit"] is True
        assert cached_record["run_id"] == record["run_id"]


async def test_a_preset_that_refuses_the_cache_runs_on_every_proxy(shared_backend, two_proxies, redis_port):
    one, two = (proxy.async_client() for proxy in two_proxies)
    question = [{"role": "user", "content": "What is the capital of France? (always)"}]
    before = cached_replies(redis_port)
    first = await one.chat.completions.create(model="massgen/always", messages=question)
    calls = len(shared_backend.calls)
    # The client asks for the cache; the preset (tests/proxy_presets/always.yaml) says no.
    second = await two.chat.completions.create(
        model="massgen/always", messages=question, extra_body={"cache": {"use-cache": True}}
    )
    assert len(shared_backend.calls) == 2 * calls
    assert (first.model_extra or {})["massgen"]["run_id"] != (second.model_extra or {})["massgen"]["run_id"]
    assert cached_replies(redis_port) == before


async def test_a_request_cannot_choose_the_presets_cache_setting(fake, registered):
    duo(fake, registered, enable_cache=False)
    with pytest.raises(litellm.BadRequestError, match="enable_cache is the preset's setting"):
        await litellm.acompletion(model="massgen/team", messages=QUESTION, enable_cache=True)
    assert fake.calls == []


async def test_the_callers_timeout_bounds_the_run(fake, registered):
    fake.script("a", answer_then_vote(PARIS))
    fake.script("slow", lambda call: answer("Lyon, probably.", delay=60))
    write_preset(registered, "team", [agent("a"), agent("slow")], call_timeout=120, skip_voting_when_unanimous=False)
    response = await litellm.acompletion(model="massgen/team", messages=QUESTION, timeout=3)
    record = response.massgen
    assert record["options"]["run_timeout"] == 3, "the run must answer before the caller gives up"
    assert record["winner"] == "agent1" and record["duration_seconds"] < 60, "it did not wait for the slow agent"
    assert PARIS in response.choices[0].message.content


async def test_the_callers_num_retries_never_runs_a_failed_team_again(fake, registered):
    write_preset(
        registered,
        "down",
        [agent("down", num_retries=0), agent("down", num_retries=0)],
        skip_voting_when_unanimous=False,
    )
    with pytest.raises(litellm.APIError, match="every participant failed"):
        await litellm.acompletion(model="massgen/down", messages=QUESTION, num_retries=3)
    assert len(fake.calls) == 2, "one run: each agent's one call, not four runs"
