"""The docs cannot go stale: every example in docs/*.md and README.md is run or checked here.

Code blocks are read with markdown-it (the Markdown parser rich already brings), and each kind is held to what it
claims:

* Python, unmarked: run as written, in this process, against scripted teams: the presets it names
  (`massgen/build`...) are replaced by scripted teams of the same names on a loopback server, and OpenRouter's base
  URL points there too, so an example written for keyed models runs without a key or the internet.
* Python after a `<!-- docs-test: proxy -->` line: run as written against the real LiteLLM proxy (`tests/proxy.py`),
  with the documented address, master key and preset replaced by the test proxy's.
* Python after `<!-- docs-test: syntax -->`: fragments (names defined elsewhere on the page): compiled only.
* YAML: a LiteLLM proxy config (it has `model_list`, `litellm_settings`...) names the real handler, and the proxy
  page's is what `massgen-litellm proxy-config` prints, which the proxy tests run; every other YAML block is a
  preset, and must pass the JSON Schema and load through the real loader. YAML of another kind, after a
  `<!-- docs-test: syntax -->` line, must parse.
* JSON: parses. Shell: every `massgen-litellm COMMAND` names a real command, every `python -m MODULE` a real module.
* README.md's relative links name files that exist (the site build checks the pages' own links: `mkdocs build
  --strict` in .ci/run).
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import litellm
import pytest
import yaml
from markdown_it import MarkdownIt

from massgen_litellm.cli import PROXY_CONFIG, main
from massgen_litellm.presets import load_preset_file, shipped_presets_dir
from massgen_litellm.schema import preset_schema
from massgen_litellm.testing.loopback import LoopbackServer
from massgen_litellm.testing.openai_chat import KEY, Call, FakeLLM, Reply, answer, text, vote
from tests.proxy import MASTER_KEY, LiteLLMProxy

ROOT = Path(__file__).parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# What the docs' proxy examples say, and what the test proxy has instead.
DOCUMENTED_PROXY = {
    "http://127.0.0.1:4000": None,  # the running proxy's own address
    "sk-choose-a-long-secret": MASTER_KEY,
    "massgen/build": "massgen/duo",
}


# How a page says that the block after it is not run in process: an HTML comment, invisible on GitHub and on the
# site alike (neither renderer accepts attributes in a fence's info string).
MARKER = r"<!-- docs-test: (\w+) -->"


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # 1-based, the fence's first line
    lang: str
    test: str  # from the marker before the fence: proxy, syntax; "" for none (run in process)
    source: str

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks() -> list[Block]:
    found = []
    for page in PAGES:
        previous = None
        for token in MarkdownIt().parse(page.read_text(encoding="utf-8")):
            if token.type == "fence":
                marker = re.fullmatch(MARKER, previous.content.strip()) if previous is not None else None
                line = token.map[0] + 1 if token.map else 0
                lang = token.info.split(" ")[0]
                found.append(Block(page, line, lang, marker.group(1) if marker else "", token.content))
            previous = token if token.type == "html_block" else None
    return found


BLOCKS = blocks()


def of(*langs: str, test: str | None = None) -> list[Block]:
    return [b for b in BLOCKS if b.lang in langs and (test is None or b.test == test)]


def ids(block: Block) -> str:
    return block.where


def test_every_python_block_says_how_it_is_tested() -> None:
    assert of("python", "py"), "found no Python examples: is the docs/ folder there?"
    unknown = [
        b.where for b in BLOCKS if b.test not in ("", "syntax") and not (b.test == "proxy" and b.lang == "python")
    ]
    assert not unknown, f"a docs-test marker is syntax, or proxy before a Python block: {unknown}"
    assert of("python", test=""), "no example runs in process"
    assert of("python", test="proxy"), "no example runs against the proxy"


# The scripted team behind every documented preset name: answers, proposes the caller's get_weather tool while no
# result is in the conversation, votes for agent1, presents agent1's answer.
ANSWER = "Paris is the capital of France."


def docs_agent(call: Call) -> Reply:
    if call.is_presentation:
        return text(f"Final: {call.answers.get('agent1', '')}")
    if "vote" in call.tools and "agent1" in call.answers:
        return vote("agent1", "agent1 has it right")
    results = [m for m in call.messages if m.get("role") == "tool"]
    if results:
        return answer(f"In Paris it is {results[-1]['content']}.")
    if "get_weather" in call.tools:
        return Reply(tool="get_weather", arguments={"city": "Paris"})
    return answer(ANSWER)


@pytest.fixture
def scripted_presets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeLLM]:
    """Every shipped preset name, and OpenRouter, served by scripted models on a loopback server."""
    with LoopbackServer(FakeLLM(default=docs_agent)) as server:
        agents = [
            {"model": f"openai/docs-{n}", "api_base": server.base_url, "api_key": KEY, "protocol": "tools"}
            for n in ("a", "b")
        ]
        for preset in shipped_presets_dir().glob("*.yaml"):
            (tmp_path / preset.name).write_text(yaml.safe_dump({"agents": agents}), encoding="utf-8")
        monkeypatch.setenv("MASSGEN_PRESETS_DIR", str(tmp_path))
        monkeypatch.setenv("OPENROUTER_API_BASE", server.base_url)
        monkeypatch.setenv("OPENROUTER_API_KEY", KEY)
        monkeypatch.setattr(litellm, "custom_provider_map", list(litellm.custom_provider_map))
        monkeypatch.chdir(tmp_path)  # no .env of the developer's is found by the examples' load_dotenv()
        yield server.fake


def run(block: Block, source: str) -> str:
    """Execute an example as a script of its own; what it prints."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(source, block.where, "exec"), {"__name__": "__main__", "__file__": str(block.page)})
    return out.getvalue()


