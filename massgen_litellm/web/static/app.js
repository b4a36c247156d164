// The web UI's page: a conversation with a team, and the team at work, fed by the server's event stream.
// Agent text is only ever put in the page as text (textContent), or as the HTML the server rendered from Markdown
// with raw HTML and images off; nothing is fetched from anywhere but this server.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { conversation: null, presets: [], running: false, team: null, clock: null };

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

function svg(tag, attrs = {}) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  return node;
}

async function api(path, body) {
  const options = body === undefined ? {} : {
    method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body),
  };
  const response = await fetch(path, options);
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error((data.error && data.error.message) || `${response.status} ${response.statusText}`);
  return data;
}

// ---- presets and conversations

async function loadPresets() {
  const data = await api("/api/presets");
  state.presets = data.presets;
  const select = $("preset");
  select.replaceChildren(...data.presets.map((p) => el("option", { value: p.name }, p.name)));
  select.value = data.default;
  $("trust").textContent = data.trusted ? "" : "shared server: runs are held to the preset's client rules";
  showAgents();
}

function showAgents() {
  const preset = state.presets.find((p) => p.name === $("preset").value);
  $("agents").textContent = preset && preset.agents.length ? preset.agents.join(" · ") : "";
  $("agents").title = preset ? preset.description : "";
}

async function newConversation() {
  const data = await api("/api/conversations", { preset: $("preset").value });
  state.conversation = data.id;
  $("messages").replaceChildren();
  resetTeam();
  setStatus(`new conversation with massgen/${data.preset}`);
}

function setStatus(text) { $("status").textContent = text; }

function setRunning(running) {
  state.running = running;
  $("send").disabled = running;
  $("stop").disabled = !running;
  $("new").disabled = running;
  $("preset").disabled = running;
}

// ---- a turn

async function ask(text) {
  addMessage("user", text);
  const reply = addMessage("assistant", "");
  reply.classList.add("pending");
  resetTeam();
  setRunning(true);
  setStatus("the team is working…");
  const started = performance.now();
  state.clock = setInterval(() => { $("time").textContent = `${((performance.now() - started) / 1000).toFixed(1)} s`; }, 100);
  let finished = false;
  try {
    const response = await fetch(`/api/conversations/${state.conversation}/ask`, {
      method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ text }),
    });
    if (!response.ok) {
      const data = await response.json().catch(() => ({}));
      throw new Error((data.error && data.error.message) || `${response.status} ${response.statusText}`);
    }
    for await (const [kind, data] of events(response)) {
      if (kind === "progress") applyEvent(data);
      else if (kind === "text") reply.querySelector(".body").textContent += data;
      else if (kind === "done") { finished = true; finish(reply, data); }
      else if (kind === "stopped" || kind === "error") { finished = true; fail(reply, kind, data.message); }
    }
    if (!finished) fail(reply, "error", "the connection closed before the answer came");
  } catch (error) {
    fail(reply, "error", error.message);
  } finally {
    clearInterval(state.clock);
    setRunning(false);
  }
}

// Server-sent events from a fetch response: [event name, parsed data] pairs.
async function* events(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let kind = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event: ")) kind = line.slice(7);
        else if (line.startsWith("data: ")) data.push(line.slice(6));
      }
      yield [kind, JSON.parse(data.join("\n"))];
    }
  }
}

function addMessage(role, text) {
  const body = el("div", { class: "body" }, text);
  const message = el("div", { class: `message ${role}` }, el("div", { class: "who" }, role === "user" ? "You" : "Team"), body);
  $("messages").append(message);
  message.scrollIntoView({ block: "end" });
  return message;
}

function finish(reply, data) {
  reply.classList.remove("pending");
  reply.querySelector(".body").innerHTML = data.html; // rendered by the server: no raw HTML, no images
  const record = data.record;
  if (record) {
    reply.append(el("div", { class: "meta" },
      `${record.winner} won (${record.end_reason}) · ${record.usage.total_tokens.toLocaleString()} tokens · ` +
      `$${record.cost.toFixed(4)} · ${record.duration_seconds.toFixed(1)} s`));
    applyRecord(record);
  }
  setStatus("done");
  loadRuns();
}

