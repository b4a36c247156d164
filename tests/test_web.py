"""`massgen-litellm web`: the real command on a real port, driven over HTTP and in headless Chromium (Playwright
pointed at Debian's /usr/bin/chromium; never a browser of Playwright's own). Participants are scripted models behind
a loopback server in this process, so the tests see every call the team makes: its history, its cancellation.

The token rule is tested on 127.0.0.2: any address but 127.0.0.1 needs the token (access.needs_token), and that one
is another address that never leaves the machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from massgen_litellm.testing.loopback import LoopbackServer
from massgen_litellm.testing.openai_chat import KEY, Call, FakeLLM, Reply, answer, answer_then_vote, text, vote
from massgen_litellm.testing.web import WebServer
from tests.proxy import MASTER_KEY, LiteLLMProxy

pytest.importorskip("starlette", reason="the web UI needs the `web` extra: pip install '.[test,web]'")
pytest.importorskip("uvicorn", reason="the web UI needs the `web` extra: pip install '.[test,web]'")

CHROMIUM = Path("/usr/bin/chromium") if Path("/usr/bin/chromium").exists() else None
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
SCREENSHOT_ENV = "MASSGEN_WEB_SCREENSHOT"  # a path: the browser test writes the finished run's screenshot there
MODELS = ("web-a", "web-b", "web-c")

ANSWER_A = """Write tests because they:

1. **catch regressions** before users do;
2. document how the code is *meant* to be used;
3. make refactoring safe.

```python
assert add(2, 2) == 4
```"""
HOSTILE = (
    'Fine. <script>window.pwned = 1</script><img src="http://example.invalid/track.png">'
    " ![pixel](http://example.invalid/pixel.png) [click](javascript:window.pwned=2)"
)


def team_script(own: str, vote_for: str, delay: float = 0.0) -> Any:
    """Answer `own` in round one, then vote for `vote_for`; present the winning answer as it stands."""

    def script(call: Call) -> Reply:
        if call.is_presentation:
            return text(call.answers.get(call.agent_id or "", own), delay=delay)
        if vote_for in call.answers and len(call.answers) == len(MODELS):
            return vote(vote_for, f"{vote_for}'s answer is the clearest", delay=delay)
        return answer(own, delay=delay)

    return script


def set_team(fake: FakeLLM, hostile: bool = False) -> None:
    fake.calls.clear()
    fake.script("web-a", team_script(ANSWER_A, "agent1", delay=0.1))
    fake.script("web-b", team_script(HOSTILE if hostile else "Tests catch regressions.", "agent1", delay=0.2))
    fake.script("web-c", team_script("Regressions, documentation, safety.", "agent2", delay=0.3))


def set_slow_team(fake: FakeLLM) -> None:
    """Everyone answers, then thinks a minute about the vote: the run is mid-flight until stopped."""
    fake.calls.clear()
    for model in MODELS:
        fake.script(model, lambda call: answer("4") if not call.answers else vote("agent1", delay=60))


@pytest.fixture(scope="module")
def upstream() -> Iterator[LoopbackServer]:
    with LoopbackServer(FakeLLM()) as server:
        yield server


@pytest.fixture(scope="module")
def setup(upstream: LoopbackServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment of the web servers: a presets directory with the scripted team, a log directory."""
    root = tmp_path_factory.mktemp("web")
    presets = root / "presets"
    presets.mkdir()
    agents = [
        {"model": f"openai/{m}", "api_base": upstream.base_url, "api_key": KEY, "protocol": "tools"} for m in MODELS
    ]
    (presets / "team.yaml").write_text(
        yaml.safe_dump({"description": "Three scripted agents.", "agents": agents, "skip_voting_when_unanimous": False})
    )
    keyed = [{**agents[0], "api_key": "os.environ/MASSGEN_WEB_TEST_UNSET_KEY"}]
    (presets / "keyed.yaml").write_text(yaml.safe_dump({"agents": keyed}))
    logs = root / "runs"
    return {"MASSGEN_PRESETS_DIR": str(presets), "MASSGEN_LOG_DIR": str(logs), "MASSGEN_WEB_TEST_UNSET_KEY": ""}


