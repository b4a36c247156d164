"""The words for what happens in a run: the progress lines streamed as reasoning content, and the DEBUG log's
one-line summaries. Every event gets a line: a stream chunk with no text is dropped by LiteLLM's stream wrapper
unless the client asked for usage, and the event data riding on it would go with it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .coordination import Event

_PREVIEW = 160


def start_line(agents: Sequence[Mapping[str, object]]) -> str:
    team = ", ".join(f"{agent['id']} ({agent['model']})" for agent in agents)
    return f"{len(agents)} agents at work: {team}\n"


def describe_event(event: Event, max_turns: int) -> str:
    who = event.agent_id
    if event.kind == "turn":
        return f"{who} is working (turn {event.detail})\n"
    if event.kind == "answer":
        return f"{who} answered ({event.target}): {shorten(event.detail, _PREVIEW)}\n"
    if event.kind == "vote":
        return f"{who} voted for {event.target}: {event.detail or '(no reason)'}\n"
    if event.kind == "void":
        return f"{who}'s vote for {event.target} no longer counts: {event.detail}\n"
    if event.kind == "turn_failed":
        return f"{who}'s turn could not be used: {event.detail}\n"
    if event.kind == "agent_failed":
        return f"{who} failed and was dropped: {event.detail}\n"
    if event.kind == "late":
        return f"{who} is late: {event.detail}\n"
    winner = f"{event.target}'s answer was chosen" if event.target else "no answer"
    return f"Done, {end_reason_text(event.detail, max_turns)}: {winner}.\n\n"


def end_reason_text(reason: str, max_turns: int | None = None) -> str:
    """Why a run ended (a `coordination.EndReason`), in words, for the progress lines, the live view and the report;
    a reason it does not know (from a newer record) as it is."""
    limit = f"their limit of {max_turns} turns" if max_turns else "their turn limit"
    return _END_REASONS.get(reason, reason).format(limit=limit)


_END_REASONS: dict[str, str] = {
    "consensus": "every agent has voted",
    "unanimous": "every agent gave the same first answer, so no vote was needed",
    "turn_limit": "the agents reached {limit}",
    "budget": "the run used up its calls or tokens (max_calls, max_run_tokens)",
    "timeout": "the run timed out",
    "all_failed": "every agent failed",
}


def shorten(text: str, limit: int) -> str:
    """`text` on one line, cut to `limit` characters with an ellipsis."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def summary(event: Event) -> str:
    """The DEBUG log's line for an event."""
    detail = shorten(event.detail, 80)
    return " ".join(part for part in (event.agent_id or "", event.target or "", detail) if part)


def summary_line(record: dict[str, Any]) -> str:
    """How a run ended, how its answer was chosen, tokens, cost and time, in one bracketed line."""
    return (
        f"[{record['end_reason']}: {_how_chosen(record)}; "
        f"{record['usage']['total_tokens']} tokens, ${record['cost']:.4f}, {record['duration_seconds']:.1f}s]"
    )


def _how_chosen(record: dict[str, Any]) -> str:
    winner = record["winner"]
    if record.get("chosen_by") == "unanimous":
        return f"every agent gave the same first answer, so {winner}'s was taken without a vote"
    if record.get("chosen_by") == "latest_informed":
        return f"no vote counted, so {winner}'s answer won as the latest one written after seeing the others'"
    if record.get("chosen_by") == "most_agreed":
        return f"no vote counted, so {winner}'s answer won as the one the other independent answers agree with most"
    return f"{winner} won the vote {record['tally']}"
