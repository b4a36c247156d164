"""What a benchmark ran on, printed at the top of every benchmark's output: absolute times mean little without it.

Cores, Python, LiteLLM's version, the CPU's model name, the load when the benchmark started, and a CPU speed probe:
the time of a fixed pure-Python loop, best of several tries (the best is the least disturbed by other processes).
Two machines' figures compare through the probe: a machine whose probe takes 3x as long runs our Python (and
LiteLLM's) about 3x as slowly. Ratios measured in one run carry from one machine to another; absolute times do not.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROBE_TRIES = 5


def probe_loop() -> int:
    """The probe's fixed work: integer arithmetic, a dict and a list, as Python code that calls LiteLLM does."""
    counts: dict[int, int] = {}
    items = []
    for i in range(200_000):
        key = (i * 7919) % 1013
        counts[key] = counts.get(key, 0) + 1
        if i % 3 == 0:
            items.append(key)
    return len(items) + len(counts)


def cpu_probe(tries: int = PROBE_TRIES) -> float:
    """Seconds of CPU for `probe_loop`, best of `tries`."""
    best = float("inf")
    for _ in range(tries):
        began = time.process_time()
        probe_loop()
        best = min(best, time.process_time() - began)
    return best


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _commit() -> str:
    try:
        done = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return done.stdout.strip() or "unknown"


def header(module: str) -> str:
    """The machine, as a short Markdown block for the top of a benchmark's output; `module` is the benchmark's
    (`benchmarks.run`), shown with the command line's arguments."""
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "unknown"
    command = " ".join(["python -m", module, *sys.argv[1:]])
    lines = [
        f"Measured {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, commit {_commit()}: `{command}`",
        f"- machine: {_usable_cores()} cores ({_cpu_model()}), {platform.system()} {platform.release()}; "
        f"load average {load} at the start",
        f"- Python {platform.python_version()}, litellm {_version('litellm')}, pydantic {_version('pydantic')}",
        f"- CPU speed probe: {cpu_probe() * 1000:.1f} ms (a fixed pure-Python loop, best of {PROBE_TRIES}; "
        "a machine whose probe takes 3x as long runs the same Python about 3x as slowly)",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(header("benchmarks.machine"))
