"""How much output one participant call may ask for.

Three limits meet here: the agent's own (`max_tokens` / `max_completion_tokens` in its entry), the client's (the
outer call's, which bounds only the reply the client gets: the presentation), and the model's own ceiling, as LiteLLM
knows it (`litellm.get_model_info(model)["max_output_tokens"]`). A call asks for the smallest of those that apply,
under a single name. A thinking budget (Anthropic's `thinking.budget_tokens`, which must stay below `max_tokens`) is
kept valid under the result. Every change is said, for the record's notes.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import litellm

OUTPUT_PARAMS = ("max_tokens", "max_completion_tokens")
# Anthropic's smallest `thinking.budget_tokens` (https://docs.claude.com/en/docs/build-with-claude/extended-thinking).
MIN_THINKING_BUDGET = 1024


@functools.cache
def model_max_output(model: str) -> int | None:
    """The most output tokens LiteLLM knows `model` can give, or None if it does not know the model. Looked up once
    per model and process: the price list does not change while we run."""
    try:
        info = litellm.get_model_info(model=model)
    except Exception:
        return None
    value = info.get("max_output_tokens")
    return value if isinstance(value, int) and value > 0 else None


def fit_output(
    params: Mapping[str, Any], model: str, client: Mapping[str, Any] | None = None
) -> tuple[dict[str, Any], list[str]]:
    """`params` for one call of `model`, with its output limit settled, and what was changed (sentences).

    `client`: the client's output limits, for the presentation call only. The limit sent is the smallest of the
    agent's and the client's, clamped to the model's ceiling, under the agent's own parameter name if it has one
    (else the client's). An enabled thinking budget not below that limit is lowered to half of it (at least 1024
    tokens, so the reply keeps room); if the limit is 1024 or less, thinking is left out of the call.
    """
    own = {name: params[name] for name in OUTPUT_PARAMS if params.get(name) is not None}
    bound = {name: client[name] for name in OUTPUT_PARAMS if client and client.get(name) is not None}
    if not own and not bound:
        return dict(params), []
    name = next(iter(own), next(iter(bound), OUTPUT_PARAMS[0]))
    limit = min([*own.values(), *bound.values()])
    notes = []
    ceiling = model_max_output(model)
    if ceiling is not None and limit > ceiling:
        notes.append(
            f"{name}={limit} is more than the {ceiling} output tokens LiteLLM knows {model} can give: sent {ceiling}"
        )
        limit = ceiling
    fitted = {key: value for key, value in params.items() if key not in OUTPUT_PARAMS}
    fitted[name] = limit
    thinking = fitted.get("thinking")
    budget = thinking.get("budget_tokens") if isinstance(thinking, Mapping) else None
    if (
        isinstance(thinking, Mapping)
        and thinking.get("type") == "enabled"
        and isinstance(budget, int)
        and budget >= limit
    ):
        if limit <= MIN_THINKING_BUDGET:
            del fitted["thinking"]
            notes.append(
                f"thinking was left out: {name}={limit} has no room for the smallest thinking budget "
                f"({MIN_THINKING_BUDGET} tokens)"
            )
        else:
            lowered = max(MIN_THINKING_BUDGET, limit // 2)
            fitted["thinking"] = {**thinking, "budget_tokens": lowered}
            notes.append(f"thinking budget_tokens={budget} was lowered to {lowered}: it must stay below {name}={limit}")
    return fitted, notes
