"""The edge: `SnapshotData` to the wire `Snapshot`, with a request's filter and read mask.

A `Projection` is the part of a snapshot one request selects (service names, types, read
mask), compiled and validated against the registry and the Snapshot descriptor.
`Projection.render` returns a serialized response for a snapshot at a send instant: the
filtered, masked response message is built once per snapshot, projection and response type and
shared by every subscriber with the same projection; only the ages are set per send.
Everything is built with the generated classes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from google.protobuf.internal.containers import RepeatedCompositeFieldContainer
from google.protobuf.message import Message
from metricsmesh.v1 import aggregator_pb2, event_rate_pb2, snapshot_pb2

from aggregator._errors import RetagError
from aggregator._ingest.wire import to_pushed_value
from aggregator._model import Health, InstanceData, RowData, SnapshotData
from aggregator._retag import Retag
from mesh_common import latency
from mesh_common.bounded import quote, quote_list
from mesh_common.errors import FilterError
from mesh_common.filters import ServiceFilter, unknown_message
from mesh_common.registry import Registry
from mesh_common.status import to_wire
from mesh_common.wire_time import set_seconds

_HEALTH = {
    Health.UNKNOWN: snapshot_pb2.AGENT_HEALTH_UNSPECIFIED,
    Health.SERVING: snapshot_pb2.AGENT_HEALTH_SERVING,
    Health.NOT_SERVING: snapshot_pb2.AGENT_HEALTH_NOT_SERVING,
    Health.SERVICE_UNKNOWN: snapshot_pb2.AGENT_HEALTH_SERVICE_UNKNOWN,
    Health.UNREACHABLE: snapshot_pb2.AGENT_HEALTH_UNREACHABLE,
}
_SNAPSHOT_FIELDS = frozenset(snapshot_pb2.Snapshot.DESCRIPTOR.fields_by_name)
_ROW_FIELDS = frozenset(snapshot_pb2.ServiceRow.DESCRIPTOR.fields_by_name)
_ENTRY_FIELDS = frozenset({"service_name", "service_type", "data_source", "host", "port"})
AGENT_FIELDS = tuple(
    sorted(
        (_ROW_FIELDS & set(event_rate_pb2.GetEventRateResponse.DESCRIPTOR.fields_by_name))
        - _ENTRY_FIELDS
    )
)
"""The row fields copied from the agent's answer: every field ServiceRow shares by name with
GetEventRateResponse (a field added to both travels without further code)."""

ResponseType = Literal["get", "stream", "replay"]
"""GetSnapshotResponse, StreamSnapshotsResponse, or the latter with `replayed` set."""


_AGENT_ROW = Retag(
    event_rate_pb2.GetEventRateResponse.DESCRIPTOR, snapshot_pb2.ServiceRow.DESCRIPTOR, AGENT_FIELDS
)
"""The agent's answer re-tagged as ServiceRow fields (bench `python -m bench alerts`: a
round's rows convert in about half the time of parsing the answer and copying each field)."""
INSTANCE_FIELDS = tuple(
    sorted(
        set(snapshot_pb2.InstanceRow.DESCRIPTOR.fields_by_name)
        & set(event_rate_pb2.GetEventRateResponse.DESCRIPTOR.fields_by_name)
    )
)
"""The instance fields copied from the instance's answer (as AGENT_FIELDS are for a row)."""
_AGENT_INSTANCE = Retag(
    event_rate_pb2.GetEventRateResponse.DESCRIPTOR,
    snapshot_pb2.InstanceRow.DESCRIPTOR,
    INSTANCE_FIELDS,
)


def add_row(
    rows: RepeatedCompositeFieldContainer[snapshot_pb2.ServiceRow], row: RowData
) -> snapshot_pb2.ServiceRow:
    """Append the wire row of one `RowData` to `rows` (ages unset: they are set when sending).

    The figures are this round's for an active row, the last known ones otherwise, with
    `last_seen_time` and `last_seen_age` saying how old they are (unset if never seen).
    Built in place (`add`): appending a finished message would copy it.
    """
    entry = row.entry
    message = rows.add(
        service_name=entry.name,
        service_type=entry.type,
        data_source=entry.data_source,
        host=entry.host,
        port=entry.port,
        agent_port=entry.agent_port,
        pushed=entry.pushed,
        status=to_wire(row.status),
        health=_HEALTH[row.health],
        error_message=row.error_message,
        consecutive_failures=row.consecutive_failures,
        instances_up=row.instances_up,
        instances_total=row.instances_total,
    )
    if row.call_latency is not None:
        set_seconds(message.call_latency, row.call_latency)
    if row.figures is not None and row.figures.answer:
        answer = row.figures.answer
        try:
            message.MergeFromString(_AGENT_ROW(answer))
        except RetagError:
            copy_agent_fields(answer, message, AGENT_FIELDS)
    if row.seen_time is not None:
        set_seconds(message.last_seen_time, row.seen_time)
        set_seconds(message.last_seen_age, row.seen_age or 0.0)
    for instance in row.instances:
        add_instance(message.instances, instance)
    return message


