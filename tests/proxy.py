"""The real LiteLLM proxy (`litellm --config ...`) as a subprocess on a free loopback port.

It serves `tests/proxy_config.yaml` with the presets in `tests/proxy_presets/` (or another directory: `presets`),
whose participants are plain `openai/<name>` models: `OPENAI_API_BASE` in the proxy's environment sends them to a
`LoopbackServer`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

import openai

from massgen_litellm.server_process import ServerProcess, free_port

HERE = Path(__file__).parent
CONFIG = HERE / "proxy_config.yaml"
PRESETS = HERE / "proxy_presets"
MASTER_KEY = "sk-massgen-test-master-key"


class LiteLLMProxy:
    def __init__(
        self,
        upstream: str,
        config: Path = CONFIG,
        # A wait, not a measurement: importing LiteLLM's proxy takes seconds here and can take minutes on a slow,
        # loaded machine; only a proxy that never comes up should fail a test.
        startup_timeout: float = 600.0,
        num_workers: int = 1,
        env: dict[str, str] | None = None,
        presets: Sequence[Path] = (),
    ) -> None:
        """`presets`: directories of presets served besides tests/proxy_presets (made by a test, in a temporary
        directory)."""
        self.port = free_port()
        env = {
            **os.environ,
            **(env or {}),
            "LITELLM_MASTER_KEY": MASTER_KEY,
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "MASSGEN_PRESETS_DIR": os.pathsep.join(map(str, [PRESETS, *presets])),
            "OPENAI_API_BASE": upstream,
            "OPENAI_API_KEY": "sk-test-not-a-real-key",
            # uvicorn kills a worker that has not answered its health check within 5 s, and a freshly spawned worker
            # cannot answer until it has imported LiteLLM: on a slow or loaded machine, workers are killed and
            # spawned again forever. LiteLLM passes this on to uvicorn.
            "TIMEOUT_WORKER_HEALTHCHECK": "300",
        }
        command = [sys.executable, "-m", "litellm.proxy.proxy_cli", "--config", str(config)]
        command += ["--host", "127.0.0.1", "--port", str(self.port), "--num_workers", str(num_workers)]
        self.server = ServerProcess(
            "the LiteLLM proxy", command, self.port, "/health/liveliness", env=env, startup_timeout=startup_timeout
        )

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.server.pid

    def client(self, timeout: float = 60) -> openai.OpenAI:
        """The official client, holding the master key, with no retries of its own (a test sees every failure)."""
        return openai.OpenAI(base_url=f"{self.base_url}/v1", api_key=MASTER_KEY, max_retries=0, timeout=timeout)

    def async_client(self, timeout: float = 60) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=f"{self.base_url}/v1", api_key=MASTER_KEY, max_retries=0, timeout=timeout)

    def __enter__(self) -> LiteLLMProxy:
        self.server.start()
        return self

    def __exit__(self, *exc: object | TracebackType) -> None:
        self.server.stop()
