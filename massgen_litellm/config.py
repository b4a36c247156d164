"""The shapes of configuration: an agent, the run options, a preset.

Every shape forbids unknown keys, so a typo in a preset or a request is an error that names the key instead of a
setting that silently does nothing. A preset file is validated as `Preset` (by `presets.load_preset_file`), a
request's `models` entries as `AgentConfig`, its run options as `RunOptions`; a `pydantic.ValidationError` there
becomes a `litellm.BadRequestError` (400) naming the key path. The presets' JSON Schema is generated from these
models (`massgen-litellm schema`), so the descriptions here are also what an editor shows.
"""

from __future__ import annotations

import fnmatch
import functools
import os
from collections.abc import Callable, Sequence
from typing import Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StrictInt,
    ValidationInfo,
    field_validator,
    model_validator,
)

MAX_AGENTS = 32
# Far above any model's output limit; a bound so that no request can ask a provider for an absurd reply.
MAX_REPLY_TOKENS = 1_000_000

ENV_KEY_PREFIX = "os.environ/"
# `local/<name>`: a model served on this machine by the embedded llama.cpp server (local_server.py), which is loaded
# only for such a model.
LOCAL_MODEL_PREFIX = "local/"
# LiteLLM's retries for an agent that sets none, made explicit so that the run's max_calls can count what is sent.
# LiteLLM 1.110 may send up to 1 + 2 x num_retries requests for one call (measured: its first attempt's client
# retries, then its own retry loop), so 1 keeps the worst case at three requests, what the OpenAI SDK did by itself.
DEFAULT_NUM_RETRIES = 1

# How an agent answers and votes: by calling tools, or in plain text (for models without function calling).
Protocol = Literal["tools", "text"]


_NUMBERS = (int, float, int | None, float | None)


class _Settings(BaseModel):
    @field_validator("*", mode="before")
    @classmethod
    def _numbers_not_flags(cls, value: Any, info: ValidationInfo) -> Any:
        # pydantic reads true as 1, and YAML reads `yes` and `on` as true: `max_calls: yes` would quietly allow one
        # request. A setting that is a number takes none of them.
        if isinstance(value, bool) and cls.model_fields[info.field_name or ""].annotation in _NUMBERS:
            raise ValueError("must be a number, not true or false")
        return value


