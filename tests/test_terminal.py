"""An agent's text on a terminal: data, never commands. rich passes ESC and CSI through, so the live view, `ask`'s
Markdown answer and `chat` drop the control characters a terminal would obey."""

from __future__ import annotations

import io

from rich.console import Console
from rich.markdown import Markdown

from massgen_litellm.live import LiveView, for_terminal

HOSTILE = "Paris\x1b]0;pwned\x07 is\x1b[2J the\x9b31m capital\r\x08\x7f of France.\n\tÉté ✓"


def rendered(renderable: object) -> str:
    out = io.StringIO()
    Console(file=out, force_terminal=True, color_system=None, width=100).print(renderable)
    return out.getvalue()


def test_control_characters_are_dropped_and_text_kept():
    assert for_terminal(HOSTILE) == "Paris]0;pwned is[2J the31m capital of France.\n\tÉté ✓"


def test_the_live_view_shows_an_agents_answer_and_vote_without_their_escapes():
    view = LiveView()
    view.apply({"kind": "start", "preset": "team", "agents": [{"id": "agent1", "model": "openai/a"}]})
    view.apply({"kind": "answer", "agent_id": "agent1", "target": "agent1.1", "detail": HOSTILE})
    view.apply({"kind": "vote", "agent_id": "agent1", "target": "agent1", "detail": HOSTILE})
    screen = rendered(view)
    assert "Paris" in screen and "capital" in screen
    # With colour off, the console writes no escape of its own: any left would be the agent's.
    assert "\x1b" not in screen and "\x9b" not in screen and "\x07" not in screen


def test_the_answer_as_markdown_keeps_no_escape():
    screen = rendered(Markdown(for_terminal(HOSTILE)))
    assert "France" in screen and "\x1b" not in screen and "\x9b" not in screen
    assert "\x1b" in rendered(Markdown(HOSTILE))  # what rich alone would have let through


def test_an_error_quoting_a_providers_body_is_printed_without_its_escapes():
    from massgen_litellm.cli import _plain

    message = _plain(Exception(f"litellm.APIError: every participant failed. agent1: {HOSTILE}"))
    assert message.startswith("every participant failed") and "\x1b" not in message and "\x07" not in message
