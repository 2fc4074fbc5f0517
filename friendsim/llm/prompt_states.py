"""A RAM cache of evaluated prompt states for the local model that keeps to its capacity.

llama-cpp-python's ``LlamaRAMCache`` counts only the llama.cpp part of each saved state (the KV
cells), but every ``LlamaState`` it keeps also holds a copy of the Python-side logits buffer:
one float32 row per prompt token and vocabulary entry (59 MB for a 300-token prompt of
SmolLM2's 49,152-entry vocabulary; 1 MiB per token for Gemma 3's 262,144). So a 256 MB cache
held several gigabytes: the quickstart peaked at 2.3 GB of RSS, and a long run on a model with a
large vocabulary could run the machine out of memory.

:class:`PromptStateCache` is the same cache (a state is found by the longest token prefix it
shares with the prompt; least recently used first out) but keeps each state's logits as its last
row only, given back as a read-only view broadcast to the saved shape, and counts every byte it
keeps against its capacity. That loses nothing for a model loaded with ``logits_all`` off, as
:class:`~friendsim.llm.local.LocalLLM` loads it: llama.cpp then samples inside its own sampler,
``Llama.eval`` writes no logits rows at all, and ``Llama.load_state`` copies whatever the state
holds into the model's buffer, where only the last row could ever be read (by a logits
processor; logprobs need ``logits_all``). Restoring a state therefore gives the same context,
and the same answers, as llama-cpp-python's own cache (``tests/test_local_prompt_states.py``).

The class is duck-typed to what ``Llama`` uses of a cache (``cache[tokens]``, ``tokens in cache``,
``cache[tokens] = state``), so this module imports neither llama-cpp-python nor anything heavy.
"""

from __future__ import annotations

import sys
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np


class _Compact:
    """One saved state with its logits cut to their last row: what ``Llama.load_state`` reads
    (``scores``, ``input_ids``, ``n_tokens``, ``llama_state``, ``llama_state_size``, ``seed``)."""

    __slots__ = (
        "_last",
        "_shape",
        "input_ids",
        "llama_state",
        "llama_state_size",
        "n_tokens",
        "seed",
    )

    def __init__(self, state: Any) -> None:
        scores = np.asarray(state.scores)
        self._shape: tuple[int, ...] = scores.shape
        self._last = scores[-1].copy() if scores.shape[0] else scores.copy()
        self.input_ids = state.input_ids
        self.n_tokens = state.n_tokens
        self.llama_state = state.llama_state
        self.llama_state_size = state.llama_state_size
        self.seed = state.seed

    @property
    def scores(self) -> np.ndarray:
        """The saved logits' shape, every row the last one (a read-only view: no copy)."""
        if not self._shape[0]:
            return self._last
        return np.broadcast_to(self._last, self._shape)

    @property
    def nbytes(self) -> int:
        """The bytes this state keeps (its llama.cpp state, token ids and one logits row)."""
        return len(self.llama_state) + int(self.input_ids.nbytes) + int(self._last.nbytes)


class PromptStateCache:
    """Evaluated prompt states of one llama.cpp model, at most ``capacity_bytes`` of them in
    all (each counted in full: :attr:`_Compact.nbytes` and its key), least recently used first
    out; a lookup returns the state sharing the longest token prefix with the prompt."""

    def __init__(self, capacity_bytes: int) -> None:
        if capacity_bytes <= 0:
            raise ValueError(f"capacity_bytes must be positive, got {capacity_bytes}")
        self.capacity_bytes = capacity_bytes
        self._states: OrderedDict[tuple[int, ...], _Compact] = OrderedDict()
        self._sizes: dict[tuple[int, ...], int] = {}
        self.cache_size = 0
        """Bytes held now (never above ``capacity_bytes`` once an insertion returns)."""
        self.hits = 0
        """Lookups that found a state (for tests and stats)."""

    def _longest(self, key: tuple[int, ...]) -> tuple[int, ...] | None:
        best, best_len = None, 0
        for k in self._states:
            n = _common_prefix(k, key)
            if n > best_len:
                best, best_len = k, n
        return best

    def __getitem__(self, key: Sequence[int]) -> _Compact:
        found = self._longest(tuple(key))
        if found is None:
            raise KeyError("no cached state shares a prefix with the prompt")
        self._states.move_to_end(found)
        self.hits += 1
        return self._states[found]

    def __contains__(self, key: Sequence[int]) -> bool:
        return self._longest(tuple(key)) is not None

    def __setitem__(self, key: Sequence[int], state: Any) -> None:
        k = tuple(key)
        if k in self._states:
            del self._states[k]
            self.cache_size -= self._sizes.pop(k)
        compact = _Compact(state)
        size = compact.nbytes + sys.getsizeof(k) + 32 * len(k)
        self._states[k] = compact
        self._sizes[k] = size
        self.cache_size += size
        while self.cache_size > self.capacity_bytes and self._states:
            old, _ = self._states.popitem(last=False)
            self.cache_size -= self._sizes.pop(old)

    def __len__(self) -> int:
        return len(self._states)

    def __bool__(self) -> bool:
        """Always true: ``Llama`` uses its cache only ``if self.cache``, even an empty one."""
        return True


def _common_prefix(a: tuple[int, ...], b: tuple[int, ...]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n
