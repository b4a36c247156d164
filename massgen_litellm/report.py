"""A run record as one self-contained HTML page: a timeline per agent, every answer, the vote graph, the tally,
tokens and cost. No script and nothing fetched: it opens offline, and agent text (untrusted) is only ever escaped
text in it."""

from __future__ import annotations

import math
from html import escape

from .events import end_reason_text
from .record import RunRecord

_KIND_COLOUR = {"turn": "#4c78a8", "retry": "#f58518", "present": "#54a24b"}
_CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #222; padding: 0 1rem; }
h1 { font-size: 1.4rem; margin-bottom: .2rem; } h2 { font-size: 1.1rem; margin-top: 2rem; }
.summary { display: flex; flex-wrap: wrap; gap: .5rem 1.5rem; color: #444; }
.winner { font-size: 1.2rem; font-weight: 600; color: #1a7f37; }
table { border-collapse: collapse; width: 100%; } td, th { border-bottom: 1px solid #ddd; padding: .3rem .5rem;
  text-align: left; vertical-align: top; } th { background: #f6f8fa; }
pre { white-space: pre-wrap; background: #f6f8fa; padding: .6rem; border-radius: 6px; margin: .3rem 0 1rem; }
.voided { color: #999; text-decoration: line-through; } .failed { color: #cf222e; }
svg text { font: 12px system-ui, sans-serif; }
"""


def render(record: RunRecord) -> str:
    title = f"massgen/{record.preset} run {record.run_id}"
    winner = escape(record.winner or "none")
    summary = [
        f"started {escape(record.started_at)}",
        f"{record.duration_seconds:.2f} s",
        f"ended by {escape(record.end_reason)} ({escape(end_reason_text(record.end_reason))})",
        f"chosen by {escape(record.chosen_by or 'nothing')}",
        f"{record.usage.total_tokens:,} tokens ({record.usage.prompt_tokens:,} prompt)",
        f"${record.cost:.6f}" + (f" ({record.unpriced_calls} unpriced calls)" if record.unpriced_calls else ""),
        f"{len(record.calls)} calls",
    ]
    tally = ", ".join(f"{escape(agent)}: {votes}" for agent, votes in record.tally.items()) or "no votes"
    sections = [
        f"<h1>{escape(title)}</h1>",
        f'<p class="winner" id="winner">Winner: {winner}</p>',
        f'<div class="summary">{"".join(f"<span>{part}</span>" for part in summary)}</div>',
        f"<p>Tally: {tally}</p>",
        "<h2>Timeline</h2>",
        _timeline(record),
        "<h2>Votes</h2>",
        _vote_graph(record),
        _votes_table(record),
        "<h2>Agents</h2>",
        _agents_table(record),
        "<h2>Answers</h2>",
        _answers(record),
    ]
    if record.notes:
        sections.append("<h2>Notes</h2><ul>" + "".join(f"<li>{escape(n)}</li>" for n in record.notes) + "</ul>")
    body = "\n".join(sections)
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">"
        f"<title>{escape(title)}</title><style>{_CSS}</style></head>\n<body>\n{body}\n</body></html>\n"
    )


def _timeline(record: RunRecord) -> str:
    """One row per agent: its calls as bars on the run's time axis, answers and votes as marks."""
    width, label, row, margin = 1000, 90, 34, 80  # the right margin keeps the last marks' labels on the page
    end = max([record.duration_seconds, *(c.started_at + c.seconds for c in record.calls)], default=1.0) or 1.0
    scale = (width - label - margin) / end
    agents = [a.id for a in record.agents]
    height = row * len(agents) + 30
    parts = [f'<svg viewBox="0 0 {width} {height}" width="100%" role="img" aria-label="timeline">']
    for index, agent in enumerate(agents):
        y = index * row + 8
        parts.append(f'<text x="0" y="{y + 15}">{escape(agent)}</text>')
        for call in (c for c in record.calls if c.agent_id == agent):
            x, w = label + call.started_at * scale, max(call.seconds * scale, 2)
            colour = "#cf222e" if call.error else _KIND_COLOUR.get(call.kind, "#888")
            tip = f"{call.kind} {call.turn or ''}: {call.seconds:.2f}s, {call.prompt_tokens}+{call.completion_tokens}"
            tip += f" tokens. {call.error}" if call.error else " tokens"
            parts.append(
                f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="20" rx="3" fill="{colour}">'
                f"<title>{escape(tip)}</title></rect>"
            )
        for answer in (a for a in record.answers if a.agent_id == agent):
            x = label + answer.at * scale
            parts.append(f'<text x="{x:.1f}" y="{y - 1}" fill="#333">▼ {escape(answer.label)}</text>')
        for vote in (v for v in record.votes if v.voter == agent):
            x = label + vote.at * scale
            fill = "#999" if vote.voided else "#1a7f37"
            parts.append(f'<text x="{x:.1f}" y="{y + 32}" fill="{fill}">✓ {escape(vote.target)}</text>')
    axis_y = height - 8
    step = _tick_step(end)
    for index in range(int(end / step) + 1):
        x = label + index * step * scale
        parts.append(f'<text x="{x:.1f}" y="{axis_y}" fill="#666">{index * step:g}s</text>')
    parts.append("</svg>")
    legend = " ".join(
        f'<span style="color:{colour}">■</span> {kind}'
        for kind, colour in [*_KIND_COLOUR.items(), ("failed", "#cf222e")]
    )
    return "".join(parts) + f"<p>{legend}; ▼ an answer, ✓ a vote (grey: voided)</p>"


def _tick_step(end: float) -> float:
    """A round step giving at most about eight ticks, whether the run took 80 ms or 8 minutes."""
    for step in (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600):
        if end / step <= 8:
            return step
    return 3600.0


def _vote_graph(record: RunRecord) -> str:
    """Agents on a circle, an arrow from each voter to the agent it voted for; voided votes dashed."""
    size, radius = 360, 130
    agents = [a.id for a in record.agents]
    centre = size / 2
    where = {
        agent: (
            centre + radius * math.cos(2 * math.pi * i / len(agents) - math.pi / 2),
            centre + radius * math.sin(2 * math.pi * i / len(agents) - math.pi / 2),
        )
        for i, agent in enumerate(agents)
    }
    parts = [
        f'<svg viewBox="0 0 {size} {size}" width="{size}" role="img" aria-label="vote graph">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#555"/></marker></defs>',
    ]
    for vote in record.votes:
        if vote.voter not in where or vote.target not in where:
            continue
        (x1, y1), (x2, y2) = where[vote.voter], where[vote.target]
        dash = ' stroke-dasharray="5,4" opacity="0.5"' if vote.voided else ""
        if vote.voter == vote.target:
            parts.append(
                f'<path d="M{x1 - 10:.1f},{y1 - 22:.1f} a 14 14 0 1 1 20 0" fill="none" stroke="#555"{dash} '
                f'marker-end="url(#arrow)"><title>{escape(vote.voter)} for itself: {escape(vote.reason)}</title></path>'
            )
            continue
        length = math.hypot(x2 - x1, y2 - y1) or 1
        shorten = 26 / length
        ex, ey = x2 - (x2 - x1) * shorten, y2 - (y2 - y1) * shorten
        sx, sy = x1 + (x2 - x1) * shorten, y1 + (y2 - y1) * shorten
        parts.append(
            f'<line x1="{sx:.1f}" y1="{sy:.1f}" x2="{ex:.1f}" y2="{ey:.1f}" stroke="#555" stroke-width="1.5"{dash} '
            f'marker-end="url(#arrow)"><title>{escape(vote.voter)} → {escape(vote.target)}: '
            f"{escape(vote.reason)}</title></line>"
        )
    for agent, (x, y) in where.items():
        fill = "#1a7f37" if agent == record.winner else "#4c78a8"
        votes = record.tally.get(agent, 0)
        parts.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="24" fill="{fill}"/>'
            f'<text x="{x:.1f}" y="{y + 4:.1f}" text-anchor="middle" fill="white">{escape(agent)}</text>'
            f'<text x="{x:.1f}" y="{y + 40:.1f}" text-anchor="middle">{votes} vote{"s" if votes != 1 else ""}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _votes_table(record: RunRecord) -> str:
    rows = "".join(
        f'<tr class="{"voided" if v.voided else ""}"><td>{v.at:.2f}s</td><td>{escape(v.voter)}</td>'
        f"<td>{escape(v.target)}</td><td>{escape(v.reason)}</td><td>{escape(v.voided_reason or '')}</td></tr>"
        for v in record.votes
    )
    header = "<tr><th>at</th><th>voter</th><th>for</th><th>reason</th><th>voided because</th></tr>"
    return f"<table>{header}{rows or '<tr><td colspan=5>no votes</td></tr>'}</table>"


def _agents_table(record: RunRecord) -> str:
    header = (
        "<tr><th>agent</th><th>model</th><th>protocol</th><th>status</th><th>turns</th><th>answers</th>"
        "<th>calls</th><th>tokens</th><th>cost</th><th>error</th></tr>"
    )
    rows = "".join(
        f'<tr class="{"failed" if a.status == "failed" else ""}"><td>{escape(a.id)}</td><td>{escape(a.model)}</td>'
        f"<td>{a.protocol}</td><td>{escape(a.status)}</td><td>{a.turns}</td><td>{a.answers}</td><td>{a.calls}</td>"
        f"<td>{a.prompt_tokens + a.completion_tokens:,}</td><td>${a.cost:.6f}</td><td>{escape(a.error or '')}</td></tr>"
        for a in record.agents
    )
    return f"<table>{header}{rows}</table>"


def _answers(record: RunRecord) -> str:
    return "".join(
        f"<h3>{escape(a.label)} <small>({escape(a.agent_id)}, {a.at:.2f}s, "
        f"{'after seeing others' if a.informed else 'written alone'})</small></h3><pre>{escape(a.content)}</pre>"
        for a in record.answers
    )