@pytest.mark.parametrize("block", of("python", "py", test=""), ids=ids)
def test_python_examples_run_in_process(block: Block, scripted_presets: FakeLLM) -> None:
    printed = run(block, block.source)
    assert printed.strip(), f"{block.where} printed nothing"
    if "massgen: " in printed:  # an example of an error: it shows the error's message, and runs no team
        return
    assert scripted_presets.calls, f"{block.where} made no call to the scripted team"
    assert "agent1" in printed or ANSWER in printed, printed


@pytest.fixture
def proxy_backend(upstream: LoopbackServer, request: pytest.FixtureRequest) -> Iterator[tuple[FakeLLM, LiteLLMProxy]]:
    """The shared test proxy (tests/proxy_config.yaml, preset `duo`) with its participants scripted as docs_agent."""
    pytest.importorskip("fastapi", reason="the LiteLLM proxy's dependencies are missing: pip install -e '.[proxy]'")
    proxy: LiteLLMProxy = request.getfixturevalue("proxy")
    upstream.fake.scripts.clear()
    upstream.fake.calls.clear()
    upstream.fake.script("proxy-a", docs_agent)
    upstream.fake.script("proxy-b", docs_agent)
    yield upstream.fake, proxy


@pytest.mark.parametrize("block", of("python", "py", test="proxy"), ids=ids)
def test_python_examples_run_against_the_proxy(block: Block, proxy_backend: tuple[FakeLLM, LiteLLMProxy]) -> None:
    backend, proxy = proxy_backend
    source = block.source
    for documented, actual in DOCUMENTED_PROXY.items():
        assert documented in source, f"{block.where}: a proxy example uses {documented}, as the proxy page does"
        source = source.replace(documented, actual or proxy.base_url)
    printed = run(block, source)
    assert backend.calls, f"{block.where} made no call through the proxy"
    assert "Final:" in printed or "agent1" in printed, printed


@pytest.mark.parametrize("block", of("python", "py", test="syntax"), ids=ids)
def test_python_fragments_compile(block: Block) -> None:
    compile(block.source, block.where, "exec")


# Top-level keys of a LiteLLM proxy config; any other YAML block is a preset.
PROXY_KEYS = frozenset({"model_list", "litellm_settings", "general_settings", "router_settings"})


def is_proxy_config(block: Block) -> bool:
    data = yaml.safe_load(block.source)
    return isinstance(data, dict) and bool(PROXY_KEYS & data.keys())


YAML = of("yaml", "yml")
PROXY_CONFIGS = [b for b in YAML if b.test == "" and is_proxy_config(b)]
PRESETS = [b for b in YAML if b.test == "" and not is_proxy_config(b)]


def test_the_proxy_pages_config_is_the_one_the_command_prints() -> None:
    on_proxy_page = [b for b in PROXY_CONFIGS if b.page.name == "proxy.md"]
    assert on_proxy_page, "docs/proxy.md shows the proxy config"
    assert on_proxy_page[0].source == PROXY_CONFIG, (
        "docs/proxy.md's config is what `massgen-litellm proxy-config` prints"
    )


@pytest.mark.parametrize("block", PROXY_CONFIGS, ids=ids)
def test_proxy_configs_name_the_real_handler(block: Block) -> None:
    providers = (yaml.safe_load(block.source).get("litellm_settings") or {}).get("custom_provider_map") or []
    for entry in providers:
        if entry.get("provider") == "massgen":
            assert entry == {"provider": "massgen", "custom_handler": "massgen_litellm.handler"}, block.where


@pytest.mark.parametrize("block", PRESETS, ids=ids)
def test_preset_examples_pass_the_schema_and_load(block: Block, tmp_path: Path) -> None:
    """A YAML block that is not a proxy config is a preset. (Another kind of YAML: mark it `syntax`.)"""
    data = yaml.safe_load(block.source)
    jsonschema.Draft202012Validator(preset_schema()).validate(data)
    path = tmp_path / "example.yaml"
    path.write_text(block.source, encoding="utf-8")
    assert load_preset_file(path).agents


@pytest.mark.parametrize("block", [*of("json"), *(b for b in YAML if b.test == "syntax")], ids=ids)
def test_other_data_examples_parse(block: Block) -> None:
    if block.lang == "json":
        json.loads(block.source)
    else:
        yaml.safe_load(block.source)


def shell_commands() -> list[tuple[Block, list[str]]]:
    found = []
    for block in of("bash", "sh", "shell"):
        for line in block.source.replace("\\\n", " ").splitlines():
            for command in re.split(r"&&|\|", line.split(" #", 1)[0]):
                words = shlex.split(command, comments=True)
                if words[:1] == ["massgen-litellm"] or words[:2] == ["python", "-m"]:
                    found.append((block, words))
    return found


@pytest.mark.parametrize(("block", "words"), shell_commands(), ids=lambda v: v.where if isinstance(v, Block) else "")
def test_shell_examples_name_real_commands(block: Block, words: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    if words[0] == "python":
        assert importlib.util.find_spec(words[2]) is not None, f"{block.where}: no module {words[2]}"
        return
    # The command's own parser says whether the subcommand exists: --help exits 0 for one that does.
    with pytest.raises(SystemExit) as done:
        main([words[1], "--help"])
    assert done.value.code == 0, f"{block.where}: massgen-litellm has no command {words[1]!r}"
    capsys.readouterr()


def test_the_readmes_links_lead_somewhere() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    targets = re.findall(r"\]\(([^)\s]+)\)", readme)
    local = [t.split("#", 1)[0] for t in targets if not re.match(r"[a-z]+:", t) and not t.startswith("#")]
    assert local, "the README links to the docs"
    missing = [t for t in local if not (ROOT / t).exists()]
    assert not missing, f"README.md links to files that do not exist: {missing}"
