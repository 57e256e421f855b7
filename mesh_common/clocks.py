"""The two clocks of the mesh, injectable so tests are exact and never sleep.

A `Clocks` pair is passed to every component that reads time: `monotonic` for every duration
and age (instants read from it are named `*_at`), `wall` for timestamps only (named `*_time`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

ReadClock = Callable[[], float]
"""A clock as a callable returning seconds."""


@dataclass(frozen=True, slots=True)
class Clocks:
    """The monotonic clock and the wall clock a component reads."""

    monotonic: ReadClock
    """Seconds from an arbitrary origin, never going back; for every duration and age."""
    wall: ReadClock
    """Epoch seconds; only for timestamps shown to people or put on the wire."""


SYSTEM_CLOCKS = Clocks(monotonic=time.monotonic, wall=time.time)
"""The real clocks: `time.monotonic` and `time.time`."""
