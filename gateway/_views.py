"""Snapshot protos to the REST/SSE/WebSocket JSON shapes, serialized once per snapshot and view.

A `View` names what a client asked for (services, types, row fields). `SnapshotEntry` wraps one
snapshot as received and caches, per view, the JSON body without its final `snapshot_age_ms`
field: serving a request is then one bytes concatenation (`entry.body(view, age_ms)`), the
snapshot is never re-encoded per request.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from google.protobuf import duration_pb2, timestamp_pb2
from metricsmesh.v1 import snapshot_pb2

from gateway._models import ServiceMetrics

ROW_FIELDS: tuple[str, ...] = tuple(ServiceMetrics.model_fields)
"""Every field of a service row, in the story's order followed by the additive ones."""
ROW_KEYS_ALWAYS = ("service_name", "status")
"""Row fields kept whatever `fields=` asks for, so a row can always be identified."""
STATUS_NAMES = {
    snapshot_pb2.SERVICE_STATUS_ACTIVE: "active",
    snapshot_pb2.SERVICE_STATUS_INACTIVE: "inactive",
    snapshot_pb2.SERVICE_STATUS_ERROR: "error",
}
MAX_CACHED_VIEWS = 64
"""Distinct views cached per snapshot; further ones are encoded per use (still correct)."""


def iso_utc(seconds: float) -> str:
    """ISO 8601 UTC with milliseconds and a `Z`, e.g. `2025-01-17T10:30:00.123Z`."""
    moment = datetime.fromtimestamp(seconds, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def timestamp_seconds(stamp: timestamp_pb2.Timestamp) -> float:
    """A protobuf Timestamp as epoch seconds."""
    return stamp.seconds + stamp.nanos / 1e9


def duration_seconds(span: duration_pb2.Duration) -> float:
    """A protobuf Duration as seconds."""
    return span.seconds + span.nanos / 1e9


@dataclass(frozen=True, slots=True)
class View:
    """Which part of a snapshot a client wants; the default view is the whole snapshot."""

    services: frozenset[str] = frozenset()
    """Keep only rows with these names; empty keeps all."""
    types: frozenset[str] = frozenset()
    """Keep only rows with these service types; empty keeps all."""
    fields: tuple[str, ...] = ()
    """Keep only these row fields (plus service_name and status); empty keeps all."""

    def keeps(self, row: dict[str, Any]) -> bool:
        """Whether a row passes the service and type filters."""
        if self.services and row["service_name"] not in self.services:
            return False
        return not (self.types and row["service_type"] not in self.types)

    def project(self, row: dict[str, Any]) -> dict[str, Any]:
        """The row limited to the chosen fields."""
        if not self.fields:
            return row
        return {
            key: value for key, value in row.items() if key in self.fields or key in ROW_KEYS_ALWAYS
        }


WHOLE = View()


def row_to_dict(row: snapshot_pb2.ServiceRow) -> dict[str, Any]:
    """One ServiceRow in the story's row shape (plus the additive fields)."""
    eps = row.events_per_second
    return {
        "service_name": row.service_name,
        "port": row.port,
        "service_type": row.service_type,
        "status": STATUS_NAMES.get(row.status, "error"),
        "events_per_second": round(eps, 4),
        "events_per_hour": round(row.events_per_hour, 2),
        "total_events": row.total_events,
        "uptime_seconds": round(duration_seconds(row.uptime), 3),
        "last_activity": (
            iso_utc(timestamp_seconds(row.last_event_time))
            if row.HasField("last_event_time")
            else None
        ),
        "error_message": row.error_message or None,
        "data_source": row.data_source or None,
        "call_latency_ms": round(duration_seconds(row.call_latency) * 1000.0, 3),
    }


class SnapshotEntry:
    """One snapshot as the gateway received it, with its rows converted and bodies cached."""

    __slots__ = (
        "_bodies",
        "_extra",
        "_lock",
        "age_at_receipt",
        "received",
        "rows",
        "sequence",
        "snapshot",
        "take_time",
    )

    def __init__(self, snapshot: snapshot_pb2.Snapshot, received: float) -> None:
        self.snapshot = snapshot
        self.sequence = snapshot.sequence
        self.received = received
        """Monotonic time of receipt (the hub's clock)."""
        self.age_at_receipt = duration_seconds(snapshot.age)
        self.take_time = timestamp_seconds(snapshot.take_time)
        self.rows = [row_to_dict(row) for row in snapshot.services]
        self._bodies: dict[View, bytes] = {}
        self._extra: dict[Hashable, bytes] = {}
        self._lock = threading.Lock()

    def age(self, now: float) -> float:
        """Seconds since the round started, measured without trusting wall clocks."""
        return self.age_at_receipt + max(0.0, now - self.received)

    def payload(self, view: View = WHOLE) -> dict[str, Any]:
        """The REST body for a view, without `snapshot_age_ms` (it depends on the moment)."""
        snap = self.snapshot
        rows = [row for row in self.rows if view.keeps(row)]
        active = [row for row in rows if row["status"] == "active"]
        if view.services or view.types:
            eps = round(sum(row["events_per_second"] for row in active), 4)
            eph = round(sum(row["events_per_hour"] for row in active), 2)
            total = sum(row["total_events"] for row in active)
            sources = sorted({row["data_source"] for row in active if row["data_source"]})
        else:
            eps = round(snap.events_per_second, 4)
            eph = round(snap.events_per_hour, 2)
            total = snap.total_events
            sources = list(snap.data_sources_active)
        return {
            "events_per_second": eps,
            "events_per_hour": eph,
            "active_apis": [view.project(row) for row in active],
            "inactive_apis": len(rows) - len(active),
            "data_sources_active": sources,
            "timestamp": iso_utc(self.take_time),
            "collection_time_ms": round(duration_seconds(snap.round_duration) * 1000.0),
            "inactive_services": [view.project(row) for row in rows if row["status"] != "active"],
            "total_events": total,
            "sequence": self.sequence,
            "services_answered": snap.services_answered,
            "services_total": snap.services_total,
        }

    def body_head(self, view: View = WHOLE) -> bytes:
        """The JSON body for a view up to (excluding) its closing brace; cached per view."""
        head = self._bodies.get(view)
        if head is None:
            encoded = json.dumps(self.payload(view), separators=(",", ":"), ensure_ascii=False)
            head = encoded[:-1].encode()
            with self._lock:
                if len(self._bodies) < MAX_CACHED_VIEWS:
                    self._bodies[view] = head
        return head

    def cached(self, key: Hashable, build: Callable[[], bytes]) -> bytes:
        """Bytes built once per snapshot and key (e.g. an SSE frame), shared by every client."""
        value = self._extra.get(key)
        if value is None:
            value = build()
            with self._lock:
                if len(self._extra) < MAX_CACHED_VIEWS:
                    self._extra[key] = value
        return value

    def body(self, view: View, now: float) -> bytes:
        """The complete JSON body for a view, `snapshot_age_ms` measured at `now`."""
        age_ms = round(self.age(now) * 1000.0)
        return self.body_head(view) + b',"snapshot_age_ms":' + str(age_ms).encode() + b"}"
