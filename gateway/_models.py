"""Pydantic models of the REST body, derived from the row schema: /docs shows them, tests use them.

The served body is built from the snapshot and serialized once per snapshot (see `_views.py`);
these models describe that body field for field, as story 23.2 defines it. Row fields and the
fleet's figures come from `mesh_common.figures`, so a new figure appears here by itself.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, create_model

from mesh_common.figures import INSTANCE_FIGURES, KIND_FIGURES, ROW_FIGURES, TOTAL_FIGURES, Figure
from mesh_common.status import ServiceStatus

_STORY_ROW_FIELDS = frozenset(
    {
        "service_name", "port", "service_type", "status", "events_per_second",
        "events_per_hour", "total_events", "uptime_seconds", "last_activity", "error_message",
    }
)  # fmt: skip
"""The row fields of story 23.2: always present; the additive ones have a default."""


def _field(figure: Figure, *, always: bool) -> tuple[Any, Any]:
    annotation: Any = ServiceStatus if figure.name == "status" else figure.json_type
    if figure.json_type is list:
        item: Any = _ITEM_MODELS[figure.name] if figure.items else str
        annotation = list[item]
    if figure.nullable:
        annotation = annotation | None
    if always:
        return annotation, Field(description=figure.description)
    return annotation, Field(default=None, description=figure.description)


_FORBID = ConfigDict(extra="forbid")

_KIND_FIELDS: dict[str, Any] = {figure.name: _field(figure, always=True) for figure in KIND_FIGURES}
KindMetrics: type[BaseModel] = create_model(
    "KindMetrics",
    __config__=_FORBID,
    __doc__="One kind of event of a service (the items of a row's `kinds`).",
    **_KIND_FIELDS,
)
_INSTANCE_FIELDS: dict[str, Any] = {
    figure.name: _field(figure, always=True) for figure in INSTANCE_FIGURES
}
InstanceMetrics: type[BaseModel] = create_model(
    "InstanceMetrics",
    __config__=_FORBID,
    __doc__="One instance of a service of several instances (the items of a row's `instances`).",
    **_INSTANCE_FIELDS,
)
_ITEM_MODELS = {"kinds": KindMetrics, "instances": InstanceMetrics}
"""The model of each list-of-objects row figure's items."""

_ROW_FIELDS: dict[str, Any] = {
    figure.name: _field(figure, always=figure.name in _STORY_ROW_FIELDS) for figure in ROW_FIGURES
}
ServiceMetrics: type[BaseModel] = create_model(
    "ServiceMetrics",
    __config__=_FORBID,
    __doc__="One service's row (story 23.2's `active_apis` entries).",
    **_ROW_FIELDS,
)

_TOTALS = {figure.name: figure for figure in TOTAL_FIGURES}


class RealTimeMetrics(BaseModel):
    """The body of GET /api/v1/real-time-metrics (HTTP 200)."""

    model_config = _FORBID

    events_per_second: float = Field(description=_TOTALS["events_per_second"].description)
    events_per_hour: float = Field(description=_TOTALS["events_per_hour"].description)
    active_apis: list[ServiceMetrics] = Field(  # type: ignore[valid-type]
        description="Rows of the active services only."
    )
    inactive_apis: int = Field(description=_TOTALS["inactive_apis"].description)
    data_sources_active: list[str] = Field(description=_TOTALS["data_sources_active"].description)
    timestamp: str = Field(description="ISO 8601 UTC time the snapshot's round started.")
    collection_time_ms: int = Field(description=_TOTALS["collection_time_ms"].description)
    inactive_services: list[ServiceMetrics] = Field(  # type: ignore[valid-type]
        description="Rows of the inactive and error services (additive)."
    )
    total_events: int = Field(description=_TOTALS["total_events"].description)
    sequence: int = Field(description="The snapshot's sequence number (additive).")
    services_answered: int = Field(description=_TOTALS["services_answered"].description)
    services_total: int = Field(description=_TOTALS["services_total"].description)
    error_rate: float | None = Field(description=_TOTALS["error_rate"].description)
    latency_p50_ms: float | None = Field(description=_TOTALS["latency_p50_ms"].description)
    latency_p95_ms: float | None = Field(description=_TOTALS["latency_p95_ms"].description)
    latency_p99_ms: float | None = Field(description=_TOTALS["latency_p99_ms"].description)
    snapshot_age_ms: int = Field(description="Age of the snapshot when served, in ms (additive).")


class RealTimeMetricsError(BaseModel):
    """The body of GET /api/v1/real-time-metrics when no fresh snapshot exists (HTTP 503)."""

    model_config = _FORBID

    events_per_second: float = Field(description="Always 0.")
    events_per_hour: float = Field(description="Always 0.")
    active_apis: list[ServiceMetrics] = Field(  # type: ignore[valid-type]
        description="Always empty."
    )
    inactive_apis: int = Field(description="Number of configured services.")
    data_sources_active: list[str] = Field(description="Always empty.")
    timestamp: str = Field(description="ISO 8601 UTC time of this answer.")
    error: str = Field(description="What went wrong and what to check.")
    collection_time_ms: int = Field(description="Time spent producing this answer, in ms.")
    sequence: int | None = Field(
        default=None, description="Sequence of the last snapshot seen, if any (additive)."
    )
    snapshot_age_ms: int | None = Field(
        default=None, description="Age of the last snapshot seen, if any (additive)."
    )
