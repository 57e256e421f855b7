"""The gateway's settings: the `[gateway]` section of the shared TOML file, strictly parsed.

Every key has a default; unknown keys and wrong types are errors naming the key. Environment
variables `METRICS_MESH_GATEWAY_<KEY>` (e.g. `METRICS_MESH_GATEWAY_AGGREGATOR=127.0.0.1:50200`)
override the file. `cors_origins` from the environment is a comma-separated list.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aggregator import ConfigError, load_config
from aggregator.config import read_section
from gateway._errors import GatewayConfigError

ENV_PREFIX = "METRICS_MESH_GATEWAY_"
DEFAULT_SERVICE_COUNT = 15
"""Length of the built-in registry, used when the file lists no `[[services]]`."""


@dataclass(frozen=True, slots=True)
class GatewaySettings:
    """What the gateway needs to run; `create_app(GatewaySettings())` works with the defaults."""

    host: str = "127.0.0.1"
    """Bind host of the HTTP server."""
    port: int = 8000
    """Bind port of the HTTP server (0 = any free port)."""
    aggregator: str = "127.0.0.1:50100"
    """`host:port` of the aggregator's gRPC AggregatorService."""
    stale_after_seconds: float = 5.0
    """A snapshot older than this is not served (503, `event: error`, not ready)."""
    cors_origins: tuple[str, ...] = ()
    """Origins allowed by CORS; empty sends no CORS headers."""
    heartbeat_seconds: float = 15.0
    """Seconds between SSE heartbeat comments when nothing else is sent."""
    history_size: int = 600
    """Snapshots kept by the gateway for SSE resume and the dashboard's sparklines."""
    reconnect_initial_seconds: float = 0.2
    """First reconnect delay after the upstream subscription fails (doubled up to the max)."""
    reconnect_max_seconds: float = 5.0
    """Upper bound of the reconnect delay."""
    access_log: bool = False
    """Log every HTTP request (uvicorn's access log)."""
    services_configured: int = field(default=DEFAULT_SERVICE_COUNT)
    """Configured service count, the error shape's `inactive_apis` before any snapshot."""

    def __post_init__(self) -> None:
        _check(self)


def _check(settings: GatewaySettings) -> None:
    """Raise GatewayConfigError naming the first value that makes no sense."""
    if not 0 <= settings.port <= 65535:
        raise GatewayConfigError(f"gateway.port: {settings.port} is not in 0..65535")
    parse_target(settings.aggregator)
    positive = ("stale_after_seconds", "heartbeat_seconds", "reconnect_initial_seconds")
    for name in positive:
        if not getattr(settings, name) > 0:
            raise GatewayConfigError(f"gateway.{name}: must be > 0, got {getattr(settings, name)}")
    if settings.reconnect_max_seconds < settings.reconnect_initial_seconds:
        raise GatewayConfigError(
            "gateway.reconnect_max_seconds: must be >= reconnect_initial_seconds "
            f"({settings.reconnect_max_seconds} < {settings.reconnect_initial_seconds})"
        )
    if not 1 <= settings.history_size <= 100_000:
        raise GatewayConfigError(
            f"gateway.history_size: {settings.history_size} is not in 1..100000"
        )
    if settings.services_configured < 0:
        raise GatewayConfigError("gateway.services_configured: must be >= 0")
    for origin in settings.cors_origins:
        if not origin or origin != origin.strip():
            raise GatewayConfigError(f"gateway.cors_origins: {origin!r} is not an origin")


def parse_target(target: str) -> tuple[str, int]:
    """Split `host:port` (IPv6 as `[::1]:port`); GatewayConfigError when it is not one."""
    host, sep, port_text = target.rpartition(":")
    if not sep or not host or not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise GatewayConfigError(
            f"gateway.aggregator: {target!r} is not HOST:PORT (e.g. 127.0.0.1:50100)"
        )
    return host.strip("[]"), int(port_text)


def settings_from_mapping(
    section: Mapping[str, Any],
    *,
    environ: Mapping[str, str] | None = None,
    services_configured: int = DEFAULT_SERVICE_COUNT,
) -> GatewaySettings:
    """Build settings from a parsed `[gateway]` table plus environment overrides."""
    env = os.environ if environ is None else environ
    try:
        values = read_section(
            "gateway", section, GatewaySettings, ENV_PREFIX, env, exclude=("services_configured",)
        )
    except ConfigError as error:
        raise GatewayConfigError(str(error)) from None
    return GatewaySettings(**values, services_configured=services_configured)


def load_settings(
    path: str | Path | None, *, environ: Mapping[str, str] | None = None
) -> GatewaySettings:
    """Read the `[gateway]` section of the shared TOML file (None: defaults + environment).

    The file as a whole is read and checked by `aggregator.config.load_config` (top-level
    tables, `[[services]]`); the configured service count is its registry's length.
    """
    try:
        config = load_config(path, environ=environ)
    except ConfigError as error:
        raise GatewayConfigError(str(error)) from None
    section = config.raw.get("gateway", {})
    where = str(path) if path is not None else "built-in defaults"
    if not isinstance(section, Mapping):
        raise GatewayConfigError(f"{where}: [gateway] must be a table")
    try:
        return settings_from_mapping(
            section, environ=environ, services_configured=len(config.services)
        )
    except GatewayConfigError as error:
        raise GatewayConfigError(f"{where}: {error}") from None