function fail(reply, kind, message) {
  reply.classList.remove("pending");
  reply.classList.add(kind);
  reply.querySelector(".body").textContent = message;
  setStatus(kind === "stopped" ? "stopped" : "failed");
}

// ---- the team at work

function resetTeam() {
  state.team = { agents: new Map(), votes: new Map(), winner: null, done: "" };
  $("cards").replaceChildren();
  $("timeline").replaceChildren();
  $("tokens").textContent = "0";
  $("cost").textContent = "$0.0000";
  $("time").textContent = "0.0 s";
  $("outcome").textContent = "";
  drawMap();
}

function applyEvent(event) {
  const team = state.team;
  if (event.tokens !== undefined) $("tokens").textContent = Number(event.tokens).toLocaleString();
  if (event.cost !== undefined) $("cost").textContent = `$${Number(event.cost).toFixed(4)}`;
  addTimeline(event);
  if (event.kind === "start") {
    for (const agent of event.agents) {
      team.agents.set(agent.id, { id: agent.id, model: agent.model, state: "waiting", turns: 0, answer: null, vote: null, error: null });
    }
    renderCards();
    drawMap();
    return;
  }
  if (event.kind === "done") {
    clearInterval(state.clock);
    $("time").textContent = `${Number(event.at).toFixed(1)} s`;
    team.winner = event.target;
    team.done = event.detail;
    $("outcome").textContent = event.target ? `${event.detail}: ${event.target} wins` : `${event.detail}: no answer`;
    for (const agent of team.agents.values()) if (agent.state !== "failed") agent.state = "done";
    renderCards();
    drawMap();
    return;
  }
  const agent = team.agents.get(event.agent_id);
  if (!agent) return;
  if (event.kind === "turn") { agent.state = "working"; agent.turns = Number(event.detail) || agent.turns + 1; }
  else if (event.kind === "answer") {
    agent.state = "answered";
    agent.answer = { label: event.target, text: event.detail, html: event.html };
    team.votes.clear(); // a new answer voids every vote before it
    for (const other of team.agents.values()) if (other.vote) other.vote.void = true;
  } else if (event.kind === "vote") {
    agent.state = "voted";
    agent.vote = { target: event.target, reason: event.detail, void: false };
    team.votes.set(agent.id, event.target);
  } else if (event.kind === "void") {
    team.votes.delete(agent.id);
    if (agent.vote) agent.vote.void = true;
  } else if (event.kind === "agent_failed") { agent.state = "failed"; agent.error = event.detail; }
  else if (event.kind === "turn_failed") { agent.error = event.detail; }
  renderCards();
  drawMap();
}

// The record at the end: what the events do not carry (tool work, each agent's tokens).
function applyRecord(record) {
  $("time").textContent = `${record.duration_seconds.toFixed(1)} s`;
  $("tokens").textContent = record.usage.total_tokens.toLocaleString();
  $("cost").textContent = `$${record.cost.toFixed(4)}`;
  for (const info of record.agents) {
    const agent = state.team.agents.get(info.id);
    if (!agent) continue;
    agent.tokens = info.prompt_tokens + info.completion_tokens;
    agent.work = record.answers.filter((a) => a.agent_id === info.id).flatMap((a) => a.work);
  }
  renderCards();
}

