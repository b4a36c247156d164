"""Participants misbehaving over real sockets: every fault ends in a finished run with the healthy agents, or a
clear error when none is left, within the configured timeouts; the record names each failure."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import litellm
import pytest

from massgen_litellm.testing.loopback import LoopbackServer, until
from massgen_litellm.testing.openai_chat import (
    KEY,
    Call,
    FakeLLM,
    Reply,
    answer,
    answer_then_vote,
    fail,
    sequence,
    text,
)
from tests.conftest import write_preset

QUESTION = [{"role": "user", "content": "What is 2 + 2?"}]
REFUSED = "http://127.0.0.1:9/v1"  # the discard port: nothing listens there
# How long a hung agent hangs: far beyond call_timeout=1, so a run that ends before it did not wait for it on any
# machine, however slow (a bound of a few seconds would measure this machine's speed instead).
HANG = 60.0


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    with LoopbackServer(FakeLLM()) as running:
        yield running


def entry(server: LoopbackServer, model: str, **fields: object) -> dict[str, object]:
    fields.setdefault("num_retries", 0)
    return {"model": f"openai/{model}", "api_base": server.base_url, "api_key": KEY, "protocol": "tools", **fields}


FAULTS = {
    "http_500": (fail(500, "upstream exploded"), "InternalServerError"),
    "http_429": (Reply(status=429, error="slow down", headers={"retry-after": "0"}), "RateLimitError"),
    "invalid_json": (Reply(body=b'{"choices": [{"message": '), ""),
    "no_choices": (
        Reply(body=b'{"id": "x", "object": "chat.completion", "created": 1, "model": "m", "choices": []}'),
        "",
    ),
    "never_answers": (answer("too late", delay=HANG), "Timeout"),
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
async def test_a_faulty_agent_is_dropped_and_named_and_the_rest_finish(
    server: LoopbackServer, registered: Path, fault: str
) -> None:
    reply, error = FAULTS[fault]
    server.fake.script("good-a", answer_then_vote("4"))
    server.fake.script("good-b", answer_then_vote("4"))
    server.fake.script("bad", lambda call: reply)
    agents = [entry(server, "good-a"), entry(server, "bad"), entry(server, "good-b")]
    # The healthy two answer alike: with the vote round kept, the run also shows the faulty one never votes.
    write_preset(registered, "team", agents, call_timeout=1.0, run_timeout=10, skip_voting_when_unanimous=False)

    response = await litellm.acompletion(model="massgen/team", messages=QUESTION)

    assert response.massgen["duration_seconds"] < HANG  # the hung agent did not hold the run
    assert response.choices[0].message.content == "Final: 4"
    record = response.massgen
    assert record["end_reason"] == "consensus" and record["winner"] == "agent1"
    bad = record["agents"][1]
    assert bad["status"] == "failed"
    assert error in bad["error"]
    assert [c["error"] for c in record["calls"] if c["agent_id"] == "agent2"] == [bad["error"]]


async def test_a_refused_connection_is_named(server: LoopbackServer, registered: Path) -> None:
    server.fake.script("good", answer_then_vote("4"))
    refused = {"model": "openai/x", "api_base": REFUSED, "api_key": KEY, "num_retries": 0}
    write_preset(registered, "team", [entry(server, "good"), refused], final="winner_answer")
    response = await litellm.acompletion(model="massgen/team", messages=QUESTION)
    assert response.choices[0].message.content == "4"
    assert "Connection" in response.massgen["agents"][1]["error"]


async def test_every_fault_at_once_leaves_a_clear_error_naming_each(server: LoopbackServer, registered: Path) -> None:
    agents = []
    for name, (reply, _) in sorted(FAULTS.items()):
        server.fake.script(name, lambda call, reply=reply: reply)
        agents.append(entry(server, name))
    agents.append({"model": "openai/x", "api_base": REFUSED, "api_key": KEY, "num_retries": 0})
    write_preset(registered, "doomed", agents, call_timeout=1.0)

    began = time.monotonic()
    with pytest.raises(litellm.APIError) as caught:
        await litellm.acompletion(model="massgen/doomed", messages=QUESTION)

    assert time.monotonic() - began < HANG  # the hung agent did not hold the run
    assert caught.value.status_code == 502
    message = str(caught.value)
    for index in range(1, len(agents) + 1):
        assert f"agent{index}:" in message
    for _, error in FAULTS.values():
        assert error in message


async def test_every_fault_beside_two_healthy_agents(server: LoopbackServer, registered: Path) -> None:
    server.fake.script("good", answer_then_vote("4"))
    agents = [entry(server, "good")]
    for name, (reply, _) in sorted(FAULTS.items()):
        server.fake.script(name, lambda call, reply=reply: reply)
        agents.append(entry(server, name))
    agents += [{"model": "openai/x", "api_base": REFUSED, "api_key": KEY, "num_retries": 0}, entry(server, "good")]
    write_preset(registered, "mixed", agents, call_timeout=1.0, skip_voting_when_unanimous=False)

    response = await litellm.acompletion(model="massgen/mixed", messages=QUESTION)

    record = response.massgen
    assert record["duration_seconds"] < HANG  # the hung agent did not hold the run
    assert response.choices[0].message.content == "Final: 4" and record["end_reason"] == "consensus"
    assert [a["status"] for a in record["agents"]] == ["voted", *["failed"] * (len(FAULTS) + 1), "voted"]
    assert all(a["error"] for a in record["agents"][1:-1])


async def test_litellm_num_retries_is_honoured_not_reimplemented(server: LoopbackServer, registered: Path) -> None:
    server.fake.script("flaky", sequence(fail(500), answer_then_vote("4")))
    server.fake.script("steady", answer_then_vote("4"))
    agents = [entry(server, "flaky", num_retries=1), entry(server, "steady")]
    write_preset(registered, "team", agents, skip_voting_when_unanimous=False)
    response = await litellm.acompletion(model="massgen/team", messages=QUESTION)
    assert response.massgen["agents"][0]["status"] == "voted"
    # One turn, two HTTP requests: LiteLLM's retry, invisible to the coordination.
    assert len(server.fake.calls_of("flaky")) == response.massgen["agents"][0]["calls"] + 1


async def stream_with_presentation(server: LoopbackServer, registered: Path, presentation: Reply) -> Any:
    """A two-agent run, streamed, whose winner presents with `presentation`."""

    def winner(call: Call) -> Reply:
        return presentation if call.is_presentation else answer_then_vote("4")(call)

    server.fake.script("a", winner)
    server.fake.script("b", answer_then_vote("4"))
    write_preset(registered, "team", [entry(server, "a"), entry(server, "b")])
    return await litellm.acompletion(model="massgen/team", messages=QUESTION, stream=True)


async def test_a_presentation_stream_cut_before_any_content_falls_back_to_the_voted_answer(
    server: LoopbackServer, registered: Path
) -> None:
    stream = await stream_with_presentation(server, registered, Reply(content="Final: 4", cut_after=0))
    content = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert content == "4"


async def test_a_presentation_stream_cut_half_way_ends_the_stream_with_an_error(
    server: LoopbackServer, registered: Path
) -> None:
    long_reply = Reply(content="Final: four, because two and two make four.", cut_after=300)
    stream = await stream_with_presentation(server, registered, long_reply)
    received = []
    with pytest.raises(Exception) as caught:  # which of its exceptions LiteLLM wraps ours in is not ours to say
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                received.append(chunk.choices[0].delta.content)
    # Part of the reply already reached the caller; a clean-looking end would pass half an answer off as whole.
    assert received and "presentation by agent1 broke off" in str(caught.value)


AUDIO = {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}


@pytest.mark.parametrize("question", ["text", "with audio"])
async def test_a_presentation_stream_cut_at_max_answer_chars_counts_its_tokens(
    server: LoopbackServer, registered: Path, question: str
) -> None:
    """A provider reports a stream's usage in its last chunk, which a presentation cut short never reads. The
    provider still had the prompt and wrote what arrived, and bills for them: they are counted, not recorded (and
    billed to the caller) as nothing. A proxy client may lower max_answer_chars, so this is also a billing hole.
    A part LiteLLM cannot count (audio) is left out of the count, not the whole prompt with it."""
    messages = QUESTION
    if question == "with audio":
        messages = [{"role": "user", "content": [{"type": "text", "text": QUESTION[0]["content"]}, AUDIO]}]

    def winner(call: Call) -> Reply:
        return Reply(content="tick", endless=0.001) if call.is_presentation else answer_then_vote("4")(call)

    server.fake.script("a", winner)
    server.fake.script("b", answer_then_vote("4"))
    write_preset(registered, "team", [entry(server, "a"), entry(server, "b")], max_answer_chars=100)
    stream = await litellm.acompletion(
        model="massgen/team", messages=messages, stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk async for chunk in stream]

    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(content) == 100 and content.startswith("tick0 tick1 ")
    record = next(c.massgen for c in chunks if getattr(c, "massgen", None))
    presentation = next(c for c in record["calls"] if c["kind"] == "present")
    sent = next(c for c in server.fake.calls if c.is_presentation).body["messages"]
    parts = [part for m in sent if isinstance(m["content"], list) for part in m["content"]]
    assert (AUDIO in parts) == (question == "with audio")
    # What LiteLLM can count: the audio left out of the message that carries it.
    countable = [
        {**m, "content": [p for p in m["content"] if p != AUDIO]} if isinstance(m["content"], list) else m for m in sent
    ]
    assert presentation["prompt_tokens"] == litellm.token_counter(model="openai/a", messages=countable) > 0
    # What arrived: the 100 characters passed on, and the rest of the chunk that crossed the limit.
    shown = litellm.token_counter(model="openai/a", text=content)
    assert shown <= presentation["completion_tokens"] <= shown + 3
    (note,) = [note for note in record["notes"] if "presentation ended before its provider reported usage" in note]
    assert ("parts other than text left out" in note) == (question == "with audio")
    # The caller's usage is the record's, the counted presentation included.
    assert chunks[-1].usage.prompt_tokens == record["usage"]["prompt_tokens"]
    assert record["usage"]["prompt_tokens"] == sum(c["prompt_tokens"] for c in record["calls"])
    await until(lambda: server.open_connections == 0, 5, "the flooding stream's connection is closed")


async def test_cancelling_the_caller_closes_every_connection_and_leaves_no_task(
    server: LoopbackServer, registered: Path
) -> None:
    server.fake.script("slow", lambda call: text("4", delay=60))
    write_preset(registered, "slow", [entry(server, "slow"), entry(server, "slow"), entry(server, "slow")])
    before = asyncio.all_tasks()
    task = asyncio.create_task(litellm.acompletion(model="massgen/slow", messages=QUESTION))
    # Wait for the requests, not just the connections: a connection the client's pool opened but had not yet used
    # when the caller was cancelled stays in the pool, idle, for the next request; that is pooling, not a leak.
    await until(lambda: len(server.fake.calls) == 3, 10, "three calls in flight")

    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    closed = "every participant call ended and its connection closed"
    await until(lambda: not server.open_connections and all(c.ended for c in server.fake.calls), 1.0, closed)

    assert all(c.cancelled for c in server.fake.calls)
    await asyncio.sleep(0)  # let finished tasks be collected
    left = {t for t in asyncio.all_tasks() - before if not t.done()} - {asyncio.current_task()}
    # LiteLLM's own logging worker may start on first use; anything else would be a task of ours outliving the run.
    assert [t for t in left if "LoggingWorker" not in repr(t)] == []


async def test_an_agent_keeps_its_connection_when_the_run_has_less_time_left_than_a_call(registered: Path) -> None:
    # LiteLLM keeps an HTTP client (and its connections) per distinct `timeout`: a timeout that shrank with the run's
    # time left would open a new connection for every call. The run's deadline is kept around the call instead.
    with LoopbackServer(FakeLLM(default=answer_then_vote("4")), keep_alive=True) as server:
        agents = [entry(server, "keep-a"), entry(server, "keep-b")]
        write_preset(registered, "team", agents, call_timeout=120, run_timeout=30, skip_voting_when_unanimous=False)

        response = await litellm.acompletion(model="massgen/team", messages=QUESTION)

    assert response.massgen["end_reason"] == "consensus"
    assert len(server.fake.calls) == 5  # two answers, two votes, the presentation
    assert server.accepted <= 2, f"{server.accepted} connections for 5 calls: a new client per call"
