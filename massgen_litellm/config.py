"""The shapes of configuration: an agent, the run options, a preset.

Every shape forbids unknown keys, so a typo in a preset or a request is an error that names the key instead of a
setting that silently does nothing.
"""

from __future__ import annotations

import os
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

MAX_AGENTS = 32

# Sampling parameters an agent may set for itself and a request may set for all agents.
SAMPLING_PARAMS = ("temperature", "top_p", "max_tokens", "max_completion_tokens", "reasoning_effort", "seed")

ENV_KEY_PREFIX = "os.environ/"


class AgentConfig(BaseModel):
    """One participant: a LiteLLM model string plus what LiteLLM needs to call it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(min_length=1, max_length=512, description="Any LiteLLM model string.")
    system_message: str | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    max_tokens: int | None = Field(None, gt=0)
    max_completion_tokens: int | None = Field(None, gt=0)
    reasoning_effort: str | None = None
    seed: int | None = None
    api_base: str | None = None
    # SecretStr keeps a literal key out of reprs, dumps and error messages.
    api_key: SecretStr | None = None
    num_retries: int | None = Field(None, ge=0, le=10)
    protocol: Literal["tools", "text"] | None = Field(
        None, description="How the agent answers and votes; default: tools when LiteLLM says the model can call them."
    )

    @field_validator("model")
    @classmethod
    def _no_blank_model(cls, value: str) -> str:
        if not value.strip() or value != value.strip():
            raise ValueError("must be a LiteLLM model string such as 'openai/gpt-5-mini', without spaces around it")
        return value

    def resolved_api_key(self) -> str | None:
        """The key to send: LiteLLM's `os.environ/NAME` form is read from the environment at call time."""
        if self.api_key is None:
            return None
        raw = self.api_key.get_secret_value()
        if not raw.startswith(ENV_KEY_PREFIX):
            return raw
        name = raw[len(ENV_KEY_PREFIX) :]
        value = os.environ.get(name)
        if not value:
            raise LookupError(f"api_key names the environment variable {name}, which is not set")
        return value

    def sampling(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in SAMPLING_PARAMS if getattr(self, name) is not None}


class RunOptions(BaseModel):
    """The limits and the ending of a run: set by a preset, overridable per request."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_answers_per_agent: int = Field(2, ge=1, le=20, description="After this many answers an agent may only vote.")
    max_turns_per_agent: int = Field(6, ge=1, le=50, description="Turns (answers, votes, failed turns) per agent.")
    run_timeout: float = Field(300.0, gt=0, le=86_400, description="Wall-clock seconds for the whole coordination.")
    call_timeout: float = Field(120.0, gt=0, le=86_400, description="Seconds for one participant call.")
    final: Literal["present", "winner_answer"] = Field(
        "present", description="present: the winner writes the final reply; winner_answer: its answer verbatim."
    )


RUN_OPTION_NAMES = tuple(RunOptions.model_fields)


class Preset(RunOptions):
    """A named team: `presets/<name>.yaml`."""

    description: str = ""
    agents: list[AgentConfig] = Field(min_length=1, max_length=MAX_AGENTS)

    def options(self) -> RunOptions:
        return RunOptions.model_validate({name: getattr(self, name) for name in RUN_OPTION_NAMES})