class Sampling(_Settings):
    """How a model samples: set per agent, or on the outer call for every agent that does not set its own.

    Types and ranges are checked here, before any call, so that `temperature: "hot"` or `max_tokens: -1` is a 400
    naming the field rather than a provider error (or worse, a value some provider silently accepts).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    temperature: float | None = Field(None, ge=0, le=2, description="0 to 2 (the OpenAI API's range).")
    top_p: float | None = Field(None, ge=0, le=1, description="Nucleus sampling, 0 to 1.")
    max_tokens: StrictInt | None = Field(
        None, gt=0, le=MAX_REPLY_TOKENS, description="The most tokens one reply of the agent may have."
    )
    max_completion_tokens: StrictInt | None = Field(
        None, gt=0, le=MAX_REPLY_TOKENS, description="The same bound, reasoning tokens included (OpenAI's newer name)."
    )
    reasoning_effort: Literal["none", "minimal", "low", "medium", "high", "xhigh"] | None = Field(
        None, description="For reasoning models; LiteLLM maps it to each provider's own setting."
    )
    seed: StrictInt | None = Field(
        None, ge=-(2**63), lt=2**63, description="A signed 64-bit integer, for providers that sample reproducibly."
    )

    def sampling(self) -> dict[str, object]:
        """The parameters that are set, by name, as LiteLLM takes them: `{"temperature": 0.2, ...}`."""
        return {name: getattr(self, name) for name in SAMPLING_PARAMS if getattr(self, name) is not None}


SAMPLING_PARAMS = tuple(Sampling.model_fields)


class AgentConfig(Sampling):
    """One participant: a LiteLLM model string plus what LiteLLM needs to call it.

    Every field but `model` is optional and passed to `litellm.acompletion` as LiteLLM names it. Through a proxy, a
    request's `models` entries may set only the fields the preset's `clients.agent_fields` lists.
    """

    model: str = Field(
        min_length=1,
        max_length=512,
        description="Any LiteLLM model string (provider/model, e.g. openai/gpt-5-mini), or local/smollm2.",
    )
    system_message: str | None = Field(
        None, max_length=100_000, description="Sent as a system message before the caller's conversation."
    )
    api_base: str | None = Field(None, description="The provider's base URL, e.g. an OpenAI-compatible server's /v1.")
    # SecretStr keeps a literal key out of reprs, dumps and error messages.
    api_key: SecretStr | None = Field(
        None,
        description="A key, or os.environ/NAME (read at call time). Default: LiteLLM's own variable for the provider.",
    )
    api_version: str | None = Field(None, description="Azure OpenAI's API version, and others'.")
    extra_headers: dict[str, str] | None = Field(
        None, description="Sent with every call; values may be os.environ/NAME, read at call time."
    )
    extra_body: dict[str, Any] | None = Field(None, description="Provider-specific fields merged into the body.")
    thinking: dict[str, Any] | None = Field(None, description='Extended thinking, e.g. {"type": "enabled", ...}.')
    drop_params: bool | None = Field(None, description="Let LiteLLM drop parameters the provider does not take.")
    num_retries: int | None = Field(None, ge=0, le=10, description=f"default {DEFAULT_NUM_RETRIES}")
    protocol: Protocol | Literal["auto"] | None = Field(
        None,
        description="How the agent answers and votes. auto (the default): tools, unless LiteLLM knows the model has "
        "no function calling; an agent whose provider refuses tools, or whose tool replies keep failing, switches to "
        "text for the rest of the run.",
    )

    @field_validator("model")
    @classmethod
    def _no_blank_model(cls, value: str) -> str:
        if not value.strip() or value != value.strip():
            raise ValueError("must be a LiteLLM model string such as 'openai/gpt-5-mini', without spaces around it")
        return value

    @property
    def retries(self) -> int:
        """LiteLLM's retries for this agent's calls: `num_retries`, or DEFAULT_NUM_RETRIES (1) when unset."""
        return DEFAULT_NUM_RETRIES if self.num_retries is None else self.num_retries

    @property
    def requests_per_call(self) -> int:
        """The most upstream requests one LiteLLM call of this agent may send (see DEFAULT_NUM_RETRIES)."""
        return 1 + 2 * self.retries

    def resolved_headers(self) -> dict[str, str]:
        """`extra_headers` with `os.environ/NAME` values read from the environment (often a key: never echoed).

        Raises:
            LookupError: a named variable is unset (the message names the variable, never a value).
        """
        return {name: _from_env(value, f"extra_headers.{name}") for name, value in (self.extra_headers or {}).items()}

    def resolved_api_key(self) -> str | None:
        """The key to send: LiteLLM's `os.environ/NAME` form is read from the environment at call time.

        Raises:
            LookupError: the named variable is unset (the message names the variable, never a value).
        """
        if self.api_key is None:
            return None
        return _from_env(self.api_key.get_secret_value(), "api_key")


# present: the winner writes the final reply from its answer; synthesize: the winner writes it from every final
# answer; winner_answer: the winner's answer, verbatim.
FinalStrategy = Literal["present", "synthesize", "winner_answer"]
# MassGen's three levels, for how critical a vote must be and how new a new answer must be.
Strictness = Literal["lenient", "balanced", "strict"]


_Frozen = TypeVar("_Frozen", bound=BaseModel)
_Made = TypeVar("_Made")


def once_per_object(make: Callable[[_Frozen], _Made]) -> Callable[[_Frozen], _Made]:
    """`make(model)`, made once per frozen model object and then shared: what is made of a preset or an agent entry
    on every request. The preset store hands every request the same objects while a file is unchanged. Kept by
    identity, with the object itself so that its id is not reused, and a copy (`model_copy`) is another object: it
    gets its own. What is made must not be changed by those it is shared with."""
    kept: dict[int, tuple[_Frozen, _Made]] = {}

    @functools.wraps(make)
    def made(model: _Frozen) -> _Made:
        hit = kept.get(id(model))
        if hit is not None and hit[0] is model:
            return hit[1]
        value = make(model)
        if len(kept) >= 256:  # presets edited many times over: the old objects go
            kept.clear()
        kept[id(model)] = (model, value)
        return value

    return made


def is_local_model(model: str) -> bool:
    return model.startswith(LOCAL_MODEL_PREFIX)


def _from_env(value: str, field: str) -> str:
    """LiteLLM's `os.environ/NAME` form, read now; any other value as it is."""
    if not value.startswith(ENV_KEY_PREFIX):
        return value
    name = value[len(ENV_KEY_PREFIX) :]
    found = os.environ.get(name)
    if not found:
        raise LookupError(f"{field} names the environment variable {name}, which is not set")
    return found


