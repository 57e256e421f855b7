"""GET /metrics: Prometheus exposition built from the latest snapshot at scrape time.

A custom Collector on the gateway's own CollectorRegistry turns the snapshot into metric
families (metricsmesh_ prefix, base units, labels `service` and `type`). The per-service
families come from the row schema (`mesh_common.figures`, each figure's `series`). Per kind
(label `kind`): event and error totals, and `metricsmesh_service_latency_seconds`, a classic
histogram of every timed event since the agent started, its fine buckets folded exactly into
the `le` bounds of `mesh_common.latency.PROMETHEUS_BOUNDS`. Rows that are not active get
`metricsmesh_service_up 0` and no rate, counter or histogram samples, so a dead service shows
as absent data, not as a false zero or a counter reset. A service of several instances gets
label `instance` (its agent's address) where one series per instance is what Prometheus
needs: its counters and latency histograms are per active instance (their sum over instances
that come and go is no counter: `sum by (service)` of their rates is the service's), and
`metricsmesh_instance_up{service,type,instance}` says which are active; its gauges stay the
service's (the row's figures). Prometheus renames an exposed `instance` label to
`exported_instance` unless the scrape job sets `honor_labels: true`. `metricsmesh_alerts{alertname,
alertstate,service,severity,kind}` is 1 per pending or firing alert, like Prometheus's `ALERTS`.
`metricsmesh_build_info{version,python}` is always 1 (the Prometheus `*_build_info` convention).
The history store's own figures come from the aggregator's GetHistoryStatus as the gateway last
polled it (every few seconds, never per scrape: `gateway._history_status`):
`metricsmesh_history_up` (1 while rounds are written, 0 when degraded, disabled or unknown),
and while it answers `metricsmesh_history_bytes{tier}`, `metricsmesh_history_rows_written_total`
(one row per round), `metricsmesh_history_write_seconds` (the writer's time on the last round),
`metricsmesh_history_dropped_total` and `metricsmesh_history_buffered_rounds`.
The live fleet, from GetFleet as last polled (`gateway._fleet_status`), once the aggregator
answered: `metricsmesh_config_last_reload_successful` (0 while the mesh file's last reload
failed, as Prometheus's own `prometheus_config_last_reload_successful`) and
`metricsmesh_fleet_source_up{kind,source}` (0 while a source's last read failed).
Seed 003's monitoring names and the series pushed to the mesh follow, asked of the aggregator
once per scrape (`gateway._pushed_exposition`). `/metrics/prometheus` (seed 004's path) serves
the same page.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response
from metricsmesh.v1 import event_rate_pb2, fleet_pb2, snapshot_pb2
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from gateway._pushed_exposition import scrape_families
from gateway._state import GatewayState
from gateway._views import SnapshotEntry
from mesh_common import latency
from mesh_common.figures import ROW_FIGURES, Figure
from mesh_common.severity import severity_of
from mesh_common.version import python_version, version
from mesh_common.views import RowValues
from mesh_common.wire_time import to_seconds

LABELS = ["service", "type"]
KIND_LABELS = ["service", "type", "kind"]
INSTANCE_LABEL = "instance"
"""Added to the series of one instance of a service of several instances (its address)."""
ALERT_LABELS = ["alertname", "alertstate", "service", "severity", "kind"]
"""The labels of `metricsmesh_alerts` (`kind` empty unless the rule watches kinds)."""
_LE = [repr(bound) for bound in latency.PROMETHEUS_BOUNDS]
_EXPOSED: tuple[Figure, ...] = tuple(figure for figure in ROW_FIGURES if figure.series)
_BUILD_INFO = GaugeMetricFamily(
    "metricsmesh_build_info",
    "Always 1; the labels say which metrics-mesh and Python the gateway runs.",
    labels=["version", "python"],
)
_BUILD_INFO.add_metric([version(), python_version()], 1.0)


class SnapshotCollector(Collector):
    """Yields the latest snapshot's figures, plus the gateway's own upstream and client state."""

    def __init__(self, state: GatewayState) -> None:
        self._state = state

    def collect(self) -> Iterator[Metric]:
        """Build the families from whatever snapshot is latest right now."""
        yield from self._gateway_families()
        yield self._alert_family()
        yield from self._history_families()
        yield from self._fleet_families()
        entry = self._state.hub.latest
        if entry is not None:
            yield from self._snapshot_families(entry)
            yield from self._service_families(entry)

    def _gateway_families(self) -> Iterator[Metric]:
        state = self._state
        yield _BUILD_INFO
        fresh = state.fresh()
        yield GaugeMetricFamily(
            "metricsmesh_gateway_upstream_up",
            "1 when the gateway's aggregator subscription is connected and its snapshot fresh.",
            value=1.0 if fresh is not None and state.hub.state == "connected" else 0.0,
        )
        clients = GaugeMetricFamily(
            "metricsmesh_gateway_clients", "Connected streaming clients.", labels=["protocol"]
        )
        clients.add_metric(["sse"], state.stats.sse_clients)
        clients.add_metric(["websocket"], state.stats.ws_clients)
        yield clients

    def _history_families(self) -> Iterator[Metric]:
        poller = self._state.history
        yield GaugeMetricFamily(
            "metricsmesh_history_up",
            "1 while the aggregator writes every round to its history store (0: degraded, "
            "disabled or unknown).",
            value=1.0 if poller.state == "ok" else 0.0,
        )
        status = poller.status
        if status is None:
            return
        size = GaugeMetricFamily(
            "metricsmesh_history_bytes",
            "Bytes of each tier's chunks in the history store.",
            labels=["tier"],
        )
        for tier in status.tiers:
            size.add_metric([tier.tier.text], tier.bytes)
        yield size
        yield CounterMetricFamily(
            "metricsmesh_history_rows_written",
            "Rounds written to the history store (one row each).",
            value=status.rounds_written,
        )
        yield GaugeMetricFamily(
            "metricsmesh_history_write_seconds",
            "The history writer's time on the last round (samples, encoding, the write).",
            value=to_seconds(status.last_write_duration),
        )
        yield CounterMetricFamily(
            "metricsmesh_history_dropped",
            "Rounds never stored (queue or retry buffer full); the next round kept counts "
            "their events.",
            value=status.dropped_rounds,
        )
        yield GaugeMetricFamily(
            "metricsmesh_history_buffered_rounds",
            "Rounds waiting to be written again while the store fails.",
            value=status.buffered_rounds,
        )

    def _fleet_families(self) -> Iterator[Metric]:
        poller = self._state.fleet
        fleet = poller.fleet
        if fleet is None:
            return
        yield GaugeMetricFamily(
            "metricsmesh_config_last_reload_successful",
            "0 while the last reload of the mesh file's [[services]] failed (the last good "
            "registry stays), else 1.",
            value=0.0 if poller.reload_problem is not None else 1.0,
        )
        up = GaugeMetricFamily(
            "metricsmesh_fleet_source_up",
            "1 when the source of the registry read well the last time, 0 when it failed (its "
            "last good services stay).",
            labels=["kind", "source"],
        )
        for source in fleet.sources:
            kind = fleet_pb2.FleetSourceKind.Name(source.kind).removeprefix("FLEET_SOURCE_KIND_")
            up.add_metric([kind.lower(), source.name], 0.0 if source.error else 1.0)
        yield up

    def _alert_family(self) -> Metric:
        """`metricsmesh_alerts` = 1 per pending or firing alert, like Prometheus's `ALERTS`."""
        family = GaugeMetricFamily(
            "metricsmesh_alerts",
            "1 per pending or firing alert of the mesh (like Prometheus's ALERTS).",
            labels=ALERT_LABELS,
        )
        seen: set[tuple[str, ...]] = set()
        for entry in self._state.alerts.current():
            alert = entry.alert
            labels = (
                alert.name,
                entry.json["state"],
                alert.service_name,
                severity_of(alert),
                alert.kind,
            )
            if labels not in seen:  # two rules of one name: one series, as in ALERTS
                seen.add(labels)
                family.add_metric(list(labels), 1.0)
        return family

    def _snapshot_families(self, entry: SnapshotEntry) -> Iterator[Metric]:
        snap = entry.snapshot
        for name, help_text, value in (
            ("snapshot_age_seconds", "Age of the latest snapshot.",
             entry.age(self._state.clocks.monotonic())),
            ("snapshot_sequence", "Sequence of the latest snapshot.", snap.sequence),
            ("round_duration_seconds", "How long the latest aggregator round took.",
             to_seconds(snap.round_duration)),
            ("services_answered", "Services whose agent answered in the latest round.",
             snap.services_answered),
            ("services_configured", "Services configured in the aggregator's registry.",
             snap.services_total),
            ("events_per_second", "Events per second summed over active services.",
             snap.events_per_second),
        ):  # fmt: skip
            yield GaugeMetricFamily(f"metricsmesh_{name}", help_text, value=value)

    def _service_families(self, entry: SnapshotEntry) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "metricsmesh_service_up", "1 when the service is active, else 0.", labels=LABELS
        )
        instance_up = GaugeMetricFamily(
            "metricsmesh_instance_up",
            "1 when the instance (label instance: its agent's address) of a service of several "
            "instances is active, else 0.",
            labels=[*LABELS, INSTANCE_LABEL],
        )
        families: dict[str, GaugeMetricFamily | CounterMetricFamily] = {}
        for figure in _EXPOSED:
            assert figure.series is not None
            family = (
                CounterMetricFamily if figure.series.metric_type == "counter" else GaugeMetricFamily
            )
            families[figure.name] = family(figure.series.name, figure.series.help, labels=LABELS)
        for row in entry.rows:
            labels = [row.service_name, row.service_type]
            up.add_metric(labels, 1.0 if row.active else 0.0)
            instances = row.message.instances
            for instance in instances:
                active = instance.status == snapshot_pb2.SERVICE_STATUS_ACTIVE
                instance_up.add_metric([*labels, instance.address], 1.0 if active else 0.0)
            for figure in _EXPOSED:
                series = figure.series
                if series is None:
                    continue
                if instances and series.metric_type == "counter":
                    _per_instance(families[figure.name], labels, instances, figure, series.scale)
                    continue
                value = row.raw[figure.name]
                if value is None or not (row.active or series.when_inactive):
                    continue
                families[figure.name].add_metric(labels, value * series.scale)
        yield up
        yield instance_up
        yield from families.values()
        yield from self._kind_families(entry)

    def _kind_families(self, entry: SnapshotEntry) -> Iterator[Metric]:
        events = CounterMetricFamily(
            "metricsmesh_service_kind_events",
            "Events of one kind the service counted since its agent started.",
            labels=KIND_LABELS,
        )
        errors = CounterMetricFamily(
            "metricsmesh_service_errors",
            "Failed events of one kind since the service's agent started.",
            labels=KIND_LABELS,
        )
        durations = HistogramMetricFamily(
            "metricsmesh_service_latency_seconds",
            "Durations of one kind's timed events since the service's agent started.",
            labels=KIND_LABELS,
        )
        for row in entry.rows:
            if not row.active:
                continue
            message = row.message
            if not message.instances:
                _add_kinds((events, errors, durations), row, message.kinds, "")
                continue
            for instance in message.instances:
                if instance.status == snapshot_pb2.SERVICE_STATUS_ACTIVE:
                    _add_kinds((events, errors, durations), row, instance.kinds, instance.address)
        yield from (events, errors, durations)


