"""The aggregator's live fleet as the gateway last read it, for /metrics and /health/detailed.

`FleetStatusPoller` asks GetFleet every `POLL_SECONDS` (on the alert hub's channel), never
per scrape: `/metrics` (`metricsmesh_config_last_reload_successful`, each source's
`metricsmesh_fleet_source_up`) and `/health/detailed` (`fleet`: each source and why its last
read failed, the conflicts) read what it holds. `get_fleet()` is the one GetFleet call, the
http_sd endpoint's too (`gateway._fleet_routes`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import grpc
from metricsmesh.v1 import fleet_pb2

from gateway._alerts import AlertHub
from gateway._errors import GatewayError

_LOG = logging.getLogger("gateway.fleet")

POLL_SECONDS = 5.0
"""Seconds between two GetFleet calls of the status poller."""
CALL_TIMEOUT_SECONDS = 5.0
SERVICES_KIND = fleet_pb2.FLEET_SOURCE_KIND_SERVICES


class FleetStatusPoller:
    """The latest GetFleet answer (see the module doc); `start()`, `stop()`."""

    def __init__(self, hub: AlertHub, *, poll_seconds: float = POLL_SECONDS) -> None:
        self._hub = hub
        self._poll_seconds = poll_seconds
        self.fleet: fleet_pb2.GetFleetResponse | None = None
        """The last answer (None until one came)."""
        self.error = "not asked yet"
        """Why there is no answer ("" when there is one)."""
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start polling in the running loop (a second call is harmless)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="fleet status")

    async def stop(self) -> None:
        """Stop polling; a second call is harmless."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    @property
    def reload_problem(self) -> str | None:
        """Why the mesh file's last reload failed (None: it succeeded, or nothing is known)."""
        if self.fleet is None:
            return None
        for source in self.fleet.sources:
            if source.kind == SERVICES_KIND and source.error:
                return source.error
        return None

    async def poll(self) -> None:
        """Ask once and keep the answer (or why there is none)."""
        try:
            self.fleet = await get_fleet(self._hub)
            self.error = ""
        except GatewayError as error:
            self.fleet, self.error = None, str(error)
        except grpc.aio.AioRpcError as error:
            code = error.code()
            self.fleet, self.error = None, f"GetFleet: {code.name if code else 'UNKNOWN'}"

    def health(self) -> dict[str, Any]:
        """The `fleet` part of /health/detailed."""
        fleet = self.fleet
        if fleet is None:
            return {"state": "unknown", "error": self.error}
        return {
            "state": "degraded" if any(source.error for source in fleet.sources) else "ok",
            "last_reload_successful": self.reload_problem is None,
            "services": len(fleet.services),
            "sources": [
                {
                    "kind": fleet_pb2.FleetSourceKind.Name(source.kind)
                    .removeprefix("FLEET_SOURCE_KIND_")
                    .lower(),
                    "name": source.name,
                    "services": source.service_count,
                    "error": source.error or None,
                }
                for source in fleet.sources
            ],
            "conflicts": list(fleet.conflicts),
        }

    async def _run(self) -> None:
        while True:
            try:
                await self.poll()
            except Exception:  # a bug must not end the polling
                _LOG.exception("fleet status poll failed")
            await asyncio.sleep(self._poll_seconds)


async def get_fleet(hub: AlertHub) -> fleet_pb2.GetFleetResponse:
    """GetFleet on the hub's channel; GatewayError or AioRpcError when it fails."""
    stub: Any = hub.stub  # an aio channel's stub: its calls are awaitable
    response: fleet_pb2.GetFleetResponse = await stub.GetFleet(
        fleet_pb2.GetFleetRequest(), timeout=CALL_TIMEOUT_SECONDS
    )
    return response