def add_instance(
    instances: RepeatedCompositeFieldContainer[snapshot_pb2.InstanceRow], instance: InstanceData
) -> None:
    """Append the wire entry of one instance of a row (its age unset: set when sending)."""
    message = instances.add(
        address=instance.address,
        status=to_wire(instance.status),
        health=_HEALTH[instance.health],
        error_message=instance.error_message,
        consecutive_failures=instance.consecutive_failures,
    )
    if instance.call_latency is not None:
        set_seconds(message.call_latency, instance.call_latency)
    if instance.figures is not None and instance.figures.answer:
        answer = instance.figures.answer
        try:
            message.MergeFromString(_AGENT_INSTANCE(answer))
        except RetagError:
            copy_agent_fields(answer, message, INSTANCE_FIELDS)
    if instance.seen_time is not None:
        set_seconds(message.last_seen_time, instance.seen_time)
        set_seconds(message.last_seen_age, instance.seen_age or 0.0)


def copy_agent_fields(answer: bytes, message: Message, names: Sequence[str] = AGENT_FIELDS) -> None:
    """Copy the fields `names` of a serialized GetEventRateResponse into `message`, parsing it."""
    parsed = event_rate_pb2.GetEventRateResponse.FromString(answer)
    for name in names:
        copy_field(parsed, message, name)


def snapshot_to_proto(snapshot: SnapshotData, rows: Iterable[RowData]) -> snapshot_pb2.Snapshot:
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
        window_events=snapshot.window_events,
        window_errors=snapshot.window_errors,
        epoch=snapshot.epoch,
        pushed_omitted=snapshot.pushed_omitted,
    )
    add_pushed = message.pushed.add
    for series in snapshot.pushed[: len(snapshot.pushed) - snapshot.pushed_omitted]:
        to_pushed_value(series, add_pushed())
    if snapshot.latency is not None:
        latency.summarize(snapshot.latency, message.latency)
    set_seconds(message.take_time, snapshot.take_time)
    set_seconds(message.round_duration, snapshot.round_duration)
    services = message.services
    for row in rows:
        add_row(services, row)
    return message


class WholeSnapshots:
    """The wire message of a snapshot with every row, built once and shared.

    The streams' unfiltered view and the alert evaluation of a round both read the same
    message, so each round's rows are converted once (at 1000 services that conversion costs
    about 10 ms, two thirds of evaluating 20 rules). Its readers must not change it:
    responses copy it.
    The last two snapshots are kept (a replay between two rounds does not evict the latest).
    """

    def __init__(self, keep: int = 2) -> None:
        self._keep = keep
        self._messages: dict[tuple[int, int], snapshot_pb2.Snapshot] = {}

    def get(self, snapshot: SnapshotData) -> snapshot_pb2.Snapshot:
        """The message of `snapshot` with all its rows (ages unset)."""
        key = (snapshot.epoch, snapshot.sequence)
        message = self._messages.get(key)
        if message is None:
            message = snapshot_to_proto(snapshot, snapshot.rows)
            if len(self._messages) >= self._keep:
                del self._messages[min(self._messages)]
            self._messages[key] = message
        return message


AGE_RESOLUTION_SECONDS = 0.002
"""Serialized bytes are reused for sends this close together (their ages differ by less)."""


Received = tuple[tuple[float | None, tuple[float | None, ...]], ...]
"""Per kept row: when its figures arrived, and when each of its instances' did (monotonic)."""


@dataclass(slots=True)
class _Rendered:
    response: aggregator_pb2.GetSnapshotResponse | aggregator_pb2.StreamSnapshotsResponse
    received: Received
    serialized: bytes = b""
    serialized_at: float = float("-inf")


