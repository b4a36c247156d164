"""Who may set what, and what a run may spend, in process (the proxy end of it is tests/test_proxy_security.py).

A call that LiteLLM's proxy forwarded carries `proxy_server_request`; an in-process caller can pass the same field
to see exactly what a proxy client sees.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import litellm
import pytest

from massgen_litellm.config import ClientPolicy
from massgen_litellm.record import RunRecord
from massgen_litellm.testing.openai_chat import Reply, answer, answer_then_vote, fail, vote
from tests.conftest import agent, write_preset

QUESTION = [{"role": "user", "content": "What is 2 + 2?"}]
FROM_PROXY = {"proxy_server_request": {"url": "http://proxy/v1/chat/completions", "method": "POST", "body": {}}}


async def test_an_in_process_caller_may_set_every_field(fake, registered):
    fake.script("a", answer_then_vote("4"))
    response = await litellm.acompletion(
        model="massgen/build", messages=QUESTION, models=[agent("a")], max_turns_per_agent=40
    )
    assert response.massgen["trusted"] is True
    assert response.massgen["options"]["max_turns_per_agent"] == 40


async def test_the_same_call_from_the_proxy_is_refused_field_by_field(fake, registered):
    write_preset(registered, "team", [agent("a")], clients={"models": ["openai/*"]})
    with pytest.raises(litellm.BadRequestError, match=r"models\[0\]\.api_base: a request through the proxy"):
        await litellm.acompletion(model="massgen/team", messages=QUESTION, models=[agent("a")], **FROM_PROXY)
    with pytest.raises(litellm.BadRequestError, match="may not choose the agents of massgen/build"):
        await litellm.acompletion(model="massgen/build", messages=QUESTION, models=["openai/a"], **FROM_PROXY)
    assert fake.calls == []


async def test_an_unset_key_variable_is_named_to_the_operator_only(registered, monkeypatch):
    monkeypatch.delenv("MASSGEN_TEST_KEY", raising=False)
    write_preset(registered, "team", [{"model": "openai/a", "api_key": "os.environ/MASSGEN_TEST_KEY"}])
    with pytest.raises(litellm.BadRequestError, match="MASSGEN_TEST_KEY"):
        await litellm.acompletion(model="massgen/team", messages=QUESTION)
    with pytest.raises(litellm.BadRequestError) as caught:
        await litellm.acompletion(model="massgen/team", messages=QUESTION, **FROM_PROXY)
    assert "MASSGEN_TEST_KEY" not in str(caught.value) and "not configured on the server" in str(caught.value)


async def test_a_request_cannot_widen_its_own_rules(fake, registered):
    # `clients` is a preset key; in a request it is an unknown parameter, ignored, and the preset's rules stand.
    with pytest.raises(litellm.BadRequestError, match="may not choose the agents"):
        await litellm.acompletion(
            model="massgen/build",
            messages=QUESTION,
            models=["openai/a"],
            clients={"models": ["*"], "agent_fields": ["api_base"]},
            **FROM_PROXY,
        )
    assert fake.calls == []


def test_massgen_participants_are_never_a_clients_choice():
    policy = ClientPolicy(models=["*"])
    assert policy.allows_model("openai/gpt-5") and policy.allows_model("local/smollm2")
    assert not policy.allows_model("massgen/build")
    assert ClientPolicy().models == [] and "api_base" not in ClientPolicy().agent_fields


async def test_max_calls_counts_every_request_and_keeps_the_presentations(fake, registered):
    # Two agents that never agree; with num_retries=1 a call may cost 3 requests, so 15 requests are 5 calls, three
    # of them held back for the presentation.
    fake.script("a", lambda call: answer(f"a{len(fake.calls)}") if not call.is_presentation else Reply(content="Final"))
    fake.script("b", lambda call: answer(f"b{len(fake.calls)}"))
    entries = [agent("a", num_retries=1), agent("b", num_retries=1)]
    write_preset(registered, "team", entries, max_calls=15, max_answers_per_agent=20, max_turns_per_agent=50)
    response = await litellm.acompletion(model="massgen/team", messages=QUESTION)
    record = response.massgen
    assert record["end_reason"] == "budget"
    assert len(fake.calls) == 5 and record["requests_reserved"] == 15
    assert fake.calls[-1].is_presentation and response.choices[0].message.content == "Final"


async def tokens_budgeted_run(fake, registered, first: str) -> litellm.ModelResponse:
    """A run of `first` and an agent that answers 400 characters every turn, until 300 tokens are spent."""
    fake.script("b", lambda call: answer("y" * 400))
    agents = [agent(first), agent("b")]
    budget = {"max_run_tokens": 300, "max_answers_per_agent": 20, "max_turns_per_agent": 50}
    write_preset(registered, "team", agents, **budget, final="winner_answer")
    return await litellm.acompletion(model="massgen/team", messages=QUESTION)


async def test_max_run_tokens_stops_new_calls(fake, registered):
    fake.script("a", lambda call: answer("x" * 400))
    response = await tokens_budgeted_run(fake, registered, "a")
    record = response.massgen
    assert record["end_reason"] == "budget"
    spent_before_last_round = sum(c["prompt_tokens"] + c["completion_tokens"] for c in record["calls"][:-2])
    assert spent_before_last_round < 300 <= record["usage"]["total_tokens"]
    assert len(fake.calls) < 10


async def test_a_negative_token_count_gives_no_tokens_back_to_the_budget(fake, registered):
    """LiteLLM keeps a negative count a provider reports: counted as such, it would undo other calls' spending."""
    refund = {"prompt_tokens": -100_000, "completion_tokens": -100_000, "total_tokens": -200_000}
    tool_call = {"id": "c1", "type": "function", "function": {"name": "new_answer", "arguments": '{"content": "4"}'}}
    message = {"role": "assistant", "content": None, "tool_calls": [tool_call]}
    choice = {"index": 0, "finish_reason": "tool_calls", "message": message}
    body = {"id": "x", "object": "chat.completion", "created": 1, "model": "m", "choices": [choice], "usage": refund}
    fake.script("refunds", lambda call: Reply(body=json.dumps(body).encode()))
    response = await tokens_budgeted_run(fake, registered, "refunds")
    record = response.massgen
    refunded = [c for c in record["calls"] if c["agent_id"] == "agent1"]
    assert refunded and all(c["prompt_tokens"] == c["completion_tokens"] == 0 for c in refunded)
    assert record["end_reason"] == "budget" and 300 <= record["usage"]["total_tokens"] == response.usage.total_tokens


