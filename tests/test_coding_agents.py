"""Real coding agents and the other wire formats' SDKs, through the real LiteLLM proxy, with `massgen/duo` as the
model: the Claude Code CLI on `/v1/messages`, the Codex CLI on `/v1/responses`, the `anthropic` SDK, and the `openai`
SDK's Responses API. The team's two agents are scripted loopback models that read the tools the client offered,
propose one (the CLI's own file-writing or shell tool), and answer from its result.

The CLIs are the npm registry's packages, installed by `.ci/npm-packages` into `.tools/node` (their native binaries
come from per-platform packages of the same registry). Each runs non-interactively, in a temporary directory with a
temporary HOME and a minimal environment, under `strace`, with its telemetry, update checks and error reports
turned off, and with HTTP(S)_PROXY and ALL_PROXY pointed at a sink on 127.0.0.1 that refuses and records every
request: the tests assert that nothing reached the sink and that every address the CLI connected or sent to was
127.0.0.1.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
import pytest

from massgen_litellm.testing.loopback import LoopbackServer
from massgen_litellm.testing.openai_chat import Call, FakeLLM, Reply, answer, answer_then_vote, text, vote
from tests.conftest import weather_agent
from tests.proxy import MASTER_KEY, LiteLLMProxy
from tests.test_agent_apps import get_weather
from tests.test_client_tools import WEATHER

pytest.importorskip("fastapi", reason="the LiteLLM proxy's dependencies are missing: pip install -e '.[test,proxy]'")

ROOT = Path(__file__).parent.parent
BIN = ROOT / ".tools" / "node" / "node_modules" / ".bin"
CONFIG = Path(__file__).parent / "coding_agents_proxy.yaml"
CLI_TIMEOUT = 600  # seconds for one CLI run: a few seconds here, generous for a slow, loaded CI machine
QUESTION = "What is the weather in Paris?"


# --- the refusing proxy sink -------------------------------------------------------------------------------------


class _Refuse(http.server.BaseHTTPRequestHandler):
    """Answers every request, CONNECT included, with 403, after noting what was asked for."""

    def _refuse(self) -> None:
        self.server.attempts.append(f"{self.command} {self.path}")  # type: ignore[attr-defined]
        self.send_response(403)
        self.send_header("content-length", "0")
        self.send_header("connection", "close")
        self.end_headers()

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_CONNECT = _refuse

    def log_message(self, *args: object) -> None:
        pass


@dataclass
class Sink:
    url: str
    attempts: list[str]  # "METHOD target" of every request that reached it


@pytest.fixture(scope="module")
def refusing_proxy() -> Iterator[Sink]:
    """The CLIs' HTTP(S) proxy: a server on 127.0.0.1 that refuses everything and notes what was attempted."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Refuse)
    server.attempts = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, name="refusing-proxy", daemon=True)
    thread.start()
    try:
        yield Sink(f"http://127.0.0.1:{server.server_address[1]}", server.attempts)  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


@pytest.fixture
def sink(refusing_proxy: Sink) -> Sink:
    refusing_proxy.attempts.clear()
    return refusing_proxy


# --- the proxy and the scripted team -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def agents_proxy(upstream: LoopbackServer) -> Iterator[LiteLLMProxy]:
    """The real proxy with tests/coding_agents_proxy.yaml (the README's config plus a `small-fast` model)."""
    with LiteLLMProxy(upstream.base_url, config=CONFIG) as running:
        yield running


@pytest.fixture
def backend(upstream: LoopbackServer, agents_proxy: LiteLLMProxy) -> FakeLLM:
    upstream.fake.scripts.clear()
    upstream.fake.calls.clear()
    upstream.fake.script("small-fast", lambda call: text("small"))
    return upstream.fake


def team_of(script: Callable[[Call], Reply], fake: FakeLLM) -> None:
    fake.script("proxy-a", script)
    fake.script("proxy-b", script)


def content_text(content: Any) -> str:
    """A chat message's content as text: a string, or the text of its parts."""
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content or [] if isinstance(part, dict))


