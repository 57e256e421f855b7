"""`create_app(settings)`: the gateway's FastAPI application."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway._alert_routes import alert_router
from gateway._alerts import AlertHub
from gateway._auth import authenticate
from gateway._docs import install_docs
from gateway._fleet_routes import fleet_router
from gateway._fleet_status import FleetStatusPoller
from gateway._health import health_router
from gateway._history_routes import history_router
from gateway._history_status import HistoryStatusPoller
from gateway._ingest_routes import ingest_router
from gateway._limits import guard, safe_redirects
from gateway._login import identity_router, login_router
from gateway._otlp_routes import otlp_router
from gateway._prometheus import prometheus_router
from gateway._query_api import query_api_router
from gateway._query_count import QueryCount
from gateway._rest import FastPath, rest_router
from gateway._schema import schema_body
from gateway._seed004_routes import seed_004_router
from gateway._settings import GatewaySettings
from gateway._sse import sse_router
from gateway._state import GatewayState
from gateway._tickets import TicketBook, ticket_router
from gateway._upstream import SnapshotHub
from gateway._ws import ws_router
from mesh_common.auth import Verifier
from mesh_common.auth_client import bearer_interceptors
from mesh_common.auth_settings import AuthSettings, check_admin_token
from mesh_common.clocks import SYSTEM_CLOCKS, Clocks
from mesh_common.tls import TlsSettings
from mesh_common.version import version

STATIC = Path(__file__).parent / "static"


class GatewayApp(FastAPI):
    """FastAPI behind the guard and, when no CORS is configured, the REST fast path.

    The guard (allowed hosts, REST rate limit: `gateway._limits`) and `FastPath` run before
    FastAPI's own entry (its per-request native-telemetry check reads the environment) and
    Starlette's: a fast answer took a fifth fewer instructions (bench/bench_gateway.py;
    callgrind, in-process). With CORS, `FastPath` sits inside the CORS middleware instead,
    so its answers carry the CORS headers. Redirects are kept home inside the middleware
    stack (`gateway._limits.safe_redirects`).
    """

    def __init__(
        self,
        state: GatewayState,
        *,
        verifier: Verifier | None = None,
        tickets: TicketBook | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._gateway_state = state
        routes: ASGIApp = QueryCount(super().__call__, state)
        if not state.settings.cors_origins:
            routes = FastPath(routes, state)
        if tickets is None:
            tickets = TicketBook(state.clocks.monotonic)
        self._front = guard(authenticate(routes, verifier, tickets), state)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The guard, the fast path, then FastAPI."""
        await self._front(scope, receive, send)

    def build_middleware_stack(self) -> ASGIApp:
        """The usual stack, its redirects kept home."""
        return safe_redirects(super().build_middleware_stack(), self._gateway_state)


