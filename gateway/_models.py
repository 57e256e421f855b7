"""Pydantic models of the REST body: they document the shape in /docs and validate it in tests.

The served body is built from the snapshot and serialized once per snapshot (see `_views.py`);
these models describe that body field for field, as story 23.2 defines it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Status = Literal["active", "inactive", "error"]


class ServiceMetrics(BaseModel):
    """One service's row (story 23.2's `active_apis` entries)."""

    model_config = ConfigDict(extra="forbid")

    service_name: str = Field(description="The service's name in the registry.")
    port: int = Field(description="The service's own HTTP port from the registry.")
    service_type: str = Field(description="Registry category: core, data, analysis, ai, ...")
    status: Status = Field(description="active, inactive (unreachable/NOT_SERVING) or error.")
    events_per_second: float = Field(description="Events/s over the agent's 1-minute window.")
    events_per_hour: float = Field(description="events_per_second x 3600.")
    total_events: int = Field(description="Events counted since the agent started.")
    uptime_seconds: float = Field(description="The agent's uptime in seconds.")
    last_activity: str | None = Field(
        description="ISO 8601 UTC time of the service's last event; null if it never had one."
    )
    error_message: str | None = Field(description="Why the row is not active; null when it is.")
    data_source: str | None = Field(
        default=None, description="External data source of a data service (additive)."
    )
    call_latency_ms: float | None = Field(
        default=None, description="How long this round's call to the agent took (additive)."
    )


class RealTimeMetrics(BaseModel):
    """The body of GET /api/v1/real-time-metrics (HTTP 200)."""

    model_config = ConfigDict(extra="forbid")

    events_per_second: float = Field(description="Sum of events/s over active services.")
    events_per_hour: float = Field(description="Sum of events/h over active services.")
    active_apis: list[ServiceMetrics] = Field(description="Rows of the active services only.")
    inactive_apis: int = Field(description="How many services are inactive or in error.")
    data_sources_active: list[str] = Field(description="Data sources of active data services.")
    timestamp: str = Field(description="ISO 8601 UTC time the snapshot's round started.")
    collection_time_ms: int = Field(description="How long the snapshot's round took, in ms.")
    inactive_services: list[ServiceMetrics] = Field(
        description="Rows of the inactive and error services (additive)."
    )
    total_events: int = Field(description="Sum of total_events over active services (additive).")
    sequence: int = Field(description="The snapshot's sequence number (additive).")
    services_answered: int = Field(description="Services that answered this round (additive).")
    services_total: int = Field(description="Configured services (additive).")
    snapshot_age_ms: int = Field(description="Age of the snapshot when served, in ms (additive).")


class RealTimeMetricsError(BaseModel):
    """The body of GET /api/v1/real-time-metrics when no fresh snapshot exists (HTTP 503)."""

    model_config = ConfigDict(extra="forbid")

    events_per_second: float = Field(description="Always 0.")
    events_per_hour: float = Field(description="Always 0.")
    active_apis: list[ServiceMetrics] = Field(description="Always empty.")
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
