"""Presets, registration and bad input: every mistake is a 400 that names the problem and the fix."""

from __future__ import annotations

import os

import litellm
import pytest

import massgen_litellm
from massgen_litellm import local_server, presets, register_with_litellm
from massgen_litellm.config import Preset
from massgen_litellm.errors import MassGenInputError
from massgen_litellm.presets import PRESETS_DIR_ENV, PresetStore, shipped_presets_dir
from massgen_litellm.testing.openai_chat import BASE, KEY, answer_then_vote
from tests.conftest import agent, write_preset

QUESTION = [{"role": "user", "content": "What is 2 + 2?"}]


def test_shipped_presets_are_valid_and_cover_the_promised_kinds():
    store = PresetStore()
    names = store.names()
    assert {"build", "fast", "ensemble", "local"} <= set(names)
    presets = {name: store.load(name) for name in names}
    assert len({a.model.split("/")[0] for a in presets["build"].agents}) >= 3  # strong models across providers
    ensemble = presets["ensemble"].agents
    assert len({a.model for a in ensemble}) == 1 and len({a.temperature for a in ensemble}) == len(ensemble)


def test_shipped_presets_dir_is_the_repo_folder_in_a_checkout():
    assert (shipped_presets_dir() / "build.yaml").is_file()


async def test_unknown_preset_is_a_400_listing_the_available_ones(registered):
    write_preset(registered, "mine", [agent("a")])
    with pytest.raises(litellm.BadRequestError) as info:
        await litellm.acompletion(model="massgen/nope", messages=QUESTION)
    message = str(info.value)
    assert info.value.status_code == 400
    assert "'nope'" in message and "build" in message and "mine" in message


@pytest.mark.parametrize("name", ["../x", "..%2Fx", "a/b", ".hidden", "x" * 65])
async def test_path_like_preset_names_are_refused(registered, name):
    with pytest.raises(litellm.BadRequestError, match="not allowed"):
        await litellm.acompletion(model=f"massgen/{name}", messages=QUESTION)


async def test_malformed_yaml_is_a_400_naming_file_and_line(registered):
    (registered / "broken.yaml").write_text("agents:\n  - model: a\n   bad: [\n")
    with pytest.raises(litellm.BadRequestError) as info:
        await litellm.acompletion(model="massgen/broken", messages=QUESTION)
    assert "broken.yaml" in str(info.value) and "line" in str(info.value)


async def test_unknown_key_in_a_preset_names_file_key_and_allowed_keys(registered):
    write_preset(registered, "typo", [{"model": "openai/a", "temprature": 0.3}])
    with pytest.raises(litellm.BadRequestError) as info:
        await litellm.acompletion(model="massgen/typo", messages=QUESTION)
    message = str(info.value)
    assert "typo.yaml" in message
    assert "agents[0].temprature: unknown key" in message
    assert "temperature" in message and "system_message" in message


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("agents: []\n", "agents: List should have at least 1 item"),
        ("- just a list\n", "must be a YAML mapping"),
        ("agents:\n  - model: openai/a\nmax_turns_per_agent: 0\n", "max_turns_per_agent"),
        ("agents:\n  - model: openai/a\nfinal: shout\n", "final"),
        ("agents:\n  - model: openai/a\nmodels: [x]\n", "models: unknown key"),
    ],
)
async def test_invalid_presets(registered, content, expected):
    (registered / "bad.yaml").write_text(content)
    with pytest.raises(litellm.BadRequestError, match=r"bad\.yaml") as info:
        await litellm.acompletion(model="massgen/bad", messages=QUESTION)
    assert expected in str(info.value)


