"""The aggregator's `[aggregator]` table, and `load_config()`: its registry plus its settings.

Strict, like every table: an unknown key, a wrong type, or a deadline that is not shorter
than the interval stops start-up with a ConfigError naming the key. Environment variables
`METRICS_MESH_AGGREGATOR_<KEY>` override the file.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass

from aggregator._alerts.settings import SECTION as ALERTS_SECTION
from aggregator._alerts.settings import AlertSettings
from aggregator._fleet.settings import SECTION as DISCOVERY_SECTION
from aggregator._fleet.settings import DiscoverySettings
from aggregator._history.settings import SECTION as HISTORY_SECTION
from aggregator._history.settings import HistorySettings
from aggregator._ingest.settings import SECTION as INGEST_SECTION
from aggregator._ingest.settings import IngestSettings
from mesh_common.addresses import is_port, port_range
from mesh_common.auth_settings import SECTION as AUTH_SECTION
from mesh_common.auth_settings import AuthSettings
from mesh_common.config import MeshFile, Section, load_mesh_file, setting
from mesh_common.errors import ConfigError
from mesh_common.registry import SERVICES, Registry
from mesh_common.tls import SECTION as TLS_SECTION
from mesh_common.tls import TlsSettings
from mesh_common.transport import ConnectionLimits


@dataclass(frozen=True, slots=True)
class AggregatorSettings:
    """The `[aggregator]` table: where the AggregatorService listens and how rounds run."""

    host: str = setting("127.0.0.1", "bind host of the AggregatorService")
    port: int = setting(50100, "port of the AggregatorService; 0 picks a free one")
    interval_seconds: float = setting(
        1.0, "time between two rounds while somebody listens, and the staleness limit on demand"
    )
    deadline_seconds: float = setting(
        0.5, "deadline of each agent call; must be shorter than the interval"
    )
    history_seconds: float = setting(
        900.0, "span of the history ring (history_seconds / interval_seconds snapshots)"
    )
    max_subscribers: int = setting(
        1000, "most concurrent StreamSnapshots calls; more get RESOURCE_EXHAUSTED"
    )
    backoff_max_seconds: float = setting(
        30.0, "longest pause between calls to an agent that keeps failing"
    )
    min_round_spacing_seconds: float = setting(
        0.1, "least time between two rounds a caller can force (GetSnapshot max_age 0)"
    )
    trusted_peers: tuple[str, ...] = setting(
        ("127.0.0.1", "::1"),
        "peer hosts (the gateway's) that may take the reserved subscriber slots, uncapped, "
        "only while the mesh is open (no [auth], no mutual TLS: the loopback demo); ignored "
        "once callers have identities, where the gateway scope or trusted_clients decide",
    )
    trusted_clients: tuple[str, ...] = setting(
        (),
        "under mutual TLS, client certificate names (subject CN, DNS or URI SAN) that may take "
        "the reserved subscriber slots, uncapped, as a token with the gateway scope may",
    )
    reserved_subscribers: int = setting(
        16,
        "subscriber slots (of max_subscribers) only trusted callers may take (the gateway: its "
        "token's gateway scope, a trusted_clients certificate, or on an open mesh trusted_peers)",
    )
    max_streams_per_peer: int = setting(
        32,
        "most concurrent StreamSnapshots calls of one caller that is not trusted: one token "
        "identity or client certificate name under [auth] or mutual TLS, one peer host on an "
        "open mesh",
    )
    max_connections: int = setting(
        1024,
        "most open client connections (about 16 KiB each); one more is closed at once, its "
        "client sees UNAVAILABLE and retries",
    )
    connection_idle_seconds: float = setting(
        20.0,
        "a connection with no call in flight for this long is closed (GOAWAY; a client "
        "reconnects on its next call); a stream with nothing to send keeps its connection",
    )
    keepalive_seconds: float = setting(
        60.0,
        "a connection with calls in flight that is silent this long is pinged, and closed "
        "when the ping is not answered within 20 s",
    )
    max_streams_per_connection: int = setting(
        2048,
        "calls in flight on one connection, at least max_subscribers (a client process's "
        "channels to the aggregator share one connection); its client queues more until one "
        "ends",
    )

    def __post_init__(self) -> None:
        """Check the values; raises ConfigError naming the key."""
        if not self.host:
            raise ConfigError("host: must not be empty")
        if not is_port(self.port, allow_zero=True):
            raise ConfigError(f"port: {self.port} is not in {port_range(allow_zero=True)}")
        for key in ("interval_seconds", "deadline_seconds", "history_seconds"):
            value = getattr(self, key)
            if not math.isfinite(value) or value <= 0:
                raise ConfigError(f"{key}: {value} must be a positive number of seconds")
        if self.deadline_seconds >= self.interval_seconds:
            raise ConfigError(
                f"deadline_seconds: {self.deadline_seconds} must be shorter than "
                f"interval_seconds ({self.interval_seconds})"
            )
        if self.history_seconds < self.interval_seconds:
            raise ConfigError(
                f"history_seconds: {self.history_seconds} must be at least "
                f"interval_seconds ({self.interval_seconds})"
            )
        if self.max_subscribers < 1:
            raise ConfigError(f"max_subscribers: {self.max_subscribers} must be >= 1")
        if self.reserved_subscribers < 0:
            raise ConfigError(f"reserved_subscribers: {self.reserved_subscribers} must be >= 0")
        if any(not name.strip() for name in self.trusted_clients):
            raise ConfigError("trusted_clients: a name must not be empty")
        if self.max_streams_per_peer < 1:
            raise ConfigError(f"max_streams_per_peer: {self.max_streams_per_peer} must be >= 1")
        if not math.isfinite(self.min_round_spacing_seconds) or self.min_round_spacing_seconds < 0:
            raise ConfigError(
                f"min_round_spacing_seconds: {self.min_round_spacing_seconds} must be >= 0"
            )
        if not math.isfinite(self.backoff_max_seconds) or self.backoff_max_seconds < 0:
            raise ConfigError(f"backoff_max_seconds: {self.backoff_max_seconds} must be >= 0")
        for key in ("max_connections", "max_streams_per_connection"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key}: {getattr(self, key)} must be >= 1")
        if self.max_streams_per_connection < self.max_subscribers:
            raise ConfigError(
                f"max_streams_per_connection: {self.max_streams_per_connection} must be at "
                f"least max_subscribers ({self.max_subscribers}): a client's streams share one "
                "connection, and the ones beyond it would wait for ever"
            )
        for key in ("connection_idle_seconds", "keepalive_seconds"):
            value = getattr(self, key)
            if not math.isfinite(value) or value <= 0:
                raise ConfigError(f"{key}: {value} must be a positive number of seconds")

    @property
    def untrusted_subscribers(self) -> int:
        """The most subscribers that are not trusted callers (the rest is reserved)."""
        return max(1, self.max_subscribers - self.reserved_subscribers)

    @property
    def connection_limits(self) -> ConnectionLimits:
        """What the AggregatorService's client connections may do."""
        return ConnectionLimits(
            max_connections=self.max_connections,
            idle_seconds=self.connection_idle_seconds,
            keepalive_seconds=self.keepalive_seconds,
            max_streams_per_connection=self.max_streams_per_connection,
        )

    @property
    def history_size(self) -> int:
        """How many snapshots the history ring keeps."""
        return max(1, math.ceil(self.history_seconds / self.interval_seconds))


