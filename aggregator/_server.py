"""AggregatorServer: the round loop, history and AggregatorService on one GrpcHost."""

from __future__ import annotations

import os
from types import TracebackType

import grpc

from aggregator._alerts.manager import AlertManager
from aggregator._alerts.service import AlertServicer
from aggregator._alerts.settings import IN_MEMORY, AlertSettings
from aggregator._auth import auth_interceptors
from aggregator._callers import caller_rules
from aggregator._convert import WholeSnapshots
from aggregator._fleet.fleet import Fleet
from aggregator._fleet.registration_service import SERVICE as REGISTRATION_SERVICE
from aggregator._fleet.registration_service import SERVICE_NAME as REGISTRATION_SERVICE_NAME
from aggregator._fleet.registration_service import RegistrationServicer
from aggregator._fleet.registrations import Registrations
from aggregator._fleet.service import FleetServicer
from aggregator._fleet.settings import DiscoverySettings
from aggregator._fleet.sources import fleet_sources
from aggregator._history.engine import QueryLimits
from aggregator._history.service import HistoryServicer
from aggregator._history.settings import HistorySettings
from aggregator._history.store import store_opener
from aggregator._history.writer import HistoryWriter, queue_rounds
from aggregator._ingest.ingestor import Ingestor
from aggregator._ingest.otlp_service import SERVICE_NAME as OTLP_SERVICE_NAME
from aggregator._ingest.otlp_service import OtlpMetricsServicer
from aggregator._ingest.service import IngestServicer
from aggregator._ingest.settings import IngestSettings
from aggregator._loop import RoundLoop
from aggregator._service import SERVICE, SERVICE_NAME, AggregatorServicer
from aggregator._settings import AggregatorSettings
from mesh_common.auth_settings import AuthSettings, check_admin_token
from mesh_common.clocks import SYSTEM_CLOCKS, Clocks
from mesh_common.grpc_host import DEFAULT_GRACE_SECONDS, GrpcHost
from mesh_common.grpc_input import service_handler
from mesh_common.registry import DEFAULT_REGISTRY, Registry
from mesh_common.tls import TlsSettings


