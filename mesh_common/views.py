"""What part of a snapshot a client wants (`View`), and the REST body of it.

The one view model of every surface: REST, SSE and the WebSocket build the same `View` from
their parameters or messages (`make_view`), and the CLI's `snapshot -o json` builds the body the
gateway serves (`rest_body`). A wire row is read once through the row schema into
`RowValues`; the totals of a filtered view are its kept rows' (`mesh_common.totals`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from metricsmesh.v1 import snapshot_pb2

from mesh_common.bounded import quote_list
from mesh_common.errors import FilterError
from mesh_common.figures import (
    ROW_FIGURE_NAMES,
    ROW_FIGURES,
    ROW_KEYS_ALWAYS,
    TOTAL_FIGURES,
    Figure,
    fleet_values,
)
from mesh_common.filters import ServiceFilter, unknown_message
from mesh_common.status import ServiceStatus
from mesh_common.wire_time import iso_utc, to_seconds

JSONObject = dict[str, Any]

SNAPSHOT_AGE_FIELD = "snapshot_age_ms"
"""The body's one figure that depends on the moment it is served (additive to story 23.2)."""


def age_ms(seconds: float) -> int:
    """A snapshot's age as `snapshot_age_ms` writes it: whole milliseconds."""
    return round(seconds * 1000.0)


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

    def keeps(self, row: RowValues) -> bool:
        """Whether a row passes the service and type filters."""
        return self.services.keeps(row.service_name, row.service_type)

    def project(self, row: RowValues) -> JSONObject:
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
        service_types = set(known_types)
        unknown = sorted(wanted.types - service_types)
        if unknown:
            raise FilterError(unknown_message("service type", unknown, service_types))
    return View(wanted, tuple(dict.fromkeys(fields)))


class RowValues:
    """One wire row read through the row schema: its figures, raw and as JSON, computed once.

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


def totals_json(
    snapshot: snapshot_pb2.Snapshot, rows: Sequence[RowValues], view: View = WHOLE
) -> JSONObject:
    """The fleet's figures for a view as JSON: the snapshot's own, or the kept rows' totals."""
    kept = None
    if not view.services.keeps_everything:
        kept = [row.message for row in rows if view.keeps(row)]
    values = fleet_values(snapshot, kept)
    return {figure.name: figure.to_json(values[figure.name]) for figure in TOTAL_FIGURES}


def rest_body(
    snapshot: snapshot_pb2.Snapshot,
    rows: Sequence[RowValues],
    view: View = WHOLE,
    rows_as: Callable[[list[JSONObject]], Any] = lambda rows: rows,
) -> JSONObject:
    """Story 23.2's body (plus the additive fields) for a view, without `snapshot_age_ms`.

    `rows` are the snapshot's rows read through the schema; `rows_as` wraps each row list
    (the gateway keeps them as pre-encoded JSON fragments).
    """
    kept = [row for row in rows if view.keeps(row)]
    totals = totals_json(snapshot, rows, view)
    return {
        "events_per_second": totals["events_per_second"],
        "events_per_hour": totals["events_per_hour"],
        "active_apis": rows_as([view.project(row) for row in kept if row.active]),
        "inactive_apis": totals["inactive_apis"],
        "data_sources_active": totals["data_sources_active"],
        "timestamp": iso_utc(to_seconds(snapshot.take_time)),
        "collection_time_ms": totals["collection_time_ms"],
        "inactive_services": rows_as([view.project(row) for row in kept if not row.active]),
        "total_events": totals["total_events"],
        "sequence": snapshot.sequence,
        "services_answered": totals["services_answered"],
        "services_total": totals["services_total"],
        "error_rate": totals["error_rate"],
        "latency_p50_ms": totals["latency_p50_ms"],
        "latency_p95_ms": totals["latency_p95_ms"],
        "latency_p99_ms": totals["latency_p99_ms"],
    }
