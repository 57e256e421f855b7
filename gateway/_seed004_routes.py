"""Seed 004's metrics-service endpoints, over the aggregator's snapshot and ingestion path.

POST /metrics/events           one event (`gateway._ingest_forms.EventForm`) -> Ingest
GET  /metrics/summary          the fleet at a glance (`Summary`), from the latest snapshot
GET  /metrics/dashboard        the consolidated body: GET /api/v1/real-time-metrics's, byte for byte
GET  /metrics/services/health  every service's health in one call (`ServicesHealth`)
GET  /metrics/prometheus       the /metrics page (`gateway._prometheus`)

An event counts for a pushed service: the one its `service_name` names, else the aggregator's
`[ingest] default_service` ("metrics-service"); that row then shows its rate, total and last
activity like an agent's, active while it pushes within its staleness window. The read
endpoints answer from the gateway's latest snapshot (no call per request) and, when there is
no fresh one, 503 with story 23.2's error shape. `Authorization: Bearer` is accepted as on
seed 003's ingest (checked only when the gateway has an `admin_token`); the REST rate limit
covers `/metrics/...` as it covers `/api/...`.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from metricsmesh.v1 import ingest_pb2, snapshot_pb2
from pydantic import BaseModel, Field, ValidationError

from gateway._alert_routes import _body, authorize, read_json
from gateway._errors import AlertRequestError, IngestCallError
from gateway._ingest_calls import call_ingest
from gateway._ingest_forms import EventAnswer, EventForm, IngestError, event_message
from gateway._ingest_routes import _client, _reason
from gateway._limits import PUSH_BODY_BYTES
from gateway._models import RealTimeMetrics, RealTimeMetricsError
from gateway._params import FieldsParam, ServicesParam, TypesParam
from gateway._rest import consolidated
from gateway._state import GatewayState
from gateway._views import SnapshotEntry, json_bytes
from mesh_common.errors import ParamError
from mesh_common.views import WHOLE
from mesh_common.wire_time import iso_utc

JSON = "application/json"
TOP_SERVICES = 5
"""How many services `top_services` lists."""
SEED_EVENT = {"event_type": "user_login", "user_id": 1, "metadata": {"browser": "chrome"}}
_HEALTH = {
    snapshot_pb2.AGENT_HEALTH_SERVING: "serving",
    snapshot_pb2.AGENT_HEALTH_NOT_SERVING: "not_serving",
}
_SUMMARY_TOTALS = (
    "events_per_second", "events_per_hour", "total_events", "error_rate", "latency_p99_ms"
)  # fmt: skip
_STALE: dict[int | str, dict[str, Any]] = {
    503: {"model": RealTimeMetricsError, "description": "No fresh snapshot."}
}


class ServiceCounts(BaseModel):
    """How many services there are, by status and by where their figures come from."""

    total: int
    active: int
    inactive: int
    error: int
    pushed: int = Field(description="Rows whose figures are pushed (events, OTLP).")
    polled: int = Field(description="Rows whose agent the aggregator calls.")


class TopService(BaseModel):
    """One of the busiest services."""

    service_name: str
    service_type: str
    status: str
    events_per_second: float | None
    total_events: int | None
    error_rate: float | None


class Summary(BaseModel):
    """GET /metrics/summary: the fleet's figures, its services by status, the busiest ones."""

    timestamp: str = Field(description="ISO 8601 UTC time the snapshot's round started.")
    sequence: int
    snapshot_age_ms: int
    services: ServiceCounts
    events_per_second: float
    events_per_hour: float
    total_events: int = Field(description="Since-start events of the active services.")
    error_rate: float | None
    latency_p99_ms: float | None
    top_services: list[TopService] = Field(
        description=f"The {TOP_SERVICES} active services with the most events per second."
    )
    alerts_firing: int | None = Field(description="Firing alerts; null while unknown.")


class ServiceHealth(BaseModel):
    """One service's health."""

    service_name: str
    service_type: str
    status: str = Field(description="active, inactive or error.")
    health: str = Field(description="serving, not_serving or unknown (the agent's own word).")
    error_message: str | None
    last_seen: str | None = Field(description="ISO 8601 UTC time of its last figures.")
    seconds_since_seen: float | None
    source: str = Field(description="pushed (events, OTLP) or polled (an agent).")


class ServicesHealth(BaseModel):
    """GET /metrics/services/health: every service, unhealthy ones first."""

    timestamp: str
    sequence: int
    healthy: int = Field(description="Services active now.")
    unhealthy: int
    services: list[ServiceHealth]


def seed_004_router(state: GatewayState) -> APIRouter:
    """Seed 004's endpoints."""
    router = APIRouter(prefix="/metrics", tags=["seed 004"])
    for add_routes in (_events_route, _summary_route, _dashboard_route, _health_route):
        add_routes(router, state)
    return router


