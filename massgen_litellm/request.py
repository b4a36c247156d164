"""Turning one LiteLLM call into a validated run request, or a `MassGenInputError` that says what to fix.

A request reaches us in three shapes, all accepted: `optional_params={"models": [...]}` (the seed's quickstart),
a plain keyword `models=[...]`, and `extra_body={"models": [...]}` from an OpenAI client through the proxy.

Who may set what: code calling the library in its own process is trusted, and may set every field. A request that
arrived through a LiteLLM proxy is not: it may choose participant models only from the preset's `clients.models`,
agent fields only from `clients.agent_fields` (never a host, a key or retries unless the operator names them), run
limits only tighter than the preset's, and never an `os.environ/` key, a `massgen/` participant or more work than
the preset's caps.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import litellm
from pydantic import ValidationError

from . import context_paths
from .config import (
    AGENT_FIELDS,
    ENV_KEY_PREFIX,
    LIMIT_OPTIONS,
    MAX_AGENTS,
    RUN_OPTION_NAMES,
    SAMPLING_PARAMS,
    AgentConfig,
    ClientPolicy,
    McpServer,
    Preset,
    RunOptions,
    Sampling,
    is_local_model,
)
from .contract import CONTRACT_PARAMS, ReplyContract, build_contract
from .errors import MassGenInputError, describe_validation_error
from .output_limits import OUTPUT_PARAMS
from .presets import PresetStore
from .protocol import Message

logger = logging.getLogger("massgen_litellm")

# Passed by LiteLLM or OpenAI clients on every call; they mean nothing to a coordination run (`user` and `metadata`
# are read below and passed on to every participant call).
_PLUMBING = frozenset(
    {"stream", "stream_options", "user", "metadata", "extra_headers", "max_retries", "drop_params", "api_version"}
)
# OpenAI's limits on `stop`: up to four sequences.
MAX_STOP_SEQUENCES = 4
MAX_STOP_CHARS = 256
MAX_USER_CHARS = 256
# Our own metadata keys on participant calls: the caller's keys of the same names are dropped, so a record, a log
# or a callback can trust them.
OWN_METADATA_PREFIX = "massgen_"
# What LiteLLM's proxy and router write into a call's metadata for their own bookkeeping. Copied onto participant
# calls, `user_api_key_*` would bill each of them to the key, team and end user a second time (the proxy's spend
# tracking reads them), and the router's deployment fields would key LiteLLM's cache on the outer model.
_LITELLM_OWN_PREFIXES = ("user_api_", OWN_METADATA_PREFIX, "_")
_LITELLM_OWN_KEYS = frozenset(
    {
        # The proxy's (what it keeps of the client's own metadata, and the HTTP request).
        "requester_metadata",
        "headers",
        "endpoint",
        "requester_ip_address",
        # A router's (LiteLLM 1.110's Router.acompletion), in-process or in the proxy.
        "model_group",
        "model_group_alias",
        "model_group_size",
        "original_model_group",
        "deployment",
        "deployment_model_name",
        "model_info",
        "api_base",
        "caching_groups",
        "previous_models",
        "attempted_fallbacks",
        "attempted_retries",
        "max_retries",
        "kubernetes_pod_routing",
        # One call's own identity: each participant call is its own generation in the caller's trace.
        "generation_id",
        # What LiteLLM writes back into the metadata dict it was given, after the call: a caller who passes the same
        # dict again would send the last reply's hidden params (our whole record among them) with every participant
        # call of the next run, into the next user's logs.
        "hidden_params",
        "llm_api_timing_windows",
        "raw_request",
    }
)
# Every parameter a run reads; the others are logged as ignored.
_KNOWN = frozenset(
    {"models", "model", "num_agents", "n", "stop", *RUN_OPTION_NAMES, *SAMPLING_PARAMS, *_PLUMBING, *CONTRACT_PARAMS}
)
_RUN_OPTIONS = frozenset(RUN_OPTION_NAMES)
_SAMPLING = frozenset(SAMPLING_PARAMS)
_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
# The team streams its progress as reasoning, and clients hand a reply back whole: on an assistant message, as these
# fields (chat completions; LiteLLM's /v1/messages bridge turns Anthropic `thinking` blocks into both, its
# /v1/responses bridge turns `reasoning` items into `reasoning_content`), or as content parts of these types.
_REASONING_FIELDS = ("reasoning_content", "thinking_blocks")
_REASONING_PARTS = frozenset({"thinking", "redacted_thinking", "reasoning"})
# A rough, cheap token count (no tokenizer on the hot path): enough to refuse a conversation that could not fit.
_CHARS_PER_TOKEN = 4


@dataclass
class RunRequest:
    preset: str
    agents: list[AgentConfig]
    options: RunOptions
    conversation: list[Message]
    sampling: dict[str, Any]
    ignored_params: list[str] = field(default_factory=list)
    trusted: bool = True
    contract: ReplyContract = field(default_factory=ReplyContract)
    servers: list[list[McpServer]] = field(default_factory=list)  # each agent's MCP servers, from the preset only
    # Parameters of the outer call that apply only to the presentation call (the reply the caller gets), never to the
    # agents' coordination turns: `max_tokens` / `max_completion_tokens` (checked as Sampling checks them) and `stop`.
    # Any caller may set them, a proxy client too: they only bound or cut a reply, and every call is clamped to its
    # model's output ceiling.
    presentation_params: dict[str, Any] = field(default_factory=dict)
    user: str | None = None  # the caller's end user, sent with every participant call
    metadata: dict[str, Any] = field(default_factory=dict)  # the caller's metadata, on every participant call
    enable_cache: bool = True  # the preset's: may LiteLLM's cache answer this request (see call_policy.py)


def build_request(
    preset_name: str,
    messages: Sequence[Any],
    optional_params: Mapping[str, Any],
    store: PresetStore,
    outer_timeout: float | None = None,
    *,
    trusted: bool = True,
    metadata: Mapping[str, Any] | None = None,
) -> RunRequest:
    """`metadata`: the outer call's LiteLLM metadata (`litellm_params["metadata"]`), of which the caller's own keys
    reach every participant call (see `caller_metadata`)."""
    conversation = check_messages(messages)
    params = _merge_params(optional_params)
    if "context_paths" in params:
        raise MassGenInputError(_NO_CONTEXT_PATHS[trusted])
    if preset_name.startswith(MODEL_FORM):
        # MassGen's provider form: massgen/model:<model> is a self-ensemble of that model, the `ensemble` preset's
        # stances on it.
        if params.get("model") is not None:
            raise MassGenInputError(f"massgen/{preset_name} names its model; leave 'model' out of the parameters")
        params["model"] = preset_name[len(MODEL_FORM) :]
        preset_name = SELF_ENSEMBLE
    preset = store.load(preset_name)
    # What the caller chose itself, as a proxy client's choices are checked: the one-model form chooses only a model.
    chosen = params.get("models")
    team: list[AgentConfig] | None = None
    if params.get("model") is not None or params.get("num_agents") is not None:
        team = _one_model_team(params, preset, trusted)
        chosen = [params["model"]] if params.get("model") is not None else None

    if params.get("n") not in (None, 1):
        raise MassGenInputError(
            "n must be 1: a coordination run produces one voted answer (run the request n times for n of them)"
        )
    contract = build_contract(params, trusted)

    agents: list[AgentConfig]
    if not trusted and chosen is not None:
        _check_client_models(chosen, preset_name, preset.clients)
    if team is not None:
        agents = team
    elif params.get("models") is None:
        agents = list(preset.agents)
    else:
        agents = parse_models(params["models"])
    _check_agents(agents, trusted)

    # Read off the request's few parameters, not looked up for each of the many names there are.
    overrides = {name: value for name, value in params.items() if name in _RUN_OPTIONS and value is not None}
    try:
        options = preset.options()
        if overrides:
            options = RunOptions.model_validate({**options.model_dump(), **overrides})
    except ValidationError as exc:
        raise MassGenInputError(f"invalid run option: {describe_validation_error(exc, RunOptions, '')}") from None
    if not trusted:
        # Compared as validated: "10000" is 10000 to the model, so it must be 10000 to this check too.
        _check_client_limits(options, overrides, preset)
    if isinstance(outer_timeout, (int, float)) and outer_timeout <= 0:
        raise MassGenInputError(f"timeout must be a positive number of seconds, not {outer_timeout}")
    if outer_timeout and outer_timeout < options.run_timeout:
        # The caller's own timeout bounds the whole call, so the run must end (and answer) before it does.
        options = options.model_copy(update={"run_timeout": float(outer_timeout)})

    try:
        chosen_sampling = {name: value for name, value in params.items() if name in _SAMPLING and value is not None}
        # Nothing to validate when none is set: most requests set none.
        shared = Sampling.model_validate(chosen_sampling).sampling() if chosen_sampling else {}
    except ValidationError as exc:
        raise MassGenInputError(describe_validation_error(exc, Sampling, "")) from None
    _check_size(conversation, agents, options)

    if "enable_cache" in params:
        raise MassGenInputError(
            "enable_cache is the preset's setting, not a request's; a request can skip LiteLLM's cache with "
            'cache={"no-cache": true}'
        )
    presentation_params: dict[str, Any] = {}
    if params.get("stop") is not None:
        presentation_params["stop"] = check_stop(params["stop"])
    user = params.get("user")
    if user is not None and (not isinstance(user, str) or len(user) > MAX_USER_CHARS):
        raise MassGenInputError(f"user must be a string of at most {MAX_USER_CHARS} characters (your end user's id)")

    ignored = sorted(name for name in params if name not in _KNOWN)
    if ignored:
        logger.warning("massgen/%s: ignoring parameters a coordination run does not use: %s", preset_name, ignored)
    files = _context_servers(preset_name, preset, trusted)
    servers = [[*preset.servers_for(agent), *files] for agent in agents]
    # Output limits on the outer call bound the reply the client gets (the presentation), never the agents'
    # coordination turns: Claude Code sends max_tokens=32000 with every request.
    presentation_params.update({name: shared.pop(name) for name in OUTPUT_PARAMS if name in shared})
    return RunRequest(
        preset_name,
        agents,
        options,
        conversation,
        shared,
        ignored,
        trusted,
        contract,
        servers,
        presentation_params=presentation_params,
        user=user or None,
        metadata=caller_metadata(metadata or {}, trusted),
        enable_cache=preset.enable_cache,
    )


# A request never chooses files on the server: context paths belong to whoever runs the team.
_NO_CONTEXT_PATHS = {
    True: "context_paths is not a request field: set context_paths: in the preset, or run the team with "
    "--context-path DIR (the command line) or register_with_litellm(context_paths=[...]) (Python)",
    False: "context_paths: a request through the proxy may not give the agents files on the server. The operator "
    "sets them under 'context_paths:' in the preset file",
}


def _context_servers(name: str, preset: Preset, trusted: bool) -> list[McpServer]:
    """The file servers for the preset's context paths, or an error before any call if they cannot serve them. An
    untrusted caller is not told the server's paths or what it lacks."""
    try:
        problems = context_paths.problems(preset.context_paths)
        if problems:
            raise LookupError(problems[0])
        return context_paths.servers(preset.context_paths)
    except LookupError as exc:
        cause = str(exc) if trusted else "its context paths are not available on the server; ask the operator"
        raise MassGenInputError(f"massgen/{name}: {cause}") from None


