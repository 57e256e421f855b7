"""Rounds against a fleet of 15 real agents, four of them broken in different ways."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import grpc
import pytest
from agent.grpc_host import GrpcHost
from metricsmesh.v1 import aggregator_pb2, aggregator_pb2_grpc, event_rate_pb2_grpc, snapshot_pb2

from agent import AgentServer, EventTracker
from agent._server import EVENT_RATE_SERVICE, EventRateServicer
from aggregator import (
    DEFAULT_REGISTRY,
    AggregatorServer,
    AggregatorSettings,
    Clock,
    Registry,
    ServiceEntry,
)
from aggregator._fanout import FanOut
from aggregator._loop import RoundLoop
from aggregator._model import Outcome
from tests.aggregator_fleet import FAILING, HUNG, NOT_SERVING, STOPPED, fleet

DEADLINE = 0.3
MARGIN = 0.25  # scheduling slack on a loaded 2-core machine

ACTIVE = snapshot_pb2.SERVICE_STATUS_ACTIVE
INACTIVE = snapshot_pb2.SERVICE_STATUS_INACTIVE
ERROR = snapshot_pb2.SERVICE_STATUS_ERROR
SERVING = snapshot_pb2.AGENT_HEALTH_SERVING


def settings(**changes: float) -> AggregatorSettings:
    values: dict[str, float] = {
        "port": 0,
        "interval_seconds": 1.0,
        "deadline_seconds": DEADLINE,
    }
    values.update(changes)
    return AggregatorSettings(**values)  # type: ignore[arg-type]


async def get_snapshot(
    address: str, request: aggregator_pb2.GetSnapshotRequest | None = None
) -> snapshot_pb2.Snapshot:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = aggregator_pb2_grpc.AggregatorServiceStub(channel)
        response = await stub.GetSnapshot(request or aggregator_pb2.GetSnapshotRequest())
        return response.snapshot


async def test_fleet_with_broken_agents_gives_every_row_its_status() -> None:
    async with fleet() as mesh, AggregatorServer(mesh.registry, settings()) as server:
        snapshot = await get_snapshot(server.address)
    rows = {row.service_name: row for row in snapshot.services}
    assert [row.service_name for row in snapshot.services] == list(mesh.registry.names)
    broken = {STOPPED, HUNG, NOT_SERVING, FAILING}
    for index, entry in enumerate(mesh.registry):
        row = rows[entry.name]
        assert row.port == entry.port and row.agent_port == entry.agent_port
        if index not in broken:
            assert row.status == ACTIVE, row
            assert row.error_message == ""
            assert row.total_events == index + 1
            assert row.events_per_second > 0
            assert row.health == snapshot_pb2.AGENT_HEALTH_SERVING
            assert [(k.kind, k.total_events) for k in row.kinds] == [("event", index + 1)]
            assert row.HasField("last_event_time") and row.HasField("read_time")
            assert row.HasField("uptime") and row.HasField("age")
    stopped = rows[mesh.name(STOPPED)]
    assert stopped.status == INACTIVE
    assert "UNAVAILABLE" in stopped.error_message
    hung = rows[mesh.name(HUNG)]
    assert hung.status == INACTIVE
    assert "DEADLINE_EXCEEDED" in hung.error_message
    assert hung.call_latency.ToNanoseconds() / 1e9 == pytest.approx(DEADLINE, abs=MARGIN)
    not_serving = rows[mesh.name(NOT_SERVING)]
    assert not_serving.status == INACTIVE
    assert "NOT_SERVING" in not_serving.error_message
    assert not_serving.health == snapshot_pb2.AGENT_HEALTH_NOT_SERVING
    failing = rows[mesh.name(FAILING)]
    assert failing.status == ERROR
    assert failing.error_message == "INTERNAL: tracker exploded"
    for row in (stopped, hung, failing):
        assert row.consecutive_failures == 1
        assert row.total_events == 0 and row.events_per_second == 0


async def test_fleet_counts_and_totals_cover_active_rows_only() -> None:
    async with fleet() as mesh, AggregatorServer(mesh.registry, settings()) as server:
        snapshot = await get_snapshot(server.address)
    active = [row for row in snapshot.services if row.status == ACTIVE]
    assert snapshot.services_total == 15
    assert snapshot.services_answered == 12  # 11 active + the NOT_SERVING one answered
    assert (snapshot.active_count, snapshot.inactive_count, snapshot.error_count) == (11, 3, 1)
    assert snapshot.total_events == sum(row.total_events for row in active)
    assert snapshot.total_events == sum(
        index + 1 for index in range(15) if index not in {STOPPED, HUNG, NOT_SERVING, FAILING}
    )
    assert snapshot.events_per_second == pytest.approx(sum(r.events_per_second for r in active))
    assert snapshot.events_per_hour == pytest.approx(snapshot.events_per_second * 3600)
    data_rows = [
        mesh.registry.by_name(row.service_name)
        for row in active
        if mesh.registry.by_name(row.service_name).type == "data"
    ]
    assert list(snapshot.data_sources_active) == sorted(e.data_source for e in data_rows)
    # weather (hung), electricity (NOT_SERVING) and calendar (failing) are not active.
    assert list(snapshot.data_sources_active) == ["air-quality", "carbon", "smart-meter", "sports"]
    assert snapshot.sequence == 1


async def test_hung_agent_costs_one_deadline_and_no_more() -> None:
    async with fleet() as mesh, AggregatorServer(mesh.registry, settings()) as server:
        snapshot = await get_snapshot(server.address)
        assert mesh.hanging.calls == 1
    duration = snapshot.round_duration.ToNanoseconds() / 1e9
    assert DEADLINE <= duration <= DEADLINE + MARGIN
    fast = [
        row.call_latency.ToNanoseconds() / 1e9 for row in snapshot.services if row.status == ACTIVE
    ]
    assert max(fast) < DEADLINE  # the healthy rows were not held up by the hung one


async def test_agent_that_keeps_failing_is_skipped_with_backoff_but_still_listed() -> None:
    async with fleet() as mesh, AggregatorServer(mesh.registry, settings()) as server:
        seen = []
        for _ in range(3):
            request = aggregator_pb2.GetSnapshotRequest()
            request.max_age.FromNanoseconds(0)
            seen.append(await get_snapshot(server.address, request))
        calls = mesh.hanging.calls
    hung = [next(r for r in s.services if r.service_name == mesh.name(HUNG)) for s in seen]
    # Rounds 1 and 2 call the hung agent; after the second failure it is left alone.
    assert calls == 2
    assert [r.consecutive_failures for r in hung] == [1, 2, 2]
    assert all(r.status == INACTIVE for r in hung)
    assert "backing off" in hung[2].error_message
    assert "DEADLINE_EXCEEDED" in hung[2].error_message
    assert hung[2].call_latency.ToNanoseconds() == 0
    # The skipped round does not wait for the hung agent.
    assert seen[2].round_duration.ToNanoseconds() / 1e9 < DEADLINE


async def test_fifty_concurrent_get_snapshot_calls_share_one_round() -> None:
    async with fleet(broken=False) as mesh, AggregatorServer(mesh.registry, settings()) as server:
        assert server.rounds == 0
        async with grpc.aio.insecure_channel(server.address) as channel:
            stub = aggregator_pb2_grpc.AggregatorServiceStub(channel)
            responses = await asyncio.gather(
                *(stub.GetSnapshot(aggregator_pb2.GetSnapshotRequest()) for _ in range(50))
            )
        assert server.rounds == 1
    assert {response.snapshot.sequence for response in responses} == {1}
    assert all(response.snapshot.active_count == 15 for response in responses)


async def test_agent_without_its_name_in_health_falls_back_to_overall_health() -> None:
    tracker = EventTracker("legacy-api")
    tracker.record(n=3)
    host = GrpcHost(  # health knows only "" and the service, not "legacy-api"
        lambda server: event_rate_pb2_grpc.add_EventRateServiceServicer_to_server(
            EventRateServicer(tracker), server
        ),
        service_names=(EVENT_RATE_SERVICE,),
        grace_seconds=0,
    )
    port = await host.start()
    registry = Registry((ServiceEntry("legacy-api", "127.0.0.1", 8100, port, "core"),))
    try:
        async with AggregatorServer(registry, settings()) as server:
            snapshot = await get_snapshot(server.address)
            await host.set_serving(False)
            request = aggregator_pb2.GetSnapshotRequest()
            request.max_age.FromNanoseconds(0)
            deadline = time.monotonic() + 5
            while (later := await get_snapshot(server.address, request)).active_count:
                assert time.monotonic() < deadline, "NOT_SERVING was never seen"
    finally:
        await host.stop(0)
    (row,) = snapshot.services
    assert (row.status, row.health, row.total_events) == (ACTIVE, SERVING, 3)
    assert later.services[0].health == snapshot_pb2.AGENT_HEALTH_NOT_SERVING


async def test_agent_that_comes_back_is_active_again() -> None:
    async with fleet(DEFAULT_REGISTRY[:2], broken=False) as mesh:
        name = mesh.name(1)
        agent = mesh.agents[name]
        port = agent.port
        request = aggregator_pb2.GetSnapshotRequest()
        request.max_age.FromNanoseconds(0)
        async with AggregatorServer(mesh.registry, settings(deadline_seconds=0.2)) as server:
            assert (await get_snapshot(server.address, request)).active_count == 2
            await agent.stop(0)
            gone = await get_snapshot(server.address, request)
            assert gone.services[1].status == INACTIVE
            revived = AgentServer(mesh.trackers[name], port=port, grace_seconds=0)
            await revived.start()
            try:
                deadline = time.monotonic() + 10
                while (back := await get_snapshot(server.address, request)).active_count < 2:
                    assert time.monotonic() < deadline, back.services[1].error_message
            finally:
                await revived.stop(0)
    assert back.services[1].consecutive_failures == 0
    assert back.services[1].health == SERVING


async def test_agent_that_comes_back_during_its_backoff_is_called_at_once() -> None:
    async with fleet(DEFAULT_REGISTRY[:2], broken=False) as mesh:
        name = mesh.name(1)
        port = mesh.agents[name].port
        request = aggregator_pb2.GetSnapshotRequest()
        request.max_age.FromNanoseconds(0)
        # Two failures with a 10 s interval: the next call would be 20 s away.
        long_backoff = settings(interval_seconds=10, deadline_seconds=0.2, backoff_max_seconds=60)
        async with AggregatorServer(mesh.registry, long_backoff) as server:
            await mesh.agents[name].stop(0)
            for _ in range(3):
                gone = await get_snapshot(server.address, request)
            assert "backing off" in gone.services[1].error_message
            revived = AgentServer(mesh.trackers[name], port=port, grace_seconds=0)
            await revived.start()
            try:
                started = time.monotonic()
                while (back := await get_snapshot(server.address, request)).active_count < 2:
                    assert time.monotonic() - started < 10, back.services[1].error_message
                    await asyncio.sleep(0.05)
            finally:
                await revived.stop(0)
    assert back.services[1].consecutive_failures == 0


async def test_get_snapshot_waiting_on_a_round_during_shutdown_gets_unavailable() -> None:
    async with fleet() as mesh:
        server = AggregatorServer(mesh.registry, settings(deadline_seconds=0.9))
        await server.start()
        try:
            async with grpc.aio.insecure_channel(server.address) as channel:
                stub = aggregator_pb2_grpc.AggregatorServiceStub(channel)
                call = stub.GetSnapshot(aggregator_pb2.GetSnapshotRequest())
                deadline = time.monotonic() + 5
                while mesh.hanging.calls == 0:  # the round is under way, held by the hung agent
                    assert time.monotonic() < deadline, "no round started"
                    await asyncio.sleep(0.01)
                await server.stop()
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await call
        finally:
            await server.stop()
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert caught.value.details() == "aggregator shutting down"


async def test_a_round_that_blows_up_is_logged_and_the_next_one_runs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class ExplodingOnce(FanOut):
        exploded = False

        async def collect(self, skip: Sequence[str | None]) -> list[Outcome]:
            if not self.exploded:
                self.exploded = True
                raise RuntimeError("disk on fire")
            return await super().collect(skip)

    async with fleet(DEFAULT_REGISTRY[:3], broken=False) as mesh:
        clock = Clock(time.monotonic, time.time)
        fanout = ExplodingOnce(mesh.registry, deadline=DEADLINE, clock=clock)
        loop = RoundLoop(mesh.registry, settings(), clock=clock, fanout=fanout)
        loop.start()
        try:
            first = await loop.snapshot(0)
            second = await loop.snapshot(0)
        finally:
            await loop.stop()
    assert [row.status.value for row in first.rows] == ["error"] * 3
    assert "round failed: RuntimeError('disk on fire')" in first.rows[0].error_message
    assert "collecting a round failed" in caplog.text
    assert (second.sequence, second.active_count) == (2, 3)
