"""The presets' JSON Schema: generated from the models, shipped as a file, printed by the command line, and true to
the loader (every shipped preset passes it and loads; what it refuses, the loader refuses too)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from massgen_litellm.errors import MassGenInputError
from massgen_litellm.presets import load_preset_file, shipped_presets_dir
from massgen_litellm.schema import SCHEMA_FILE_NAME, preset_schema, preset_schema_text, shipped_schema_file

SHIPPED_PRESETS = sorted(shipped_presets_dir().glob("*.yaml"))
REGENERATE = "massgen-litellm schema > presets/preset.schema.json"
EDITOR_COMMENT = f"# yaml-language-server: $schema={SCHEMA_FILE_NAME}"


def validator() -> jsonschema.protocols.Validator:
    schema = json.loads(shipped_schema_file().read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)  # a schema no validator accepts would fail every editor silently
    return cls(schema)


def test_the_shipped_schema_is_the_one_the_models_generate() -> None:
    shipped = shipped_schema_file().read_text(encoding="utf-8")
    assert shipped == preset_schema_text(), (
        f"presets/{SCHEMA_FILE_NAME} differs from the schema the pydantic models in config.py generate "
        f"(a field was added or changed). Regenerate it: {REGENERATE}"
    )


def test_the_schema_is_draft_2020_12_and_forbids_unknown_keys() -> None:
    schema = preset_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert jsonschema.validators.validator_for(schema) is jsonschema.Draft202012Validator
    assert schema["additionalProperties"] is False
    assert schema["required"] == ["agents"]
    assert schema["$defs"]["PresetAgent"]["additionalProperties"] is False


def test_the_command_prints_it() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "massgen_litellm", "schema"], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout == preset_schema_text()
    assert json.loads(done.stdout)["title"] == "Preset"


@pytest.mark.parametrize("path", SHIPPED_PRESETS, ids=lambda p: p.stem)
def test_every_shipped_preset_names_the_schema_passes_it_and_loads(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert text.splitlines()[0] == EDITOR_COMMENT, "editors find the schema through this first line"
    validator().validate(yaml.safe_load(text))
    assert load_preset_file(path).agents


@pytest.mark.parametrize(
    ("preset", "where"),
    [
        ({"agents": [{"model": "openai/gpt-5-mini", "temprature": 0.2}]}, "temprature"),
        ({"agents": []}, "agents"),
        ({"agents": [{"model": "openai/gpt-5-mini"}], "final": "best"}, "final"),
        ({"agents": [{"model": "openai/gpt-5-mini", "temperature": 3}]}, "temperature"),
        ({"agents": [{"model": "openai/gpt-5-mini"}], "max_calls": 0}, "max_calls"),
        ({"agents": [{"model": "openai/gpt-5-mini"}], "clients": {"agent_fields": ["model"]}}, "agent_fields"),
        ({"agents": [{"model": "openai/gpt-5-mini"}], "mcp_servers": [{"name": "1bad", "command": "x"}]}, "name"),
    ],
)
def test_what_the_schema_refuses_the_loader_refuses(preset: dict[str, Any], where: str, tmp_path: Path) -> None:
    errors = list(validator().iter_errors(preset))
    assert errors, f"the schema let {preset} through"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(preset), encoding="utf-8")
    with pytest.raises(MassGenInputError, match=where):
        load_preset_file(path)


def test_descriptions_reach_the_editor() -> None:
    """What an editor shows on hover comes from the models' docstrings and field descriptions."""
    schema = preset_schema()
    assert "wall-clock seconds" in schema["properties"]["run_timeout"]["description"].lower()
    assert schema["$defs"]["PresetAgent"]["properties"]["model"]["description"]
    assert schema["$defs"]["McpServer"]["description"]
