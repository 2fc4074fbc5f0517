"""Seeding numpy's generators from a run's seed, which may be any integer.

``numpy.random.default_rng`` takes only non-negative integers; a config's ``seed`` may be
negative (Python's :class:`random.Random` takes any). :func:`numpy_entropy` is the entropy a
generator is seeded with: exactly ``[seed, *salt]`` for a seed >= 0 (the streams every run so
far drew), and for a negative seed ``[-seed, *salt, 1]``, a longer list, so it never draws the
stream of a non-negative seed.
"""

from __future__ import annotations


def numpy_entropy(seed: int, *salt: int) -> list[int] | int:
    """The entropy for ``numpy.random.default_rng`` from ``seed`` (and ``salt``): see the module
    docstring. With no salt and ``seed >= 0`` it is ``seed`` itself."""
    if seed >= 0:
        return [seed, *salt] if salt else seed
    return [-seed, *salt, 1]
