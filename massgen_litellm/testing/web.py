"""`massgen-litellm web` as users start it, a child process, for tests and the screenshot script.

It binds a free port (`--port 0`) and is ready once it has printed its URL; the URL, with its token when the server
needs one, is read from that line. Stopped with its whole process group.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from types import TracebackType
from urllib.parse import parse_qs, urlsplit

_BANNER = "massgen-litellm web: "


class WebServer:
    def __init__(
        self,
        preset: str,
        host: str = "127.0.0.1",
        env: Mapping[str, str] | None = None,
        args: Sequence[str] = (),
        startup_timeout: float = 120.0,
    ) -> None:
        self.command = [sys.executable, "-m", "massgen_litellm", "web", "--preset", preset, "--host", host]
        self.command += ["--port", "0", *args]
        self.env = {**os.environ, **(env or {})}
        self.startup_timeout = startup_timeout
        self.url = ""  # as printed: with ?token=... when the server needs one
        self.lines: list[str] = []
        self._process: subprocess.Popen[str] | None = None
        self._printed: queue.Queue[str | None] = queue.Queue()

    @property
    def origin(self) -> str:
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc}"

    @property
    def token(self) -> str | None:
        values = parse_qs(urlsplit(self.url).query).get("token")
        return values[0] if values else None

    def output(self) -> str:
        return "".join(self.lines[-80:])

    def __enter__(self) -> WebServer:
        self._process = subprocess.Popen(
            self.command,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        threading.Thread(target=self._read, daemon=True).start()
        while True:
            try:
                line = self._printed.get(timeout=self.startup_timeout)
            except queue.Empty:
                self.__exit__()
                why = f"the web server printed no URL in {self.startup_timeout}s"
                raise TimeoutError(f"{why}:\n{self.output()}") from None
            if line is None:
                self.__exit__()
                raise RuntimeError(f"the web server exited before it printed its URL:\n{self.output()}")
            if line.startswith(_BANNER):
                self.url = line[len(_BANNER) :].strip()
                return self

    def _read(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        for line in self._process.stdout:
            self.lines.append(line)
            self._printed.put(line)
        self._printed.put(None)

    def __exit__(self, *exc: object | TracebackType) -> None:
        process = self._process
        if process is None or process.poll() is not None:
            return
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)
