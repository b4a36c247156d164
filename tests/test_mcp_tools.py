"""Agents with tools of their own: real MCP servers from the registry (`mcp-server-time`, `mcp-server-fetch`) and a
stdio server of ours for the scripted faults (tests/mcp_server.py). Participants are scripted models (respx)."""

from __future__ import annotations

import gc
import http.server
import json
import logging
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import litellm
import pytest

from massgen_litellm.errors import MassGenInputError
from massgen_litellm.presets import PresetStore
from massgen_litellm.request import build_request
from massgen_litellm.testing.openai_chat import Call, Reply, answer, vote
from tests.conftest import agent, write_preset

pytest.importorskip("mcp", reason="MCP tools need the `tools` extra: pip install -e '.[test,tools]'")

QUESTION = [{"role": "user", "content": "What time is it in Paris?"}]
OWN = {"name": "own", "command": sys.executable, "args": ["-m", "tests.mcp_server"]}
TIME = {"name": "time", "command": sys.executable, "args": ["-m", "mcp_server_time", "--local-timezone", "UTC"]}


def tool_results(call: Call) -> list[str]:
    return [m["content"] for m in call.messages if m.get("role") == "tool"]


def worker(tool: str, arguments: dict[str, object], answer_from=lambda results: f"Found: {results[-1]}") -> object:
    """Call `tool` once, answer from its result, then vote for agent1."""

    def script(call: Call) -> Reply:
        if "agent1" in call.answers:
            return vote("agent1", "its work checks out")
        results = tool_results(call)
        if not results:
            return Reply(tool=tool, arguments=arguments)
        return answer(answer_from(results))

    return script


def judge(call: Call) -> Reply:
    """Votes for agent1 once it has answered; answers plainly meanwhile."""
    return vote("agent1", "it looked it up") if "agent1" in call.answers else answer("I would have to guess.")


async def test_an_agent_answers_from_a_real_time_server_and_the_other_votes_having_seen_the_work(fake, registered):
    fake.script("a", worker("time__get_current_time", {"timezone": "Europe/Paris"}))
    fake.script("b", judge)
    write_preset(registered, "team", [agent("a"), agent("b")], mcp_servers=[TIME], final="winner_answer")

    response = await litellm.acompletion(model="massgen/team", messages=QUESTION)

    content = response.choices[0].message.content
    assert content.startswith("Found: ") and "Europe/Paris" in content and '"datetime"' in content
    # The tools were offered beside ours, under the server's name, and the work was shown to agent2 in the fence.
    assert {"new_answer", "time__get_current_time", "time__convert_time"} <= set(fake.calls_of("a")[0].tools)
    shown = next(c.answers["agent1"] for c in fake.calls_of("b") if "agent1" in c.answers)
    assert "[Work behind this answer" in shown and 'time__get_current_time {"timezone": "Europe/Paris"}' in shown
    assert "Europe/Paris" in shown.split("result:", 1)[1]
    record = response.massgen
    work = next(a for a in record["answers"] if a["agent_id"] == "agent1")["work"]
    assert work[0]["tool"] == "time__get_current_time" and not work[0]["error"]
    assert record["tally"]["agent1"] == 2