class RunOptions(_Settings):
    """The limits and the ending of a run: set by a preset, overridable per request (a proxy client may only
    tighten them: `LIMIT_OPTIONS` lower, `final` freely).

    Times are in seconds, sizes in characters, budgets in upstream requests and tokens. How each limit acts on a run
    is in the docs' How a run works, item 6; the per-request caps (`max_calls`, `max_run_tokens`,
    `max_answer_chars`) are what bounds one request's cost on a shared proxy.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_answers_per_agent: int = Field(2, ge=1, le=20, description="After this many answers an agent may only vote.")
    max_turns_per_agent: int = Field(
        6, ge=1, le=50, description="Turns (answers, votes, failed turns) per agent; then it stops."
    )
    run_timeout: float = Field(
        300.0,
        gt=0,
        le=86_400,
        description="Wall-clock seconds for the whole run, presentation included (and at most the outer call's "
        "timeout); when it is up, the voted answer is returned verbatim.",
    )
    call_timeout: float = Field(
        120.0,
        gt=0,
        le=86_400,
        description="Seconds for one participant call, LiteLLM's retries included, and for the streamed "
        "presentation as a whole; an agent that misses it is dropped like a failed one.",
    )
    final: FinalStrategy = Field(
        "present",
        description="present: the winner writes the final reply; synthesize: the winner combines every final "
        "answer; winner_answer: its answer verbatim.",
    )
    voting_sensitivity: Strictness = Field(
        "lenient", description="How critical agents are told to be before they vote (MassGen's setting)."
    )
    answer_novelty_requirement: Strictness = Field(
        "lenient",
        description="How new a new answer must be: balanced refuses one that shares over 70% of its words with an "
        "answer shown, strict over 50% (MassGen's setting).",
    )
    skip_voting_when_unanimous: bool = Field(
        True,
        description="End the run after round one when every active agent's first answer is the same (the same calls "
        "of the caller's tools with equal arguments, or the same text up to whitespace and case): no vote could "
        "change the outcome. A proxy client may set it either way: neither value lets a run past the preset's caps.",
    )
    max_new_answers_global: int | None = Field(
        None, ge=1, le=1000, description="New answers across all agents; then they may only vote. Default: no cap."
    )
    initial_round_timeout_seconds: float | None = Field(
        None,
        gt=0,
        le=86_400,
        description="Seconds round one may last (plus the grace) before a longer turn is late and no longer waited "
        "for; default: none, every agent is waited for (MassGen's setting).",
    )
    subsequent_round_timeout_seconds: float | None = Field(
        None, gt=0, le=86_400, description="The same, for each round after a new answer (MassGen's setting)."
    )
    round_timeout_grace_seconds: float = Field(
        0.0, ge=0, le=3_600, description="Seconds added to each round's timeout (MassGen's setting)."
    )
    counterbalance_answer_order: bool = Field(
        True, description="Each agent sees the answers in an order rotated by its position (less position bias)."
    )
    max_calls: int = Field(
        150,
        ge=1,
        le=10_000,
        description="Upstream requests per run: every participant call counts 1 + 2 x its num_retries, "
        "corrections and the presentation included.",
    )
    max_run_tokens: int = Field(
        1_000_000, ge=1, le=100_000_000, description="Tokens (prompt + completion, as reported) per run."
    )
    max_answer_chars: int = Field(
        40_000, ge=100, le=10_000_000, description="A reply longer than this is cut to it, streamed ones too."
    )
    max_tool_calls_per_turn: int = Field(
        5, ge=0, le=50, description="Calls of the agents' own (MCP) tools one turn may make before it must answer."
    )
    tool_timeout: float = Field(30.0, gt=0, le=3600, description="Seconds for one call of an MCP tool.")
    server_start_timeout: float = Field(
        60.0,
        gt=0,
        le=3600,
        description="Seconds an MCP server may take to start and list its tools (an `npx -y` server fetches its "
        "package on first start), apart from tool_timeout; never more than the run's run_timeout.",
    )
    tool_result_chars: int = Field(
        4_000, ge=100, le=1_000_000, description="A tool result is cut to this, for the agent and for the others."
    )
    enable_live_progress: bool = Field(
        False,
        description="Stream the progress lines while the agents work. Off (the default): a stream sends its first "
        "chunk only once the run has an answer, so that LiteLLM's router can still answer a run that fails with a "
        "fallback model; on: progress at once, but a stream whose run fails ends in an error. Any caller may set "
        "it: it changes only how its own reply is delivered.",
    )


RUN_OPTION_NAMES = tuple(RunOptions.model_fields)
# Options where a smaller value is the tighter limit; a proxy client may lower them, never raise them.
LIMIT_OPTIONS = (
    "max_answers_per_agent",
    "max_turns_per_agent",
    "run_timeout",
    "call_timeout",
    "max_calls",
    "max_run_tokens",
    "max_answer_chars",
    "max_tool_calls_per_turn",
    "tool_timeout",
    "server_start_timeout",
    "tool_result_chars",
    "max_new_answers_global",
    "initial_round_timeout_seconds",
    "subsequent_round_timeout_seconds",
    "round_timeout_grace_seconds",
)

# Agent fields that choose a host, a credential or more upstream requests: a proxy client may set them only where a
# preset's `clients.agent_fields` names them.
SERVER_SIDE_AGENT_FIELDS = ("api_base", "api_key", "num_retries", "api_version", "extra_headers", "extra_body")
AGENT_FIELDS = tuple(name for name in AgentConfig.model_fields if name != "model")
AgentField = Literal[AGENT_FIELDS]  # type: ignore[valid-type]


class ClientPolicy(BaseModel):
    """What a request arriving through a LiteLLM proxy may choose, for one preset.

    Only a preset (a file on the server) sets this: the request itself is what it constrains.
    """

    # Built into Preset's validator; its own is built when first used on its own (some requests only).
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    models: list[str] = Field(
        default_factory=list,
        description="Patterns (fnmatch) of the model strings a request's `models` may name; empty: the request may "
        "not replace the agents. `massgen/` models are never allowed: a nested run would escape this run's caps.",
    )
    agent_fields: list[AgentField] = Field(
        default_factory=lambda: [f for f in AGENT_FIELDS if f not in SERVER_SIDE_AGENT_FIELDS],
        description="Agent fields a request's `models` entries may set besides `model`.",
    )

    def allows_model(self, model: str) -> bool:
        """Whether a request may name `model`: it matches a pattern of `models`, and is not a `massgen/` model."""
        if model.startswith("massgen/"):
            return False
        return any(fnmatch.fnmatchcase(model, pattern) for pattern in self.models)


class McpServer(BaseModel):
    """An MCP server whose tools agents may call: a command on this machine (stdio) or a URL (streamable HTTP).

    Only a preset, a file on the server, declares one; no request can add a server, a command or a URL.
    `env` and `headers` values may be `os.environ/NAME`, read when the server starts.
    """

    # Built into Preset's validator; its own is built when first used on its own (some requests only).
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    name: str = Field(
        pattern=r"^[A-Za-z][A-Za-z0-9_-]{0,23}$",
        description="Prefix of its tools' names (name__tool): a letter, then up to 23 letters, digits, - and _.",
    )
    command: str | None = Field(None, description="A stdio server: the program to start (give command or url).")
    args: list[str] = Field(default_factory=list, description="The command's arguments.")
    env: dict[str, str] = Field(
        default_factory=dict, description="Variables added to the server's environment; values may be os.environ/NAME."
    )
    url: str | None = Field(None, pattern=r"^https?://", description="A streamable HTTP server: its http(s) URL.")
    headers: dict[str, str] = Field(
        default_factory=dict, description="Sent to the URL; values may be os.environ/NAME (often a key: masked)."
    )
    tools: list[str] | None = Field(None, description="The server's tools agents may call; default: all.")
    per_run: bool = Field(
        False, description="A fresh server for every run (a stateful server); default: one per process, reused."
    )

    @model_validator(mode="after")
    def _one_transport(self) -> McpServer:
        if (self.command is None) == (self.url is None):
            raise ValueError("give either command (a stdio server) or url (a streamable HTTP server)")
        if self.command is None and (self.args or self.env):
            raise ValueError("args and env go with command")
        if self.url is None and self.headers:
            raise ValueError("headers go with url")
        return self


# The filesystem MCP servers that serve a preset's context paths take these names (see context_paths.py).
CONTEXT_SERVER_NAMES = ("files", "files_rw")


class ContextPath(BaseModel):
    """A directory on the machine that runs the team, which every agent may read (`mode: ro`, the default) or read
    and write (`mode: rw`) through the filesystem MCP server. Only the process that runs the team sets these (a
    preset, or `--context-path` / `register_with_litellm(context_paths=...)`): never a request.
    """

    # Built into Preset's validator; its own is built when first used on its own (some requests only).
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    path: str = Field(min_length=1, description="An absolute directory path (~ is expanded).")
    mode: Literal["ro", "rw"] = Field("ro", description="ro: read only (the default); rw: read and write.")

    @field_validator("path")
    @classmethod
    def _absolute(cls, value: str) -> str:
        expanded = os.path.expanduser(value)
        if not os.path.isabs(expanded):
            raise ValueError(f"must be an absolute directory path, not {value!r}")
        return os.path.normpath(expanded)

    @classmethod
    def parse(cls, option: str) -> ContextPath:
        """`DIR`, `DIR:ro` or `DIR:rw`, as `--context-path` takes it; a relative DIR is taken from the working
        directory. Raises ValueError naming the problem."""
        path, mode = option, "ro"
        for suffix in (":ro", ":rw"):
            if option.endswith(suffix):
                path, mode = option[: -len(suffix)], suffix[1:]
        if not path:
            raise ValueError(f"{option!r} names no directory; give DIR, DIR:ro or DIR:rw")
        return cls(path=os.path.abspath(os.path.expanduser(path)), mode=mode)  # type: ignore[arg-type]


class PresetAgent(AgentConfig):
    """An agent as a preset declares it: it may have MCP servers of its own, which a request's agents may not."""

    mcp_servers: list[McpServer] = Field(
        default_factory=list, description="This agent's own servers, besides the preset's."
    )


