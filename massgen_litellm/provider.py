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
from .record import RunRecord
from .request import build_request
from .run import Calls, Content, Progress, Run

RECORD_FIELD = "massgen"
EVENT_FIELD = "massgen_event"  # on each progress chunk: what happened, as data (see Run.stream)
# Through the proxy, every reply carries the run id in this header (docs/records.md): `proxy_guard` sends it, read
# from the request's metadata, where the run puts it under RUN_ID_KEY as a `RunId`.
RUN_ID_HEADER = "x-massgen-run-id"
RUN_ID_KEY = "massgen_run_id"


class RunId(str):
    """A run id as the provider wrote it into a proxy request's metadata. JSON cannot make one, so a client that
    sends `metadata: {"massgen_run_id": ...}` itself cannot choose the header the proxy returns."""


class MassGenLLM(CustomLLM):
    """Serves `massgen/<preset>`; LiteLLM strips the provider prefix before calling us."""

    def __init__(self, presets_dirs: Sequence[str | os.PathLike[str]] = ()) -> None:
        super().__init__()
        self.presets = PresetStore(presets_dirs)

    def _start(self, model: str, messages: list[Any], kwargs: dict[str, Any]) -> Run:
        preset = model.removeprefix(f"{PROVIDER}/")
        litellm_params = kwargs.get("litellm_params") or {}
        try:
            request = build_request(
                preset,
                messages,
                kwargs.get("optional_params") or {},
                self.presets,
                kwargs.get("timeout"),
                trusted=not from_proxy(litellm_params),
            )
        except MassGenInputError as exc:
            raise bad_request(str(exc), model=f"{PROVIDER}/{preset}") from None
        run = Run(request, parent_call_id=litellm_params.get("litellm_call_id"))
        if request.trusted:
            return run
        # The proxy's request metadata (`metadata` on /v1/chat/completions, `litellm_metadata` on the /v1/messages and
        # /v1/responses bridges) is the dict its response-headers hook is later given: the run id goes there.
        for key in ("metadata", "litellm_metadata"):
            metadata = litellm_params.get(key)
            if isinstance(metadata, dict):
                metadata[RUN_ID_KEY] = RunId(run.run_id)
        return run

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

    def astreaming(self, model: str, messages: list[Any], *args: Any, **kwargs: Any) -> AsyncIterator[Any]:  # type: ignore[override]
        # Started now, not at the first chunk: the /v1/messages and /v1/responses bridges hand the proxy the stream
        # before reading it, and the proxy sends its headers (with the run id) then. A bad request fails here, too.
        return self._stream(self._start(model, messages, kwargs))

    async def _stream(self, run: Run) -> AsyncIterator[Any]:
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
        # The /v1/responses bridge keeps a delta's provider-specific fields and puts them on the finished response.
        last.choices[0].delta.provider_specific_fields = {RECORD_FIELD: getattr(last, RECORD_FIELD)}
        yield last
        # Usage goes on a chunk of its own before the finish chunk: LiteLLM reports that chunk's usage as the
        # stream's (to clients that asked for it), where it rebuilds the finish chunk itself and would drop it.
        closing = _chunk(run, Delta())
        closing.usage = Usage(**record.usage.model_dump())
        yield closing
        yield _chunk(run, Delta(), finish_reason="tool_calls" if last.choices[0].delta.tool_calls else "stop")

    def streaming(self, model: str, messages: list[Any], *args: Any, **kwargs: Any) -> Iterator[Any]:
        async def started_there() -> AsyncIterator[Any]:  # the run is made on the portal's loop, where it runs
            async for chunk in self._stream(self._start(model, messages, kwargs)):
                yield chunk

        return portal.iterate(started_there())


def from_proxy(litellm_params: Mapping[str, Any]) -> bool:
    """Whether the call came through a LiteLLM proxy: the proxy stamps every request it forwards with the HTTP request
    it came in on, and a client cannot remove that stamp. Such a request is untrusted (see request.py)."""
    return bool(litellm_params.get("proxy_server_request"))


def _completion(response: ModelResponse, run: Run, record: RunRecord, reply: NewAnswer) -> ModelResponse:
    response.model = run.model
    response.id = f"chatcmpl-{run.run_id}"  # as on every chunk of a stream
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
    response.usage = Usage(**record.usage.model_dump())  # type: ignore[attr-defined]
    # LiteLLM prices a response by this field when it is set, so the run's cost is what its users and the proxy's
    # spend tracking see.
    response._hidden_params["response_cost"] = record.cost
    setattr(response, RECORD_FIELD, record.model_dump(mode="json"))
    # The /v1/responses bridge copies these onto the Responses API object (`provider_specific_fields.massgen`).
    response._hidden_params["provider_specific_fields"] = {RECORD_FIELD: getattr(response, RECORD_FIELD)}
    return response


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
