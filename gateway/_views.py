"""Snapshots as the gateway serves them: typed rows, views, and JSON bodies cached per view.

`SnapshotEntry` wraps one snapshot as received: its rows are converted once (`ServiceRow`,
every figure of `mesh_common.figures.ROW_FIGURES`), and the JSON body of each `View` is
serialized once, with orjson. The one part that depends on the moment, `snapshot_age_ms`, is
added per request by serializing a small top-level object around the cached row lists
(`orjson.Fragment`), never by cutting or splicing JSON text.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

import orjson
from metricsmesh.v1 import snapshot_pb2

from gateway._errors import FilterError
from mesh_common.bounded import quote_list
from mesh_common.figures import (
    ROW_FIGURE_NAMES,
    ROW_FIGURES,
    ROW_KEYS_ALWAYS,
    TOTAL_FIGURES,
    Figure,
    JSONValue,
    fleet_values,
)
from mesh_common.filters import ServiceFilter, unknown_message
from mesh_common.status import ServiceStatus
from mesh_common.wire_time import iso_utc, to_seconds

MAX_CACHED_VIEWS = 64
"""Distinct views cached per snapshot; further ones are encoded per use (still correct)."""

JSONObject = dict[str, Any]
Built = TypeVar("Built")


@dataclass(frozen=True, slots=True)
class View:
    """Which part of a snapshot a client wants; the default view is the whole snapshot.

    The one view model of every surface: REST, SSE and the WebSocket build the same `View`
    from their parameters or messages (`make_view`).
    """

    services: ServiceFilter = field(default_factory=ServiceFilter)
    """Which services' rows are kept."""
    fields: tuple[str, ...] = ()
    """Keep only these row figures (plus service_name and status); empty keeps all."""

    def keeps(self, row: ServiceRow) -> bool:
        """Whether a row passes the service and type filters."""
        return self.services.keeps(row.service_name, row.service_type)

    def project(self, row: ServiceRow) -> JSONObject:
        """The row as a JSON object, limited to the chosen fields."""
        if not self.fields:
            return row.json
        return {
            key: value
            for key, value in row.json.items()
            if key in self.fields or key in ROW_KEYS_ALWAYS
        }


WHOLE = View()


def split_names(values: Iterable[str] | None) -> list[str]:
    """`a,b&x=c` style parameters as one list, blanks dropped."""
    return [part.strip() for value in values or () for part in value.split(",") if part.strip()]


def make_view(
    services: Sequence[str],
    types: Sequence[str],
    fields: Sequence[str],
    *,
    known_services: Iterable[str] | None,
    known_types: Iterable[str] | None = None,
    known_fields: Iterable[str] = ROW_FIGURE_NAMES,
) -> View:
    """A validated View; FilterError naming what is unknown.

    Service names and types are checked against `known_services` and `known_types` (those of
    the latest snapshot's rows; None before the first snapshot, when nothing can be checked
    yet). The rule is the same on every surface: an unknown name or type is an error naming
    it and listing the known ones, never an empty answer.
    """
    allowed = tuple(known_fields)
    unknown_fields = sorted(set(fields) - set(allowed))
    if unknown_fields:
        raise FilterError(
            f"unknown field(s) {quote_list(unknown_fields)}; known: {', '.join(allowed)}"
        )
    wanted = ServiceFilter.of(services, types)
    if known_services is not None:
        known = set(known_services)
        unknown = wanted.unknown_names(known)
        if unknown:
            raise FilterError(unknown_message("service name", unknown, known))
    if known_types is not None:
        kinds = set(known_types)
        unknown = sorted(wanted.types - kinds)
        if unknown:
            raise FilterError(unknown_message("service type", unknown, kinds))
    return View(wanted, tuple(dict.fromkeys(fields)))


def view_of_query(
    latest: SnapshotEntry | None,
    services: Iterable[str] | None,
    types: Iterable[str] | None,
    fields: Iterable[str] | None,
) -> View:
    """The View of REST/SSE query parameters (`a,b` lists), checked against `latest`."""
    rows = None if latest is None else latest.rows
    return make_view(
        split_names(services),
        split_names(types),
        split_names(fields),
        known_services=None if rows is None else (row.service_name for row in rows),
        known_types=None if rows is None else (row.service_type for row in rows),
    )


