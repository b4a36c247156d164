"""The coordination protocol, as plain asyncio: agents answer in parallel, see each other's latest answers, and vote.

Nothing here knows about LiteLLM. An agent is an id plus a `TurnTaker`: an async function that is shown a `View` and
returns a `NewAnswer` or a `Vote`. Rules:

* every agent starts at once; an agent with no valid vote keeps taking turns;
* a new answer voids every vote cast before it, and those voters decide again;
* round one is a barrier: an agent that has answered waits for every other active agent's first answer before its
  next turn, since a vote cast before then is certain to be voided by the answer still to come;
* a turn's result is checked against the view it was given: a vote cast on a view that has since changed is void
  (the agent goes again at once), a new answer always stands. In-flight calls are never cancelled, because a
  cancelled call is still billed and its answer would be lost;
* when round one closes with every active agent's first answer the same (the same calls of the caller's tools with
  equal arguments, compared as parsed JSON; or the same text after whitespace and case normalisation), no vote
  could change the outcome, so the run ends there (unanimous), unless `skip_voting_when_unanimous` is off;
* the run ends when every active agent holds a valid vote (consensus), when no agent can act any more
  (turn limit, or budget when the run's caps stopped some), when the wall clock runs out (timeout) or when every
  agent has failed;
* the winner has the most valid votes, ties going to the agent listed first. With no valid votes at all, the
  most recent answer written after seeing others' wins (its author had seen them); if every answer was written
  alone, the one that agrees most with the others wins. A unanimous run is won by the first agent listed.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal, NamedTuple

from .deadlines import TIMER_SLACK


class View(NamedTuple):
    """What an agent is shown for one turn."""

    version: int
    answers: Mapping[str, str]  # agent id -> latest answer, in agent order
    can_answer: bool  # false once the agent has used up its answers

    @property
    def can_vote(self) -> bool:
        return bool(self.answers)


class ToolCall(NamedTuple):
    """A call of one of the caller's tools, proposed by an agent; never executed here."""

    name: str
    arguments: str  # JSON, as the model wrote it


class ToolWork(NamedTuple):
    """A call an agent made of its own tools during a turn, and what came back: the work behind its answer."""

    tool: str
    arguments: str
    result: str
    error: bool = False


class NewAnswer(NamedTuple):
    content: str  # the agent's text: the reply itself, or what goes with a proposed action
    tool_calls: tuple[ToolCall, ...] = ()  # a proposed action: the answer is "run these"
    shown: str | None = None  # what the other agents are shown of it, where that is not just `content`
    work: tuple[ToolWork, ...] = ()

    @property
    def as_shown(self) -> str:
        return self.content if self.shown is None else self.shown


class Vote(NamedTuple):
    agent_id: str
    reason: str


Action = NewAnswer | Vote
TurnTaker = Callable[[str, View], Awaitable[Action]]


class TurnFailed(Exception):
    """The agent replied, but not usably (after its corrective retry); it keeps its place and may try again."""


class AgentFailed(Exception):
    """The agent cannot go on (its model call failed); the message is the cause, as the record shows it."""


class OutOfBudget(Exception):
    """The agent may not make another call: the run's caps on calls, tokens or time are spent. It stops as if it had
    run out of turns, keeping its answers and its vote."""


EventKind = Literal["turn", "answer", "vote", "void", "turn_failed", "agent_failed", "late", "done"]


class Event(NamedTuple):
    """One thing that happened, for live views; `detail` is the answer, the vote reason or the error."""

    kind: EventKind
    agent_id: str | None
    at: float  # seconds since the run started
    target: str | None = None  # the agent voted for, or the winner
    detail: str = ""


@dataclass
class AnswerEntry:
    agent_id: str
    label: str  # agent1.2: agent1's second answer
    content: str
    at: float
    informed: bool = False  # its author had seen another agent's answer
    tool_calls: tuple[ToolCall, ...] = ()
    work: tuple[ToolWork, ...] = ()


@dataclass
class VoteEntry:
    voter: str
    target: str
    reason: str
    at: float
    view_version: int
    voided: bool = False
    voided_reason: str | None = None


@dataclass
class AgentState:
    turns: int = 0
    answers: int = 0
    failed_turns: int = 0
    busy: float = 0.0  # seconds spent inside turns
    status: Literal["working", "voted", "exhausted", "failed", "stopped"] = "working"
    error: str | None = None
    out_of_budget: bool = False  # exhausted by the run's caps rather than by its own turn limit
    late: bool = False  # in a turn that outlasted its round: the others go on without it until it is back
    turn_began: float | None = None  # while in a turn