function renderCards() {
  const cards = [...state.team.agents.values()].map((agent) => {
    const card = el("article", { class: `card ${agent.state}`, "data-agent": agent.id },
      el("header", {}, el("b", {}, agent.id), el("span", { class: "model" }, agent.model)),
      el("div", { class: "state" }, `${agent.state} · turn ${agent.turns}` + (agent.tokens ? ` · ${agent.tokens.toLocaleString()} tokens` : "")));
    if (state.team.winner === agent.id) card.classList.add("winner");
    if (agent.answer) {
      const body = el("div", { class: "markdown" });
      body.innerHTML = agent.answer.html; // rendered by the server: no raw HTML, no images
      const details = el("details", {}, el("summary", {}, `${agent.answer.label}: ${shorten(plain(agent.answer.text), 90)}`), body);
      card.append(details);
    }
    if (agent.vote) {
      card.append(el("div", { class: agent.vote.void ? "vote void" : "vote" },
        `vote → ${agent.vote.target}${agent.vote.reason ? ": " + shorten(agent.vote.reason, 120) : ""}`));
    }
    if (agent.work && agent.work.length) {
      const list = el("ul", {}, ...agent.work.map((w) => el("li", { class: w.error ? "failed" : "" },
        `${w.tool}(${shorten(w.arguments, 60)}) → ${shorten(w.result, 100)}`)));
      card.append(el("details", { class: "work" }, el("summary", {}, `tool work (${agent.work.length})`), list));
    }
    if (agent.error) card.append(el("div", { class: "error" }, shorten(agent.error, 200)));
    return card;
  });
  $("cards").replaceChildren(...cards);
}

function shorten(text, limit) {
  const line = String(text || "").split(/\s+/).join(" ").trim();
  return line.length <= limit ? line : line.slice(0, limit - 1) + "…";
}

