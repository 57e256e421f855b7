"""The edge: `SnapshotData` to the wire `Snapshot`, with a request's filter and read mask.

A `View` is one request's compiled filter (service names, types, read mask), validated against
the registry and the Snapshot descriptor. `View.render` returns the serialized message for a
snapshot at a send instant; the filtered, masked message is built once per snapshot and view
and shared by every subscriber with the same view, only the ages are set per send.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from google.protobuf.duration_pb2 import Duration
from metricsmesh.v1 import aggregator_pb2, event_rate_pb2, snapshot_pb2

from aggregator._model import Health, Row, SnapshotData, Status
from aggregator.config import Registry

_STATUS = {
    Status.ACTIVE: snapshot_pb2.SERVICE_STATUS_ACTIVE,
    Status.INACTIVE: snapshot_pb2.SERVICE_STATUS_INACTIVE,
    Status.ERROR: snapshot_pb2.SERVICE_STATUS_ERROR,
}
_HEALTH = {
    Health.UNKNOWN: snapshot_pb2.AGENT_HEALTH_UNSPECIFIED,
    Health.SERVING: snapshot_pb2.AGENT_HEALTH_SERVING,
    Health.NOT_SERVING: snapshot_pb2.AGENT_HEALTH_NOT_SERVING,
    Health.SERVICE_UNKNOWN: snapshot_pb2.AGENT_HEALTH_SERVICE_UNKNOWN,
    Health.UNREACHABLE: snapshot_pb2.AGENT_HEALTH_UNREACHABLE,
}
_SNAPSHOT_FIELDS = frozenset(snapshot_pb2.Snapshot.DESCRIPTOR.fields_by_name)
_ROW_FIELDS = frozenset(snapshot_pb2.ServiceRow.DESCRIPTOR.fields_by_name)


class FilterError(ValueError):
    """A request's filter names an unknown service or an unknown field path."""


def _nanos(seconds: float) -> int:
    return round(seconds * 1e9)


def row_to_proto(row: Row) -> snapshot_pb2.ServiceRow:
    """The wire row for one `Row` (ages unset: they are set when sending)."""
    entry = row.entry
    message = snapshot_pb2.ServiceRow(
        service_name=entry.name,
        service_type=entry.type,
        data_source=entry.data_source,
        host=entry.host,
        port=entry.port,
        agent_port=entry.agent_port,
        status=_STATUS[row.status],
        health=_HEALTH[row.health],
        error_message=row.error_message,
        consecutive_failures=row.consecutive_failures,
    )
    message.call_latency.FromNanoseconds(_nanos(row.call_latency))
    figures = row.figures
    if figures is not None:
        message.events_per_second = figures.events_per_second
        message.events_per_hour = figures.events_per_hour
        message.total_events = figures.total_events
        message.uptime.FromNanoseconds(_nanos(figures.uptime_seconds))
        if figures.answer:
            detail = event_rate_pb2.GetEventRateResponse.FromString(figures.answer)
            if detail.HasField("last_event_time"):
                message.last_event_time.CopyFrom(detail.last_event_time)
            if detail.HasField("read_time"):
                message.read_time.CopyFrom(detail.read_time)
            message.kinds.extend(detail.kinds)
    return message


def snapshot_to_proto(snapshot: SnapshotData, rows: Iterable[Row]) -> snapshot_pb2.Snapshot:
    """The wire snapshot holding `rows` (a subset of snapshot.rows); ages unset."""
    message = snapshot_pb2.Snapshot(
        sequence=snapshot.sequence,
        services_total=snapshot.services_total,
        services_answered=snapshot.services_answered,
        active_count=snapshot.active_count,
        inactive_count=snapshot.inactive_count,
        error_count=snapshot.error_count,
        events_per_second=snapshot.events_per_second,
        events_per_hour=snapshot.events_per_hour,
        total_events=snapshot.total_events,
        data_sources_active=snapshot.data_sources_active,
    )
    message.take_time.FromNanoseconds(_nanos(snapshot.take_time))
    message.round_duration.FromNanoseconds(_nanos(snapshot.round_duration))
    message.services.extend(row_to_proto(row) for row in rows)
    return message


AGE_RESOLUTION_SECONDS = 0.002
"""Serialized bytes are reused for sends this close together (their ages differ by less)."""


@dataclass(slots=True)
class _Rendered:
    message: snapshot_pb2.Snapshot
    received: tuple[float | None, ...]
    serialized: bytes = b""
    serialized_at: float = float("-inf")


