"""The row schema: every figure of a snapshot row and of the fleet totals, declared once.

A `Figure` names one figure (its REST/JSON name, which is also the name SSE and WebSocket
`fields` filters accept), its unit, a one-line description, a short column label, how to
read it from the wire message, how to write it in JSON, and how Prometheus exposes it.
The gateway's REST models, its JSON bodies, the SSE/WS field filters, the WS `system` item,
the Prometheus collector, the CLI tables and the dashboard's columns (through
`GET /api/v1/schema`) are all derived from `ROW_FIGURES` and `TOTAL_FIGURES`.

Adding a figure: a field in the proto, an entry here, and the code that computes it
(docs/architecture.md, "Adding a figure").
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from metricsmesh.v1 import event_rate_pb2, snapshot_pb2

from mesh_common import latency
from mesh_common.status import from_wire
from mesh_common.totals import Contribution, FleetTotals, fleet_totals
from mesh_common.wire_time import iso_utc, to_seconds

JSONValue = str | int | float | bool | None | list[str] | list[dict[str, Any]]
"""What a figure is in a JSON body."""

Unit = Literal["", "1/s", "1/h", "events", "s", "ms", "time", "services", "list", "ratio", "%"]
"""`1/s` events per second, `s`/`ms` spans, `time` an instant (epoch seconds, ISO in JSON),
`ratio` a fraction in 0..1 (an error rate), `%` a percentage (of one CPU core)."""


@dataclass(frozen=True, slots=True)
class Series:
    """How Prometheus exposes a row figure (one sample per service, labels service and type)."""

    name: str
    metric_type: Literal["gauge", "counter"]
    help: str
    scale: float = 1.0
    """Multiplies the raw value (e.g. 0.001 for a figure in ms exposed in seconds)."""
    when_inactive: bool = False
    """Also exposed for services that are not active (it describes the call, not the service)."""


@dataclass(frozen=True, slots=True)
class Figure:
    """One figure of a row (read from a `ServiceRow`) or of the totals (from a `Snapshot`)."""

    name: str
    """The REST/JSON name, also accepted by SSE/WS `fields` filters."""
    label: str
    """A short column header for tables (CLI, dashboard)."""
    unit: Unit
    description: str
    json_type: type
    """The JSON value's type (for the REST model): str, int, float or list."""
    read: Callable[[Any], Any]
    """The raw value from the wire message; None when there is no data."""
    to_json: Callable[[Any], JSONValue]
    nullable: bool = False
    column: tuple[int, int] | None = None
    """Rows only, for tables (CLI, dashboard): (position from the left, priority), where a
    table that must narrow drops the columns of highest priority number first; None when
    tables do not show the figure as a column of its own."""
    series: Series | None = None
    combine: Callable[[FleetTotals], Any] | None = None
    """Totals only: the raw total read from the `fleet_totals` of the rows a filtered view
    keeps; None when the figure is the round's whatever the filter."""
    items: tuple[Figure, ...] = ()
    """For a list of objects (a row's `kinds`): the figures of each object."""


def _same(value: Any) -> JSONValue:
    return value  # type: ignore[no-any-return]


def _rounded(digits: int) -> Callable[[Any], JSONValue]:
    return lambda value: None if value is None else round(value, digits)


def _iso(value: Any) -> JSONValue:
    return None if value is None else iso_utc(value)


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000.0


def _ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _fleet_quantile_ms(q: float) -> Callable[[FleetTotals], float | None]:
    """A total's quantile: from the merged buckets of the kept active rows."""
    return lambda totals: None if totals.latency is None else _ms(totals.latency.quantile(q))


def _summary_ms(name: str) -> Callable[[Any], float | None]:
    """Read one Duration of a message's `latency` summary, in ms; None without one."""

    def read(message: Any) -> float | None:
        if not message.HasField("latency"):
            return None
        return to_seconds(getattr(message.latency, name)) * 1000.0

    return read


def _latency_figures(whose: str) -> tuple[Figure, ...]:
    """The latency figures of a row or a kind (in ms, None when there is no timed event)."""
    return (
        Figure(
            "latency_avg_ms", "Avg", "ms", f"Mean duration of the {whose} timed events.",
            float, _summary_ms("mean"), _rounded(3), nullable=True,
        ),
        Figure(
            "latency_p50_ms", "p50", "ms", f"Median duration of the {whose} timed events.",
            float, _summary_ms("p50"), _rounded(3), nullable=True,
        ),
        Figure(
            "latency_p95_ms", "p95", "ms", f"95th percentile of the {whose} durations (buckets).",
            float, _summary_ms("p95"), _rounded(3), nullable=True,
            column=(6, 6) if whose == "service's" else None,
        ),
        Figure(
            "latency_p99_ms", "p99", "ms", f"99th percentile of the {whose} durations (buckets).",
            float, _summary_ms("p99"), _rounded(3), nullable=True,
            column=(7, 5) if whose == "service's" else None,
        ),
        Figure(
            "latency_max_ms", "Max", "ms", f"Longest duration of the {whose} timed events (exact).",
            float, _summary_ms("max"), _rounded(3), nullable=True,
        ),
    )  # fmt: skip


