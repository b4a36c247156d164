"""The LiteLLM custom provider: `massgen/<preset>` in, an ordinary OpenAI-shaped completion or stream out."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import aclosing
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
from .config import ContextPath
from .coordination import NewAnswer
from .errors import PROVIDER, MassGenInputError, bad_request
from .presets import PresetStore
from .record import RECORD_FIELD
from .request import build_request
from .run import Calls, Content, Progress, Run

EVENT_FIELD = "massgen_event"  # on each progress chunk: what happened, as data (see Run.stream)
# Through the proxy, every reply carries the run id in this header (docs/records.md): `proxy_guard` sends it, read
# from the request's metadata, where the run puts it under RUN_ID_KEY as a `RunId`.
RUN_ID_HEADER = "x-massgen-run-id"
RUN_ID_KEY = "massgen_run_id"


class RunId(str):
    """A run id as the provider wrote it into a proxy request's metadata. JSON cannot make one, so a client that
    sends `metadata: {"massgen_run_id": ...}` itself cannot choose the header the proxy returns."""


class MassGenLLM(CustomLLM):
    """The LiteLLM custom provider that serves `massgen/<preset>`: LiteLLM calls it with the prefix stripped.

    Each call runs one coordination of the preset's team (or of the request's `models`) on the call's `messages`.
    `completion` and `acompletion` return a `litellm.ModelResponse` whose `choices[0].message` is the final answer
    (or the team's tool calls), whose `usage` is the sum over every participant call, whose
    `_hidden_params["response_cost"]` is the run's cost in US dollars, and whose `massgen` attribute is the run's
    record (`RunRecord` as JSON-ready data). `streaming` and `astreaming` yield the agents' progress first, as
    `reasoning_content` deltas each carrying a `massgen_event` dict, then the answer's deltas; the record rides on
    the answer's last content chunk. `presets_dirs` are searched after the shipped presets and
    `MASSGEN_PRESETS_DIR`; later ones win.

    Errors are LiteLLM's own exception types, so callers catch them as usual; each has `num_retries=0`, so LiteLLM's
    router never runs a failed coordination again.

    Raises:
        litellm.BadRequestError: bad input (HTTP 400): an unknown preset, a bad `models` entry or option, a field a
            proxy client may not set. The message names the problem and the fix.
        litellm.APIError: no answer (HTTP 502): every participant failed, or no valid answer within the limits.
        litellm.Timeout: no agent answered within `run_timeout` (HTTP 408).
    """

    def __init__(
        self, presets_dirs: Sequence[str | os.PathLike[str]] = (), context_paths: Sequence[ContextPath] = ()
    ) -> None:
        """`context_paths` go to every preset this handler serves (see context_paths.py): the choice of whoever
        runs the team, never of a request."""
        super().__init__()
        self.presets = PresetStore(presets_dirs, context_paths)

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
        run = Run(request, parent_call_id=litellm_params.get("litellm_call_id"), trace_id=trace_id)
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
        """One coordination, awaited: the final answer as a `ModelResponse` (see the class for its fields)."""
        run = self._start(model, messages, kwargs)
        try:
            await run.coordinate()
            reply = await run.final_answer()
        finally:
            record = run.finish()
        assert record is not None
        return _completion(kwargs.get("model_response") or ModelResponse(), run, record, reply)

    def completion(self, model: str, messages: list[Any], *args: Any, **kwargs: Any) -> ModelResponse:
        """`acompletion` for synchronous callers, run on the package's one background event loop."""
        return portal.call(self.acompletion(model, messages, *args, **kwargs))

    def astreaming(self, model: str, messages: list[Any], *args: Any, **kwargs: Any) -> AsyncIterator[Any]:  # type: ignore[override]
        """One coordination as a stream of `ModelResponseStream` chunks: progress, then the answer, usage, finish."""
        # Started now, not at the first chunk: the /v1/messages and /v1/responses bridges hand the proxy the stream
        # before reading it, and the proxy sends its headers (with the run id) then. A bad request fails here, too.
        return self._stream(self._start(model, messages, kwargs))

    async def _stream(self, run: Run) -> AsyncIterator[Any]:
        # The last piece of the answer is held back until the run is over, to carry the record: LiteLLM's stream
        # wrapper passes a chunk with content through, attributes and all, for every client; a chunk without
        # content it passes only to clients that asked for usage.
        last: ModelResponseStream | None = None
        first: ModelResponseStream | None = None  # the stream's first chunk: LiteLLM prices the stream by it
        try:
            # Closed before the record is made (finally, below), also when the client stops reading: the calls
            # still open (the presentation) are recorded as they close.
            async with aclosing(run.stream()) as pieces:
                async for piece in pieces:
                    if isinstance(piece, Progress):
                        chunk = _chunk(run, Delta(reasoning_content=piece.text))
                        setattr(chunk, EVENT_FIELD, piece.event)
                        first = first or chunk
                        yield chunk
                    else:
                        if last is not None:
                            yield last
                        last = _chunk(run, _delta(piece))
                        first = first or last
        except Exception:
            if last is not None:  # the part of the reply that did arrive, before the error that ends it
                yield last
            raise
        finally:
            record = run.finish()
        assert record is not None and last is not None and first is not None
        # LiteLLM prices a stream when it ends, by the hidden params of its first chunk (its stream builder puts them
        # on the whole response): the run's cost goes there, as on a reply not streamed. Without it, the proxy's
        # spend tracking billed a streamed run nothing.
        first._hidden_params["response_cost"] = record["cost"]
        setattr(last, RECORD_FIELD, record)
        # The /v1/responses bridge keeps a delta's provider-specific fields and puts them on the finished response.
        last.choices[0].delta.provider_specific_fields = {RECORD_FIELD: record}
        yield last
        # Usage goes on a chunk of its own before the finish chunk: LiteLLM reports that chunk's usage as the
        # stream's (to clients that asked for it), where it rebuilds the finish chunk itself and would drop it.
        closing = _chunk(run, Delta())
        closing.usage = usage(record["usage"])
        yield closing
        yield _chunk(run, Delta(), finish_reason="tool_calls" if last.choices[0].delta.tool_calls else "stop")

    def streaming(self, model: str, messages: list[Any], *args: Any, **kwargs: Any) -> Iterator[Any]:
        """`astreaming` for synchronous callers, iterated on the package's background event loop."""

        async def started_there() -> AsyncIterator[Any]:  # the run is made on the portal's loop, where it runs
            async for chunk in self._stream(self._start(model, messages, kwargs)):
                yield chunk

        return portal.iterate(started_there())


def from_proxy(litellm_params: Mapping[str, Any]) -> bool:
    """Whether the call came through a LiteLLM proxy: the proxy stamps every request it forwards with the HTTP request
    it came in on, and a client cannot remove that stamp. Such a request is untrusted (see request.py)."""
    return bool(litellm_params.get("proxy_server_request"))


def _completion(response: ModelResponse, run: Run, record: dict[str, Any], reply: NewAnswer) -> ModelResponse:
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
    response.usage = usage(record["usage"])  # type: ignore[attr-defined]
    # LiteLLM prices a response by this field when it is set, so the run's cost is what its users and the proxy's
    # spend tracking see.
    response._hidden_params["response_cost"] = record["cost"]
    setattr(response, RECORD_FIELD, record)
    # The /v1/responses bridge copies these onto the Responses API object (`provider_specific_fields.massgen`).
    response._hidden_params["provider_specific_fields"] = {RECORD_FIELD: record}
    return response


def usage(info: Mapping[str, int]) -> Usage:
    """The run's usage (the record's `usage`, a `UsageInfo` as JSON) as LiteLLM's: the same object streamed or not.
    The reasoning tokens are the providers' own figures, given explicitly: left out, LiteLLM would count the
    streamed progress lines (sent as `reasoning_content`) as reasoning tokens, and every other token as not text."""
    return Usage(
        prompt_tokens=info["prompt_tokens"],
        completion_tokens=info["completion_tokens"],
        total_tokens=info["total_tokens"],
        completion_tokens_details=CompletionTokensDetailsWrapper(
            reasoning_tokens=info["reasoning_tokens"], text_tokens=info["completion_tokens"] - info["reasoning_tokens"]
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
"""The shared provider instance: what `register_with_litellm()` registers, and what a LiteLLM proxy config names
(`custom_provider_map: [{"provider": "massgen", "custom_handler": massgen_litellm.handler}]`). It finds presets in
the shipped directory and in `MASSGEN_PRESETS_DIR`."""
