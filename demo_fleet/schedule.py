"""Periodic windows of misbehaviour: "every PERIOD seconds, for DURATION seconds, from START"."""

from __future__ import annotations

import argparse
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Schedule:
    """A repeating window: active during [start + k*period, start + k*period + duration)."""

    start: float
    period: float
    duration: float

    def __post_init__(self) -> None:
        if self.start < 0 or self.period <= 0 or self.duration <= 0:
            raise ValueError(
                f"schedule needs start >= 0, period > 0 and duration > 0, got {self.text()}"
            )
        if self.duration >= self.period:
            raise ValueError(
                f"schedule duration {self.duration:g} must be shorter than its period "
                f"{self.period:g}"
            )

    def active(self, elapsed: float) -> bool:
        """True when `elapsed` seconds after the process start fall inside a window."""
        if elapsed < self.start:
            return False
        return (elapsed - self.start) % self.period < self.duration

    def text(self) -> str:
        """The `START,PERIOD,DURATION` form that `parse` reads back."""
        return f"{self.start:g},{self.period:g},{self.duration:g}"

    @classmethod
    def parse(cls, text: str) -> Schedule:
        """Read `START,PERIOD,DURATION` (seconds); raise ValueError with the reason."""
        parts = text.split(",")
        if len(parts) != 3:
            raise ValueError(f"expected START,PERIOD,DURATION in seconds, got {text!r}")
        try:
            start, period, duration = (float(part) for part in parts)
        except ValueError:
            raise ValueError(f"expected numbers START,PERIOD,DURATION, got {text!r}") from None
        return cls(start, period, duration)


def schedule_arg(text: str) -> Schedule:
    """Parse a Schedule for argparse (`type=schedule_arg`)."""
    try:
        return Schedule.parse(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
