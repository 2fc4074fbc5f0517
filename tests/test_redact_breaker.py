"""The redactor and the circuit breaker, in isolation."""

from __future__ import annotations

import pytest

from friendsim.llm.accounting import sum_usage
from friendsim.llm.base import LLMRequest, user
from friendsim.llm.breaker import CircuitBreakerLLM, ProviderIdentity
from friendsim.llm.errors import (
    LLMConnectionError,
    PermanentLLMError,
    ProviderStoppedError,
)
from friendsim.llm.redact import redact_text, redact_value
from friendsim.llm.scripted import ScriptedLLM


def test_redactor_removes_key_values_and_key_shaped_tokens() -> None:
    env = {"MY_SERVICE_API_KEY": "v4lue-of-the-key", "HOME": "/root"}
    text = (
        "auth failed: Authorization: Bearer abcdef123456 x-api-key: zz-999999 "
        "key=sk-proj-ABCDEF123456 url http://user:pw@host/v1 echoed v4lue-of-the-key; home /root"
    )
    out = redact_text(text, env)
    for secret in (
        "abcdef123456",
        "zz-999999",
        "sk-proj-ABCDEF123456",
        "user:pw",
        "v4lue-of-the-key",
    ):
        assert secret not in out, secret
    assert "/root" in out and "auth failed" in out  # ordinary text stays
    assert redact_value({"a": [text]}, env)["a"][0] == out


def test_redactor_masks_user_password_before_a_host_wherever_it_appears() -> None:
    text = (
        "host: qauser:URLPASS-SECRET-999@127.0.0.1:18002 | qauser:pw2-SECRET@[::1]:80/v1 | "
        '{"host":"u:pw3-SECRET@h"} | http://tok-SECRET@h/v1'
    )
    out = redact_text(text, {})
    assert "SECRET" not in out, out
    assert out == 'host: ***@127.0.0.1:18002 | ***@[::1]:80/v1 | {"host":"***@h"} | http://***@h/v1'
    plain = "mail bob@example.com at 10:30; a:b@ c; window 1: 2 of 2"
    assert redact_text(plain, {}) == plain  # no password-shaped userinfo: nothing to mask


def test_redactor_keeps_the_words_after_a_key_variable_reference_and_masks_labelled_keys() -> None:
    for env in ("OPENAI_API_KEY", "API_KEY", "MY_SERVICE_API_KEY"):
        ident = ProviderIdentity(provider="openai", model="m", endpoint="http://h/v1", key_env=env)
        text = f"{ident.describe()}: failed 3 calls in a row after retries"
        assert redact_text(text, {}) == text  # "$NAME:" names a variable; no value follows
    labelled = (
        'x-api-key: zz-secret-1 | api_key=zz-secret-2 | "api-key": "zz-secret-3" | '
        "OPENAI_API_KEY=zz-secret-4 | My-Api-Key: zz-secret-5 | apikey:zz-secret-6"
    )
    out = redact_text(labelled, {})
    assert "zz-secret" not in out, out
    assert out.count("***") == 6


IDENT = ProviderIdentity(provider="openai", model="m", endpoint="http://h/v1", key_env="K")


def req() -> LLMRequest:
    return LLMRequest(messages=(user("hi"),))


async def test_breaker_opens_after_consecutive_transient_failures_and_resets_on_success() -> None:
    inner = ScriptedLLM([LLMConnectionError("down"), "ok", *[LLMConnectionError("down")] * 3])
    b = CircuitBreakerLLM(inner, IDENT, threshold=3)
    with pytest.raises(LLMConnectionError):
        await b.complete(req())
    assert (await b.complete(req())).text == "ok" and b.consecutive == 0
    for _ in range(2):
        with pytest.raises(LLMConnectionError):
            await b.complete(req())
    with pytest.raises(ProviderStoppedError) as info:
        await b.complete(req())
    assert not info.value.fatal and "endpoint http://h/v1" in str(info.value)
    with pytest.raises(ProviderStoppedError):  # stays open, no further call
        await b.complete(req())


