"""GET /metrics: Prometheus exposition built from the latest snapshot at scrape time.

A custom Collector on the gateway's own CollectorRegistry turns the snapshot into metric
families (metricsmesh_ prefix, base units, labels `service` and `type`). Rows that are not
active get `metricsmesh_service_up 0` and no rate or counter samples, so a dead service shows
as absent data, not as a false zero or a counter reset.
"""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import APIRouter
from fastapi.responses import Response
from metricsmesh.v1 import snapshot_pb2
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from gateway._state import GatewayState
from gateway._views import duration_seconds

LABELS = ["service", "type"]


class SnapshotCollector(Collector):
    """Yields the latest snapshot's figures, plus the gateway's own upstream and client state."""

    def __init__(self, state: GatewayState) -> None:
        self._state = state

    def collect(self) -> Iterator[Metric]:
        """Build the families from whatever snapshot is latest right now."""
        state = self._state
        hub = state.hub
        fresh = state.fresh()
        yield GaugeMetricFamily(
            "metricsmesh_gateway_upstream_up",
            "1 when the gateway's aggregator subscription is connected and its snapshot fresh.",
            value=1.0 if fresh is not None and hub.state == "connected" else 0.0,
        )
        clients = GaugeMetricFamily(
            "metricsmesh_gateway_clients", "Connected streaming clients.", labels=["protocol"]
        )
        clients.add_metric(["sse"], state.stats.sse_clients)
        clients.add_metric(["websocket"], state.stats.ws_clients)
        yield clients
        entry = hub.latest
        if entry is None:
            return
        snap = entry.snapshot
        yield GaugeMetricFamily(
            "metricsmesh_snapshot_age_seconds",
            "Age of the latest snapshot.",
            value=entry.age(hub.clock()),
        )
        yield GaugeMetricFamily(
            "metricsmesh_snapshot_sequence", "Sequence of the latest snapshot.", snap.sequence
        )
        yield GaugeMetricFamily(
            "metricsmesh_round_duration_seconds",
            "How long the latest aggregator round took.",
            value=duration_seconds(snap.round_duration),
        )
        yield GaugeMetricFamily(
            "metricsmesh_services_answered",
            "Services whose agent answered in the latest round.",
            value=snap.services_answered,
        )
        yield GaugeMetricFamily(
            "metricsmesh_services_configured",
            "Services configured in the aggregator's registry.",
            value=snap.services_total,
        )
        yield GaugeMetricFamily(
            "metricsmesh_events_per_second",
            "Events per second summed over active services.",
            value=snap.events_per_second,
        )
        up = GaugeMetricFamily(
            "metricsmesh_service_up", "1 when the service is active, else 0.", labels=LABELS
        )
        rate = GaugeMetricFamily(
            "metricsmesh_service_events_per_second",
            "The service's events per second over its 1-minute window.",
            labels=LABELS,
        )
        total = CounterMetricFamily(
            "metricsmesh_service_events",
            "Events the service counted since its agent started.",
            labels=LABELS,
        )
        uptime = GaugeMetricFamily(
            "metricsmesh_service_uptime_seconds", "The service agent's uptime.", labels=LABELS
        )
        latency = GaugeMetricFamily(
            "metricsmesh_service_call_latency_seconds",
            "How long the latest round's call to the service's agent took.",
            labels=LABELS,
        )
        for row in snap.services:
            labels = [row.service_name, row.service_type]
            active = row.status == snapshot_pb2.SERVICE_STATUS_ACTIVE
            up.add_metric(labels, 1.0 if active else 0.0)
            latency.add_metric(labels, duration_seconds(row.call_latency))
            if active:
                rate.add_metric(labels, row.events_per_second)
                total.add_metric(labels, row.total_events)
                uptime.add_metric(labels, duration_seconds(row.uptime))
        yield from (up, rate, total, uptime, latency)


def prometheus_router(state: GatewayState) -> APIRouter:
    """/metrics from the gateway's own registry (not the process-global default one)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(state))
    router = APIRouter(tags=["metrics"])

    @router.get("/metrics", response_class=Response, summary="Prometheus exposition")
    async def metrics() -> Response:
        """The latest snapshot in the Prometheus text format."""
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return router