class Preset(RunOptions):
    """A named team: `<name>.yaml` in a presets directory, served as `massgen/<name>`.

    The agents, plus every run option (the limits and the ending, with the defaults of `RunOptions`), what a proxy
    client may choose (`clients`) and the agents' MCP servers. Loaded by `presets.load_preset_file`, which turns a
    validation error into a `MassGenInputError` naming the file and the key path.
    """

    description: str = Field("", description="What this team is for; shown by massgen-litellm presets and check.")
    agents: list[PresetAgent] = Field(
        min_length=1, max_length=MAX_AGENTS, description="The team: 1 to 32 agents, in order (ties go to the first)."
    )
    clients: ClientPolicy = Field(
        default_factory=ClientPolicy, description="What a request through a LiteLLM proxy may choose."
    )
    mcp_servers: list[McpServer] = Field(default_factory=list, description="Servers every agent may use.")
    context_paths: list[ContextPath] = Field(
        default_factory=list, description="Directories every agent may read (ro) or read and write (rw)."
    )
    enable_cache: bool = Field(
        True,
        description="Whether LiteLLM's response cache (where the caller or the proxy has one) may answer a repeated "
        "request without a run. False: every request runs the team, and its reply is not stored. Only the preset "
        "sets it; a request cannot turn it back on.",
    )

    @model_validator(mode="after")
    def _unique_server_names(self) -> Preset:
        for agent in self.agents:
            names = [server.name for server in [*self.mcp_servers, *agent.mcp_servers]]
            if len(names) != len(set(names)):
                raise ValueError(f"MCP server names must be unique for each agent: {names}")
            taken = sorted(set(names) & set(CONTEXT_SERVER_NAMES))
            if self.context_paths and taken:
                raise ValueError(
                    f"the MCP server name {taken[0]!r} is taken by the context paths' file server; rename yours"
                )
        return self

    @model_validator(mode="after")
    def _context_paths_keep_their_modes(self) -> Preset:
        seen: dict[str, str] = {}
        for entry in self.context_paths:
            if seen.setdefault(entry.path, entry.mode) != entry.mode:
                raise ValueError(f"context_paths: {entry.path} is given both read-only and read-write; keep one")
        writable = [e.path for e in self.context_paths if e.mode == "rw"]
        for entry in self.context_paths:
            outer = next((w for w in writable if entry.mode == "ro" and _inside(entry.path, w)), None)
            if outer is not None:
                # The read-write server would reach it: a read-only path there could not stay read-only.
                raise ValueError(
                    f"context_paths: {entry.path} is read-only but inside the read-write {outer}; make it rw or move it"
                )
        return self

    def with_context_paths(self, paths: Sequence[ContextPath]) -> Preset:
        """This preset with `paths` added; a directory given again takes its new mode. Raises pydantic's
        ValidationError if the result breaks a rule (a read-only path inside a read-write one)."""
        if not paths:
            return self
        chosen = {entry.path: entry for entry in [*self.context_paths, *paths]}
        return Preset.model_validate({**self.model_dump(), "context_paths": list(chosen.values())})

    def servers_for(self, agent: AgentConfig) -> list[McpServer]:
        """The MCP servers `agent` may use: the preset's, then its own (a request's agents have none of their own)."""
        own = agent.mcp_servers if isinstance(agent, PresetAgent) else []
        return [*self.mcp_servers, *own]

    def options(self) -> RunOptions:
        """The preset's run options alone, as the `RunOptions` a request's overrides are applied to."""
        return _options_of(self)


@once_per_object
def _options_of(preset: Preset) -> RunOptions:
    return RunOptions.model_validate({name: getattr(preset, name) for name in RUN_OPTION_NAMES})


def _inside(path: str, directory: str) -> bool:
    """Whether `path` is `directory` or below it, symbolic links resolved as the file server resolves them."""
    real, outer = os.path.realpath(path), os.path.realpath(directory)
    return os.path.commonpath([real, outer]) == outer