class AggregatorServer:
    """The whole aggregator: round loop + history + AggregatorService + health + reflection.

    `await start()` binds `settings.host:settings.port` (0 picks a free port) and returns the
    port; `await stop()` ends every stream with UNAVAILABLE "aggregator shutting down", then
    stops the server gracefully. Also an async context manager. With `history` settings
    (enabled), every round is written to the history store (`history`, an observer); without
    them, nothing is remembered past the in-memory ring. Metrics and events pushed to it
    (`ingest` settings, on by default) become rows and series; OTLP/gRPC's MetricsService is
    served on its port, and on a second one (`otlp_port`) only when `ingest` settings are given
    with `otlp_port` not -1 (so servers built without them never contend for 4317). With `tls`
    (the `[tls]` table) it serves TLS and dials its agents with TLS (mutual under
    `client_auth`: it presents its own certificate to them). With `auth` (an `[auth]` table
    that is on), every call but health and reflection needs a bearer token. The reserved
    StreamSnapshots slots are the gateway's: its token's `gateway` scope or a `trusted_clients`
    certificate, by address (`trusted_peers`) only without `auth` and mutual TLS
    (`aggregator._callers`). With `config_path` (the mesh file `registry` was read from),
    its `[[services]]` are watched and reloaded while it runs, and `discovery` (its
    `[discovery]` table) adds the services of file_sd files and http_sd URLs and, with
    `accept_registrations`, the agents that register themselves (RegistrationService; kept
    across a restart in the state directory when `alerts` settings are given)
    (`aggregator._fleet`; `fleet` also reloads on demand: SIGHUP, ReloadRegistry). Raises
    ConfigError when `history` selects a backend this build does not have, or
    `trusted_clients` is set without mutual TLS.
    """

    def __init__(
        self,
        registry: Registry = DEFAULT_REGISTRY,
        settings: AggregatorSettings | None = None,
        *,
        clocks: Clocks = SYSTEM_CLOCKS,
        grace_seconds: float = DEFAULT_GRACE_SECONDS,
        alerts: AlertSettings | None = None,
        interval_rounds: bool = True,
        history: HistorySettings | None = None,
        ingest: IngestSettings | None = None,
        auth: AuthSettings | None = None,
        tls: TlsSettings | None = None,
        config_path: str | os.PathLike[str] | None = None,
        discovery: DiscoverySettings | None = None,
    ) -> None:
        self.settings = settings or AggregatorSettings()
        check_admin_token("alerts", alerts.admin_token if alerts else "", auth)
        callers = caller_rules(
            self.settings, auth_enabled=auth is not None and auth.enabled, tls=tls
        )
        self.ingestor: Ingestor | None = None
        """The pushed metrics and services (None when ingestion is off)."""
        otlp_ports = () if ingest is None or ingest.otlp_port == -1 else (ingest.otlp_port,)
        ingest = ingest or IngestSettings()
        if ingest.enabled:
            self.ingestor = Ingestor(ingest, clocks)
        self.fleet = Fleet(
            fleet_sources(
                registry,
                config_path=config_path,
                discovery=discovery or DiscoverySettings(),
                clocks=clocks,
                state_dir=None if alerts is None else str(alerts.state_path.parent),
            ),
            lambda merged: self.loop.replace_registry(merged),
            interval_seconds=self.settings.interval_seconds,
        )
        """The registry's sources, merged, reloaded (the live fleet)."""
        self.loop = RoundLoop(
            self.fleet.registry,
            self.settings,
            clocks=clocks,
            interval_rounds=interval_rounds,
            ingestor=self.ingestor,
            tls=tls,
        )
        """The rounds (every interval; with `interval_rounds` False only on demand)."""
        whole = WholeSnapshots()  # a round's rows converted once, for the streams and alerts
        self._servicer = AggregatorServicer(self.loop, whole, callers)
        self.alerts = AlertManager(
            alerts or IN_MEMORY,
            clocks=clocks,
            persist=alerts is not None,
            whole=whole,
            registry=lambda: self.loop.registry,
            check_configured=discovery is None or not discovery.configured,
            pushed=None if self.ingestor is None else self.ingestor.series.read,
        )
        """The alert rules and alerts (persisted only when `alerts` settings are given)."""
        self._alert_servicer = AlertServicer(self.alerts)
        self.history: HistoryWriter | None = None
        """The history store's writer and reader (None when history is off)."""
        if history is not None and history.enabled:
            self.history = HistoryWriter(
                store_opener(history, alerts.state_dir if alerts is not None else ""),
                history.tier_list,
                whole=whole,
                clocks=clocks,
                buffer_rounds=history.retry_buffer_rounds,
                queue_rounds=queue_rounds(self.settings.interval_seconds),
            )
        self._history_servicer = HistoryServicer(self.history, _limits(history), clocks)
        self._ingest_servicer = IngestServicer(self.ingestor, clocks.wall)
        self._otlp_servicer = OtlpMetricsServicer(self.ingestor)
        self._fleet_servicer = FleetServicer(self.fleet)
        self.registrations = next(
            (source for source in self.fleet.sources if isinstance(source, Registrations)), None
        )
        """The self-registered agents (None unless `discovery` accepts registrations)."""
        self._registration_servicer = RegistrationServicer(self.fleet, self.registrations)
        self._host = GrpcHost(
            self._register,
            service_names=(SERVICE_NAME, REGISTRATION_SERVICE_NAME, OTLP_SERVICE_NAME),
            extra_ports=otlp_ports,
            host=self.settings.host,
            port=self.settings.port,
            grace_seconds=grace_seconds,
            limits=self.settings.connection_limits,
            interceptors=auth_interceptors(auth, clocks=clocks),
            tls=tls,
        )

    @property
    def registry(self) -> Registry:
        """The services the aggregator calls."""
        return self.loop.registry

    @property
    def port(self) -> int:
        """The bound port (the real one when port 0 was asked for)."""
        return self._host.port

    @property
    def address(self) -> str:
        """`host:port` to dial, e.g. `grpcurl -plaintext ADDRESS list`."""
        return self._host.address

    @property
    def otlp_port(self) -> int | None:
        """The bound second port for OTLP/gRPC; None without one (`port` serves OTLP too)."""
        extra = self._host.bound_extra_ports
        return extra[0] if extra else None

    @property
    def rounds(self) -> int:
        """How many rounds have completed since start."""
        return self.loop.rounds

    @property
    def subscriber_count(self) -> int:
        """How many StreamSnapshots calls are attached."""
        return self.loop.subscriber_count

    async def start(self) -> int:
        """Create the agent channels, start the loop and serve; returns the bound port."""
        await self.alerts.start()
        self.loop.start()
        self.fleet.start()
        self.loop.add_observer("alerts", self.alerts.observe)
        if self.history is not None:
            self.history.start()
            self.loop.add_observer("history", self.history.observe)
        try:
            return await self._host.start()
        except BaseException:
            await self.fleet.stop()
            await self.loop.stop()
            await self._close_history()
            await self.alerts.close()
            raise

    async def stop(self, grace_seconds: float | None = None) -> None:
        """End streams with a status, stop rounds, then stop serving; a second call is harmless."""
        await self.fleet.stop()
        await self.loop.stop()
        await self._close_history()
        await self._host.stop(grace_seconds)
        self._history_servicer.close()
        await self.alerts.close()

    async def _close_history(self) -> None:
        """Write the rounds queued for the history (the last one too) and close its store."""
        if self.history is not None:
            await self.history.close(self.loop.latest)

    def _register(self, server: grpc.aio.Server) -> None:
        methods = {
            **self._servicer.implementations(),
            **self._alert_servicer.implementations(),
            **self._history_servicer.implementations(),
            **self._ingest_servicer.implementations(),
            **self._fleet_servicer.implementations(),
        }
        server.add_generic_rpc_handlers(
            (
                service_handler(SERVICE, methods, serialized=self._servicer.implementations()),
                service_handler(
                    REGISTRATION_SERVICE, self._registration_servicer.implementations()
                ),
                self._otlp_servicer.handler(),
            )
        )

    async def wait_for_termination(self) -> None:
        """Serve until stopped."""
        await self._host.wait_for_termination()

    async def __aenter__(self) -> AggregatorServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()


def _limits(history: HistorySettings | None) -> QueryLimits:
    """The history queries' bounds from the `[history]` settings (defaults without them)."""
    if history is None:
        return QueryLimits()
    return QueryLimits(
        history.max_points_per_series, history.max_series, history.query_timeout_seconds
    )
