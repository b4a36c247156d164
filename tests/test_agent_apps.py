"""Agent apps against the real proxy: the official `openai` SDK's tool loop and structured output, and LangChain's
`ChatOpenAI` with `bind_tools`, each with nothing changed but its base URL. Participants are scripted loopback
models that propose the caller's tool, then answer from its result.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import openai
import pydantic
import pytest

from massgen_litellm.testing.loopback import LoopbackServer
from massgen_litellm.testing.openai_chat import Call, FakeLLM, Reply, answer, text, vote
from tests.conftest import weather_agent
from tests.proxy import MASTER_KEY, LiteLLMProxy
from tests.test_client_tools import QUESTION, WEATHER

pytest.importorskip("fastapi", reason="the LiteLLM proxy's dependencies are missing: pip install -e '.[test,proxy]'")


def get_weather(city: str) -> str:
    """The tool the app runs itself."""
    return {"Paris": "18 C, light rain"}.get(city, "unknown")


@pytest.fixture
def backend(upstream: LoopbackServer, proxy: LiteLLMProxy) -> FakeLLM:
    upstream.fake.scripts.clear()
    upstream.fake.calls.clear()
    upstream.fake.script("proxy-a", weather_agent)
    upstream.fake.script("proxy-b", weather_agent)
    return upstream.fake


def test_the_openai_sdk_tool_loop(backend: FakeLLM, proxy: LiteLLMProxy) -> None:
    client = proxy.client()
    messages: list[dict[str, object]] = list(QUESTION)

    first = client.chat.completions.create(model="massgen/duo", messages=messages, tools=[WEATHER])

    assert first.choices[0].finish_reason == "tool_calls"
    [tool_call] = first.choices[0].message.tool_calls or []
    assert tool_call.function.name == "get_weather"  # type: ignore[union-attr]
    messages.append(first.choices[0].message.model_dump(exclude_none=True))
    arguments = json.loads(tool_call.function.arguments)  # type: ignore[union-attr]
    messages.append({"role": "tool", "tool_call_id": tool_call.id, "content": get_weather(**arguments)})

    second = client.chat.completions.create(model="massgen/duo", messages=messages, tools=[WEATHER])

    assert second.choices[0].finish_reason == "stop"
    assert second.choices[0].message.content == "Final: In Paris it is 18 C, light rain."
    # The agents of the second run saw the app's tool result, in order, after their own proposal.
    seen = backend.calls[-1].messages
    assert [m["role"] for m in seen[:3]] == ["user", "assistant", "tool"]


def test_the_openai_sdk_tool_loop_streaming(backend: FakeLLM, proxy: LiteLLMProxy) -> None:
    client = proxy.client()
    stream = client.chat.completions.create(model="massgen/duo", messages=QUESTION, tools=[WEATHER], stream=True)
    deltas = [tc for chunk in stream if chunk.choices for tc in (chunk.choices[0].delta.tool_calls or [])]
    assert [(d.index, d.function.name) for d in deltas] == [(0, "get_weather")]  # type: ignore[union-attr]
    assert json.loads(deltas[0].function.arguments) == {"city": "Paris"}  # type: ignore[union-attr]

    messages = [
        *QUESTION,
        {
            "role": "assistant",
            "tool_calls": [
                {
                    "id": deltas[0].id,
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": deltas[0].function.arguments},
                }
            ],
        },  # type: ignore[union-attr]
        {"role": "tool", "tool_call_id": deltas[0].id, "content": get_weather("Paris")},
    ]
    stream = client.chat.completions.create(model="massgen/duo", messages=messages, tools=[WEATHER], stream=True)
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == (
        "Final: In Paris it is 18 C, light rain."
    )
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]


class City(pydantic.BaseModel):
    name: str
    population: int


def test_the_openai_sdk_parses_structured_output(backend: FakeLLM, proxy: LiteLLMProxy) -> None:
    def city_agent(call: Call) -> Reply:
        if call.is_presentation:
            return text(json.dumps({"name": "Paris", "population": 2102650}))
        if "agent1" in call.answers:
            return vote("agent1")
        return answer(json.dumps({"name": "Paris", "population": 2100000}))

    backend.script("proxy-a", city_agent)
    backend.script("proxy-b", city_agent)

    completion = proxy.client().chat.completions.parse(
        model="massgen/duo", messages=[{"role": "user", "content": "The capital of France?"}], response_format=City
    )

    assert completion.choices[0].message.parsed == City(name="Paris", population=2102650)
    presentation = next(c for c in backend.calls if c.is_presentation)
    assert presentation.body["response_format"]["type"] == "json_schema"


def test_langchain_chat_openai_with_bind_tools(backend: FakeLLM, proxy: LiteLLMProxy) -> None:
    langchain_openai = pytest.importorskip("langchain_openai")
    from langchain_core.messages import HumanMessage, ToolMessage
    from langchain_core.tools import tool

    @tool
    def get_weather_tool(city: str) -> str:
        """The current weather in a city."""
        return get_weather(city)

    get_weather_tool.name = "get_weather"
    model = langchain_openai.ChatOpenAI(
        model="massgen/duo", base_url=f"{proxy.base_url}/v1", api_key=MASTER_KEY, max_retries=0, timeout=60
    ).bind_tools([get_weather_tool])

    # A plain agent loop: call the model, run the tools it asks for, until it answers.
    history: list[object] = [HumanMessage("What is the weather in Paris?")]
    for _ in range(3):
        reply = model.invoke(history)
        history.append(reply)
        if not reply.tool_calls:
            break
        for call in reply.tool_calls:
            history.append(ToolMessage(get_weather_tool.invoke(call["args"]), tool_call_id=call["id"]))

    assert reply.content == "Final: In Paris it is 18 C, light rain."
    assert [type(m).__name__ for m in history] == ["HumanMessage", "AIMessage", "ToolMessage", "AIMessage"]


def test_n_above_one_is_a_400_that_says_why(backend: FakeLLM, proxy: LiteLLMProxy) -> None:
    with pytest.raises(openai.BadRequestError, match="n must be 1"):
        proxy.client().chat.completions.create(model="massgen/duo", messages=QUESTION, n=2)


def test_the_docs_tool_loop_runs_as_written(
    backend: FakeLLM, proxy: LiteLLMProxy, capsys: pytest.CaptureFixture[str]
) -> None:
    page = (Path(__file__).parent.parent / "docs" / "openai-clients.md").read_text()
    section = page.split("## In agent apps", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert code is not None
    source = (
        code.group(1).replace("http://127.0.0.1:4000", proxy.base_url).replace("sk-choose-a-long-secret", MASTER_KEY)
    )
    exec(compile(source.replace("massgen/build", "massgen/duo"), "docs/openai-clients.md", "exec"), {})
    assert capsys.readouterr().out == "Final: In Paris it is 18 C, light rain.\n"
