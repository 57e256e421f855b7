"""`GET /api/v1/fleet/http_sd`: the aggregator's live targets, for Prometheus's http_sd_configs.

The answer is asked of the aggregator per request (Prometheus asks once per
`refresh_interval`): HTTP 200, `application/json`, a list of target groups, one per
service, its targets the agent addresses of its instances, its labels
`__meta_metricsmesh_service`, `_type`, `_data_source`, `_port` (the service's own port) and
`_source` (where the aggregator found it). `__meta_` labels are for relabelling and are
dropped after it, as Prometheus's own discovery's are; a mesh's http_sd source reads them
too, so a second aggregator can follow the first's fleet. When the aggregator cannot
answer: 503, and Prometheus keeps the last list it got.
"""

from __future__ import annotations

from typing import Any

import grpc
from fastapi import APIRouter
from fastapi.responses import JSONResponse
from metricsmesh.v1 import fleet_pb2

from gateway._errors import GatewayError
from gateway._fleet_status import get_fleet
from gateway._state import GatewayState

META = "__meta_metricsmesh_"
"""The prefix of the http_sd labels."""


def http_sd_groups(fleet: fleet_pb2.GetFleetResponse) -> list[dict[str, Any]]:
    """Prometheus http_sd target groups of the fleet: one per service (module docstring)."""
    return [
        {
            "targets": list(service.agent_addresses),
            "labels": {
                f"{META}service": service.service_name,
                f"{META}type": service.service_type,
                f"{META}data_source": service.data_source,
                f"{META}port": str(service.port),
                f"{META}source": service.source,
            },
        }
        for service in fleet.services
        if service.agent_addresses
    ]


def fleet_router(state: GatewayState) -> APIRouter:
    """`GET /api/v1/fleet/http_sd`: the live targets for Prometheus's http_sd_configs."""
    router = APIRouter(tags=["fleet"])

    @router.get(
        "/api/v1/fleet/http_sd",
        summary="The aggregator's live targets, as Prometheus http_sd target groups",
        responses={503: {"description": "The aggregator did not answer."}},
    )
    async def http_sd() -> JSONResponse:
        """One target group per service: its agents' addresses and `__meta_metricsmesh_*` labels.

        Point a Prometheus `http_sd_configs` entry at this URL to follow the mesh's fleet.
        """
        try:
            fleet = await get_fleet(state.alerts)
        except (GatewayError, grpc.aio.AioRpcError) as error:
            reason = error.details() if isinstance(error, grpc.aio.AioRpcError) else str(error)
            return JSONResponse(
                {"error": f"the aggregator at {state.settings.aggregator} did not answer: "
                 f"{reason}"},
                status_code=503,
            )  # fmt: skip
        return JSONResponse(http_sd_groups(fleet))

    return router
