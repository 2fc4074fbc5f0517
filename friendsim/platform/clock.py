"""The virtual simulation clock. Model code reads time only from here, never from the wall."""

from __future__ import annotations

import math


class VirtualClock:
    """Seconds on the simulation's virtual time line; monotone (it never goes backwards)."""

    __slots__ = ("_now",)

    def __init__(self, start: float = 0.0) -> None:
        if not math.isfinite(start):
            raise ValueError(f"clock start must be finite, got {start!r}")
        self._now = float(start)

    def now(self) -> float:
        return self._now

    def advance_to(self, t: float) -> None:
        """Move to ``t``. Raises ``ValueError`` if ``t`` is earlier than now or not finite."""
        if not math.isfinite(t):
            raise ValueError(f"clock time must be finite, got {t!r}")
        if t < self._now:
            raise ValueError(f"virtual clock cannot go backwards: now={self._now}, asked {t}")
        self._now = float(t)

    def advance(self, dt: float) -> None:
        """Move forward by ``dt >= 0`` seconds."""
        if dt < 0:
            raise ValueError(f"clock step must be >= 0, got {dt}")
        self.advance_to(self._now + dt)

    def __repr__(self) -> str:
        return f"VirtualClock(now={self._now})"
