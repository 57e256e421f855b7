"""What one snapshot yields for a WebSocket client: seed 002's items and seed 003's metrics.

An item is `{"metric_type", "timestamp", "sequence", "data"}` (seed 002's shape, plus the
snapshot's sequence). Per snapshot a client gets, in this order, the items of what it
subscribed to (`gateway._ws_vocabulary` names them):

  system        the fleet's totals and `snapshot_age_ms`
  agent         one per service kept by the filters: its row
  business      one per service kept: `service_name`, `service_type`, `status`, `kinds`
  hero          `events_per_second`, `active_count`, `services_total`, `error_rate`,
                `latency_p99_ms` of the fleet, and `alerts_firing` (null while the gateway
                does not know the alerts)
  presentation  the REST body of GET /api/v1/real-time-metrics for the client's services,
                types and row fields, byte for byte (built by `SnapshotEntry.body`)

Every item follows the client's service filters, as the REST body of the same filter does:
`system` and `hero` sum up the kept services (sums and counts over the active ones, latency
from their merged buckets; `services_total` and `services_answered` stay the fleet's), `hero`
counts the firing alerts of the kept services, and `agent`, `business` and `presentation`
hold the kept services' rows. A `fields` filter keeps, in `system`, `agent`,
`business` (each kind's figures) and `hero` data, the chosen figures the item has, each under
the name the client asked for (`throughput_tps` reads `throughput_tps`), and the keys that
identify the item (`service_name` and `status` of a row, `kind` of a kind). `presentation`
stays the REST shape: its rows keep the chosen row figures under the REST names.

Seed 003's `metrics` subscription gets one `{"type": "metric_update", "data": {"metrics":
[...], "timestamp", "sequence"}}` per snapshot, each metric in seed 003's own model: `{"name",
"type": "gauge" | "counter", "value", "unit", "labels"}`, one per numeric figure of each kept
row (labels `service`, `service_type`, `status`) and of their totals (no labels), figures
without data left out (never a false 0). Then the pushed series whose value changed in that
snapshot (`Snapshot.pushed`: seed 003's ingest, OTLP), each `{"name", "type", "value", "unit",
"labels", "timestamp", "help_text", "pushed": true}` with `service` when it came with a pushed
service; a client whose update interval skips snapshots does not get the changes of the
skipped ones (the next snapshot carries only its own). The list is built once per snapshot
and filters.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from metricsmesh.v1 import ingest_pb2

from gateway._ingest_forms import TYPE_NAMES
from gateway._views import SnapshotEntry
from gateway._ws_vocabulary import (
    AGENT,
    BUSINESS,
    HERO,
    PRESENTATION,
    SYSTEM,
    Filters,
)
from mesh_common.figures import ROW_FIGURES, ROW_KEYS_ALWAYS, TOTAL_FIGURES, Figure
from mesh_common.filters import ServiceFilter
from mesh_common.views import SNAPSHOT_AGE_FIELD, RowValues, View
from mesh_common.wire_time import iso_utc, to_seconds

PUSHED_TYPE = "pushed"
"""The service type of a pushed row (the aggregator's)."""

Item = dict[str, Any]
Fields = tuple[tuple[str, str], ...]

BUSINESS_KEYS = ("service_name", "service_type", "status")
"""The keys of a `business` item besides `kinds`."""
KIND_KEYS_ALWAYS = ("kind",)
_NUMERIC = (int, float)
SEED_003_ROW_FIGURES = {
    figure.name: figure
    for figure in ROW_FIGURES
    if figure.json_type in _NUMERIC and figure.name != "port"
}
"""The row figures seed 003's `metrics` carry (numbers; the port is registry data)."""
SEED_003_TOTAL_FIGURES = {
    figure.name: figure for figure in TOTAL_FIGURES if figure.json_type in _NUMERIC
}
"""The fleet figures seed 003's `metrics` carry."""


@dataclass
class Subscription:
    """One client's wishes: what it subscribed to, its filters, and its batching."""

    chosen: dict[str, str] = field(default_factory=dict)
    """Canonical metric type -> the name its items carry (the name the client used)."""
    filters: Filters = field(default_factory=Filters)
    batch_size: int = 20
    batch_timeout: float = 0.0

    def names(self) -> list[str]:
        """The current subscriptions, by the names the client used, sorted."""
        return sorted(self.chosen.values())


def pick(data: dict[str, Any], fields: Fields, always: Iterable[str] = ()) -> dict[str, Any]:
    """`data` limited to `fields` ((name read, figure) pairs) and the `always` keys.

    Without fields, `data` itself (every figure under the schema's names; not copied, so a
    row's cached JSON object is shared, never changed).
    """
    if not fields:
        return data
    kept = {key: data[key] for key in always if key in data}
    for name, figure in fields:
        if figure in data:
            kept[name] = data[figure]
    return kept


def system_data(entry: SnapshotEntry, view: View, now: float) -> dict[str, Any]:
    """The totals of the view's services and the snapshot's age: a `system` item's data."""
    return {**entry.totals(view), SNAPSHOT_AGE_FIELD: entry.age_ms(now)}


def hero_data(entry: SnapshotEntry, view: View, alerts_firing: int | None) -> dict[str, Any]:
    """The headline figures of the view's services: a `hero` item's data, all fields."""
    totals = entry.totals(view)
    return {
        "events_per_second": totals["events_per_second"],
        "active_count": totals["active_count"],
        "services_total": totals["services_total"],
        "error_rate": totals["error_rate"],
        "latency_p99_ms": totals["latency_p99_ms"],
        "alerts_firing": alerts_firing,
    }


def business_data(row: RowValues, fields: Fields) -> dict[str, Any]:
    """One service's per-kind figures: a `business` item's data."""
    data: dict[str, Any] = {key: row.json[key] for key in BUSINESS_KEYS}
    data["kinds"] = [pick(kind, fields, KIND_KEYS_ALWAYS) for kind in row.json["kinds"]]
    return data


def items_for(
    sub: Subscription,
    entry: SnapshotEntry,
    now: float,
    alerts_firing: Callable[[ServiceFilter], int | None],
) -> list[Item]:
    """The seed 002 items one snapshot yields for a subscription.

    `alerts_firing` counts the firing alerts of the services a filter keeps (for `hero`).
    """
    chosen, filters = sub.chosen, sub.filters
    fields, view = filters.fields, filters.view
    stamp = iso_utc(entry.take_time)
    items: list[Item] = []

    def item(metric_type: str, data: Any) -> Item:
        return {
            "metric_type": chosen[metric_type],
            "timestamp": stamp,
            "sequence": entry.sequence,
            "data": data,
        }

    if SYSTEM in chosen:
        items.append(item(SYSTEM, pick(system_data(entry, view, now), fields)))
    kept = [row for row in entry.rows if view.keeps(row)] if {AGENT, BUSINESS} & set(chosen) else []
    if AGENT in chosen:
        items.extend(item(AGENT, pick(row.json, fields, ROW_KEYS_ALWAYS)) for row in kept)
    if BUSINESS in chosen:
        items.extend(item(BUSINESS, business_data(row, fields)) for row in kept)
    if HERO in chosen:
        hero = hero_data(entry, view, alerts_firing(view.services))
        items.append(item(HERO, pick(hero, fields)))
    if PRESENTATION in chosen:
        items.append(item(PRESENTATION, orjson.Fragment(entry.body(view, now))))
    return items


def seed_003_update(filters: Filters, entry: SnapshotEntry) -> dict[str, Any]:
    """Seed 003's `metric_update` of one snapshot: `{"type", "data": {"metrics", ...}}`."""
    key = ("ws-seed-003", filters.view.services.key(), filters.fields)
    metrics = entry.cached(key, lambda: orjson.dumps(seed_003_metrics(filters, entry)))
    return {
        "type": "metric_update",
        "data": {
            "metrics": orjson.Fragment(metrics),
            "timestamp": iso_utc(entry.take_time),
            "sequence": entry.sequence,
        },
    }


def seed_003_metrics(filters: Filters, entry: SnapshotEntry) -> list[dict[str, Any]]:
    """The snapshot's figures as seed 003's metrics: the fleet's first, then each kept row's."""
    metrics = _points(SEED_003_TOTAL_FIGURES, filters.fields, entry.totals(filters.view), {})
    for row in entry.rows:
        if filters.view.keeps(row):
            labels = {
                "service": row.service_name,
                "service_type": row.service_type,
                "status": row.status,
            }
            metrics.extend(_points(SEED_003_ROW_FIGURES, filters.fields, row.json, labels))
    metrics.extend(pushed_points(filters, entry.snapshot.pushed))
    return metrics


def pushed_points(
    filters: Filters, values: Iterable[ingest_pb2.PushedValue]
) -> list[dict[str, Any]]:
    """The pushed series that changed in a snapshot, as seed 003's metrics (see module doc).

    A series of a pushed service (OTLP) follows the service filters by its service name; seed
    003's series (no service) are kept when the filters keep every service. A `fields` filter
    keeps the series whose name it lists.
    """
    services = filters.view.services
    names = {name for name, _ in filters.fields}
    points = []
    for value in values:
        if value.service_name:
            if not services.keeps(value.service_name, PUSHED_TYPE):
                continue
        elif not services.keeps_everything:
            continue
        if names and value.name not in names:
            continue
        point: dict[str, Any] = {
            "name": value.name,
            "type": TYPE_NAMES.get(value.type, "gauge"),
            "value": value.value,
            "unit": value.unit,
            "labels": dict(value.labels),
            "timestamp": iso_utc(to_seconds(value.time)),
            "help_text": value.help_text,
            "pushed": True,
        }
        if value.service_name:
            point["service"] = value.service_name
        points.append(point)
    return points


def _points(
    figures: Mapping[str, Figure],
    fields: Fields,
    data: Mapping[str, Any],
    labels: dict[str, str],
) -> list[dict[str, Any]]:
    wanted = fields or tuple((name, name) for name in figures)
    points = []
    for name, figure_name in wanted:
        figure = figures.get(figure_name)
        value = data.get(figure_name)
        if figure is None or value is None:
            continue
        points.append(
            {
                "name": name,
                "type": "counter" if figure_name.startswith("total_") else "gauge",
                "value": value,
                "unit": figure.unit,
                "labels": labels,
            }
        )
    return points