@pytest.mark.parametrize("status,fatal", [(401, True), (403, True), (404, True), (413, False)])
async def test_breaker_permanent_errors(status: int, fatal: bool) -> None:
    b = CircuitBreakerLLM(ScriptedLLM([PermanentLLMError("no", status=status)]), IDENT)
    expected = ProviderStoppedError if fatal else PermanentLLMError
    with pytest.raises(expected) as info:
        await b.complete(req())
    if fatal:
        assert "$K" in str(info.value) and "model m" in str(info.value)


def test_sum_usage_adds_segments_row_by_row() -> None:
    a = {
        "by_key": [
            {
                "provider": "openai",
                "model": "m",
                "label": "plan",
                "input_tokens": 10,
                "cost_usd": 0.5,
                "retries": {"429": 2},
            }
        ],
        "unpriced_models": ["x"],
    }
    b = {"by_key": [{"provider": "openai", "model": "m", "label": "plan", "input_tokens": 5,
                     "cost_usd": 0.25, "retries": {"429": 1, "5xx": 1}}]}  # fmt: skip
    s = sum_usage([a, b])
    assert s["total"]["input_tokens"] == 15 and s["total"]["cost_usd"] == 0.75
    assert s["by_key"][0]["retries"] == {"429": 3, "5xx": 1}
    assert s["unpriced_models"] == ["x"]


def _leaky(secret: str) -> ScriptedLLM:
    """The plausible mind, with ``secret`` appended to what its answers write (a text answer,
    the ``text``/``texts`` fields of a JSON one)."""
    from friendsim.runtime.scripted_mind import plausible_responder

    mind = plausible_responder(0)

    def leak(value: object, key: str = "text") -> object:
        if isinstance(value, str):
            return f"{value} {secret}" if key.startswith("text") else value
        if isinstance(value, dict):
            return {k: leak(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [leak(v, key) for v in value]
        return value

    return ScriptedLLM(lambda request: leak(mind(request)), model="mind")


async def test_a_model_repeating_a_key_never_gets_it_into_the_cache_or_the_log(
    tmp_path: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Model output is untrusted: an answer repeating the value of a key variable is stored
    masked, in the LLM cache and in the event log alike (so a replay reads the masked answer),
    while the rest of the answer, ordinary key-shaped words included, is kept as written."""
    from pathlib import Path

    from friendsim.runtime.assembly import run_experiment
    from friendsim.runtime.config import parse_config

    secret = "gw-SECRET-value-777"
    monkeypatch.setenv("GATEWAY_API_KEY", secret)
    cfg = parse_config(
        {
            "experiment": {"name": "leak", "seed": 3, "rounds": 2, "n_actions": 2},
            "agents": {"count": 3, "policy": "llm"},
            "llm": {"provider": "scripted", "cache": "read_through", "retries": 0},
        }
    )
    out = Path(str(tmp_path)) / "r"
    result = await run_experiment(cfg, out_dir=out, llm_factory=lambda spec: _leaky(secret))
    assert result.manifest.totals["actions"] > 0
    for name in ("events.db", "llm_cache.db"):
        assert secret.encode() not in (out / name).read_bytes(), name
    assert b"happy to chat. ***" in (out / "llm_cache.db").read_bytes()  # masked, rest kept


async def test_an_answer_without_secrets_is_passed_on_as_it_came() -> None:
    from friendsim.llm.masking import SecretsMaskedLLM

    inner = ScriptedLLM(lambda request: {"text": "risk-assessment at 10:30@cafe"}, model="m")
    masked = SecretsMaskedLLM(inner, env={"X_API_KEY": "abcdef-123456"})
    request = LLMRequest(messages=(user("hi"),), json_schema={"type": "object"})
    plain = await inner.complete(request)
    got = await masked.complete(request)
    assert got.parsed == plain.parsed and got.text == plain.text
    leaky = SecretsMaskedLLM(
        ScriptedLLM(lambda request: {"text": "key abcdef-123456 here"}, model="m"),
        env={"X_API_KEY": "abcdef-123456"},
    )
    assert (await leaky.complete(request)).parsed == {"text": "key *** here"}
