"""The gateway's settings: the `[gateway]` table of the mesh file, strictly parsed.

Every key has a default; unknown keys and wrong types are errors naming the key. Environment
variables `METRICS_MESH_GATEWAY_<KEY>` (e.g. `METRICS_MESH_GATEWAY_AGGREGATOR=127.0.0.1:50200`)
override the file. `cors_origins` from the environment is a comma-separated list. The alert
write endpoints' bearer token is best given as `METRICS_MESH_GATEWAY_ADMIN_TOKEN`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from mesh_common.addresses import HostPort, is_port, port_range
from mesh_common.config import Section, load_mesh_file, setting
from mesh_common.errors import ConfigError
from mesh_common.registry import DEFAULT_REGISTRY, SERVICES


@dataclass(frozen=True, slots=True)
class GatewaySettings:
    """What the gateway needs to run; `create_app(GatewaySettings())` works with the defaults."""

    host: str = setting("127.0.0.1", "bind host of the HTTP server")
    port: int = setting(8000, "bind port of the HTTP server (0 = any free port)")
    aggregator: str = setting("127.0.0.1:50100", "HOST:PORT of the aggregator's gRPC service")
    stale_after_seconds: float = setting(
        5.0, "a snapshot older than this is not served (503, event: error, not ready)"
    )
    cors_origins: tuple[str, ...] = setting((), "origins allowed by CORS (empty: no CORS)")
    heartbeat_seconds: float = setting(
        15.0, "seconds between SSE heartbeat comments when nothing else is sent"
    )
    history_size: int = setting(
        900,
        "snapshots kept for SSE resume and the dashboard's trends (900: 15 min at 1 round/s; "
        "older ones kept serialized, about 30 KB each for 15 services of 3 timed kinds)",
    )
    reconnect_initial_seconds: float = setting(
        0.2, "first reconnect delay after the upstream subscription fails (then doubled)"
    )
    reconnect_max_seconds: float = setting(5.0, "upper bound of the reconnect delay")
    access_log: bool = setting(False, "log every HTTP request (uvicorn's access log)")
    admin_token: str = setting(
        "", "bearer token the alert rule endpoints require to write (empty: none required)"
    )
    allowed_hosts: tuple[str, ...] = setting(
        (),
        "Host names answered besides the bind host and localhost names (400 otherwise); "
        '"*" answers any',
    )
    max_connections: int = setting(
        1000, "most open HTTP connections (streams included); more get 503 and are closed"
    )
    max_header_bytes: int = setting(16384, "largest request line + headers; 431 beyond")
    header_timeout_seconds: float = setting(
        10.0, "time a connection has to send a request's headers (idle ones are closed)"
    )
    max_sse_clients: int = setting(
        500, "most concurrent SSE clients (503 beyond); each costs about 20 KB"
    )
    max_ws_clients: int = setting(
        500,
        "most concurrent WebSocket clients (close 1013 beyond); each costs about 45 KB "
        "(python -m bench ws_memory)",
    )
    ws_max_message_bytes: int = setting(65536, "largest WebSocket client message (close 1009)")
    ws_messages_per_second: float = setting(
        20.0, "client messages per second one WebSocket may send (bursts of twice that)"
    )
    rate_limit_per_second: float = setting(
        50.0, "REST/API requests per second per client address (429 beyond); 0 = no limit"
    )
    rate_limit_burst: int = setting(200, "REST/API requests a client may send at once")
    https_client_auth: bool = setting(
        True,
        "under [tls] client_auth, HTTPS clients (browsers) must present a client certificate "
        "too; false: they need only trust the CA, and tokens guard the endpoints (the channel "
        "to the aggregator keeps presenting the certificate)",
    )
    services_configured: int = field(default=len(DEFAULT_REGISTRY))
    """Configured service count (from the registry): the error shape's `inactive_apis`."""

    def __post_init__(self) -> None:
        """Raise ConfigError naming the first value that makes no sense."""
        if not is_port(self.port, allow_zero=True):
            raise ConfigError(f"port: {self.port} is not in {port_range(allow_zero=True)}")
        HostPort.parse(self.aggregator, what="aggregator")
        for name in ("stale_after_seconds", "heartbeat_seconds", "reconnect_initial_seconds"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"{name}: must be > 0, got {value}")
        if not self.reconnect_max_seconds >= self.reconnect_initial_seconds:
            raise ConfigError(
                "reconnect_max_seconds: must be >= reconnect_initial_seconds "
                f"({self.reconnect_max_seconds} < {self.reconnect_initial_seconds})"
            )
        if not 1 <= self.history_size <= 100_000:
            raise ConfigError(f"history_size: {self.history_size} is not in 1..100000")
        if self.services_configured < 0:
            raise ConfigError("services_configured: must be >= 0")
        if self.admin_token != self.admin_token.strip() or len(self.admin_token) > 4096:
            raise ConfigError("admin_token: must have no surrounding blanks and be <= 4096 chars")
        for name in (
            "max_connections",
            "max_header_bytes",
            "max_sse_clients",
            "max_ws_clients",
            "ws_max_message_bytes",
            "rate_limit_burst",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}: must be >= 1, got {getattr(self, name)}")
        for name in ("header_timeout_seconds", "ws_messages_per_second"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"{name}: must be > 0, got {value}")
        if not (math.isfinite(self.rate_limit_per_second) and self.rate_limit_per_second >= 0):
            raise ConfigError(
                f"rate_limit_per_second: must be >= 0, got {self.rate_limit_per_second}"
            )
        for host in self.allowed_hosts:
            if not host or host != host.strip() or "/" in host:
                raise ConfigError(f"allowed_hosts: {host!r} is not a host name")
        for origin in self.cors_origins:
            if not origin or origin != origin.strip():
                raise ConfigError(f"cors_origins: {origin!r} is not an origin")


SECTION = Section(
    "gateway",
    GatewaySettings,
    "the gateway's HTTP server and its aggregator subscription",
    derived=("services_configured",),
)
"""The `[gateway]` table's declaration."""


def load_settings(
    path: str | os.PathLike[str] | None, *, environ: Mapping[str, str] | None = None
) -> GatewaySettings:
    """The `[gateway]` table of the mesh file (None: defaults + environment).

    The configured service count is the length of the file's registry.
    """
    mesh = load_mesh_file(path, environ=environ)
    return mesh.read(SECTION, services_configured=len(mesh.read(SERVICES)))