async def test_a_long_reply_is_cut_and_others_see_the_cut(fake, registered):
    fake.script("a", lambda call: vote("agent1") if "agent1" in call.answers else answer("a" * 5000))
    agents = [agent("a"), agent("a")]
    # Kept to the vote round: that is where the others are shown the cut answer.
    write_preset(
        registered, "team", agents, max_answer_chars=1000, final="winner_answer", skip_voting_when_unanimous=False
    )
    response = await litellm.acompletion(model="massgen/team", messages=QUESTION)
    content = response.choices[0].message.content
    assert content == "a" * 1000 + "\n[cut at 1000 characters]"
    shown = [c.answers["agent1"] for c in fake.calls if "agent1" in c.answers]
    assert shown and all(answer == content for answer in shown)


async def test_a_reply_that_fails_counts_its_retries(fake, registered):
    fake.script("a", answer_then_vote("4"))
    fake.script("down", lambda call: fail(500))
    write_preset(registered, "team", [agent("a"), agent("down", num_retries=2)], final="winner_answer")
    response = await litellm.acompletion(model="massgen/team", messages=QUESTION)
    # The budget reserved the most LiteLLM may send for the failed call, and it sent no more than that.
    assert 3 <= len(fake.calls_of("down")) <= 5
    assert response.massgen["requests_reserved"] == 5 + 3 * 2  # down's one call, a's two calls
    failed = next(a for a in response.massgen["agents"] if a["id"] == "agent2")
    assert failed["status"] == "failed"


