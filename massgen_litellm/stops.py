"""The caller's `stop` sequences, applied to the reply it gets: cut before the first one, as a provider would.

The presentation call is sent `stop` too, but a provider may ignore it (or LiteLLM may drop it), and a verbatim
answer was written by a coordination turn that never had it (a stop sequence there would cut tool calls and answer
fences). So the reply is cut here whatever the provider did: the same text, streamed or not.
"""

from __future__ import annotations

from collections.abc import Sequence


def cut(text: str, stops: Sequence[str]) -> tuple[str, bool]:
    """`text` up to the first stop sequence (which is left out, as OpenAI does), and whether one was found."""
    found = [i for i in (text.find(stop) for stop in stops) if i >= 0]
    return (text[: min(found)], True) if found else (text, False)


class StopScanner:
    """Cuts a stream of text pieces at the first stop sequence, however the pieces split it.

    The last `len(longest stop) - 1` characters are held back until the next piece shows they do not start a stop
    sequence; `flush()` releases them at the end of the stream.
    """

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = list(stops)
        self.stopped = False
        self._held = ""
        self._keep = max((len(s) for s in self.stops), default=1) - 1

    def feed(self, piece: str) -> str:
        """The part of the text so far that can be sent now."""
        if self.stopped:
            return ""
        text, self.stopped = cut(self._held + piece, self.stops)
        if self.stopped:
            self._held = ""
            return text
        split = max(len(text) - self._keep, 0)
        self._held = text[split:]
        return text[:split]

    def flush(self) -> str:
        held, self._held = self._held, ""
        return held
