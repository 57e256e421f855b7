"""An aggregator for the OTLP tests, with its second OTLP port, and how they read it.

The aggregator has no agents: every row is pushed. Rounds run only when asked
(`fresh_row`: GetSnapshot with max_age 0), so what a test reads is what it pushed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import grpc
from metricsmesh.v1 import aggregator_pb2, aggregator_pb2_grpc, ingest_pb2, snapshot_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc

from aggregator import AggregatorServer, AggregatorSettings, Registry
from aggregator._ingest.settings import IngestSettings
from tests.eventually import eventually


@asynccontextmanager
async def otlp_aggregator(**ingest: Any) -> AsyncIterator[AggregatorServer]:
    """A started aggregator on port 0 with `[ingest]` settings (`otlp_port` 0 by default)."""
    settings = IngestSettings(**{"otlp_port": 0, **ingest})
    server = AggregatorServer(
        Registry(()),
        AggregatorSettings(port=0, interval_seconds=1.0, deadline_seconds=0.5),
        interval_rounds=False,
        ingest=settings,
    )
    await server.start()
    try:
        yield server
    finally:
        await server.stop(0)


async def fresh_snapshot(address: str) -> snapshot_pb2.Snapshot:
    """A snapshot from a round of its own (max_age 0)."""
    request = aggregator_pb2.GetSnapshotRequest()
    request.max_age.FromNanoseconds(0)
    async with grpc.aio.insecure_channel(address) as channel:
        response = await aggregator_pb2_grpc.AggregatorServiceStub(channel).GetSnapshot(request)
    return response.snapshot


async def row_with(address: str, service: str, total_events: int) -> snapshot_pb2.ServiceRow:
    """The row of `service` once it counts `total_events` (waits for the push to land)."""

    async def probe() -> snapshot_pb2.ServiceRow | None:
        snapshot = await fresh_snapshot(address)
        for row in snapshot.services:
            if row.service_name == service and row.total_events == total_events:
                return row
        return None

    return await eventually(probe, what=f"a row {service} with {total_events} events")


async def pushed(address: str, name: str = "") -> list[ingest_pb2.PushedValue]:
    """ListPushed: the latest value of every pushed series of `name` (all when "")."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = aggregator_pb2_grpc.AggregatorServiceStub(channel)
        response = await stub.ListPushed(ingest_pb2.ListPushedRequest(name=name))
    return list(response.values)


async def export(
    address: str, request: metrics_service_pb2.ExportMetricsServiceRequest
) -> metrics_service_pb2.ExportMetricsServiceResponse:
    """One MetricsService/Export call with the package's own stub."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = metrics_service_pb2_grpc.MetricsServiceStub(channel)  # type: ignore[no-untyped-call]
        answer: metrics_service_pb2.ExportMetricsServiceResponse = await stub.Export(request)
    return answer
