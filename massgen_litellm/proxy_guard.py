"""A LiteLLM proxy callback: it checks a chat request's `messages` before LiteLLM itself reads them, and sends each
run's id as the `x-massgen-run-id` response header on every endpoint (docs/records.md).

LiteLLM (1.110) walks `messages` before any provider sees the call, and a malformed list breaks it there: `"hello"`
comes back as a 400 whose text is a Python traceback with the server's paths, `content: 12345` as a 500 after a
retry loop. This hook gives both the 400 our provider would give, naming the problem and the fix. It checks what
the OpenAI chat contract requires of every request, so it applies to every model the proxy serves.

Config: `litellm_settings: {callbacks: massgen_litellm.proxy_guard.guard}` (`massgen-litellm proxy-config` has it).
"""

from __future__ import annotations

from typing import Any

from litellm.integrations.custom_logger import CustomLogger

from .errors import MassGenInputError, bad_request
from .provider import RUN_ID_HEADER, RUN_ID_KEY, RunId
from .request import check_messages

_CHAT_CALLS = frozenset({"completion", "acompletion", "text_completion", "atext_completion"})


class MessagesGuard(CustomLogger):
    """A LiteLLM `CustomLogger` whose pre-call hook refuses a chat request with malformed `messages` with a 400."""

    async def async_pre_call_hook(
        self, user_api_key_dict: Any, cache: Any, data: dict[str, Any], call_type: str
    ) -> dict[str, Any]:
        if call_type in _CHAT_CALLS and "messages" in data:
            try:
                check_messages(data["messages"])
            except MassGenInputError as exc:
                raise bad_request(str(exc), model=str(data.get("model") or "")) from None
        return data

    async def async_post_call_response_headers_hook(
        self, data: dict[str, Any], user_api_key_dict: Any, response: Any, *args: Any, **kwargs: Any
    ) -> dict[str, str] | None:
        """The run id as a response header, on every endpoint: the /v1/messages bridge passes nothing else of ours
        (docs/records.md). Only a `RunId` the provider wrote counts, never a value the client put in its metadata."""
        for key in ("metadata", "litellm_metadata"):
            metadata = data.get(key)
            run_id = metadata.get(RUN_ID_KEY) if isinstance(metadata, dict) else None
            if isinstance(run_id, RunId):
                return {RUN_ID_HEADER: str(run_id)}
        return None


guard = MessagesGuard()
"""The instance a LiteLLM proxy config names: `litellm_settings: {callbacks: massgen_litellm.proxy_guard.guard}`.

Before LiteLLM reads a chat request's `messages`, it checks them as the OpenAI chat contract requires (a non-empty
list of messages with known roles, and content that is text or a list of typed parts) and raises
`litellm.BadRequestError` (HTTP 400) naming the message and the problem. Requests of other kinds pass untouched."""
