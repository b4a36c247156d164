"""`massgen-litellm`: ask a preset a question or chat with it, list or check presets, print a proxy config or the
presets' JSON Schema, render a run report, serve the web UI."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .events import summary_line

if TYPE_CHECKING:
    from .config import McpServer

PROXY_CONFIG = """\
model_list:
  - model_name: "massgen/*"            # massgen/build, massgen/fast, ... and your own presets
    litellm_params:
      model: "massgen/*"
  - model_name: team                   # a name of your choosing for one preset
    litellm_params:
      model: massgen/build

litellm_settings:
  custom_provider_map:
    - {"provider": "massgen", "custom_handler": massgen_litellm.handler}
  callbacks: massgen_litellm.proxy_guard.guard   # a malformed `messages` is a clean 400, not a traceback

general_settings:
  cancel_on_disconnect: true           # a client that hangs up stops the run and its participant calls
"""


# LiteLLM fetches its price list from the internet on import, retrying for seconds when offline; the command line
# uses the copy bundled with LiteLLM unless the user says otherwise (LITELLM_LOCAL_MODEL_COST_MAP=False).
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="massgen-litellm", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    ask = commands.add_parser("ask", help="run one coordination and print the voted answer")
    ask.add_argument("question")
    ask.add_argument("--preset", default="build", help="preset name (default: build)")
    ask.add_argument("--models", help="comma-separated LiteLLM model strings replacing the preset's agents")
    ask.add_argument(
        "--stream", action="store_true", help="off a terminal: progress lines, then the answer as it comes"
    )
    ask.add_argument("--json", action="store_true", help="print the answer and the whole coordination record as JSON")
    add_context_path_option(ask)
    chat = commands.add_parser("chat", help="talk to a team in the terminal: follow-ups keep the conversation")
    chat.add_argument("--preset", default="build", help="preset name (default: build)")
    chat.add_argument("--models", help="comma-separated LiteLLM model strings replacing the preset's agents")
    add_context_path_option(chat)
    commands.add_parser("presets", help="list the available presets and their agents")
    check = commands.add_parser("check", help="validate a preset file and show its resolved agents")
    check.add_argument("file", type=Path)
    check.add_argument("--connect", action="store_true", help="start each MCP server and list its tools")
    commands.add_parser("proxy-config", help="print a LiteLLM proxy config that serves every preset")
    commands.add_parser("schema", help="print the presets' JSON Schema (for editors: see the Presets docs)")
    importer = commands.add_parser("import", help="turn a MassGen YAML config into a preset")
    importer.add_argument("config", type=Path)
    importer.add_argument("-o", "--output", type=Path, help="the preset file to write (default: CONFIG's name)")
    report = commands.add_parser("report", help="render a run record (JSON) as a self-contained HTML page")
    report.add_argument("record", type=Path)
    report.add_argument("-o", "--output", type=Path, help="the HTML file to write (default: RECORD with .html)")
    web = commands.add_parser("web", help="a page in the browser where you talk to a team (the `web` extra)")
    web.add_argument("--preset", default="build", help="the preset selected first (default: build)")
    web.add_argument("--host", default="127.0.0.1", help="any other address than 127.0.0.1 needs the printed token")
    web.add_argument("--port", type=int, default=8000, help="0 picks a free one (default: 8000)")
    web.add_argument("--proxy", metavar="URL", help="run the team on this LiteLLM proxy (key: $MASSGEN_PROXY_KEY)")
    add_context_path_option(web)
    args = parser.parse_args(argv)

    if args.command == "proxy-config":
        print(PROXY_CONFIG, end="")
        return 0
    if args.command == "schema":
        from .schema import preset_schema_text

        print(preset_schema_text(), end="")
        return 0
    if args.command == "report":
        return _report(args.record, args.output)
    if args.command == "import":
        return _import(args.config, args.output)
    if args.command == "check":
        return _check(args.file, args.connect)
    if args.command == "presets":
        return _presets()
    if args.command == "chat":
        from . import chat as terminal_chat

        return terminal_chat.chat(args.preset, _models(args.models), args.context_path)
    if args.command == "web":
        from .web import serve

        if args.context_path:
            if args.proxy:
                print(
                    "error: --context-path with --proxy: the proxy's presets choose its context paths", file=sys.stderr
                )
                return 2
            from .config import ContextPath
            from .context_paths import problems

            try:
                found = problems([ContextPath.parse(entry) for entry in args.context_path])
                if found:  # said now, not as an error on every question the page asks
                    raise ValueError(found[0])
                # The server's conversations keep this registration: a page, trusted or not, cannot change the paths.
                from .conversation import register

                register(args.context_path)
            except ValueError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
        return serve(args)
    return _ask(args)


def add_context_path_option(command: argparse.ArgumentParser) -> None:
    """`--context-path DIR[:rw]`, repeatable, into `args.context_path` (a list of strings): pass it to `register`."""
    command.add_argument(
        "--context-path",
        action="append",
        default=[],
        metavar="DIR[:rw]",
        help="a directory the agents may read through the filesystem MCP server; DIR:rw lets them write there too "
        "(repeatable; needs Node.js)",
    )


def _models(option: str | None) -> list[str] | None:
    return [m.strip() for m in option.split(",") if m.strip()] if option else None


def _presets() -> int:
    from .errors import MassGenInputError
    from .presets import PresetStore

    store = PresetStore()
    for name, path in sorted(store.files().items()):
        try:
            agents = ", ".join(a.model for a in store.load(name).agents)
        except MassGenInputError as exc:
            agents = f"INVALID: {exc}"
        print(f"{name:12} {agents}  ({path})")
    return 0


def _check(path: Path, connect: bool = False) -> int:
    from .config import ENV_KEY_PREFIX
    from .errors import MassGenInputError
    from .participant import pick_protocol
    from .presets import load_preset_file
    from .request import agent_problems

    try:
        preset = load_preset_file(path)
    except MassGenInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{path}: valid. {preset.description}".rstrip())
    print("options: " + ", ".join(f"{k}={v}" for k, v in preset.options().model_dump().items()))
    if preset.context_paths:
        paths = ", ".join(f"{entry.path} ({entry.mode})" for entry in preset.context_paths)
        print(f"context paths (every agent, as MCP servers files and files_rw): {paths}")
    for index, agent in enumerate(preset.agents, start=1):
        key = "none (from the environment)" if agent.api_key is None else "given"
        raw = agent.api_key.get_secret_value() if agent.api_key else ""
        if raw.startswith(ENV_KEY_PREFIX):
            key = raw  # the variable's name, never a value
        sampling = ", ".join(f"{k}={v}" for k, v in agent.sampling().items()) or "defaults"
        protocol = pick_protocol(agent) + (" (auto)" if agent.protocol in (None, "auto") else "")
        print(f"  agent{index}: {agent.model}  protocol={protocol}  sampling: {sampling}  key: {key}")
        calls = [f"{name}={getattr(agent, name)}" for name in CALL_FIELDS if getattr(agent, name) is not None]
        if agent.extra_headers:
            calls.append("extra_headers: " + ", ".join(f"{name}: ***" for name in agent.extra_headers))
        if calls:
            print(f"    {'  '.join(calls)}")
        servers = preset.servers_for(agent)
        if servers:
            tools = "" if pick_protocol(agent) == "tools" else " (not used: text-protocol agents get no tools)"
            print(f"    MCP servers: {', '.join(_describe_server(server) for server in servers)}{tools}")
    for problem in agent_problems(preset.agents):
        print(f"warning: {problem}", file=sys.stderr)
    if connect:
        import asyncio

        from . import context_paths
        from .mcp_tools import list_tools

        unique = {server.name: server for agent in preset.agents for server in preset.servers_for(agent)}
        try:
            unique |= {server.name: server for server in context_paths.servers(preset.context_paths)}
        except LookupError as exc:
            print(f"  files: {exc}")
        for name, found in asyncio.run(list_tools(list(unique.values()))).items():
            print(f"  {name}: {found if isinstance(found, str) else ', '.join(found)}")
    return 0


# Call fields `check` shows as they are; extra_headers is shown with its values masked (they are often keys).
CALL_FIELDS = ("api_base", "api_version", "num_retries", "extra_body", "thinking", "drop_params")


def _describe_server(server: McpServer) -> str:
    """A server as `check` shows it: how it is reached, and header values masked (they are often keys)."""
    where = " ".join([server.command or "", *server.args]) if server.command else str(server.url)
    headers = ", ".join(f"{name}: ***" for name in server.headers)
    allowed = f" tools={','.join(server.tools)}" if server.tools is not None else ""
    per_run = " per_run" if server.per_run else ""
    return f"{server.name} ({where}{'; headers ' + headers if headers else ''}{allowed}{per_run})"


def _import(config_path: Path, output: Path | None) -> int:
    import yaml
    from pydantic import ValidationError

    from .config import Preset
    from .errors import describe_validation_error
    from .massgen_import import import_config

    try:
        config = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        print(f"error: {config_path} cannot be read as YAML: {exc}", file=sys.stderr)
        return 2
    if not isinstance(config, dict):
        print(f"error: {config_path} is not a MassGen config (a YAML mapping with agents)", file=sys.stderr)
        return 2
    preset, left = import_config(config, config_path.name)
    try:
        Preset.model_validate(preset)
    except ValidationError as exc:
        print(f"error: the imported preset is not valid: {describe_validation_error(exc, Preset, '')}", file=sys.stderr)
        return 2
    target = output or config_path.with_suffix(".preset.yaml")
    target.write_text(yaml.safe_dump(preset, sort_keys=False, allow_unicode=True), encoding="utf-8")
    print(f"wrote {target}: {len(preset['agents'])} agents")
    for line in left:
        print(f"  not carried: {line}")
    return 0


def _report(record_path: Path, output: Path | None) -> int:
    from pydantic import ValidationError

    from .record import RunRecord
    from .report import render

    try:
        record = RunRecord.load(record_path)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors(include_url=False, include_input=False)
        )
        print(f"error: {record_path} is not a run record: {problems}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as exc:
        print(f"error: {record_path} is not a run record: {exc}", file=sys.stderr)
        return 2
    target = output or record_path.with_suffix(".html")
    target.write_text(render(record), encoding="utf-8")
    print(target)
    return 0


def _ask(args: argparse.Namespace) -> int:
    import litellm
    import openai

    from .conversation import register

    try:
        register(args.context_path)
    except ValueError as exc:
        print(f"error: --context-path: {_plain(exc)}", file=sys.stderr)
        return 2
    kwargs: dict[str, Any] = {
        "model": f"massgen/{args.preset}",
        "messages": [{"role": "user", "content": args.question}],
    }
    if args.models:
        kwargs["models"] = _models(args.models)
    # The live view and --stream show the agents at work: progress as it happens (no fallback to wait for here).
    kwargs["enable_live_progress"] = True
    try:
        if args.json:
            response = litellm.completion(**kwargs)
            print(json.dumps({"answer": response.choices[0].message.content, "record": response.massgen}, indent=2))
            return 0
        if sys.stdout.isatty():
            answer, record = _live(kwargs)
        elif args.stream:
            answer, record = _lines(kwargs)
        else:
            response = litellm.completion(**kwargs)
            answer, record = response.choices[0].message.content or "", response.massgen
            print(answer)
    except litellm.BadRequestError as exc:
        print(f"error: {_plain(exc)}", file=sys.stderr)
        return 2
    except openai.OpenAIError as exc:  # every LiteLLM API error derives from it
        print(f"error: {_plain(exc)}", file=sys.stderr)
        return 1
    if record:
        print(f"\n{summary_line(record)}", file=sys.stderr)
    return 0


def _plain(exc: BaseException) -> str:
    """The message without the exception class names LiteLLM puts in front of it, fit for a terminal: it may quote
    a provider's error body."""
    from .live import for_terminal

    return for_terminal(re.sub(r"^(?:litellm\.\w+: )+", "", str(getattr(exc, "message", None) or exc)))


