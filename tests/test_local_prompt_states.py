"""The local model's prompt-state cache keeps to its capacity, every byte counted, and gives the
same answers as llama-cpp-python's own RAM cache, which counted only the KV part of each state
and so held a full logits buffer per state beyond its capacity (2.3 GB of RSS for the
quickstart with a 256 MB cache)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import numpy as np
import pytest

from friendsim.llm.base import LLMRequest, user
from friendsim.llm.prompt_states import PromptStateCache

VOCAB = 1000


def saved_state(tokens: list[int], *, state_bytes: int = 20_000) -> SimpleNamespace:
    """What ``Llama.save_state`` gives: logits rows for every token (as a model with a
    ``VOCAB``-entry vocabulary would keep), the context's token ids, the llama.cpp state."""
    rng = np.random.default_rng(len(tokens))
    input_ids = np.zeros(512, dtype=np.intc)
    input_ids[: len(tokens)] = tokens
    return SimpleNamespace(
        scores=rng.standard_normal((len(tokens), VOCAB)).astype(np.single),
        input_ids=input_ids,
        n_tokens=len(tokens),
        llama_state=bytes(state_bytes),
        llama_state_size=state_bytes,
        seed=7,
    )


def held_bytes(cache: object) -> int:
    """Every byte the cache's states keep alive, measured from the objects themselves (a view's
    memory counted once, at its base)."""
    total = 0
    for state in (
        cache.cache_state.values() if hasattr(cache, "cache_state") else cache._states.values()
    ):  # type: ignore[attr-defined]
        scores = state.scores
        base = scores.base if scores.base is not None else scores
        while getattr(base, "base", None) is not None:
            base = base.base
        total += len(state.llama_state) + state.input_ids.nbytes + base.nbytes
    return total


def test_the_cache_keeps_to_its_capacity_counting_every_byte() -> None:
    """Ten 300-token states (200 kB of llama.cpp state, 1.2 MB of logits each) in a 1 MiB
    cache: it holds the four newest (each about 220 kB once its logits are one row), never more
    than its capacity by its own count or by what it holds, least recently used first out; a
    lookup takes the state sharing the longest prefix and makes it the most recent."""
    capacity = 1 << 20
    cache = PromptStateCache(capacity)
    keys = [[i, *range(100, 399)] for i in range(10)]
    for k in keys:
        cache[k] = saved_state(k, state_bytes=200_000)
        assert held_bytes(cache) <= cache.cache_size <= capacity
    assert len(cache) == 4
    assert [k[0] for k in keys if k in cache] == [6, 7, 8, 9]
    assert cache[[6, *range(100, 399), 5]].input_ids[0] == 6  # now the most recent
    cache[[10, *range(100, 399)]] = saved_state([10, *range(100, 399)], state_bytes=200_000)
    assert [k for k in range(11) if [k, 100] in cache] == [6, 8, 9, 10]


def test_a_state_comes_back_as_saved_but_for_logits_rows_no_reader_uses() -> None:
    cache = PromptStateCache(1 << 30)
    tokens = list(range(50))
    saved = saved_state(tokens)
    cache[tokens] = saved
    got = cache[[*tokens, 99]]
    assert got.scores.shape == saved.scores.shape  # what Llama.load_state assigns into
    assert np.array_equal(got.scores[-1], saved.scores[-1])
    assert got.scores.base is not None and not got.scores.flags.writeable  # a view, no copy
    assert np.array_equal(got.input_ids, saved.input_ids)
    assert (got.n_tokens, got.llama_state, got.seed) == (50, saved.llama_state, 7)
    assert cache.hits == 1
    with pytest.raises(KeyError):
        cache[[1, 2, 3]]
    assert bool(PromptStateCache(1)) and [1] not in PromptStateCache(1)
    with pytest.raises(ValueError, match="capacity_bytes"):
        PromptStateCache(0)


def test_the_local_model_answers_as_with_llama_cpps_own_cache() -> None:
    """The same requests (two agents' prompts sharing a system prompt, one repeated, so states
    are restored) through the embedded model, first with this cache, then, on the same model
    reset to an empty context, with llama-cpp-python's ``LlamaRAMCache`` large enough to hold
    everything: the same answers, token for token. This cache restored states (hits), and what
    it holds stays within its capacity while llama-cpp-python's holds a logits buffer per
    state besides (4 bytes per prompt token and vocabulary entry: ≈ 20 MB for these prompts)."""
    from tests.test_llm_local import require_local_extra

    require_local_extra()
    import llama_cpp

    from friendsim.llm.local import create_local_llm

    system = "You are a member of a small online community. Answer in one short sentence. " * 4
    requests = [
        LLMRequest(
            system=system,
            messages=(user(f"Agent {who}: what do you think about {topic}?"),),
            max_tokens=12,
            temperature=0.7,
            seed=11,
            agent=who,
        )
        for who, topic in (
            ("a1", "gardening"),
            ("a2", "gardening"),
            ("a1", "cycling"),
            ("a1", "gardening"),
            ("a2", "the weather"),
        )
    ]

    async def answers(reset_to: object) -> list[str]:
        llm = create_local_llm("smollm2", n_threads=1)  # the same arithmetic both times
        try:
            llama = await llm._require_open().call(lambda m: m)
            assert isinstance(llama.cache, PromptStateCache)  # what LocalLLM loads it with

            def reset(m: object) -> None:
                m.reset()  # type: ignore[attr-defined]
                m.set_cache(reset_to)  # type: ignore[attr-defined]

            await llm._require_open().call(reset)
            assert llama.cache is reset_to
            return [(await llm.complete(r)).text for r in requests]
        finally:
            await llm.aclose()

    compact = PromptStateCache(256 << 20)
    ours = asyncio.run(answers(compact))
    stock = llama_cpp.LlamaRAMCache(capacity_bytes=1 << 40)
    theirs = asyncio.run(answers(stock))
    assert ours == theirs
    assert all(ours)
    assert compact.hits >= 2
    assert held_bytes(compact) <= compact.cache_size <= compact.capacity_bytes
    assert held_bytes(stock) > 5 * held_bytes(compact)  # ≈ 20 MB of logits per state there
