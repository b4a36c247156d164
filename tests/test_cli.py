"""The `massgen-litellm` command, run as users run it: a subprocess, on a pipe and on a real terminal."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from massgen_litellm.cli import PROXY_CONFIG
from massgen_litellm.testing.loopback import LoopbackServer
from massgen_litellm.testing.openai_chat import KEY, FakeLLM, answer_then_vote

PROXY_PAGE = Path(__file__).parent.parent / "docs" / "proxy.md"
SHIPPED = Path(__file__).parent.parent / "presets"


@pytest.fixture
def team(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A preset `team` of two scripted agents on a loopback server, and the environment that finds it."""
    with LoopbackServer(FakeLLM(default=answer_then_vote("**Four.** Two and two make four."))) as server:
        agents = [
            {"model": f"openai/m{i}", "api_base": server.base_url, "api_key": KEY, "protocol": "tools"} for i in (1, 2)
        ]
        # Both answer alike; the vote round is kept, so the live view and the summary line have votes to show.
        (tmp_path / "team.yaml").write_text(yaml.safe_dump({"agents": agents, "skip_voting_when_unanimous": False}))
        env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
        yield {**env, "MASSGEN_PRESETS_DIR": str(tmp_path), "LITELLM_LOCAL_MODEL_COST_MAP": "True"}


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "massgen_litellm", *args], capture_output=True, text=True, env=env, timeout=120
    )


def test_proxy_config_is_the_docs_and_names_the_handler() -> None:
    done = cli("proxy-config")
    assert done.returncode == 0 and done.stdout == PROXY_CONFIG
    page = PROXY_PAGE.read_text()
    assert f"```yaml\n{PROXY_CONFIG}```" in page
    config = yaml.safe_load(done.stdout)
    assert config["litellm_settings"]["custom_provider_map"] == [
        {"provider": "massgen", "custom_handler": "massgen_litellm.handler"}
    ]


