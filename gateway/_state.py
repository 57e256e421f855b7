"""What every route shares: settings, clocks, hubs, the history status, the error shape, counts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gateway._alerts import AlertHub
from gateway._fleet_status import FleetStatusPoller
from gateway._history_status import HistoryStatusPoller
from gateway._settings import GatewaySettings
from gateway._upstream import SnapshotHub
from gateway._views import SnapshotEntry, json_bytes
from mesh_common.clocks import Clocks
from mesh_common.views import SNAPSHOT_AGE_FIELD
from mesh_common.wire_time import iso_utc


@dataclass
class ClientStats:
    """Counts of connected streaming clients and of what was sent to them."""

    sse_clients: int = 0
    ws_clients: int = 0
    ws_messages_sent: int = 0
    query_requests: int = 0
    """History queries answered (seed 003's `query_requests_total`: `gateway._query_count`)."""


@dataclass
class GatewayState:
    """The gateway's shared state, one per app."""

    settings: GatewaySettings
    hub: SnapshotHub
    clocks: Clocks
    alerts: AlertHub
    """The alert subscription: the current alerts and their changes."""
    history: HistoryStatusPoller
    """The aggregator's history status, polled every few seconds."""
    fleet: FleetStatusPoller
    """The aggregator's live fleet and how its sources read, polled every few seconds."""
    started_at: float = 0.0
    """Monotonic instant at which the gateway started."""
    stats: ClientStats = field(default_factory=ClientStats)

    def uptime(self) -> float:
        """Seconds since the gateway started."""
        return self.clocks.monotonic() - self.started_at

    def fresh(self) -> SnapshotEntry | None:
        """The latest snapshot if it is fresh enough to serve, else None."""
        return self.hub.fresh(self.settings.stale_after_seconds)

    def problem(self) -> str:
        """Why there is no fresh snapshot, in words a user can act on."""
        hub, stale_after = self.hub, self.settings.stale_after_seconds
        entry = hub.latest
        if entry is None:
            return hub.error or (
                f"no snapshot received yet from the aggregator at {hub.target} "
                f"(subscription {hub.state})"
            )
        age = entry.age(self.clocks.monotonic())
        cause = hub.error or (
            "the subscription is open but no round completed; check the aggregator's log"
        )
        return (
            f"the latest snapshot (sequence {entry.sequence}) is {age:.1f} s old, older than "
            f"stale_after_seconds={stale_after:g}: {cause}"
        )

    def error_payload(self, started_at: float) -> dict[str, Any]:
        """Story 23.2's error shape for a request that began at monotonic `started_at`.

        `collection_time_ms` is the time this request took; the last sequence and its age
        are added when a snapshot was ever received.
        """
        entry = self.hub.latest
        now = self.clocks.monotonic()
        total = (
            entry.snapshot.services_total
            if entry is not None and entry.snapshot.services_total
            else self.settings.services_configured
        )
        return {
            "events_per_second": 0,
            "events_per_hour": 0,
            "active_apis": [],
            "inactive_apis": total,
            "data_sources_active": [],
            "timestamp": iso_utc(self.clocks.wall()),
            "error": self.problem(),
            "collection_time_ms": round((self.clocks.monotonic() - started_at) * 1000.0),
            "sequence": entry.sequence if entry is not None else None,
            SNAPSHOT_AGE_FIELD: entry.age_ms(now) if entry is not None else None,
        }

    def error_body(self, started_at: float) -> bytes:
        """The error shape as JSON bytes."""
        return json_bytes(self.error_payload(started_at))
