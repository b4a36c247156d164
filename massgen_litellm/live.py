"""The terminal's live view of a run: one panel per agent, the tally, time, tokens and cost.

It is fed the `massgen_event` dicts that ride on the progress chunks of a streamed completion, the same stream a
chat UI or a proxy client gets, so what the terminal shows is what went over the wire.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from .events import end_reason_text, shorten

_PREVIEW = 220
# C0 controls but tab and newline, DEL and C1. An agent's text is data, but rich passes ESC and CSI through, so an
# answer could move the cursor, clear the screen, retitle the window or hide a line: on a terminal they are dropped.
_TERMINAL_CONTROLS: dict[int, None] = dict.fromkeys([*range(0x00, 0x09), *range(0x0B, 0x20), 0x7F, *range(0x80, 0xA0)])


def for_terminal(text: str) -> str:
    """`text` without the control characters a terminal would obey (see `_TERMINAL_CONTROLS`)."""
    return text.translate(_TERMINAL_CONTROLS)


_STYLE = {"working": "yellow", "answered": "cyan", "voted": "green", "failed": "red", "done": "dim"}


@dataclass
class AgentView:
    id: str
    model: str
    state: str = "waiting"
    turns: int = 0
    answer: str = ""
    label: str = ""
    vote: str = ""
    error: str = ""


@dataclass
class LiveView:
    preset: str = ""
    agents: dict[str, AgentView] = field(default_factory=dict)
    votes: dict[str, str] = field(default_factory=dict)  # voter -> target, counted votes only
    tokens: int = 0
    cost: float = 0.0
    outcome: str = ""
    started: float = field(default_factory=time.monotonic)

    def apply(self, event: dict[str, Any]) -> None:
        kind, who = event.get("kind"), event.get("agent_id")
        self.tokens = int(event.get("tokens", self.tokens) or 0)
        self.cost = float(event.get("cost", self.cost) or 0.0)
        if kind == "start":
            self.preset = str(event.get("preset", ""))
            self.agents = {a["id"]: AgentView(a["id"], a["model"]) for a in event.get("agents", [])}
            return
        if kind == "done":
            target = event.get("target")
            reason = str(event.get("detail") or "")
            self.outcome = f"{reason} ({end_reason_text(reason)}): {target or 'no answer'}"
            return
        agent = self.agents.get(str(who))
        if agent is None:
            return
        detail = str(event.get("detail") or "")
        if kind == "turn":
            agent.state, agent.turns = "working", int(detail or agent.turns + 1)
        elif kind == "answer":
            agent.state, agent.answer, agent.label = "answered", detail, str(event.get("target"))
            self.votes = {}  # a new answer voids every vote before it
        elif kind == "vote":
            agent.state, agent.vote = "voted", f"{event.get('target')}: {detail}"
            self.votes[agent.id] = str(event.get("target"))
        elif kind == "void":
            self.votes.pop(agent.id, None)
            agent.vote = f"(void) {agent.vote}"
        elif kind == "agent_failed":
            agent.state, agent.error = "failed", detail

    def tally(self) -> dict[str, int]:
        counts = {agent_id: 0 for agent_id, agent in self.agents.items() if agent.answer}
        for target in self.votes.values():
            counts[target] = counts.get(target, 0) + 1
        return counts

    def __rich__(self) -> RenderableType:
        elapsed = time.monotonic() - self.started
        tally = ", ".join(f"{a}: {n}" for a, n in self.tally().items()) or "no answers yet"
        header = Text.assemble(
            (f"massgen/{self.preset}", "bold"),
            f"  {elapsed:5.1f}s  votes {tally}  {self.tokens:,} tokens  ${self.cost:.4f}",
            (f"  {self.outcome}" if self.outcome else "", "bold green"),
        )
        grid = Table.grid(expand=True, padding=(0, 1))
        columns = min(3, max(1, len(self.agents)))
        for _ in range(columns):
            grid.add_column(ratio=1)
        panels = [self._panel(agent) for agent in self.agents.values()]
        for start in range(0, len(panels), columns):
            grid.add_row(*panels[start : start + columns])
        return Group(header, grid)

    def _panel(self, agent: AgentView) -> Panel:
        body = Text()
        if agent.answer:
            body.append(f"{agent.label}: ", style="bold")
            body.append(shorten(for_terminal(agent.answer), _PREVIEW))
        if agent.vote:
            body.append(f"\nvote → {for_terminal(agent.vote)}", style="green")
        if agent.error:
            body.append(f"\n{for_terminal(agent.error)}", style="red")
        title = f"[bold]{agent.id}[/] · {agent.model}"
        state = f"[{_STYLE.get(agent.state, 'white')}]{agent.state}[/] · turn {agent.turns}"
        border = _STYLE.get(agent.state, "white")
        return Panel(body or Text("…", style="dim"), title=title, subtitle=state, border_style=border)
