"""The one channel factory and the one listening-port factory of the project.

Every gRPC channel the mesh opens (aggregator to agents, gateway and CLI to the aggregator,
the demo's probes) comes from `open_channel` / `open_blocking_channel`, every gRPC port it
listens on is added by `listen`, and every HTTP socket is bound by `listen_http`. Transport
security is therefore decided here and nowhere else: today every channel and port is
plaintext, for loopback and trusted networks. A taken port is a `PortInUseError` everywhere.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from typing import Any

import grpc

from mesh_common.addresses import HostPort, format_host_port
from mesh_common.errors import PortInUseError

ChannelOptions = Sequence[tuple[str, Any]]

SERVER_OPTIONS: ChannelOptions = (
    # Without this, grpc binds with SO_REUSEPORT and a second server on a taken port
    # silently shares it instead of failing.
    ("grpc.so_reuseport", 0),
)
"""Options every gRPC server of the mesh is created with."""


def open_channel(target: str | HostPort, *, options: ChannelOptions = ()) -> grpc.aio.Channel:
    """An asyncio channel to `target` (`host:port`); connects lazily, reconnects by itself."""
    return grpc.aio.insecure_channel(str(target), options=options)


def open_blocking_channel(target: str | HostPort, *, options: ChannelOptions = ()) -> grpc.Channel:
    """A blocking (thread-based) channel to `target`, for code without an event loop."""
    return grpc.insecure_channel(str(target), options=options)


def listen(server: grpc.aio.Server | grpc.Server, host: str, port: int) -> int:
    """Add a listening port to `server` and return it (the real one when `port` is 0).

    Raises PortInUseError when the port is taken or the address cannot be bound.
    """
    try:
        bound: int = server.add_insecure_port(format_host_port(host, port))
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
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise PortInUseError(host, port, error.strerror or str(error)) from error
    sock.listen(HTTP_BACKLOG)
    sock.setblocking(False)
    return sock