def create_app(
    settings: GatewaySettings | None = None,
    *,
    clocks: Clocks = SYSTEM_CLOCKS,
    auth: AuthSettings | None = None,
    tls: TlsSettings | None = None,
) -> FastAPI:
    """The gateway app; its lifespan opens (and closes) the one aggregator subscription.

    The alert subscription (`AlertHub`) and the history and fleet status polls run beside it,
    with the same lifespan.
    `app.state.gateway` is the shared `GatewayState` (settings, clocks, hubs, client counts).
    With `auth` on, every route but health and the dashboard's page needs a bearer token
    (`gateway._auth`), browsers log in or get single-use stream tickets (`gateway._login`,
    `gateway._tickets`), and the calls to the aggregator carry `auth.client_token`.
    With `tls` (the `[tls]` table) the channels to the aggregator are TLS (opened again when
    the files are rotated, `gateway._link`); serving HTTPS is uvicorn's part
    (`gateway.__main__.uvicorn_config`).
    """
    settings = settings or GatewaySettings()
    check_admin_token("gateway", settings.admin_token, auth)
    snapshots = _hub(settings, clocks, tls)
    alert_hub = _alert_hub(settings, clocks, tls, on_change=snapshots.wake_waiters)
    state = GatewayState(
        settings,
        snapshots,
        clocks,
        alert_hub,
        HistoryStatusPoller(alert_hub),
        FleetStatusPoller(alert_hub),
        started_at=clocks.monotonic(),
    )
    hub, alerts, history, fleet = state.hub, state.alerts, state.history, state.fleet
    verifier = None
    tickets = TicketBook(clocks.monotonic)
    if auth is not None and auth.enabled:
        verifier = Verifier(auth, clocks=clocks)
        hub.interceptors = alerts.interceptors = bearer_interceptors(auth.client_token)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        hub.start()
        alerts.start()
        history.start()  # after the alert hub: it calls on the hub's channel
        fleet.start()  # likewise
        try:
            yield
        finally:
            await fleet.stop()
            await history.stop()
            await alerts.stop()
            await hub.stop()

    app = GatewayApp(
        state,
        title="metrics-mesh gateway",
        description="Live event rates of every service and their history: REST, SSE, "
        "WebSocket, Prometheus.",
        version=version(),  # the installed package's, as `--version` and /metrics say
        lifespan=lifespan,
        verifier=verifier,
        tickets=tickets,
        docs_url=None,  # gateway._docs serves /docs and /redoc with local assets
        redoc_url=None,
    )
    app.state.gateway = state
    if settings.cors_origins:
        app.add_middleware(FastPath, state=state)  # inside CORS, so its answers get the headers
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET"],
            # A cross-origin page sends its bearer token in a header the preflight must allow.
            allow_headers=["Last-Event-ID", *(["Authorization"] if verifier else [])],
        )
    for router in (
        rest_router(state),
        alert_router(state),
        query_api_router(state),
        history_router(state),
        ingest_router(state),
        seed_004_router(state),
        otlp_router(state),
        sse_router(state),
        ws_router(state),
        health_router(state),
        prometheus_router(state),
        fleet_router(state),
        page_router(),
        identity_router(verifier is not None),
    ):
        app.include_router(router)
    if verifier is not None:
        app.include_router(login_router(verifier, clocks.monotonic))
        app.include_router(ticket_router(tickets))
    install_docs(app)  # before /static: its assets live under /static/docs
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def _hub(settings: GatewaySettings, clocks: Clocks, tls: TlsSettings | None) -> SnapshotHub:
    return SnapshotHub(
        settings.aggregator,
        history_size=settings.history_size,
        reconnect_initial_seconds=settings.reconnect_initial_seconds,
        reconnect_max_seconds=settings.reconnect_max_seconds,
        # Waiters re-check at least this often: heartbeats and staleness need no own timers.
        tick_seconds=min(1.0, settings.heartbeat_seconds / 2, settings.stale_after_seconds / 4),
        monotonic=clocks.monotonic,
        tls=tls,
    )


def _alert_hub(
    settings: GatewaySettings,
    clocks: Clocks,
    tls: TlsSettings | None,
    *,
    on_change: Callable[[], None],
) -> AlertHub:
    return AlertHub(
        settings.aggregator,
        reconnect_initial_seconds=settings.reconnect_initial_seconds,
        reconnect_max_seconds=settings.reconnect_max_seconds,
        wall=clocks.wall,
        monotonic=clocks.monotonic,
        on_change=on_change,
        tls=tls,
    )


def page_router() -> APIRouter:
    """The dashboard page and the row schema its columns are built from."""
    router = APIRouter()

    @router.get("/api/v1/schema", tags=["metrics"], summary="The figures of rows and totals")
    async def schema() -> dict[str, Any]:
        """Every figure of a row, a kind and the totals; the warning thresholds; the stale age.

        Each figure with its name, column label, unit and meaning; `thresholds` and
        `stale_seconds` as `mesh_common.thresholds` defines them (the CLI's too).
        """
        return schema_body()

    @router.get("/", include_in_schema=False)
    async def dashboard() -> FileResponse:
        """The dashboard page."""
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    return router