def _events_route(router: APIRouter, state: GatewayState) -> None:
    @router.post(
        "/events",
        status_code=201,
        response_model=EventAnswer,
        responses={
            status: {"model": IngestError, "description": text}
            for status, text in (
                (401, "The gateway has an admin_token; this is not it."),
                (413, f"The body is over {PUSH_BODY_BYTES} bytes."),
                (
                    422,
                    "The body is not an event, or the aggregator refused it (the reason "
                    "names the limit: a service or kind name too long, too many services...).",
                ),
                (503, "The aggregator is unreachable or ingests nothing."),
            )
        },
        summary="Record an event (seed 004's body): counts for a pushed service",
        openapi_extra=_body(
            EventForm.model_json_schema(), {"seed 004": {"value": SEED_EVENT}}, required=True
        ),
    )
    async def record_event(request: Request) -> Response:
        """Count one event of kind `event_type` for `service_name` (default metrics-service)."""
        try:
            metadata = authorize(state, request)
            body = await read_json(request, required=True, limit=PUSH_BODY_BYTES)
            try:
                form = EventForm.model_validate(body)
                message = event_message(form)
            except ValidationError as error:
                raise AlertRequestError(422, _reason(error), field="body") from None
            except ParamError as error:
                raise AlertRequestError(422, str(error), field=error.param) from None
            call = ingest_pb2.IngestRequest(events=[message], client=_client(request))
            response = await call_ingest(state, "Ingest", call, metadata)
        except AlertRequestError as error:
            headers = {"WWW-Authenticate": error.challenge} if error.challenge else None
            body = {"detail": error.detail, "field": error.field}
            return JSONResponse(body, error.status, headers=headers)
        except IngestCallError as error:
            return JSONResponse({"detail": error.detail, "field": None}, error.status)
        if response.rejected:
            refusal = response.rejected[0]
            detail = refusal.reason + (f" ({refusal.limit})" if refusal.limit else "")
            return JSONResponse({"detail": detail, "field": "event", "limit": refusal.limit}, 422)
        answer = {
            "accepted": response.accepted,
            "service_name": form.service_name,
            "event_type": form.event_type,
            "count": form.count,
        }
        return Response(json_bytes(answer), 201, media_type=JSON)


def _fresh_or_503(state: GatewayState, started_at: float) -> SnapshotEntry | Response:
    entry = state.fresh()
    if entry is None:
        return Response(state.error_body(started_at), 503, media_type=JSON)
    return entry


def _summary_route(router: APIRouter, state: GatewayState) -> None:
    @router.get(
        "/summary",
        response_model=Summary,
        responses=_STALE,
        summary="The fleet at a glance (seed 004's summary)",
    )
    async def summary() -> Response:
        """Totals, services by status and source, the busiest services, firing alerts."""
        now = state.clocks.monotonic()
        entry = _fresh_or_503(state, now)
        if isinstance(entry, Response):
            return entry
        return Response(json_bytes(_summary(state, entry, now)), media_type=JSON)


def _summary(state: GatewayState, entry: SnapshotEntry, now: float) -> dict[str, Any]:
    rows = entry.rows
    totals = entry.totals(WHOLE)
    counts = {status: 0 for status in ("active", "inactive", "error")}
    pushed = 0
    for row in rows:
        counts[row.status] = counts.get(row.status, 0) + 1
        pushed += row.message.pushed
    busiest = sorted(
        (row for row in rows if row.active),
        key=lambda row: (-(row.raw["events_per_second"] or 0.0), row.service_name),
    )[:TOP_SERVICES]
    top = [{key: row.json[key] for key in TopService.model_fields} for row in busiest]
    alerts = state.alerts
    return {
        "timestamp": iso_utc(entry.take_time),
        "sequence": entry.sequence,
        "snapshot_age_ms": entry.age_ms(now),
        "services": {"total": len(rows), **counts, "pushed": pushed, "polled": len(rows) - pushed},
        **{key: totals[key] for key in _SUMMARY_TOTALS},
        "top_services": top,
        "alerts_firing": sum(1 for alert in alerts.current() if alert.firing)
        if alerts.synced
        else None,
    }


def _dashboard_route(router: APIRouter, state: GatewayState) -> None:
    @router.get(
        "/dashboard",
        response_model=RealTimeMetrics,
        responses=_STALE,
        summary="The consolidated body (the same as GET /api/v1/real-time-metrics)",
    )
    async def dashboard(
        services: ServicesParam = None,
        types: TypesParam = None,
        fields: FieldsParam = None,
    ) -> Response:
        """GET /api/v1/real-time-metrics's body, with the same parameters and errors."""
        return consolidated(state, services, types, fields)


def _health_route(router: APIRouter, state: GatewayState) -> None:
    @router.get(
        "/services/health",
        response_model=ServicesHealth,
        responses=_STALE,
        summary="Every service's health in one call",
    )
    async def services_health() -> Response:
        """Each service's status, health, error, last seen and source; unhealthy first."""
        now = state.clocks.monotonic()
        entry = _fresh_or_503(state, now)
        if isinstance(entry, Response):
            return entry
        services = [
            {
                "service_name": row.service_name,
                "service_type": row.service_type,
                "status": row.status,
                "health": _HEALTH.get(row.message.health, "unknown"),
                "error_message": row.json["error_message"],
                "last_seen": row.json["last_seen"],
                "seconds_since_seen": row.json["seconds_since_seen"],
                "source": "pushed" if row.message.pushed else "polled",
            }
            for row in sorted(entry.rows, key=lambda row: (row.active, row.service_name))
        ]
        healthy = sum(1 for row in entry.rows if row.active)
        body = {
            "timestamp": iso_utc(entry.take_time),
            "sequence": entry.sequence,
            "healthy": healthy,
            "unhealthy": len(services) - healthy,
            "services": services,
        }
        return Response(json_bytes(body), media_type=JSON)
