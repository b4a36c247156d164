"""A conversation with a team: the history as OpenAI chat messages, each question one run with that history.

Shared by the web UI and the terminal chat. One turn is one streamed completion of `massgen/<preset>` with the
history plus the new question: through `litellm.acompletion` in this process, or through the OpenAI client against
a LiteLLM proxy (`proxy=URL`). Both streams carry the same things on their chunks: the progress events
(`massgen_event`, the dicts `Run.stream` makes), the answer as content deltas, and the run's record (`massgen`) on
the last content chunk.

Stopping a turn is cancelling the task that awaits `ask`: the stream is closed under it, and with it the run and its
participant calls (in process the cancellation reaches the run's own task; through a proxy the connection closes,
which a proxy with `cancel_on_disconnect` turns into the same). A turn that fails or is cancelled leaves the history
as it was, so the next question is asked as if it had never been.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from openai.types.chat import ChatCompletionMessageParam

from .errors import PROVIDER
from .provider import EVENT_FIELD, RECORD_FIELD, MassGenLLM

Event = dict[str, Any]
EventSink = Callable[[Event], None]
TextSink = Callable[[str], None]

PROXY_KEY_ENV = "MASSGEN_PROXY_KEY"
"""Where the key for `--proxy` comes from: never a command-line argument, which other users can read."""

# What a LiteLLM proxy stamps on every request it forwards, and what makes the provider build the run untrusted
# (provider.from_proxy, request.py): a conversation serving requests from a network is a proxy in all but name.
_UNTRUSTED = {"proxy_server_request": {"url": "massgen-litellm web", "method": "POST", "body": {}}}


class Conversation:
    """The history of one conversation with the team of `preset`, and the runs that answered it.

    `params` are the per-run options sent with every question (`models`, run limits, sampling: what
    `litellm.completion` accepts for `massgen/<preset>`). `trusted=False` builds each run as a proxy request is built:
    the preset's `clients` rules apply to `params` (see request.py). `proxy` is a LiteLLM proxy's base URL
    (`http://host:4000`) with `proxy_key` its key; requests through it are untrusted there whatever `trusted` says.
    """

    def __init__(
        self,
        preset: str,
        *,
        params: Mapping[str, Any] | None = None,
        trusted: bool = True,
        proxy: str | None = None,
        proxy_key: str | None = None,
    ) -> None:
        self.preset = preset
        self.params = dict(params or {})
        self.trusted = trusted
        self.proxy = proxy
        self.proxy_key = proxy_key
        self.history: list[dict[str, Any]] = []  # OpenAI messages: user and assistant, in turn
        self.records: list[dict[str, Any]] = []  # the record of each answered question, as JSON data

    def new(self) -> None:
        """Start over: the next question is asked with no history."""
        self.history = []
        self.records = []

    async def ask(
        self, text: str, on_event: EventSink | None = None, on_text: TextSink | None = None
    ) -> tuple[str, dict[str, Any] | None]:
        """Ask the team `text` with the history; returns the answer and the run's record (None if none came).

        `on_event` gets each progress event as it arrives, `on_text` each piece of the answer. Raises what LiteLLM
        or the OpenAI client raises (`openai.OpenAIError` subclasses: a bad request is a 400 `BadRequestError`);
        `error_text` turns it into one line for a person.
        """
        messages = [*self.history, {"role": "user", "content": text}]
        parts: list[str] = []
        record: dict[str, Any] | None = None
        async for chunk in self._stream(messages):
            event = _field(chunk, EVENT_FIELD)
            if event is not None and on_event is not None:
                on_event(event)
            record = _field(chunk, RECORD_FIELD) or record
            delta = chunk.choices[0].delta if chunk.choices else None
            if delta is not None and delta.content:
                parts.append(delta.content)
                if on_text is not None:
                    on_text(delta.content)
        answer = "".join(parts)
        self.history = [*messages, {"role": "assistant", "content": answer}]
        if record is not None:
            self.records.append(record)
        return answer, record

    def _stream(self, messages: list[dict[str, Any]]) -> AsyncIterator[Any]:
        return self._through_proxy(messages) if self.proxy else self._in_process(messages)

    async def _in_process(self, messages: list[dict[str, Any]]) -> AsyncIterator[Any]:
        import litellm

        from . import register_with_litellm

        if not any(entry.get("provider") == PROVIDER for entry in litellm.custom_provider_map):
            register_with_litellm()  # a caller that registered its own (with its presets directory) keeps it
        stamp = {} if self.trusted else _UNTRUSTED
        stream = await litellm.acompletion(
            model=f"{PROVIDER}/{self.preset}", messages=messages, stream=True, **self.params, **stamp
        )
        try:
            async for chunk in stream:
                yield chunk
        finally:
            # A cancelled turn lands here with the run's generators suspended: closing them now (not when the
            # garbage collector gets to them) is what cancels the run and its participant calls at once.
            await _close(stream)

    async def _through_proxy(self, messages: list[dict[str, Any]]) -> AsyncIterator[Any]:
        import openai

        async with openai.AsyncOpenAI(base_url=self.proxy, api_key=self.proxy_key or "", max_retries=0) as client:
            stream = await client.chat.completions.create(
                model=f"{PROVIDER}/{self.preset}",
                messages=cast("list[ChatCompletionMessageParam]", messages),
                stream=True,
                extra_body=self.params or None,
            )
            async with stream:  # leaving it closes the connection: the proxy then cancels the run
                async for chunk in stream:
                    yield chunk


async def _close(stream: Any) -> None:
    """Close LiteLLM's stream wrapper and the async generator it wraps, whichever of them can be closed."""
    for part in (stream, getattr(stream, "completion_stream", None)):
        close = getattr(part, "aclose", None)
        if close is not None:
            # "aclose(): asynchronous generator is already running": it is being closed already.
            with contextlib.suppress(RuntimeError):
                await close()


def _field(chunk: Any, name: str) -> Any:
    """A massgen field on a chunk: an attribute on LiteLLM's chunks, an extra field on the OpenAI client's."""
    value = getattr(chunk, name, None)
    if value is None:
        value = (getattr(chunk, "model_extra", None) or {}).get(name)
    return value


def error_text(exc: BaseException) -> str:
    """An error as one line for a person: the message without the class names LiteLLM puts in front of it."""
    return re.sub(r"^(?:litellm\.\w+: )+", "", str(getattr(exc, "message", None) or exc))


def register(context_paths: Sequence[str]) -> MassGenLLM:
    """Register massgen with LiteLLM for a command, with the command line's context paths; raises ValueError for a
    malformed one (its message says which)."""
    import litellm

    from . import register_with_litellm

    litellm.suppress_debug_info = True  # its "Give Feedback" banner would bury our one-line errors
    return register_with_litellm(context_paths=context_paths)
