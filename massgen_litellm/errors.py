"""Errors as LiteLLM users already catch them: every bad input is a `litellm.BadRequestError` (HTTP 400), a run
without an answer a 502 (`litellm.APIError`) or a 408 (`litellm.Timeout`). Every one is built here.

Each carries `num_retries=0`: LiteLLM's router (the proxy) reads that attribute off a failed call to decide how
often to try again, and a coordination must never be re-run whole because it failed: it has already retried what
was worth retrying, call by call, within its caps.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping

import litellm
from pydantic import BaseModel, ValidationError

PROVIDER = "massgen"


class MassGenInputError(ValueError):
    """Bad input found before any participant is called; becomes a 400 at the LiteLLM boundary.

    Raised by the preset loader and the request checks with a message meant for the user (it names the problem and
    the fix, never a server path or an environment value); the provider turns it into `bad_request(message)`.
    """


def bad_request(message: str, model: str = "") -> litellm.BadRequestError:
    """A `litellm.BadRequestError` (HTTP 400) whose message is `massgen: <message>`, for the user to fix."""
    return litellm.BadRequestError(message=f"massgen: {message}", model=model, llm_provider=PROVIDER, num_retries=0)


def no_answer(message: str, model: str) -> litellm.APIError:
    """The run ended without an answer to give, or lost the one it was giving (HTTP 502)."""
    return litellm.APIError(
        status_code=502, message=f"massgen: {message}", llm_provider=PROVIDER, model=model, num_retries=0
    )


def run_timed_out(run_timeout: float, model: str) -> litellm.Timeout:
    """A `litellm.Timeout` (HTTP 408): `run_timeout` seconds passed before any agent answered."""
    return litellm.Timeout(
        message=f"massgen: no agent answered within run_timeout={run_timeout}s",
        model=model,
        llm_provider=PROVIDER,
        num_retries=0,
    )


def describe_validation_error(error: ValidationError, shape: type[BaseModel], where: str) -> str:
    """One line per problem, naming the key path and, for an unknown key, the keys that are allowed."""
    lines = []
    for problem in error.errors(include_url=False, include_input=False):
        path = (where + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in problem["loc"])).lstrip(".")
        if problem["type"] == "extra_forbidden":
            allowed = ", ".join(_allowed_keys(shape, problem["loc"]))
            lines.append(f"{path}: unknown key; allowed keys: {allowed}")
        elif problem["type"] == "value_error" and "error" in problem.get("ctx", {}):
            lines.append(f"{path}: {problem['ctx']['error']}")  # our own validator's words, without "Value error, "
        else:
            lines.append(f"{path}: {problem['msg']}")
    return "; ".join(lines)


def _allowed_keys(shape: type[BaseModel], loc: Iterable[int | str]) -> list[str]:
    """Walk the model along the error's path to the shape that rejected the key."""
    current: type[BaseModel] = shape
    for part in list(loc)[:-1]:
        if isinstance(part, int):
            continue
        field = current.model_fields.get(str(part))
        nested = _model_in(field.annotation) if field else None
        if nested is None:
            break
        current = nested
    return list(current.model_fields)


def _model_in(annotation: object) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def all_agents_failed(failures: Mapping[str, str], model: str) -> litellm.APIError:
    """A 502 naming each agent's cause (`failures`: agent id to its redacted error)."""
    causes = "; ".join(f"{agent}: {cause}" for agent, cause in failures.items())
    return no_answer(f"every participant failed, so there is no answer. {causes}", model)


_SECRET_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD)$", re.IGNORECASE)


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """`text` without any of `secrets`, nor the value of any environment variable named like a secret.

    Providers sometimes quote the key they refused in their error message; that message goes into the record, the
    logs and exceptions, so every error text we keep passes through here. The environment counts too: LiteLLM
    picks keys up from it (`OPENAI_API_KEY`) without the preset ever naming them.
    """
    found = {value for name, value in os.environ.items() if _SECRET_NAME.search(name)}
    found.update(secret for secret in secrets if secret)
    for secret in sorted((s for s in found if len(s) >= 8), key=len, reverse=True):
        text = text.replace(secret, "[redacted]")
    return text
