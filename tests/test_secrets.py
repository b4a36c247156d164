"""A key given in a preset, in `models` or in the environment never shows up in the record, the logs, the errors or
the record files, even when a provider echoes it back in its error message."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import litellm
import pytest

from massgen_litellm.testing.loopback import LoopbackServer
from massgen_litellm.testing.openai_chat import Call, FakeLLM, Reply, answer_then_vote
from tests.conftest import write_preset

QUESTION = [{"role": "user", "content": "What is 2 + 2?"}]
IN_PRESET = "sk-PLANTED-in-preset-7f3a9c"
IN_MODELS = "sk-PLANTED-in-models-2b8d4e"
IN_ENV = "sk-PLANTED-in-env-5c1f0a"
PLANTED = (IN_PRESET, IN_MODELS, IN_ENV)


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    with LoopbackServer(FakeLLM()) as running:
        yield running


def echo_key_401(call: Call) -> Reply:
    """Some providers quote the key they refused; this one quotes it whole."""
    return Reply(status=401, error=f"Incorrect API key provided: {call.api_key}.")


def leaks(*texts: str) -> list[str]:
    return [key for key in PLANTED for text in texts if key in text or key[8:] in text]


@pytest.mark.parametrize("stream", [False, True])
async def test_planted_keys_appear_nowhere(
    server: LoopbackServer,
    registered: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
    stream: bool,
) -> None:
    monkeypatch.setenv("MASSGEN_PLANTED_KEY", IN_ENV)
    traces = tmp_path / "records"
    monkeypatch.setenv("MASSGEN_LOG_DIR", str(traces))
    server.fake.script("good", answer_then_vote("4"))
    server.fake.script("refused", echo_key_401)
    base = {"api_base": server.base_url, "protocol": "tools", "num_retries": 0}
    write_preset(
        registered,
        "keys",
        [
            {"model": "openai/good", "api_key": IN_PRESET, **base},
            {"model": "openai/good", "api_key": "os.environ/MASSGEN_PLANTED_KEY", **base},
            {"model": "openai/refused", "api_key": IN_PRESET, **base},
        ],
    )
    models = [
        {"model": "openai/good", "api_key": IN_MODELS, **base},
        {"model": "openai/refused", "api_key": IN_MODELS, **base},
        {"model": "openai/refused", "api_key": "os.environ/MASSGEN_PLANTED_KEY", **base},
    ]
    caplog.set_level(logging.DEBUG)

    records = []
    for kwargs in ({}, {"models": models}):
        if stream:
            chunks = [
                c
                async for c in await litellm.acompletion(model="massgen/keys", messages=QUESTION, stream=True, **kwargs)
            ]
            records += [json.dumps(getattr(c, "massgen", None)) for c in chunks if getattr(c, "massgen", None)]
        else:
            response = await litellm.acompletion(model="massgen/keys", messages=QUESTION, **kwargs)
            records.append(json.dumps(response.massgen))

    # Every run used the keys (the fake saw them) and met the refusing provider...
    assert {call.api_key for call in server.fake.calls} == set(PLANTED)
    assert all("Incorrect API key provided" in r for r in records)
    # ...and none of them is in a record, a log line, or the error of a run where every agent is refused.
    with pytest.raises(litellm.APIError) as caught:
        await litellm.acompletion(model="massgen/keys", messages=QUESTION, models=models[1:])
    assert "Incorrect API key provided" in str(caught.value)
    logs = "\n".join(f"{r.getMessage()} {r.args} {r.exc_text or ''}" for r in caplog.records)
    files = [path.read_text() for path in traces.iterdir()]
    assert len(files) == 3  # the trace files: every run's record on disk, the failed run's too
    assert leaks(*records, logs, *files, str(caught.value), repr(caught.value)) == []