def check_stop(stop: Any) -> list[str]:
    """`stop` as OpenAI takes it (a string, or a list of up to four), as a list of non-empty strings."""
    sequences = [stop] if isinstance(stop, str) else stop
    if (
        not isinstance(sequences, list)
        or not 1 <= len(sequences) <= MAX_STOP_SEQUENCES
        or not all(isinstance(s, str) and 0 < len(s) <= MAX_STOP_CHARS for s in sequences)
    ):
        raise MassGenInputError(
            f"stop must be a string or a list of 1 to {MAX_STOP_SEQUENCES} non-empty strings of at most "
            f'{MAX_STOP_CHARS} characters, for example stop=["\\n\\n"]'
        )
    return sequences


def caller_metadata(metadata: Mapping[str, Any], trusted: bool) -> dict[str, Any]:
    """The caller's own metadata keys (trace and session ids, tags, generation names...), to go on every
    participant call.

    Through a proxy, only what the client itself sent counts: the proxy keeps it as `requester_metadata`, after it
    has dropped any `user_api_key_*` the client tried to forge; the rest of that metadata is the proxy's bookkeeping
    (the key, team and end user it bills). In-process, the metadata is the caller's, less what a LiteLLM router adds.
    Either way LiteLLM's own keys and ours (`massgen_*`) are left out: ours are set per call, and cannot be forged.
    """
    source = metadata.get("requester_metadata") if not trusted or "requester_metadata" in metadata else metadata
    if not isinstance(source, Mapping):
        return {}
    return {
        key: value
        for key, value in source.items()
        if isinstance(key, str) and not key.startswith(_LITELLM_OWN_PREFIXES) and key not in _LITELLM_OWN_KEYS
    }


