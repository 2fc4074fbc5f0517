"""The LLM layer: one async protocol, providers chosen by spec string, composable wrappers.

Import cost is small: provider SDKs (anthropic, openai, llama.cpp) load only when a spec names
them. Typical use::

    stack = await build_llm("openai:gpt-4o-mini", concurrency=32, rpm=500, retries=4,
                            cache_path=run_dir / "llm_cache.sqlite", cache_mode="read_through")
    completion = await stack.complete(LLMRequest(system=..., messages=(user("hi"),)))
    stack.ledger.to_json()   # tokens and cost per provider/model/label
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from friendsim._lazy import lazy_exports

if TYPE_CHECKING:
    from friendsim.llm.accounting import AccountingLLM, Ledger, Price, PriceTable
    from friendsim.llm.base import LLM, Completion, LLMRequest, Message, Usage, user
    from friendsim.llm.cache import CacheMode, CachingLLM, LLMCache
    from friendsim.llm.errors import (
        CacheMissError,
        LLMConnectionError,
        LLMError,
        LLMTimeoutError,
        MalformedResponseError,
        PermanentLLMError,
        ProviderConfigError,
        RateLimitedError,
        ServerError,
        TransientLLMError,
    )
    from friendsim.llm.limits import ConcurrencyLimitedLLM, RateLimitedLLM
    from friendsim.llm.pool import PooledLLM
    from friendsim.llm.registry import ProviderSpec, create_llm, parse_spec
    from friendsim.llm.retry import RetryingLLM, RetryPolicy
    from friendsim.llm.scripted import ScriptedLLM
    from friendsim.llm.stack import LLMStack, build_llm

__getattr__ = lazy_exports(
    __name__,
    {
        "AccountingLLM": "friendsim.llm.accounting",
        "Ledger": "friendsim.llm.accounting",
        "Price": "friendsim.llm.accounting",
        "PriceTable": "friendsim.llm.accounting",
        "LLM": "friendsim.llm.base",
        "Completion": "friendsim.llm.base",
        "LLMRequest": "friendsim.llm.base",
        "Message": "friendsim.llm.base",
        "Usage": "friendsim.llm.base",
        "user": "friendsim.llm.base",
        "CacheMode": "friendsim.llm.cache",
        "CachingLLM": "friendsim.llm.cache",
        "LLMCache": "friendsim.llm.cache",
        "CacheMissError": "friendsim.llm.errors",
        "LLMConnectionError": "friendsim.llm.errors",
        "LLMError": "friendsim.llm.errors",
        "LLMTimeoutError": "friendsim.llm.errors",
        "MalformedResponseError": "friendsim.llm.errors",
        "PermanentLLMError": "friendsim.llm.errors",
        "ProviderConfigError": "friendsim.llm.errors",
        "RateLimitedError": "friendsim.llm.errors",
        "ServerError": "friendsim.llm.errors",
        "TransientLLMError": "friendsim.llm.errors",
        "ConcurrencyLimitedLLM": "friendsim.llm.limits",
        "RateLimitedLLM": "friendsim.llm.limits",
        "PooledLLM": "friendsim.llm.pool",
        "ProviderSpec": "friendsim.llm.registry",
        "create_llm": "friendsim.llm.registry",
        "parse_spec": "friendsim.llm.registry",
        "RetryingLLM": "friendsim.llm.retry",
        "RetryPolicy": "friendsim.llm.retry",
        "ScriptedLLM": "friendsim.llm.scripted",
        "LLMStack": "friendsim.llm.stack",
        "build_llm": "friendsim.llm.stack",
    },
)

__all__ = [
    "LLM",
    "AccountingLLM",
    "CacheMissError",
    "CacheMode",
    "CachingLLM",
    "Completion",
    "ConcurrencyLimitedLLM",
    "LLMCache",
    "LLMConnectionError",
    "LLMError",
    "LLMRequest",
    "LLMStack",
    "LLMTimeoutError",
    "Ledger",
    "MalformedResponseError",
    "Message",
    "PermanentLLMError",
    "PooledLLM",
    "Price",
    "PriceTable",
    "ProviderConfigError",
    "ProviderSpec",
    "RateLimitedError",
    "RateLimitedLLM",
    "RetryPolicy",
    "RetryingLLM",
    "ScriptedLLM",
    "ServerError",
    "TransientLLMError",
    "Usage",
    "build_llm",
    "create_llm",
    "parse_spec",
    "user",
]
