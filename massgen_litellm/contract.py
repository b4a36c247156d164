"""What the caller asked of the reply, and the checks an answer must pass to count: the caller's tools
(`tools`, `tool_choice`, `parallel_tool_calls`, and the legacy `functions`/`function_call`) and its
`response_format`.

The team never runs the caller's tools. An agent proposes an action by calling them (or, in the text protocol, with
`CALL:` lines); the proposal is its answer, checked against each tool's JSON Schema with `jsonschema`, shown to the
others and voted on like any answer; the winning proposal goes back to the caller as `message.tool_calls`.

A proxy client's schemas are data from an untrusted party, run on the server: their `pattern` and
`patternProperties` regular expressions are not enforced (a crafted expression could hold the event loop for as long
as it likes), and everything else is.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import jsonschema
from jsonschema.protocols import Validator

from .coordination import ToolCall
from .errors import MassGenInputError

# Our own tools: a caller's tool may not take their names.
RESERVED_NAMES = frozenset({"new_answer", "vote"})
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")


def _ignore(*_: object) -> None:
    return None


_Validator = jsonschema.Draft202012Validator
# The same validator with the regex keywords switched off, for schemas that came from a proxy client.
_UntrustedValidator = jsonschema.validators.extend(_Validator, {"pattern": _ignore, "patternProperties": _ignore})


@dataclass
class ReplyContract:
    tools: list[dict[str, Any]] = field(default_factory=list)  # the caller's, as OpenAI's `tools` shape
    tool_choice: str = "auto"  # auto | none | required | the name of the one tool to call
    parallel: bool = True
    response_format: dict[str, Any] | None = None
    _tool_validators: dict[str, Validator] = field(default_factory=dict)
    _format_validator: Validator | None = None

    @property
    def offers_tools(self) -> bool:
        return bool(self.tools) and self.tool_choice != "none"

    @property
    def wants_json(self) -> bool:
        return self.response_format is not None and self.response_format.get("type") in ("json_object", "json_schema")

    def tool_names(self) -> list[str]:
        return [tool["function"]["name"] for tool in self.tools]

    def check_calls(self, calls: Sequence[ToolCall]) -> str | None:
        """The problem with a proposed action, if any."""
        if not self.offers_tools:
            return "no tools of the user's may be called in this conversation"
        if len(calls) > 1 and not self.parallel:
            return "propose one tool call at a time (parallel tool calls are off)"
        for call in calls:
            if call.name not in self._tool_validators:
                return f"there is no tool `{call.name}`; the user's tools are: {', '.join(self.tool_names())}"
            if self.tool_choice not in ("auto", "required") and call.name != self.tool_choice:
                return f"the only tool you may propose here is `{self.tool_choice}`"
            try:
                arguments = json.loads(call.arguments or "{}")
            except ValueError:
                return f"the arguments of `{call.name}` are not valid JSON"
            error = jsonschema.exceptions.best_match(self._tool_validators[call.name].iter_errors(arguments))
            if error is not None:
                return f"the arguments of `{call.name}` do not match its schema: {_describe(error)}"
        return None

    def check_text(self, text: str) -> str | None:
        """The problem with a text answer, if any: a call is required, or the text must be JSON of a format."""
        if self.tool_choice != "auto" and self.offers_tools:
            wanted = "one of the user's tools" if self.tool_choice == "required" else f"`{self.tool_choice}`"
            return f"an answer here must propose a call of {wanted}, not text"
        if not self.wants_json:
            return None
        try:
            value = json.loads(text)
        except ValueError:
            return "the answer must be JSON and nothing else (no prose, no code fence)"
        if self._format_validator is None:
            return None if isinstance(value, dict) else "the answer must be a JSON object"
        error = jsonschema.exceptions.best_match(self._format_validator.iter_errors(value))
        return None if error is None else f"the answer does not match the required JSON Schema: {_describe(error)}"

    def format_instruction(self) -> str | None:
        """What agents are told of the reply's format."""
        if not self.wants_json:
            return None
        assert self.response_format is not None
        if self.response_format["type"] == "json_object":
            return "The user's application needs the answer as one JSON object, and nothing else."
        schema = self.response_format["json_schema"].get("schema") or {}
        return (
            "The user's application needs the answer as one JSON value matching this JSON Schema, and nothing else:\n"
            + json.dumps(schema, separators=(",", ":"))
        )