# Why a run ended: every active agent voted; every active agent's first answer was the same; no agent could take
# another turn (its own limit, or the run's caps); the run's time ran out; every agent failed.
EndReason = Literal["consensus", "unanimous", "turn_limit", "budget", "timeout", "all_failed"]
# How the winner was chosen: by the valid votes; all first answers the same (the first agent listed wins); with no
# valid vote, the latest answer written after seeing others'; with none of those either, the independent answer
# the others agree with most.
ChosenBy = Literal["votes", "unanimous", "latest_informed", "most_agreed"]


@dataclass
class Outcome:
    end_reason: EndReason
    winner: str | None
    tally: dict[str, int]
    answers: list[AnswerEntry]
    votes: list[VoteEntry]
    agents: dict[str, AgentState]
    duration: float
    latest_answers: dict[str, NewAnswer] = field(default_factory=dict)
    chosen_by: ChosenBy | None = None


class Limits(NamedTuple):
    max_answers_per_agent: int = 2
    max_turns_per_agent: int = 6
    run_timeout: float = 300.0
    max_new_answers_global: int | None = None  # new answers across all agents; then they may only vote
    # A round is the time from one view change (the start, or a new answer) to the next. Once a round has lasted
    # its timeout plus the grace, an agent still in a turn is late: nobody waits for it (not round one's barrier,
    # not consensus) until its turn ends and it joins the view of the moment.
    initial_round_timeout: float | None = None
    subsequent_round_timeout: float | None = None
    round_timeout_grace: float = 0.0
    # Each agent sees the answers in an order rotated by its own position, so no answer is first for everyone.
    counterbalance: bool = False
    # End the run when round one closes with every active agent's first answer the same (see the module's rules).
    skip_voting_when_unanimous: bool = True


# An agent's statuses that hold the run up no longer.
_DONE = frozenset({"voted", "exhausted", "failed"})