@pytest.fixture(scope="module")
def local(setup: dict[str, str]) -> Iterator[WebServer]:
    """The server as started by default: on 127.0.0.1, no token."""
    env = {k: v for k, v in setup.items() if k != "MASSGEN_WEB_TEST_UNSET_KEY"}
    with WebServer("team", env=env) as server:
        yield server


@pytest.fixture(scope="module")
def shared(setup: dict[str, str]) -> Iterator[WebServer]:
    """The server bound to another address (127.0.0.2): a token on every request, untrusted runs."""
    env = {k: v for k, v in setup.items() if k != "MASSGEN_WEB_TEST_UNSET_KEY"}
    with WebServer("team", host="127.0.0.2", env=env) as server:
        yield server


def ask(server: WebServer, text: str, preset: str = "team", **request: Any) -> list[tuple[str, Any]]:
    """One question through the API: the stream's events as (name, data)."""
    with httpx.Client(base_url=server.origin, timeout=120, **request) as client:
        started = client.post("/api/conversations", json={"preset": preset})
        assert started.status_code == 200, started.text
        events = []
        with client.stream("POST", f"/api/conversations/{started.json()['id']}/ask", json={"text": text}) as stream:
            assert stream.status_code == 200
            assert stream.headers["content-type"].startswith("text/event-stream")
            kind = ""
            for line in stream.iter_lines():
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: "):
                    events.append((kind, json.loads(line[6:])))
        return events


# ---- over HTTP


def test_on_127_0_0_1_no_token_and_the_runs_are_trusted(local: WebServer, upstream: LoopbackServer) -> None:
    assert local.url == f"{local.origin}/" and local.token is None
    page = httpx.get(local.url, timeout=30)
    assert page.status_code == 200 and "<script" in page.text
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "script-src 'self'" in policy and "connect-src 'self'" in policy

    set_team(upstream.fake)
    events = ask(local, "Why write tests?")
    kinds = [kind for kind, _ in events]
    assert kinds[-1] == "done" and "progress" in kinds and "text" in kinds
    done = events[-1][1]
    assert done["record"]["trusted"] is True and done["record"]["winner"] == "agent1"
    assert "<strong>catch regressions</strong>" in done["html"] and "<ol>" in done["html"]


def test_on_127_0_0_1_other_sites_cannot_drive_it(local: WebServer) -> None:
    # DNS rebinding: a page of another site reaches 127.0.0.1 under its own host name.
    rebound = httpx.get(f"{local.origin}/api/presets", headers={"host": "evil.example"}, timeout=30)
    assert rebound.status_code == 403
    # A cross-site POST from the user's browser carries its Origin.
    forged = httpx.post(
        f"{local.origin}/api/conversations", json={"preset": "team"}, headers={"origin": "http://evil.example"}
    )
    assert forged.status_code == 403
    # A plain form post (no CORS preflight) cannot send JSON.
    form = httpx.post(f"{local.origin}/api/conversations", content="preset=team", timeout=30)
    assert form.status_code == 415
    assert httpx.post(f"{local.origin}/api/conversations", json={"preset": "team"}).status_code == 200


def test_off_127_0_0_1_every_request_needs_the_token(shared: WebServer, upstream: LoopbackServer) -> None:
    token = shared.token
    assert token and len(token) >= 32 and shared.url == f"{shared.origin}/?token={token}"
    assert shared.origin == f"http://127.0.0.2:{shared.origin.rsplit(':', 1)[1]}"
    for method, path in [
        ("GET", "/"),
        ("GET", "/static/app.js"),
        ("GET", "/api/presets"),
        ("GET", "/api/runs"),
        ("POST", "/api/conversations"),
        ("POST", "/api/conversations/x/ask"),
    ]:
        bare = httpx.request(method, shared.origin + path, json={}, timeout=30)
        assert bare.status_code == 401, (method, path, bare.status_code)
        wrong = httpx.request(method, f"{shared.origin}{path}?token={token[:-1]}x", json={}, timeout=30)
        assert wrong.status_code == 401, (method, path)
        almost = httpx.request(method, shared.origin + path, headers={"cookie": f"massgen_web_token={token[:8]}"})
        assert almost.status_code == 401, (method, path)
    assert "the URL it printed" in httpx.get(shared.origin + "/", timeout=30).text

    first = httpx.get(shared.url, timeout=30)
    assert first.status_code == 200 and f"massgen_web_token={token}" in first.headers["set-cookie"]
    assert "HttpOnly" in first.headers["set-cookie"] and "SameSite=Strict" in first.headers["set-cookie"]
    with_cookie = httpx.get(shared.origin + "/static/app.js", cookies={"massgen_web_token": token}, timeout=30)
    assert with_cookie.status_code == 200
    header = httpx.get(shared.origin + "/api/presets", headers={"authorization": f"token {token}"}, timeout=30)
    assert header.status_code == 200 and {p["name"] for p in header.json()["presets"]} >= {"team", "keyed"}
    assert header.json()["trusted"] is False


