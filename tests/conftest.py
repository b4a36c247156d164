"""Shared fixtures. Tests never reach the internet: participants are scripted models behind respx."""

from __future__ import annotations

import os

# Before LiteLLM is imported: use its bundled price list instead of fetching one, and plain httpx transports,
# which respx can intercept.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("DISABLE_AIOHTTP_TRANSPORT", "True")

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import litellm
import pytest
import respx
import yaml

from massgen_litellm import register_with_litellm
from massgen_litellm.record import RunRecord
from massgen_litellm.run import Run
from massgen_litellm.testing.loopback import LoopbackServer
from massgen_litellm.testing.openai_chat import BASE, KEY, Call, FakeLLM, Reply, answer, text, vote
from tests.proxy import LiteLLMProxy


@pytest.fixture(autouse=True)
def records_keep_their_shape(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every record a test's runs make is a valid `RunRecord`, field for field its JSON form: `Run.record` makes that
    form directly, without the models, so this is where the two are held together."""
    make = Run.record

    def checked(run: Run) -> dict[str, Any]:
        record = make(run)
        again = RunRecord.model_validate(record).model_dump(mode="json")
        differ = sorted(key for key in {*record, *again} if record.get(key) != again.get(key))
        assert not differ, f"Run.record differs from RunRecord's JSON form in {differ}"
        return record

    monkeypatch.setattr(Run, "record", checked)


@pytest.fixture
def fake() -> Iterator[FakeLLM]:
    backend = FakeLLM()
    with respx.mock(assert_all_called=False, assert_all_mocked=True) as router:
        router.post(f"{BASE}/chat/completions").mock(side_effect=backend.handle)
        yield backend


def agent(model: str, protocol: str = "tools", **fields: Any) -> dict[str, Any]:
    """An agent entry for a scripted model."""
    return {"model": f"openai/{model}", "api_base": BASE, "api_key": KEY, "protocol": protocol, **fields}


def weather_agent(call: Call) -> Reply:
    """A client-tool round trip (agent apps, endpoints, Gemini, coding agents): propose get_weather until a
    result is in the conversation, then answer from it; vote for agent1's answer."""
    if call.is_presentation:
        return text(f"Final: {call.answers.get('agent1', '')}")
    if "agent1" in call.answers:
        return vote("agent1", "agent1 has it right")
    results = [m for m in call.messages if m.get("role") == "tool"]
    if results:
        return answer(f"In Paris it is {results[-1]['content']}.")
    return Reply(tool="get_weather", arguments={"city": "Paris"})


@pytest.fixture(scope="module")
def upstream() -> Iterator[LoopbackServer]:
    """The scripted backend as a real server, shared by a module's tests (a proxy process's participants)."""
    with LoopbackServer(FakeLLM()) as server:
        yield server


@pytest.fixture(scope="module")
def proxy(upstream: LoopbackServer) -> Iterator[LiteLLMProxy]:
    """The real LiteLLM proxy (tests/proxy_config.yaml) in front of `upstream`, shared by a module's tests."""
    with LiteLLMProxy(upstream.base_url) as running:
        yield running


@pytest.fixture
def presets_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "presets"
    directory.mkdir()
    return directory


def write_preset(directory: Path, name: str, agents: list[dict[str, Any]], **options: Any) -> Path:
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"agents": agents, **options}))
    return path


@pytest.fixture
def registered(presets_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """massgen registered with a fresh user presets directory; the provider map is restored afterwards."""
    monkeypatch.setattr(litellm, "custom_provider_map", list(litellm.custom_provider_map))
    register_with_litellm(presets_dir=presets_dir, load_env=False)
    yield presets_dir
