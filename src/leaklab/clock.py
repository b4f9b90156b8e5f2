"""A clock you move by hand, for showing and testing expiry without waiting.

Chapters 01 and 02 pass it as ``clock=`` to ``LRUCache`` and ``memoize`` so that "30 seconds
later" is one line (``clock.advance(30)``) instead of a 30-second sleep; the tests use it the same
way. Any zero-argument callable returning seconds works where leaklab takes a ``clock``.
"""

from __future__ import annotations

import math

__all__ = ["FakeClock"]


class FakeClock:
    """A monotonic clock that only moves when told to.

    >>> clock = FakeClock()
    >>> clock(), clock.advance(30), clock()
    (0.0, 30.0, 30.0)
    """

    def __init__(self, now: float = 0.0) -> None:
        self.now = self._seconds("now", now)

    @staticmethod
    def _seconds(name: str, value: object) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{name} must be a number of seconds, got {value!r}")
        if not math.isfinite(value):
            raise ValueError(f"{name} must be finite, got {value!r}")
        return float(value)

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        """Move the clock forward by ``seconds`` (>= 0) and return the new time."""
        seconds = self._seconds("seconds", seconds)
        if seconds < 0:
            raise ValueError(f"seconds must be >= 0 (a clock does not run backwards), got {seconds!r}")
        self.now += seconds
        return self.now

    def __repr__(self) -> str:
        return f"FakeClock(now={self.now!r})"
