"""Run records on disk (MASSGEN_LOG_DIR) and the `massgen_litellm` logger."""

from __future__ import annotations

import json
import logging

import litellm
import pytest

from massgen_litellm.record import RunRecord
from massgen_litellm.run import Run
from massgen_litellm.testing.openai_chat import answer_then_vote, fail
from tests.conftest import agent, write_preset

QUESTION = [{"role": "user", "content": "What is 2 + 2?"}]


async def test_each_run_writes_its_record_atomically(fake, registered, tmp_path, monkeypatch):
    logs = tmp_path / "runs"
    monkeypatch.setenv("MASSGEN_LOG_DIR", str(logs))
    fake.script("a", answer_then_vote("4"))
    write_preset(registered, "duo", [agent("a"), agent("a")])

    first = await litellm.acompletion(model="massgen/duo", messages=QUESTION)
    second = await litellm.acompletion(model="massgen/duo", messages=QUESTION, stream=True)
    streamed = [getattr(c, "massgen", None) async for c in second]

    files = sorted(logs.iterdir())
    assert [f.suffix for f in files] == [".json", ".json"]  # no temporary file left behind
    records = {RunRecord.load(f).run_id: json.loads(f.read_text()) for f in files}
    assert records[first.massgen["run_id"]] == first.massgen
    record = next(r for r in streamed if r)
    assert records[record["run_id"]] == record
    # Named by time, then run id: a directory listing is the runs in order.
    assert [f.stem.split("-")[1] for f in files] == [first.massgen["run_id"], record["run_id"]]


async def test_a_runs_cost_is_its_calls_costs_added_in_the_order_they_started(fake, registered, monkeypatch):
    """The run's cost is what LiteLLM bills (`response_cost`), and float addition is not associative: added agent by
    agent, these prices came to 0.6022369999999999 instead of 0.602237."""
    runs: list[Run] = []
    record = Run.record
    monkeypatch.setattr(Run, "record", lambda self: runs.append(self) or record(self))
    fake.script("a", answer_then_vote("4"))
    write_preset(registered, "trio", [agent("a")] * 3, skip_voting_when_unanimous=False)
    await litellm.acompletion(model="massgen/trio", messages=QUESTION)
    calls = sorted((c for p in runs[0].participants.values() for c in p.calls), key=lambda c: c["started_at"])
    prices = [0.2, 0.000977, 0.00042, 0.00042, 0.00042, 0.1, 0.3]
    assert len(calls) == len(prices)
    for call, price in zip(calls, prices, strict=True):
        call["cost"] = price
    assert runs[0].record()["cost"] == sum(prices) == 0.602237


async def test_a_failed_run_leaves_its_record_too(fake, registered, tmp_path, monkeypatch):
    monkeypatch.setenv("MASSGEN_LOG_DIR", str(tmp_path))
    fake.script("down", lambda call: fail(500))
    write_preset(registered, "down", [agent("down", num_retries=0)])
    with pytest.raises(litellm.APIError):
        await litellm.acompletion(model="massgen/down", messages=QUESTION)
    (path,) = tmp_path.glob("*.json")
    assert RunRecord.load(path).end_reason == "all_failed"


async def test_an_unwritable_log_dir_costs_a_warning_not_the_answer(fake, registered, tmp_path, monkeypatch, caplog):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("MASSGEN_LOG_DIR", str(blocker))
    fake.script("a", answer_then_vote("4"))
    write_preset(registered, "duo", [agent("a"), agent("a")])
    response = await litellm.acompletion(model="massgen/duo", messages=QUESTION)
    assert response.choices[0].message.content == "Final: 4"
    assert any("cannot write its record" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)


async def test_a_reply_utf_8_cannot_encode_is_logged_and_read_back(fake, registered, tmp_path, monkeypatch):
    """A lone surrogate is valid JSON ("\\ud800") and arrives as such in a reply: the run's file holds it escaped,
    where writing it as UTF-8 failed the whole request after its run."""
    monkeypatch.setenv("MASSGEN_LOG_DIR", str(tmp_path))
    fake.script("a", answer_then_vote("four \ud800 x"))
    write_preset(registered, "duo", [agent("a"), agent("a")], final="winner_answer")
    response = await litellm.acompletion(model="massgen/duo", messages=QUESTION)
    assert response.choices[0].message.content == "four \ud800 x"
    (path,) = tmp_path.glob("*.json")
    assert RunRecord.load(path).model_dump(mode="json") == response.massgen


async def test_one_info_line_per_run_and_debug_per_turn(fake, registered, caplog):
    caplog.set_level(logging.DEBUG, logger="massgen_litellm")
    fake.script("a", answer_then_vote("4"))
    write_preset(registered, "duo", [agent("a"), agent("a")], skip_voting_when_unanimous=False)
    response = await litellm.acompletion(model="massgen/duo", messages=QUESTION)

    ours = [r for r in caplog.records if r.name == "massgen_litellm"]
    infos = [r.getMessage() for r in ours if r.levelno == logging.INFO]
    assert len(infos) == 1
    assert response.massgen["run_id"] in infos[0] and "consensus, winner agent1" in infos[0]
    debug = [r.getMessage() for r in ours if r.levelno == logging.DEBUG]
    turns = sum(a["turns"] for a in response.massgen["agents"])
    assert sum(" turn agent" in line for line in debug) == turns
    assert any(" vote agent2 agent1" in line for line in debug)


async def test_a_client_that_stops_reading_mid_reply_leaves_a_record_with_every_call(
    fake, registered, tmp_path, monkeypatch
):
    """The client goes away while the winner is still presenting: the record kept on disk has the presentation's
    call too (ended, with the reason), as the provider saw it, its tokens counted where its usage never came."""
    logs = tmp_path / "runs"
    monkeypatch.setenv("MASSGEN_LOG_DIR", str(logs))
    fake.script("a", answer_then_vote("word " * 200))
    write_preset(registered, "duo", [agent("a"), agent("a")], skip_voting_when_unanimous=False)
    stream = await litellm.acompletion(model="massgen/duo", messages=QUESTION, stream=True)
    pieces = 0
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            pieces += 1
            if pieces == 3:
                break
    await stream.aclose()
    files = list(logs.iterdir())
    assert len(files) == 1
    record = json.loads(files[0].read_text())
    assert [c["kind"] for c in record["calls"]].count("present") == 1
    assert len(record["calls"]) == len(fake.calls)
    presentation = next(c for c in record["calls"] if c["kind"] == "present")
    sent = next(c for c in fake.calls if c.is_presentation)
    assert presentation["prompt_tokens"] == litellm.token_counter(model="openai/a", messages=sent.body["messages"])
    assert presentation["completion_tokens"] > 0
    assert record["usage"]["prompt_tokens"] == sum(c["prompt_tokens"] for c in record["calls"])
    assert any("presentation ended before its provider reported usage" in note for note in record["notes"])
