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
    from collections.abc import Sequence

    from .config import AgentConfig, ContextPath, Preset, RunOptions
    from .provider import MassGenLLM, handler
    from .record import RunRecord

__version__ = "0.1.0"
__all__ = [
    "AgentConfig",
    "ContextPath",
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
    "ContextPath": "config",
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


def register_with_litellm(
    presets_dir: str | os.PathLike[str] | None = None,
    *,
    load_env: bool = True,
    context_paths: Sequence[str | ContextPath] = (),
) -> MassGenLLM:
    """Make `massgen/<preset>` a LiteLLM model name. Safe to call more than once; other custom providers are kept.

    It sets the `massgen` entry of `litellm.custom_provider_map` (LiteLLM's mechanism for custom providers), replacing
    an earlier `massgen` entry and keeping every other one. After it, `litellm.completion`, `acompletion` and their
    `stream=True` forms accept `model="massgen/<preset>"` (see the docs' From Python page).

    Args:
        presets_dir: a directory of your own presets (`<name>.yaml`), searched after the shipped presets and the
            directories in `MASSGEN_PRESETS_DIR`, so its presets override those of the same name. It is read on each
            request, not now: a missing directory is no error, it just adds no preset.
        context_paths: directories added to every preset the process serves, as `"DIR"` (read-only), `"DIR:rw"`
            (read and write) or `ContextPath`s: the agents reach them through a filesystem MCP server
            (docs/context-paths.md). Only the caller in this process sets them, never a request.
        load_env: load a `.env` file first (found from the working directory upwards), without overriding variables
            that are already set: that is where LiteLLM reads provider keys such as `OPENAI_API_KEY` from.

    It also adds `call_policy.policy` to `litellm.callbacks` (once), so that a preset's `enable_cache: false` holds
    where the caller has a LiteLLM cache, and a caller's `num_retries` never runs a whole team again.

    Raises:
        ValueError: a malformed context path.

    Returns:
        The provider now registered, which is the shared `massgen_litellm.handler` when `presets_dir` is None, and
            otherwise a new `MassGenLLM` that also searches `presets_dir`.
    """
    import litellm
    from dotenv import find_dotenv, load_dotenv

    from .call_policy import policy
    from .errors import PROVIDER
    from .provider import MassGenLLM, handler

    if load_env:
        load_dotenv(find_dotenv(usecwd=True), override=False)
    from .config import ContextPath

    paths = [entry if isinstance(entry, ContextPath) else ContextPath.parse(entry) for entry in context_paths]
    if presets_dir is None and not paths:
        provider = handler
    else:
        provider = MassGenLLM([presets_dir] if presets_dir is not None else [], paths)
    others = [entry for entry in litellm.custom_provider_map if entry.get("provider") != PROVIDER]
    litellm.custom_provider_map = [*others, {"provider": PROVIDER, "custom_handler": provider}]
    policy.store = provider.presets
    if policy not in litellm.callbacks:
        litellm.callbacks.append(policy)
    return provider
