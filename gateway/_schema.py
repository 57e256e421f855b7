"""The body of `GET /api/v1/schema`: the row schema, and how the dashboard shows it.

`rows` and `totals` describe every figure (`mesh_common.figures.describe`); `kinds` the
figures of one kind of event, the detail panel's columns numbered; `thresholds` the warning
levels and `stale_seconds` the age past which figures on screen are stale, both read from
`mesh_common.thresholds` at each request (so the dashboard and the CLI show the same).
"""

from __future__ import annotations

from typing import Any

from mesh_common import thresholds
from mesh_common.figures import KIND_FIGURES, ROW_FIGURES, TOTAL_FIGURES, describe

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


def _kinds() -> list[dict[str, str | int | None]]:
    """The kind figures; the detail's columns get their position as `column` and `priority`."""
    described = describe(KIND_FIGURES)
    for entry in described:
        name = entry["name"]
        position = KIND_COLUMNS.index(name) + 1 if name in KIND_COLUMNS else None
        entry["column"] = entry["priority"] = position
    return described


def schema_body() -> dict[str, Any]:
    """The JSON body of `GET /api/v1/schema`."""
    return {
        "rows": describe(ROW_FIGURES),
        "totals": describe(TOTAL_FIGURES),
        "kinds": _kinds(),
        "thresholds": {
            name: {"warn": levels.warn, "bad": levels.bad}
            for name, levels in thresholds.WARNING_LEVELS.items()
        },
        "stale_seconds": thresholds.STALE_SECONDS,
    }
