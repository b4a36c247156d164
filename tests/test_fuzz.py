"""Bad input, generated: whatever a preset file, a `models` value or a preset name holds, the answer is a run
request or a 400 that says what is wrong, never another exception."""

from __future__ import annotations

import string
from pathlib import Path

import litellm
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from massgen_litellm.errors import MassGenInputError
from massgen_litellm.presets import PresetStore, load_preset_file
from massgen_litellm.request import RunRequest, build_request

QUESTION = [{"role": "user", "content": "What is 2 + 2?"}]
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(max_size=40),
    st.sampled_from(["openai/gpt-4.1-mini", "local/smollm2", "local/nope", "os.environ/NOPE", "", " x ", "tools"]),
)
values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner, max_size=5)
)
agent_keys = st.sampled_from(
    ["model", "temperature", "top_p", "max_tokens", "api_key", "api_base", "protocol", "num_retries", "seed", "id"]
)
agents = st.one_of(
    values,
    st.dictionaries(agent_keys, values, max_size=6),
    st.fixed_dictionaries({"model": values}, optional={"temperature": values, "protocol": values, "id": values}),
)
models = st.one_of(
    values, st.lists(agents, max_size=6), st.lists(st.just("openai/gpt-4.1-mini"), min_size=30, max_size=40)
)
preset_keys = st.sampled_from(["agents", "description", "max_turns_per_agent", "run_timeout", "final", "call_timeout"])
presets = st.one_of(values, st.dictionaries(preset_keys, st.one_of(values, st.lists(agents, max_size=4)), max_size=5))


def settled(outcome: object) -> None:
    """A run request, or our error with something to say."""
    if isinstance(outcome, MassGenInputError):
        assert len(str(outcome)) > 20
    else:
        assert isinstance(outcome, RunRequest)


def attempt(call):  # type: ignore[no-untyped-def]
    try:
        return call()
    except MassGenInputError as exc:
        return exc


@FUZZ
@given(value=models)
def test_any_models_value_is_a_request_or_a_400(value: object) -> None:
    settled(attempt(lambda: build_request("ensemble", QUESTION, {"models": value}, PresetStore())))


@FUZZ
@given(content=presets)
def test_any_preset_structure_is_a_preset_or_a_400(tmp_path: Path, content: object) -> None:
    path = tmp_path / "fuzzed.yaml"
    path.write_text(yaml.safe_dump(content))
    outcome = attempt(lambda: load_preset_file(path))
    if not isinstance(outcome, MassGenInputError):
        assert outcome.agents


@FUZZ
@given(raw=st.one_of(st.binary(max_size=200), st.text(max_size=200).map(str.encode)))
def test_any_preset_bytes_are_a_preset_or_a_400_naming_the_file(tmp_path: Path, raw: bytes) -> None:
    path = tmp_path / "raw.yaml"
    path.write_bytes(raw)
    outcome = attempt(lambda: load_preset_file(path))
    if isinstance(outcome, MassGenInputError):
        # The file by name, not by path: the message can reach a proxy client, who has no business knowing the
        # server's directories.
        assert "raw.yaml" in str(outcome) and str(tmp_path) not in str(outcome)


@FUZZ
@given(name=st.text(max_size=80) | st.text(string.ascii_letters + "./\\\0-_~", max_size=20))
def test_any_preset_name_is_a_preset_or_a_400(name: str) -> None:
    outcome = attempt(lambda: PresetStore().load(name))
    if isinstance(outcome, MassGenInputError):
        assert repr(name) in str(outcome) or name in str(outcome)


@pytest.mark.parametrize(
    "content",
    [
        "!!python/object/apply:os.system ['echo pwned']",
        "agents: [{model: !!python/name:os.system }]",
        "agents: &a [*a]",
        "agents:\n  - model: openai/x\n    temperature: .nan",
        "\ufeffagents: []",
    ],
)
def test_hostile_yaml_is_a_400(tmp_path: Path, content: str) -> None:
    path = tmp_path / "evil.yaml"
    path.write_text(content)
    with pytest.raises(MassGenInputError, match=r"evil\.yaml"):
        load_preset_file(path)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=st.one_of(values, st.lists(st.dictionaries(agent_keys, scalars, max_size=4), min_size=1, max_size=3)))
def test_through_litellm_a_bad_models_value_is_a_bad_request_error(registered: Path, value: object) -> None:
    try:
        build_request("ensemble", QUESTION, {"models": value}, PresetStore())
    except MassGenInputError:
        with pytest.raises(litellm.BadRequestError, match="massgen"):
            litellm.completion(model="massgen/ensemble", messages=QUESTION, models=value)