@pytest.mark.parametrize(
    ("models", "expected"),
    [
        ([], "models is empty"),
        ("openai/a", "must be a list"),
        ([42], "models[0] must be a model string or an object"),
        ([{"temperature": 1}], "models[0].model: Field required"),
        ([{"model": "openai/a", "colour": "red"}], "models[0].colour: unknown key"),
        ([{"model": "openai/a", "temperature": 9}], "models[0].temperature"),
        ([""], "models[0].model"),
        (["openai/a"] * 33, "at most 32"),
    ],
)
async def test_bad_models_are_a_400(registered, models, expected):
    with pytest.raises(litellm.BadRequestError) as info:
        await litellm.acompletion(model="massgen/build", messages=QUESTION, models=models)
    assert expected in str(info.value)


async def test_an_unknown_local_model_is_a_400_listing_the_local_models(registered):
    with pytest.raises(litellm.BadRequestError, match=r"unknown local model 'nope'; available: local/smollm2"):
        await litellm.acompletion(model="massgen/build", messages=QUESTION, models=["local/nope"])


async def test_a_local_model_whose_package_is_missing_is_a_400_naming_the_extra(registered, monkeypatch):
    monkeypatch.setitem(local_server.MODELS, "ghost", local_server.LocalModel("no_such_model_package", "x.gguf"))
    with pytest.raises(litellm.BadRequestError, match=r"pip install 'massgen-litellm\[local\]'"):
        await litellm.acompletion(model="massgen/build", messages=QUESTION, models=["local/ghost"])


@pytest.mark.parametrize("where", ["request", "preset"])
async def test_a_model_litellm_knows_no_provider_for_is_a_400_before_any_call(fake, registered, where):
    fake.script("a", answer_then_vote("4"))
    typo = {"model": "opneai/gpt-5-mini", "api_key": KEY}
    write_preset(registered, "team", [agent("a"), typo if where == "preset" else agent("a")])
    extra = {"models": [agent("a"), typo]} if where == "request" else {}
    with pytest.raises(litellm.BadRequestError, match="knows no provider") as info:
        await litellm.acompletion(model="massgen/team", messages=QUESTION, **extra)
    assert info.value.status_code == 400
    assert "agent 2 (opneai/gpt-5-mini)" in str(info.value)
    assert fake.calls == []


async def test_bad_run_option_is_a_400(registered):
    with pytest.raises(litellm.BadRequestError, match="max_answers_per_agent"):
        await litellm.acompletion(model="massgen/build", messages=QUESTION, max_answers_per_agent=0)


@pytest.mark.parametrize("where", ["request", "preset"])
async def test_a_flag_where_a_number_goes_is_a_400_not_1(fake, registered, where):
    """YAML reads `yes` as true, and pydantic would read true as 1: `max_calls: yes` must not mean one request."""
    (registered / "team.yaml").write_text(
        f"agents: [{{model: openai/a, api_base: '{BASE}', api_key: {KEY}}}]\n"
        + ("max_calls: yes\n" if where == "preset" else "")
    )
    extra = {"max_calls": True, "temperature": True} if where == "request" else {}
    with pytest.raises(litellm.BadRequestError, match="max_calls: must be a number, not true or false") as info:
        await litellm.acompletion(model="massgen/team", messages=QUESTION, **extra)
    assert info.value.status_code == 400
    assert fake.calls == []


@pytest.mark.parametrize("messages", [[], [{"role": "wizard", "content": "x"}]])
async def test_bad_messages_are_a_400(registered, messages):
    with pytest.raises(litellm.BadRequestError, match="messages"):
        await litellm.acompletion(model="massgen/build", messages=messages)