class Projection:
    """One request's filter, compiled; renders snapshots for it."""

    def __init__(self, registry: Registry, request: aggregator_pb2.SnapshotFilter) -> None:
        """Validate `request` against `registry`; raises FilterError naming the problem."""
        services = ServiceFilter.of(request.service_names, request.service_types)
        unknown = services.unknown_names(registry.names)
        if unknown:
            raise FilterError(
                unknown_message("service name", unknown, registry.names, "filter.service_names")
            )
        unknown_types = sorted(services.types - registry.types)
        if unknown_types:
            raise FilterError(
                unknown_message(
                    "service type", unknown_types, registry.types, "filter.service_types"
                )
            )
        self._services = services
        top, rows = _compile_mask(request.read_mask.paths if request.HasField("read_mask") else ())
        self._top = top
        self._row_fields = rows
        self.key = (
            services.key(),
            None if top is None else tuple(sorted(top)),
            None if rows is None else tuple(sorted(rows)),
        )
        """Views with equal keys render equal messages (the render cache is keyed on it)."""

    def keeps(self, row: RowData) -> bool:
        """True when the filter keeps `row`."""
        return self._services.keeps(row.entry.name, row.entry.type)

    def build(
        self, snapshot: SnapshotData, whole: WholeSnapshots | None = None
    ) -> tuple[snapshot_pb2.Snapshot, Received]:
        """The filtered, masked message (ages unset) and each kept row's receive instants.

        Without a service filter the rows come from `whole` when given (shared, not changed).
        """
        rows = [row for row in snapshot.rows if self.keeps(row)]
        if whole is not None and self._services.keeps_everything:
            full = whole.get(snapshot)
        else:
            full = snapshot_to_proto(snapshot, rows)
        received = tuple(
            (row.received_at, tuple([each.received_at for each in row.instances])) for row in rows
        )
        if self._top is None:
            return full, received
        masked = snapshot_pb2.Snapshot()
        for name in self._top:
            if name != "services":
                copy_field(full, masked, name)
        if "services" not in self._top:
            return masked, ()
        if self._row_fields is None:
            masked.services.extend(full.services)
            return masked, received
        for source in full.services:
            target = masked.services.add()
            for name in self._row_fields:
                copy_field(source, target, name)
        return masked, received

    def render(
        self, snapshot: SnapshotData, now: float, cache: RenderCache, response_type: ResponseType
    ) -> bytes:
        """The serialized `response_type` for `snapshot` sent at monotonic instant `now`.

        Ages are those at `now`, to within AGE_RESOLUTION_SECONDS: subscribers woken by the
        same round share one serialization instead of paying one each.
        """
        rendered = cache.get(snapshot, self, response_type)
        if 0.0 <= now - rendered.serialized_at < AGE_RESOLUTION_SECONDS:
            return rendered.serialized
        message = rendered.response.snapshot
        if self._top is None or "age" in self._top:
            set_seconds(message.age, max(0.0, now - snapshot.taken_at))
        row_ages = self._row_fields is None or "age" in self._row_fields
        instance_ages = self._row_fields is None or "instances" in self._row_fields
        for row, (received, instances) in zip(message.services, rendered.received, strict=False):
            if row_ages and received is not None:
                set_seconds(row.age, max(0.0, now - received))
            if instance_ages and instances:
                for instance, arrived in zip(row.instances, instances, strict=False):
                    if arrived is not None:
                        set_seconds(instance.age, max(0.0, now - arrived))
        rendered.serialized = rendered.response.SerializeToString()
        rendered.serialized_at = now
        return rendered.serialized


class RenderCache:
    """Built responses per (projection key, response type, snapshot sequence), latest only."""

    def __init__(self, keep_sequences: int = 2, whole: WholeSnapshots | None = None) -> None:
        self._keep = keep_sequences
        self._items: dict[tuple[object, ResponseType, int], _Rendered] = {}
        self._whole = whole or WholeSnapshots()

    def get(
        self, snapshot: SnapshotData, projection: Projection, response_type: ResponseType
    ) -> _Rendered:
        """The built `response_type` of `projection` for `snapshot`, built on first use."""
        key = (projection.key, response_type, snapshot.sequence)
        rendered = self._items.get(key)
        if rendered is None:
            message, received = projection.build(snapshot, self._whole)
            rendered = _Rendered(_response(response_type, message), received)
            floor = snapshot.sequence - self._keep
            if len(self._items) > 64:
                self._items = {k: v for k, v in self._items.items() if k[2] > floor}
            self._items[key] = rendered
        return rendered


def _response(
    response_type: ResponseType, snapshot: snapshot_pb2.Snapshot
) -> aggregator_pb2.GetSnapshotResponse | aggregator_pb2.StreamSnapshotsResponse:
    if response_type == "get":
        return aggregator_pb2.GetSnapshotResponse(snapshot=snapshot)
    replayed = response_type == "replay"
    return aggregator_pb2.StreamSnapshotsResponse(snapshot=snapshot, replayed=replayed)


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
                f"unknown read_mask path {quote(path)}: Snapshot has no field {quote(head)}; "
                f"fields: {quote_list(sorted(_SNAPSHOT_FIELDS), 400)}"
            )
        top.add(head)
        if head == "services":
            if not rest:
                whole_rows = True
            elif rest in _ROW_FIELDS:
                rows.add(rest)
            else:
                raise FilterError(
                    f"unknown read_mask path {quote(path)}: ServiceRow has no field {quote(rest)}; "
                    f"fields: {quote_list(sorted(_ROW_FIELDS), 400)}"
                )
        elif rest:
            raise FilterError(
                f"unsupported read_mask path {quote(path)}: select {head!r} as a whole (only "
                "services.<field> may name a sub-field)"
            )
    return frozenset(top), None if whole_rows else frozenset(rows)


def copy_field(source: Message, target: Message, name: str) -> None:
    """Copy field `name` from `source` to `target` (messages with a field of that name)."""
    descriptor = source.DESCRIPTOR.fields_by_name[name]
    value = getattr(source, name)
    if descriptor.is_repeated:
        getattr(target, name).extend(value)
    elif descriptor.message_type is not None:
        if source.HasField(name):
            getattr(target, name).CopyFrom(value)
    else:
        setattr(target, name, value)
