"""The presets' JSON Schema, generated from the pydantic models that load them, for editors and other tools.

`massgen-litellm schema` prints it; the wheel ships it as `preset.schema.json` beside the shipped presets, where a
preset's `# yaml-language-server: $schema=preset.schema.json` comment finds it. It is never written by hand: the
test suite fails when the shipped file differs from what the models generate.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .config import Preset
from .presets import shipped_presets_dir

SCHEMA_FILE_NAME = "preset.schema.json"
# The dialect pydantic generates; named so that validators and editors need not guess it.
DIALECT = "https://json-schema.org/draft/2020-12/schema"


def preset_schema() -> dict[str, Any]:
    """The JSON Schema of a preset file, as a dict: `Preset.model_json_schema()` (validation mode) with `$schema`.

    It checks shapes (keys, types, bounds, choices); the few rules only the loader applies (a blank model string, an
    MCP server with both or neither of `command` and `url`, duplicate server names) are left to `load_preset_file`.
    """
    return {"$schema": DIALECT, **Preset.model_json_schema()}


def preset_schema_text() -> str:
    """The schema as the shipped file holds it: JSON, two-space indents, keys in the models' order, a final newline."""
    return json.dumps(preset_schema(), indent=2, ensure_ascii=False) + "\n"


def shipped_schema_file() -> Path:
    """Where the package keeps its copy: beside the shipped presets (in a checkout, `presets/preset.schema.json`)."""
    return shipped_presets_dir() / SCHEMA_FILE_NAME