def test_off_127_0_0_1_runs_are_untrusted_as_through_a_proxy(
    shared: WebServer, local: WebServer, upstream: LoopbackServer
) -> None:
    set_team(upstream.fake)
    events = ask(shared, "Why write tests?", cookies={"massgen_web_token": shared.token})
    assert events[-1][0] == "done" and events[-1][1]["record"]["trusted"] is False

    # A preset whose key is an unset environment variable: the operator on 127.0.0.1 is told its name; a token
    # holder only that the agent is not configured, as a proxy client is.
    upstream.fake.calls.clear()
    operator = ask(local, "2 + 2?", preset="keyed")
    assert operator[-1][0] == "error" and "MASSGEN_WEB_TEST_UNSET_KEY" in operator[-1][1]["message"]
    guest = ask(shared, "2 + 2?", preset="keyed", cookies={"massgen_web_token": shared.token})
    assert guest[-1][0] == "error" and "not configured on the server" in guest[-1][1]["message"]
    assert "MASSGEN_WEB_TEST_UNSET_KEY" not in json.dumps(guest)
    assert upstream.fake.calls == []


def test_bad_requests_are_clear_errors(local: WebServer) -> None:
    with httpx.Client(base_url=local.origin, timeout=30) as client:
        unknown = client.post("/api/conversations", json={"preset": "../etc/passwd"})
        assert unknown.status_code == 400 and "unknown preset" in unknown.json()["error"]["message"]
        missing = client.post("/api/conversations/nope/ask", json={"text": "hi"})
        assert missing.status_code == 404 and "start a new one" in missing.json()["error"]["message"]
        conversation = client.post("/api/conversations", json={"preset": "team"}).json()["id"]
        empty = client.post(f"/api/conversations/{conversation}/ask", json={"text": "  "})
        assert empty.status_code == 400 and "non-empty" in empty.json()["error"]["message"]
        for name in ["..%2F..%2Fetc%2Fpasswd", "x.json", "20260101T000000000000Z-" + "0" * 31 + ".json"]:
            assert client.get(f"/runs/{name}").status_code == 404


def test_a_bounded_number_of_questions_at_once(local: WebServer, upstream: LoopbackServer) -> None:
    from massgen_litellm.web.app import MAX_RUNNING

    set_slow_team(upstream.fake)
    question = {"text": "2 + 2?"}
    with httpx.Client(base_url=local.origin, timeout=120) as client, contextlib.ExitStack() as streams:
        ids = [client.post("/api/conversations", json={"preset": "team"}).json()["id"] for _ in range(MAX_RUNNING + 1)]
        try:
            for conversation in ids[:MAX_RUNNING]:
                stream = client.stream("POST", f"/api/conversations/{conversation}/ask", json=question)
                assert streams.enter_context(stream).status_code == 200
            again = client.post(f"/api/conversations/{ids[0]}/ask", json=question)
            assert again.status_code == 409 and "stop it first" in again.json()["error"]["message"]
            refused = client.post(f"/api/conversations/{ids[-1]}/ask", json=question)
            assert refused.status_code == 429 and "ask again" in refused.json()["error"]["message"]
            # Stopped once every team is at its votes, as in test_stop_ends_the_participant_calls.
            deadline = time.monotonic() + 60
            while len([c for c in upstream.fake.calls if not c.ended]) < MAX_RUNNING * len(MODELS):
                assert time.monotonic() < deadline, "the votes were never in flight"
                time.sleep(0.05)
        finally:
            stopped = [client.post(f"/api/conversations/{c}/stop", json={}).json() for c in ids[:MAX_RUNNING]]
    assert stopped == [{"stopped": True}] * MAX_RUNNING
    deadline = time.monotonic() + 30
    while not all(c.ended for c in upstream.fake.calls):
        assert time.monotonic() < deadline, "calls went on after every question was stopped"
        time.sleep(0.05)


