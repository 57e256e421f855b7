"""The agent's gRPC server: EventRateService + health + reflection, for asyncio or threads."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Sequence
from types import TracebackType
from typing import Any

import grpc
from metricsmesh.v1 import event_rate_pb2, event_rate_pb2_grpc

from agent._convert import ResponseBuilder
from agent._registration import DEFAULT_RENEW_SECONDS, Registrar, SelfRegistration
from agent._tracker import EventTracker
from mesh_common.bounded import quote
from mesh_common.errors import ServerStateError
from mesh_common.exposure import exposure_warning
from mesh_common.grpc_host import DEFAULT_GRACE_SECONDS, GrpcHost, run_coroutine_blocking
from mesh_common.grpc_input import service_handler
from mesh_common.tls import TlsSettings

_LOG = logging.getLogger("agent")

_SERVICE = event_rate_pb2.DESCRIPTOR.services_by_name["EventRateService"]
EVENT_RATE_SERVICE = _SERVICE.full_name


MAX_KINDS = 256
"""The most event kinds one GetEventRate request may name (INVALID_ARGUMENT beyond)."""
MAX_KIND_LENGTH = 200
"""The longest kind name a request may carry, in characters."""
MAX_REQUEST_BYTES = 64 * 1024
"""The largest request the agent's server reads at all (gRPC refuses bigger ones)."""


def request_problem(request: event_rate_pb2.GetEventRateRequest) -> str | None:
    """Why `request` is refused (too many or too long kinds), or None when it is fine."""
    kinds = request.kinds
    if len(kinds) > MAX_KINDS:
        return f"kinds: {len(kinds)} entries, the limit is {MAX_KINDS}"
    for kind in kinds:
        if len(kind) > MAX_KIND_LENGTH:
            return f"kinds: {quote(kind, 40)} is longer than {MAX_KIND_LENGTH} characters"
    return None


class EventRateServicer(event_rate_pb2_grpc.EventRateServiceServicer):
    """Answers GetEventRate from a tracker; reading is in-memory and takes microseconds.

    A request naming more than MAX_KINDS kinds, or a kind longer than MAX_KIND_LENGTH, and
    one that is not a GetEventRateRequest at all, get INVALID_ARGUMENT before any work: no
    caller can make the agent (which runs inside the user's service) expensive.
    """

    def __init__(self, tracker: EventTracker) -> None:
        self._tracker = tracker
        self._responses = ResponseBuilder()

    def register(self, server: grpc.aio.Server) -> None:
        """Add EventRateService to `server`, every request parsed leniently."""
        server.add_generic_rpc_handlers(
            (service_handler(_SERVICE, {"GetEventRate": self.GetEventRate}),)
        )

    async def GetEventRate(
        self,
        request: event_rate_pb2.GetEventRateRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> event_rate_pb2.GetEventRateResponse:
        """Return the tracker's current figures, the breakdown limited to `request.kinds`."""
        problem = request_problem(request)
        if problem is not None:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)
        return self._responses.build(self._tracker.read(request.kinds))


class AgentServer:
    """Serves a tracker over gRPC from a running asyncio loop.

    Health answers for "" (the whole server), the EventRateService and the tracker's service
    name; `set_serving(False)` marks the service NOT_SERVING (the aggregator then shows it
    inactive) and `set_serving(True)` brings it back. Use `async with AgentServer(...)` or
    `await start()` / `await stop()`. From a program without an event loop, use
    `AgentServerThread`. `tls` (a `mesh_common.tls.TlsSettings`, the `[tls]` table) makes it
    serve TLS, requiring the aggregator's client certificate under `client_auth`.

    With `register_with` (the aggregator's HOST:PORT) the agent registers itself once it
    serves, as an instance of the tracker's service (`service_type`, `data_source`,
    `service_port`: the service's own port shown to users), renews its lease every
    `renew_seconds` and deregisters when it stops (`agent._registration`). The aggregator
    calls it at `advertise` when given, else at the address it sees. `token` is a bearer
    token with the `write` scope for an aggregator with `[auth]`; `tls` serves the channel
    to the aggregator too. A bad address is a ConfigError here, not later.
    """

    def __init__(
        self,
        tracker: EventTracker,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        grace_seconds: float = DEFAULT_GRACE_SECONDS,
        interceptors: Sequence[Any] = (),
        tls: TlsSettings | None = None,
        register_with: str | None = None,
        service_type: str = "",
        data_source: str = "",
        service_port: int = 0,
        advertise: str = "",
        token: str = "",
        renew_seconds: float = DEFAULT_RENEW_SECONDS,
    ) -> None:
        self.tracker = tracker
        self._tls = tls
        self._registration = (
            None
            if register_with is None
            else SelfRegistration(
                register_with,
                service_type,
                data_source,
                service_port,
                advertise,
                token,
                renew_seconds,
            )
        )
        self.registrar: Registrar | None = None
        """The registration with the aggregator while serving (None without register_with)."""
        self._host = GrpcHost(
            EventRateServicer(tracker).register,
            service_names=(EVENT_RATE_SERVICE,),
            health_names=(tracker.service_name,),
            host=host,
            port=port,
            grace_seconds=grace_seconds,
            interceptors=interceptors,
            max_receive_bytes=MAX_REQUEST_BYTES,
            tls=tls,
        )

    @property
    def port(self) -> int:
        """The bound port (the real one when port 0 was asked for)."""
        return self._host.port

    @property
    def address(self) -> str:
        """`host:port` to dial, e.g. `grpcurl -plaintext ADDRESS list`."""
        return self._host.address

    async def start(self) -> int:
        """Start serving; returns the bound port. Raises PortInUseError if it is taken.

        Bound past loopback without mutual TLS, it logs a warning naming what is open.
        """
        port = await self._host.start()
        warning = exposure_warning("the agent", self._host.host, auth=None, tls=self._tls)
        if warning is not None:
            _LOG.warning("%s", warning)
        if self._registration is not None and self.registrar is None:
            self.registrar = Registrar(
                self._registration,
                self.tracker.service_name,
                agent_host=self._host.host,
                agent_port=port,
                tls=self._tls,
            )
            self.registrar.start()
        return port

    async def set_serving(self, serving: bool) -> None:
        """Report the service (and the server as a whole) SERVING or NOT_SERVING."""
        await self._host.set_serving(serving)

    async def stop(self, grace_seconds: float | None = None) -> None:
        """Deregister, health NOT_SERVING, then stop with a grace period; idempotent."""
        if self.registrar is not None:
            await self.registrar.stop()
        await self._host.stop(grace_seconds)

    async def wait_for_termination(self) -> None:
        """Serve until stopped."""
        await self._host.wait_for_termination()

    async def __aenter__(self) -> AgentServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()