class Coordinator:
    def __init__(
        self,
        agent_ids: Sequence[str],
        take_turn: TurnTaker,
        limits: Limits,
        on_event: Callable[[Event], None] | None = None,
    ) -> None:
        if not agent_ids or len(set(agent_ids)) != len(agent_ids):
            raise ValueError("agent ids must be unique and at least one")
        self.agent_ids = list(agent_ids)
        self._take_turn = take_turn
        self._limits = limits
        self._on_event = on_event
        self._start = 0.0
        self._version = 0
        self._latest: dict[str, NewAnswer] = {}
        self._answers: list[AnswerEntry] = []
        self._votes: list[VoteEntry] = []
        self._valid: dict[str, VoteEntry] = {}
        self._agents = {agent_id: AgentState() for agent_id in self.agent_ids}
        # The agents yet to answer, in agent order: only they can hold round one open (an agent's answers only grow).
        self._unanswered = dict(self._agents)
        # Set (and replaced) on every change that may let a waiting agent go on; see _notify.
        self._changed = asyncio.Event()
        # Settled (True), or out of time (False): made by `run`, in its loop; see _settle.
        self._settled: asyncio.Future[bool] | None = None
        self._unanimous = False
        self._round_one_judged = False
        self._round_timer: asyncio.TimerHandle | None = None
        # The answers shown at a view version, in agent order, read-only (see _shown_to).
        self._shown: tuple[int, Mapping[str, str]] | None = None

    async def run(self) -> Outcome:
        self._start = time.monotonic()
        loop = asyncio.get_running_loop()
        settled = self._settled = loop.create_future()
        self._start_round(self._limits.initial_round_timeout)
        tasks = [
            asyncio.create_task(self._agent_loop(agent_id), name=f"massgen-{agent_id}") for agent_id in self.agent_ids
        ]
        deadline: asyncio.TimerHandle | None = None
        try:
            # A future and a timer rather than a wait for an event within a timeout: the same, with less to set up.
            deadline = loop.call_later(self._limits.run_timeout, self._settle, False)
            # Judged before the agents still in a turn are stopped: a late agent's state says it was left behind.
            end_reason = self._end_reason() if await settled else "timeout"
        finally:
            if deadline is not None:
                deadline.cancel()
            if self._round_timer is not None:
                self._round_timer.cancel()
            # Once settled, an agent waiting for a change leaves by itself when woken (its loop checks the run has
            # settled): only the agents still in a turn are cancelled. A cancellation unwinds a task through an
            # exception, dearer than a wake-up, and most agents are waiting when a run ends.
            settled_now = settled.done() and not settled.cancelled() and settled.result()
            self._settle(False)  # ended by a cancellation from outside: no agent starts another turn
            self._notify()
            for agent_id, task in zip(self.agent_ids, tasks, strict=True):
                if not settled_now or self._agents[agent_id].turn_began is not None:
                    task.cancel()
            # Wait for every agent loop to end, so no call outlives the run; agent loops record their own errors.
            await asyncio.gather(*tasks, return_exceptions=True)
            for state in self._agents.values():
                if state.status == "working":  # waiting for a turn when the run ended (a unanimous one)
                    state.status = "stopped"
        return self._outcome(end_reason)

    def _now(self) -> float:
        return time.monotonic() - self._start

    def _emit(self, kind: EventKind, agent_id: str | None, target: str | None = None, detail: str = "") -> None:
        if self._on_event is not None:
            self._on_event(Event(kind, agent_id, round(self._now(), 3), target, detail))

    async def _agent_loop(self, agent_id: str) -> None:
        state = self._agents[agent_id]
        settled = self._settled
        assert settled is not None, "agent loops run inside run()"
        try:
            while not settled.done():  # once settled, no new turn: the run is ending
                if state.status == "voted" or (state.answers and self._first_round_open()):
                    changed = self._changed
                    await changed.wait()
                    continue
                if state.turns >= self._limits.max_turns_per_agent:
                    state.status = "exhausted"
                    self._agent_gone()
                    return
                view = View(
                    self._version,
                    self._shown_to(agent_id),
                    state.answers < self._limits.max_answers_per_agent and not self._answers_capped(),
                )
                state.turns += 1
                if self._on_event is not None:
                    self._emit("turn", agent_id, detail=str(state.turns))
                began = state.turn_began = time.monotonic()
                try:
                    action = await self._take_turn(agent_id, view)
                except TurnFailed as exc:
                    state.failed_turns += 1
                    self._emit("turn_failed", agent_id, detail=str(exc))
                    continue
                except OutOfBudget as exc:
                    state.status = "exhausted"
                    state.out_of_budget = True
                    state.error = str(exc)
                    self._emit("turn_failed", agent_id, detail=str(exc))
                    self._agent_gone()
                    return
                finally:
                    state.busy += time.monotonic() - began
                    state.turn_began = None
                    if state.late:  # back: it counts again, with the view of the moment
                        state.late = False
                        self._notify()
                self._apply(agent_id, view, action)
        except asyncio.CancelledError:
            if state.status == "working":
                state.status = "stopped"
            raise
        except Exception as exc:
            state.status = "failed"
            state.error = str(exc) if isinstance(exc, AgentFailed) else f"{type(exc).__name__}: {exc}"
            self._emit("agent_failed", agent_id, detail=state.error)
            self._agent_gone()

    def _apply(self, agent_id: str, view: View, action: Action) -> None:
        state = self._agents[agent_id]
        if isinstance(action, NewAnswer):
            if not view.can_answer or self._answers_capped() or not (action.content.strip() or action.tool_calls):
                state.failed_turns += 1
                self._emit("turn_failed", agent_id, detail="an answer it was not allowed to give")
                return
            state.answers += 1
            self._unanswered.pop(agent_id, None)
            label = f"{agent_id}.{state.answers}"
            informed = any(other != agent_id for other in view.answers)
            entry = AnswerEntry(
                agent_id, label, action.as_shown, round(self._now(), 3), informed, action.tool_calls, action.work
            )
            self._answers.append(entry)
            self._latest[agent_id] = action
            self._version += 1
            voided = bool(self._valid)
            for voter, vote in list(self._valid.items()):
                self._void(vote, f"new answer {label} arrived after it")
                self._agents[voter].status = "working"
            self._valid.clear()
            self._emit("answer", agent_id, target=label, detail=action.as_shown)
            if self._judge_round_one():
                return
            round_one_open = self._first_round_open()
            if not round_one_open:
                self._start_round(self._limits.subsequent_round_timeout)
            # Who waits: voters (their votes were just voided) and, while round one is open, those who have answered
            # (an answer that leaves round one open lets none of them go on). Waking all for every answer would wake
            # each waiting agent once per answer, O(agents^2) wake-ups a run.
            if voided or not round_one_open:
                self._notify()
            return
        if action.agent_id not in view.answers:
            state.failed_turns += 1
            self._emit("turn_failed", agent_id, detail=f"a vote for {action.agent_id}, which had no answer")
            return
        vote = VoteEntry(agent_id, action.agent_id, action.reason, round(self._now(), 3), view.version)
        self._votes.append(vote)
        if view.version != self._version:
            # The voter had not seen the newest answers: its vote cannot count, so it decides again.
            self._void(vote, "cast on answers that had since changed")
            return
        self._valid[agent_id] = vote
        state.status = "voted"
        self._emit("vote", agent_id, target=action.agent_id, detail=action.reason)
        if not state.answers:
            # A vote from an agent that never answered may close round one: agents waiting at the barrier go on.
            # Any other vote lets no waiting agent go on (a voter waits for a new answer).
            self._notify()
        self._check_settled()

    def _shown_to(self, agent_id: str) -> Mapping[str, str]:
        """The latest answers as `agent_id` sees them: in agent order, or rotated by its position (counterbalance).
        Made once per view version (and shared, read-only, by every agent it is the same for): at 16 agents a run
        would otherwise copy every answer for every turn."""
        if self._shown is None or self._shown[0] != self._version:
            answers = {other: a.as_shown for other, a in self._answers_in_agent_order().items()}
            self._shown = (self._version, MappingProxyType(answers))
        in_order = self._shown[1]
        if not (self._limits.counterbalance and in_order):
            return in_order
        pairs = list(in_order.items())
        shift = self.agent_ids.index(agent_id) % len(pairs)
        return MappingProxyType(dict(pairs[shift:] + pairs[:shift]))

    def _answers_capped(self) -> bool:
        cap = self._limits.max_new_answers_global
        return cap is not None and len(self._answers) >= cap

    def _start_round(self, timeout: float | None) -> None:
        if self._round_timer is not None:
            self._round_timer.cancel()
            self._round_timer = None
        if timeout is not None:
            delay = timeout + self._limits.round_timeout_grace
            self._round_timer = asyncio.get_running_loop().call_later(delay, self._close_round, timeout)

    def _close_round(self, timeout: float) -> None:
        """The round's time is up: an agent whose turn has lasted longer than the round's timeout is late, and the
        others stop waiting for it. One in a turn begun since is looked at again when that turn has lasted the
        timeout: a turn begun just after the round (behind the others' synchronous set-up, or woken by the round's
        own change) would otherwise never be late with no grace, and would hold the run until its end."""
        self._round_timer = None
        now = time.monotonic()
        left = []
        for agent_id, state in self._agents.items():
            if state.turn_began is None or state.status != "working" or state.late:
                continue
            lasted = now - state.turn_began
            if lasted >= timeout - TIMER_SLACK:
                state.late = True
                self._emit("late", agent_id, detail="its round closed; the others go on without it")
            else:
                left.append(timeout - lasted)
        if left:
            self._round_timer = asyncio.get_running_loop().call_later(min(left), self._close_round, timeout)
        self._notify()
        self._check_settled()

    def _answers_in_agent_order(self) -> dict[str, NewAnswer]:
        # Not arrival order: that would tell every agent who was fastest, and shuffle the answers between turns.
        return {agent_id: self._latest[agent_id] for agent_id in self.agent_ids if agent_id in self._latest}

    def _first_round_open(self) -> bool:
        """Some active agent, not late, has yet to give its first answer."""
        # Only the agents yet to answer are looked at: asked several times a turn, this was a scan of every agent.
        return any(state.status == "working" and not state.late for state in self._unanswered.values())

    def _agent_gone(self) -> None:
        """An agent can take no more turns (failed, or out of turns or budget): that may close round one."""
        if self._judge_round_one():
            return
        self._notify()
        self._check_settled()

    def _judge_round_one(self) -> bool:
        """Called wherever round one may have closed; once it has, ends the run if it closed unanimous (and says so).

        Unanimous: every agent not failed or out of turns answered exactly once (a late agent's answer is still to
        come and could differ), at least two did, all the same, and nobody voted (a vote means somebody judged
        already). Nobody is woken for another turn: no call is started for a vote that could not change the outcome.
        """
        if self._round_one_judged or self._first_round_open():
            return False
        self._round_one_judged = True
        if not self._limits.skip_voting_when_unanimous or self._votes:
            return False
        states = self._agents.items()
        if any(state.answers != 1 and state.status not in ("failed", "exhausted") for _, state in states):
            return False
        answers = [self._latest[agent_id] for agent_id, state in states if state.answers]
        if len(answers) < 2 or not all(_same(answers[0], other) for other in answers[1:]):
            return False
        self._unanimous = True
        self._settle(True)
        return True

    def _notify(self) -> None:
        """Wake the agents waiting for a change: a new answer, or an agent gone (which may close round one)."""
        self._changed.set()
        self._changed = asyncio.Event()

    def _void(self, vote: VoteEntry, reason: str) -> None:
        vote.voided = True
        vote.voided_reason = reason
        self._emit("void", vote.voter, target=vote.target, detail=reason)

    def _check_settled(self) -> None:
        # A late agent does not hold the others up, but a run of late agents only is not settled.
        any_done = False
        for state in self._agents.values():
            if state.status in _DONE:
                any_done = True
            elif not state.late:
                return
        if any_done:
            self._settle(True)

    def _settle(self, settled: bool) -> None:
        """End the coordination: settled (True) or out of time (False); the first to come decides."""
        if self._settled is not None and not self._settled.done():
            self._settled.set_result(settled)

    def _end_reason(self) -> EndReason:
        if self._unanimous:
            return "unanimous"
        statuses = [state.status for state in self._agents.values()]
        if all(status == "failed" for status in statuses):
            return "all_failed"
        if all(state.status in ("voted", "failed") or state.late for state in self._agents.values()):
            return "consensus"
        if any(state.out_of_budget for state in self._agents.values()):
            return "budget"
        return "turn_limit"

    def _outcome(self, end_reason: EndReason) -> Outcome:
        tally = {agent_id: 0 for agent_id in self.agent_ids if agent_id in self._latest}
        for vote in self._valid.values():
            tally[vote.target] += 1
        winner: str | None = None
        chosen_by: ChosenBy | None = None
        if self._unanimous:
            winner, chosen_by = next(iter(self._answers_in_agent_order())), "unanimous"
        elif any(tally.values()):
            # max() keeps the first of equals, and the tally is in agent order: ties go to the agent listed first.
            winner, chosen_by = max(tally, key=lambda agent_id: tally[agent_id]), "votes"
        elif any(answer.informed for answer in self._answers):
            winner = next(a for a in reversed(self._answers) if a.informed).agent_id
            chosen_by = "latest_informed"
        elif self._answers:
            winner = _most_agreed({agent_id: a.as_shown for agent_id, a in self._answers_in_agent_order().items()})
            chosen_by = "most_agreed"
        self._emit("done", None, target=winner, detail=end_reason)
        return Outcome(
            end_reason=end_reason,
            winner=winner,
            tally=tally,
            answers=list(self._answers),
            votes=list(self._votes),
            agents=self._agents,
            duration=round(self._now(), 3),
            latest_answers=self._answers_in_agent_order(),
            chosen_by=chosen_by,
        )


