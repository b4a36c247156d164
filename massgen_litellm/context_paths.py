"""Context paths: directories the agents may read, and write where `rw` says, through the official filesystem MCP
server (`@modelcontextprotocol/server-filesystem` from npm, which needs Node.js).

That server limits every operation to the directories on its command line (symbolic links resolved), but has no
read-only mode. So the read-only paths go to one instance, `files`, whose agents are offered only the server's
read tools (an allow-list: a tool a later version adds is not offered until it is named here), and the read-write
paths to a second instance, `files_rw`, with all its tools. A read-only path inside a read-write one is refused
when the preset is read (config.py), since the second instance would reach it.

Who sets them: only the process that runs the team, in a preset (`context_paths:`) or with `--context-path` /
`register_with_litellm(context_paths=...)`. A request never can: `context_paths` in a request is a 400.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from collections.abc import Sequence

from .config import CONTEXT_SERVER_NAMES, ContextPath, McpServer

PACKAGE = "@modelcontextprotocol/server-filesystem"
# The version the read-tool list below was checked against; `npx` runs this one when no install is found.
VERSION = "2026.8.31"
COMMAND = "mcp-server-filesystem"  # the package's executable, for an install with `npm install -g` or a prefix
PREFIX_ENV = "MASSGEN_NODE_PREFIX"  # an `npm install --prefix DIR` install of the package, looked in first

# The server's tools that only read (its own readOnlyHint annotations); `read_file` is its deprecated alias.
READ_TOOLS = (
    "read_text_file",
    "read_file",
    "read_media_file",
    "read_multiple_files",
    "list_directory",
    "list_directory_with_sizes",
    "directory_tree",
    "search_files",
    "get_file_info",
    "list_allowed_directories",
)

INSTALL_HINT = (
    f"context paths need Node.js and the filesystem MCP server: install Node.js (which brings npx, which fetches "
    f"{PACKAGE} on first use), or `npm install --prefix DIR {PACKAGE}@{VERSION}` and set {PREFIX_ENV}=DIR"
)


def server_command() -> list[str] | None:
    """How to start the filesystem server here: an install under $MASSGEN_NODE_PREFIX, one on PATH, or npx (which
    fetches the package from the registry the first time); None without Node.js."""
    prefix = os.environ.get(PREFIX_ENV)
    if prefix:
        installed = os.path.join(prefix, "node_modules", ".bin", COMMAND)
        if os.access(installed, os.X_OK):
            return [installed]
    found = shutil.which(COMMAND)
    if found:
        return [found]
    npx = shutil.which("npx")
    if npx and shutil.which("node"):
        return [npx, "--yes", f"{PACKAGE}@{VERSION}"]
    return None


def servers(paths: Sequence[ContextPath]) -> list[McpServer]:
    """The MCP servers that serve `paths`: `files` (read-only paths, read tools only) and `files_rw` (read-write
    paths, every tool). Raises LookupError (INSTALL_HINT) when the server cannot be run here."""
    if not paths:
        return []
    if importlib.util.find_spec("mcp") is None:
        raise LookupError("context paths need the MCP client: pip install 'massgen-litellm[tools]'")
    command = server_command()
    if command is None:
        raise LookupError(INSTALL_HINT)
    read_only, writable = CONTEXT_SERVER_NAMES
    found = []
    for name, mode, tools in ((read_only, "ro", list(READ_TOOLS)), (writable, "rw", None)):
        directories = [entry.path for entry in paths if entry.mode == mode]
        if directories:
            server = {"name": name, "command": command[0], "args": [*command[1:], *directories], "tools": tools}
            found.append(McpServer.model_validate(server))
    return found


def problems(paths: Sequence[ContextPath]) -> list[str]:
    """What would keep a context path from reaching the agents: a directory that is not there (the server would
    skip it without a word to us)."""
    return [f"context path {entry.path} is not a directory" for entry in paths if not os.path.isdir(entry.path)]