def _kind_last_event(kind: event_rate_pb2.EventKindRate) -> float | None:
    return to_seconds(kind.last_event_time) if kind.HasField("last_event_time") else None


KIND_FIGURES: tuple[Figure, ...] = (
    Figure(
        "kind", "Kind", "", "The kind of event, e.g. api_call.", str,
        lambda kind: kind.kind, _same,
    ),
    Figure(
        "events_per_second", "Events/s", "1/s", "The kind's events/s over the window.", float,
        lambda kind: kind.events_per_second, _rounded(4),
    ),
    Figure(
        "error_rate", "Errors", "ratio", "Failed / all events of the kind in the window.", float,
        lambda kind: _ratio(kind.window_errors, kind.window_events), _rounded(4), nullable=True,
    ),
    *_latency_figures("kind's"),
    Figure(
        "total_events", "Total", "events", "Events of the kind since the agent started.", int,
        lambda kind: kind.total_events, _same,
    ),
    Figure(
        "total_errors", "Failed", "events", "Failed events of the kind since the agent started.",
        int, lambda kind: kind.total_errors, _same,
    ),
    Figure(
        "last_activity", "Last event", "time", "ISO 8601 UTC time of the kind's last event.", str,
        _kind_last_event, _iso, nullable=True,
    ),
)  # fmt: skip
"""The figures of one kind of event of a service (the items of a row's `kinds`)."""


def _kinds(row: snapshot_pb2.ServiceRow) -> list[event_rate_pb2.EventKindRate]:
    return list(row.kinds)


def _kinds_json(kinds: Any) -> JSONValue:
    return [
        {figure.name: figure.to_json(figure.read(kind)) for figure in KIND_FIGURES}
        for kind in kinds
    ]


def _last_event(row: snapshot_pb2.ServiceRow) -> float | None:
    return to_seconds(row.last_event_time) if row.HasField("last_event_time") else None


def _has_figures(row: snapshot_pb2.ServiceRow) -> bool:
    """Whether the row holds figures: it is active, or shows the last known ones."""
    return row.status == snapshot_pb2.SERVICE_STATUS_ACTIVE or row.HasField("last_seen_time")


def _known(
    read: Callable[[snapshot_pb2.ServiceRow], Any],
) -> Callable[[snapshot_pb2.ServiceRow], Any]:
    """`read`, or None for a row of a service that never answered (no figure, not a 0)."""
    return lambda row: read(row) if _has_figures(row) else None


def _last_seen(row: snapshot_pb2.ServiceRow) -> float | None:
    return to_seconds(row.last_seen_time) if row.HasField("last_seen_time") else None


def _cpu(row: snapshot_pb2.ServiceRow) -> float | None:
    """The row's CPU; None when unmeasured (NaN: a pushed row has no process of ours)."""
    value = row.cpu_usage_percent
    return value if math.isfinite(value) else None


def _call_latency_ms(row: snapshot_pb2.ServiceRow) -> float | None:
    return to_seconds(row.call_latency) * 1000.0 if row.HasField("call_latency") else None


def _seconds_since_seen(row: snapshot_pb2.ServiceRow) -> float | None:
    return to_seconds(row.last_seen_age) if row.HasField("last_seen_time") else None


def _instances_total(row: snapshot_pb2.ServiceRow) -> int:
    """The row's instance count (a row from an aggregator without instances has one)."""
    return row.instances_total or 1


def _instances_up(row: snapshot_pb2.ServiceRow) -> int:
    if row.instances_total:
        return row.instances_up
    return 1 if row.status == snapshot_pb2.SERVICE_STATUS_ACTIVE else 0


def _instances(row: snapshot_pb2.ServiceRow) -> list[snapshot_pb2.InstanceRow]:
    return list(row.instances)


def _instances_json(instances: Any) -> JSONValue:
    return [
        {figure.name: figure.to_json(figure.read(instance)) for figure in INSTANCE_FIGURES}
        for instance in instances
    ]


