"""GET /api/v1/real-time-metrics: the cached snapshot body, or story 23.2's error shape (503)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException
from fastapi.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway._models import RealTimeMetrics, RealTimeMetricsError
from gateway._params import FieldsParam, ServicesParam, TypesParam
from gateway._state import GatewayState
from gateway._views import view_of_query
from mesh_common.errors import FilterError
from mesh_common.views import WHOLE

PATH = "/api/v1/real-time-metrics"
JSON = "application/json"


def rest_router(state: GatewayState) -> APIRouter:
    """The REST endpoint, reading the hub's latest snapshot (never calling the aggregator)."""
    router = APIRouter(tags=["metrics"])
    monotonic = state.clocks.monotonic

    @router.get(
        PATH,
        response_model=RealTimeMetrics,
        responses={503: {"model": RealTimeMetricsError, "description": "No fresh snapshot."}},
        summary="Consolidated real-time metrics of every configured service",
    )
    async def real_time_metrics(
        services: ServicesParam = None,
        types: TypesParam = None,
        fields: FieldsParam = None,
    ) -> Response:
        """The latest snapshot in story 23.2's shape; 503 with its error shape when stale.

        `services`, `types` and `fields` select as on the SSE stream (the totals then cover
        the kept rows); an unknown service, type or field is a 422 naming it.
        """
        started_at = monotonic()
        try:
            view = view_of_query(state.hub.latest, services, types, fields)
        except FilterError as error:
            raise HTTPException(422, str(error)) from error
        entry = state.fresh()
        if entry is None:
            return Response(state.error_body(started_at), 503, media_type=JSON)
        return Response(entry.body(view, started_at), media_type=JSON)

    return router


class FastPath:
    """ASGI middleware answering GET/HEAD on the REST path straight from the cached bytes.

    The route above documents the endpoint (and answers the same way if this middleware is
    not installed); this shortcut skips routing and the framework's request/response objects,
    which is most of the per-request cost once the body itself is cached.
    """

    def __init__(self, app: ASGIApp, state: GatewayState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve the REST path; pass everything else on."""
        if (
            scope["type"] != "http"
            or scope["path"] != PATH
            or scope["method"] not in _METHODS
            or scope.get("query_string")  # a filtered view: the route parses and checks it
        ):
            await self.app(scope, receive, send)
            return
        state = self.state
        started_at = state.clocks.monotonic()
        entry = state.fresh()
        if entry is None:
            status, body = 503, state.error_body(started_at)
        else:
            status, body = 200, entry.body(WHOLE, started_at)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json"), _length(body)],
            }
        )
        await send(
            {"type": "http.response.body", "body": body if scope["method"] == "GET" else b""}
        )


_METHODS = frozenset({"GET", "HEAD"})


def _length(body: bytes) -> tuple[bytes, bytes]:
    return (b"content-length", str(len(body)).encode())