// Markdown's marks taken out, for a one-line preview.
function plain(text) {
  return String(text || "").replace(/[*_`#>]+/g, "").replace(/\[([^\]]*)\]\([^)]*\)/g, "$1");
}

function tally() {
  const counts = new Map();
  for (const agent of state.team.agents.values()) if (agent.answer) counts.set(agent.id, 0);
  for (const target of state.team.votes.values()) counts.set(target, (counts.get(target) || 0) + 1);
  return counts;
}

function leader(counts) {
  let best = null;
  for (const [id, votes] of counts) if (votes > 0 && (best === null || votes > counts.get(best))) best = id;
  return best;
}

function drawMap() {
  const map = $("map");
  const agents = state.team ? [...state.team.agents.keys()] : [];
  const counts = state.team ? tally() : new Map();
  const lead = state.team && state.team.winner ? state.team.winner : leader(counts);
  const cx = 160, cy = 135, radius = agents.length > 1 ? 88 : 0;
  const where = new Map(agents.map((id, i) => {
    const angle = (2 * Math.PI * i) / agents.length - Math.PI / 2;
    return [id, [cx + radius * Math.cos(angle), cy + radius * Math.sin(angle)]];
  }));
  const nodes = [svg("defs")];
  const marker = svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" });
  marker.append(svg("path", { d: "M0,0 L10,5 L0,10 z", fill: "#2f6f3e" }));
  nodes[0].append(marker);
  if (state.team) {
    for (const [voter, target] of state.team.votes) {
      if (!where.has(voter) || !where.has(target)) continue;
      const [x1, y1] = where.get(voter), [x2, y2] = where.get(target);
      if (voter === target) {
        nodes.push(svg("path", { d: `M${x1 - 10},${y1 - 24} a 13 13 0 1 1 20 0`, fill: "none", stroke: "#2f6f3e", "stroke-width": 2, "marker-end": "url(#arrow)", class: "edge", "data-vote": `${voter}>${target}` }));
        continue;
      }
      const length = Math.hypot(x2 - x1, y2 - y1) || 1, cut = 27 / length;
      nodes.push(svg("line", {
        x1: x1 + (x2 - x1) * cut, y1: y1 + (y2 - y1) * cut, x2: x2 - (x2 - x1) * cut, y2: y2 - (y2 - y1) * cut,
        stroke: "#2f6f3e", "stroke-width": 2, "marker-end": "url(#arrow)", class: "edge", "data-vote": `${voter}>${target}`,
      }));
    }
  }
  for (const [id, [x, y]] of where) {
    const agent = state.team.agents.get(id);
    const fill = state.team.winner === id ? "#1a7f37" : agent.state === "failed" ? "#b42318" : id === lead ? "#3b7bbf" : "#6b7f99";
    const circle = svg("circle", { cx: x, cy: y, r: 24, fill, class: "node", "data-agent": id });
    if (id === lead) circle.setAttribute("stroke", "#f2b705"), circle.setAttribute("stroke-width", 4);
    const name = svg("text", { x, y: y + 4, "text-anchor": "middle", fill: "white" });
    name.textContent = id;
    const votes = counts.get(id) || 0;
    const label = svg("text", { x, y: y + 40, "text-anchor": "middle", fill: "#333" });
    label.textContent = `${votes} vote${votes === 1 ? "" : "s"}`;
    nodes.push(circle, name, label);
  }
  map.replaceChildren(...nodes);
  const parts = [...counts].map(([id, n]) => `${id}: ${n}`);
  const what = state.team && state.team.winner ? `winner ${state.team.winner}` : lead ? `leader ${lead}` : "no votes yet";
  $("tally").textContent = parts.length ? `tally ${parts.join(", ")} · ${what}` : what;
}

function addTimeline(event) {
  const who = event.agent_id || "";
  const words = {
    start: () => `${event.agents.length} agents at work`,
    turn: () => `${who} is working (turn ${event.detail})`,
    answer: () => `${who} answered (${event.target})`,
    vote: () => `${who} voted for ${event.target}`,
    void: () => `${who}'s vote for ${event.target} no longer counts`,
    turn_failed: () => `${who}'s turn could not be used: ${shorten(event.detail, 80)}`,
    agent_failed: () => `${who} failed: ${shorten(event.detail, 80)}`,
    late: () => `${who} is late`,
    done: () => `done (${event.detail}): ${event.target ? event.target + " wins" : "no answer"}`,
  };
  const text = (words[event.kind] || (() => event.kind))();
  const item = el("li", { class: event.kind }, el("span", { class: "at" }, `${Number(event.at || 0).toFixed(2)}s`), text);
  $("timeline").append(item);
}

// ---- past runs

async function loadRuns() {
  const data = await api("/api/runs");
  $("runs-note").textContent = data.directory_set ? (data.runs.length ? "" : "no runs recorded yet")
    : "Set MASSGEN_LOG_DIR before starting the server to keep every run's record and list it here.";
  const rows = data.runs.map((run) => el("tr", {},
    el("td", {}, el("a", { href: `/runs/${encodeURIComponent(run.file)}`, target: "_blank", rel: "noopener" }, run.started_at.replace("T", " ").slice(0, 19))),
    el("td", {}, run.preset), el("td", {}, run.winner || "none"), el("td", {}, run.end_reason || ""),
    el("td", {}, run.tokens == null ? "" : Number(run.tokens).toLocaleString()),
    el("td", {}, run.cost == null ? "" : `$${Number(run.cost).toFixed(4)}`)));
  $("runs").querySelector("tbody").replaceChildren(...rows);
}

// ---- wiring

window.addEventListener("DOMContentLoaded", async () => {
  resetTeam();
  $("ask").addEventListener("submit", (e) => {
    e.preventDefault();
    const text = $("question").value.trim();
    if (!text || state.running) return;
    $("question").value = "";
    ask(text);
  });
  $("question").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); $("ask").requestSubmit(); }
  });
  $("stop").addEventListener("click", () => api(`/api/conversations/${state.conversation}/stop`, {}).catch((e) => setStatus(e.message)));
  $("new").addEventListener("click", () => api(`/api/conversations/${state.conversation}/new`, {})
    .then(() => { $("messages").replaceChildren(); resetTeam(); setStatus("new conversation"); })
    .catch((e) => setStatus(e.message)));
  $("preset").addEventListener("change", () => { showAgents(); newConversation().catch((e) => setStatus(e.message)); });
  $("refresh").addEventListener("click", () => loadRuns().catch((e) => setStatus(e.message)));
  try {
    await loadPresets();
    await newConversation();
    await loadRuns();
    document.body.dataset.ready = "true";
  } catch (error) {
    setStatus(error.message);
  }
});
