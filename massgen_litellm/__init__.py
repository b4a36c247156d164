"""massgen-litellm: a team of LLMs that looks like one model to LiteLLM.

from massgen_litellm import register_with_litellm
register_with_litellm()
litellm.completion(model="massgen/build", messages=[...])
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .config import AgentConfig, Preset, RunOptions
    from .provider import MassGenLLM, handler
    from .record import RunRecord

__version__ = "0.1.0"
__all__ = [
    "AgentConfig",
    "MassGenLLM",
    "Preset",
    "RunOptions",
    "RunRecord",
    "handler",
    "register_with_litellm",
]

# Loaded on first use, so that `python -m massgen_litellm.local_server` (a child process that needs none of it)
# does not pay for importing LiteLLM.
_LAZY = {
    "AgentConfig": "config",
    "Preset": "config",
    "RunOptions": "config",
    "MassGenLLM": "provider",
    "handler": "provider",
    "RunRecord": "record",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)


def register_with_litellm(presets_dir: str | os.PathLike[str] | None = None, *, load_env: bool = True) -> MassGenLLM:
    """Make `massgen/<preset>` a LiteLLM model name. Safe to call more than once; other custom providers are kept.

    `presets_dir` adds a directory of your own presets, which override shipped ones of the same name. Unless
    `load_env` is false, a `.env` file (searched from the working directory up) is loaded first, without
    overriding variables that are already set. It also adds `call_policy.policy` to `litellm.callbacks` (once), so
    that a preset's `enable_cache: false` holds where the caller has a LiteLLM cache.
    """
    import litellm
    from dotenv import find_dotenv, load_dotenv

    from .call_policy import policy
    from .errors import PROVIDER
    from .provider import MassGenLLM, handler

    if load_env:
        load_dotenv(find_dotenv(usecwd=True), override=False)
    provider = MassGenLLM([presets_dir]) if presets_dir is not None else handler
    others = [entry for entry in litellm.custom_provider_map if entry.get("provider") != PROVIDER]
    litellm.custom_provider_map = [*others, {"provider": PROVIDER, "custom_handler": provider}]
    policy.store = provider.presets
    if policy not in litellm.callbacks:
        litellm.callbacks.append(policy)
    return provider
