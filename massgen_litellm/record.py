"""The coordination record: everything a run did, attached to every response.

It never holds an API key: agents are described by id and model string only. Where it travels: `response.massgen`
(a dict: `RunRecord.model_dump(mode="json")`), the top-level `"massgen"` field of the proxy's JSON, the last answer
chunk of a stream, and, with `MASSGEN_LOG_DIR` set, one JSON file per run. Times are seconds (floats) since the run
started unless a field says otherwise; costs are US dollars as LiteLLM prices them; tokens are as providers report
them.
"""

from __future__ import annotations

import json
import os
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from .config import FinalStrategy, Protocol, RunOptions
from .coordination import ChosenBy, EndReason

RECORD_FIELD = "massgen"
"""The field that carries the record: `response.massgen`, `"massgen"` in the proxy's JSON, on a stream's last
answer chunk."""

LOG_DIR_ENV = "MASSGEN_LOG_DIR"

CallKind = Literal["turn", "retry", "present"]
# Times in a record are finite and bounded (no run outlives run_timeout's ceiling by much): a record is also read
# back from files, and a NaN or a huge time there must be an error, not a report that draws forever.
Seconds = Annotated[float, Field(ge=0, le=1_000_000, allow_inf_nan=False)]
Money = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class _Record(BaseModel):
    # Validators are built when a record is first made (the first run's first call), not when the package is
    # imported: a proxy or a command that starts and serves nothing does not pay for them.
    model_config = ConfigDict(defer_build=True)


class CallInfo(_Record):
    """One `litellm.acompletion` call made for the run.

    Attributes:
        agent_id: the anonymous id of the agent that made it (`agent1`, ...).
        kind: `turn` (an answer or a vote), `retry` (the corrective retry after an unusable reply) or `present`
            (the winner writing the final reply).
        turn: the agent's turn number, from 1; None for the presentation.
        seconds: how long the call took, LiteLLM's own retries included.
        prompt_tokens: as the provider reported them; 0 for a call that failed before its reply began. A streamed
            presentation that ended before its provider reported them (cut at max_answer_chars or at a `stop`
            sequence, stopped by the client, broken off, timed out) has LiteLLM's count (`token_counter`) of its
            prompt and of what arrived, and a note in `notes` says so.
        completion_tokens: the same, for the reply.
        error: why the call failed, redacted of keys; None if it succeeded.
    """

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


class AgentInfo(_Record):
    """One participant and what it did in the run.

    Attributes:
        id: its anonymous id, `agent1`, `agent2`, ... in the order of the preset's agents (or the request's `models`).
        model: its LiteLLM model string.
        protocol: how it answered and voted at the end of the run: `tools` or `text`.
        status: where it ended: `voted` (holds a valid vote), `exhausted` (out of turns, or stopped by a cap: see
            `error`), `failed` (a call failed after LiteLLM's retries: see `error`), `stopped` (still working when
            the run ended), or `working`.
        turns: turns taken (answers, votes and failed turns).
        answers: new answers given.
        failed_turns: turns whose reply could not be used, even after the corrective retry.
        busy_seconds: the sum of its calls' durations.
        calls: participant calls made, retries and the presentation included.
        cost: US dollars, the sum of its priced calls.
        error: why it failed, or which cap stopped it, redacted of keys; None otherwise.
    """

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


class ToolCallInfo(_Record):
    """One call of the caller's tools, as an answer proposes it: the tool's name and its arguments as a JSON text."""

    name: str
    arguments: str


class ToolWorkInfo(_Record):
    """A call an agent made of its own (MCP) tools, and what came back, cut to tool_result_chars."""

    tool: str
    arguments: str
    result: str
    error: bool = False


class AnswerInfo(_Record):
    """One answer, as given (after the `max_answer_chars` cut).

    Attributes:
        label: `<agent id>.<n>`: `agent1.2` is agent1's second answer.
        agent_id: its author.
        content: the answer's text (for a proposed action, the accompanying text and the calls as `CALL:` lines).
        at: when it was given, in seconds since the run started.
    """

    label: str
    agent_id: str
    content: str
    at: Seconds
    informed: bool = Field(False, description="Its author had seen another agent's answer.")
    tool_calls: list[ToolCallInfo] = Field(
        default_factory=list, description="A proposed action: calls of the caller's tools (never run by the team)."
    )
    work: list[ToolWorkInfo] = Field(default_factory=list, description="The agent's own tool calls behind it.")


class VoteInfo(_Record):
    """One vote, counted or voided.

    Attributes:
        voter: the agent that voted.
        target: the agent voted for (an agent id: a vote is for an agent's latest answer).
        reason: the voter's reason, as it gave it.
        at: when it was cast, in seconds since the run started.
        voided: True if it does not count: a new answer arrived after it, or it was cast on a view that had changed.
        voided_reason: why it was voided.
    """

    voter: str
    target: str
    reason: str
    at: Seconds
    voided: bool
    voided_reason: str | None = None


class UsageInfo(_Record):
    """Tokens over every participant call of the run, presentation included: the response's `usage` too."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    reasoning_tokens: int = Field(
        0, description="Of completion_tokens, the sum of what the participants' providers reported as reasoning."
    )


class RunRecord(_Record):
    """Everything one run did: the team, every answer, vote and call, the winner and why, tokens and cost.

    Attributes:
        run_id: a random hex id, also in the run's LiteLLM callback metadata (`massgen_run_id`) and its log line.
        preset: the preset's name (`build` for `massgen/build`).
        end_reason: why coordination stopped: `consensus` (every active agent holds a valid vote), `turn_limit`,
            `budget` (`max_calls` or `max_run_tokens` spent), `timeout` (`run_timeout`), or `all_failed`.
        winner: the winning agent's id; None if there was no answer.
        tally: counted votes per agent id.
        final: how the reply was made (the run's `final` option).
        agents: one entry per participant, in order.
        answers: every answer, in the order given.
        votes: every vote, voided ones included.
        calls: every participant call, in the order started.
        notes: what the run wants a reader to know: a cut reply, a failed presentation, an MCP server left out...
        ignored_params: parameters of the outer call that a run does not use (also logged as a warning).

    `RunRecord.model_validate(response.massgen)` turns the dict back into this model.
    """

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
        """Write the record as `<UTC time>-<run id>.json` in `directory` (created if missing), atomically: a
        temporary file, then a rename, so a reader never sees half a file. Returns the file's path.

        Raises:
            OSError: the directory cannot be created or written (the run itself only logs a warning then).
        """
        folder = Path(directory)
        folder.mkdir(parents=True, exist_ok=True)
        stamp = datetime.fromisoformat(self.started_at).strftime("%Y%m%dT%H%M%S%fZ")
        target = folder / f"{stamp}-{self.run_id}.json"
        fd, temporary = tempfile.mkstemp(dir=folder, prefix=f".{self.run_id}-", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                # ASCII with escapes: a reply may hold a lone surrogate ("\ud800", valid in JSON), which UTF-8 cannot
                # encode; escaped, it is written and read back as it was.
                out.write(json.dumps(self.model_dump(mode="json"), indent=2))
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return target

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> RunRecord:
        """Read a record file written by `save` (what `massgen-litellm report` renders).

        Raises:
            OSError: the file cannot be read.
            ValueError: it is not JSON.
            pydantic.ValidationError: it is not a run record (a field missing, a time that is NaN or out of range).
        """
        # Python's JSON reader, not pydantic's: a record may hold a lone surrogate, escaped by `save`, which
        # pydantic's refuses.
        return cls.model_validate(json.loads(Path(path).read_text(encoding="utf-8")))
