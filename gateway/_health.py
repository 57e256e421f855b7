"""Health endpoints: /health and /health/live (the process), /health/ready, /health/detailed."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from gateway._state import GatewayState
from mesh_common.views import SNAPSHOT_AGE_FIELD
from mesh_common.wire_time import iso_utc


def health_router(state: GatewayState) -> APIRouter:
    """Liveness answers for the process alone; readiness needs a fresh snapshot."""
    router = APIRouter(tags=["health"])
    hub = state.hub

    @router.get("/health", summary="The gateway process is up")
    async def health() -> dict[str, str]:
        """Always `ok` while the process serves HTTP."""
        return {"status": "ok"}

    @router.get("/health/live", summary="Liveness probe")
    async def live() -> dict[str, str]:
        """Always `ok` while the process serves HTTP (the aggregator is not consulted)."""
        return {"status": "ok"}

    @router.get(
        "/health/ready",
        summary="Readiness probe",
        responses={503: {"description": "No fresh snapshot: not ready."}},
    )
    async def ready() -> JSONResponse:
        """200 when the subscription is connected and the latest snapshot is fresh, else 503."""
        entry = state.fresh()
        if entry is None or hub.state != "connected":
            reason = state.problem() if entry is None else (hub.error or str(hub.state))
            return JSONResponse({"status": "not ready", "reason": reason}, 503)
        return JSONResponse(
            {"status": "ready", "sequence": entry.sequence, SNAPSHOT_AGE_FIELD: _age_ms(state)}
        )

    @router.get("/health/detailed", summary="Everything the gateway knows about its health")
    async def detailed() -> JSONResponse:
        """Upstream state, the snapshot's freshness and rows' status, clients, the history.

        The history says "history degraded: <reason>" when the aggregator cannot write it;
        the fleet says why a source of the registry (the mesh file, file_sd, http_sd) could
        not be read, its last good services kept.

        Always 200 (the body says `ok` or `degraded`); /health/ready is the probe that fails.
        """
        return JSONResponse(detailed_health(state))

    return router


def detailed_health(state: GatewayState) -> dict[str, Any]:
    """The body of /health/detailed."""
    hub, settings = state.hub, state.settings
    entry = hub.latest
    fresh = state.fresh() is not None
    history = state.history
    fleet = state.fleet.health()
    healthy = (
        fresh
        and hub.state == "connected"
        and history.state != "degraded"
        and fleet["state"] != "degraded"
    )
    body: dict[str, Any] = {
        "status": "ok" if healthy else "degraded",
        "timestamp": iso_utc(state.clocks.wall()),
        "uptime_seconds": round(state.uptime(), 3),
        "upstream": {
            "target": hub.target,
            "state": str(hub.state),
            "state_seconds": round(state.clocks.monotonic() - hub.state_since, 3),
            "error": hub.error,
            "connects": hub.connects,
            "failed_attempts": hub.failed_attempts,
            "snapshots_received": hub.snapshots_received,
        },
        "alerts": _alerts(state),
        "history": _history(state),
        "fleet": fleet,
        "snapshot": None,
        "stale_after_seconds": settings.stale_after_seconds,
        "clients": {
            "sse": state.stats.sse_clients,
            "websocket": state.stats.ws_clients,
        },
    }
    if entry is not None:
        snap = entry.snapshot
        body["snapshot"] = {
            "sequence": entry.sequence,
            "timestamp": iso_utc(entry.take_time),
            "age_ms": _age_ms(state),
            "fresh": fresh,
            "services_answered": snap.services_answered,
            "services_total": snap.services_total,
            "services": {row.service_name: row.status for row in entry.rows},
        }
    return body


def _alerts(state: GatewayState) -> dict[str, Any]:
    """The alert subscription's state and the current counts."""
    alerts = state.alerts
    current = alerts.current()
    return {
        "state": str(alerts.state),
        "error": alerts.error,
        "connects": alerts.connects,
        "sequence": alerts.sequence,
        "firing": sum(entry.firing for entry in current),
        "pending": sum(not entry.firing for entry in current),
    }


def _history(state: GatewayState) -> dict[str, Any]:
    """The aggregator's history status as last polled: "history degraded: <reason>" when so."""
    poller = state.history
    status = poller.status
    return {
        "state": poller.state,
        "message": poller.message(),
        "degraded_reason": status.degraded_reason if status is not None else None,
        "rounds_written": status.rounds_written if status is not None else None,
        "dropped_rounds": status.dropped_rounds if status is not None else None,
    }


def _age_ms(state: GatewayState) -> int | None:
    entry = state.hub.latest
    return None if entry is None else entry.age_ms(state.clocks.monotonic())