def late_filter_error(view: View, entry: SnapshotEntry) -> FilterError | None:
    """The error of a view made before the first snapshot, now checked against `entry`.

    A view made while no snapshot was there could not have its names and types checked
    (`view_of_query` with no `latest`); the first snapshot tells whether they exist. None
    when they do (or when the view names none).
    """
    wanted = view.services
    if wanted.keeps_everything:
        return None
    rows = entry.rows
    try:
        make_view(
            sorted(wanted.names),
            sorted(wanted.types),
            (),
            known_services=(row.service_name for row in rows),
            known_types=(row.service_type for row in rows),
        )
    except FilterError as error:
        return error
    return None


class ServiceRow:
    """One service's row of a snapshot: its figures, raw and as JSON, computed once.

    `figures` are every row figure by default; a row read for one view only may convert just
    the view's (its `json` then holds only those).
    """

    __slots__ = ("json", "message", "raw", "service_name", "service_type", "status")

    def __init__(
        self, message: snapshot_pb2.ServiceRow, figures: Sequence[Figure] = ROW_FIGURES
    ) -> None:
        self.message = message
        self.raw: Mapping[str, Any] = {figure.name: figure.read(message) for figure in figures}
        """Each figure's raw value (seconds, epoch seconds, None for no data) by name."""
        self.json: JSONObject = {
            figure.name: figure.to_json(self.raw[figure.name]) for figure in figures
        }
        """The row as the REST shape's object, in the schema's order."""
        self.service_name: str = message.service_name
        self.service_type: str = message.service_type
        self.status: str = self.raw["status"]

    @property
    def active(self) -> bool:
        """True when the service is active in this snapshot."""
        return self.status == ServiceStatus.ACTIVE


