"""Context paths: the agents read (and, where `rw` says, write) files through the real filesystem MCP server from
npm (`@modelcontextprotocol/server-filesystem`), on temporary directories. Participants are scripted models (respx
in process; a loopback server behind the real LiteLLM proxy for the trust tests).

The server comes from a local npm prefix (`.ci/npm-packages` installs it into `.tools/node/`; or set
MASSGEN_NODE_PREFIX) or from PATH; without Node.js and that install the tests skip and say so (npx would fetch it
from the registry).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import litellm
import pytest

from massgen_litellm import context_paths, register_with_litellm
from massgen_litellm.config import ContextPath
from massgen_litellm.testing.loopback import LoopbackServer
from massgen_litellm.testing.openai_chat import Call, FakeLLM, Reply, answer, vote
from tests.conftest import agent, write_preset
from tests.proxy import LiteLLMProxy

pytest.importorskip("mcp", reason="context paths need the `tools` extra: pip install -e '.[test,tools]'")

REPO = Path(__file__).resolve().parent.parent
LOCAL_PREFIX = REPO / ".tools" / "node"  # where .ci/npm-packages installs it
SECRET = "The vault's combination is 31-7-42."


def _installed_prefix() -> str | None:
    for prefix in (os.environ.get(context_paths.PREFIX_ENV), str(LOCAL_PREFIX)):
        if prefix and os.access(Path(prefix) / "node_modules" / ".bin" / context_paths.COMMAND, os.X_OK):
            return prefix
    return None


PREFIX = _installed_prefix()
if shutil.which("node") is None or (PREFIX is None and shutil.which(context_paths.COMMAND) is None):
    pytest.skip(
        "the filesystem MCP server is not installed: needs Node.js and `bash .ci/npm-packages` (.ci/run runs it), "
        f"or `npm install --prefix DIR {context_paths.PACKAGE}@{context_paths.VERSION}` with MASSGEN_NODE_PREFIX=DIR",
        allow_module_level=True,
    )


@pytest.fixture(autouse=True)
def server_install(monkeypatch: pytest.MonkeyPatch) -> None:
    if PREFIX is not None:
        monkeypatch.setenv(context_paths.PREFIX_ENV, PREFIX)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A read-only context path: a small project with a notes file."""
    directory = tmp_path / "project"
    directory.mkdir()
    (directory / "notes.txt").write_text(f"Meeting notes.\n{SECRET}\n")
    return directory


@pytest.fixture
def outbox(tmp_path: Path) -> Path:
    """A read-write context path."""
    directory = tmp_path / "outbox"
    directory.mkdir()
    return directory


def tool_results(call: Call) -> list[str]:
    return [m["content"] for m in call.messages if m.get("role") == "tool"]


def worker(*steps: tuple[str, dict[str, object]], answer_from: Callable[[list[str]], str] | None = None) -> object:
    """Make the tool calls `steps`, one per reply, then answer from their results; vote for agent1 once it has
    answered (when this agent is not agent1)."""

    def script(call: Call) -> Reply:
        if "agent1" in call.answers:
            return vote("agent1", "its work checks out")
        results = tool_results(call)
        if len(results) < len(steps):
            name, arguments = steps[len(results)]
            return Reply(tool=name, arguments=arguments)
        return answer(answer_from(results) if answer_from else f"Found: {results[-1]}")

    return script


def judge(call: Call) -> Reply:
    return vote("agent1", "it read the file") if "agent1" in call.answers else answer("I cannot see the files.")


def work_of(record: dict[str, object], agent_id: str = "agent1") -> list[dict[str, object]]:
    answers = record["answers"]
    assert isinstance(answers, list)
    return next(a for a in answers if a["agent_id"] == agent_id)["work"]


async def test_a_question_is_answered_from_a_file_in_a_read_only_context_path(fake, registered, project):
    fake.script("a", worker(("files__read_text_file", {"path": str(project / "notes.txt")})))
    fake.script("b", judge)
    write_preset(
        registered, "team", [agent("a"), agent("b")], context_paths=[{"path": str(project)}], final="winner_answer"
    )

    response = await litellm.acompletion(model="massgen/team", messages=[{"role": "user", "content": "The code?"}])

    assert SECRET in response.choices[0].message.content
    offered = set(fake.calls_of("a")[0].tools)
    assert {"files__read_text_file", "files__list_directory", "files__search_files"} <= offered
    # Read-only: the server's writing tools are not offered at all.
    assert not offered & {"files__write_file", "files__edit_file", "files__move_file", "files__create_directory"}
    # The read shows in the answer's work, in the record and in what the other agent saw before voting.
    work = work_of(response.massgen)
    assert work[0]["tool"] == "files__read_text_file" and SECRET in work[0]["result"] and not work[0]["error"]
    shown = next(c.answers["agent1"] for c in fake.calls_of("b") if "agent1" in c.answers)
    assert "files__read_text_file" in shown and SECRET in shown