@pytest.mark.parametrize("duration", [math.nan, math.inf, 1e300, -1])
def test_report_of_a_record_with_an_impossible_duration_is_one_error_line(tmp_path: Path, duration: float):
    record = RunRecord(
        run_id="r",
        preset="p",
        started_at="2026-11-29T00:00:00+00:00",
        duration_seconds=1.0,
        end_reason="consensus",
        winner=None,
        tally={},
        final="present",
        agents=[],
        answers=[],
        votes=[],
        calls=[],
        usage={"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
        cost=0.0,
    )
    data = json.loads(record.model_dump_json())
    data["duration_seconds"] = duration
    path = tmp_path / "run.json"
    path.write_text(json.dumps(data))  # json writes NaN and Infinity as Python reads them back
    done = subprocess.run(
        [sys.executable, "-m", "massgen_litellm", "report", str(path)], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 2
    assert done.stderr.startswith(f"error: {path} is not a run record: duration_seconds")
    assert "Traceback" not in done.stderr and len(done.stderr.splitlines()) == 1


@pytest.mark.parametrize("from_proxy", [False, True])
async def test_a_proxy_clients_schema_patterns_are_not_run_on_the_server(fake, registered, from_proxy):
    # A regular expression chosen by a client could hold the event loop for as long as it likes (catastrophic
    # backtracking), so a proxy client's `pattern`s are not enforced; an in-process caller's are.
    tool = {
        "type": "function",
        "function": {
            "name": "lookup",
            "parameters": {"type": "object", "properties": {"code": {"type": "string", "pattern": "^(a+)+$"}}},
        },
    }
    # Thirty a's and a '!' keep `re` busy for about half a minute here; in process a quick mismatch will do.
    refused = "a" * 30 + "!" if from_proxy else "b"
    proposals = iter(
        [
            Reply(tool="lookup", arguments={"code": refused}),
            Reply(tool="lookup", arguments={"code": "aaa"}),
        ]
    )
    fake.script("a", lambda call: vote("agent1") if "agent1" in call.answers else next(proposals))
    write_preset(registered, "team", [agent("a")], final="winner_answer")
    extra = FROM_PROXY if from_proxy else {}
    response = await litellm.acompletion(model="massgen/team", messages=QUESTION, tools=[tool], **extra)
    arguments = json.loads(response.choices[0].message.tool_calls[0].function.arguments)
    assert arguments == {"code": refused if from_proxy else "aaa"}


async def test_deployment_fields_reach_the_provider_and_header_keys_stay_secret(fake, registered, monkeypatch):
    monkeypatch.setenv("TEAM_GATEWAY_TOKEN", "tok-planted-gateway-secret-81f")
    fake.script("a", lambda call: fail(401, "bad token tok-planted-gateway-secret-81f"))
    fake.script("b", answer_then_vote("4"))
    fields = {
        "extra_headers": {"X-Gateway-Token": "os.environ/TEAM_GATEWAY_TOKEN", "X-Team": "research"},
        "extra_body": {"route": "eu"},
        "drop_params": True,
    }
    write_preset(registered, "team", [agent("a", num_retries=0, **fields), agent("b")], final="winner_answer")
    response = await litellm.acompletion(model="massgen/team", messages=QUESTION)
    sent = fake.calls_of("a")[0]
    assert sent.headers["x-gateway-token"] == "tok-planted-gateway-secret-81f" and sent.headers["x-team"] == "research"
    assert sent.body["route"] == "eu"
    # The provider quoted the header's key in its error: the record has it redacted.
    assert "tok-planted-gateway-secret-81f" not in json.dumps(response.massgen)
    assert "[redacted]" in response.massgen["agents"][0]["error"]


@pytest.mark.parametrize(
    ("entry", "named"),
    [
        ({"extra_headers": {"X-Token": "abc"}}, "models[0].extra_headers: a request through the proxy may not set it"),
        ({"extra_body": {"route": "x"}}, "models[0].extra_body"),
        ({"api_version": "2024-10-01"}, "models[0].api_version"),
    ],
)
async def test_deployment_fields_are_the_operators(fake, registered, entry, named):
    write_preset(registered, "team", [agent("a")], clients={"models": ["openai/*"]})
    with pytest.raises(litellm.BadRequestError) as caught:
        await litellm.acompletion(
            model="massgen/team", messages=QUESTION, models=[{"model": "openai/a", **entry}], **FROM_PROXY
        )
    assert named in str(caught.value)


async def test_a_header_may_not_name_a_server_variable_even_where_headers_are_allowed(fake, registered):
    clients = {"models": ["openai/*"], "agent_fields": ["extra_headers"]}
    write_preset(registered, "team", [agent("a")], clients=clients)
    entry = {"model": "openai/a", "extra_headers": {"Authorization": "os.environ/OPENAI_API_KEY"}}
    with pytest.raises(litellm.BadRequestError, match=r"extra_headers\.Authorization: a request through the proxy"):
        await litellm.acompletion(model="massgen/team", messages=QUESTION, models=[entry], **FROM_PROXY)


async def test_a_proxy_client_picks_a_one_model_team_only_from_the_allow_list(fake, registered):
    write_preset(registered, "ensemble", [agent("a"), agent("b")], clients={"models": ["openai/allowed-*"]})
    with pytest.raises(litellm.BadRequestError, match="'openai/gpt-5' is not a model a request through the proxy"):
        await litellm.acompletion(model="massgen/model:openai/gpt-5", messages=QUESTION, **FROM_PROXY)
    with pytest.raises(litellm.BadRequestError, match="is not a model a request through the proxy"):
        await litellm.acompletion(
            model="massgen/ensemble", messages=QUESTION, optional_params={"model": "openai/gpt-5"}, **FROM_PROXY
        )
    assert fake.calls == []


async def test_coordination_settings_from_a_proxy_client_only_tighten(fake, registered):
    fake.script("a", answer_then_vote("4"))
    write_preset(registered, "team", [agent("a"), agent("a")], initial_round_timeout_seconds=10, final="winner_answer")
    with pytest.raises(litellm.BadRequestError, match="initial_round_timeout_seconds=100 is above this preset's 10"):
        await litellm.acompletion(
            model="massgen/team", messages=QUESTION, initial_round_timeout_seconds=100, **FROM_PROXY
        )
    # Where the preset sets no cap, any cap is tighter; the non-limit settings are the client's to choose.
    response = await litellm.acompletion(
        model="massgen/team",
        messages=QUESTION,
        max_new_answers_global=1,
        voting_sensitivity="strict",
        counterbalance_answer_order=False,
        **FROM_PROXY,
    )
    options = response.massgen["options"]
    assert options["max_new_answers_global"] == 1 and options["voting_sensitivity"] == "strict"
    assert options["counterbalance_answer_order"] is False


@pytest.mark.parametrize("value", [10_000, "10000", "10000.0", 10_000.0])
async def test_a_limit_sent_as_a_string_is_still_only_lowered(fake, registered, value):
    # JSON from a client carries strings as they are, and pydantic reads "10000" as 10000: the check must see what
    # the run would get, not the raw value.
    write_preset(registered, "team", [agent("a")], max_calls=20)
    with pytest.raises(litellm.BadRequestError, match=r"max_calls=10000(\.0)? is above this preset's 20"):
        await litellm.acompletion(model="massgen/team", messages=QUESTION, max_calls=value, **FROM_PROXY)
    assert fake.calls == []


async def test_num_agents_from_a_proxy_client_only_lowers_the_team_and_keeps_the_operators_agents(
    fake, registered, monkeypatch
):
    monkeypatch.setenv("TEAM_KEY", "sk-test-not-a-real-key")
    fake.script("a", answer_then_vote("4"))
    operators = agent("a", api_key="os.environ/TEAM_KEY", extra_headers={"x-team": "ops"})
    write_preset(registered, "team", [operators, operators], final="winner_answer")
    with pytest.raises(litellm.BadRequestError, match="num_agents=32 is above this preset's 2 agents"):
        await litellm.acompletion(model="massgen/team", messages=QUESTION, num_agents=32, **FROM_PROXY)
    assert fake.calls == []
    response = await litellm.acompletion(model="massgen/team", messages=QUESTION, num_agents=1, **FROM_PROXY)
    assert response.choices[0].message.content == "4" and len(response.massgen["agents"]) == 1
    # The one agent left is the operator's whole: its host (the scripted server), its key and its headers.
    assert fake.calls and all(c.api_key == "sk-test-not-a-real-key" for c in fake.calls)
    assert all(c.headers.get("x-team") == "ops" for c in fake.calls)


@pytest.mark.parametrize("timeout", [-1, 0])
async def test_a_timeout_that_is_not_positive_is_a_400(fake, registered, timeout):
    write_preset(registered, "team", [agent("a")])
    with pytest.raises(litellm.BadRequestError, match="timeout must be a positive number of seconds"):
        await litellm.acompletion(model="massgen/team", messages=QUESTION, timeout=timeout)
    assert fake.calls == []
