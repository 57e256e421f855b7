"""The fleet's RPCs of AggregatorService: GetFleet and ReloadRegistry.

GetFleet reads what the fleet holds (never a source). ReloadRegistry does what SIGHUP does,
at once: every source read again, the merge applied from the next round; it needs the
`write` scope under `[auth]` (`aggregator._auth.WRITE_METHODS`). When a source could not be
read the answer is FAILED_PRECONDITION naming it and why: its last good services stay,
while what the other sources changed is applied (and logged).
"""

from __future__ import annotations

from typing import Any

import grpc
from metricsmesh.v1 import fleet_pb2

from aggregator._fleet.fleet import Fleet
from aggregator._fleet.source import SourceKind, SourceStatus
from mesh_common.grpc_input import Implementation
from mesh_common.wire_time import set_seconds

Context = grpc.aio.ServicerContext[Any, Any]

KINDS = {
    SourceKind.SERVICES: fleet_pb2.FLEET_SOURCE_KIND_SERVICES,
    SourceKind.FILE_SD: fleet_pb2.FLEET_SOURCE_KIND_FILE_SD,
    SourceKind.HTTP_SD: fleet_pb2.FLEET_SOURCE_KIND_HTTP_SD,
    SourceKind.REGISTRATIONS: fleet_pb2.FLEET_SOURCE_KIND_REGISTRATIONS,
}
"""Each source kind's wire value."""


class FleetServicer:
    """GetFleet and ReloadRegistry over one `Fleet`."""

    def __init__(self, fleet: Fleet) -> None:
        self._fleet = fleet

    def implementations(self) -> dict[str, Implementation]:
        """The fleet's methods of AggregatorService by .proto name."""
        return {"GetFleet": self.get_fleet, "ReloadRegistry": self.reload_registry}

    async def get_fleet(
        self, request: fleet_pb2.GetFleetRequest, context: Context
    ) -> fleet_pb2.GetFleetResponse:
        """The live registry, its sources and their conflicts."""
        merged = self._fleet.merged
        response = fleet_pb2.GetFleetResponse(conflicts=merged.conflicts)
        for entry in merged.registry:
            owner = merged.owners[entry.name]
            response.services.add(
                service_name=entry.name,
                service_type=entry.type,
                data_source=entry.data_source,
                port=entry.port,
                agent_addresses=entry.addresses,
                lapsed_agent_addresses=entry.lapsed,
                source=owner.name,
                source_kind=KINDS[owner.kind],
            )
        for status in self._fleet.statuses:
            _source(response.sources.add(), status)
        return response

    async def reload_registry(
        self, request: fleet_pb2.ReloadRegistryRequest, context: Context
    ) -> fleet_pb2.ReloadRegistryResponse:
        """Read every source now; FAILED_PRECONDITION naming each source that failed."""
        change = await self._fleet.reload()
        failed = [status for status in self._fleet.statuses if status.error]
        if failed:
            reasons = "; ".join(f"{status.label}: {status.error}" for status in failed)
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"not every source could be read (their last good services stay): {reasons}",
            )
        return fleet_pb2.ReloadRegistryResponse(
            added_services=change.added,
            removed_services=change.removed,
            changed_services=change.changed,
            service_count=change.services,
        )


def _source(message: fleet_pb2.FleetSource, status: SourceStatus) -> None:
    message.kind = KINDS[status.kind]
    message.name = status.name
    message.error = status.error
    message.service_count = status.services
    if status.read_time is not None:
        set_seconds(message.read_time, status.read_time)
