"""LiteLLM's own request fields and proxy features on `massgen/*`: they mean what they mean on any model.

In-process, participants are scripted models behind respx; through the proxy, the real LiteLLM proxy process
(tests/proxy_features_config.yaml) in front of the loopback fake, and for the cache two proxy processes sharing a
real Redis. docs/litellm-features.md names the test behind each feature.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import litellm
import pytest
from litellm.integrations.custom_logger import CustomLogger

from massgen_litellm.testing.loopback import until
from massgen_litellm.testing.openai_chat import (
    BASE,
    KEY,
    Call,
    FakeLLM,
    Reply,
    answer_then_vote,
    text,
)
from tests.conftest import agent, write_preset

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
PARIS = "Paris is the capital of France."


def duo(fake: FakeLLM, registered: Path, content: str = PARIS, **options: Any) -> None:
    fake.script("a", answer_then_vote(content))
    fake.script("b", answer_then_vote(content, delay=0.01))
    write_preset(registered, "team", [agent("a"), agent("b")], **options)


class Seen(CustomLogger):
    """Every successful call as a logger sees it, read the way LiteLLM's Langfuse integration reads it: the trace
    is `existing_trace_id`, else the metadata's `trace_id`, else the standard logging payload's trace id."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[dict[str, Any]] = []

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
    write_preset(registered, "team", [agent("gpt-4o-mini"), agent("gpt-4o")])
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
    write_preset(registered, "team", [agent("a"), agent("b")])


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
    write_preset(registered, "down", [agent("down", num_retries=0), agent("down", num_retries=0)], **options)
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