def test_check_shows_the_resolved_agents_without_keys(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "agents": [
                    {"model": "openai/gpt-4.1-mini", "temperature": 0.2, "api_key": "sk-literal-secret-value"},
                    {
                        "model": "some/unknown-model",
                        "api_key": "os.environ/MY_UNSET_KEY",
                        "api_version": "2024-10-21",
                        "extra_headers": {"X-Gateway-Token": "tok-literal-header-secret"},
                    },
                ]
            }
        )
    )
    done = cli("check", str(path), env={**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"})
    assert done.returncode == 0, done.stderr
    assert "agent1: openai/gpt-4.1-mini  protocol=tools (auto)  sampling: temperature=0.2  key: given" in done.stdout
    assert "agent2: some/unknown-model  protocol=tools (auto)" in done.stdout
    assert "os.environ/MY_UNSET_KEY" in done.stdout
    assert "MY_UNSET_KEY, which is not set" in done.stderr
    assert "api_version=2024-10-21" in done.stdout and "extra_headers: X-Gateway-Token: ***" in done.stdout
    assert "sk-literal-secret-value" not in done.stdout + done.stderr
    assert "tok-literal-header-secret" not in done.stdout + done.stderr


def test_check_names_what_is_wrong(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("agents:\n  - model: openai/x\n    temprature: 0.2\n")
    done = cli("check", str(path))
    assert done.returncode == 2
    assert "agents[0].temprature: unknown key" in done.stderr


def test_presets_lists_shipped_and_user_presets(team: dict[str, str]) -> None:
    done = cli("presets", env=team)
    names = [line.split()[0] for line in done.stdout.splitlines()]
    assert {"build", "fast", "ensemble", "local", "team"} <= set(names)
    assert "openai/m1, openai/m2" in done.stdout


def test_ask_json_prints_the_answer_and_the_record(team: dict[str, str]) -> None:
    done = cli("ask", "What is 2 + 2?", "--preset", "team", "--json", env=team)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["answer"] == "Final: **Four.** Two and two make four."
    assert result["record"]["winner"] == "agent1"


def test_ask_off_a_terminal_streams_plain_lines(team: dict[str, str]) -> None:
    done = cli("ask", "What is 2 + 2?", "--preset", "team", "--stream", env=team)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "Final: **Four.** Two and two make four."
    assert "agent2 voted for agent1" in done.stderr and "[consensus: agent1 won" in done.stderr


def test_ask_says_how_the_answer_was_chosen_when_no_vote_counted(team: dict[str, str], tmp_path: Path) -> None:
    # One turn each: both answer alone, nobody votes, and the answer the other agrees with most wins.
    preset = yaml.safe_load((tmp_path / "team.yaml").read_text())
    (tmp_path / "alone.yaml").write_text(yaml.safe_dump({**preset, "max_turns_per_agent": 1, "final": "winner_answer"}))
    done = cli("ask", "What is 2 + 2?", "--preset", "alone", env=team)
    assert done.returncode == 0, done.stderr
    assert (
        "[turn_limit: no vote counted, so agent1's answer won as the one the other independent answers agree with "
        "most;" in done.stderr
    )


def test_the_command_line_does_not_wait_for_the_online_price_list(team: dict[str, str]) -> None:
    env = {k: v for k, v in team.items() if k != "LITELLM_LOCAL_MODEL_COST_MAP"}
    done = cli("ask", "What is 2 + 2?", "--preset", "team", env=env)
    assert done.returncode == 0, done.stderr
    # Offline (as tests are), a fetch would log its failed attempts; the bundled price list is used instead.
    assert "cost map" not in done.stderr


def test_ask_with_an_unknown_preset_is_one_line(team: dict[str, str]) -> None:
    done = cli("ask", "hi", "--preset", "nope", env=team)
    assert done.returncode == 2
    assert done.stderr.startswith("error: massgen: unknown preset 'nope'") and "Traceback" not in done.stderr


def test_ask_on_a_terminal_shows_the_live_view_then_markdown(team: dict[str, str]) -> None:
    controller, terminal = pty.openpty()
    env = {**team, "COLUMNS": "120", "LINES": "40", "TERM": "xterm-256color"}
    process = subprocess.Popen(
        [sys.executable, "-m", "massgen_litellm", "ask", "What is 2 + 2?", "--preset", "team"],
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        env=env,
        close_fds=True,
    )
    os.close(terminal)
    screen = b""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([controller], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # the terminal closed: the command has exited
                break
            if not chunk:
                break
            screen += chunk
        elif process.poll() is not None:
            break
    os.close(controller)
    assert process.wait(10) == 0
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen.decode(errors="replace"))
    # The panels: each agent with its model and state, the tally, then the answer rendered as Markdown.
    for expected in ("agent1 · openai/m1", "agent2 · openai/m2", "voted", "votes agent1: 2", "tokens", "consensus"):
        assert expected in text, expected
    assert "Final: Four. Two and two make four." in text  # the Markdown bold markers are rendered, not printed


MASSGEN_CONFIG = """
agents:
  - id: agent_a
    backend:
      type: claude
      model: claude-sonnet-4-5-20250929
      temperature: 0.2
      cwd: workspace1
      mcp_servers:
        - {name: weather, type: stdio, command: npx, args: ["-y", "weather-mcp"]}
    system_message: Be careful.
  - id: agent_b
    backend:
      type: openai
      model: gpt-5-mini
      reasoning: {effort: low, summary: auto}
      enable_web_search: true
orchestrator:
  snapshot_storage: snapshots
  voting_sensitivity: balanced
  coordination: {max_new_answers_global: 6, answer_novelty_requirement: strict}
  max_new_answers_per_agent: 3
timeout_settings:
  orchestrator_timeout_seconds: 1800
  initial_round_timeout_seconds: 120
ui: {display_type: rich_terminal}
"""


def test_import_turns_a_massgen_config_into_a_preset_and_lists_what_it_left(tmp_path: Path) -> None:
    config = tmp_path / "team.yaml"
    config.write_text(MASSGEN_CONFIG)
    target = tmp_path / "presets" / "team.yaml"
    target.parent.mkdir()
    done = cli("import", str(config), "-o", str(target))
    assert done.returncode == 0, done.stderr
    preset = yaml.safe_load(target.read_text())
    assert [a["model"] for a in preset["agents"]] == ["anthropic/claude-sonnet-4-5-20250929", "openai/gpt-5-mini"]
    assert preset["agents"][0]["mcp_servers"] == [{"name": "weather", "command": "npx", "args": ["-y", "weather-mcp"]}]
    assert preset["agents"][1]["reasoning_effort"] == "low"
    assert {k: preset[k] for k in ("voting_sensitivity", "answer_novelty_requirement", "max_new_answers_global")} == {
        "voting_sensitivity": "balanced",
        "answer_novelty_requirement": "strict",
        "max_new_answers_global": 6,
    }
    assert preset["max_answers_per_agent"] == 3 and preset["run_timeout"] == 1800
    assert preset["initial_round_timeout_seconds"] == 120
    for left in (
        "agents[0].backend.cwd",
        "agents[1].backend.reasoning.summary",
        "agents[1].backend.enable_web_search",
        "orchestrator.snapshot_storage",
        "ui:",
    ):
        assert f"not carried: {left}" in done.stdout
    # The preset it wrote is one the package loads.
    checked = cli("check", str(target), env={**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"})
    assert checked.returncode == 0 and "MCP servers: weather (npx -y weather-mcp)" in checked.stdout