def _live(kwargs: dict[str, Any]) -> tuple[str, dict[str, Any] | None]:
    """The live view on stderr while the agents work, then the answer rendered as Markdown on stdout."""
    import litellm
    from rich.console import Console
    from rich.live import Live
    from rich.markdown import Markdown

    from .live import LiveView, for_terminal

    view, parts, record = LiveView(), [], None
    with Live(view, console=Console(stderr=True), refresh_per_second=8):
        for chunk in litellm.completion(**kwargs, stream=True):
            if event := getattr(chunk, "massgen_event", None):
                view.apply(event)
            record = getattr(chunk, "massgen", None) or record
            if chunk.choices and chunk.choices[0].delta.content:
                parts.append(chunk.choices[0].delta.content)
    answer = "".join(parts)
    Console().print(Markdown(for_terminal(answer)))
    return answer, record


def _lines(kwargs: dict[str, Any]) -> tuple[str, dict[str, Any] | None]:
    """Off a terminal: the progress lines on stderr (which may still be one), the answer on stdout as it streams."""
    import litellm

    from .live import for_terminal

    parts, record, thinking = [], None, False
    for chunk in litellm.completion(**kwargs, stream=True):
        record = getattr(chunk, "massgen", None) or record
        delta = chunk.choices[0].delta if chunk.choices else None
        if delta is None:
            continue
        if getattr(delta, "reasoning_content", None):
            thinking = True
            print(for_terminal(delta.reasoning_content), end="", file=sys.stderr, flush=True)
        if delta.content:
            if thinking:
                thinking = False
                print(file=sys.stderr)
            parts.append(delta.content)
            print(delta.content, end="", flush=True)
    print()
    return "".join(parts), record
