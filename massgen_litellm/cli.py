"""`massgen-litellm`: ask a preset a question from the terminal, or list the presets."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

import litellm
import openai

from . import register_with_litellm
from .presets import PresetStore


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="massgen-litellm", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    ask = commands.add_parser("ask", help="run one coordination and print the voted answer")
    ask.add_argument("question")
    ask.add_argument("--preset", default="build", help="preset name (default: build)")
    ask.add_argument("--models", help="comma-separated LiteLLM model strings replacing the preset's agents")
    ask.add_argument("--stream", action="store_true", help="show the agents at work, then stream the answer")
    ask.add_argument("--json", action="store_true", help="print the whole coordination record as JSON")
    commands.add_parser("presets", help="list the available presets and their agents")
    args = parser.parse_args(argv)

    register_with_litellm()
    litellm.suppress_debug_info = True  # its "Give Feedback" banner would bury our one-line errors
    if args.command == "presets":
        store = PresetStore()
        for name, path in sorted(store.files().items()):
            preset = store.load(name)
            print(f"{name:12} {', '.join(a.model for a in preset.agents)}  ({path})")
        return 0
    return _ask(args)


def _ask(args: argparse.Namespace) -> int:
    kwargs: dict[str, object] = {
        "model": f"massgen/{args.preset}",
        "messages": [{"role": "user", "content": args.question}],
    }
    if args.models:
        kwargs["models"] = [m.strip() for m in args.models.split(",") if m.strip()]
    try:
        if args.stream and not args.json:
            thinking = False
            for chunk in litellm.completion(**kwargs, stream=True):
                delta = chunk.choices[0].delta if chunk.choices else None
                if delta is None:
                    continue
                if getattr(delta, "reasoning_content", None):
                    thinking = True
                    print(delta.reasoning_content, end="", file=sys.stderr, flush=True)
                if delta.content:
                    if thinking:
                        thinking = False
                        print(file=sys.stderr)
                    print(delta.content, end="", flush=True)
            print()
            return 0
        response = litellm.completion(**kwargs)
    except litellm.BadRequestError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    except openai.OpenAIError as exc:  # every LiteLLM API error derives from it
        print(f"error: {getattr(exc, 'message', exc)}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"answer": response.choices[0].message.content, "record": response.massgen}, indent=2))
    else:
        record = response.massgen
        print(response.choices[0].message.content)
        print(
            f"\n[{record['end_reason']}: {record['winner']} won {record['tally']}; "
            f"{record['usage']['total_tokens']} tokens, ${record['cost']:.4f}, {record['duration_seconds']:.1f}s]",
            file=sys.stderr,
        )
    return 0
