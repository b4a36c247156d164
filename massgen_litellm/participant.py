"""A participant: one agent of a run, calling its model through `litellm.acompletion`.

Going through LiteLLM for every call is the point: keys, retries (`num_retries`), cost tracking and callbacks work
the way LiteLLM users already know them.
"""

from __future__ import annotations

import asyncio
import functools
import math
import re
import time
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import litellm
from pydantic import BaseModel

from .budget import Budget
from .config import AgentConfig, Protocol, is_local_model, once_per_object
from .contract import ReplyContract
from .coordination import Action, AgentFailed, NewAnswer, ToolWork, TurnFailed, View
from .deadlines import TASKS_COUNT_CANCELLATIONS, Deadline, within
from .errors import redact
from .output_limits import OUTPUT_PARAMS, fit_output
from .protocol import (
    Malformed,
    Message,
    correction_messages,
    flatten_tool_history,
    novelty_problem,
    parse_reply,
    render_answer,
    tool_schemas,
    turn_messages,
)
from .record import CallKind

if TYPE_CHECKING:
    from .mcp_tools import ToolBox  # loaded by the first run that has MCP servers (run.py)


def pick_protocol(config: AgentConfig) -> Protocol:
    """The protocol an agent starts with: its own choice, else tools unless LiteLLM *knows* the model cannot call
    them. A model LiteLLM has no data on (a new name, a local server, a gateway's alias) gets tools, the stronger
    protocol; if it cannot use them, the agent finds out on its first turns and switches (see Participant)."""
    if config.protocol in ("tools", "text"):
        return config.protocol
    return "text" if _cannot_call_tools(config.model, len(litellm.model_cost)) else "tools"


@functools.lru_cache(maxsize=256)
def _cannot_call_tools(model: str, known_models: int) -> bool:
    """Looked up once per model while LiteLLM's model list keeps its size (`known_models`: `litellm.register_model`
    adds to it, and a model registered later is looked up again): for a model LiteLLM does not know, the look-up fails
    by an exception, about 80 µs for every agent of every run. Bounded: a proxy's clients may name many models."""
    try:
        info = litellm.get_model_info(model=model)
    except Exception:
        return False
    return info.get("supports_function_calling") is False


# Failed tool turns in a row after which an auto agent gives up on tools for the run.
_TOOL_FAILURES_BEFORE_TEXT = 2

# Seconds a turn may run past the run's deadline before its own timeout ends it (see Participant._reserve).
RUN_END_GRACE = 1.0


# A provider's refusal of tools as such, in the words providers use: Ollama's "does not support tools", OpenAI's
# "'tools' is not supported with this model", Gemini's "Function calling is not enabled", LiteLLM's "does not support
# parameters: ['tools']", vLLM's --enable-auto-tool-choice, llama.cpp's "tools param requires --jinja". Never a 400
# that merely mentions tools: Anthropic's "Expected `thinking` or `redacted_thinking`, but found `tool_use`" is about
# the message history, and switching protocols would not cure it.
_TOOL_WORDS = r"(?:tools?|tool use|tool calls?|tool calling|function calling|functions?|function calls?)"
_TOOLS_REFUSED = re.compile(
    rf"(?:does not|doesn't|do not|cannot|can't) support {_TOOL_WORDS}\b"
    rf"|\b{_TOOL_WORDS}['\"`]? (?:is|are) not (?:supported|enabled|available|allowed)"
    r"|does not support parameters: \[[^\]]*'(?:tools|tool_choice|functions|function_call)'"
    r"|enable-auto-tool-choice"
    r"|\btools? param(?:eter)? requires"
)


def _refuses_tools(exc: BaseException | None) -> bool:
    """A provider's 400 that refuses tools themselves (not the prompt, the key or the message history)."""
    if not isinstance(exc, (litellm.BadRequestError, litellm.UnsupportedParamsError)):
        return False
    return _TOOLS_REFUSED.search(str(getattr(exc, "message", exc)).lower()) is not None