_SERVICE_FIGURES: tuple[Figure, ...] = (
    Figure(
        "service_name", "Service", "", "The service's name in the registry.", str,
        lambda row: row.service_name, _same,
        column=(1, 1),
    ),
    Figure(
        "port", "Port", "",
        "The service's own HTTP port from the registry; null for a pushed service (no port).",
        int, lambda row: row.port or None, _same, nullable=True,
    ),
    Figure(
        "service_type", "Type", "", "Registry category: core, data, analysis, ai, ...", str,
        lambda row: row.service_type, _same,
        column=(2, 7),
    ),
    Figure(
        "status", "Status", "", "active, inactive (unreachable/NOT_SERVING) or error.", str,
        lambda row: from_wire(row.status).value, _same,
        column=(3, 2),
    ),
    Figure(
        "events_per_second", "Events/s", "1/s", "Events/s over the agent's 1-minute window.", float,
        _known(lambda row: row.events_per_second), _rounded(4), nullable=True,
        series=Series(
            "metricsmesh_service_events_per_second", "gauge",
            "The service's events per second over its 1-minute window.",
        ),
        column=(4, 3),
    ),
    Figure(
        "events_per_hour", "Events/h", "1/h",
        "events_per_second x 3600: the 1-minute rate projected over an hour, not a count (the "
        "history's `events` over the last hour counts them).", float,
        _known(lambda row: row.events_per_hour), _rounded(2), nullable=True,
        column=(8, 12),
    ),
    Figure(
        "total_events", "Total", "events", "Events counted since the agent started.", int,
        _known(lambda row: row.total_events), _same, nullable=True,
        series=Series(
            "metricsmesh_service_events", "counter",
            "Events the service counted since its agent started.",
        ),
        column=(9, 9),
    ),
    Figure(
        "uptime_seconds", "Uptime", "s", "The agent's uptime in seconds.", float,
        _known(lambda row: to_seconds(row.uptime)), _rounded(3), nullable=True,
        series=Series("metricsmesh_service_uptime_seconds", "gauge", "The service agent's uptime."),
        column=(10, 11),
    ),
    Figure(
        "last_activity", "Last event", "time",
        "ISO 8601 UTC time of the service's last event; null if it never had one.", str,
        _last_event, _iso, nullable=True,
        column=(11, 10),
    ),
    Figure(
        "error_message", "Error", "",
        "Why the row is not active; null when it is (a row of several instances names its "
        "instances that are not active, even while it is).", str,
        lambda row: row.error_message or None, _same, nullable=True,
        column=(13, 8),
    ),
    Figure(
        "data_source", "Source", "", "External data source of a data service (additive).", str,
        lambda row: row.data_source or None, _same, nullable=True,
    ),
    Figure(
        "pushed", "Pushed", "",
        "True when the service pushes its figures (OTLP or seed 004's events) instead of being "
        "polled: it is active while it pushed within its staleness window (additive).", bool,
        lambda row: row.pushed, _same,
    ),
    Figure(
        "call_latency_ms", "Call", "ms",
        "How long this round's call to the agent took (additive); null when no call was made "
        "(backing off, or the round failed).", float,
        _call_latency_ms, _rounded(3), nullable=True,
        series=Series(
            "metricsmesh_service_call_latency_seconds", "gauge",
            "How long the latest round's call to the service's agent took.",
            scale=0.001, when_inactive=True,
        ),
        column=(12, 13),
    ),
    Figure(
        "error_rate", "Errors", "ratio",
        "Failed / all events of the service in the window; null without events.", float,
        lambda row: _ratio(row.window_errors, row.window_events), _rounded(4), nullable=True,
        column=(5, 4),
    ),
    Figure(
        "errors_per_second", "Errors/s", "1/s", "Failed events per second over the window.",
        float,
        _known(
            lambda row: row.events_per_second * row.window_errors / row.window_events
            if row.window_events else 0.0
        ),
        _rounded(4), nullable=True,
    ),
    Figure(
        "window_events", "In window", "events", "Events in the agent's rolling window.", int,
        _known(lambda row: row.window_events), _same, nullable=True,
    ),
    Figure(
        "window_errors", "Failed", "events", "Failed events in the agent's rolling window.", int,
        _known(lambda row: row.window_errors), _same, nullable=True,
    ),
    Figure(
        "total_errors", "Total failed", "events", "Failed events since the agent started.", int,
        _known(lambda row: row.total_errors), _same, nullable=True,
    ),
    *_latency_figures("service's"),
    Figure(
        "cpu_usage_percent", "CPU", "%",
        "CPU of the service's process over the window, in % of one core (100 = one core).",
        float, _known(_cpu), _rounded(1), nullable=True,
        series=Series(
            "metricsmesh_service_cpu_usage_percent", "gauge",
            "CPU of the service's process over its agent's window, in percent of one core.",
        ),
    ),
    Figure(
        "last_seen", "Seen", "time",
        "ISO 8601 UTC time the aggregator received the row's figures: this round's answer when "
        "active, the last good one when not; null if the service never answered.", str,
        _last_seen, _iso, nullable=True,
    ),
    Figure(
        "seconds_since_seen", "Seen ago", "s",
        "Age of the row's figures at the snapshot's time (0 when active); null if never seen.",
        float, _seconds_since_seen, _rounded(3), nullable=True,
    ),
    Figure(
        "kinds", "Kinds", "list", "Per kind of event: its rate, errors and latency.", list,
        _kinds, _kinds_json, items=KIND_FIGURES,
    ),
)  # fmt: skip
"""The figures of a service's row that an instance has too (`INSTANCE_FIGURES` reads them)."""

