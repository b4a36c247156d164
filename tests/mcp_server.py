"""A stdio MCP server for scripted cases, on the `mcp` SDK: `python -m tests.mcp_server`.

`echo` answers, `count` keeps state between calls (per process), `pid` says which process answered, `boom` answers
with an error, `hang` never answers, `crash` kills the server mid-call. `--start-delay SECONDS` makes it slow to
start, as a server fetched by `npx -y` is on its first run.
"""

from __future__ import annotations

import os
import sys
import time

from mcp.server.mcpserver import MCPServer

server = MCPServer("massgen-test-tools")
_count = 0


@server.tool()
def echo(text: str) -> str:
    """Echo the text back."""
    return f"echo: {text}"


@server.tool()
def count() -> str:
    """Count the calls this server has had."""
    global _count
    _count += 1
    return str(_count)


@server.tool()
def pid() -> str:
    """The server's process id."""
    return str(os.getpid())


@server.tool()
def boom() -> str:
    """Fail."""
    raise ValueError("boom went the tool")


@server.tool()
def hang() -> str:
    """Never answer."""
    time.sleep(3600)
    return "late"


@server.tool()
def crash() -> str:
    """Kill the server."""
    os._exit(3)


if __name__ == "__main__":
    if "--start-delay" in sys.argv:
        time.sleep(float(sys.argv[sys.argv.index("--start-delay") + 1]))
    server.run()