MODEL_FORM = "model:"
SELF_ENSEMBLE = "ensemble"  # the preset whose stances a one-model team takes
DEFAULT_NUM_AGENTS = 3


def _one_model_team(params: Mapping[str, Any], preset: Preset, trusted: bool) -> list[AgentConfig]:
    """MassGen's `model` + `num_agents` request keys as a team: the preset's agents taken in turn to make
    `num_agents` of them. With `model`, each takes its template's sampling and stance on that model (its host and
    key are the model's own, as for any `models` entry, and a proxy client's model is checked like one). Without,
    each is its template whole: the operator's host, key and tools. A proxy client may only lower the team's size."""
    if params.get("models") is not None:
        raise MassGenInputError("give either models or model/num_agents, not both")
    model = params.get("model")
    if model is not None and (not isinstance(model, str) or not model.strip()):
        raise MassGenInputError("model must be a LiteLLM model string, for example model='openai/gpt-5-mini'")
    count = params.get("num_agents", DEFAULT_NUM_AGENTS if model is not None else len(preset.agents))
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_AGENTS:
        raise MassGenInputError(f"num_agents must be a whole number from 1 to {MAX_AGENTS}")
    if not trusted and params.get("num_agents") is not None and count > len(preset.agents):
        raise MassGenInputError(
            f"num_agents={count} is above this preset's {len(preset.agents)} agents: a request through the proxy may "
            "only lower it"
        )
    templates = [preset.agents[index % len(preset.agents)] for index in range(count)]
    if model is None:
        return list(templates)
    return parse_models(
        [
            {
                **t.model_dump(include={"system_message", *SAMPLING_PARAMS, "protocol"}, exclude_none=True),
                "model": model,
            }
            for t in templates
        ]
    )


