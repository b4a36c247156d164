"""`massgen-litellm chat`: a conversation with a team in the terminal.

Each question is one run with the history so far (conversation.py), shown as `ask` shows one: the live view while
the agents work (live.py, on stderr), then the answer rendered as Markdown. Ctrl-C during a run cancels it (its
participant calls end, as when a proxy client hangs up) and the prompt comes back; at the prompt it clears the
line; Ctrl-D or /exit quits.

One event loop serves the whole session, so LiteLLM's cached HTTP clients stay valid from question to question.
While a run is going, SIGINT cancels its task instead of raising KeyboardInterrupt wherever the loop happens to be
(what asyncio.Runner does on Python 3.11, done by hand for 3.10).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.live import Live
from rich.markdown import Markdown

from .conversation import Conversation, error_text, register
from .errors import MassGenInputError
from .events import summary_line
from .live import LiveView, for_terminal
from .presets import PresetStore

PROMPT = "you> "
HELP = """\
Ask a question; a follow-up is asked with the conversation so far.
  /new          start a new conversation
  /preset NAME  talk to another preset's team (the conversation goes on)
  /save FILE    write the conversation and its run records as JSON
  /exit         quit (or Ctrl-D); Ctrl-C stops a running team"""


class Chat:
    def __init__(
        self, preset: str, models: list[str] | None, store: PresetStore, loop: asyncio.AbstractEventLoop
    ) -> None:
        self.conversation = Conversation(preset, params={"models": models} if models else None)
        self.store = store
        self.loop = loop
        self.out = Console()
        self.err = Console(stderr=True)

    def say(self, text: str) -> None:
        """A line of ours on stderr, as written: no markup or highlighting of names and paths in it."""
        self.err.print(for_terminal(text), markup=False, highlight=False)

    def run(self) -> int:
        self.say(f"massgen/{self.conversation.preset}: ask a question; /help for the commands")
        while True:
            try:
                line = input(PROMPT).strip()
            except EOFError:  # Ctrl-D
                print()
                return 0
            except KeyboardInterrupt:  # at the prompt, Ctrl-C drops the line, as a shell does
                print()
                continue
            if not line:
                continue
            if line.startswith("/"):
                if not self.command(line):
                    return 0
            else:
                self.turn(line)

    def command(self, line: str) -> bool:
        """Run a /command; False means quit."""
        name, _, argument = line.partition(" ")
        argument = argument.strip()
        if name in ("/exit", "/quit"):
            return False
        if name == "/new":
            self.conversation.new()
            self.say("new conversation")
        elif name == "/preset" and argument:
            self.switch(argument)
        elif name == "/save" and argument:
            self.save(Path(argument).expanduser())
        elif name == "/help":
            self.say(HELP)
        else:
            self.say(f"error: unknown command {line!r}\n{HELP}")
        return True

    def switch(self, preset: str) -> None:
        try:
            self.store.load(preset)
        except MassGenInputError as exc:
            self.say(f"error: {exc}")
            return
        self.conversation.preset = preset
        self.say(f"now talking to massgen/{preset}; the conversation goes on (/new to start over)")

    def save(self, path: Path) -> None:
        conversation = self.conversation
        data = {"preset": conversation.preset, "messages": conversation.history, "records": conversation.records}
        try:
            path.write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")
        except OSError as exc:
            self.say(f"error: cannot write {path}: {exc.strerror or exc}")
            return
        self.say(f"saved {len(conversation.history)} messages and {len(conversation.records)} records to {path}")

    def turn(self, question: str) -> None:
        import openai

        view = LiveView()
        task = self.loop.create_task(self.conversation.ask(question, view.apply))
        previous = signal.signal(signal.SIGINT, lambda *_: self.loop.call_soon_threadsafe(task.cancel))
        try:
            with Live(view, console=self.err, refresh_per_second=8):
                answer, record = self.loop.run_until_complete(task)
        except asyncio.CancelledError:
            self.say("stopped: the team's calls were cancelled; the question is not in the conversation")
            return
        except openai.OpenAIError as exc:  # every LiteLLM error derives from it; a 400 says what to fix
            self.say(f"error: {error_text(exc)}")
            return
        finally:
            signal.signal(signal.SIGINT, previous)
        self.out.print(Markdown(for_terminal(answer)))
        if record:
            self.say(summary_line(record))


def chat(preset: str, models: list[str] | None, context_paths: Sequence[str]) -> int:
    """The `chat` command: 0 when the person quits, 2 for a bad option or preset."""
    try:
        store = register(context_paths).presets
        store.load(preset)
    except (ValueError, MassGenInputError) as exc:
        print(f"error: {error_text(exc)}", file=sys.stderr)
        return 2
    with contextlib.suppress(ImportError):  # line editing and history for input(), where the platform has it
        import readline  # noqa: F401
    loop = asyncio.new_event_loop()
    try:
        return Chat(preset, models, store, loop).run()
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