async def test_a_write_lands_in_an_rw_path_and_is_refused_in_a_read_only_one(fake, registered, project, outbox):
    fake.script(
        "a",
        worker(
            ("files_rw__write_file", {"path": str(outbox / "summary.md"), "content": "# Summary\nAll good."}),
            ("files_rw__write_file", {"path": str(project / "notes.txt"), "content": "overwritten"}),
            answer_from=lambda results: "Wrote the summary.",
        ),
    )
    fake.script("b", judge)
    write_preset(
        registered,
        "team",
        [agent("a"), agent("b")],
        context_paths=[{"path": str(project)}, {"path": str(outbox), "mode": "rw"}],
        final="winner_answer",
    )

    response = await litellm.acompletion(model="massgen/team", messages=[{"role": "user", "content": "Summarise."}])

    assert (outbox / "summary.md").read_text() == "# Summary\nAll good."
    assert (project / "notes.txt").read_text() == f"Meeting notes.\n{SECRET}\n"  # untouched
    first, second = work_of(response.massgen)
    assert first["tool"] == "files_rw__write_file" and not first["error"]
    # The read-write server does not reach the read-only directory: the server itself refuses, and says so.
    assert second["error"] and "outside allowed directories" in second["result"]
    offered = set(fake.calls_of("a")[0].tools)
    assert {"files_rw__write_file", "files__read_text_file"} <= offered and "files__write_file" not in offered


async def test_the_read_only_server_refuses_a_write_tool_even_when_called_by_name(project):
    """The allow-list holds where the call is made, not only in what the agents are offered."""
    from massgen_litellm.mcp_tools import ToolBox

    (server,) = context_paths.servers([ContextPath(path=str(project))])
    box = ToolBox([server], timeout=60, result_chars=4000)
    await box.open()
    assert not box.problems
    assert not box.owns("files__write_file")
    result = await box.call("files__write_file", json.dumps({"path": str(project / "x.txt"), "content": "x"}))
    assert result.error and "not allowed" in result.text
    assert not (project / "x.txt").exists()
    read = await box.call("files__read_text_file", json.dumps({"path": str(project / "notes.txt")}))
    assert SECRET in read.text and not read.error


async def test_files_outside_the_context_paths_stay_out_of_reach(fake, registered, project, tmp_path):
    (tmp_path / "private.txt").write_text("private-bytes-5c1e")
    link = project / "escape"
    link.symlink_to(tmp_path / "private.txt")
    fake.script(
        "a",
        worker(
            ("files__read_text_file", {"path": str(tmp_path / "private.txt")}),
            ("files__read_text_file", {"path": str(project / ".." / "private.txt")}),
            ("files__read_text_file", {"path": str(link)}),
            answer_from=lambda results: "I could not read it.",
        ),
    )
    fake.script("b", judge)
    write_preset(registered, "team", [agent("a"), agent("b")], context_paths=[{"path": str(project)}])
    response = await litellm.acompletion(model="massgen/team", messages=[{"role": "user", "content": "Read it."}])
    work = work_of(response.massgen)
    assert len(work) == 3 and all(step["error"] for step in work)
    assert all("private-bytes-5c1e" not in step["result"] for step in work)


async def test_the_process_that_runs_the_team_adds_context_paths_to_any_preset(fake, monkeypatch, presets_dir, project):
    """`register_with_litellm(context_paths=...)`, what `--context-path` does: a preset without context paths gets
    them, and `DIR:rw` makes one writable."""
    monkeypatch.setattr(litellm, "custom_provider_map", list(litellm.custom_provider_map))
    register_with_litellm(presets_dir=presets_dir, load_env=False, context_paths=[f"{project}:rw"])
    fake.script("a", worker(("files_rw__write_file", {"path": str(project / "todo.txt"), "content": "ship it"})))
    fake.script("b", judge)
    write_preset(presets_dir, "team", [agent("a"), agent("b")], final="winner_answer")
    await litellm.acompletion(model="massgen/team", messages=[{"role": "user", "content": "Note it."}])
    assert (project / "todo.txt").read_text() == "ship it"


@pytest.mark.parametrize(
    ("entries", "expected"),
    [
        ([{"path": "relative/dir"}], "must be an absolute directory path"),
        ([{"path": "/srv/a", "mode": "write"}], "mode"),
        ([{"path": "/srv/a"}, {"path": "/srv/a", "mode": "rw"}], "both read-only and read-write"),
        ([{"path": "/srv/a", "mode": "rw"}, {"path": "/srv/a/docs"}], "is read-only but inside the read-write"),
    ],
)
def test_a_malformed_context_path_in_a_preset_is_a_400_naming_it(fake, registered, entries, expected):
    write_preset(registered, "team", [agent("a")], context_paths=entries)
    with pytest.raises(litellm.BadRequestError, match=expected) as caught:
        litellm.completion(model="massgen/team", messages=[{"role": "user", "content": "hi"}])
    assert "context_paths" in str(caught.value)
    assert not fake.calls


