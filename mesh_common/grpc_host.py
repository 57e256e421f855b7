"""A grpc.aio server with health checking and reflection: the shell every mesh server uses.

`GrpcHost` owns one `grpc.aio.Server`: it binds the port with a clear error when the port is
taken, serves `grpc.health.v1.Health` (overall "" and named services) and server reflection,
and stops gracefully: every health status flips to NOT_SERVING first, then in-flight calls
get a grace period. The agent's server and the aggregator's server are both built on it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from mesh_common.addresses import format_host_port
from mesh_common.errors import ServerStateError
from mesh_common.tls import TlsSettings
from mesh_common.transport import SERVER_OPTIONS, ConnectionLimits, listen

Registrar = Callable[[grpc.aio.Server], None]

DEFAULT_GRACE_SECONDS = 2.0
DEFAULT_LIMITS = ConnectionLimits()
"""What a server's connections may do unless its owner says otherwise."""


class GrpcHost:
    """One gRPC server with health and reflection; start and stop it on a running loop.

    `register` adds the application's servicers to the server. `service_names` are the
    fully-qualified names of those servicers (for reflection and health); `health_names`
    are extra names health answers for (e.g. the service's own name). `max_receive_bytes`
    lowers the largest request gRPC reads (RESOURCE_EXHAUSTED beyond; default 4 MiB).
    `limits` caps and closes client connections (`ConnectionLimits`: at most 1024, idle
    ones closed after 20 s, silent ones with calls in flight pinged). `extra_ports` are more
    ports on the same host serving the same services (0: a free one), e.g. OTLP's 4317 beside
    the aggregator's own; `bound_extra_ports` says which were bound. `tls` makes every port
    TLS (or mutual TLS), plaintext when absent.
    """

    def __init__(
        self,
        register: Registrar,
        *,
        service_names: Iterable[str],
        health_names: Iterable[str] = (),
        host: str = "127.0.0.1",
        port: int = 0,
        grace_seconds: float = DEFAULT_GRACE_SECONDS,
        interceptors: Sequence[Any] = (),
        max_receive_bytes: int | None = None,
        limits: ConnectionLimits = DEFAULT_LIMITS,
        extra_ports: Sequence[int] = (),
        tls: TlsSettings | None = None,
    ) -> None:
        self.host = host
        self.requested_port = port
        self.requested_extra_ports = tuple(extra_ports)
        self.grace_seconds = grace_seconds
        self._register = register
        self._service_names = tuple(service_names)
        self._health_names = tuple(dict.fromkeys(("", *self._service_names, *health_names)))
        self._interceptors = tuple(interceptors)
        self._tls = tls
        self._options = (*SERVER_OPTIONS, *limits.server_options())
        if max_receive_bytes is not None:
            self._options += (("grpc.max_receive_message_length", max_receive_bytes),)
        self._server: grpc.aio.Server | None = None
        self._health: health.aio.HealthServicer | None = None
        self._port: int | None = None
        self._extra_ports: tuple[int, ...] = ()
        self._stopped = False

    @property
    def port(self) -> int:
        """The port the server listens on (the real one when 0 was asked for)."""
        if self._port is None:
            raise ServerStateError("the server is not started: no port is bound yet")
        return self._port

    @property
    def bound_extra_ports(self) -> tuple[int, ...]:
        """The extra ports listened on, in the order asked (the real ones for 0)."""
        if self._port is None:
            raise ServerStateError("the server is not started: no port is bound yet")
        return self._extra_ports

    @property
    def address(self) -> str:
        """`host:port` of the running server, ready for a client channel or grpcurl."""
        return format_host_port(self.host, self.port)

    @property
    def health_names(self) -> tuple[str, ...]:
        """Every name health answers for ("" is the server as a whole)."""
        return self._health_names

    async def start(self) -> int:
        """Bind, start serving with every health status SERVING, and return the port."""
        if self._server is not None:
            raise ServerStateError("the server is already started")
        if self._stopped:
            raise ServerStateError("a stopped server cannot be started again; create a new one")
        server = grpc.aio.server(options=self._options, interceptors=self._interceptors)
        self._health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        self._register(server)
        reflection.enable_server_reflection(
            (*self._service_names, health.SERVICE_NAME, reflection.SERVICE_NAME), server
        )
        port = listen(server, self.host, self.requested_port, self._tls)
        extra = tuple(
            listen(server, self.host, each, self._tls) for each in self.requested_extra_ports
        )
        for name in self._health_names:
            await self._health.set(name, health_pb2.HealthCheckResponse.SERVING)
        await server.start()
        self._server = server
        self._port = port
        self._extra_ports = extra
        return port

    async def set_serving(self, serving: bool, name: str | None = None) -> None:
        """Report SERVING or NOT_SERVING for `name`, or for every health name when None."""
        if self._health is None:
            raise ServerStateError("the server is not started")
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for each in self._health_names if name is None else (name,):
            await self._health.set(each, status)

    async def stop(self, grace_seconds: float | None = None) -> None:
        """Flip health to NOT_SERVING, then stop with a grace period. A second call is harmless."""
        server, self._server = self._server, None
        self._stopped = True
        if server is None:
            return
        if self._health is not None:
            await self._health.enter_graceful_shutdown()
        grace = self.grace_seconds if grace_seconds is None else grace_seconds
        await server.stop(grace)

    async def wait_for_termination(self) -> None:
        """Wait until the server stops (for `main()` functions that just serve)."""
        server = self._server
        if server is not None:
            await server.wait_for_termination()


def run_coroutine_blocking(loop: asyncio.AbstractEventLoop, coroutine: Any) -> Any:
    """Run `coroutine` on `loop` (running in another thread) and wait for its result."""
    return asyncio.run_coroutine_threadsafe(coroutine, loop).result()
