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

import functools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .coordination import ToolCall
from .errors import MassGenInputError

if TYPE_CHECKING:
    # jsonschema is imported where a request first brings a schema (tools or a response_format): most requests
    # have none, and it is the heaviest import of the package after LiteLLM's.
    import jsonschema
    from jsonschema.protocols import Validator

# Our own tools: a caller's tool may not take their names.
RESERVED_NAMES = frozenset({"new_answer", "vote"})
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")
# Compiled validators kept by schema, so that an agent app sending the same tools on every request checks and
# compiles them once; bounded, since a proxy client chooses what goes in.
_CACHED_VALIDATORS = 256
_CACHED_SCHEMA_CHARS = 64_000


def _ignore(*_: object) -> None:
    return None


@functools.cache
def _validator_class(trusted: bool) -> Any:
    """Draft 2020-12; for schemas that came from a proxy client, with the regex keywords switched off."""
    import jsonschema

    if trusted:
        return jsonschema.Draft202012Validator
    return jsonschema.validators.extend(
        jsonschema.Draft202012Validator, {"pattern": _ignore, "patternProperties": _ignore}
    )


def _best_match(errors: Any) -> jsonschema.ValidationError | None:
    from jsonschema.exceptions import best_match

    return best_match(errors)


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
            error = _best_match(self._tool_validators[call.name].iter_errors(arguments))
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
        error = _best_match(self._format_validator.iter_errors(value))
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


NO_CONTRACT = ReplyContract()
"""A request's contract when it sends no tools and no format (most requests share it: nothing in it changes)."""
CONTRACT_PARAMS = frozenset(
    {"tools", "functions", "tool_choice", "function_call", "parallel_tool_calls", "response_format"}
)


def build_contract(params: Mapping[str, Any], trusted: bool) -> ReplyContract:
    """The caller's tools and format from a request's parameters (`CONTRACT_PARAMS`), or a MassGenInputError naming
    what is wrong."""
    if all(params.get(name) is None for name in CONTRACT_PARAMS):
        return NO_CONTRACT
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
        contract._tool_validators[name] = _validator(schema, trusted, f"tools[{index}].function.parameters")
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
    contract.response_format, contract._format_validator = _response_format(params.get("response_format"), trusted)
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


def _response_format(value: Any, trusted: bool) -> tuple[dict[str, Any] | None, Validator | None]:
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
    return dict(value), _validator(spec.get("schema") or {}, trusted, "response_format.json_schema.schema")


def _validator(schema: Any, trusted: bool, where: str) -> Validator:
    if not isinstance(schema, Mapping):
        raise MassGenInputError(f"{where} must be a JSON Schema object")
    try:
        key = json.dumps(schema, sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError):
        raise MassGenInputError(f"{where} must be plain JSON (objects, arrays, strings, numbers, booleans)") from None
    compile_schema = _compiled if len(key) <= _CACHED_SCHEMA_CHARS else _compiled.__wrapped__
    problem, validator = compile_schema(key, trusted)
    if problem is not None:
        raise MassGenInputError(f"{where} is not a valid JSON Schema: {problem}")
    assert validator is not None
    return validator


@functools.lru_cache(maxsize=_CACHED_VALIDATORS)
def _compiled(schema_json: str, trusted: bool) -> tuple[str | None, Validator | None]:
    """A checked, compiled validator for a schema given as canonical JSON, or the schema's problem. Validators hold
    no per-use state, so one may serve every request that brings the same schema."""
    from jsonschema.exceptions import SchemaError

    schema = json.loads(schema_json)
    validator_class = _validator_class(trusted)
    try:
        validator_class.check_schema(schema)
    except SchemaError as exc:
        return exc.message, None
    # No remote $ref is ever fetched: jsonschema resolves only what the schema itself holds.
    return None, validator_class(schema)


def _as_list(value: Any, name: str) -> list[Any]:
    if not isinstance(value, Sequence) or isinstance(value, (str, bytes)):
        raise MassGenInputError(f"{name} must be a list")
    return list(value)


def _describe(error: jsonschema.ValidationError) -> str:
    where = "/".join(str(part) for part in error.absolute_path) or "the top level"
    return f"at {where}: {error.message}"[:300]
