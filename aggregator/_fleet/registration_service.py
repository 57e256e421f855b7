"""RegistrationService: Register, Renew and Deregister over `Registrations` and the fleet.

With `[discovery] accept_registrations` off there is no `Registrations` source, and every
call is PERMISSION_DENIED naming the setting. Under `[auth]` each method needs the `write`
scope (`aggregator._auth.WRITE_METHODS`).

The address the aggregator calls is the request's `advertised_address`, else the host the
call came from (the gRPC peer, as the aggregator sees it) at `agent_port`.

**A name another source has is refused** (ALREADY_EXISTS naming that source): a registration
never adds an instance to a service the mesh file declares or discovery found, nor takes an
agent address one of them calls. That is the fleet's first-source-wins rule (`merge.py`),
told to the agent at once rather than left as a conflict of the merge; a service an operator
wrote down is never changed by an agent. (A source that names the service later still wins:
the merge drops the registered entry and lists the conflict.)

Refusals: INVALID_ARGUMENT with a `google.rpc.BadRequest` field violation naming the field;
ALREADY_EXISTS; RESOURCE_EXHAUSTED naming `max_registrations`; NOT_FOUND for the renewal of
a registration the aggregator does not hold (the agent registers again). Every message is
bounded (`mesh_common.bounded`).
"""

from __future__ import annotations

import urllib.parse
from typing import Any, NoReturn

import grpc
from metricsmesh.v1 import registration_pb2

from aggregator._alerts.service import invalid_argument_status
from aggregator._errors import (
    RegistrationInvalid,
    RegistrationRefused,
    RegistrationsFull,
    RegistrationTaken,
    RegistrationUnknown,
)
from aggregator._fleet.fleet import Fleet
from aggregator._fleet.merge import Merged
from aggregator._fleet.registration import Registration, registration
from aggregator._fleet.registrations import Registrations
from aggregator._fleet.source import SourceKind
from mesh_common.addresses import format_host_port, is_port
from mesh_common.bounded import quote, shorten
from mesh_common.grpc_input import Implementation, peer_host
from mesh_common.wire_time import set_seconds

Context = grpc.aio.ServicerContext[Any, Any]

SERVICE = registration_pb2.DESCRIPTOR.services_by_name["RegistrationService"]
"""The service's descriptor (its methods, for `service_handler`)."""
SERVICE_NAME = SERVICE.full_name
"""`metricsmesh.v1.RegistrationService`, for health and reflection."""

_CODES: dict[type[RegistrationRefused], grpc.StatusCode] = {
    RegistrationTaken: grpc.StatusCode.ALREADY_EXISTS,
    RegistrationsFull: grpc.StatusCode.RESOURCE_EXHAUSTED,
    RegistrationUnknown: grpc.StatusCode.NOT_FOUND,
}
OFF = (
    "registrations are not accepted: set [discovery] accept_registrations = true in the "
    "aggregator's mesh file to let agents register themselves"
)


class RegistrationServicer:
    """RegistrationService's methods over the fleet's `Registrations` (None: refused)."""

    def __init__(self, fleet: Fleet, registrations: Registrations | None) -> None:
        self._fleet = fleet
        self._registrations = registrations
        self._claims: tuple[Merged | None, dict[str, str]] = (None, {})

    def implementations(self) -> dict[str, Implementation]:
        """The methods by .proto name."""
        return {"Register": self.register, "Renew": self.renew, "Deregister": self.deregister}

    async def register(
        self, request: registration_pb2.RegisterRequest, context: Context
    ) -> registration_pb2.RegisterResponse:
        """Hold the calling agent's registration with a fresh lease (module docstring)."""
        registrations = await self._accepting(context)
        try:
            new = registration(
                request.service_name,
                await _agent_address(request, context),
                service_type=request.service_type,
                data_source=request.data_source,
                port=request.port,
            )
            self._check_claims(new)
            created = registrations.register(new)
        except RegistrationRefused as error:
            await _refuse(context, error)
        response = registration_pb2.RegisterResponse(agent_address=new.address, created=created)
        set_seconds(response.lease, registrations.settings.lease_seconds)
        return response

    async def renew(
        self, request: registration_pb2.RenewRequest, context: Context
    ) -> registration_pb2.RenewResponse:
        """Extend a registration's lease; NOT_FOUND when it is not held."""
        registrations = await self._accepting(context)
        try:
            registrations.renew(request.service_name, request.agent_address)
        except RegistrationRefused as error:
            await _refuse(context, error)
        response = registration_pb2.RenewResponse()
        set_seconds(response.lease, registrations.settings.lease_seconds)
        return response

    async def deregister(
        self, request: registration_pb2.DeregisterRequest, context: Context
    ) -> registration_pb2.DeregisterResponse:
        """Remove a registration at once (harmless when it is not held)."""
        registrations = await self._accepting(context)
        removed = registrations.deregister(request.service_name, request.agent_address)
        return registration_pb2.DeregisterResponse(removed=removed)

    async def _accepting(self, context: Context) -> Registrations:
        if self._registrations is None:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, OFF)
            raise AssertionError("abort returned")  # pragma: no cover (abort always raises)
        return self._registrations

    def _check_claims(self, new: Registration) -> None:
        """RegistrationTaken when another source has the name or calls the address."""
        merged = self._fleet.merged
        owner = merged.owners.get(new.service_name)
        if owner is not None and owner.kind is not SourceKind.REGISTRATIONS:
            raise RegistrationTaken(
                f"service {quote(new.service_name)} is {owner.label}'s: a registration adds "
                "services of its own, never an instance to another source's service (register "
                "under another name, or list this agent there)"
            )
        other = self._addresses(merged).get(new.address)
        if other is not None:
            raise RegistrationTaken(
                f"agent address {new.address} is called for service {quote(other)} of "
                f"{merged.owners[other].label}: one agent answers for one service"
            )

    def _addresses(self, merged: Merged) -> dict[str, str]:
        """The agent addresses of the other sources' services (kept per merged registry)."""
        if self._claims[0] is not merged:
            claims = {
                address: entry.name
                for entry in merged.registry
                if merged.owners[entry.name].kind is not SourceKind.REGISTRATIONS
                for address in entry.addresses
            }
            self._claims = (merged, claims)
        return self._claims[1]


async def _agent_address(request: registration_pb2.RegisterRequest, context: Context) -> str:
    """The address to call: advertised_address, else the caller's host at agent_port."""
    if request.advertised_address:
        return request.advertised_address
    if not is_port(request.agent_port):
        await _refuse(
            context,
            RegistrationInvalid(
                "agent_port",
                f"{request.agent_port} is not in 1..65535 (send the agent's port, or an "
                "advertised_address)",
            ),
        )
    peer = urllib.parse.unquote(context.peer())
    if not peer.startswith(("ipv4:", "ipv6:")):
        await _refuse(
            context,
            RegistrationInvalid(
                "advertised_address",
                f"the call comes from {quote(peer, 80)}, not an IP address: send an "
                "advertised_address",
            ),
        )
    return format_host_port(peer_host(peer), request.agent_port)


async def _refuse(context: Context, error: RegistrationRefused) -> NoReturn:
    """End the call with the status of `error` (a field violation for an invalid field)."""
    text = shorten(str(error))
    if isinstance(error, RegistrationInvalid):
        refusal = invalid_argument_status(error.field, text, text)
        await context.abort(refusal.code, refusal.details, refusal.trailing_metadata)
    code = next(code for kind, code in _CODES.items() if isinstance(error, kind))
    await context.abort(code, text)
    raise AssertionError("abort returned")  # pragma: no cover (abort always raises)