def test_past_runs_are_listed_and_open_as_the_report(local: WebServer, upstream: LoopbackServer) -> None:
    set_team(upstream.fake)
    ask(local, "Why write tests?")
    runs = httpx.get(f"{local.origin}/api/runs", timeout=30).json()
    assert runs["directory_set"] is True and runs["runs"]
    newest = runs["runs"][0]
    assert newest["preset"] == "team" and newest["winner"] == "agent1"
    page = httpx.get(f"{local.origin}/runs/{newest['file']}", timeout=30)
    assert page.status_code == 200 and "Winner: agent1" in page.text and 'aria-label="vote graph"' in page.text


def test_with_proxy_the_team_runs_on_the_proxy(upstream: LoopbackServer, setup: dict[str, str]) -> None:
    pytest.importorskip("fastapi", reason="the LiteLLM proxy's dependencies are missing: pip install '.[test,proxy]'")
    upstream.fake.calls.clear()
    upstream.fake.script("proxy-a", answer_then_vote("4"))
    upstream.fake.script("proxy-b", answer_then_vote("4"))
    with LiteLLMProxy(upstream.base_url) as proxy:
        # No preset of this machine's: the proxy has them (tests/proxy_presets), and its own key.
        env = {"MASSGEN_PROXY_KEY": MASTER_KEY, "MASSGEN_PRESETS_DIR": ""}
        with WebServer("duo", env=env, args=["--proxy", f"{proxy.base_url}/v1"]) as server:
            presets = httpx.get(f"{server.origin}/api/presets", timeout=30).json()["presets"]
            events = ask(server, "2 + 2?", preset="duo")
    assert [p["name"] for p in presets] == ["duo"]
    assert [k for k, _ in events if k == "progress"] and events[-1][0] == "done"
    record = events[-1][1]["record"]
    assert events[-1][1]["answer"] == "Final: 4" and record["trusted"] is False  # as every proxy request is
    assert {c.model for c in upstream.fake.calls} == {"proxy-a", "proxy-b"}


