"""Building frozen slotted dataclasses without their ``__init__``, for the hottest few.

A frozen dataclass's generated ``__init__`` sets each field through ``object.__setattr__`` (the
class's own ``__setattr__`` refuses), about 0.25 µs a field; the slot's own descriptor sets it
in a fraction of that. Used where a run makes hundreds of thousands of one value (a round's
votes): :func:`setters` returns the descriptors' setters, the caller makes the object with
``object.__new__`` and sets every field. Each use has a test that its fields are all set and
the object equals the one the dataclass builds.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def setters(cls: type, *names: str) -> tuple[Callable[[Any, Any], None], ...]:
    """The slot setters of ``names`` on ``cls`` (found along its MRO), in order."""
    out = []
    for name in names:
        for klass in cls.__mro__:
            slot = klass.__dict__.get(name)
            if slot is not None and hasattr(slot, "__set__"):
                out.append(slot.__set__)
                break
        else:
            raise AttributeError(f"{cls.__name__} has no slot {name!r}")
    return tuple(out)
