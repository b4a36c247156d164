"""Turning one LiteLLM call into a validated run request, or a `MassGenInputError` that says what to fix.

A request reaches us in three shapes, all accepted: `optional_params={"models": [...]}` (the seed's quickstart),
a plain keyword `models=[...]`, and `extra_body={"models": [...]}` from an OpenAI client through the proxy.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from . import local_server
from .config import MAX_AGENTS, RUN_OPTION_NAMES, SAMPLING_PARAMS, AgentConfig, RunOptions
from .errors import MassGenInputError, describe_validation_error
from .presets import PresetStore
from .protocol import Message

logger = logging.getLogger("massgen_litellm")

# Passed by LiteLLM or OpenAI clients on every call; they mean nothing to a coordination run.
_PLUMBING = frozenset(
    {"stream", "stream_options", "user", "metadata", "extra_headers", "max_retries", "drop_params", "api_version"}
)
# Features a coordination run cannot honour: refused rather than dropped, so the caller is not misled.
_UNSUPPORTED = {
    "tools": "client tools are not supported: the agents' tools are the coordination's own",
    "functions": "client functions are not supported: the agents' tools are the coordination's own",
    "tool_choice": "tool_choice is not supported: the agents' tools are the coordination's own",
    "function_call": "function_call is not supported: the agents' tools are the coordination's own",
}
_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})


@dataclass
class RunRequest:
    preset: str
    agents: list[AgentConfig]
    options: RunOptions
    conversation: list[Message]
    sampling: dict[str, Any]
    ignored_params: list[str] = field(default_factory=list)


def build_request(
    preset_name: str,
    messages: Sequence[Any],
    optional_params: Mapping[str, Any],
    store: PresetStore,
    outer_timeout: float | None = None,
) -> RunRequest:
    conversation = _check_messages(messages)
    preset = store.load(preset_name)
    params = _merge_params(optional_params)

    for name, why in _UNSUPPORTED.items():
        if params.get(name):
            raise MassGenInputError(f"{why}. Remove '{name}' from the request.")
    if params.get("n") not in (None, 1):
        raise MassGenInputError("n must be 1: a coordination run produces one voted answer")

    agents = parse_models(params["models"]) if params.get("models") is not None else list(preset.agents)
    _check_agents(agents)

    overrides = {name: params[name] for name in RUN_OPTION_NAMES if params.get(name) is not None}
    try:
        options = RunOptions.model_validate({**preset.options().model_dump(), **overrides})
    except ValidationError as exc:
        raise MassGenInputError(f"invalid run option: {describe_validation_error(exc, RunOptions, '')}") from None
    if outer_timeout and outer_timeout < options.run_timeout:
        # The caller's own timeout bounds the whole call, so the run must end (and answer) before it does.
        options = options.model_copy(update={"run_timeout": float(outer_timeout)})

    sampling = {name: params[name] for name in SAMPLING_PARAMS if params.get(name) is not None}
    known = {"models", "n", *RUN_OPTION_NAMES, *SAMPLING_PARAMS, *_PLUMBING, *_UNSUPPORTED}
    ignored = sorted(name for name in params if name not in known)
    if ignored:
        logger.warning("massgen/%s: ignoring parameters a coordination run does not use: %s", preset_name, ignored)
    return RunRequest(preset_name, agents, options, conversation, sampling, ignored)


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


def agent_problems(agents: Sequence[AgentConfig]) -> list[str]:
    """What would make an agent fail on its first call, found before the run: a missing key, a missing extra."""
    problems = []
    for index, agent in enumerate(agents):
        try:
            agent.resolved_api_key()
            if local_server.is_local(agent.model):
                local_server.check(agent.model)
        except LookupError as exc:
            problems.append(f"agent {index + 1} ({agent.model}): {exc}")
    return problems


def _check_agents(agents: Sequence[AgentConfig]) -> None:
    problems = agent_problems(agents)
    if problems:
        raise MassGenInputError(problems[0])


def _check_messages(messages: Any) -> list[Message]:
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
        conversation.append(dict(plain))
    return conversation
