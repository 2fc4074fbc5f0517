"""A mapping over a known set of keys whose values are made on first use.

A run keeps one policy and one observation context per agent. Made for all agents at set-up,
they cost the set-up time of every agent, and the memory of every agent that never wakes (a
quarter of a large population in a one-hour continuous run); made on an agent's first wake,
only those that act pay, and the run's first requests go out sooner. Each value depends on its
key alone (per-agent seeds, no shared generator), so when it is made does not change what it
is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, MutableMapping
from typing import Generic, TypeVar

V = TypeVar("V")


class OnDemand(MutableMapping[str, V], Generic[V]):
    """``make(key)`` for every key of ``keys``, made on first access and kept; keys set later
    (a joining agent) hold the value given. Iteration, ``len`` and ``in`` see every key, made
    or not; a key outside them is a ``KeyError`` like any mapping's."""

    def __init__(self, keys: Iterable[str], make: Callable[[str], V]) -> None:
        self._keys: dict[str, None] = dict.fromkeys(keys)
        self._made: dict[str, V] = {}
        self._make = make

    def __getitem__(self, key: str) -> V:
        try:
            return self._made[key]
        except KeyError:
            if key not in self._keys:
                raise
        value = self._made[key] = self._make(key)
        return value

    def __setitem__(self, key: str, value: V) -> None:
        self._keys[key] = None
        self._made[key] = value

    def __delitem__(self, key: str) -> None:
        del self._keys[key]
        self._made.pop(key, None)

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    @property
    def made(self) -> int:
        """How many values were made or set so far."""
        return len(self._made)