def _merge_params(optional_params: Mapping[str, Any]) -> dict[str, Any]:
    """Flatten the three ways of passing our parameters; an explicit keyword wins over the nested forms."""
    params = dict(optional_params)
    merged: dict[str, Any] = {}
    for nested in ("extra_body", "optional_params"):
        value = params.pop(nested, None)
        if value is None:
            continue
        if not isinstance(value, Mapping):
            raise MassGenInputError(f"{nested} must be an object, not {type(value).__name__}")
        merged.update(value)
    merged.update(params)
    return merged


def parse_models(models: Any) -> list[AgentConfig]:
    example = 'for example models=["openai/gpt-5-mini", {"model": "anthropic/claude-haiku-4-5", "temperature": 0.3}]'
    if isinstance(models, (str, bytes)) or not isinstance(models, Sequence):
        raise MassGenInputError(f"models must be a list of model strings or agent objects, {example}")
    if not models:
        raise MassGenInputError(f"models is empty: give at least one participant, {example}")
    if len(models) > MAX_AGENTS:
        raise MassGenInputError(f"models has {len(models)} entries; at most {MAX_AGENTS} agents are allowed")
    agents = []
    for index, entry in enumerate(models):
        if isinstance(entry, str):
            entry = {"model": entry}
        if not isinstance(entry, Mapping):
            raise MassGenInputError(
                f"models[{index}] must be a model string or an object with a 'model' key, not {type(entry).__name__}"
            )
        try:
            agents.append(AgentConfig.model_validate(dict(entry)))
        except ValidationError as exc:
            raise MassGenInputError(describe_validation_error(exc, AgentConfig, f"models[{index}]")) from None
    return agents