def _add(family: Any, labels: list[str], address: str, *values: Any) -> None:
    """`family.add_metric(labels, *values)`, its samples labelled `instance` when `address`."""
    start = len(family.samples)
    family.add_metric(labels, *values)
    if address:
        family.samples[start:] = [
            sample._replace(labels={**sample.labels, INSTANCE_LABEL: address})
            for sample in family.samples[start:]
        ]


def _per_instance(
    family: GaugeMetricFamily | CounterMetricFamily,
    labels: list[str],
    instances: Iterable[snapshot_pb2.InstanceRow],
    figure: Figure,
    scale: float,
) -> None:
    """A counter of a service of several instances: one series per active instance."""
    for instance in instances:
        value = figure.read(instance)
        if instance.status == snapshot_pb2.SERVICE_STATUS_ACTIVE and value is not None:
            _add(family, labels, instance.address, value * scale)


def _add_kinds(
    families: tuple[CounterMetricFamily, CounterMetricFamily, HistogramMetricFamily],
    row: RowValues,
    kinds: Iterable[event_rate_pb2.EventKindRate],
    address: str,
) -> None:
    """Each kind's event and error totals and latency histogram (of one instance: `address`)."""
    events, errors, durations = families
    for kind in kinds:
        labels = [row.service_name, row.service_type, kind.kind]
        _add(events, labels, address, kind.total_events)
        _add(errors, labels, address, kind.total_errors)
        if kind.HasField("latency_since_start"):
            histogram = latency.from_proto(kind.latency_since_start)
            counts = latency.cumulative_at(histogram, latency.PROMETHEUS_BOUNDS)
            buckets = [*zip(_LE, counts, strict=True), ("+Inf", histogram.count)]
            _add(durations, labels, address, buckets, histogram.sum_seconds)


def prometheus_router(state: GatewayState) -> APIRouter:
    """/metrics from the gateway's own registry (not the process-global default one)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(state))
    router = APIRouter(tags=["metrics"])

    async def exposition() -> Response:
        extra = CollectorRegistry(auto_describe=False)
        extra.register(_Fixed(await scrape_families(state)))
        page = generate_latest(registry) + generate_latest(extra)
        return Response(page, media_type=CONTENT_TYPE_LATEST)

    @router.get("/metrics", response_class=Response, summary="Prometheus exposition")
    async def metrics() -> Response:
        """The latest snapshot in the Prometheus text format, with the pushed series.

        Also seed 003's monitoring names and the pushed series with their help text
        (`gateway._pushed_exposition`).
        """
        return await exposition()

    @router.get(
        "/metrics/prometheus",
        response_class=Response,
        summary="Prometheus exposition (seed 004's path; the same page as /metrics)",
    )
    async def seed_004_metrics() -> Response:
        """The same page as /metrics, at seed 004's path."""
        return await exposition()

    return router


class _Fixed(Collector):
    """Families built before the scrape (the pushed series asked of the aggregator)."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        """The families as built."""
        return iter(self._families)