class AgentServerThread:
    """An `AgentServer` on its own event loop in a daemon thread, for threaded programs.

    `start()` returns once the port is bound (raising PortInUseError if it is taken);
    `stop()` deregisters (with `register_with`), stops the server gracefully and joins the
    thread. Also a context manager. The arguments are AgentServer's.
    """

    def __init__(
        self,
        tracker: EventTracker,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        grace_seconds: float = DEFAULT_GRACE_SECONDS,
        interceptors: Sequence[Any] = (),
        tls: TlsSettings | None = None,
        register_with: str | None = None,
        service_type: str = "",
        data_source: str = "",
        service_port: int = 0,
        advertise: str = "",
        token: str = "",
        renew_seconds: float = DEFAULT_RENEW_SECONDS,
    ) -> None:
        self.tracker = tracker
        self._server_args: dict[str, Any] = {
            "host": host,
            "port": port,
            "grace_seconds": grace_seconds,
            "interceptors": interceptors,
            "tls": tls,
            "register_with": register_with,
            "service_type": service_type,
            "data_source": data_source,
            "service_port": service_port,
            "advertise": advertise,
            "token": token,
            "renew_seconds": renew_seconds,
        }
        if register_with is not None:  # a bad address is an error here, not in the thread
            SelfRegistration(register_with, advertise=advertise, renew_seconds=renew_seconds)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: AgentServer | None = None

    @property
    def port(self) -> int:
        """The bound port."""
        return self._running()[1].port

    @property
    def address(self) -> str:
        """`host:port` to dial."""
        return self._running()[1].address

    def start(self) -> int:
        """Start the loop thread and the server; returns the bound port."""
        if self._thread is not None:
            raise ServerStateError("the agent server thread is already started")
        loop = asyncio.new_event_loop()
        thread = threading.Thread(
            target=loop.run_forever, name=f"agent-{self.tracker.service_name}", daemon=True
        )
        thread.start()
        server = AgentServer(self.tracker, **self._server_args)
        try:
            port: int = run_coroutine_blocking(loop, server.start())
        except BaseException:
            _close_loop(loop, thread)
            raise
        self._loop, self._thread, self._server = loop, thread, server
        return port

    def set_serving(self, serving: bool) -> None:
        """Report SERVING or NOT_SERVING; returns once health reflects the change."""
        loop, server = self._running()
        run_coroutine_blocking(loop, server.set_serving(serving))

    def stop(self, grace_seconds: float | None = None) -> None:
        """Stop gracefully and join the thread; a second call is harmless."""
        if self._loop is None or self._server is None or self._thread is None:
            return
        loop, server, thread = self._loop, self._server, self._thread
        self._loop = self._server = self._thread = None
        try:
            run_coroutine_blocking(loop, server.stop(grace_seconds))
        finally:
            _close_loop(loop, thread)

    def _running(self) -> tuple[asyncio.AbstractEventLoop, AgentServer]:
        if self._loop is None or self._server is None:
            raise ServerStateError("the agent server thread is not started")
        return self._loop, self._server

    def __enter__(self) -> AgentServerThread:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def _close_loop(loop: asyncio.AbstractEventLoop, thread: threading.Thread) -> None:
    loop.call_soon_threadsafe(loop.stop)
    thread.join()
    loop.close()