@once_per_object
def _entry_params(config: AgentConfig) -> dict[str, Any]:
    """What an agent's entry sends with every call, but its secrets: its sampling, its host and LiteLLM's options
    (shared by every run of the entry: copied, never changed)."""
    params: dict[str, Any] = config.sampling()
    if config.api_base:
        params["api_base"] = config.api_base
    for name in ("api_version", "extra_body", "thinking", "drop_params"):
        if getattr(config, name) is not None:
            params[name] = getattr(config, name)
    params["num_retries"] = config.retries
    return params


def _thinks(params: Mapping[str, Any], model: str) -> bool:
    """The agent's calls carry extended thinking: its `thinking` field, or a `reasoning_effort` that LiteLLM turns
    into thinking for this model (Anthropic's and Gemini's models take `thinking`, OpenAI's do not)."""
    thinking = params.get("thinking")
    if isinstance(thinking, Mapping):
        return thinking.get("type") != "disabled"
    return params.get("reasoning_effort") not in (None, "none") and "thinking" in _supported_params(model)


@functools.cache
def _supported_params(model: str) -> tuple[str, ...]:
    try:
        return tuple(litellm.get_supported_openai_params(model=model) or ())
    except Exception:
        return ()


class Participant:
    def __init__(
        self,
        agent_id: str,
        config: AgentConfig,
        *,
        n_agents: int,
        conversation: Sequence[Message],
        sampling: Mapping[str, Any],
        call_timeout: float,
        metadata: Mapping[str, Any],
        clock: Callable[[], float],
        budget: Budget,
        max_answer_chars: int,
        note: Callable[[str], None],
        contract: ReplyContract,
        toolbox: ToolBox | None = None,
        max_tool_calls: int = 0,
        voting_sensitivity: str = "lenient",
        novelty: str = "lenient",
        common_params: Mapping[str, Any] | None = None,
        presentation_params: Mapping[str, Any] | None = None,
    ) -> None:
        """`common_params`: LiteLLM parameters every call carries (`user`, `litellm_trace_id`, `cache`);
        `presentation_params`: parameters of the presentation call only (the client's `max_tokens` /
        `max_completion_tokens`, which bound it, and `stop`)."""
        self.agent_id = agent_id
        self.config = config
        self.protocol = pick_protocol(config)
        # An agent on auto may switch from tools to text, on evidence; the record says when and why.
        self.auto = config.protocol in (None, "auto")
        self.protocol_note: str | None = None
        self._failed_tool_turns = 0
        self.n_agents = n_agents
        self.contract = contract
        self.toolbox = toolbox
        self.conversation = conversation
        self._presentation_params = dict(presentation_params or {})
        self._noted: set[str] = set()
        self.max_tool_calls = max_tool_calls
        self.voting_sensitivity = voting_sensitivity
        self.novelty = novelty
        self.call_timeout = call_timeout
        self.budget = budget
        self.max_answer_chars = max_answer_chars
        self.saw_oversize = False  # a reply came back larger than max_answer_chars
        self._note = note
        self.metadata = dict(metadata)
        self.calls: list[dict[str, Any]] = []  # the record's `CallInfo`s, in their JSON form
        self._clock = clock
        # Its calls' deadlines, one after another (one timer for many calls); closed when the run is over.
        self.deadline = Deadline()
        self._turn = 0
        self._model = config.model
        self._to_serve = is_local_model(config.model)  # a `local/` model whose server is not known yet (_connect)
        self._requests_per_call = config.requests_per_call
        self._params: dict[str, Any] = {**sampling, **_entry_params(config)}
        self._fitted: dict[str, Any] | None = None  # _params as every turn sends them (_turn_params)
        # Read from the environment on every run, never kept: a key may be rotated while the server runs.
        api_key = config.resolved_api_key()
        if api_key:
            self._params["api_key"] = api_key
        headers = config.resolved_headers()
        if headers:
            self._params["extra_headers"] = headers
        self._secrets = [api_key, *headers.values()]
        if self.protocol == "text":
            self._drop_tools()
        elif _thinks(self._params, config.model):
            # A thinking model must see its own signed thinking before every tool call of a turn that is still
            # running. The caller's earlier tool calls came from someone else (this team, another model), so they
            # carry none: Anthropic would refuse every turn ("Expected `thinking` ... but found `tool_use`"). As
            # text, the calls and results lose nothing the agent needs, and the agent keeps its thinking.
            self.conversation = flatten_tool_history(self.conversation)
        self._params.update(common_params or {})

    async def take_turn(self, view: View) -> Action:
        """One coordination turn; an auto agent falls back to the text protocol when tools do not work for it."""
        switchable = self.auto and self.protocol == "tools"
        try:
            action = await self._take_turn(view)
        except AgentFailed as exc:
            if not (switchable and _refuses_tools(exc.__cause__)):
                raise
            self._switch_to_text(f"its provider refused tools ({exc})")
            return await self._take_turn(view)
        except TurnFailed:
            if switchable:
                self._failed_tool_turns += 1
                if self._failed_tool_turns >= _TOOL_FAILURES_BEFORE_TEXT:
                    self._switch_to_text(f"{self._failed_tool_turns} turns in a row had tool replies it could not use")
            raise
        self._failed_tool_turns = 0
        return action

    def _switch_to_text(self, why: str) -> None:
        self.protocol = "text"
        self.protocol_note = f"switched to the text protocol: {why}"
        self._drop_tools()
        self._note(f"{self.agent_id} {self.protocol_note}")

    def _drop_tools(self) -> None:
        """What the text protocol means for an agent: no tools of its own (its replies are read as text, not as
        calls), and the caller's earlier tool calls and results sent as text (a model sent no tools)."""
        self.toolbox = None
        self.conversation = flatten_tool_history(self.conversation)

    async def _take_turn(self, view: View) -> Action:
        """One coordination turn: a call, and one corrective retry if the reply cannot be used."""
        self._turn += 1
        tools = tool_schemas(view, self.contract) if self.protocol == "tools" else None
        messages = turn_messages(
            self.conversation,
            self.agent_id,
            self.n_agents,
            view,
            self.protocol,
            self.config.system_message,
            self.contract,
            self.voting_sensitivity,
        )
        reply = await self._call(messages, "turn", [*(tools or []), *self._own_tools()])
        work: list[ToolWork] = []
        while self._uses_own_tools(reply):
            # Its own tools first (as many rounds as max_tool_calls_per_turn allows), then the turn's answer or vote.
            messages = [*messages, *await self._run_own_tools(reply, work)]
            offered = self._own_tools() if len(work) < self.max_tool_calls else []
            reply = await self._call(messages, "turn", [*(tools or []), *offered])
        parsed = self._read(reply, view)
        if isinstance(parsed, Malformed):
            messages = [*messages, *correction_messages(self._cut_reply(reply), parsed.problem)]
            reply = await self._call(messages, "retry", tools)
            parsed = self._read(reply, view)
            if isinstance(parsed, Malformed):
                raise TurnFailed(parsed.problem)
        if not isinstance(parsed, NewAnswer):
            return parsed
        content = self._fit(parsed.content)
        if not work and content == parsed.content:
            return parsed
        shown = render_answer(content, parsed.tool_calls, work)
        return NewAnswer(content, parsed.tool_calls, shown, tuple(work))

    def _own_tools(self) -> list[dict[str, Any]]:
        return self.toolbox.schemas if self.toolbox is not None and self.max_tool_calls else []

    def _uses_own_tools(self, reply: Message) -> bool:
        if self.toolbox is None:
            return False
        names = [(c.get("function") or {}).get("name") for c in reply.get("tool_calls") or []]
        return any(self.toolbox.owns(str(name)) for name in names)

    async def _run_own_tools(self, reply: Message, work: list[ToolWork]) -> list[Message]:
        """Run the agent's calls of its own tools, at once and off the event loop's critical path; every call in the
        reply gets its tool message, as providers require."""
        assert self.toolbox is not None
        calls = reply.get("tool_calls") or []
        room = self.max_tool_calls - len(work)
        runnable = [c for c in calls if self.toolbox.owns(c["function"]["name"])][:room]
        results = await asyncio.gather(
            *(self.toolbox.call(c["function"]["name"], c["function"].get("arguments") or "{}") for c in runnable)
        )
        answers: list[Message] = []
        done = dict(zip((id(c) for c in runnable), results, strict=True))
        for call in calls:
            result = done.get(id(call))
            if result is None:
                text = (
                    f"Not run: max_tool_calls_per_turn ({self.max_tool_calls}) is used up; answer or vote now."
                    if self.toolbox.owns(call["function"]["name"])
                    else "Not run: call new_answer or vote on its own, after your tools' results."
                )
            else:
                text = f"Error: {result.text}" if result.error else result.text
                arguments = call["function"].get("arguments") or "{}"
                work.append(ToolWork(call["function"]["name"], arguments, result.text, result.error))
            answers.append({"role": "tool", "tool_call_id": call.get("id") or "", "content": text})
        # The reply goes back whole: with its thinking blocks and signatures, without which the provider would
        # refuse the turn's next call.
        return [reply, *answers]

    def _read(self, reply: Message, view: View) -> Action | Malformed:
        parsed = parse_reply(reply.get("content"), reply.get("tool_calls") or [], view, self.contract)
        if isinstance(parsed, NewAnswer) and not parsed.tool_calls:
            problem = novelty_problem(parsed.content, view, self.novelty)
            if problem:
                return Malformed(problem)
        if isinstance(parsed, NewAnswer) and self.contract.wants_json and len(parsed.content) > self.max_answer_chars:
            # JSON cut short would not parse: too long is a correction here, not a cut.
            return Malformed(f"the answer is longer than {self.max_answer_chars} characters; make it shorter")
        return parsed

    async def present(self, messages: list[Message]) -> str:
        reply = await self._call(messages, "present", None, self.contract.response_format)
        text = reply.get("content") or ""
        return self._fit(text)

    async def present_stream(self, messages: list[Message]) -> AsyncGenerator[str, None]:
        """The winner's own stream, passed through delta by delta, within the call's deadline and the size cap."""
        timeout = self._reserve("present")
        deadline = time.monotonic() + timeout
        with _CallRecord(self, "present") as call:
            stream = None
            reported = False  # the provider's usage chunk came (it comes last, after the whole reply)
            received: list[str] = []  # what the provider sent, counted if its usage never comes
            try:
                if self._to_serve:
                    await self._connect()
                stream = await within(
                    litellm.acompletion(
                        **self._call_kwargs(messages, "present", None),
                        stream=True,
                        stream_options={"include_usage": True},
                    ),
                    timeout,
                )
                chunks = stream.__aiter__()
                room = self.max_answer_chars
                while room > 0:
                    try:
                        chunk = await within(chunks.__anext__(), deadline - time.monotonic())
                    except StopAsyncIteration:
                        break
                    if getattr(chunk, "usage", None):
                        _count(call, chunk.usage)
                        reported = True
                    text = chunk.choices[0].delta.content if chunk.choices else None
                    if text:
                        received.append(text)
                        room -= len(text)
                        yield text[: len(text) + room] if room < 0 else text
                if room <= 0:
                    self._note(f"{self.agent_id}'s presentation was cut at max_answer_chars={self.max_answer_chars}")
            except asyncio.TimeoutError:
                raise AgentFailed(f"Timeout: the presentation did not finish within {timeout:.3g}s") from None
            except Exception as exc:
                raise AgentFailed(self._describe(exc)) from exc
            finally:
                # What was spent is recorded before any await: a client that goes away cancels each one (the proxy
                # cancels the whole scope), and the call must still be counted and charged. Cut at max_answer_chars
                # or a stop sequence, stopped by the client, broken off or timed out, a stream ends before its
                # usage: the provider had the prompt and wrote what arrived, and bills for them, so they are counted
                # as LiteLLM counts a stream that reports no usage, not recorded (and billed to the caller) as nothing.
                if stream is not None and (reported or self._count_unreported(call, messages, received)):
                    call.cost = self._stream_cost(call.prompt_tokens, call.completion_tokens)
                self.budget.spend(call.prompt_tokens + call.completion_tokens)
                if stream is not None and hasattr(stream, "aclose"):
                    await stream.aclose()  # a stream left unread would keep its connection open

    def _reserve(self, kind: CallKind) -> float:
        """Take this call's requests from the run's budget; the call's timeout, never past the run's deadline for the
        presentation and at most RUN_END_GRACE past it for a turn: at the run's deadline the coordinator stops the
        turns still running (the agent is `stopped`, not failed), and a turn's own deadline only backs that up. The
        presentation comes after the coordination, so nothing but its own deadline ends it."""
        left = self.budget.take(self._requests_per_call, presentation=kind == "present")
        left += 0.0 if kind == "present" else RUN_END_GRACE
        return min(self.call_timeout, left)

    def _fit(self, text: str) -> str:
        """`text`, or, past max_answer_chars, its cut with a marker (and a note in the record)."""
        if len(text) <= self.max_answer_chars:
            return text
        self._note(f"a reply of {self.agent_id} was cut from {len(text)} to max_answer_chars={self.max_answer_chars}")
        return text[: self.max_answer_chars] + f"\n[cut at {self.max_answer_chars} characters]"

    def _cut_reply(self, reply: Message) -> Message:
        """An unusable reply as it is echoed back with its correction, with no more text than an answer may have."""
        limit = self.max_answer_chars
        content = reply.get("content")
        calls = [
            {**c, "function": {**c["function"], "arguments": (c["function"].get("arguments") or "")[:limit]}}
            for c in reply.get("tool_calls") or []
        ]
        return {**reply, "content": content[:limit] if isinstance(content, str) else content, "tool_calls": calls}

    def _call_kwargs(
        self,
        messages: list[Message],
        kind: CallKind,
        tools: list[dict[str, Any]] | None,
        response_format: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        if kind == "present":
            params, notes = fit_output(self._params, self.config.model, self._presentation_params)
            for note in notes:
                self._note_once(f"{self.agent_id}'s presentation: {note}")
        else:
            params = self._turn_params()
        kwargs: dict[str, Any] = {
            **params,
            "model": self._model,
            "messages": messages,
            # Always the agent's call_timeout, never the run's time left: LiteLLM keeps one HTTP client per distinct
            # timeout, so a timeout that shrinks call by call would build a new client (and connection) every call.
            # The run's deadline is ours to keep (`within`, around the call).
            "timeout": self.call_timeout,
            "metadata": {**self.metadata, "massgen_agent_id": self.agent_id, "massgen_call": kind},
        }
        if self._params.get("seed") is not None:
            # One seed per call, from the agent's: the same prompt with the same seed is the same reply, so a turn
            # taken again on an unchanged view (after an unusable one) would be spent on a reply already refused.
            # Counted down instead near the top of the 64-bit range that providers accept.
            seed, index = self._params["seed"], len(self.calls)  # the calls this agent has made before
            kwargs["seed"] = seed + index if seed + index < 2**63 else seed - index
        if kind != "present":
            kwargs["metadata"]["massgen_turn"] = self._turn
        else:  # the client's output limits are settled by fit_output above; the rest (`stop`) goes as it is
            kwargs.update({k: v for k, v in self._presentation_params.items() if k not in OUTPUT_PARAMS})
        if tools:
            kwargs["tools"] = tools
        if response_format:
            kwargs["response_format"] = response_format
        return kwargs

    def _turn_params(self) -> dict[str, Any]:
        """The parameters of every turn's call, settled once (`fit_output`): they change only with `_params`."""
        if self._fitted is None:
            params, notes = fit_output(self._params, self.config.model)
            for note in notes:
                self._note_once(f"{self.agent_id}'s calls: {note}")
            self._fitted = params
        return self._fitted

    def _note_once(self, note: str) -> None:
        if note not in self._noted:
            self._noted.add(note)
            self._note(note)

    async def _call(
        self,
        messages: list[Message],
        kind: CallKind,
        tools: list[dict[str, Any]] | None,
        response_format: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        timeout = self._reserve(kind)
        with _CallRecord(self, kind) as call:
            try:
                if self._to_serve:
                    await self._connect()
                # LiteLLM's `timeout` bounds each HTTP read, not the call: a server that trickles bytes, or LiteLLM's
                # retries, could outlast it. The participant's call gets a hard deadline of its own.
                kwargs = self._call_kwargs(messages, kind, tools, response_format)
                if TASKS_COUNT_CANCELLATIONS:
                    with self.deadline.after(timeout):
                        response = await litellm.acompletion(**kwargs)
                else:
                    response = await within(litellm.acompletion(**kwargs), timeout)
            except asyncio.TimeoutError:
                why = f"call_timeout={self.call_timeout}s" if timeout == self.call_timeout else "the run's run_timeout"
                raise AgentFailed(f"Timeout: no reply within {why}") from None
            except Exception as exc:
                raise AgentFailed(self._describe(exc)) from exc
            _count(call, _field(response, "usage"))
            self.budget.spend(call.prompt_tokens + call.completion_tokens)
            call.cost = _price((_field(response, "_hidden_params") or {}).get("response_cost"))
            if not response.choices:
                raise AgentFailed(f"{self.config.model} returned a response with no choices")
        message = _fields(response.choices[0].message, _MESSAGE_FIELDS)
        content = message.get("content")
        tool_calls = [_plain(tc) for tc in message.get("tool_calls") or ()]
        size = len(content or "") + sum(len(c["function"]["arguments"] or "") for c in tool_calls)
        self.saw_oversize = self.saw_oversize or size > self.max_answer_chars
        reply: Message = {"role": "assistant", "content": content, "tool_calls": tool_calls}
        for name in _CARRIED:
            value = message.get(name)
            if value:
                reply[name] = value
        return reply

    async def _connect(self) -> None:
        """A `local/` model is served by the embedded server, started (in a thread: it loads the model) on first
        use (`_to_serve`)."""
        from . import local_server

        model, api_base = await asyncio.to_thread(local_server.endpoint, self.config.model)
        self._params.update(api_base=api_base, api_key="sk-local-no-key")
        self._fitted = None
        self._model = model
        self._to_serve = False

    def _describe(self, exc: BaseException) -> str:
        """A one-line cause for the record, without keys: LiteLLM appends tracebacks and bug-report links to some
        messages, and some providers quote the key they refused."""
        message = (getattr(exc, "message", None) or str(exc)).split("Traceback (most recent call last)")[0]
        message = " ".join(redact(message, self._secrets).split())[:500] or "no message"
        return f"{type(exc).__name__}: {message}"

    def _count_unreported(self, call: _CallRecord, messages: list[Message], received: list[str]) -> bool:
        """Whether a stream that ended before its provider reported usage could be counted: its prompt and the text
        that arrived, by LiteLLM's `token_counter` (the model's own tokenizer where LiteLLM has one), as LiteLLM
        counts a stream without usage; parts of the prompt it cannot count (audio, video) are left out rather than
        the whole count. The record's notes say the tokens are counted. On the event loop, as LiteLLM counts, since
        it must be done before any await (see `present_stream`): once per stream cut short, 7 ms for a 100 KB
        conversation on the benchmarks' machine."""
        model, text, left_out = self.config.model, "".join(received), ""
        try:
            completion = litellm.token_counter(model=model, text=text) if text else 0
            try:
                prompt = litellm.token_counter(model=model, messages=messages)
            except Exception:
                prompt = litellm.token_counter(model=model, messages=_text_parts_only(messages))
                left_out = ", its prompt's parts other than text left out"
        except Exception as exc:  # an answer without a count beats no answer; the note says so
            self._note(
                f"{self.agent_id}'s presentation reported no usage, and counting it failed: {self._describe(exc)}"
            )
            return False
        call.prompt_tokens, call.completion_tokens = prompt, completion
        self._note(
            f"{self.agent_id}'s presentation ended before its provider reported usage: its tokens are LiteLLM's "
            f"count ({prompt} prompt, {completion} completion{left_out})"
        )
        return True

    def _stream_cost(self, prompt_tokens: int, completion_tokens: int) -> float | None:
        try:
            prompt_cost, completion_cost = litellm.cost_per_token(
                model=self.config.model, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens
            )
        except Exception:
            return None
        return _price(prompt_cost + completion_cost)


def _text_parts_only(messages: list[Message]) -> list[Message]:
    return [
        {**m, "content": [p for p in m["content"] if isinstance(p, Mapping) and p.get("type") == "text"]}
        if isinstance(m.get("content"), list)
        else m
        for m in messages
    ]


def _price(cost: Any) -> float | None:
    """LiteLLM's price for a call, if it is one (a finite amount, not negative); otherwise the call counts as
    unpriced, as one LiteLLM knows no price for, rather than failing its agent when its record is made."""
    if isinstance(cost, (int, float)) and not isinstance(cost, bool) and math.isfinite(cost) and cost >= 0:
        return float(cost)
    return None


class _CallRecord:
    """One call's account in the record (`with _CallRecord(participant, kind) as call:`): when it started, how long
    it took, what it reported, how it failed. Filled in as it goes; when the `with` block is left, however it is left,
    its entry (a `CallInfo` in its JSON form, as `Run.record` makes the whole record) goes on the participant's
    `calls`. A class rather than a generator context manager: it is entered for every call."""

    __slots__ = (
        "_began",
        "_kind",
        "_participant",
        "_started_at",
        "completion_tokens",
        "cost",
        "error",
        "prompt_tokens",
        "reasoning_tokens",
    )

    def __init__(self, participant: Participant, kind: CallKind) -> None:
        self._participant = participant
        self._kind = kind
        self._started_at = participant._clock()
        self._began = time.monotonic()
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.reasoning_tokens = 0
        self.cost: float | None = None
        self.error: str | None = None

    def __enter__(self) -> _CallRecord:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, traceback: object) -> None:
        participant = self._participant
        if exc is not None:  # an AgentFailed says why already; anything else (cancelled...) is described
            self.error = str(exc) if isinstance(exc, AgentFailed) else participant._describe(exc)
        participant.calls.append(
            {
                "agent_id": participant.agent_id,
                "kind": self._kind,
                "turn": None if self._kind == "present" else participant._turn,
                "started_at": self._started_at,
                "seconds": round(time.monotonic() - self._began, 4),
                "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
                "reasoning_tokens": self.reasoning_tokens,
                "cost": self.cost,
                "error": self.error,
            }
        )


def _count(call: _CallRecord, usage: Any) -> None:
    # Plain getattr: LiteLLM's Usage always has these fields (None where a provider gave nothing), and getattr finds
    # a field that is there faster than _field does. LiteLLM makes them whole numbers but keeps a negative one, which
    # would give tokens back to the run's budget (max_run_tokens): it counts as none.
    call.prompt_tokens = max(getattr(usage, "prompt_tokens", None) or 0, 0)
    call.completion_tokens = max(getattr(usage, "completion_tokens", None) or 0, 0)
    # What the provider itself reported as reasoning (thinking) tokens, if anything; never an estimate.
    call.reasoning_tokens = max(
        getattr(getattr(usage, "completion_tokens_details", None), "reasoning_tokens", None) or 0, 0
    )


# What LiteLLM returns beside a reply's text and tool calls and reads back when the message is sent again in the same
# turn: Anthropic's thinking blocks with their signatures (`thinking_blocks`), reasoning text DeepSeek and Gemini take
# back (`reasoning_content`), and `provider_specific_fields` (Gemini's thought signatures, stored reasoning...).
_CARRIED = ("thinking_blocks", "reasoning_content", "provider_specific_fields")


_MESSAGE_FIELDS = ("content", "tool_calls", *_CARRIED)
_TOOL_CALL_FIELDS = ("id", "function", "provider_specific_fields")
_FUNCTION_FIELDS = ("name", "arguments", "provider_specific_fields")


def _plain(tool_call: Any) -> dict[str, Any]:
    """A tool call as a plain dict, with the provider's fields LiteLLM reads back on it (Gemini's thought signature
    rides in `provider_specific_fields`, on the call or its function, or in the id)."""
    if isinstance(tool_call, Mapping):
        return dict(tool_call)
    fields = _fields(tool_call, _TOOL_CALL_FIELDS)
    function = _fields(fields.get("function"), _FUNCTION_FIELDS)
    plain_function = {"name": function.get("name"), "arguments": function.get("arguments")}
    plain: dict[str, Any] = {"id": fields.get("id"), "type": "function", "function": plain_function}
    if fields.get("provider_specific_fields"):
        plain["provider_specific_fields"] = fields["provider_specific_fields"]
    if function.get("provider_specific_fields"):
        plain_function["provider_specific_fields"] = function["provider_specific_fields"]
    return plain


_MISSING = object()


def _field(obj: Any, name: str) -> Any:
    """`getattr(obj, name, None)`, made cheap for LiteLLM's response objects. They are pydantic models, and a field
    a reply lacks (most lack thinking blocks and provider fields; LiteLLM deletes the empty ones) costs pydantic's
    `__getattr__` an AttributeError raised and caught, 2-4 µs, several times a call. Read instead where pydantic keeps
    what `getattr` would find: a field in the instance's `__dict__`, an extra field (a tool call's `function` and `id`)
    in `__pydantic_extra__`, a private attribute in `__pydantic_private__`; anything else (a property, any other
    object) goes through `getattr`."""
    cls: type = type(obj)
    where = _stored_in(cls, name)
    if where == "fields":
        value = obj.__dict__.get(name, _MISSING)
        if value is _MISSING:
            extra = obj.__pydantic_extra__
            value = extra.get(name) if extra else None
        return value
    if where == "private":
        return (obj.__pydantic_private__ or {}).get(name)
    return getattr(obj, name, None)


def _fields(obj: Any, names: tuple[str, ...]) -> Mapping[str, Any]:
    """`{name: _field(obj, name) for name in names}` to read with `.get` (a name missing is None), found at once: a
    LiteLLM message or tool call, whose fields are all stored (`_stored_in`), is read straight from the instance
    (shared, not copied: read it, never change it)."""
    cls: type = type(obj)
    if _all_stored(cls, names):
        extra = obj.__pydantic_extra__
        return {**extra, **obj.__dict__} if extra else obj.__dict__
    return {name: _field(obj, name) for name in names}


@functools.lru_cache(maxsize=256)
def _all_stored(cls: type, names: tuple[str, ...]) -> bool:
    return all(_stored_in(cls, name) == "fields" for name in names)


@functools.lru_cache(maxsize=256)
def _stored_in(cls: type, name: str) -> str:
    if not issubclass(cls, BaseModel):
        return "getattr"
    if name in cls.__private_attributes__:
        return "private"
    # A name the class itself has (a property, a method) is found by getattr before any field.
    return "getattr" if hasattr(cls, name) else "fields"