def tool_user(tool: str, arguments: dict[str, Any]) -> Callable[[Call], Reply]:
    """Both agents' script: propose `tool` (when the client offered it) until its result is in the conversation,
    then answer from the result; vote for agent1's answer; present it."""

    def script(call: Call) -> Reply:
        if call.is_presentation:
            return text(f"Final: {call.answers.get('agent1', '')}")
        if "agent1" in call.answers:
            return vote("agent1", "agent1 has it")
        results = [m for m in call.messages if m.get("role") == "tool"]
        if results:
            return answer(f"The tool said: {content_text(results[-1]['content'])}")
        if tool not in call.tools:
            return answer(f"The client offered no {tool} tool, only {call.tools}.")
        return Reply(tool=tool, arguments=arguments)

    return script


# --- running a CLI -----------------------------------------------------------------------------------------------


def installed(name: str) -> Path:
    """The CLI's path, once it has shown it runs here; else the test is skipped, saying why."""
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed: the coding-agent CLIs come from the npm registry")
    path = BIN / name
    if not path.exists():
        pytest.skip(f"{name} is not installed: run `bash .ci/npm-packages` (pinned versions into .tools/node)")
    with tempfile.TemporaryDirectory() as home:  # never the user's own HOME, and no network to try
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": home}
        env |= {var: "http://127.0.0.1:9" for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")}
        probe = subprocess.run([str(path), "--version"], env=env, capture_output=True, text=True, timeout=CLI_TIMEOUT)
    if probe.returncode != 0:
        pytest.skip(f"{name} does not run here: {probe.stderr.strip()[-500:]}")
    return path


@pytest.fixture(scope="module")
def claude() -> Path:
    """Claude Code, and strace to watch it; checked before the proxy starts, so that a skip costs nothing."""
    strace()
    return installed("claude")


@pytest.fixture(scope="module")
def codex() -> Path:
    strace()
    return installed("codex")


def strace() -> str:
    """strace, once it has shown it can trace here; else the test is skipped, saying why."""
    path = shutil.which("strace")
    if path is None:
        pytest.skip("strace is not installed (Debian package: strace): it is how these tests see every connection")
    probe = subprocess.run([path, *TRACE, "-o", os.devnull, "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"strace cannot trace here: {probe.stderr.decode(errors='replace').strip()}")
    return path


# What a CLI sends to a network address: a connect (TCP, or UDP such as DNS) or a datagram sent to an address.
TRACE = ["-f", "-qq", "-e", "trace=connect,sendto,sendmsg"]
_INET = re.compile(r"sa_family=AF_INET6?\b")
_ADDRESS = re.compile(r"sa_family=AF_INET6?, [^}]*?(?:inet_addr|inet_pton)\((?:AF_INET6, )?\"([^\"]+)\"")


@dataclass
class Run:
    stdout: str
    stderr: str
    addresses: list[str]  # every IPv4/IPv6 address the CLI, or anything it started, connected or sent to


def run_cli(command: list[str], env: dict[str, str], cwd: Path, trace: Path) -> Run:
    """Runs a CLI to its end under strace; a CLI that fails is a test failure that shows its output."""
    done = subprocess.run(
        [strace(), *TRACE, "-o", str(trace), *command],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, (
        f"{command[0]} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    )
    traced = trace.read_text()
    addresses = _ADDRESS.findall(traced)
    assert len(addresses) == len(_INET.findall(traced)), "an IP address in the trace that this test cannot read"
    return Run(done.stdout, done.stderr, addresses)


def assert_stayed_on_loopback(run: Run, sink: Sink) -> None:
    assert sink.attempts == []  # nothing went through the HTTP(S) proxy
    assert run.addresses, "strace saw no connection at all: the trace is not working"
    assert set(run.addresses) <= {"127.0.0.1", "::1", "::ffff:127.0.0.1"}, run.addresses


def cli_env(home: Path, sink: Sink) -> dict[str, str]:
    """What every CLI run gets: a temporary HOME, the refusing sink as its proxy, and nothing of this process."""
    home.mkdir()
    proxies = {name: sink.url for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")}
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        **proxies,
        **{name.lower(): url for name, url in proxies.items()},
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    }


PROXY_PLACEHOLDER = "http://proxy.placeholder"


def setup_block(language: str) -> str:
    """The first ```language block of docs/coding-agents.md's set-up, which the tests run as written."""
    block = re.search(rf"```{language}\n(.*?)```", (ROOT / "docs" / "coding-agents.md").read_text(), re.DOTALL)
    assert block is not None, f"docs/coding-agents.md has a {language} block"
    return block.group(1).replace("http://127.0.0.1:4000", PROXY_PLACEHOLDER).replace("massgen/build", "massgen/duo")


def claude_env(home: Path, sink: Sink, proxy: LiteLLMProxy) -> dict[str, str]:
    """docs/coding-agents.md's Claude Code variables, pointed at the test proxy."""
    exported: dict[str, str] = {}
    for line in setup_block("bash").splitlines():
        words = shlex.split(line, comments=True)
        if words[:1] == ["export"]:
            exported.update(word.split("=", 1) for word in words[1:])
    assert "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC" in exported
    exported["ANTHROPIC_BASE_URL"] = exported["ANTHROPIC_BASE_URL"].replace(PROXY_PLACEHOLDER, proxy.base_url)
    exported["ANTHROPIC_AUTH_TOKEN"] = MASTER_KEY
    return {**cli_env(home, sink), **exported}


def codex_env(home: Path, sink: Sink, proxy: LiteLLMProxy) -> dict[str, str]:
    """docs/coding-agents.md's Codex config.toml, pointed at the test proxy."""
    env = cli_env(home, sink)
    codex_home = home / ".codex"
    codex_home.mkdir()
    (codex_home / "config.toml").write_text(setup_block("toml").replace(PROXY_PLACEHOLDER, proxy.base_url))
    return {**env, "CODEX_HOME": str(codex_home), "LITELLM_PROXY_API_KEY": MASTER_KEY}


def claude_events(run: Run) -> list[dict[str, Any]]:
    """`claude -p --output-format stream-json --verbose`: one JSON event a line."""
    return [json.loads(line) for line in run.stdout.splitlines() if line.strip()]


def blocks(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    """Every content block of `kind` in the assistant's and the user's (tool results) messages, in order."""
    return [
        block
        for event in events
        if event.get("type") in ("assistant", "user")
        for block in event["message"]["content"]
        if isinstance(block, dict) and block.get("type") == kind
    ]


def tool_messages(fake: FakeLLM) -> list[str]:
    """The text of every tool result the agents were sent."""
    return [content_text(m["content"]) for c in fake.calls for m in c.messages if m.get("role") == "tool"]


# --- Claude Code -------------------------------------------------------------------------------------------------


def test_claude_code_answers_a_plain_question(
    claude: Path, backend: FakeLLM, agents_proxy: LiteLLMProxy, sink: Sink, tmp_path: Path
) -> None:
    team_of(answer_then_vote("2 + 2 = 4"), backend)
    work = tmp_path / "work"
    work.mkdir()

    run = run_cli(
        [str(claude), "-p", "What is 2 + 2?"], claude_env(tmp_path / "home", sink, agents_proxy), work, tmp_path / "t"
    )

    assert run.stdout == "Final: 2 + 2 = 4\n"
    asked = [c for c in backend.calls if c.model in ("proxy-a", "proxy-b")]
    assert asked and all("What is 2 + 2?" in json.dumps(c.messages) for c in asked)
    assert backend.calls_of("small-fast") == []  # docs/coding-agents.md: `claude -p` sent no side task
    assert_stayed_on_loopback(run, sink)


def test_claude_code_runs_the_teams_write_proposal(
    claude: Path, backend: FakeLLM, agents_proxy: LiteLLMProxy, sink: Sink, tmp_path: Path
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    target = work / "team.txt"
    team_of(tool_user("Write", {"file_path": str(target), "content": "made by the team"}), backend)

    run = run_cli(
        [str(claude), "-p", "Write team.txt", "--allowedTools", "Write", "--output-format", "stream-json", "--verbose"],
        claude_env(tmp_path / "home", sink, agents_proxy),
        work,
        tmp_path / "t",
    )

    assert target.read_text() == "made by the team"  # Claude Code ran the team's proposal
    events = claude_events(run)
    [use] = blocks(events, "tool_use")
    assert (use["name"], use["input"]) == ("Write", {"file_path": str(target), "content": "made by the team"})
    [result] = blocks(events, "tool_result")
    assert result["tool_use_id"] == use["id"] and "File created successfully" in content_text(result["content"])
    # The team's second run saw the result, and answered from it.
    assert any("File created successfully" in t for t in tool_messages(backend))
    assert events[-1]["type"] == "result" and events[-1]["result"].startswith("Final: The tool said: File created")
    # The team's progress reached the user as thinking, the way Claude Code shows a model's reasoning.
    thoughts = "".join(block["thinking"] for block in blocks(events, "thinking"))
    assert "agent1 answered" in thoughts and "agent2 voted for agent1" in thoughts
    assert_stayed_on_loopback(run, sink)


def test_claude_code_refuses_a_tool_it_was_not_allowed_and_the_team_hears_why(
    claude: Path, backend: FakeLLM, agents_proxy: LiteLLMProxy, sink: Sink, tmp_path: Path
) -> None:
    """Without `--allowedTools`, `claude -p` cannot ask the user: it refuses, and the refusal is the tool result."""
    work = tmp_path / "work"
    work.mkdir()
    target = work / "team.txt"
    team_of(tool_user("Write", {"file_path": str(target), "content": "made by the team"}), backend)

    run = run_cli(
        [str(claude), "-p", "Write team.txt", "--output-format", "stream-json", "--verbose"],
        claude_env(tmp_path / "home", sink, agents_proxy),
        work,
        tmp_path / "t",
    )

    assert not target.exists()
    [result] = blocks(claude_events(run), "tool_result")
    assert result["is_error"] is True
    refusal = content_text(result["content"])
    assert "permission" in refusal.lower()
    assert any(refusal in t for t in tool_messages(backend))
    assert_stayed_on_loopback(run, sink)


# --- Codex -------------------------------------------------------------------------------------------------------


def test_codex_answers_a_plain_question(
    codex: Path, backend: FakeLLM, agents_proxy: LiteLLMProxy, sink: Sink, tmp_path: Path
) -> None:
    team_of(answer_then_vote("2 + 2 = 4"), backend)
    work = tmp_path / "work"
    work.mkdir()

    run = run_cli(
        [str(codex), "exec", "--skip-git-repo-check", "What is 2 + 2?"],
        codex_env(tmp_path / "home", sink, agents_proxy),
        work,
        tmp_path / "t",
    )

    assert run.stdout == "Final: 2 + 2 = 4\n"
    # The team's progress reached the user as reasoning, which `codex exec` prints on stderr.
    assert "agent2 voted for agent1" in run.stderr
    asked = [c for c in backend.calls if c.model in ("proxy-a", "proxy-b")]
    assert asked and all("What is 2 + 2?" in json.dumps(c.messages) for c in asked)
    assert_stayed_on_loopback(run, sink)


def test_codex_runs_the_teams_shell_proposal(
    codex: Path, backend: FakeLLM, agents_proxy: LiteLLMProxy, sink: Sink, tmp_path: Path
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    command = "printf 'made by the team' > team.txt && wc -c < team.txt"
    team_of(tool_user("exec_command", {"cmd": command}), backend)

    run = run_cli(
        [str(codex), "exec", "--skip-git-repo-check", "--sandbox", "workspace-write", "Make team.txt"],
        codex_env(tmp_path / "home", sink, agents_proxy),
        work,
        tmp_path / "t",
    )

    assert (work / "team.txt").read_text() == "made by the team"  # Codex ran the team's command, in its sandbox
    results = tool_messages(backend)  # the command's output (wc -c) came back to the team, in every agent's request
    assert results and all("Process exited with code 0" in r and r.rstrip().endswith("16") for r in results)
    assert run.stdout.startswith("Final: The tool said: ") and run.stdout.rstrip().endswith("16")
    assert_stayed_on_loopback(run, sink)


# --- the SDKs ----------------------------------------------------------------------------------------------------

WEATHER_ANTHROPIC = {
    "name": "get_weather",
    "description": WEATHER["function"]["description"],
    "input_schema": WEATHER["function"]["parameters"],
}
WEATHER_RESPONSES = {"type": "function", **WEATHER["function"]}


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_the_anthropic_sdk_tool_round_trip(backend: FakeLLM, agents_proxy: LiteLLMProxy, stream: bool) -> None:
    anthropic = pytest.importorskip("anthropic", reason="the anthropic SDK is missing: pip install -e '.[test]'")
    team_of(weather_agent, backend)
    client = anthropic.Anthropic(base_url=agents_proxy.base_url, api_key=MASTER_KEY, max_retries=0, timeout=120)

    def create(messages: list[dict[str, Any]]) -> Any:
        request = {"model": "massgen/duo", "max_tokens": 1024, "messages": messages, "tools": [WEATHER_ANTHROPIC]}
        if not stream:
            return client.messages.create(**request)
        with client.messages.stream(**request) as events:
            return events.get_final_message()

    messages: list[dict[str, Any]] = [{"role": "user", "content": QUESTION}]
    first = create(messages)

    assert first.stop_reason == "tool_use"
    [use] = [block for block in first.content if block.type == "tool_use"]
    assert (use.name, use.input) == ("get_weather", {"city": "Paris"})
    messages += [
        {"role": "assistant", "content": [block.model_dump(exclude_none=True) for block in first.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": get_weather("Paris")}]},
    ]
    second = create(messages)

    assert second.stop_reason == "end_turn"
    assert "".join(b.text for b in second.content if b.type == "text") == "Final: In Paris it is 18 C, light rain."
    assert "18 C, light rain" in tool_messages(backend)


def responses_output(client: openai.OpenAI, stream: bool, **request: Any) -> Any:
    """The Responses API's response object, from the JSON reply or from the stream's `response.completed` event."""
    if not stream:
        return client.responses.create(model="massgen/duo", tools=[WEATHER_RESPONSES], **request)
    events = list(client.responses.create(model="massgen/duo", tools=[WEATHER_RESPONSES], stream=True, **request))
    [completed] = [event for event in events if event.type == "response.completed"]
    return completed.response


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_the_responses_api_tool_round_trip(backend: FakeLLM, agents_proxy: LiteLLMProxy, stream: bool) -> None:
    team_of(weather_agent, backend)
    client = openai.OpenAI(base_url=f"{agents_proxy.base_url}/v1", api_key=MASTER_KEY, max_retries=0, timeout=120)

    first = responses_output(client, stream, input=QUESTION)

    [call] = [item for item in first.output if item.type == "function_call"]
    assert (call.name, json.loads(call.arguments)) == ("get_weather", {"city": "Paris"})
    history = [
        {"role": "user", "content": QUESTION},
        {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
        {"type": "function_call_output", "call_id": call.call_id, "output": get_weather("Paris")},
    ]
    second = responses_output(client, stream, input=history)

    assert second.output_text == "Final: In Paris it is 18 C, light rain."
    assert "18 C, light rain" in tool_messages(backend)


def test_previous_response_id_without_a_database_drops_the_history(
    backend: FakeLLM, agents_proxy: LiteLLMProxy
) -> None:
    """LiteLLM rebuilds a `previous_response_id` conversation from the proxy's spend logs, in its database. Without
    one it finds nothing: the team gets the new input alone, plus the one tool call a `function_call_output` answers,
    which LiteLLM keeps in its process's memory for ten minutes. The user's question never reaches the team."""
    team_of(weather_agent, backend)
    client = openai.OpenAI(base_url=f"{agents_proxy.base_url}/v1", api_key=MASTER_KEY, max_retries=0, timeout=120)
    first = client.responses.create(model="massgen/duo", input=QUESTION, tools=[WEATHER_RESPONSES])
    [call] = [item for item in first.output if item.type == "function_call"]
    backend.calls.clear()

    second = client.responses.create(
        model="massgen/duo",
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": get_weather("Paris")}],
        tools=[WEATHER_RESPONSES],
    )

    assert second.output_text == "Final: In Paris it is 18 C, light rain."  # the scripted team needs no question
    for seen in (c.messages for c in backend.calls):
        assert [m["role"] for m in seen[:2]] == ["assistant", "tool"]  # no user message before the rebuilt call
        assert seen[0]["tool_calls"][0]["id"] == call.call_id
        assert QUESTION not in json.dumps(seen)