INSTANCE_FIGURES: tuple[Figure, ...] = (
    Figure(
        "address", "Address", "", "The instance's agent address (HOST:PORT) in the registry.",
        str, lambda instance: instance.address, _same,
    ),
    *(
        figure
        for name in (
            "status", "events_per_second", "events_per_hour", "total_events", "uptime_seconds",
            "last_activity", "error_message", "call_latency_ms", "error_rate", "window_events",
            "total_errors", "latency_p50_ms", "latency_p95_ms", "latency_p99_ms",
            "cpu_usage_percent", "last_seen", "seconds_since_seen",
        )
        for figure in _SERVICE_FIGURES
        if figure.name == name
    ),
)  # fmt: skip
"""The figures of one instance (the items of a row's `instances`): the row figures of the same
name, read from the instance's own figures (an `InstanceRow` has the fields they read)."""

ROW_FIGURES: tuple[Figure, ...] = (
    *_SERVICE_FIGURES,
    Figure(
        "instances_up", "Up", "",
        "How many of the service's instances are active (the k of k-of-n; for a service of one "
        "agent 1 when active, else 0). The row is active while one instance is (additive).", int,
        _instances_up, _same,
        series=Series(
            "metricsmesh_service_instances_up", "gauge",
            "How many of the service's instances are active (an active service only).",
        ),
    ),
    Figure(
        "instances_total", "Instances", "",
        "How many instances the registry gives the service (1 for a service of one agent or a "
        "pushed one; additive).", int,
        _instances_total, _same,
        series=Series(
            "metricsmesh_service_instances", "gauge",
            "How many instances the registry gives the service (an active service only).",
        ),
    ),
    Figure(
        "instances", "Instances", "list",
        "Per instance of a service of several instances: its agent's address, status, own "
        "figures and their age (the row's figures fold those of the active ones); empty for a "
        "service of one agent (additive).", list,
        _instances, _instances_json, items=INSTANCE_FIGURES,
    ),
)  # fmt: skip
"""The figures of one service row, in the REST shape's order (story 23.2's, then additive).

A row that is not active shows the service's last known figures as they were, `last_seen`
and `seconds_since_seen` saying how old they are; a service that never answered has null
figures (never zeros). Totals (`TOTAL_FIGURES`) count active rows only."""


