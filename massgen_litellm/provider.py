"""The LiteLLM custom provider: `massgen/<preset>` in, an ordinary OpenAI-shaped completion or stream out."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import Any

from litellm import CustomLLM
from litellm.types.utils import (
    ChatCompletionDeltaToolCall,
    ChatCompletionMessageToolCall,
    CompletionTokensDetailsWrapper,
    Delta,
    Function,
    ModelResponse,
    ModelResponseStream,
    StreamingChoices,
    Usage,
)

from . import portal
from .coordination import NewAnswer
from .errors import PROVIDER, MassGenInputError, bad_request
from .presets import PresetStore
from .record import RunRecord, UsageInfo
from .request import build_request
from .run import Calls, Content, Progress, Run

RECORD_FIELD = "massgen"
EVENT_FIELD = "massgen_event"  # on each progress chunk: what happened, as data (see Run.stream)


class MassGenLLM(CustomLLM):
    """Serves `massgen/<preset>`; LiteLLM strips the provider prefix before calling us."""

    def __init__(self, presets_dirs: Sequence[str | os.PathLike[str]] = ()) -> None:
        super().__init__()
        self.presets = PresetStore(presets_dirs)

    def _start(self, model: str, messages: list[Any], kwargs: dict[str, Any]) -> Run:
        preset = model.removeprefix(f"{PROVIDER}/")
        litellm_params = kwargs.get("litellm_params") or {}
        logging_obj = kwargs.get("logging_obj")
        params = dict(kwargs.get("optional_params") or {})
        # LiteLLM 1.110 keeps `user` out of a custom provider's optional_params; its logging object has it.
        user = (getattr(logging_obj, "model_call_details", None) or {}).get("user")
        if params.get("user") is None and user is not None:
            params["user"] = user
        try:
            request = build_request(
                preset,
                messages,
                params,
                self.presets,
                kwargs.get("timeout"),
                trusted=not from_proxy(litellm_params),
                metadata=litellm_params.get("metadata") or {},
            )
        except MassGenInputError as exc:
            raise bad_request(str(exc), model=f"{PROVIDER}/{preset}") from None
        trace_id = litellm_params.get("litellm_trace_id") or getattr(logging_obj, "litellm_trace_id", None)
        return Run(request, parent_call_id=litellm_params.get("litellm_call_id"), trace_id=trace_id)

    async def acompletion(self, model: str, messages: list[Any], *args: Any, **kwargs: Any) -> ModelResponse:
        run = self._start(model, messages, kwargs)
        try:
            await run.coordinate()
            reply = await run.final_answer()
        finally:
            record = run.finish()
        assert record is not None
        return _completion(kwargs.get("model_response") or ModelResponse(), run, record, reply)

    def completion(self, model: str, messages: list[Any], *args: Any, **kwargs: Any) -> ModelResponse:
        return portal.call(self.acompletion(model, messages, *args, **kwargs))

    async def astreaming(self, model: str, messages: list[Any], *args: Any, **kwargs: Any) -> AsyncIterator[Any]:  # type: ignore[override]
        run = self._start(model, messages, kwargs)
        # The last piece of the answer is held back until the run is over, to carry the record: LiteLLM's stream
        # wrapper passes a chunk with content through, attributes and all, for every client; a chunk without
        # content it passes only to clients that asked for usage.
        last: ModelResponseStream | None = None
        try:
            async for piece in run.stream():
                if isinstance(piece, Progress):
                    chunk = _chunk(run, Delta(reasoning_content=piece.text))
                    setattr(chunk, EVENT_FIELD, piece.event)
                    yield chunk
                else:
                    if last is not None:
                        yield last
                    last = _chunk(run, _delta(piece))
        except Exception:
            if last is not None:  # the part of the reply that did arrive, before the error that ends it
                yield last
            raise
        finally:
            record = run.finish()
        assert record is not None and last is not None
        setattr(last, RECORD_FIELD, record.model_dump(mode="json"))
        yield last
        # Usage goes on a chunk of its own before the finish chunk: LiteLLM reports that chunk's usage as the
        # stream's (to clients that asked for it), where it rebuilds the finish chunk itself and would drop it.
        closing = _chunk(run, Delta())
        closing.usage = usage(record.usage)
        yield closing
        yield _chunk(run, Delta(), finish_reason="tool_calls" if last.choices[0].delta.tool_calls else "stop")

    def streaming(self, model: str, messages: list[Any], *args: Any, **kwargs: Any) -> Iterator[Any]:
        return portal.iterate(self.astreaming(model, messages, *args, **kwargs))


def from_proxy(litellm_params: Mapping[str, Any]) -> bool:
    """Whether the call came through a LiteLLM proxy: the proxy stamps every request it forwards with the HTTP request
    it came in on, and a client cannot remove that stamp. Such a request is untrusted (see request.py)."""
    return bool(litellm_params.get("proxy_server_request"))


def _completion(response: ModelResponse, run: Run, record: RunRecord, reply: NewAnswer) -> ModelResponse:
    response.model = run.model
    message = response.choices[0].message
    message.content = reply.content or None if reply.tool_calls else reply.content
    if reply.tool_calls:
        message.tool_calls = [
            ChatCompletionMessageToolCall(
                id=_call_id(), type="function", function=Function(name=c.name, arguments=c.arguments)
            )
            for c in reply.tool_calls
        ]
    response.choices[0].finish_reason = "tool_calls" if reply.tool_calls else "stop"
    response.usage = usage(record.usage)  # type: ignore[attr-defined]
    # LiteLLM prices a response by this field when it is set, so the run's cost is what its users and the proxy's
    # spend tracking see.
    response._hidden_params["response_cost"] = record.cost
    setattr(response, RECORD_FIELD, record.model_dump(mode="json"))
    return response


def usage(info: UsageInfo) -> Usage:
    """The run's usage as LiteLLM's: the same object streamed or not. The reasoning tokens are the providers' own
    figures, given explicitly: left out, LiteLLM would count the streamed progress lines (sent as
    `reasoning_content`) as reasoning tokens, and every other token as not text."""
    return Usage(
        prompt_tokens=info.prompt_tokens,
        completion_tokens=info.completion_tokens,
        total_tokens=info.total_tokens,
        completion_tokens_details=CompletionTokensDetailsWrapper(
            reasoning_tokens=info.reasoning_tokens, text_tokens=info.completion_tokens - info.reasoning_tokens
        ),
    )


def _delta(piece: Content | Calls) -> Delta:
    if isinstance(piece, Content):
        return Delta(content=piece.text)
    return Delta(
        tool_calls=[
            ChatCompletionDeltaToolCall(
                id=_call_id(), type="function", index=index, function=Function(name=c.name, arguments=c.arguments)
            )
            for index, c in enumerate(piece.calls)
        ]
    )


def _call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


def _chunk(run: Run, delta: Delta, finish_reason: str | None = None) -> ModelResponseStream:
    return ModelResponseStream(
        id=f"chatcmpl-{run.run_id}",
        model=run.model,
        choices=[StreamingChoices(index=0, delta=delta, finish_reason=finish_reason)],
    )


handler = MassGenLLM()
"""The handler a LiteLLM proxy config names: `custom_handler: massgen_litellm.handler`."""