def _same(one: NewAnswer, other: NewAnswer) -> bool:
    """The same answer: the same calls of the caller's tools in the same order, arguments equal as parsed JSON (so
    `{"a": 1, "b": 2}` is `{"b":2,"a":1}`); or, for text answers, the same text up to whitespace and case."""
    if one.tool_calls or other.tool_calls:
        return len(one.tool_calls) == len(other.tool_calls) and all(
            a.name == b.name and _parsed(a.arguments) == _parsed(b.arguments)
            for a, b in zip(one.tool_calls, other.tool_calls, strict=True)
        )
    return _normalised(one.content) == _normalised(other.content)


def _normalised(text: str) -> str:
    return " ".join(text.split()).casefold()


def _parsed(arguments: str) -> object:
    """Arguments as parsed JSON, with true/false kept apart from 1/0 (Python's True == 1); text that does not
    parse is compared as written."""
    try:
        return _tagged(json.loads(arguments or "{}"))
    except (ValueError, RecursionError):
        return arguments


def _tagged(value: object) -> object:
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, dict):
        return {key: _tagged(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_tagged(item) for item in value]
    return value


_WORD = re.compile(r"\w+")


def _most_agreed(answers: Mapping[str, str]) -> str:
    """The answer closest to all the others (mean word-set overlap), ties to the agent listed first.

    Used only when nobody voted and every answer was written without seeing another: independent answers that
    agree are likelier right than any one of them (self-consistency), and arrival order says nothing of quality.
    Words every answer has (the task restated: "17 + 25 is ...") are left out: they cannot tell the answers apart,
    and counted, they make a short wrong answer look close to two right ones that are worded differently.
    """
    words = {agent_id: set(_WORD.findall(text.lower())) for agent_id, text in answers.items()}
    shared = set.intersection(*words.values()) if words else set()
    words = {agent_id: found - shared for agent_id, found in words.items()}

    def overlap(mine: set[str], theirs: set[str]) -> float:
        # Two answers with nothing beyond the shared words are worded alike: full agreement.
        return len(mine & theirs) / len(mine | theirs) if mine | theirs else 1.0

    def agreement(agent_id: str) -> float:
        others = [theirs for other, theirs in words.items() if other != agent_id]
        return sum(overlap(words[agent_id], theirs) for theirs in others) / (len(others) or 1)

    return max(answers, key=agreement)
