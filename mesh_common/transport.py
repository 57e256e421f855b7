"""The one channel factory and the one listening-port factory of the project.

Every gRPC channel the mesh opens (aggregator to agents, gateway and CLI to the aggregator,
the demo's probes) comes from `open_channel` / `open_blocking_channel`, every gRPC port it
listens on is added by `listen`, and every HTTP socket is bound by `listen_http`. Transport
security is therefore decided here and nowhere else: each takes the `[tls]` settings
(`mesh_common.tls`), plaintext when they are absent or empty (loopback and trusted networks),
TLS or mutual TLS otherwise. A taken port is a `PortInUseError` everywhere.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import grpc

from mesh_common.addresses import HostPort, format_host_port
from mesh_common.errors import PortInUseError
from mesh_common.tls import TlsSettings

ChannelOptions = Sequence[tuple[str, Any]]

SERVER_OPTIONS: ChannelOptions = (
    # Without this, grpc binds with SO_REUSEPORT and a second server on a taken port
    # silently shares it instead of failing.
    ("grpc.so_reuseport", 0),
)
"""Options every gRPC server of the mesh is created with."""

KEEPALIVE_TIMEOUT_SECONDS = 20.0
"""How long a server waits for the answer to its keepalive ping before closing the connection."""
MIN_CLIENT_PING_SECONDS = 10.0
"""The shortest interval between a client's keepalive pings that a server accepts; a client
that pings more often is sent GOAWAY `too_many_pings` after MAX_PING_STRIKES pings."""
MAX_PING_STRIKES = 2


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """How a gRPC server of the mesh treats its client connections (gRPC core's own limits).

    - `max_connections`: connections open at once. One more is accepted and closed at
      once, before any HTTP/2 byte: its client sees UNAVAILABLE and retries with its
      reconnect backoff. An idle connection costs the server about 16 KiB.
    - `idle_seconds`: a connection that has carried no call for this long (or never
      completed its HTTP/2 handshake) is closed: GOAWAY `connection idle`, after which a
      gRPC client reconnects by itself on its next call. A connection with a call in
      flight, such as a stream that has had nothing to send for a while, is not idle.
    - `keepalive_seconds`: while calls are in flight, the server pings a connection that
      has been silent this long and closes it when the ping is not answered within
      KEEPALIVE_TIMEOUT_SECONDS (a subscriber whose host vanished frees its stream).
    - `max_streams_per_connection`: calls in flight on one connection; a client queues
      more until one ends (HTTP/2 MAX_CONCURRENT_STREAMS). gRPC channels of one process to
      one server share a connection, so this must leave room for all of a client's streams.
    """

    max_connections: int = 1024
    idle_seconds: float = 20.0
    keepalive_seconds: float = 60.0
    max_streams_per_connection: int = 2048

    def server_options(self) -> ChannelOptions:
        """The grpc server options that enforce these limits."""
        return (
            ("grpc.max_allowed_incoming_connections", self.max_connections),
            ("grpc.max_connection_idle_ms", _millis(self.idle_seconds)),
            ("grpc.server_handshake_timeout_ms", _millis(self.idle_seconds)),
            ("grpc.keepalive_time_ms", _millis(self.keepalive_seconds)),
            ("grpc.keepalive_timeout_ms", _millis(KEEPALIVE_TIMEOUT_SECONDS)),
            ("grpc.keepalive_permit_without_calls", 0),
            ("grpc.http2.min_recv_ping_interval_without_data_ms", _millis(MIN_CLIENT_PING_SECONDS)),
            ("grpc.http2.max_ping_strikes", MAX_PING_STRIKES),
            ("grpc.max_concurrent_streams", self.max_streams_per_connection),
        )


def _millis(seconds: float) -> int:
    return max(1, round(seconds * 1000))


RECONNECT_INITIAL_MS = 200
"""First pause before a channel reconnects to a server that went away."""


def reconnect_options(longest_seconds: float) -> ChannelOptions:
    """Channel options: reconnect soon to a server that comes back, not in a tight loop.

    The first attempt after RECONNECT_INITIAL_MS, then doubling up to `longest_seconds`.
    gRPC's own longest pause is 120 s, and a call on a channel between two attempts fails at
    once: the aggregator's channels to its agents (one round interval) and an agent's to the
    aggregator it registers with (its renew interval) wait no longer than the caller would.
    """
    longest = max(RECONNECT_INITIAL_MS, _millis(longest_seconds))
    return (
        ("grpc.initial_reconnect_backoff_ms", RECONNECT_INITIAL_MS),
        ("grpc.max_reconnect_backoff_ms", longest),
    )


def open_channel(
    target: str | HostPort,
    *,
    options: ChannelOptions = (),
    tls: TlsSettings | None = None,
    interceptors: Sequence[grpc.aio.ClientInterceptor] = (),
) -> grpc.aio.Channel:
    """An asyncio channel to `target` (`host:port`); connects lazily, reconnects by itself.

    TLS when `tls` is enabled (the CA, the client certificate and the name to verify come
    from it), plaintext otherwise. `interceptors` see every call (`mesh_common.auth_client`:
    the bearer token of `[auth]`).
    """
    chain = list(interceptors) or None
    if tls is None or not tls.enabled:
        return grpc.aio.insecure_channel(str(target), options=options, interceptors=chain)
    from mesh_common.tls_credentials import channel_credentials, channel_options

    return grpc.aio.secure_channel(
        str(target),
        channel_credentials(tls),
        options=(*options, *channel_options(tls)),
        interceptors=chain,
    )


def open_blocking_channel(
    target: str | HostPort, *, options: ChannelOptions = (), tls: TlsSettings | None = None
) -> grpc.Channel:
    """A blocking (thread-based) channel to `target`, for code without an event loop."""
    if tls is None or not tls.enabled:
        return grpc.insecure_channel(str(target), options=options)
    from mesh_common.tls_credentials import channel_credentials, channel_options

    return grpc.secure_channel(
        str(target), channel_credentials(tls), options=(*options, *channel_options(tls))
    )


def listen(
    server: grpc.aio.Server | grpc.Server, host: str, port: int, tls: TlsSettings | None = None
) -> int:
    """Add a listening port to `server` and return it (the real one when `port` is 0).

    TLS when `tls` is enabled (its certificate files re-read when they change; a client
    certificate required under `client_auth`). Raises PortInUseError when the port is taken
    or the address cannot be bound, ConfigError when `tls` has no certificate to serve.
    """
    address = format_host_port(host, port)
    try:
        if tls is None or not tls.enabled:
            bound: int = server.add_insecure_port(address)
        else:
            from mesh_common.tls_credentials import server_credentials

            bound = server.add_secure_port(address, server_credentials(tls))
    except RuntimeError as error:
        raise PortInUseError(host, port) from error
    if bound == 0:
        raise PortInUseError(host, port)
    return bound


HTTP_BACKLOG = 2048
"""Pending connections an HTTP socket queues before the server accepts them."""


def listen_http(host: str, port: int) -> socket.socket:
    """A bound, listening, non-blocking TCP socket for an HTTP server (uvicorn `sockets=`).

    Raises PortInUseError when the port is taken or the address cannot be bound.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio's loop sets TCP_NODELAY only on the connections of a socket
    # that names it (uvloop always does); without it every response written in two parts
    # (uvicorn: headers, then body) waited for the client's delayed ACK, 40 ms on Linux
    # (bench/bench_history_query.py: the gateway's p50 44 ms -> 1 ms for /health/live).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise PortInUseError(host, port, error.strerror or str(error)) from error
    sock.listen(HTTP_BACKLOG)
    sock.setblocking(False)
    return sock
