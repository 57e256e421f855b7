"""Pushed metrics and events through a real aggregator's Ingest RPC, read back as rows.

A real AggregatorServer with two real agents, on ephemeral ports, driven by a fake clock:
rounds run when the test asks, so every figure and status below is exact.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
from metricsmesh.v1 import aggregator_pb2, aggregator_pb2_grpc, ingest_pb2, snapshot_pb2

from aggregator import AggregatorServer, AggregatorSettings, Clocks, SnapshotData
from aggregator._ingest.settings import IngestSettings
from mesh_common.registry import DEFAULT_REGISTRY
from tests.aggregator_fleet import fleet
from tests.clocks import FakeClock

WALL = 1_800_000_000.0
Stub = aggregator_pb2_grpc.AggregatorServiceStub
SETTINGS = AggregatorSettings(
    port=0, interval_seconds=10.0, deadline_seconds=5.0, min_round_spacing_seconds=0
)
INGEST = IngestSettings(otlp_port=-1, staleness_seconds=30.0)


@pytest.fixture
async def server(clock: FakeClock) -> AsyncIterator[AggregatorServer]:
    async with (
        fleet(DEFAULT_REGISTRY[:2], broken=False) as agents,
        AggregatorServer(
            agents.registry,
            SETTINGS,
            clocks=Clocks(monotonic=clock, wall=lambda: WALL + clock.now),
            interval_rounds=False,
            ingest=INGEST,
        ) as running,
    ):
        yield running


@pytest.fixture
async def stub(server: AggregatorServer) -> AsyncIterator[Stub]:
    async with grpc.aio.insecure_channel(server.address) as channel:
        yield aggregator_pb2_grpc.AggregatorServiceStub(channel)


async def a_round(server: AggregatorServer) -> SnapshotData:
    return await asyncio.wait_for(server.loop.snapshot(0), 30.0)


async def wire_snapshot(stub: aggregator_pb2_grpc.AggregatorServiceStub) -> snapshot_pb2.Snapshot:
    response = await stub.GetSnapshot(aggregator_pb2.GetSnapshotRequest())
    return response.snapshot


def login(count: int = 1, errors: int = 0) -> ingest_pb2.PushedEvent:
    return ingest_pb2.PushedEvent(kind="user_login", count=count, errors=errors)


async def test_pushed_events_are_a_row_beside_the_polled_ones(
    server: AggregatorServer, stub: aggregator_pb2_grpc.AggregatorServiceStub, clock: FakeClock
) -> None:
    answer = await stub.Ingest(ingest_pb2.IngestRequest(events=[login(9, errors=1)]))
    assert (answer.accepted, list(answer.rejected)) == (1, [])
    clock.tick(10)
    await stub.Ingest(ingest_pb2.IngestRequest(events=[login()]))
    await a_round(server)
    snapshot = await wire_snapshot(stub)
    rows = {row.service_name: row for row in snapshot.services}
    assert list(rows) == [entry.name for entry in DEFAULT_REGISTRY[:2]] + ["metrics-service"]
    row = rows["metrics-service"]
    assert row.pushed and row.service_type == "pushed" and row.port == 0
    assert row.status == snapshot_pb2.SERVICE_STATUS_ACTIVE
    assert (row.total_events, row.total_errors) == (10, 1)
    assert row.events_per_second == pytest.approx(10 / 10)  # 10 events in the 10 s since the first
    assert not row.HasField("call_latency")  # no call was made
    assert snapshot.services_total == 3
    assert snapshot.active_count == 3
    polled = sum(r.total_events for r in snapshot.services if not r.pushed)
    assert snapshot.total_events == polled + 10


async def test_a_silent_pushed_row_turns_inactive_with_its_last_figures(
    server: AggregatorServer, stub: aggregator_pb2_grpc.AggregatorServiceStub, clock: FakeClock
) -> None:
    await stub.Ingest(ingest_pb2.IngestRequest(events=[login(5)]))
    clock.tick(1)
    await a_round(server)
    clock.tick(40)
    await a_round(server)
    row = next(r for r in (await wire_snapshot(stub)).services if r.pushed)
    assert row.status == snapshot_pb2.SERVICE_STATUS_INACTIVE
    assert row.error_message == "no push for 41 s (its staleness window is 30 s)"
    assert row.total_events == 5  # the last known figures, not zeros
    assert row.last_seen_age.seconds == 40


async def test_refused_items_are_listed_and_the_rest_kept(
    stub: aggregator_pb2_grpc.AggregatorServiceStub,
) -> None:
    request = ingest_pb2.IngestRequest(
        metrics=[
            ingest_pb2.PushedMetric(name="cpu_usage_percent", value=45.2, labels={"host": "a"}),
            ingest_pb2.PushedMetric(
                name="cpu_usage_percent",
                type=ingest_pb2.PUSHED_METRIC_TYPE_GAUGE,
                value=float("nan"),
                labels={"host": "a"},
            ),
            ingest_pb2.PushedMetric(
                name="cpu_usage_percent",
                type=ingest_pb2.PUSHED_METRIC_TYPE_GAUGE,
                value=45.2,
                labels={"host": "server01"},
                help_text="CPU usage percentage",
                unit="percent",
            ),
        ],
        events=[ingest_pb2.PushedEvent(kind="")],
    )
    answer = await stub.Ingest(request)
    assert answer.accepted == 1
    assert [(r.item, r.reason) for r in answer.rejected] == [
        ("events[0]", "the kind of event is empty"),
        ("metrics[0]", "type must be gauge or counter"),
        ("metrics[1]", "value nan is not a finite number (NaN and Inf are refused)"),
    ]
    listed = await stub.ListPushed(ingest_pb2.ListPushedRequest(name="cpu_usage_percent"))
    (value,) = listed.values
    assert (dict(value.labels), value.value, value.help_text) == (
        {"host": "server01"},
        45.2,
        "CPU usage percentage",
    )
    stats = (await stub.GetIngestStats(ingest_pb2.GetIngestStatsRequest())).stats
    assert (stats.accepted_total, stats.rejected_total, stats.series) == (1, 3, 1)
    assert dict(stats.rejected_by_limit) == {"": 3}


async def test_a_request_past_max_batch_is_invalid_argument(
    stub: aggregator_pb2_grpc.AggregatorServiceStub,
) -> None:
    metric = ingest_pb2.PushedMetric(name="m", type=ingest_pb2.PUSHED_METRIC_TYPE_GAUGE, value=1.0)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.Ingest(ingest_pb2.IngestRequest(metrics=[metric] * 1001))
    assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert raised.value.details() == "1001 metrics in one request, more than 1000 (max_batch)"


async def test_changed_series_travel_on_the_next_snapshot(
    server: AggregatorServer, stub: aggregator_pb2_grpc.AggregatorServiceStub, clock: FakeClock
) -> None:
    metric = ingest_pb2.PushedMetric(
        name="queue_depth", type=ingest_pb2.PUSHED_METRIC_TYPE_GAUGE, value=7.0
    )
    await stub.Ingest(ingest_pb2.IngestRequest(metrics=[metric]))
    clock.tick(1)
    await a_round(server)
    (pushed,) = (await wire_snapshot(stub)).pushed
    assert (pushed.name, pushed.value) == ("queue_depth", 7.0)
    clock.tick(1)
    await a_round(server)
    assert list((await wire_snapshot(stub)).pushed) == []
