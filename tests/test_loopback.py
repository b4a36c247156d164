"""Participants behind a real loopback HTTP server: real sockets, real timeouts, sync and async callers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import litellm
import pytest

from massgen_litellm.testing.loopback import LoopbackServer
from massgen_litellm.testing.openai_chat import KEY, FakeLLM, answer, answer_then_vote
from tests.conftest import write_preset

QUESTION = [{"role": "user", "content": "What is 2 + 2?"}]


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    with LoopbackServer(FakeLLM()) as running:
        yield running


def entry(server: LoopbackServer, model: str, **fields: object) -> dict[str, object]:
    return {"model": f"openai/{model}", "api_base": server.base_url, "api_key": KEY, "protocol": "tools", **fields}


def test_a_run_over_real_sockets(server: LoopbackServer, registered: Path) -> None:
    server.fake.script("a", answer_then_vote("4"))
    server.fake.script("b", answer_then_vote("4", delay=0.02))
    write_preset(registered, "net", [entry(server, "a"), entry(server, "b")])
    response = litellm.completion(model="massgen/net", messages=QUESTION)
    assert response.choices[0].message.content == "Final: 4"
    assert response.usage.total_tokens == server.fake.reported_usage()["total_tokens"]


@pytest.mark.parametrize("counted", [True, False], ids=["one timer per participant", "Python 3.10: wait_for"])
async def test_a_server_that_never_answers_is_dropped_at_call_timeout(
    server: LoopbackServer, registered: Path, monkeypatch: pytest.MonkeyPatch, counted: bool
) -> None:
    # Python 3.10 cannot tell a deadline's cancellation from a caller's: each call gets asyncio.wait_for there.
    monkeypatch.setattr("massgen_litellm.participant.TASKS_COUNT_CANCELLATIONS", counted)
    server.fake.script("a", answer_then_vote("4"))
    server.fake.script("mute", lambda call: answer("never", delay=60))
    write_preset(registered, "net", [entry(server, "a"), entry(server, "mute", num_retries=0)], call_timeout=0.5)
    response = await litellm.acompletion(model="massgen/net", messages=QUESTION)
    assert response.massgen["duration_seconds"] < 60  # it did not wait for the mute server's 60 s
    mute = response.massgen["agents"][1]
    assert mute["status"] == "failed" and "Timeout" in mute["error"]
    assert response.massgen["end_reason"] == "consensus"
    assert response.massgen["winner"] == "agent1"


async def test_connection_refused_drops_only_that_agent(server: LoopbackServer, registered: Path) -> None:
    server.fake.script("a", answer_then_vote("4"))
    closed = {"model": "openai/a", "api_base": "http://127.0.0.1:9/v1", "api_key": KEY, "num_retries": 0}
    write_preset(registered, "net", [entry(server, "a"), closed], final="winner_answer")
    response = await litellm.acompletion(model="massgen/net", messages=QUESTION)
    assert response.choices[0].message.content == "4"
    assert response.massgen["agents"][1]["status"] == "failed"