def build_contract(params: Mapping[str, Any], trusted: bool) -> ReplyContract:
    """The caller's tools and format from a request's parameters, or a MassGenInputError naming what is wrong."""
    validator_class = _Validator if trusted else _UntrustedValidator
    contract = ReplyContract()
    tools = params.get("tools")
    if tools is None and params.get("functions") is not None:
        tools = [{"type": "function", "function": f} for f in _as_list(params["functions"], "functions")]
    for index, tool in enumerate(_as_list(tools or [], "tools")):
        function = tool.get("function") if isinstance(tool, Mapping) else None
        if (
            not isinstance(tool, Mapping)
            or tool.get("type", "function") != "function"
            or not isinstance(function, Mapping)
        ):
            raise MassGenInputError(f'tools[{index}] must be {{"type": "function", "function": {{"name": ..., ...}}}}')
        name = function.get("name")
        if not isinstance(name, str) or not name or len(name) > 64 or not set(name) <= _NAME_CHARS:
            raise MassGenInputError(f"tools[{index}].function.name must be 1 to 64 letters, digits, '_' or '-'")
        if name in RESERVED_NAMES:
            raise MassGenInputError(
                f"tools[{index}]: a tool named '{name}' would clash with the coordination's own; rename it"
            )
        if name in contract._tool_validators:
            raise MassGenInputError(f"tools[{index}]: a second tool named '{name}'")
        schema = function.get("parameters") or {"type": "object", "properties": {}}
        contract._tool_validators[name] = _validator(schema, validator_class, f"tools[{index}].function.parameters")
        description = function.get("description")
        contract.tools.append(
            {
                "type": "function",
                "function": {
                    "name": name,
                    **({"description": description} if isinstance(description, str) else {}),
                    "parameters": schema,
                },
            }
        )
    contract.tool_choice = _tool_choice(params, contract)
    parallel = params.get("parallel_tool_calls")
    if parallel is not None and not isinstance(parallel, bool):
        raise MassGenInputError("parallel_tool_calls must be true or false")
    contract.parallel = parallel is not False
    contract.response_format, contract._format_validator = _response_format(
        params.get("response_format"), validator_class
    )
    return contract


def _tool_choice(params: Mapping[str, Any], contract: ReplyContract) -> str:
    choice = params.get("tool_choice", params.get("function_call"))
    if choice is None:
        return "auto"
    if isinstance(choice, Mapping):
        function = choice.get("function") if "function" in choice else choice  # legacy function_call: {"name": ...}
        name = function.get("name") if isinstance(function, Mapping) else None
        if name not in contract.tool_names():
            raise MassGenInputError(f"tool_choice names {name!r}, which is not one of the request's tools")
        return str(name)
    if choice in ("auto", "none", "required"):
        if choice == "required" and not contract.tools:
            raise MassGenInputError("tool_choice is 'required' but the request has no tools")
        return str(choice)
    raise MassGenInputError("tool_choice must be 'auto', 'none', 'required' or {\"type\": \"function\", ...}")


def _response_format(value: Any, validator_class: Any) -> tuple[dict[str, Any] | None, Validator | None]:
    if value is None:
        return None, None
    if hasattr(value, "model_json_schema"):  # a pydantic class, as litellm.completion(response_format=Model) takes
        from litellm.utils import type_to_response_format_param

        value = type_to_response_format_param(value)
    if not isinstance(value, Mapping) or value.get("type") not in ("text", "json_object", "json_schema"):
        raise MassGenInputError('response_format must be {"type": "text" | "json_object" | "json_schema", ...}')
    if value["type"] == "text":
        return None, None
    if value["type"] == "json_object":
        return dict(value), None
    spec = value.get("json_schema")
    if not isinstance(spec, Mapping) or not isinstance(spec.get("schema", {}), Mapping):
        raise MassGenInputError('response_format json_schema needs {"name": ..., "schema": {...}}')
    return dict(value), _validator(spec.get("schema") or {}, validator_class, "response_format.json_schema.schema")


def _validator(schema: Any, validator_class: Any, where: str) -> Validator:
    if not isinstance(schema, Mapping):
        raise MassGenInputError(f"{where} must be a JSON Schema object")
    try:
        validator_class.check_schema(schema)
    except jsonschema.exceptions.SchemaError as exc:
        raise MassGenInputError(f"{where} is not a valid JSON Schema: {exc.message}") from None
    # No remote $ref is ever fetched: jsonschema resolves only what the schema itself holds.
    return validator_class(schema)


def _as_list(value: Any, name: str) -> list[Any]:
    if not isinstance(value, Sequence) or isinstance(value, (str, bytes)):
        raise MassGenInputError(f"{name} must be a list")
    return list(value)


def _describe(error: jsonschema.ValidationError) -> str:
    where = "/".join(str(part) for part in error.absolute_path) or "the top level"
    return f"at {where}: {error.message}"[:300]
