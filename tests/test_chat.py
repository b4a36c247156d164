"""`massgen-litellm chat` in a real terminal (pexpect drives it on a pseudo-terminal, as a person types), with the
participants scripted on a loopback server, whose call log shows what reached them and what was cancelled."""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from massgen_litellm.record import RunRecord
from massgen_litellm.testing.loopback import LoopbackServer
from massgen_litellm.testing.openai_chat import KEY, Call, FakeLLM, Reply, answer, answer_then_vote, vote

pexpect = pytest.importorskip(
    "pexpect", reason="the chat tests drive a terminal with pexpect: pip install -e '.[test]'"
)

PROMPT = "you> "
STARTUP = 180  # seconds: importing LiteLLM on a slow, loaded machine
TURN = 120


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """The fake's log is written by its server thread; poll it."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: still not so after {timeout}s")
        time.sleep(0.05)


def slow(call: Call) -> Reply:
    """A participant that takes a minute over every call: the run is still going when Ctrl-C comes."""
    return answer("Eventually.", delay=60)


def judge(call: Call) -> Reply:
    return vote("agent1") if "agent1" in call.answers else answer("Four.")


@pytest.fixture
def fake() -> Iterator[FakeLLM]:
    backend = FakeLLM(default=answer_then_vote("**Four.** Two and two make four."))
    backend.scripts["slow-1"] = backend.scripts["slow-2"] = slow
    with LoopbackServer(backend) as server:
        backend.base_url = server.base_url  # type: ignore[attr-defined]
        yield backend


@pytest.fixture
def env(fake: FakeLLM, tmp_path: Path) -> dict[str, str]:
    """Presets `team` (answers at once) and `slow`, on the loopback server, and the environment that finds them."""
    presets = tmp_path / "presets"
    presets.mkdir()
    for name, models in (("team", ["m1", "m2"]), ("slow", ["slow-1", "slow-2"])):
        agents = [
            {"model": f"openai/{m}", "api_base": fake.base_url, "api_key": KEY, "protocol": "tools"}  # type: ignore[attr-defined]
            for m in models
        ]
        (presets / f"{name}.yaml").write_text(yaml.safe_dump({"agents": agents, "skip_voting_when_unanimous": False}))
    plain = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    return {**plain, "MASSGEN_PRESETS_DIR": str(presets), "LITELLM_LOCAL_MODEL_COST_MAP": "True", "TERM": "xterm"}


def start(env: dict[str, str], *args: str) -> pexpect.spawn:
    """The chat as a person starts it from a shell: with Ctrl-C at its default. A process inherits an ignored SIGINT
    (a shell ignores it for a job started with `&` when job control is off, as in a CI script), and so would the
    chat: Ctrl-C at its prompt would do nothing."""
    child = pexpect.spawn(
        sys.executable,
        ["-m", "massgen_litellm", "chat", *args],
        env=env,
        encoding="utf-8",
        dimensions=(50, 160),
        timeout=TURN,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    child.expect_exact(PROMPT, timeout=STARTUP)
    return child


def ask(child: pexpect.spawn, question: str) -> str:
    """Type a question; what the terminal showed until the next prompt."""
    child.sendline(question)
    child.expect_exact(PROMPT)
    return child.before


def history_of(call: Call) -> list[tuple[str, str]]:
    """The conversation a participant call carried, as (role, text) pairs."""
    return [(m["role"], str(m.get("content") or "")) for m in call.messages]


def test_a_conversation_question_follow_up_save_and_new(fake: FakeLLM, env: dict[str, str], tmp_path: Path) -> None:
    child = start(env, "--preset", "team")
    shown = ask(child, "What is 2 + 2?")
    # The answer after the live view, rendered as Markdown: the bold is drawn (an escape code), not asterisks.
    answer_shown = shown[shown.rindex("Final: ") :]
    assert re.match(r"Final: (\x1b\[[0-9;]*m)+Four\.(\x1b\[[0-9;]*m)* Two and two make four\.", answer_shown)
    assert "consensus: agent1 won the vote" in shown

    first_calls = len(fake.calls)
    ask(child, "And times three?")
    follow_up = fake.calls[first_calls:]
    assert follow_up
    for call in follow_up:
        carried = history_of(call)
        # Every participant call of the follow-up carries the first exchange, then the new question.
        assert ("user", "What is 2 + 2?") in carried
        assert ("assistant", "Final: **Four.** Two and two make four.") in carried
        assert any(role == "user" and "And times three?" in text for role, text in carried)

    saved = tmp_path / "talk.json"
    assert "saved 4 messages and 2 records" in ask(child, f"/save {saved}")
    data = json.loads(saved.read_text())
    assert data["preset"] == "team"
    assert [m["role"] for m in data["messages"]] == ["user", "assistant", "user", "assistant"]
    assert data["messages"][2]["content"] == "And times three?"
    assert [r["winner"] for r in data["records"]] == ["agent1", "agent1"]
    assert all(r["trusted"] is True for r in data["records"])
    assert RunRecord.model_validate(data["records"][0]).winner == "agent1"  # each one is a record `report` reads

    assert "new conversation" in ask(child, "/new")
    before_new = len(fake.calls)
    ask(child, "What is the capital of France?")
    for call in fake.calls[before_new:]:
        carried = history_of(call)
        assert ("user", "What is 2 + 2?") not in carried and not any("times three" in text for _, text in carried)

    assert "unknown command" in ask(child, "/nonsense")
    child.sendline("/exit")
    child.expect(pexpect.EOF, timeout=60)
    child.close()
    assert child.exitstatus == 0


def test_ctrl_c_stops_a_running_team_and_the_session_goes_on(fake: FakeLLM, env: dict[str, str]) -> None:
    child = start(env, "--preset", "team")
    assert "unknown preset 'nope'" in ask(child, "/preset nope")
    assert "now talking to massgen/slow" in ask(child, "/preset slow")

    child.sendline("Take your time.")
    wait_until(lambda: len(fake.calls_of("slow-1")) >= 1 and len(fake.calls_of("slow-2")) >= 1, TURN, "calls began")
    child.sendintr()  # Ctrl-C, as the terminal sends it: SIGINT to the foreground process group
    child.expect_exact("stopped")
    child.expect_exact(PROMPT)
    slow_calls = [c for c in fake.calls if c.model.startswith("slow-")]
    # The participants' connections closed: the fake logged each call as cancelled, long before its minute was up.
    wait_until(lambda: all(c.cancelled for c in slow_calls), 30, "every slow call cancelled")
    assert all(c.ended - c.started < 55 for c in slow_calls)

    # The session is still there, and the stopped question is not in the conversation.
    assert "now talking to massgen/team" in ask(child, "/preset team")
    before = len(fake.calls)
    assert "Two and two make four." in ask(child, "What is 2 + 2?")
    assert all(("user", "Take your time.") not in history_of(call) for call in fake.calls[before:])

    # At the prompt, Ctrl-C drops a half-typed line and the session stays.
    calls = len(fake.calls)
    child.send("half a question")
    child.expect_exact("half a question")
    child.sendintr()
    child.expect_exact(PROMPT)
    child.sendline("")  # had the line survived the Ctrl-C, this would ask it
    child.expect_exact(PROMPT)
    assert len(fake.calls) == calls  # the dropped line was never asked
    child.sendeof()  # Ctrl-D quits
    child.expect(pexpect.EOF, timeout=60)
    child.close()
    assert child.exitstatus == 0