def test_with_proxy_and_no_key_it_says_where_the_key_goes() -> None:
    env = {k: v for k, v in os.environ.items() if k != "MASSGEN_PROXY_KEY"}
    done = subprocess.run(
        [sys.executable, "-m", "massgen_litellm", "web", "--proxy", "http://127.0.0.1:9/v1", "--port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and "MASSGEN_PROXY_KEY" in done.stderr


# ---- in the browser


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if CHROMIUM is None:
        pytest.skip("Chromium is not installed (Debian package: chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is missing: pip install -e '.[test]'")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    opened = context.new_page()
    opened.set_default_timeout(60_000)
    opened.requests = []  # every URL the page asks for, to check they all go to the server
    opened.on("request", lambda request: opened.requests.append(request.url))
    yield opened
    context.close()


def ask_in_page(page: Any, question: str) -> None:
    page.fill("#question", question)
    page.click("#send")


def test_a_question_shows_the_cards_the_votes_and_the_answer_then_a_follow_up(
    page: Any, local: WebServer, upstream: LoopbackServer
) -> None:
    set_team(upstream.fake)
    page.goto(local.url)
    page.wait_for_selector("body[data-ready=true]")
    assert page.input_value("#preset") == "team"
    assert "openai/web-a" in page.inner_text("#agents")

    ask_in_page(page, "Why should I write tests?")
    page.wait_for_selector(".message.assistant .meta")  # the answer and its record are in

    cards = page.query_selector_all("#cards .card")
    assert [c.get_attribute("data-agent") for c in cards] == ["agent1", "agent2", "agent3"]
    assert [c.query_selector(".model").inner_text() for c in cards] == [f"openai/{m}" for m in MODELS]
    assert "winner" in (cards[0].get_attribute("class") or "")
    card = page.query_selector('#cards .card[data-agent="agent1"]')
    card.query_selector("summary").click()  # the latest answer, expanded
    assert card.query_selector(".markdown strong").inner_text() == "catch regressions"
    votes = sorted(e.get_attribute("data-vote") for e in page.query_selector_all("#map .edge"))
    assert votes == ["agent1>agent1", "agent2>agent1", "agent3>agent2"]
    assert "tally agent1: 2, agent2: 1, agent3: 0 · winner agent1" in page.inner_text("#tally")
    answer = page.query_selector(".message.assistant .body")
    assert answer.query_selector("strong").inner_text() == "catch regressions"
    assert answer.query_selector("pre code") is not None
    timeline = page.inner_text("#timeline")
    assert "agent2 voted for agent1" in timeline and "done (consensus): agent1 wins" in timeline
    assert page.inner_text("#tokens") != "0" and page.inner_text("#cost").startswith("$")
    page.wait_for_selector("#runs tbody tr")  # the run is in the past runs

    screenshot = os.environ.get(SCREENSHOT_ENV)
    if screenshot:
        page.screenshot(path=screenshot, full_page=True)

    asked_before = len(upstream.fake.calls)
    ask_in_page(page, "Which of those matters most?")
    page.locator(".message.assistant .meta").nth(1).wait_for()
    follow_up = upstream.fake.calls[asked_before:]
    assert follow_up
    for call in follow_up:
        said = [(m["role"], m.get("content")) for m in call.messages if m["role"] in ("user", "assistant")]
        assert ("user", "Why should I write tests?") in said
        assert any(role == "assistant" and "catch regressions" in str(content) for role, content in said)
    assert all(url.startswith(local.origin + "/") for url in page.requests), page.requests


def test_stop_ends_the_participant_calls(page: Any, local: WebServer, upstream: LoopbackServer) -> None:
    set_slow_team(upstream.fake)
    page.goto(local.url)
    page.wait_for_selector("body[data-ready=true]")
    ask_in_page(page, "What is 2 + 2?")
    deadline = time.monotonic() + 60
    while len([c for c in upstream.fake.calls if not c.ended]) < len(MODELS):
        assert time.monotonic() < deadline, "the votes were never in flight"
        time.sleep(0.05)
    in_flight = [c for c in upstream.fake.calls if not c.ended]
    assert page.is_enabled("#stop")

    page.click("#stop")
    page.wait_for_selector(".message.assistant.stopped")

    deadline = time.monotonic() + 30
    while not all(c.ended for c in in_flight):
        assert time.monotonic() < deadline, "the participant calls went on after stop"
        time.sleep(0.05)
    assert all(c.cancelled for c in in_flight)
    assert page.is_enabled("#send") and not page.is_enabled("#stop")


def test_agent_text_is_never_markup_and_nothing_comes_from_outside(
    page: Any, local: WebServer, upstream: LoopbackServer
) -> None:
    set_team(upstream.fake, hostile=True)
    page.goto(local.url)
    page.wait_for_selector("body[data-ready=true]")
    ask_in_page(page, "Why write tests?")
    page.wait_for_selector(".message.assistant .meta")
    card = page.query_selector('#cards .card[data-agent="agent2"]')
    card.query_selector("summary").click()
    shown = card.query_selector(".markdown")
    assert "<script>" in shown.inner_text()  # shown as text
    assert shown.query_selector("script, img") is None
    assert all(
        a.get_attribute("href") in (None, "") or not a.get_attribute("href").startswith("javascript:")
        for a in shown.query_selector_all("a")
    )
    assert page.evaluate("window.pwned") is None
    assert all(url.startswith(local.origin + "/") for url in page.requests), page.requests


def test_the_token_url_works_in_the_browser(page: Any, shared: WebServer, upstream: LoopbackServer) -> None:
    denied = page.goto(shared.origin + "/")
    assert denied is not None and denied.status == 401
    set_team(upstream.fake)
    page.goto(shared.url)  # the printed URL: the token, then the cookie for every request after
    page.wait_for_selector("body[data-ready=true]")
    assert "client rules" in page.inner_text("#trust")
    ask_in_page(page, "Why write tests?")
    page.wait_for_selector(".message.assistant .meta")
    assert page.query_selector_all("#cards .card")
    assert all(url.startswith(shared.origin + "/") for url in page.requests)