def _check_client_models(models: Any, preset_name: str, policy: ClientPolicy) -> None:
    """A proxy client's `models`: each model on the preset's allow-list, each field one the preset lets it set."""
    where = f"the preset file {preset_name}.yaml"
    if not policy.models:
        raise MassGenInputError(
            f"models: a request through the proxy may not choose the agents of massgen/{preset_name}. The operator "
            f"can allow models by listing them under 'clients: models:' in {where}"
        )
    if isinstance(models, (str, bytes)) or not isinstance(models, Sequence):
        return  # parse_models says what is wrong with its shape
    for index, entry in enumerate(models):
        fields = {"model": entry} if isinstance(entry, str) else entry
        if not isinstance(fields, Mapping):
            continue
        model = fields.get("model")
        if isinstance(model, str) and not policy.allows_model(model):
            allowed = ", ".join(policy.models)
            raise MassGenInputError(
                f"models[{index}]: {model!r} is not a model a request through the proxy may choose here "
                f"(allowed: {allowed}); the operator sets them under 'clients: models:' in {where}"
            )
        for name in fields:
            # Unknown keys are left to parse_models, which names the keys there are.
            if name in AGENT_FIELDS and name not in policy.agent_fields:
                raise MassGenInputError(
                    f"models[{index}].{name}: a request through the proxy may not set it. The operator can allow it "
                    f"under 'clients: agent_fields:' in {where}"
                )
        headers = fields.get("extra_headers")
        secrets = {"api_key": fields.get("api_key")}
        if isinstance(headers, Mapping):
            secrets.update({f"extra_headers.{name}": value for name, value in headers.items()})
        for name, value in secrets.items():
            if isinstance(value, str) and value.startswith(ENV_KEY_PREFIX):
                raise MassGenInputError(
                    f"models[{index}].{name}: a request through the proxy may not name a server environment variable"
                )


def _check_client_limits(options: RunOptions, overrides: Mapping[str, Any], preset: Preset) -> None:
    """A proxy client may lower the preset's limits (a cheaper run), never raise them. `options` are the validated
    values of the `overrides` the client sent (so a number sent as a string is compared as the number it became)."""
    for name in LIMIT_OPTIONS:
        if name not in overrides:
            continue
        value = getattr(options, name)
        ceiling = getattr(preset, name)
        if ceiling is None:  # unlimited in the preset: any value is tighter
            continue
        if value is not None and value > ceiling:
            raise MassGenInputError(
                f"{name}={overrides[name]} is above this preset's {ceiling}: a request through the proxy may only "
                "lower the preset's limits"
            )


def _check_size(conversation: Sequence[Message], agents: Sequence[AgentConfig], options: RunOptions) -> None:
    """Refuse a conversation whose first round alone would spend the run's token budget."""
    chars = sum(len(str(message.get("content") or "")) for message in conversation)
    first_round = chars // _CHARS_PER_TOKEN * len(agents)
    if first_round > options.max_run_tokens:
        raise MassGenInputError(
            f"the conversation (about {chars // _CHARS_PER_TOKEN} tokens) sent to {len(agents)} agents would spend "
            f"more than max_run_tokens={options.max_run_tokens} in the first round alone; shorten it or use fewer "
            "agents"
        )


def agent_problems(agents: Sequence[AgentConfig], trusted: bool = True) -> list[str]:
    """What would make an agent fail on its first call, found before the run: a missing key, a missing extra, a model
    LiteLLM knows no provider for.

    An untrusted caller learns only that the agent is not usable: the names of the server's environment variables
    and files are not its business.
    """
    problems = []
    for index, agent in enumerate(agents):
        try:
            agent.resolved_api_key()
            agent.resolved_headers()
            if is_local_model(agent.model):
                from . import local_server  # loaded by the first request that has a local model

                local_server.check(agent.model)
            else:
                _known_provider(agent.model, agent.api_base)
        except _UnknownProvider as exc:  # the model string's own fault, said to any caller: it names no secret
            problems.append(f"agent {index + 1} ({agent.model}): {exc}")
        except LookupError as exc:
            cause = str(exc) if trusted else "it is not configured on the server; ask the operator"
            problems.append(f"agent {index + 1} ({agent.model}): {cause}")
    return problems


class _UnknownProvider(LookupError):
    pass