def test_a_missing_directory_and_a_request_field_are_400s_before_any_call(fake, registered, tmp_path):
    write_preset(registered, "gone", [agent("a")], context_paths=[{"path": str(tmp_path / "nowhere")}])
    with pytest.raises(litellm.BadRequestError, match="is not a directory"):
        litellm.completion(model="massgen/gone", messages=[{"role": "user", "content": "hi"}])
    write_preset(registered, "team", [agent("a")])
    with pytest.raises(litellm.BadRequestError, match="context_paths is not a request field"):
        litellm.completion(
            model="massgen/team", messages=[{"role": "user", "content": "hi"}], context_paths=[str(tmp_path)]
        )
    assert not fake.calls


@pytest.mark.parametrize(
    ("option", "path", "mode"),
    [("/srv/code", "/srv/code", "ro"), ("/srv/code:rw", "/srv/code", "rw"), ("/srv/code/:ro", "/srv/code", "ro")],
)
def test_the_command_line_form(option, path, mode):
    assert ContextPath.parse(option) == ContextPath(path=path, mode=mode)
    assert ContextPath.parse("docs").path == str(Path.cwd() / "docs")
    with pytest.raises(ValueError, match="names no directory"):
        ContextPath.parse(":rw")


# Through the real proxy: the operator's preset has a read-only context path; a client can neither add one nor
# widen it, and what the agents are offered holds through the proxy too.


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("served")
    (root / "project").mkdir()
    (root / "project" / "notes.txt").write_text(f"{SECRET}\n")
    (root / "elsewhere").mkdir()
    presets = root / "presets"
    presets.mkdir()
    write_preset(
        presets,
        "files",
        [{"model": "openai/px-a", "protocol": "tools"}, {"model": "openai/px-b", "protocol": "tools"}],
        context_paths=[{"path": str(root / "project")}],
        final="winner_answer",
    )
    return root


@pytest.fixture(scope="module")
def files_proxy(upstream: LoopbackServer, served: Path) -> Iterator[LiteLLMProxy]:
    env = {context_paths.PREFIX_ENV: PREFIX} if PREFIX is not None else {}
    with LiteLLMProxy(upstream.base_url, env=env, presets=[served / "presets"]) as running:
        yield running


def test_through_the_proxy_a_client_cannot_add_or_widen_a_context_path(files_proxy, upstream, served):
    fake: FakeLLM = upstream.fake
    fake.calls.clear()
    client = files_proxy.client(timeout=180)
    question = [{"role": "user", "content": "What is in the notes?"}]
    for field in (
        [str(served / "elsewhere")],
        [f"{served / 'project'}:rw"],
        [{"path": str(served / "project"), "mode": "rw"}],
    ):
        with pytest.raises(Exception) as caught:
            client.chat.completions.create(
                model="massgen/files", messages=question, extra_body={"context_paths": field}
            )
        assert getattr(caught.value, "status_code", None) == 400
        assert "may not give the agents files on the server" in str(caught.value)
        assert str(served) not in str(caught.value)
    assert not fake.calls  # refused before any participant call

    # The preset's own read-only path works through the proxy; a write by a tool that was not offered runs nothing.
    notes = str(served / "project" / "notes.txt")

    def reader_and_writer(call: Call) -> Reply:
        if "agent1" in call.answers:
            return vote("agent1", "its work checks out")
        if not tool_results(call):
            write = ("files__write_file", {"path": notes, "content": "pwned"})
            return Reply(tool="files__read_text_file", arguments={"path": notes}, more_tools=[write])
        return answer(f"Found: {tool_results(call)[0]}")

    fake.script("px-a", reader_and_writer)
    fake.script("px-b", judge)
    response = client.chat.completions.create(model="massgen/files", messages=question)
    assert (served / "project" / "notes.txt").read_text() == f"{SECRET}\n"
    offered = set(fake.calls_of("px-a")[0].tools)
    assert "files__read_text_file" in offered and not any("write" in name for name in offered)
    record = response.model_extra["massgen"]
    assert record["trusted"] is False
    assert SECRET in response.choices[0].message.content
    assert [step["tool"] for step in work_of(record)] == ["files__read_text_file"]  # the write was never run


# The command line: `--context-path` on `ask` and `chat`, in real processes, participants on a loopback server.


