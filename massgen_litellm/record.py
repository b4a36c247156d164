"""The coordination record: everything a run did, attached to every response.

It never holds an API key: agents are described by id and model string only.
"""

from __future__ import annotations

import os
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, Field

from .config import FinalStrategy, Protocol, RunOptions
from .coordination import ChosenBy, EndReason

LOG_DIR_ENV = "MASSGEN_LOG_DIR"

CallKind = Literal["turn", "retry", "present"]
# Times in a record are finite and bounded (no run outlives run_timeout's ceiling by much): a record is also read
# back from files, and a NaN or a huge time there must be an error, not a report that draws forever.
Seconds = Annotated[float, Field(ge=0, le=1_000_000, allow_inf_nan=False)]
Money = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class CallInfo(BaseModel):
    """One `litellm.acompletion` call made for the run."""

    agent_id: str
    kind: CallKind
    turn: int | None = None
    started_at: Seconds = Field(description="Seconds since the run started.")
    seconds: Seconds
    prompt_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = Field(
        default=0, description="Of completion_tokens, those the provider reported as reasoning."
    )
    cost: Money | None = Field(None, description="LiteLLM's price for the call; None where it knows no price.")
    error: str | None = None


class AgentInfo(BaseModel):
    id: str
    model: str
    protocol: Protocol
    protocol_note: str | None = Field(None, description="Why an auto agent switched protocol, if it did.")
    status: str
    turns: int
    answers: int
    failed_turns: int
    busy_seconds: Seconds
    calls: int
    prompt_tokens: int
    completion_tokens: int
    cost: Money
    error: str | None = None


class ToolCallInfo(BaseModel):
    name: str
    arguments: str


class ToolWorkInfo(BaseModel):
    """A call an agent made of its own (MCP) tools, and what came back, cut to tool_result_chars."""

    tool: str
    arguments: str
    result: str
    error: bool = False


class AnswerInfo(BaseModel):
    label: str
    agent_id: str
    content: str
    at: Seconds
    informed: bool = Field(False, description="Its author had seen another agent's answer.")
    tool_calls: list[ToolCallInfo] = Field(
        default_factory=list, description="A proposed action: calls of the caller's tools (never run by the team)."
    )
    work: list[ToolWorkInfo] = Field(default_factory=list, description="The agent's own tool calls behind it.")


class VoteInfo(BaseModel):
    voter: str
    target: str
    reason: str
    at: Seconds
    voided: bool
    voided_reason: str | None = None


class UsageInfo(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    reasoning_tokens: int = Field(
        0, description="Of completion_tokens, the sum of what the participants' providers reported as reasoning."
    )


class RunRecord(BaseModel):
    run_id: str
    preset: str
    started_at: str = Field(description="UTC, ISO 8601.")
    duration_seconds: Seconds
    end_reason: EndReason
    winner: str | None
    chosen_by: ChosenBy | None = Field(
        None, description="votes; or, with no valid vote, latest_informed or most_agreed (see How a run works)."
    )
    tally: dict[str, int]
    final: FinalStrategy
    presented_by: str | None = Field(None, description="The agent that wrote the final reply; None if verbatim.")
    agents: list[AgentInfo]
    answers: list[AnswerInfo]
    votes: list[VoteInfo]
    calls: list[CallInfo]
    usage: UsageInfo
    cost: Money = Field(description="Sum of the priced calls' costs.")
    unpriced_calls: int = Field(0, description="Calls LiteLLM knew no price for, left out of `cost`.")
    ignored_params: list[str] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    trusted: bool = Field(True, description="False: the request came through a proxy, under the preset's client rules.")
    cache_hit: bool = Field(
        default=False,
        description="True: LiteLLM's cache served this reply (through the proxy); the rest is the first run's.",
    )
    options: RunOptions | None = Field(None, description="The limits the run ran under.")
    requests_reserved: int = Field(
        0, description="Upstream requests taken from max_calls (1 + 2 x num_retries a call)."
    )

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write the record as `<UTC time>-<run id>.json`, atomically: a reader never sees half a file."""
        folder = Path(directory)
        folder.mkdir(parents=True, exist_ok=True)
        stamp = datetime.fromisoformat(self.started_at).strftime("%Y%m%dT%H%M%S%fZ")
        target = folder / f"{stamp}-{self.run_id}.json"
        fd, temporary = tempfile.mkstemp(dir=folder, prefix=f".{self.run_id}-", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(self.model_dump_json(indent=2))
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return target

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> RunRecord:
        return cls.model_validate_json(Path(path).read_text(encoding="utf-8"))
