"""A LiteLLM proxy callback that writes down, for every call the proxy process logs, what its spend tracking would
bill and to whom: one JSON line per call in the file `SPEND_PROBE_FILE` names.

It applies the proxy's own rules (LiteLLM 1.110's `ProxyDBLogger`): the key, team and user come from the call's
`user_api_key*` metadata, the end user from `user_api_key_end_user_id`, and a call is billed when any of them is set
(`_should_track_cost_callback`). A proxy with a database would add `cost` to each of them; this one has none, so the
tests read the lines instead. Named in `tests/proxy_features_config.yaml` as `spend_probe.probe` (LiteLLM loads it
from the config's directory).
"""

from __future__ import annotations

import json
import os
from typing import Any

from litellm.integrations.custom_logger import CustomLogger
from litellm.litellm_core_utils.core_helpers import get_litellm_metadata_from_kwargs
from litellm.proxy.hooks.proxy_track_cost_callback import _should_track_cost_callback
from litellm.utils import get_end_user_id_for_cost_tracking

FILE_ENV = "SPEND_PROBE_FILE"


class SpendProbe(CustomLogger):
    async def async_log_success_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
        litellm_params = kwargs.get("litellm_params") or {}
        metadata = get_litellm_metadata_from_kwargs(kwargs=kwargs) or {}
        standard = kwargs.get("standard_logging_object") or {}
        key = metadata.get("user_api_key")
        team = metadata.get("user_api_key_team_id")
        user = metadata.get("user_api_key_user_id")
        end_user = get_end_user_id_for_cost_tracking(litellm_params)
        line = {
            "model": kwargs.get("model"),
            "massgen_run_id": metadata.get("massgen_run_id"),
            "massgen_agent_id": metadata.get("massgen_agent_id"),
            "key": key,
            "team": team,
            "user_id": user,
            "end_user": end_user,
            "billed": _should_track_cost_callback(
                user_api_key=key, user_id=user, team_id=team, end_user_id=end_user, call_type=kwargs.get("call_type")
            ),
            "cost": standard.get("response_cost"),
            "cache_hit": bool(kwargs.get("cache_hit")),
            "trace_id": standard.get("trace_id"),
            "caller_trace_id": metadata.get("trace_id"),
            "user": (kwargs.get("optional_params") or {}).get("user") or kwargs.get("user"),
        }
        path = os.environ.get(FILE_ENV)
        if path:
            _append(path, json.dumps(line, default=str))


def _append(path: str, line: str) -> None:
    # One short line to a local file; done in place, so the line is there by the time the call is logged as done.
    with open(path, "a", encoding="utf-8") as out:
        out.write(line + "\n")


probe = SpendProbe()