@pytest.fixture
def page() -> Iterator[str]:
    """A page served on 127.0.0.1, for the fetch server to read."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"<html><body><h1>Opening hours</h1><p>The museum opens at 9:30 on Sundays.</p></body></html>"
            self.send_response(200)
            self.send_header("content-type", "text/html")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hours"
    server.shutdown()


async def test_an_agent_reads_a_page_with_the_real_fetch_server(fake, registered, page):
    # The fetch server refuses loopback and private addresses unless told otherwise: a safety feature of its own.
    fetch = {
        "name": "fetch",
        "command": sys.executable,
        "args": ["-m", "mcp_server_fetch", "--ignore-robots-txt", "--allow-private-ips"],
    }
    fake.script("a", worker("fetch__fetch", {"url": page}))
    fake.script("b", judge)
    write_preset(registered, "team", [agent("a"), agent("b")], mcp_servers=[fetch], final="winner_answer")
    response = await litellm.acompletion(model="massgen/team", messages=QUESTION)
    assert "opens at 9:30 on Sundays" in response.choices[0].message.content


@pytest.mark.parametrize(
    ("tool", "tool_timeout", "expected"),
    [
        # The SDK's server does not pass the exception's text on. A generous tool_timeout where the timeout is not
        # what is tested: a loaded machine's first call of a fresh server can take longer than a second.
        ("own__boom", 60, "Error executing tool boom"),
        ("own__hang", 1, "did not answer within tool_timeout=1s"),
        ("own__crash", 60, "failed"),
    ],
)
async def test_a_failing_tool_is_an_error_result_not_a_failed_run(fake, registered, tool, tool_timeout, expected):
    fake.script("a", worker(tool, {}, answer_from=lambda results: f"The tool said: {results[-1]}"))
    fake.script("b", judge)
    servers = [{**OWN, "per_run": True}]
    write_preset(registered, "team", [agent("a"), agent("b")], mcp_servers=servers, tool_timeout=tool_timeout)
    response = await litellm.acompletion(model="massgen/team", messages=QUESTION, final="winner_answer")
    # The hang is bounded by tool_timeout: only that path writes "did not answer within tool_timeout" (a wall-clock
    # bound here would measure how fast this machine starts the server instead).
    assert response.choices[0].message.content.startswith("The tool said: Error: ")
    assert expected in response.choices[0].message.content
    work = next(a for a in response.massgen["answers"] if a["agent_id"] == "agent1")["work"]
    assert work[0]["error"] is True and expected in work[0]["result"]


async def test_a_server_that_will_not_start_leaves_the_run_going_and_the_record_says_why(fake, registered):
    broken = {"name": "broken", "command": "/no/such/mcp-server"}
    fake.script("a", lambda call: vote("agent1") if "agent1" in call.answers else answer("4"))
    fake.script("b", judge)
    write_preset(registered, "team", [agent("a"), agent("b")], mcp_servers=[broken], final="winner_answer")
    response = await litellm.acompletion(model="massgen/team", messages=QUESTION)
    assert response.choices[0].message.content == "4"
    assert any("MCP server 'broken' could not start" in note for note in response.massgen["notes"])
    assert "broken__" not in " ".join(fake.calls[0].tools)


async def test_a_server_slower_to_start_than_tool_timeout_still_serves_the_run(fake, registered):
    # Starting is on its own clock: a start that takes longer than tool_timeout (as importing `mcp` alone does on a
    # slow machine, or an `npx -y` server's first start) is no fault of the server.
    slow = {**OWN, "name": "slow", "per_run": True, "args": [*OWN["args"], "--start-delay", "2"]}
    fake.script("a", worker("slow__echo", {"text": "hi"}))
    fake.script("b", judge)
    write_preset(
        registered, "team", [agent("a"), agent("b")], mcp_servers=[slow], tool_timeout=1, final="winner_answer"
    )
    response = await litellm.acompletion(model="massgen/team", messages=QUESTION)
    assert response.choices[0].message.content == "Found: echo: hi"
    assert response.massgen["notes"] == []


# A server that never finishes starting (it sleeps before its handshake).
STUCK = {**OWN, "name": "stuck", "per_run": True, "args": [*OWN["args"], "--start-delay", "3600"]}


async def test_a_server_that_does_not_start_within_server_start_timeout_is_left_out(fake, registered, caplog):
    fake.script("a", lambda call: vote("agent1") if "agent1" in call.answers else answer("4"))
    fake.script("b", judge)
    write_preset(
        registered,
        "team",
        [agent("a"), agent("b")],
        mcp_servers=[STUCK],
        server_start_timeout=1,
        final="winner_answer",
    )
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        response = await litellm.acompletion(model="massgen/team", messages=QUESTION)
        gc.collect()  # an un-retrieved future exception is reported when the future is collected
    assert response.choices[0].message.content == "4"
    assert "MCP server 'stuck' did not start within server_start_timeout=1s" in " ".join(response.massgen["notes"])
    assert "stuck__" not in " ".join(fake.calls[0].tools)
    assert not [r for r in caplog.records if "never retrieved" in r.getMessage()]


async def test_the_time_servers_take_to_start_counts_towards_run_timeout(fake, registered):
    # run_timeout bounds the whole run, from the request on: a run that waited its server_start_timeout for a server
    # has the rest of its run_timeout for the agents, not a whole one more. The agent still in a turn at the end is
    # stopped by the run, not failed by its call.
    fake.script("a", lambda call: answer("4"))
    fake.script("b", lambda call: answer("late", delay=60))
    write_preset(
        registered,
        "team",
        [agent("a"), agent("b")],
        mcp_servers=[STUCK],
        server_start_timeout=2,
        run_timeout=3,
        final="winner_answer",
    )
    response = await litellm.acompletion(model="massgen/team", messages=QUESTION)
    record = response.massgen
    assert record["end_reason"] == "timeout"
    assert response.choices[0].message.content == "4"
    # The hanging turn began after the 2 s wait for the server and was stopped at the run's 3 s, not 3 s later.
    # (The record's duration also holds the stuck server's shutdown: the MCP SDK waits 2 s for it to exit.)
    hung = next(c for c in record["calls"] if c["agent_id"] == "agent2")
    assert hung["started_at"] >= 2
    assert hung["started_at"] + hung["seconds"] < 2 + 3, "the servers' start, then a whole run_timeout"
    assert next(a for a in record["agents"] if a["id"] == "agent2")["status"] == "stopped"


async def test_a_run_whose_time_went_on_starting_servers_is_a_timeout(fake, registered):
    # All of run_timeout spent waiting for a server that never starts: no agent had time for a call, which is the
    # run's timeout (408), as with agents too slow to answer, not a 502.
    fake.script("a", lambda call: answer("4"))
    write_preset(registered, "team", [agent("a")], mcp_servers=[STUCK], server_start_timeout=2, run_timeout=2)
    with pytest.raises(litellm.Timeout, match="run_timeout"):
        await litellm.acompletion(model="massgen/team", messages=QUESTION)
    assert fake.calls == []


def test_a_proxy_client_may_lower_server_start_timeout_but_not_raise_it(registered):
    write_preset(registered, "team", [agent("a")], server_start_timeout=30)
    request = build_request("team", QUESTION, {"server_start_timeout": 5}, PresetStore([registered]), trusted=False)
    assert request.options.server_start_timeout == 5
    with pytest.raises(MassGenInputError, match="server_start_timeout=600 is above this preset's 30"):
        build_request("team", QUESTION, {"server_start_timeout": 600}, PresetStore([registered]), trusted=False)


async def test_several_calls_in_a_turn_are_bounded_by_max_tool_calls_per_turn(fake, registered):
    def greedy(call: Call) -> Reply:
        if "agent1" in call.answers:
            return vote("agent1")
        if "own__echo" in call.tools:
            return Reply(tool="own__echo", arguments={"text": "again"})
        return answer(f"done after {len(tool_results(call))} results")

    fake.script("a", greedy)
    fake.script("b", judge)
    write_preset(
        registered,
        "team",
        [agent("a"), agent("b")],
        mcp_servers=[{**OWN, "per_run": True}],
        max_tool_calls_per_turn=3,
        final="winner_answer",
    )
    response = await litellm.acompletion(model="massgen/team", messages=QUESTION)
    assert response.choices[0].message.content == "done after 3 results", response.massgen["notes"]
    assert len(next(a for a in response.massgen["answers"] if a["agent_id"] == "agent1")["work"]) == 3


async def test_a_shared_server_is_reused_across_runs_and_a_per_run_one_is_not(fake, registered):
    fake.script("a", worker("own__pid", {}))
    fake.script("b", judge)
    pids = {}
    for per_run in (False, True):
        server = {**OWN, "name": "own", "per_run": per_run, "args": [*OWN["args"], f"--tag={per_run}"]}
        write_preset(registered, "team", [agent("a"), agent("b")], mcp_servers=[server], final="winner_answer")
        seen = []
        for _ in range(2):
            response = await litellm.acompletion(model="massgen/team", messages=QUESTION)
            seen.append(response.choices[0].message.content)
        pids[per_run] = seen
    assert pids[False][0] == pids[False][1]  # one process served both runs
    assert pids[True][0] != pids[True][1]  # a fresh one for each run


def test_request_models_can_never_add_a_server(registered):
    with pytest.raises(litellm.BadRequestError, match=r"models\[0\]\.mcp_servers: unknown key"):
        litellm.completion(
            model="massgen/build", messages=QUESTION, models=[{"model": "openai/a", "mcp_servers": [OWN]}]
        )


@pytest.mark.parametrize("ending", ["exit", "SIGKILL"])
def test_no_server_outlives_its_process(tmp_path: Path, ending: str) -> None:
    script = tmp_path / "parent.py"
    script.write_text(
        "import asyncio, sys\n"
        "from massgen_litellm.config import McpServer\n"
        "from massgen_litellm.mcp_tools import ToolBox\n"
        "box = ToolBox([McpServer(name='own', command=sys.executable, args=['-m', 'tests.mcp_server'])], 10, 1000)\n"
        "async def main():\n"
        "    await box.open()\n"
        "    print((await box.call('own__pid', '{}')).text, flush=True)\n"
        "    await asyncio.sleep(3600 if sys.argv[1] == 'SIGKILL' else 0.1)\n"
        "asyncio.run(main())\n"
    )
    parent = subprocess.Popen(
        [sys.executable, str(script), ending], stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parent.parent
    )
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    assert _alive(child)
    if ending == "SIGKILL":
        parent.send_signal(signal.SIGKILL)
    # Generous bounds: they wait for an exit, they do not time it (a slow machine may take seconds to stop).
    assert parent.wait(60) in (0, -signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and _alive(child):
        time.sleep(0.1)
    assert not _alive(child)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_check_connect_lists_each_servers_tools(tmp_path: Path) -> None:
    preset = tmp_path / "tools.yaml"
    preset.write_text(
        json.dumps(
            {
                "agents": [{"model": "openai/a", "mcp_servers": [{"name": "broken", "command": "/no/such/server"}]}],
                "mcp_servers": [TIME],
            }
        )
    )
    done = subprocess.run(
        [sys.executable, "-m", "massgen_litellm", "check", str(preset), "--connect"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).parent.parent,
    )
    assert done.returncode == 0, done.stderr
    assert "time: get_current_time, convert_time" in done.stdout
    assert "broken: MCP server 'broken' could not start" in done.stdout