SECTION = Section("aggregator", AggregatorSettings, "the aggregator's port and its rounds")
"""The `[aggregator]` table's declaration."""


@dataclass(frozen=True, slots=True)
class AggregatorConfig:
    """What the aggregator reads from a mesh file: registry, settings and the other tables."""

    services: Registry
    aggregator: AggregatorSettings
    alerts: AlertSettings
    history: HistorySettings
    ingest: IngestSettings
    tls: TlsSettings
    auth: AuthSettings
    discovery: DiscoverySettings


def load_config(
    path: str | os.PathLike[str] | None = None, *, environ: Mapping[str, str] | None = None
) -> AggregatorConfig:
    """The registry and `[aggregator]` settings of `path` (None: built-in defaults).

    Raises ConfigError naming the file, the entry and the problem.
    """
    return read_config(load_mesh_file(path, environ=environ))


def read_config(mesh: MeshFile, *, check_rules: bool = True) -> AggregatorConfig:
    """The tables of a loaded mesh file, each read strictly; ConfigError naming the key.

    With `check_rules`, a configured alert rule must select services of `[[services]]`;
    a reload reads without (a rule whose service left selects nothing, as at run time), and
    so does a mesh with `[discovery]` (its services may come later). With `[discovery]` and
    no `[[services]]`, the registry is what discovery finds, not the built-in 15.
    """
    discovery = mesh.read(DISCOVERY_SECTION)
    services = mesh.read(SERVICES)
    if discovery.configured and not mesh.tables.get(SERVICES.table):
        services = Registry()
    checked = check_rules and not discovery.configured
    return AggregatorConfig(
        services=services,
        aggregator=mesh.read(SECTION),
        alerts=mesh.read(ALERTS_SECTION, registry=services if checked else None),
        history=mesh.read(HISTORY_SECTION),
        ingest=mesh.read(INGEST_SECTION),
        tls=mesh.read(TLS_SECTION),
        auth=mesh.read(AUTH_SECTION),
        discovery=discovery,
    )
