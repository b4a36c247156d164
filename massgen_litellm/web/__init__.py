"""`massgen-litellm web`: a page in the browser where a person talks to a team (the `web` extra).

`app.py` is the server, `access.py` who may use it, `static/` the page. `serve` is the command: it binds the
socket, prints the URL (with the token when one is needed) and serves until interrupted.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from functools import partial
from typing import Any

from ..conversation import PROXY_KEY_ENV, Conversation


def run_options(args: argparse.Namespace) -> dict[str, Any]:
    """The options every conversation of this server is made with, from the command line: `Conversation`'s keyword
    arguments. A new per-run option of the command goes here, and nowhere else."""
    return {
        "trusted": not _needs_token(args.host),
        "proxy": args.proxy,
        "proxy_key": os.environ.get(PROXY_KEY_ENV) if args.proxy else None,
    }


def serve(args: argparse.Namespace) -> int:
    """Run the server for `massgen-litellm web`; returns the exit status."""
    try:
        import uvicorn

        from .access import new_token
        from .app import Settings, create_app
    except ImportError as exc:
        print(f"error: the web UI needs the `web` extra ({exc.name} is missing): pip install 'massgen-litellm[web]'")
        return 2
    options = run_options(args)
    if args.proxy and not options["proxy_key"]:
        print(f"error: --proxy needs the proxy's key in the environment variable {PROXY_KEY_ENV}", file=sys.stderr)
        return 2
    presets = partial(_proxy_presets, args.proxy, options["proxy_key"], args.preset) if args.proxy else _local_presets
    if not args.proxy and args.preset not in {p["name"] for p in presets()}:
        print(f"error: unknown preset {args.preset!r}; `massgen-litellm presets` lists them", file=sys.stderr)
        return 2
    token = new_token() if _needs_token(args.host) else None
    settings = Settings(
        preset=args.preset,
        presets=presets,
        conversation=lambda preset: Conversation(preset, **options),
        token=token,
        trusted=options["trusted"],
    )
    try:
        sock = _bind(args.host, args.port)
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    port = sock.getsockname()[1]
    where = f"[{args.host}]" if ":" in args.host else args.host
    url = f"http://{where}:{port}/" + (f"?token={token}" if token else "")
    print(f"massgen-litellm web: {url}", flush=True)
    if token:
        print("  (bound off 127.0.0.1: every request needs the token, and runs are untrusted, as through a proxy)")
    config = uvicorn.Config(create_app(settings), log_level="warning", timeout_graceful_shutdown=5)
    uvicorn.Server(config).run(sockets=[sock])
    return 0


def _needs_token(host: str) -> bool:
    from .access import needs_token

    return needs_token(host)


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError:
        sock.close()
        raise
    # Listening before the URL is printed: a client that opens it at once waits in the backlog, it is not refused.
    sock.listen(128)
    return sock


def _local_presets() -> list[dict[str, Any]]:
    from ..errors import MassGenInputError
    from ..presets import PresetStore

    store = PresetStore()
    found = []
    for name in store.names():
        try:
            preset = store.load(name)
        except MassGenInputError:
            continue  # `massgen-litellm presets` says what is wrong with it; it cannot be chosen here
        found.append({"name": name, "description": preset.description, "agents": [a.model for a in preset.agents]})
    return found


def _proxy_presets(proxy: str, key: str | None, default: str) -> list[dict[str, Any]]:
    """The `massgen/...` models a proxy serves by name (a wildcard entry names none), and the one given."""
    import openai

    names = {default}
    try:
        with openai.OpenAI(base_url=proxy, api_key=key or "", max_retries=0, timeout=10) as client:
            names |= {m.id.removeprefix("massgen/") for m in client.models.list() if m.id.startswith("massgen/")}
    except openai.OpenAIError:
        pass  # the proxy will say what is wrong when a question is asked; the given preset can still be chosen
    return [{"name": n, "description": "", "agents": []} for n in sorted(names) if "*" not in n]