@pytest.fixture
def loopback_team(tmp_path: Path) -> Iterator[tuple[FakeLLM, dict[str, str]]]:
    """A preset `team` (agents a, b) on a loopback server, and the environment of a command that finds it."""
    backend = FakeLLM()
    with LoopbackServer(backend) as server:
        presets = tmp_path / "presets"
        presets.mkdir()
        agents = [
            {"model": f"openai/{m}", "api_base": server.base_url, "api_key": "sk-test", "protocol": "tools"}
            for m in ("a", "b")
        ]
        write_preset(presets, "team", agents, final="winner_answer")
        env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
        env |= {"MASSGEN_PRESETS_DIR": str(presets), "LITELLM_LOCAL_MODEL_COST_MAP": "True", "TERM": "xterm"}
        if PREFIX is not None:
            env[context_paths.PREFIX_ENV] = PREFIX
        yield backend, env


def test_ask_with_a_context_path_answers_from_the_file(loopback_team, project):
    backend, env = loopback_team
    backend.scripts["a"] = worker(("files__read_text_file", {"path": str(project / "notes.txt")}))
    backend.scripts["b"] = judge
    command = [sys.executable, "-m", "massgen_litellm", "ask", "The code?", "--preset", "team", "--json"]
    done = subprocess.run(
        [*command, "--context-path", str(project)], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert SECRET in result["answer"]
    assert work_of(result["record"])[0]["tool"] == "files__read_text_file"

    calls = len(backend.calls)
    missing = subprocess.run(
        [*command, "--context-path", str(project / "nowhere")], capture_output=True, text=True, env=env, timeout=300
    )
    assert missing.returncode == 2 and "is not a directory" in missing.stderr
    assert len(backend.calls) == calls  # refused before any participant call


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (["--context-path", ":rw"], "names no directory"),
        (["--context-path", "/no/such/directory"], "is not a directory"),
        (["--context-path", "/tmp", "--proxy", "http://127.0.0.1:9"], "the proxy's presets choose its context paths"),
    ],
)
def test_web_refuses_a_bad_context_path_before_it_serves(tmp_path, options, expected):
    # The web command takes --context-path as ask and chat do; what it cannot serve is an error before any server.
    command = [sys.executable, "-m", "massgen_litellm", "web", "--port", "0", *options]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 2 and expected in done.stderr, done.stderr


def test_chat_with_an_rw_context_path_writes_there(loopback_team, outbox):
    pexpect = pytest.importorskip("pexpect", reason="needs pexpect: pip install -e '.[test]'")
    backend, env = loopback_team
    target = outbox / "plan.md"
    backend.scripts["a"] = worker(
        ("files_rw__write_file", {"path": str(target), "content": "1. ship"}), answer_from=lambda _: "Written."
    )
    backend.scripts["b"] = judge
    child = pexpect.spawn(
        sys.executable,
        ["-m", "massgen_litellm", "chat", "--preset", "team", "--context-path", f"{outbox}:rw"],
        env=env,
        encoding="utf-8",
        dimensions=(50, 160),
        timeout=180,
    )
    child.expect_exact("you> ")
    child.sendline("Write the plan.")
    child.expect_exact("Written.")
    child.expect_exact("you> ")
    assert target.read_text() == "1. ship"
    child.sendeof()
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def test_check_lists_the_context_paths_and_connect_lists_their_tools(tmp_path, project, outbox):
    preset = tmp_path / "mine.yaml"
    write_preset(
        tmp_path,
        "mine",
        [{"model": "openai/gpt-4.1-mini"}],
        context_paths=[{"path": str(project)}, {"path": str(outbox), "mode": "rw"}],
    )
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    if PREFIX is not None:
        env[context_paths.PREFIX_ENV] = PREFIX
    command = [sys.executable, "-m", "massgen_litellm", "check", str(preset), "--connect"]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert (
        f"context paths (every agent, as MCP servers files and files_rw): {project} (ro), {outbox} (rw)" in done.stdout
    )
    listed = {line.split(":")[0].strip(): line for line in done.stdout.splitlines() if line.startswith("  files")}
    assert "read_text_file" in listed["files"] and "write_file" not in listed["files"]
    assert "write_file" in listed["files_rw"] and "edit_file" in listed["files_rw"]


def test_import_carries_massgens_context_paths():
    from massgen_litellm.config import Preset
    from massgen_litellm.massgen_import import import_config

    config = {
        "agents": [{"backend": {"type": "openai", "model": "gpt-5-mini"}}],
        "orchestrator": {
            "context_paths": [
                {"path": "/srv/code", "permission": "read"},
                {"path": "/srv/out", "permission": "write"},
                {"path": "relative/dir", "permission": "read"},
            ]
        },
    }
    preset, left = import_config(config, "team.yaml")
    assert preset["context_paths"] == [{"path": "/srv/code", "mode": "ro"}, {"path": "/srv/out", "mode": "rw"}]
    assert left == ["orchestrator.context_paths[2]: a preset needs an absolute path, not 'relative/dir'"]
    assert Preset.model_validate(preset).context_paths[1].mode == "rw"
