"""What every route shares: the settings, the snapshot hub, the error shape and client counts."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

from gateway._settings import GatewaySettings
from gateway._upstream import SnapshotHub
from gateway._views import SnapshotEntry, iso_utc


@dataclass
class ClientStats:
    """Counts of connected streaming clients and of what was sent to them."""

    sse_clients: int = 0
    ws_clients: int = 0
    sse_events_sent: int = 0
    ws_messages_sent: int = 0
    ws_clients_total: int = 0


@dataclass
class GatewayState:
    """The gateway's shared state, one per app."""

    settings: GatewaySettings
    hub: SnapshotHub
    started: float = field(default_factory=time.monotonic)
    stats: ClientStats = field(default_factory=ClientStats)

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
        age = entry.age(hub.clock())
        cause = hub.error or (
            "the subscription is open but no round completed; check the aggregator's log"
        )
        return (
            f"the latest snapshot (sequence {entry.sequence}) is {age:.1f} s old, older than "
            f"stale_after_seconds={stale_after:g}: {cause}"
        )

    def error_payload(self, started: float) -> dict[str, object]:
        """Story 23.2's error shape (plus the last sequence and its age when one exists)."""
        entry = self.hub.latest
        now = self.hub.clock()
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
            "timestamp": iso_utc(time.time()),
            "error": self.problem(),
            "collection_time_ms": round((time.monotonic() - started) * 1000.0),
            "sequence": entry.sequence if entry is not None else None,
            "snapshot_age_ms": round(entry.age(now) * 1000.0) if entry is not None else None,
        }

    def error_body(self, started: float) -> bytes:
        """The error shape as JSON bytes."""
        return json.dumps(self.error_payload(started), separators=(",", ":")).encode()
