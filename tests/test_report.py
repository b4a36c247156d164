"""`massgen-litellm report`: a run record as a self-contained page, checked in real headless Chromium."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import sys
from pathlib import Path

import litellm
import pytest
from PIL import Image

from massgen_litellm.record import RunRecord
from massgen_litellm.report import render
from massgen_litellm.testing.openai_chat import Call, Reply, answer, answer_then_vote, fail, vote
from tests.conftest import agent, write_preset

QUESTION = [{"role": "user", "content": "What is 2 + 2?"}]
HOSTILE = '4 <script>document.title="pwned"</script><img src="http://example.invalid/x.png">'
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture
async def record(fake, registered) -> RunRecord:
    """A real run with something of everything: an answer refined, a voided vote, a failed agent, hostile text."""

    def slow_refiner(call: Call) -> Reply:
        if call.is_presentation:
            return Reply(content="Final: 4")
        if "agent2" not in call.answers:
            return answer(HOSTILE)
        if "refined" not in call.answers["agent2"]:
            return answer("4, refined", delay=0.05)
        return vote("agent1", "agent1 is right")

    fake.script("a", answer_then_vote("4"))
    fake.script("b", slow_refiner)
    fake.script("down", lambda call: fail(503, "overloaded"))
    write_preset(registered, "team", [agent("a"), agent("b"), agent("down", num_retries=0)])
    response = await litellm.acompletion(model="massgen/team", messages=QUESTION)
    return RunRecord.model_validate(response.massgen)


async def test_the_page_holds_the_whole_run_and_only_escaped_agent_text(record: RunRecord) -> None:
    page = render(record)
    assert "Winner: agent1" in page
    assert all(a.label in page for a in record.answers) and any(v.voided for v in record.votes)
    assert "written alone" in page and "after seeing others" in page  # agent2's refinement saw agent1's answer
    assert "overloaded" in page  # the failed agent's error
    assert "<script" not in page and "&lt;script&gt;" in page
    assert not re.search(r"""(src|href)=["']?https?:""", page)  # nothing to fetch: the URL is only escaped text


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (Debian package: chromium)")
async def test_the_page_in_headless_chromium(record: RunRecord, tmp_path: Path) -> None:
    saved = tmp_path / "run.json"
    saved.write_text(record.model_dump_json())
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "massgen_litellm", "report", str(saved), "-o", str(tmp_path / "run.html")],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    page = Path(done.stdout.strip())
    browser = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--enable-logging=stderr",
        "--v=0",
    ]
    dom = await asyncio.to_thread(
        subprocess.run, [*browser, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120, check=True
    )
    assert "Winner: agent1" in dom.stdout
    assert "<title>pwned</title>" not in dom.stdout
    console = [line for line in dom.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert console == []

    shot = tmp_path / "shot.png"
    await asyncio.to_thread(
        subprocess.run,
        [*browser, f"--screenshot={shot}", "--window-size=1200,1400", page.as_uri()],
        capture_output=True,
        timeout=120,
        check=True,
    )
    image = Image.open(shot).convert("RGB")
    pixels = list(image.getdata())
    inked = sum(1 for p in pixels if sum(p) < 600) / len(pixels)
    assert image.size == (1200, 1400)
    assert inked > 0.01 and len(set(pixels)) > 50, "the screenshot is blank"
