"""LiteLLM's callbacks see a run as users expect: the participant calls, grouped under the outer request by their
metadata, and the outer call carrying the run's summed cost."""

from __future__ import annotations

import asyncio
from typing import Any

import litellm
import pytest
from litellm.integrations.custom_logger import CustomLogger

from massgen_litellm.testing.openai_chat import answer_then_vote
from tests.conftest import agent, write_preset

QUESTION = [{"role": "user", "content": "What is 2 + 2?"}]


class Collector(CustomLogger):
    def __init__(self) -> None:
        super().__init__()
        self.events: list[dict[str, Any]] = []

    async def async_log_success_event(
        self, kwargs: dict[str, Any], response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        self.events.append(kwargs)


async def test_a_custom_logger_sees_the_nested_calls_and_the_outer_cost(fake, registered, monkeypatch):
    collector = Collector()
    monkeypatch.setattr(litellm, "callbacks", [collector])
    fake.script("gpt-4o-mini", answer_then_vote("4"))
    write_preset(registered, "priced", [agent("gpt-4o-mini"), agent("gpt-4o-mini")])

    response = await litellm.acompletion(model="massgen/priced", messages=QUESTION, metadata={"user_tag": "t1"})
    calls = len(response.massgen["calls"])
    for _ in range(200):  # LiteLLM delivers success events from its logging worker, after the call returns
        if len(collector.events) >= calls + 1:
            break
        await asyncio.sleep(0.01)

    def metadata(event: dict[str, Any]) -> dict[str, Any]:
        return (event.get("litellm_params") or {}).get("metadata") or {}

    outer = [e for e in collector.events if "massgen_run_id" not in metadata(e)]
    nested = [e for e in collector.events if "massgen_run_id" in metadata(e)]
    assert len(outer) == 1 and len(nested) == calls
    (parent,) = outer
    for event in nested:
        tags = metadata(event)
        assert tags["massgen_run_id"] == response.massgen["run_id"]
        assert tags["massgen_preset"] == "priced"
        assert tags["massgen_parent_call_id"] == parent["litellm_call_id"]
        assert tags["massgen_agent_id"] in ("agent1", "agent2")
        assert tags["massgen_call"] == "present" or tags["massgen_turn"] >= 1
    nested_cost = sum(e["response_cost"] for e in nested)
    assert nested_cost > 0
    assert parent["response_cost"] == pytest.approx(nested_cost)
    assert parent["response_cost"] == pytest.approx(response.massgen["cost"])
