"""The body of `GET /api/v1/schema`: the row schema, and how the dashboard shows it.

`rows` and `totals` describe every figure (`mesh_common.figures.describe`); `kinds` the
figures of one kind of event and `instances` those of one instance of a service of several,
the detail panel's columns numbered; `thresholds` the warning
levels and `stale_seconds` the age past which figures on screen are stale, both read from
`mesh_common.thresholds` at each request (so the dashboard and the CLI show the same).
"""

from __future__ import annotations

from typing import Any

from mesh_common import thresholds
from mesh_common.figures import (
    INSTANCE_FIGURES,
    KIND_FIGURES,
    ROW_FIGURES,
    TOTAL_FIGURES,
    Figure,
    describe,
)

KIND_COLUMNS = (
    "kind",
    "events_per_second",
    "error_rate",
    "latency_p50_ms",
    "latency_p95_ms",
    "latency_p99_ms",
    "total_events",
)
"""The kind figures the dashboard's detail panel shows as columns, from left to right."""
INSTANCE_COLUMNS = (
    "address",
    "status",
    "events_per_second",
    "error_rate",
    "latency_p95_ms",
    "total_events",
    "uptime_seconds",
    "seconds_since_seen",
)
"""The instance figures the detail panel shows as columns, from left to right."""


def _numbered(figures: tuple[Figure, ...], shown: tuple[str, ...]) -> list[dict[str, Any]]:
    """The figures; the detail's columns get their position as `column` and `priority`."""
    described = describe(figures)
    for entry in described:
        name = entry["name"]
        position = shown.index(name) + 1 if name in shown else None
        entry["column"] = entry["priority"] = position
    return described


def schema_body() -> dict[str, Any]:
    """The JSON body of `GET /api/v1/schema`."""
    return {
        "rows": describe(ROW_FIGURES),
        "totals": describe(TOTAL_FIGURES),
        "kinds": _numbered(KIND_FIGURES, KIND_COLUMNS),
        "instances": _numbered(INSTANCE_FIGURES, INSTANCE_COLUMNS),
        "thresholds": {
            name: {"warn": levels.warn, "bad": levels.bad}
            for name, levels in thresholds.WARNING_LEVELS.items()
        },
        "stale_seconds": thresholds.STALE_SECONDS,
    }