class SnapshotEntry:
    """One snapshot as the gateway received it, with its rows converted and bodies cached.

    While it is the latest snapshot an entry keeps the parsed message, its rows and the
    bodies and frames of each view. Once a newer one arrives, `compact()` keeps only the
    serialized message (a parsed snapshot with latency buckets takes about 8x its serialized
    size; a frame of the whole view is about 0.7x, once per view that was streamed): reading
    a compacted entry (an SSE resume or replay) parses it again for that use and keeps nothing.
    """

    __slots__ = (
        "_bodies",
        "_data",
        "_extra",
        "_lock",
        "_rows",
        "_snapshot",
        "age_at_receipt",
        "epoch",
        "received_at",
        "sequence",
        "take_time",
    )

    def __init__(self, snapshot: snapshot_pb2.Snapshot, received_at: float) -> None:
        self._snapshot: snapshot_pb2.Snapshot | None = snapshot
        self._data: bytes | None = None
        self.sequence = snapshot.sequence
        self.epoch = snapshot.epoch
        """The aggregator lifetime the snapshot comes from."""
        self.received_at = received_at
        """Monotonic instant of receipt (the hub's clock)."""
        self.age_at_receipt = to_seconds(snapshot.age)
        self.take_time = to_seconds(snapshot.take_time)
        self._rows: tuple[ServiceRow, ...] | None = tuple(
            ServiceRow(row) for row in snapshot.services
        )
        self._bodies: dict[View, dict[str, Any]] = {}
        self._extra: dict[Hashable, object] = {}
        self._lock = threading.Lock()

    @property
    def snapshot(self) -> snapshot_pb2.Snapshot:
        """The snapshot message (parsed again, and not kept, once the entry is compacted)."""
        if self._snapshot is not None:
            return self._snapshot
        assert self._data is not None
        return snapshot_pb2.Snapshot.FromString(self._data)

    @property
    def rows(self) -> tuple[ServiceRow, ...]:
        """The rows in registry order (converted again, and not kept, once compacted)."""
        if self._rows is not None:
            return self._rows
        return tuple(ServiceRow(row) for row in self.snapshot.services)

    @property
    def compacted(self) -> bool:
        """True once only the serialized message is kept."""
        return self._snapshot is None

    def compact(self) -> None:
        """Keep only the serialized message (a newer snapshot arrived)."""
        snapshot = self._snapshot
        if snapshot is None:
            return
        self._data = snapshot.SerializeToString()
        with self._lock:
            self._snapshot = None
            self._rows = None
            self._bodies = {}
            self._extra = {}

    def age(self, now: float) -> float:
        """Seconds since the round started, measured without trusting wall clocks."""
        return self.age_at_receipt + max(0.0, now - self.received_at)

    def totals(self, view: View = WHOLE) -> JSONObject:
        """The fleet's figures for a view: the snapshot's own, or the kept rows' for a filter."""
        return self._totals(self.snapshot, self.rows, view)

    @staticmethod
    def _totals(
        snapshot: snapshot_pb2.Snapshot, rows: Sequence[ServiceRow], view: View
    ) -> JSONObject:
        kept = None
        if not view.services.keeps_everything:
            kept = [row.message for row in rows if view.keeps(row)]
        values = fleet_values(snapshot, kept)
        return {figure.name: figure.to_json(values[figure.name]) for figure in TOTAL_FIGURES}

    def payload(self, view: View = WHOLE) -> JSONObject:
        """The REST body for a view, without `snapshot_age_ms` (it depends on the moment)."""
        return self._body_parts(view, lambda rows: rows)

    def body(self, view: View, now: float) -> bytes:
        """The complete JSON body for a view, `snapshot_age_ms` measured at `now`."""
        parts = self._bodies.get(view)
        if parts is None:
            parts = self._body_parts(view, lambda rows: orjson.Fragment(orjson.dumps(rows)))
            with self._lock:
                if not self.compacted and len(self._bodies) < MAX_CACHED_VIEWS:
                    self._bodies[view] = parts
        return orjson.dumps({**parts, "snapshot_age_ms": round(self.age(now) * 1000.0)})

    def cached(self, key: Hashable, build: Callable[[], Built]) -> Built:
        """What `build` makes, once per snapshot and key, shared by every client with the key.

        E.g. an SSE frame, or a WebSocket client's messages of the snapshot. Only while the
        entry is the latest: a compacted entry builds them for each use. Keys of different
        builders must differ (the value is taken to be what `build` makes).
        """
        value = self._extra.get(key)
        if value is None:
            value = build()
            with self._lock:
                if not self.compacted and len(self._extra) < MAX_CACHED_VIEWS:
                    self._extra[key] = value
        return cast(Built, value)

    def _rows_for(self, snapshot: snapshot_pb2.Snapshot, view: View) -> tuple[ServiceRow, ...]:
        """The rows, converted only as far as `view` needs when the entry is compacted."""
        if self._rows is not None:
            return self._rows
        figures: Sequence[Figure] = ROW_FIGURES
        if view.fields:
            wanted = {*view.fields, *ROW_KEYS_ALWAYS}
            figures = [figure for figure in ROW_FIGURES if figure.name in wanted]
        return tuple(ServiceRow(row, figures) for row in snapshot.services)

    def _body_parts(self, view: View, rows_as: Callable[[list[JSONObject]], Any]) -> JSONObject:
        snapshot = self.snapshot
        every = self._rows_for(snapshot, view)
        rows = [row for row in every if view.keeps(row)]
        totals = self._totals(snapshot, every, view)
        return {
            "events_per_second": totals["events_per_second"],
            "events_per_hour": totals["events_per_hour"],
            "active_apis": rows_as([view.project(row) for row in rows if row.active]),
            "inactive_apis": totals["inactive_apis"],
            "data_sources_active": totals["data_sources_active"],
            "timestamp": iso_utc(self.take_time),
            "collection_time_ms": totals["collection_time_ms"],
            "inactive_services": rows_as([view.project(row) for row in rows if not row.active]),
            "total_events": totals["total_events"],
            "sequence": self.sequence,
            "services_answered": totals["services_answered"],
            "services_total": totals["services_total"],
            "error_rate": totals["error_rate"],
            "latency_p50_ms": totals["latency_p50_ms"],
            "latency_p95_ms": totals["latency_p95_ms"],
            "latency_p99_ms": totals["latency_p99_ms"],
        }


def json_bytes(value: JSONValue | Mapping[str, Any]) -> bytes:
    """`value` as compact JSON bytes (the one JSON encoder of the gateway)."""
    return orjson.dumps(value)
