"""Who may use the web UI: the rules every request passes before any route sees it.

* Bound to 127.0.0.1 (or ::1, or localhost), the server is this machine's user's, as the terminal is:
  no token, and runs are trusted. A page on another site must still not drive it from the user's browser, so the
  `Host` header must name a loopback address (a DNS-rebinding page arrives with its own host name) and a request
  that changes something must come from the server's own origin (`Origin`, sent by browsers on every POST).
* Bound to any other address, anyone who can reach the port could spend the operator's keys, so every request needs
  the server's token, as Jupyter does: `?token=...` in the URL the command prints (the browser then keeps it in a
  cookie), the cookie, or an `Authorization: token ...` header; compared in constant time. Without it: 401. Runs
  started through such a server are untrusted, built exactly as a proxy request is (request.py).
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

COOKIE = "massgen_web_token"
_LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


def needs_token(host: str) -> bool:
    """Whether a server bound to `host` needs a token: unless it is 127.0.0.1 (or ::1, or localhost), yes.

    The rule is the address, not "any loopback address": 127.0.0.2 also stays on this machine, but a rule with one
    exception is easier to state and to trust, a token where it was not needed costs nothing, and it lets the tests
    run the real server on a real other address without leaving the machine."""
    return host.strip("[]").lower() not in _LOOPBACK_NAMES


def new_token() -> str:
    return secrets.token_urlsafe(32)


class Access:
    """ASGI middleware: `token=None` for a loopback server, the server's token otherwise."""

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", [])}
        from_query = _query_token(scope)
        refusal = self._refusal(scope, headers, from_query)
        if refusal is not None:
            status, text = refusal
            await _plain(send, status, text)
            return
        if self.token is None or from_query is None:
            await self.app(scope, receive, send)
            return

        async def with_cookie(message: Message) -> None:
            # The token came in the URL: keep it in a cookie, so the page's own requests carry it without it
            # being written into every link.
            if message["type"] == "http.response.start":
                cookie = f"{COOKIE}={self.token}; Path=/; HttpOnly; SameSite=Strict"
                message["headers"] = [*message.get("headers", []), (b"set-cookie", cookie.encode("latin-1"))]
            await send(message)

        await self.app(scope, receive, with_cookie)

    def _refusal(self, scope: Scope, headers: dict[str, str], from_query: str | None) -> tuple[int, str] | None:
        host = headers.get("host", "")
        if self.token is None:
            if _hostname(host).lower() not in _LOOPBACK_NAMES:
                return 403, f"this server answers to 127.0.0.1 only, not to the host name {host!r}"
        else:
            given = from_query or _cookie(headers) or _authorization(headers)
            if given is None or not hmac.compare_digest(given.encode(), self.token.encode()):
                return 401, "this server needs its token: open the URL it printed when it started (it has ?token=)"
        if scope.get("method") not in ("GET", "HEAD"):
            origin = headers.get("origin")
            if origin is not None and origin != f"{scope.get('scheme', 'http')}://{host}":
                return 403, f"a request from another site ({origin}) may not drive this server"
        return None


def _hostname(host: str) -> str:
    """`Host` without its port: `127.0.0.1:8000` -> `127.0.0.1`, `[::1]:8000` -> `::1`."""
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _query_token(scope: Scope) -> str | None:
    values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token")
    return values[0] if values else None


def _cookie(headers: dict[str, str]) -> str | None:
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(headers.get("cookie", ""))
    except Exception:  # a malformed cookie header is no token, not a server error
        return None
    morsel = jar.get(COOKIE)
    return morsel.value if morsel is not None else None


def _authorization(headers: dict[str, str]) -> str | None:
    scheme, _, value = headers.get("authorization", "").partition(" ")
    return value.strip() or None if scheme.lower() in ("token", "bearer") else None


async def _plain(send: Send, status: int, text: str) -> None:
    body = (text + "\n").encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
