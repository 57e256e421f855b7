"""An agent that registers itself with the aggregator: `Registrar` (AgentServer `register_with`).

One background task on the agent's event loop registers (RegistrationService.Register: the
tracker's service name, the service's type, data source and port, and where to call the
agent), then renews the lease every `renew_seconds` (10 s; sooner when the aggregator's
lease holds less than three renewals), and `stop()` deregisters. Where the aggregator calls
the agent: `advertise` when given, else the agent's bind host and port when it is bound to
one address, else (bound to every interface) the host the aggregator sees the call come
from, at the agent's port.

A failed call is tried again after 0.5 s, doubling up to the renew interval; a Renew answered
NOT_FOUND (the aggregator restarted without its state, or removed the registration after it
lapsed) registers again at once. A refusal (PERMISSION_DENIED with registrations off, a name
another source has, the cap) is retried at the renew interval, so a fixed aggregator is
joined without restarting the service. The log says each change of state once (registered,
refused and why, unreachable), never once per attempt.

The channel is `mesh_common.transport`'s (the agent's `[tls]` settings: TLS, and mutual TLS
under `client_auth`), its bearer token `mesh_common.auth_client`'s (`token`, with the
`write` scope when the aggregator has `[auth]`). `wait` (asyncio.sleep) is injectable, so a
test decides when each renewal happens.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import grpc
from metricsmesh.v1 import registration_pb2, registration_pb2_grpc

from mesh_common.addresses import WILDCARD_TO_LOOPBACK, HostPort, format_host_port
from mesh_common.auth_client import bearer_interceptors
from mesh_common.errors import ConfigError
from mesh_common.tls import TlsSettings
from mesh_common.transport import open_channel, reconnect_options
from mesh_common.wire_time import to_seconds

_LOG = logging.getLogger("agent.registration")

DEFAULT_RENEW_SECONDS = 10.0
"""How often an agent renews its registration unless told otherwise."""
RENEWALS_PER_LEASE = 3
"""Renewals that fit in one lease at least: two may fail before the lease lapses."""
FIRST_RETRY_SECONDS = 0.5
"""The pause after a first failed call; it doubles up to the renew interval."""
CALL_TIMEOUT_SECONDS = 5.0
"""Deadline of a Register or Renew call."""
DEREGISTER_TIMEOUT_SECONDS = 2.0
"""How long a stop waits for its Deregister call."""

Wait = Callable[[float], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class SelfRegistration:
    """What an agent registers, and with whom (AgentServer's `register_with` and friends)."""

    aggregator: str
    """The aggregator's HOST:PORT."""
    service_type: str = ""
    """The service's type (one word); empty: the aggregator's default, `registered`."""
    data_source: str = ""
    service_port: int = 0
    """The service's own (HTTP) port shown to users; 0: the agent's port."""
    advertise: str = ""
    """HOST:PORT the aggregator calls the agent at, when the address it sees is not it."""
    token: str = ""
    """A bearer token with the `write` scope, for an aggregator with `[auth]`."""
    renew_seconds: float = DEFAULT_RENEW_SECONDS

    def __post_init__(self) -> None:
        """Check the addresses and the interval; ConfigError naming the argument."""
        HostPort.parse(self.aggregator, what="register_with")
        if self.advertise:
            HostPort.parse(self.advertise, what="advertise")
        if not math.isfinite(self.renew_seconds) or self.renew_seconds <= 0:
            raise ConfigError(f"renew_seconds: {self.renew_seconds} must be a positive number")


class Registrar:
    """Keeps one agent registered with one aggregator (module docstring)."""

    def __init__(
        self,
        options: SelfRegistration,
        service_name: str,
        *,
        agent_host: str,
        agent_port: int,
        tls: TlsSettings | None = None,
        wait: Wait = asyncio.sleep,
    ) -> None:
        self.options = options
        self._request = registration_pb2.RegisterRequest(
            service_name=service_name,
            service_type=options.service_type,
            data_source=options.data_source,
            port=options.service_port,
            agent_port=agent_port,
            advertised_address=options.advertise or _bound_address(agent_host, agent_port),
        )
        self._channel = open_channel(
            options.aggregator,
            options=reconnect_options(options.renew_seconds),
            tls=tls,
            interceptors=bearer_interceptors(options.token),
        )
        self._stub = registration_pb2_grpc.RegistrationServiceStub(self._channel)
        self._wait = wait
        self._interval = options.renew_seconds
        self._task: asyncio.Task[None] | None = None
        self._said = ""
        self.address: str | None = None
        """The address the aggregator calls the agent at, while registered (else None)."""
        self.renewals = 0
        """Successful Register and Renew calls so far."""

    def start(self) -> None:
        """Register, then renew in the background (needs a running loop)."""
        if self._task is None:
            name = f"register-{self._request.service_name}"
            self._task = asyncio.get_running_loop().create_task(self._run(), name=name)

    async def stop(self) -> None:
        """Stop renewing, deregister (within 2 s) and close the channel; idempotent."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        address, self.address = self.address, None
        if address is not None:
            request = registration_pb2.DeregisterRequest(
                service_name=self._request.service_name, agent_address=address
            )
            try:
                await self._stub.Deregister(request, timeout=DEREGISTER_TIMEOUT_SECONDS)
                _LOG.info("deregistered %s from %s", address, self.options.aggregator)
            except grpc.aio.AioRpcError as error:
                _LOG.info("deregistering from %s failed: %s", self.options.aggregator, _why(error))
        await self._channel.close()

    async def _run(self) -> None:
        failures = 0
        while True:
            try:
                await self._renew_or_register()
                failures = 0
                delay = self._interval
            except grpc.aio.AioRpcError as error:
                failures += 1
                delay = min(self._interval, FIRST_RETRY_SECONDS * 2 ** min(failures - 1, 30))
                self._say(
                    f"registration with {self.options.aggregator} failed: {_why(error)}; "
                    f"trying again, at least every {self._interval:g} s",
                    logging.WARNING,
                    error.code().name,
                )
            await self._wait(delay)

    async def _renew_or_register(self) -> None:
        """Renew the registration held, or register (again)."""
        if self.address is not None:
            request = registration_pb2.RenewRequest(
                service_name=self._request.service_name, agent_address=self.address
            )
            try:
                await self._stub.Renew(request, timeout=CALL_TIMEOUT_SECONDS)
                self.renewals += 1
                return
            except grpc.aio.AioRpcError as error:
                if error.code() is not grpc.StatusCode.NOT_FOUND:
                    raise
                _LOG.info(
                    "%s no longer holds the registration (%s): registering again",
                    self.options.aggregator,
                    _why(error),
                )
                self.address = None
        answer = await self._stub.Register(self._request, timeout=CALL_TIMEOUT_SECONDS)
        self.address = answer.agent_address
        self.renewals += 1
        lease = to_seconds(answer.lease)
        self._interval = min(self.options.renew_seconds, lease / RENEWALS_PER_LEASE or math.inf)
        self._say(
            f"registered with {self.options.aggregator} as {self._request.service_name!r} at "
            f"{self.address} (lease {lease:g} s, renewed every {self._interval:g} s)",
            logging.INFO,
            "registered",
        )

    def _say(self, text: str, level: int, state: str) -> None:
        """Log `text` when the state differs from the last one said."""
        if state != self._said:
            _LOG.log(level, "%s", text)
            self._said = state


def _bound_address(host: str, port: int) -> str:
    """The agent's own address when it is bound to one host; "" when bound to every one."""
    if host in WILDCARD_TO_LOOPBACK:
        return ""
    return format_host_port(host, port)


def _why(error: grpc.aio.AioRpcError) -> str:
    """`CODE: details` of a failed call."""
    details = error.details() or ""
    return f"{error.code().name}: {details}" if details else error.code().name
