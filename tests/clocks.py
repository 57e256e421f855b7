"""A clock that only moves when a test says so (`EventTracker(clock=)`, `Clocks(monotonic=)`)."""

from __future__ import annotations


class FakeClock:
    """A clock that only moves when told to: `clock()` reads it, `tick(s)` advances it."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def tick(self, seconds: float) -> None:
        self.now += seconds