@functools.lru_cache(maxsize=256)  # a model that resolves once resolves again; a failure is not cached
def _known_provider(model: str, api_base: str | None) -> None:
    """Raise _UnknownProvider if LiteLLM cannot tell which provider serves `model` (the check its own calls start
    with), so that a typo is a 400 before the run instead of every agent failing in it."""
    try:
        litellm.get_llm_provider(model=model, api_base=api_base)
    except Exception:
        raise _UnknownProvider(
            "LiteLLM knows no provider for this model; write it as provider/model, for example openai/gpt-5-mini "
            "(the providers: https://docs.litellm.ai/docs/providers)"
        ) from None


def _check_agents(agents: Sequence[AgentConfig], trusted: bool) -> None:
    problems = agent_problems(agents, trusted)
    if problems:
        raise MassGenInputError(problems[0])


def check_messages(messages: Any) -> list[Message]:
    """The conversation as the agents get it: each message checked, and the reasoning on assistant messages left out.

    That reasoning is the team's own progress text handed back by the client (a reply of ours is the only one a
    massgen/ conversation holds), which no agent should read as the conversation, and which a provider would refuse
    as thinking it did not sign. What stays: every user, system and tool message, and each assistant message's text
    and tool calls; an assistant message that held nothing but reasoning is dropped.
    """
    example = 'for example messages=[{"role": "user", "content": "Your question"}]'
    if not isinstance(messages, Sequence) or isinstance(messages, (str, bytes)):
        raise MassGenInputError(f"messages must be a list of chat messages, {example}")
    if not messages:
        raise MassGenInputError(f"messages is empty: send at least one message, {example}")
    conversation = []
    for index, message in enumerate(messages):
        plain = message.model_dump(exclude_none=True) if hasattr(message, "model_dump") else message
        if not isinstance(plain, Mapping) or plain.get("role") not in _ROLES:
            raise MassGenInputError(f"messages[{index}] must be an object with a role ({', '.join(sorted(_ROLES))})")
        problem = _content_problem(plain)
        if problem:
            raise MassGenInputError(f"messages[{index}].content {problem}, {example}")
        message = _without_reasoning(plain) if plain["role"] == "assistant" else dict(plain)
        if message is not None:
            conversation.append(message)
    if not conversation:
        raise MassGenInputError(
            f"messages holds nothing but an assistant's reasoning; send the user's message, {example}"
        )
    if not any(_says_something(message) for message in conversation if message["role"] not in _INSTRUCTION_ROLES):
        # A team would spend a run of calls answering nothing (a system prompt alone is no question); most providers
        # refuse an empty message anyway.
        raise MassGenInputError(
            f"messages has no content: every user, assistant and tool message is empty; send the question, {example}"
        )
    return conversation


# Instructions to the model, not a conversation to answer.
_INSTRUCTION_ROLES = ("system", "developer")


def _says_something(message: Mapping[str, Any]) -> bool:
    """A message with text that is not blank, a non-text part (an image...), or tool calls."""
    if message.get("tool_calls") or message.get("function_call"):
        return True
    content = message.get("content")
    if isinstance(content, str):
        return bool(content.strip())
    return any(part.get("type") != "text" or part["text"].strip() for part in content or [])


def _without_reasoning(message: Mapping[str, Any]) -> Message | None:
    """An assistant message without reasoning fields or parts; None if it had nothing else."""
    kept = {name: value for name, value in message.items() if name not in _REASONING_FIELDS}
    content = kept.get("content")
    if isinstance(content, list):
        kept["content"] = [part for part in content if part.get("type") not in _REASONING_PARTS] or None
    if kept == message:
        return kept
    return kept if kept.get("content") or kept.get("tool_calls") or kept.get("function_call") else None


def _content_problem(message: Mapping[str, Any]) -> str | None:
    """What is wrong with a message's content, if anything: text, or a list of typed parts (text, images...)."""
    content = message.get("content")
    if isinstance(content, str):
        return None
    if content is None:
        # An assistant turn that only called tools has no content.
        return None if message.get("role") == "assistant" else "is missing"
    if isinstance(content, list):
        for part in content:
            if not isinstance(part, Mapping) or not isinstance(part.get("type"), str):
                return "must be a list of parts that each have a 'type'"
            if part["type"] == "text" and not isinstance(part.get("text"), str):
                return "has a text part without a 'text' string"
        return None
    return f"must be a string or a list of content parts, not {type(content).__name__}"
