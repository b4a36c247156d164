"""The web UI's server: a Starlette app serving the page, its conversations and the past runs.

Routes (JSON unless said; every one behind `access.Access`):

* `GET /` the page; `GET /static/...` its script and style (package data, nothing fetched from elsewhere);
* `GET /api/presets` the presets to choose from, with their agents' model strings;
* `POST /api/conversations` `{"preset": name}` -> `{"id": ...}`: a conversation (`conversation.Conversation`);
* `POST /api/conversations/{id}/ask` `{"text": ...}` -> a server-sent event stream of the turn: `progress` (a run
  event, `Run.stream`'s dicts, answers with their Markdown rendered as `html`), `text` (a piece of the final answer),
  then `done` (`{"answer", "html", "record"}`), `stopped` or `error` (`{"message"}`). The client hanging up stops the
  turn, as a proxy client's does;
* `POST /api/conversations/{id}/stop` cancels the running turn (the team's participant calls end with it);
* `POST /api/conversations/{id}/new` forgets the history;
* `GET /api/runs` the run records in `MASSGEN_LOG_DIR`, newest first; `GET /runs/{file}` one as the `report` page.

Agent text is untrusted: Markdown is rendered here with markdown-it-py with raw HTML off and images off (an image
would be a fetch from wherever an agent points), and the page's Content-Security-Policy allows nothing but this
server's own script, style and connections.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from markdown_it import MarkdownIt
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ..conversation import Conversation, error_text
from ..record import LOG_DIR_ENV, RunRecord
from .access import Access

STATIC = Path(__file__).with_name("static")
PAGE_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
# The report page is self-contained: inline style, no script (report.py).
REPORT_POLICY = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"
MAX_CONVERSATIONS = 64  # the oldest idle one is forgotten past this: a token holder cannot fill the server's memory
MAX_QUESTION_CHARS = 100_000
MAX_RUNNING = 4  # questions being answered at once, over all conversations: each is a whole team at work
_RECORD_FILE = re.compile(r"[0-9]{8}T[0-9]{12}Z-[0-9a-f]{32}\.json")

_markdown = MarkdownIt("js-default", {"html": False, "linkify": False}).disable("image")


def render_markdown(text: str) -> str:
    """Markdown as HTML with no raw HTML and no images: agent text can only ever be text, links and formatting
    (markdown-it refuses javascript:, vbscript:, file: and data: links)."""
    return _markdown.render(text)


@dataclass
class Settings:
    """How the server runs its conversations.

    `preset` is the one selected first; `presets` lists what may be chosen (name -> its agents' models and
    description); `conversation` makes a conversation for a preset: the per-run options from the command line
    (`--proxy`, trust, and whatever else a run is given) live in it, so a route never builds one by hand.
    """

    preset: str
    presets: Callable[[], list[dict[str, Any]]]
    conversation: Callable[[str], Conversation]
    token: str | None = None
    trusted: bool = True


@dataclass
class _Session:
    conversation: Conversation
    turn: asyncio.Task[Any] | None = None


def create_app(settings: Settings) -> Access:
    sessions: OrderedDict[str, _Session] = OrderedDict()

    async def page(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers={"content-security-policy": PAGE_POLICY})

    async def presets(request: Request) -> Response:
        found = await asyncio.to_thread(settings.presets)
        return JSONResponse({"default": settings.preset, "trusted": settings.trusted, "presets": found})

    async def start(request: Request) -> Response:
        body = await _json(request)
        if isinstance(body, Response):
            return body
        preset = body.get("preset", settings.preset)
        names = {p["name"] for p in await asyncio.to_thread(settings.presets)}
        if not isinstance(preset, str) or preset not in names:
            return _error(400, f"unknown preset {preset!r}: choose one of {', '.join(sorted(names))}")
        _forget_idle(sessions)
        conversation_id = uuid.uuid4().hex
        sessions[conversation_id] = _Session(settings.conversation(preset))
        return JSONResponse({"id": conversation_id, "preset": preset})

    def session_of(request: Request) -> _Session | Response:
        session = sessions.get(request.path_params["id"])
        if session is None:
            return _error(404, "no such conversation (the server may have restarted): start a new one")
        sessions.move_to_end(request.path_params["id"])
        return session

    async def ask(request: Request) -> Response:
        session = session_of(request)
        if isinstance(session, Response):
            return session
        body = await _json(request)
        if isinstance(body, Response):
            return body
        text = body.get("text")
        if not isinstance(text, str) or not text.strip():
            return _error(400, "text must be the question, a non-empty string")
        if len(text) > MAX_QUESTION_CHARS:
            return _error(400, f"the question is {len(text)} characters; at most {MAX_QUESTION_CHARS} are accepted")
        if session.turn is not None and not session.turn.done():
            return _error(409, "the team is still answering the last question: wait, or stop it first")
        running = sum(1 for s in sessions.values() if s.turn is not None and not s.turn.done())
        if running >= MAX_RUNNING:
            return _error(429, f"the server is answering {running} questions already: ask again when one is done")
        # The turn starts here, not when the stream is first read, so that the count above is never behind.
        session.turn, events = _start_turn(session.conversation, text)
        return StreamingResponse(
            _stream(session.turn, events),
            media_type="text/event-stream",
            headers={"cache-control": "no-store", "x-accel-buffering": "no"},
        )

    async def stop(request: Request) -> Response:
        session = session_of(request)
        if isinstance(session, Response):
            return session
        running = session.turn is not None and not session.turn.done()
        if running:
            assert session.turn is not None
            session.turn.cancel()
            await asyncio.gather(session.turn, return_exceptions=True)
        return JSONResponse({"stopped": running})

    async def new(request: Request) -> Response:
        session = session_of(request)
        if isinstance(session, Response):
            return session
        if session.turn is not None and not session.turn.done():
            return _error(409, "the team is still answering: stop it first")
        session.conversation.new()
        return JSONResponse({"history": 0})

    async def runs(request: Request) -> Response:
        found = await asyncio.to_thread(_runs)
        return JSONResponse({"directory_set": bool(os.environ.get(LOG_DIR_ENV)), "runs": found})

    async def run_page(request: Request) -> Response:
        name = request.path_params["name"]
        directory = os.environ.get(LOG_DIR_ENV)
        # Only names the recorder writes: nothing else in or outside the directory can be asked for.
        if not directory or not _RECORD_FILE.fullmatch(name):
            return _error(404, "no such run record")
        from ..report import render

        try:
            record = await asyncio.to_thread(RunRecord.load, Path(directory) / name)
        except (OSError, ValueError) as exc:
            return _error(404, f"the run record cannot be read: {type(exc).__name__}")
        return HTMLResponse(render(record), headers={"content-security-policy": REPORT_POLICY})

    app = Starlette(
        routes=[
            Route("/", page),
            Route("/api/presets", presets),
            Route("/api/conversations", start, methods=["POST"]),
            Route("/api/conversations/{id}/ask", ask, methods=["POST"]),
            Route("/api/conversations/{id}/stop", stop, methods=["POST"]),
            Route("/api/conversations/{id}/new", new, methods=["POST"]),
            Route("/api/runs", runs),
            Route("/runs/{name}", run_page),
            Mount("/static", app=StaticFiles(directory=STATIC), name="static"),
        ]
    )
    return Access(app, settings.token)


def _start_turn(conversation: Conversation, text: str) -> tuple[asyncio.Task[None], asyncio.Queue[tuple[str, Any]]]:
    """The question asked in a task of its own, so that `stop` can cancel it; what it does goes to the queue as
    (event name, data), the last one `done`, `error` or `stopped`."""
    queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

    def on_event(event: dict[str, Any]) -> None:
        if event.get("kind") == "answer":
            event = {**event, "html": render_markdown(str(event.get("detail") or ""))}
        queue.put_nowait(("progress", event))

    def on_text(piece: str) -> None:
        queue.put_nowait(("text", piece))

    async def run() -> None:
        try:
            answer, record = await conversation.ask(text, on_event, on_text)
            queue.put_nowait(("done", {"answer": answer, "html": render_markdown(answer), "record": record}))
        except asyncio.CancelledError:
            queue.put_nowait(("stopped", {"message": "stopped: the team's calls were cancelled"}))
            raise
        except Exception as exc:  # the person sees why; the server goes on
            queue.put_nowait(("error", {"message": error_text(exc)}))

    return asyncio.create_task(run()), queue


async def _stream(task: asyncio.Task[None], queue: asyncio.Queue[tuple[str, Any]]) -> AsyncIterator[str]:
    """The turn as server-sent events. The client hanging up cancels this generator, which cancels the turn, as a
    proxy client hanging up does."""
    try:
        while True:
            kind, data = await queue.get()
            yield f"event: {kind}\ndata: {json.dumps(data)}\n\n"
            if kind in ("done", "error", "stopped"):
                break
    finally:
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


def _forget_idle(sessions: OrderedDict[str, _Session]) -> None:
    while len(sessions) >= MAX_CONVERSATIONS:
        idle = next((key for key, s in sessions.items() if s.turn is None or s.turn.done()), None)
        if idle is None:
            break
        del sessions[idle]


def _runs() -> list[dict[str, Any]]:
    directory = os.environ.get(LOG_DIR_ENV)
    if not directory or not Path(directory).is_dir():
        return []
    found = []
    for path in sorted(Path(directory).glob("*.json"), reverse=True)[:200]:
        if not _RECORD_FILE.fullmatch(path.name):
            continue
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
            found.append(
                {
                    "file": path.name,
                    "preset": str(record.get("preset", "")),
                    "started_at": str(record.get("started_at", "")),
                    "winner": record.get("winner"),
                    "end_reason": record.get("end_reason"),
                    "tokens": (record.get("usage") or {}).get("total_tokens"),
                    "cost": record.get("cost"),
                }
            )
        except (OSError, ValueError, AttributeError):
            continue  # a file being written or not a record: left out of the list, not an error
    return found


async def _json(request: Request) -> dict[str, Any] | Response:
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        # Also what keeps a plain cross-site form post out: it cannot send this content type without CORS.
        return _error(415, "send the body as JSON (content-type: application/json)")
    try:
        body = await request.json()
    except ValueError:
        return _error(400, "the body is not valid JSON")
    if not isinstance(body, dict):
        return _error(400, "the body must be a JSON object")
    return body


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message}}, status_code=status)
