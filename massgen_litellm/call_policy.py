"""What LiteLLM does around a `massgen/*` call before and after our provider runs: its cache and its retries.

LiteLLM looks a request up in its cache before any provider runs, so a repeated request is answered without a run,
record included (the record of the run that answered it first), and it retries a failed call `num_retries` times.
Three things need a callback, because no code of a custom provider runs before that lookup, on a hit, or around
LiteLLM's retry loop:

* A preset with `enable_cache: false` (a team that must always run: fresh tools, live data) gets
  `cache={"no-cache": true, "no-store": true}` on every request, whatever the request asked: it is neither answered
  from the cache nor stored in it. Only the preset, a file on the server, decides; a request cannot turn it back on.
* On the proxy, a reply served from the cache has `"cache_hit": true` in its record (the record is otherwise the
  first run's, unchanged).
* The caller's `num_retries` never runs a whole team again: a run has already retried each participant call within
  its caps (the agents' own `num_retries`, max_calls), and a run without an answer run again is the same cost again.
  Our errors carry `num_retries=0` for LiteLLM's router; LiteLLM's in-process retry loop reads the request's
  `num_retries` instead, so it is set to 0 here.

Config: `litellm_settings: {callbacks: [massgen_litellm.proxy_guard.guard, massgen_litellm.call_policy.policy]}`;
`register_with_litellm()` adds `policy` to `litellm.callbacks` in-process. The preset is honoured by
`litellm.acompletion` and by the proxy; the synchronous `litellm.completion` reads the cache before any callback
runs (LiteLLM 1.110), so there pass `cache={"no-cache": True, "no-store": True}` yourself.
"""

from __future__ import annotations

from typing import Any

import litellm
from litellm.integrations.custom_logger import CustomLogger

from .errors import PROVIDER
from .presets import PresetStore
from .record import RECORD_FIELD

CACHE_HIT_FIELD = "cache_hit"


class CallPolicy(CustomLogger):
    """`async_pre_call_deployment_hook` runs in LiteLLM's async entry points (`acompletion`, and the proxy's
    calls), before the cache lookup and the retry loop; `async_post_call_success_hook` on the proxy's replies."""

    def __init__(self, store: PresetStore | None = None) -> None:
        super().__init__()
        self.store = store

    def _preset_allows_cache(self, model: str) -> bool:
        store = self.store
        if store is None:  # the provider's own store: the same presets (and directories) it serves
            from .provider import handler

            store = handler.presets
        try:
            return store.load(model.removeprefix(f"{PROVIDER}/")).enable_cache
        except Exception:
            return True  # an unknown or broken preset: the provider says what is wrong, with a 400

    async def async_pre_call_deployment_hook(self, kwargs: dict[str, Any], call_type: Any) -> dict[str, Any] | None:
        model = kwargs.get("model")
        if not isinstance(model, str) or not model.startswith(f"{PROVIDER}/"):
            return None
        changed = {**kwargs, "num_retries": 0}
        # Without a cache nothing is looked up or stored, so the preset (read from disk) need not be consulted.
        if litellm.cache is not None and not self._preset_allows_cache(model):
            asked = kwargs.get("cache")
            cache = dict(asked) if isinstance(asked, dict) else {}
            changed["cache"] = {**cache, "no-cache": True, "no-store": True}
        return changed

    async def async_post_call_success_hook(self, data: dict[str, Any], user_api_key_dict: Any, response: Any) -> Any:
        record = getattr(response, RECORD_FIELD, None)
        hidden = getattr(response, "_hidden_params", None) or {}
        if isinstance(record, dict) and hidden.get("cache_hit"):
            record[CACHE_HIT_FIELD] = True
        return response


policy = CallPolicy()
"""The callback a LiteLLM proxy config names: `massgen_litellm.call_policy.policy`."""