TOTAL_FIGURES: tuple[Figure, ...] = (
    Figure(
        "events_per_second", "Events/s", "1/s", "Sum of events/s over active services.", float,
        lambda snap: snap.events_per_second, _rounded(4),
        combine=lambda totals: totals.events_per_second,
    ),
    Figure(
        "events_per_hour", "Events/h", "1/h",
        "Sum of events/h over active services: events/s x 3600, a projection, not a count (the "
        "history's `events{service=\"\"}` over the last hour counts them; the dashboard's "
        "Events / hour card shows that count).", float,
        lambda snap: snap.events_per_hour, _rounded(2),
        combine=lambda totals: totals.events_per_hour,
    ),
    Figure(
        "total_events", "Total", "events",
        "Sum of total_events over active services (additive).", int,
        lambda snap: snap.total_events, _same, combine=lambda totals: totals.total_events,
    ),
    Figure(
        "active_count", "Active", "services", "How many services are active.", int,
        lambda snap: snap.active_count, _same, combine=lambda totals: totals.active_count,
    ),
    Figure(
        "inactive_apis", "Down", "services", "How many services are inactive or in error.", int,
        lambda snap: snap.inactive_count + snap.error_count, _same,
        combine=lambda totals: totals.not_active_count,
    ),
    Figure(
        "data_sources_active", "Sources", "list", "Data sources of active data services.", list,
        lambda snap: list(snap.data_sources_active), _same,
        combine=lambda totals: list(totals.data_sources_active),
    ),
    Figure(
        "services_answered", "Answered", "services",
        "Services whose agent answered this round (additive).", int,
        lambda snap: snap.services_answered, _same,
    ),
    Figure(
        "services_total", "Configured", "services", "Configured services (additive).", int,
        lambda snap: snap.services_total, _same,
    ),
    Figure(
        "collection_time_ms", "Round", "ms", "How long the snapshot's round took, in ms.", int,
        lambda snap: to_seconds(snap.round_duration) * 1000.0, lambda value: round(value),
    ),
    Figure(
        "error_rate", "Errors", "ratio",
        "Failed / all events of the active services in the window; null without events.",
        float, lambda snap: _ratio(snap.window_errors, snap.window_events), _rounded(4),
        nullable=True,
        combine=lambda totals: totals.error_rate,
    ),
    Figure(
        "latency_p50_ms", "p50", "ms",
        "Median duration over every active service (their merged buckets).", float,
        _summary_ms("p50"), _rounded(3), nullable=True, combine=_fleet_quantile_ms(0.5),
    ),
    Figure(
        "latency_p95_ms", "p95", "ms",
        "95th percentile over every active service (their merged buckets).", float,
        _summary_ms("p95"), _rounded(3), nullable=True, combine=_fleet_quantile_ms(0.95),
    ),
    Figure(
        "latency_p99_ms", "p99", "ms",
        "99th percentile over every active service (their merged buckets).", float,
        _summary_ms("p99"), _rounded(3), nullable=True, combine=_fleet_quantile_ms(0.99),
    ),
)  # fmt: skip
"""The fleet's figures of one snapshot (the REST body's top level and the WS `system` item)."""


def fleet_values(
    snapshot: snapshot_pb2.Snapshot, kept: Sequence[snapshot_pb2.ServiceRow] | None = None
) -> dict[str, Any]:
    """Each total figure's value (not yet JSON): the snapshot's own, or over `kept` rows only.

    A filter's totals are its rows' (`kept`), by `mesh_common.totals.fleet_totals`, the rule
    the aggregator totals the fleet with: sums and counts over active rows, latency from their
    merged buckets. Figures of the round itself (`services_answered`, `services_total`,
    `collection_time_ms`) stay the snapshot's.
    """
    if kept is None:
        return {figure.name: figure.read(snapshot) for figure in TOTAL_FIGURES}
    totals = fleet_totals(wire_contribution(row) for row in kept)
    return {
        figure.name: figure.read(snapshot) if figure.combine is None else figure.combine(totals)
        for figure in TOTAL_FIGURES
    }


def wire_contribution(row: snapshot_pb2.ServiceRow) -> Contribution:
    """What a wire row adds to the totals (`mesh_common.totals`): its figures if active."""
    if row.status != snapshot_pb2.SERVICE_STATUS_ACTIVE:
        return Contribution(False, row.service_type, row.data_source)
    return Contribution(
        True,
        row.service_type,
        row.data_source,
        row.events_per_second,
        row.events_per_hour,
        row.total_events,
        row.window_events,
        row.window_errors,
        latency.from_proto(row.latency.histogram) if row.HasField("latency") else None,
    )


ROW_FIGURE_NAMES: tuple[str, ...] = tuple(figure.name for figure in ROW_FIGURES)
TOTAL_FIGURE_NAMES: tuple[str, ...] = tuple(figure.name for figure in TOTAL_FIGURES)
ROW_KEYS_ALWAYS = ("service_name", "status")
"""Row figures kept whatever a `fields` filter asks for, so a row can always be identified."""


def row_figure(name: str) -> Figure:
    """The row figure called `name`; KeyError when there is none."""
    for figure in ROW_FIGURES:
        if figure.name == name:
            return figure
    raise KeyError(name)


def describe(figures: Sequence[Figure]) -> list[dict[str, str | int | None]]:
    """The figures as JSON-ready descriptions (name, label, unit, description, column).

    For table columns, `column` is the position from the left and `priority` the order in
    which a narrow table drops them (highest first); both None when not a column.
    """
    return [
        {
            "name": figure.name,
            "label": figure.label,
            "unit": figure.unit,
            "description": figure.description,
            "column": None if figure.column is None else figure.column[0],
            "priority": None if figure.column is None else figure.column[1],
        }
        for figure in figures
    ]


def columns() -> tuple[Figure, ...]:
    """The row figures tables show as columns, from left to right."""
    shown = [figure for figure in ROW_FIGURES if figure.column is not None]
    return tuple(sorted(shown, key=lambda figure: figure.column or (0, 0)))
