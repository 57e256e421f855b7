"""What `/metrics` adds for metrics pushed to the mesh, and seed 003's monitoring names.

Asked of the aggregator once per scrape (ListPushed and GetIngestStats, concurrently); when
it cannot answer (unreachable, `[ingest] enabled = false`) these families are left out and
the rest of the page is served as usual.

Pushed series: one family per metric name, its samples the latest value of each label set as
the aggregator holds it (ListPushed's `value`: a counter's value as pushed, so a pusher's reset
shows as a drop, which Prometheus's `rate()` and `increase()` read as a reset). The HELP line
is the pushed help text with the unit after it, `(unit: percent)`: the text format has no
`# UNIT` line (OpenMetrics only), and a name suffix would rename the pusher's metric. A
counter's name gets `_total` when it lacks it (Prometheus's counter convention, as
prometheus_client writes it); a gauge keeps its name. A pushed name that is one of the
gateway's own (`metricsmesh_*`, seed 003's four below) is left out rather than exposed twice;
so is a label set pushed under one name as another type than the name's first series.

Seed 003's names (its README's "Prometheus Metrics"):
  metrics_ingested_total   items the aggregator's ingestion path kept since it started
                           (GetIngestStats `accepted_total`: every surface, REST and OTLP alike)
  query_requests_total     history queries answered by this gateway since it started (seed
                           003's query, query/range, query/instant, latest, aggregated)
  active_alerts_total      pending and firing alerts by `severity` (the alert hub's)
  websocket_connections    WebSocket clients connected now
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator

from metricsmesh.v1 import ingest_pb2
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.samples import Sample

from gateway._errors import IngestCallError
from gateway._ingest_calls import call_ingest
from gateway._state import GatewayState
from mesh_common.severity import severity_of

SEED_003_NAMES = frozenset(
    {"metrics_ingested_total", "query_requests_total", "active_alerts_total",
     "websocket_connections"}
)  # fmt: skip
"""Seed 003's monitoring names, exposed by the gateway itself."""
OWN_PREFIX = "metricsmesh_"


async def scrape_families(state: GatewayState) -> list[Metric]:
    """Seed 003's names and the pushed series, as of now (one ListPushed, one GetIngestStats)."""
    listed, stats = await asyncio.gather(
        _ask(state, "ListPushed", ingest_pb2.ListPushedRequest()),
        _ask(state, "GetIngestStats", ingest_pb2.GetIngestStatsRequest()),
    )
    families = list(seed_003_families(state, stats))
    if isinstance(listed, ingest_pb2.ListPushedResponse):
        families.extend(pushed_families(listed.values))
    return families


async def _ask(state: GatewayState, method: str, request: object) -> object | None:
    try:
        response: object = await call_ingest(state, method, request)
    except IngestCallError:
        return None
    return response


def seed_003_families(state: GatewayState, stats: object | None) -> Iterator[Metric]:
    """Seed 003's four monitoring names (`metrics_ingested_total` only when the stats came)."""
    if isinstance(stats, ingest_pb2.GetIngestStatsResponse):
        yield CounterMetricFamily(
            "metrics_ingested_total",
            "Metrics and events the mesh's ingestion path kept since the aggregator started.",
            value=stats.stats.accepted_total,
        )
        yield CounterMetricFamily(
            "metricsmesh_ingest_rejected_total",
            "Pushed items the ingestion path refused since the aggregator started.",
            value=stats.stats.rejected_total,
        )
        yield GaugeMetricFamily(
            "metricsmesh_ingest_series",
            "Pushed series the aggregator holds now.",
            value=stats.stats.series,
        )
    yield CounterMetricFamily(
        "query_requests_total",
        "History queries this gateway answered since it started.",
        value=state.stats.query_requests,
    )
    alerts = GaugeMetricFamily(
        "active_alerts_total", "Pending and firing alerts, by severity.", labels=["severity"]
    )
    counts: dict[str, int] = {}
    for entry in state.alerts.current():
        severity = severity_of(entry.alert)
        counts[severity] = counts.get(severity, 0) + 1
    for severity, count in sorted(counts.items()):
        alerts.add_metric([severity], count)
    yield alerts
    yield GaugeMetricFamily(
        "websocket_connections", "WebSocket clients connected now.", value=state.stats.ws_clients
    )


def pushed_families(values: Iterable[ingest_pb2.PushedValue]) -> Iterator[Metric]:
    """One family per pushed metric name (values sorted by name, as ListPushed answers)."""
    family: Metric | None = None
    family_name = ""
    family_type = 0
    for value in values:
        if value.name in SEED_003_NAMES or value.name.startswith(OWN_PREFIX):
            continue
        if value.name != family_name:
            if family is not None:
                yield family
            family_name, family_type = value.name, value.type
            family = _family(value)
        if value.type != family_type:
            continue
        assert family is not None
        suffix = "_total" if family.type == "counter" else ""
        family.samples.append(Sample(family.name + suffix, dict(value.labels), value.value))
    if family is not None:
        yield family


def _family(value: ingest_pb2.PushedValue) -> Metric:
    help_text = value.help_text or f"{value.name}, pushed to the mesh."
    if value.unit:
        help_text = f"{help_text} (unit: {value.unit})"
    if value.type == ingest_pb2.PUSHED_METRIC_TYPE_COUNTER:
        return CounterMetricFamily(value.name, help_text)
    return GaugeMetricFamily(value.name, help_text)
