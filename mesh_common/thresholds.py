"""Where a figure turns worrying on screen: warning levels, and when figures are stale.

Defined once for every screen: the CLI tables (`metricsmesh_cli.render`) read them here, the
dashboard from `GET /api/v1/schema` (its `thresholds` and `stale_seconds`), which serves
these values as they are when it is asked.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

Level = Literal["", "warn", "bad"]
"""How worrying a value is: `""` fine, `"warn"` worth a look, `"bad"` a problem."""


@dataclass(frozen=True, slots=True)
class Levels:
    """The values from which a figure is `warn` and `bad` (each bound included)."""

    warn: float
    bad: float

    def of(self, value: float) -> Level:
        """The level of `value`: `bad` from `bad` up, `warn` from `warn` up, else `""`."""
        return "bad" if value >= self.bad else "warn" if value >= self.warn else ""


WARNING_LEVELS: Mapping[str, Levels] = {
    "error_rate": Levels(warn=0.01, bad=0.05),
    "latency_p95_ms": Levels(warn=500.0, bad=2000.0),
    "latency_p99_ms": Levels(warn=1000.0, bad=2000.0),
}
"""The levels of the figures an operator watches first, by figure name (a row's, a kind's or
the fleet's figure of that name); a figure not named here is never coloured."""

STALE_SECONDS = 10.0
"""Figures on screen older than this (the snapshot's age plus the time since it arrived) are
called stale: the dashboard's banner says so."""


def level(name: str, value: float | None) -> Level:
    """The level of figure `name` at `value`; `""` for an unknown value or an uncoloured figure."""
    levels = WARNING_LEVELS.get(name)
    if levels is None or value is None:
        return ""
    return levels.of(value)
