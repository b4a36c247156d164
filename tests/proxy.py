"""The real LiteLLM proxy (`litellm --config ...`) as a subprocess on a free loopback port.

It serves `tests/proxy_config.yaml` with the presets in `tests/proxy_presets/`, whose participants are plain
`openai/<name>` models: `OPENAI_API_BASE` in the proxy's environment sends them to a `LoopbackServer`.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

import httpx

HERE = Path(__file__).parent
CONFIG = HERE / "proxy_config.yaml"
PRESETS = HERE / "proxy_presets"
MASTER_KEY = "sk-massgen-test-master-key"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LiteLLMProxy:
    def __init__(self, upstream: str, config: Path = CONFIG, startup_timeout: float = 90.0) -> None:
        self.upstream = upstream
        self.config = config
        self.startup_timeout = startup_timeout
        self.port = free_port()
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - the proxy's output, kept until __exit__
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def __enter__(self) -> LiteLLMProxy:
        env = {
            **os.environ,
            "LITELLM_MASTER_KEY": MASTER_KEY,
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "MASSGEN_PRESETS_DIR": str(PRESETS),
            "OPENAI_API_BASE": self.upstream,
            "OPENAI_API_KEY": "sk-test-not-a-real-key",
        }
        command = [sys.executable, "-m", "litellm.proxy.proxy_cli", "--config", str(self.config)]
        command += ["--host", "127.0.0.1", "--port", str(self.port), "--num_workers", "1"]
        # Its own session, so stopping it reaches any worker it forks.
        self._process = subprocess.Popen(
            command, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            self._wait_until_ready()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _wait_until_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"the LiteLLM proxy exited with {self._process.returncode}:\n{self.output()}")
            try:
                if httpx.get(f"{self.base_url}/health/liveliness", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.25)
        raise TimeoutError(f"the LiteLLM proxy was not ready in {self.startup_timeout}s:\n{self.output()}")

    def output(self) -> str:
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    def __exit__(self, *exc: object | TracebackType) -> None:
        process = self._process
        if process is not None and process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(5)
        self._log.close()