class View:
    """One request's filter, compiled; renders snapshots for it."""

    def __init__(self, registry: Registry, request: aggregator_pb2.SnapshotFilter) -> None:
        """Validate `request` against `registry`; raises FilterError naming the problem."""
        unknown = [name for name in request.service_names if name not in registry.names]
        if unknown:
            raise FilterError(
                f"unknown service name {unknown[0]!r} in filter.service_names; known: "
                f"{', '.join(registry.names)}"
            )
        self._names = frozenset(request.service_names)
        self._types = frozenset(request.service_types)
        top, rows = _compile_mask(request.read_mask.paths if request.HasField("read_mask") else ())
        self._top = top
        self._row_fields = rows
        self.key = (
            tuple(sorted(self._names)),
            tuple(sorted(self._types)),
            None if top is None else tuple(sorted(top)),
            None if rows is None else tuple(sorted(rows)),
        )
        """Views with equal keys render equal messages (the render cache is keyed on it)."""

    def keeps(self, row: Row) -> bool:
        """True when the filter keeps `row`."""
        entry = row.entry
        return (not self._names or entry.name in self._names) and (
            not self._types or entry.type in self._types
        )

    def build(
        self, snapshot: SnapshotData
    ) -> tuple[snapshot_pb2.Snapshot, tuple[float | None, ...]]:
        """The filtered, masked message (ages unset) and each kept row's receive instant."""
        rows = [row for row in snapshot.rows if self.keeps(row)]
        full = snapshot_to_proto(snapshot, rows)
        received = tuple(row.received_at for row in rows)
        if self._top is None:
            return full, received
        masked = snapshot_pb2.Snapshot()
        for name in self._top:
            if name != "services":
                _copy_field(full, masked, name)
        if "services" not in self._top:
            return masked, ()
        if self._row_fields is None:
            masked.services.extend(full.services)
            return masked, received
        for source in full.services:
            target = masked.services.add()
            for name in self._row_fields:
                _copy_field(source, target, name)
        return masked, received

    def render(self, snapshot: SnapshotData, now: float, cache: RenderCache) -> bytes:
        """The serialized message for `snapshot` sent at monotonic instant `now`.

        Ages are those at `now`, to within AGE_RESOLUTION_SECONDS: subscribers woken by the
        same round share one serialization instead of paying one each.
        """
        rendered = cache.get(snapshot, self)
        if 0.0 <= now - rendered.serialized_at < AGE_RESOLUTION_SECONDS:
            return rendered.serialized
        message = rendered.message
        if self._top is None or "age" in self._top:
            message.age.FromNanoseconds(_nanos(max(0.0, now - snapshot.take_monotonic)))
        if self._row_fields is None or "age" in self._row_fields:
            for row, received in zip(message.services, rendered.received, strict=False):
                if received is not None:
                    row.age.FromNanoseconds(_nanos(max(0.0, now - received)))
        rendered.serialized = message.SerializeToString()
        rendered.serialized_at = now
        return rendered.serialized


class RenderCache:
    """Built messages per (view key, snapshot sequence), kept for the latest sequences only."""

    def __init__(self, keep_sequences: int = 2) -> None:
        self._keep = keep_sequences
        self._items: dict[tuple[object, int], _Rendered] = {}

    def get(self, snapshot: SnapshotData, view: View) -> _Rendered:
        """The built message of `view` for `snapshot`, building it on first use."""
        key = (view.key, snapshot.sequence)
        rendered = self._items.get(key)
        if rendered is None:
            message, received = view.build(snapshot)
            rendered = _Rendered(message, received)
            floor = snapshot.sequence - self._keep
            if len(self._items) > 64:
                self._items = {k: v for k, v in self._items.items() if k[1] > floor}
            self._items[key] = rendered
        return rendered


def _compile_mask(paths: Sequence[str]) -> tuple[frozenset[str] | None, frozenset[str] | None]:
    """(top-level fields, row fields) of a read mask; None means "everything"."""
    if not paths:
        return None, None
    top: set[str] = set()
    rows: set[str] = set()
    whole_rows = False
    for path in paths:
        head, _, rest = path.partition(".")
        if head not in _SNAPSHOT_FIELDS:
            raise FilterError(
                f"unknown read_mask path {path!r}: Snapshot has no field {head!r}; fields: "
                f"{', '.join(sorted(_SNAPSHOT_FIELDS))}"
            )
        top.add(head)
        if head == "services":
            if not rest:
                whole_rows = True
            elif rest in _ROW_FIELDS:
                rows.add(rest)
            else:
                raise FilterError(
                    f"unknown read_mask path {path!r}: ServiceRow has no field {rest!r}; "
                    f"fields: {', '.join(sorted(_ROW_FIELDS))}"
                )
        elif rest:
            raise FilterError(
                f"unsupported read_mask path {path!r}: select {head!r} as a whole (only "
                "services.<field> may name a sub-field)"
            )
    return frozenset(top), None if whole_rows else frozenset(rows)


def _copy_field(source: object, target: object, name: str) -> None:
    descriptor = source.DESCRIPTOR.fields_by_name[name]  # type: ignore[attr-defined]
    value = getattr(source, name)
    if descriptor.is_repeated:
        getattr(target, name).extend(value)
    elif descriptor.message_type is not None:
        if source.HasField(name):  # type: ignore[attr-defined]
            getattr(target, name).CopyFrom(value)
    else:
        setattr(target, name, value)


def to_seconds(duration: Duration) -> float:
    """Seconds of a Duration."""
    return duration.ToNanoseconds() / 1e9


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        bits = value & 0x7F
        value >>= 7
        if value:
            out.append(bits | 0x80)
        else:
            out.append(bits)
            return bytes(out)


_SNAPSHOT_TAG = b"\x0a"  # field 1 (snapshot), wire type 2, in both response messages
_REPLAYED_TRUE = b"\x10\x01"  # field 2 (replayed), varint 1


def wrap_response(snapshot: bytes, replayed: bool = False) -> bytes:
    """A serialized Get/StreamSnapshotsResponse holding the serialized `snapshot`.

    Both responses carry the snapshot as field 1; StreamSnapshotsResponse adds `replayed`
    as field 2. Wrapping the bytes avoids parsing and re-serializing the snapshot.
    """
    body = _SNAPSHOT_TAG + _varint(len(snapshot)) + snapshot
    return body + _REPLAYED_TRUE if replayed else body
