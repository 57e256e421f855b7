"""Snapshots as the gateway serves them: typed rows, views, and JSON bodies cached per view.

`SnapshotEntry` wraps one snapshot as received: its rows are converted once
(`mesh_common.views.RowValues`), and the JSON body (`mesh_common.views.rest_body`) of each `View` is
serialized once, with orjson. The one part that depends on the moment, `snapshot_age_ms`, is
added per request by serializing a small top-level object around the cached row lists
(`orjson.Fragment`), never by cutting or splicing JSON text.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from typing import Any, TypeVar, cast

import orjson
from metricsmesh.v1 import snapshot_pb2

from mesh_common.errors import FilterError
from mesh_common.figures import ROW_FIGURES, ROW_KEYS_ALWAYS, Figure, JSONValue
from mesh_common.views import (
    SNAPSHOT_AGE_FIELD,
    WHOLE,
    JSONObject,
    RowValues,
    View,
    age_ms,
    make_view,
    rest_body,
    split_names,
    totals_json,
)
from mesh_common.wire_time import to_seconds

MAX_CACHED_VIEWS = 64
"""Distinct views cached per snapshot; further ones are encoded per use (still correct)."""

Built = TypeVar("Built")


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
        self._rows: tuple[RowValues, ...] | None = tuple(
            RowValues(row) for row in snapshot.services
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
    def rows(self) -> tuple[RowValues, ...]:
        """The rows in registry order (converted again, and not kept, once compacted)."""
        if self._rows is not None:
            return self._rows
        return tuple(RowValues(row) for row in self.snapshot.services)

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

    def age_ms(self, now: float) -> int:
        """`age()` as `snapshot_age_ms` writes it (whole milliseconds)."""
        return age_ms(self.age(now))

    def totals(self, view: View = WHOLE) -> JSONObject:
        """The fleet's figures for a view: the snapshot's own, or the kept rows' for a filter."""
        return totals_json(self.snapshot, self.rows, view)

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
        return orjson.dumps({**parts, SNAPSHOT_AGE_FIELD: self.age_ms(now)})

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

    def _rows_for(self, snapshot: snapshot_pb2.Snapshot, view: View) -> tuple[RowValues, ...]:
        """The rows, converted only as far as `view` needs when the entry is compacted."""
        if self._rows is not None:
            return self._rows
        figures: Sequence[Figure] = ROW_FIGURES
        if view.fields:
            wanted = {*view.fields, *ROW_KEYS_ALWAYS}
            figures = [figure for figure in ROW_FIGURES if figure.name in wanted]
        return tuple(RowValues(row, figures) for row in snapshot.services)

    def _body_parts(self, view: View, rows_as: Callable[[list[JSONObject]], Any]) -> JSONObject:
        snapshot = self.snapshot
        return rest_body(snapshot, self._rows_for(snapshot, view), view, rows_as)


def json_bytes(value: JSONValue | Mapping[str, Any]) -> bytes:
    """`value` as compact JSON bytes (the one JSON encoder of the gateway)."""
    return orjson.dumps(value)
