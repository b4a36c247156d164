"""A MassGen YAML config turned into a preset: `massgen-litellm import CONFIG.yaml`.

What carries over: each agent's model (its backend type becoming LiteLLM's provider prefix), sampling, system
message, base URL and key, and its MCP servers; the orchestrator's voting sensitivity, answer novelty, answer caps
and timeouts. Everything else is listed with the reason it was left behind, so nothing is dropped silently.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# MassGen backend type -> LiteLLM provider prefix.
_PROVIDERS = {
    "openai": "openai",
    "response": "openai",
    "chatcompletion": "openai",
    "claude": "anthropic",
    "anthropic": "anthropic",
    "gemini": "gemini",
    "grok": "xai",
    "azure_openai": "azure",
    "groq": "groq",
    "together": "together_ai",
    "cerebras": "cerebras",
    "fireworks": "fireworks_ai",
    "openrouter": "openrouter",
    "vllm": "hosted_vllm",
    "sglang": "hosted_vllm",
    "lmstudio": "lm_studio",
    "ollama": "ollama_chat",
    "nebius": "nebius",
    "moonshot": "moonshot",
    "qwen": "dashscope",
    "zai": "zai",
}
_AGENT_CLIS = {"claude_code", "codex", "gemini_cli", "copilot", "antigravity_cli", "ag2", "langgraph", "smolagent"}
_SAMPLING = {"temperature": "temperature", "top_p": "top_p", "max_tokens": "max_tokens", "seed": "seed"}
_ORCHESTRATOR = {
    "voting_sensitivity": "voting_sensitivity",
    "answer_novelty_requirement": "answer_novelty_requirement",
    "max_new_answers_per_agent": "max_answers_per_agent",
    "max_new_answers_global": "max_new_answers_global",
}
_TIMEOUTS = {
    "orchestrator_timeout_seconds": "run_timeout",
    "initial_round_timeout_seconds": "initial_round_timeout_seconds",
    "subsequent_round_timeout_seconds": "subsequent_round_timeout_seconds",
    "round_timeout_grace_seconds": "round_timeout_grace_seconds",
}
_WHY = {
    "cwd": "agents here have no workspace or files of their own",
    "enable_web_search": "provider-side web search is not offered; give agents an MCP search or fetch server",
    "enable_code_execution": "code execution is not offered; give agents an MCP server for it",
    "custom_tools": "Python tool functions are not loaded; serve them from an MCP server",
    "snapshot_storage": "there are no workspace snapshots here",
    "agent_temporary_workspace": "there are no workspaces here",
    "ui": "the command line has its own view (massgen-litellm ask)",
    "logging": "records go to MASSGEN_LOG_DIR",
}


def import_config(config: Mapping[str, Any], name: str) -> tuple[dict[str, Any], list[str]]:
    """(the preset as a mapping, what could not be carried and why)."""
    left: list[str] = []
    raw_agents = config.get("agents") or ([config["agent"]] if "agent" in config else [])
    agents = [_agent(a, f"agents[{i}]", left) for i, a in enumerate(raw_agents) if isinstance(a, Mapping)]
    preset: dict[str, Any] = {"description": f"Imported from the MassGen config {name}.", "agents": agents}
    for key, value in config.items():
        if key in ("agents", "agent"):
            continue
        if key == "orchestrator" and isinstance(value, Mapping):
            _orchestrator(value, "orchestrator", preset, left)
        elif key in ("timeout", "timeout_settings") and isinstance(value, Mapping):
            _timeouts(value, key, preset, left)
        else:
            left.append(f"{key}: {_WHY.get(key, 'no counterpart here')}")
    return preset, left


def _agent(raw: Mapping[str, Any], where: str, left: list[str]) -> dict[str, Any]:
    agent: dict[str, Any] = {}
    backend = raw.get("backend") or {}
    for key, value in raw.items():
        if key == "system_message":
            agent["system_message"] = value
        elif key not in ("backend", "id"):
            left.append(f"{where}.{key}: {_WHY.get(key, 'no counterpart here')}")
    kind = str(backend.get("type", "openai"))
    model = str(backend.get("model", ""))
    if kind in _AGENT_CLIS:
        left.append(f"{where}.backend.type: {kind} is an agent program, not a model; the agent became {model!r}")
    prefix = _PROVIDERS.get(kind)
    agent["model"] = model if "/" in model or prefix is None else f"{prefix}/{model}"
    for key, value in backend.items():
        if key in ("type", "model"):
            continue
        if key in _SAMPLING:
            agent[_SAMPLING[key]] = value
        elif key == "base_url":
            agent["api_base"] = value
        elif key == "api_key":
            agent["api_key"] = value
        elif key == "reasoning" and isinstance(value, Mapping):
            if "effort" in value:
                agent["reasoning_effort"] = value["effort"]
            left += [f"{where}.backend.reasoning.{k}: no counterpart here" for k in value if k != "effort"]
        elif key == "mcp_servers":
            servers = _mcp_servers(value, f"{where}.backend.mcp_servers", left)
            if servers:
                agent["mcp_servers"] = servers
        else:
            left.append(f"{where}.backend.{key}: {_WHY.get(key, 'no counterpart here')}")
    return agent


def _mcp_servers(value: Any, where: str, left: list[str]) -> list[dict[str, Any]]:
    entries = list(value.items()) if isinstance(value, Mapping) else [(None, v) for v in value or []]
    servers = []
    for index, (key, server) in enumerate(entries):
        if not isinstance(server, Mapping):
            continue
        name = str(server.get("name") or key or f"server{index + 1}")
        if server.get("command"):
            entry = {"name": name, "command": server["command"], "args": list(server.get("args") or [])}
            if server.get("env"):
                entry["env"] = dict(server["env"])
        elif server.get("url"):
            entry = {"name": name, "url": server["url"]}
            if server.get("headers"):
                entry["headers"] = dict(server["headers"])
        else:
            left.append(f"{where}[{index}]: neither a command nor a url")
            continue
        servers.append(entry)
    return servers


def _orchestrator(value: Mapping[str, Any], where: str, preset: dict[str, Any], left: list[str]) -> None:
    for key, setting in value.items():
        if key in _ORCHESTRATOR and setting is not None:
            preset[_ORCHESTRATOR[key]] = setting
        elif key == "coordination" and isinstance(setting, Mapping):
            _orchestrator(setting, f"{where}.coordination", preset, left)
        elif key in _TIMEOUTS and setting is not None:
            preset[_TIMEOUTS[key]] = setting
        elif key == "context_paths" and isinstance(setting, list):
            preset["context_paths"] = _context_paths(setting, f"{where}.context_paths", left)
        elif setting is not None:
            left.append(f"{where}.{key}: {_WHY.get(key, 'no counterpart here')}")


def _context_paths(entries: list[Any], where: str, left: list[str]) -> list[dict[str, str]]:
    """MassGen's `{path, permission: read|write}` as ours, `{path, mode: ro|rw}`; a preset needs absolute paths."""
    carried = []
    for index, entry in enumerate(entries):
        path = str(entry.get("path") or "") if isinstance(entry, Mapping) else ""
        if not path.startswith(("/", "~")):
            left.append(f"{where}[{index}]: a preset needs an absolute path, not {path!r}")
            continue
        mode = "rw" if entry.get("permission") == "write" else "ro"
        carried.append({"path": path, "mode": mode})
    return carried


def _timeouts(value: Mapping[str, Any], where: str, preset: dict[str, Any], left: list[str]) -> None:
    for key, setting in value.items():
        if key in _TIMEOUTS and setting is not None:
            preset[_TIMEOUTS[key]] = setting
        else:
            left.append(f"{where}.{key}: no counterpart here")
