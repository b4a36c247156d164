"""One coordination run for one request: participants, the coordinator, the final presentation and the record."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import time
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing
from datetime import datetime, timezone
from operator import itemgetter
from typing import TYPE_CHECKING, Any, NamedTuple

from . import memory, stops
from .budget import Budget
from .config import McpServer, RunOptions, once_per_object
from .coordination import Action, Coordinator, Event, Limits, NewAnswer, Outcome, ToolCall, View
from .errors import PROVIDER, all_agents_failed, no_answer, run_timed_out
from .events import describe_event, start_line, summary
from .participant import Participant
from .protocol import presentation_messages
from .record import LOG_DIR_ENV, RunRecord
from .request import RunRequest

if TYPE_CHECKING:
    from .config import McpServer
    from .mcp_tools import ToolBox

logger = logging.getLogger("massgen_litellm")


class Progress(NamedTuple):
    """Something the agents did: `text` is the line streamed as reasoning content, `event` the same thing as data,
    for live views."""

    text: str
    event: dict[str, object]


class Content(NamedTuple):
    text: str


class Calls(NamedTuple):
    """The winning proposed action: calls of the caller's tools, for it to run."""

    calls: tuple[ToolCall, ...]


class Run:
    def __init__(self, request: RunRequest, parent_call_id: str | None = None, trace_id: str | None = None) -> None:
        """`parent_call_id` and `trace_id`: the outer LiteLLM call's, so that every participant call is logged under
        it (`massgen_parent_call_id`) and in the same trace (`litellm_trace_id`, which Langfuse and other loggers
        group by when the caller set no trace id of its own)."""
        self.request = request
        self.model = f"{PROVIDER}/{request.preset}"
        self.run_id = uuid.uuid4().hex
        self.started_at = datetime.now(timezone.utc)
        # A function of its own, not a method: the participants keep it, and a participant that held the run would
        # make every run a reference cycle, left for the garbage collector to free.
        self._clock = functools.partial(_seconds_since, time.monotonic())
        self.outcome: Outcome | None = None
        self.presented_by: str | None = None
        self.notes: list[str] = []
        # The caller's metadata first: ours win on a clash (request.py has already dropped any it sent).
        metadata = {**request.metadata, "massgen_run_id": self.run_id, "massgen_preset": request.preset}
        if parent_call_id:
            metadata["massgen_parent_call_id"] = parent_call_id
        # The run is what LiteLLM's cache keeps (the outer call); its own calls are never read from it nor stored in
        # it: a caller who asks for a fresh run (cache={"no-cache": True}, or a preset with enable_cache: false) must
        # get one, not the replies of an earlier run's agents.
        common = {"user": request.user, "litellm_trace_id": trace_id, "cache": {"no-cache": True, "no-store": True}}
        common = {name: value for name, value in common.items() if value is not None}
        self._stops: list[str] = request.presentation_params.get("stop") or []
        n = len(request.agents)
        options = request.options
        # The presentation's requests are held back from the start, so the agents cannot spend them.
        presenting = max(config.requests_per_call for config in request.agents) if options.final == "present" else 0
        self.budget = Budget(options.max_calls, options.max_run_tokens, options.run_timeout, held_back=presenting)
        self.participants = {
            f"agent{i}": Participant(
                f"agent{i}",
                config,
                n_agents=n,
                conversation=request.conversation,
                sampling=request.sampling,
                call_timeout=options.call_timeout,
                metadata=metadata,
                clock=self._clock,
                budget=self.budget,
                max_answer_chars=options.max_answer_chars,
                note=self.notes.append,
                contract=request.contract,
                toolbox=self._toolbox(servers) if servers else None,
                max_tool_calls=options.max_tool_calls_per_turn,
                voting_sensitivity=options.voting_sensitivity,
                novelty=options.answer_novelty_requirement,
                common_params=common,
                presentation_params=request.presentation_params,
            )
            for i, (config, servers) in enumerate(
                zip(request.agents, request.servers or [[] for _ in request.agents], strict=True), start=1
            )
        }

    def _toolbox(self, servers: list[McpServer]) -> ToolBox:
        # The MCP client is loaded by the first run whose preset declares servers, not with the package.
        from .mcp_tools import ToolBox

        options = self.request.options
        start_timeout = min(options.server_start_timeout, options.run_timeout)
        return ToolBox(servers, options.tool_timeout, options.tool_result_chars, start_timeout)

    def _take_turn(self, agent_id: str, view: View) -> Awaitable[Action]:
        return self.participants[agent_id].take_turn(view)  # the participant's own coroutine: no frame of ours

    async def coordinate(self, on_event: Callable[[Event], None] | None = None) -> Outcome:
        toolboxes = {agent_id: p.toolbox for agent_id, p in self.participants.items() if p.toolbox is not None}
        try:
            await asyncio.gather(*(toolbox.open() for toolbox in toolboxes.values()))
            for agent_id, toolbox in toolboxes.items():
                self.notes += [f"{agent_id}: {problem}" for problem in toolbox.problems]
            self.outcome = outcome = await self._coordinator(on_event).run()
        finally:
            await asyncio.gather(*(toolbox.close() for toolbox in toolboxes.values()), return_exceptions=True)
        if outcome.winner is None:
            raise self._no_answer_error(outcome)
        return outcome

    def _coordinator(self, on_event: Callable[[Event], None] | None) -> Coordinator:
        options = self.request.options
        limits = Limits(
            max_answers_per_agent=options.max_answers_per_agent,
            max_turns_per_agent=options.max_turns_per_agent,
            # The run's own deadline, the one its calls are held to: the time its MCP servers took to start counts.
            run_timeout=max(self.budget.seconds_left(), 0.0),
            max_new_answers_global=options.max_new_answers_global,
            initial_round_timeout=options.initial_round_timeout_seconds,
            subsequent_round_timeout=options.subsequent_round_timeout_seconds,
            round_timeout_grace=options.round_timeout_grace_seconds,
            counterbalance=options.counterbalance_answer_order,
            skip_voting_when_unanimous=options.skip_voting_when_unanimous,
        )

        def observe(event: Event) -> None:
            if logger.isEnabledFor(logging.DEBUG):  # the summary reflows answer text: only pay for it when wanted
                logger.debug("massgen run %s at %.3fs: %s %s", self.run_id, event.at, event.kind, summary(event))
            if on_event is not None:
                on_event(event)

        # With nobody listening, the coordinator makes no events at all (a few per turn, on every run).
        listening = on_event is not None or logger.isEnabledFor(logging.DEBUG)
        return Coordinator(list(self.participants), self._take_turn, limits, observe if listening else None)

    def _no_answer_error(self, outcome: Outcome) -> Exception:
        failures = {agent_id: state.error or "no answer" for agent_id, state in outcome.agents.items()}
        if outcome.end_reason == "all_failed":
            return all_agents_failed(failures, self.model)
        # The run's time is up whether the coordinator saw it or the agents did first (their next call had no time
        # left: the MCP servers' start may have taken it all).
        if outcome.end_reason == "timeout" or self.budget.seconds_left() <= 0:
            return run_timed_out(self.request.options.run_timeout, self.model)
        causes = "; ".join(f"{agent_id}: {cause}" for agent_id, cause in failures.items())
        return no_answer(f"no agent gave a usable answer within its limits. {causes}", self.model)

    def _winner(self) -> tuple[Participant, NewAnswer]:
        assert self.outcome is not None and self.outcome.winner is not None, "coordinate() first"
        winner = self.outcome.winner
        return self.participants[winner], self.outcome.latest_answers[winner]

    def _presenter(self) -> Participant | None:
        """The winner, unless the answer is to be returned verbatim or the winner has failed."""
        assert self.outcome is not None
        if self.request.options.final == "winner_answer":
            return None
        participant, _ = self._winner()
        if self.outcome.agents[participant.agent_id].status == "failed":
            self.notes.append(f"{participant.agent_id} failed, so its answer is returned verbatim")
            return None
        return participant

    def _presentation_messages(self, participant: Participant) -> list[dict[str, object]]:
        assert self.outcome is not None
        reasons = [(v.voter, v.target, v.reason) for v in self.outcome.votes if not v.voided]
        return presentation_messages(
            participant.conversation,  # as this agent is sent it (tool history as text for the text protocol...)
            participant.agent_id,
            {agent_id: answer.as_shown for agent_id, answer in self.outcome.latest_answers.items()},
            reasons,
            participant.config.system_message,
            self.request.contract.format_instruction(),
            synthesize=self.request.options.final == "synthesize",
        )

    async def final_answer(self) -> NewAnswer:
        """The reply: the winner's presentation, its answer verbatim, or the winning proposed action as voted."""
        participant, answer = self._winner()
        if answer.tool_calls:
            # A proposed action is returned as voted: a presentation could change the very calls the votes chose.
            return answer
        reply = await self._final_text(participant, answer)
        return NewAnswer(self._cut_at_stop(reply.content)) if self._stops else reply

    async def _final_text(self, participant: Participant, answer: NewAnswer) -> NewAnswer:
        presenter = self._presenter()
        if presenter is None:
            return answer
        try:
            text = await presenter.present(self._presentation_messages(presenter))
        except Exception as exc:
            return self._fall_back(answer, f"the presentation by {participant.agent_id} failed ({exc})")
        if not text.strip():
            return self._fall_back(answer, f"{participant.agent_id} presented an empty reply")
        problem = self.request.contract.check_text(text)
        if problem:
            return self._fall_back(
                answer, f"the presentation by {participant.agent_id} broke the response_format: {problem}"
            )
        self.presented_by = participant.agent_id
        return NewAnswer(text)

    def _cut_at_stop(self, text: str) -> str:
        cut, found = stops.cut(text, self._stops)
        if found:
            self.notes.append("the reply was cut at the caller's stop sequence")
        return cut

    async def final_answer_stream(self) -> AsyncGenerator[Content | Calls, None]:
        participant, answer = self._winner()
        if answer.tool_calls or self.request.contract.wants_json:
            # Calls come whole, and JSON is checked before it is sent: neither streams delta by delta.
            final = await self.final_answer()
            if final.content:
                yield Content(final.content)
            if final.tool_calls:
                yield Calls(final.tool_calls)
            return
        presenter = self._presenter()
        if presenter is None:
            yield Content(self._cut_at_stop(answer.content) if self._stops else answer.content)
            return
        sent = False
        scanner = stops.StopScanner(self._stops)
        try:
            # Closed when left, at a stop sequence too: the presentation's call is recorded (and its connection
            # released) as it closes, and the record is made right after this stream ends.
            async with aclosing(presenter.present_stream(self._presentation_messages(presenter))) as deltas:
                async for delta in deltas:
                    sent = True
                    text = scanner.feed(delta)
                    if text:
                        yield Content(text)
                    if scanner.stopped:
                        self.notes.append("the reply was cut at the caller's stop sequence")
                        break
            if rest := scanner.flush():
                yield Content(rest)
        except Exception as exc:
            if sent:  # half the reply is already with the caller: nothing honest to fall back to
                raise no_answer(
                    f"the presentation by {participant.agent_id} broke off after part of it was streamed, so the "
                    f"reply is incomplete ({exc})",
                    self.model,
                ) from exc
            fallback = self._fall_back(answer, f"the presentation by {participant.agent_id} failed ({exc})")
            yield Content(self._cut_at_stop(fallback.content) if self._stops else fallback.content)
            return
        if not sent:
            fallback = self._fall_back(answer, f"{participant.agent_id} presented an empty reply")
            yield Content(self._cut_at_stop(fallback.content) if self._stops else fallback.content)
            return
        self.presented_by = participant.agent_id

    def _fall_back(self, answer: NewAnswer, why: str) -> NewAnswer:
        """The run already has a voted answer; a failed presentation must not lose it."""
        self.notes.append(f"{why}; its voted answer is returned verbatim")
        logger.warning("massgen run %s: %s; returning the voted answer", self.run_id, why)
        return answer

    async def stream(self) -> AsyncGenerator[Progress | Content | Calls, None]:
        """Progress lines, then the final answer as the winner streams it.

        The progress lines come as the agents work with `enable_live_progress`; by default they are held back until
        the run has an answer (a winner: from then on a reply is certain, if need be its answer verbatim), so that
        a run that fails fails before its stream's first chunk, where LiteLLM's router can still fall back.
        """
        live = self.request.options.enable_live_progress
        held: list[Progress] = []
        queue: asyncio.Queue[Event | None] = asyncio.Queue()
        agents = [{"id": agent_id, "model": p.config.model} for agent_id, p in self.participants.items()]
        first = Progress(
            start_line(agents), {"kind": "start", "at": 0.0, "preset": self.request.preset, "agents": agents}
        )
        if live:
            yield first
        else:
            held.append(first)
        task = asyncio.create_task(self.coordinate(queue.put_nowait))
        task.add_done_callback(lambda _: queue.put_nowait(None))
        try:
            while (event := await queue.get()) is not None:
                line = describe_event(event, self.request.options.max_turns_per_agent)
                progress = Progress(line, {**event._asdict(), **self._spent()})
                if live:
                    yield progress
                else:
                    held.append(progress)
            await task
            for progress in held:
                yield progress
        finally:
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        async with aclosing(self.final_answer_stream()) as pieces:  # closed with this stream, not when collected
            async for piece in pieces:
                yield piece

    def _spent(self) -> dict[str, object]:
        """Tokens and cost of the calls finished so far."""
        calls = [c for p in self.participants.values() for c in p.calls]
        return {
            "tokens": sum(c["prompt_tokens"] + c["completion_tokens"] for c in calls),
            "cost": sum(c["cost"] or 0.0 for c in calls),
        }

    def finish(self) -> dict[str, Any] | None:
        """The run's record in its JSON form (see `record`), logged and kept where MASSGEN_LOG_DIR says; None if the
        run never got that far. Called once the run is over, however it ended."""
        for participant in self.participants.values():
            participant.deadline.close()  # its idle timer would hold the participant until its call_timeout
        if any(p.saw_oversize for p in self.participants.values()):
            memory.give_back()
        if self.outcome is None:
            return None
        record = self.record()
        directory = os.environ.get(LOG_DIR_ENV)
        if directory:
            try:
                RunRecord.model_validate(record).save(directory)
            except (OSError, ValueError) as exc:  # the answer is still good; losing the file costs a warning only
                logger.warning("massgen run %s: cannot write its record to %s: %s", self.run_id, directory, exc)
        logger.info(
            "massgen run %s (%s): %s, winner %s, tally %s, %d calls, %d tokens, $%.6f, %.2fs",
            self.run_id,
            record["preset"],
            record["end_reason"],
            record["winner"],
            record["tally"],
            len(record["calls"]),
            record["usage"]["total_tokens"],
            record["cost"],
            record["duration_seconds"],
        )
        return record

    def record(self) -> dict[str, Any]:
        """The run's `RunRecord`, made directly in the JSON form it travels in (`RunRecord.model_dump(mode="json")`):
        it is made on every request, and building and dumping the models costs more than the rest of a run's own
        work. `RunRecord.model_validate` reads it back; the tests hold the two shapes together."""
        assert self.outcome is not None
        outcome = self.outcome
        calls = sorted((c for p in self.participants.values() for c in p.calls), key=itemgetter("started_at"))
        agents = []
        for agent_id, participant in self.participants.items():
            state = outcome.agents[agent_id]
            own = participant.calls
            agents.append(
                {
                    "id": agent_id,
                    "model": participant.config.model,
                    "protocol": participant.protocol,
                    "protocol_note": participant.protocol_note,
                    "status": state.status,
                    "turns": state.turns,
                    "answers": state.answers,
                    "failed_turns": state.failed_turns,
                    "busy_seconds": round(state.busy, 4),
                    "calls": len(own),
                    "prompt_tokens": sum(c["prompt_tokens"] for c in own),
                    "completion_tokens": sum(c["completion_tokens"] for c in own),
                    "cost": float(sum(c["cost"] or 0.0 for c in own)),
                    "error": state.error,
                }
            )
        prompt_tokens = sum(c["prompt_tokens"] for c in calls)
        completion_tokens = sum(c["completion_tokens"] for c in calls)
        return {
            "run_id": self.run_id,
            "preset": self.request.preset,
            "started_at": self.started_at.isoformat(),
            "duration_seconds": self._clock(),
            "end_reason": outcome.end_reason,
            "winner": outcome.winner,
            "chosen_by": outcome.chosen_by,
            "tally": dict(outcome.tally),
            "final": self.request.options.final,
            "presented_by": self.presented_by,
            "agents": agents,
            "answers": [
                {
                    "label": a.label,
                    "agent_id": a.agent_id,
                    "content": a.content,
                    "at": a.at,
                    "informed": a.informed,
                    "tool_calls": [{"name": c.name, "arguments": c.arguments} for c in a.tool_calls],
                    "work": [w._asdict() for w in a.work],
                }
                for a in outcome.answers
            ],
            "votes": [
                {
                    "voter": v.voter,
                    "target": v.target,
                    "reason": v.reason,
                    "at": v.at,
                    "voided": v.voided,
                    "voided_reason": v.voided_reason,
                }
                for v in outcome.votes
            ],
            "calls": calls,
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
                "reasoning_tokens": sum(c["reasoning_tokens"] for c in calls),
            },
            "cost": float(sum(c["cost"] or 0.0 for c in calls)),
            "unpriced_calls": sum(1 for c in calls if c["cost"] is None and c["error"] is None),
            "ignored_params": list(self.request.ignored_params),
            "notes": list(self.notes),
            "trusted": self.request.trusted,
            "cache_hit": False,
            "options": dict(_options_json(self.request.options)),  # a copy: the record is the caller's
            "requests_reserved": self.budget.calls,
        }


def _seconds_since(start: float) -> float:
    """Seconds since `start` (a `time.monotonic()` reading), to the tenth of a millisecond, as a record gives times."""
    return round(time.monotonic() - start, 4)


@once_per_object
def _options_json(options: RunOptions) -> dict[str, Any]:
    """A run's options as its record gives them; every option is a number, a string or None."""
    return options.model_dump(mode="json")