@pytest.mark.parametrize(
    "messages",
    [
        [{"role": "user", "content": ""}],
        [{"role": "system", "content": "  "}, {"role": "user", "content": "\n\t"}],
        [{"role": "user", "content": [{"type": "text", "text": " "}]}],
        [{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": ""}],
    ],
)
async def test_a_question_with_nothing_in_it_is_a_400_before_any_call(fake, registered, messages):
    write_preset(registered, "team", [agent("a"), agent("b")])
    with pytest.raises(litellm.BadRequestError, match="messages has no content") as info:
        await litellm.acompletion(model="massgen/team", messages=messages)
    assert info.value.status_code == 400
    assert fake.calls == []


async def test_a_blank_turn_after_a_real_one_still_runs(fake, registered):
    fake.script("a", answer_then_vote("4"))
    fake.script("b", answer_then_vote("4"))
    write_preset(registered, "team", [agent("a"), agent("b")])
    messages = [*QUESTION, {"role": "assistant", "content": "4"}, {"role": "user", "content": " "}]
    response = await litellm.acompletion(model="massgen/team", messages=messages)
    assert response.choices[0].message.content


async def test_unset_environment_key_is_a_400_naming_the_variable(registered, monkeypatch):
    monkeypatch.delenv("MASSGEN_TEST_KEY", raising=False)
    with pytest.raises(litellm.BadRequestError, match="MASSGEN_TEST_KEY"):
        await litellm.acompletion(
            model="massgen/build",
            messages=QUESTION,
            models=[{"model": "openai/a", "api_key": "os.environ/MASSGEN_TEST_KEY"}],
        )


async def test_environment_key_is_resolved_and_literal_keys_never_echoed(fake, registered, monkeypatch):
    monkeypatch.setenv("MASSGEN_TEST_KEY", "sk-from-the-environment")
    fake.script("a", answer_then_vote("4"))
    entry = {**agent("a"), "api_key": "os.environ/MASSGEN_TEST_KEY"}
    response = await litellm.acompletion(
        model="massgen/build", messages=QUESTION, models=[entry], final="winner_answer"
    )
    assert response.choices[0].message.content == "4"
    assert "sk-from-the-environment" not in str(response.massgen)
    preset = Preset.model_validate({"agents": [agent("a")]})
    assert "sk-test-not-a-real-key" not in repr(preset) and "sk-test-not-a-real-key" not in str(preset.model_dump())


async def test_user_presets_override_shipped_ones(fake, registered):
    fake.script("mine", answer_then_vote("mine"))
    write_preset(registered, "build", [agent("mine")], final="winner_answer")
    response = await litellm.acompletion(model="massgen/build", messages=QUESTION)
    assert response.choices[0].message.content == "mine"


def test_presets_dir_from_the_environment(tmp_path, monkeypatch):
    write_preset(tmp_path, "envteam", [agent("a")])
    monkeypatch.setenv(PRESETS_DIR_ENV, str(tmp_path))
    assert PresetStore().load("envteam").agents[0].model == "openai/a"


def test_a_stores_extra_dirs_are_read_at_every_lookup(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir(), two.mkdir()
    write_preset(one, "later", [agent("a")])
    write_preset(two, "later", [agent("b")])
    store = PresetStore()
    store.extra_dirs.append(one)  # a public list: added to after the store was made
    assert store.load("later").agents[0].model == "openai/a"
    store.extra_dirs = [one, two]  # or replaced: the later directory wins
    assert store.load("later").agents[0].model == "openai/b"


def test_a_preset_is_read_again_whenever_its_file_may_have_changed(tmp_path, monkeypatch):
    """A file that has not changed, and had not changed for a while when it was read, is not read again; any write
    since is seen by the next load, even one that keeps the size and puts the modification time back."""
    reads = []
    real = presets.load_preset_file
    monkeypatch.setattr(presets, "load_preset_file", lambda path: reads.append(path) or real(path))
    monkeypatch.setattr(presets, "_SETTLED_NS", 0)  # every file counts as settled: no test waits two seconds
    store = PresetStore([tmp_path])
    path = write_preset(tmp_path, "team", [agent("one")])
    first = store.load("team")
    assert store.load("team") is first and len(reads) == 1
    before = path.stat()
    path.write_text(path.read_text().replace("openai/one", "openai/two"))  # the same size
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # and the same modification time
    assert path.stat().st_size == before.st_size and path.stat().st_mtime_ns == before.st_mtime_ns
    assert store.load("team").agents[0].model == "openai/two" and len(reads) == 2


def test_a_preset_written_moments_ago_is_read_on_every_load(tmp_path, monkeypatch):
    """Within a step of the clock a second write may leave the file's status as the first left it, so a file that
    changed recently is not trusted to be unchanged."""
    reads = []
    real = presets.load_preset_file
    monkeypatch.setattr(presets, "load_preset_file", lambda path: reads.append(path) or real(path))
    monkeypatch.setattr(presets, "_SETTLED_NS", 10**18)  # nothing ever settles
    store = PresetStore([tmp_path])
    write_preset(tmp_path, "team", [agent("one")])
    for _ in range(3):
        store.load("team")
    assert len(reads) == 3


def test_of_name_yaml_and_name_yml_the_yaml_file_is_the_preset(tmp_path):
    """A request and the preset list agree on which file is the preset when a directory has both."""
    write_preset(tmp_path, "team", [agent("from-yaml")])
    (tmp_path / "team.yml").write_text("agents:\n  - model: openai/from-yml\n")
    write_preset(tmp_path, "other", [agent("x")])
    (tmp_path / "other.yaml").rename(tmp_path / "other.yml")
    (tmp_path / "other.yaml").mkdir()  # not a file: no preset, and no shadow over other.yml
    (tmp_path / "ghost.yaml").symlink_to(tmp_path / "nowhere.yaml")
    store = PresetStore([tmp_path])
    assert store.files()["team"].name == "team.yaml"
    assert store.load("team").agents[0].model == "openai/from-yaml"
    assert store.files()["other"].name == "other.yml" and store.load("other").agents[0].model == "openai/x"
    assert "ghost" not in store.files()
    with pytest.raises(MassGenInputError, match="unknown preset 'ghost'") as info:
        store.load("ghost")
    listed = str(info.value).split("Available presets: ")[1].split(". Add")[0].split(", ")
    assert "ghost" not in listed and "other" in listed


def test_a_presets_run_options_are_its_own_and_made_once():
    """A request reads the preset's run options; they are made once per preset object, and a copy with other
    options has its own."""
    preset = Preset.model_validate({"agents": [{"model": "openai/one"}], "max_turns_per_agent": 3})
    assert preset.options() is preset.options() and preset.options().max_turns_per_agent == 3
    changed = preset.model_copy(update={"max_turns_per_agent": 5})
    assert changed.options().max_turns_per_agent == 5
    assert preset.options().max_turns_per_agent == 3


def test_register_is_idempotent_and_keeps_other_providers(monkeypatch):
    other = {"provider": "someone-else", "custom_handler": object()}
    monkeypatch.setattr(litellm, "custom_provider_map", [other])
    register_with_litellm(load_env=False)
    register_with_litellm(load_env=False)
    providers = [entry["provider"] for entry in litellm.custom_provider_map]
    assert providers == ["someone-else", "massgen"]
    assert litellm.custom_provider_map[-1]["custom_handler"] is massgen_litellm.handler


def test_register_loads_dotenv_without_overriding(tmp_path, monkeypatch):
    (tmp_path / ".env").write_text("MASSGEN_DOTENV_NEW=from-file\nMASSGEN_DOTENV_SET=from-file\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MASSGEN_DOTENV_NEW", raising=False)
    monkeypatch.setenv("MASSGEN_DOTENV_SET", "already")
    monkeypatch.setattr(litellm, "custom_provider_map", [])
    register_with_litellm()
    import os

    assert os.environ["MASSGEN_DOTENV_NEW"] == "from-file"
    assert os.environ["MASSGEN_DOTENV_SET"] == "already"
    monkeypatch.delenv("MASSGEN_DOTENV_NEW")


@pytest.fixture
def provider_env(monkeypatch):
    """A one-model team's agents carry no api_base or key of the preset's: they find the provider as LiteLLM does."""
    monkeypatch.setenv("OPENAI_API_BASE", BASE)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)


async def test_massgens_model_form_is_a_self_ensemble(fake, registered, provider_env):
    fake.script("solo", answer_then_vote("4"))
    write_preset(
        registered,
        "ensemble",
        [agent("x", temperature=0.2, system_message="Be precise."), agent("y", temperature=0.9)],
        final="winner_answer",
    )
    response = await litellm.acompletion(model="massgen/model:openai/solo", messages=QUESTION, num_agents=3)
    agents = response.massgen["agents"]
    assert [a["model"] for a in agents] == ["openai/solo"] * 3
    temperatures = [c.body.get("temperature") for c in fake.calls if not c.answers][:3]
    assert sorted(temperatures) == [0.2, 0.2, 0.9]  # the preset's stances, taken in turn
    assert any(m.get("content") == "Be precise." for c in fake.calls for m in c.messages)


async def test_massgens_request_keys_model_and_num_agents(fake, registered, provider_env):
    fake.script("solo", answer_then_vote("4"))
    write_preset(registered, "team", [agent("a"), agent("b")], final="winner_answer")
    response = await litellm.acompletion(
        model="massgen/team", messages=QUESTION, optional_params={"model": "openai/solo", "num_agents": 4}
    )
    assert [a["model"] for a in response.massgen["agents"]] == ["openai/solo"] * 4
    with pytest.raises(litellm.BadRequestError, match="num_agents must be a whole number from 1 to 32"):
        await litellm.acompletion(model="massgen/team", messages=QUESTION, optional_params={"num_agents": 0})
    with pytest.raises(litellm.BadRequestError, match="either models or model/num_agents"):
        await litellm.acompletion(
            model="massgen/team", messages=QUESTION, optional_params={"model": "openai/a", "models": ["openai/b"]}
        )


def test_the_local_model_gets_one_server_per_cpu_up_to_a_few(monkeypatch):
    # Each server is a copy of the model and its context: a 64-CPU host must not start 64 of them.
    monkeypatch.setattr(local_server.os, "sched_getaffinity", lambda pid: set(range(64)), raising=False)
    assert local_server.pool_size() == local_server.MAX_SERVERS
    monkeypatch.setattr(local_server.os, "sched_getaffinity", lambda pid: {0}, raising=False)
    assert local_server.pool_size() == 1


def test_the_reasoning_a_client_hands_back_never_reaches_the_agents():
    """Every form the team's progress comes back in (docs/records.md): LiteLLM's fields, content parts of the
    Anthropic and Responses kinds, a message of nothing else. The rest of the conversation stays as it was."""
    from massgen_litellm.request import check_messages

    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Weather?"}]},
        {"role": "assistant", "reasoning_content": "agent1 is working", "thinking_blocks": [{}], "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18 C"},
        {"role": "assistant", "content": None, "reasoning_content": "agent2 voted"},  # nothing else: dropped
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "agent1 answered", "signature": ""},
                {"type": "redacted_thinking", "data": "..."},
                {"type": "reasoning", "text": "agent2 answered"},
                {"type": "text", "text": "It is 18 C."},
            ],
        },
        {"role": "user", "content": "Thanks. And tomorrow?"},
        {"role": "assistant", "content": ""},  # no reasoning: kept as sent
    ]

    assert check_messages(messages) == [
        messages[0],
        messages[1],
        {"role": "assistant", "tool_calls": [call]},
        messages[3],
        {"role": "assistant", "content": [{"type": "text", "text": "It is 18 C."}]},
        messages[6],
        messages[7],
    ]


async def test_a_conversation_of_nothing_but_reasoning_is_a_400(registered):
    write_preset(registered, "mine", [agent("a")])
    with pytest.raises(litellm.BadRequestError) as info:
        await litellm.acompletion(
            model="massgen/mine", messages=[{"role": "assistant", "content": None, "reasoning_content": "agent1..."}]
        )
    assert "nothing but an assistant's reasoning" in str(info.value) and "user's message" in str(info.value)
