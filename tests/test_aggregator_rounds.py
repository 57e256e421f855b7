"""Rounds against a fleet of 15 real agents, four of them broken in different ways."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import grpc
import pytest
from metricsmesh.v1 import (
    aggregator_pb2,
    aggregator_pb2_grpc,
    event_rate_pb2,
    event_rate_pb2_grpc,
    snapshot_pb2,
)

from agent import AgentServer, EventTracker
from agent._convert import reading_to_response
from agent._server import EVENT_RATE_SERVICE, EventRateServicer
from aggregator import (
    DEFAULT_REGISTRY,
    AggregatorServer,
    AggregatorSettings,
    Clocks,
    Registry,
    ServiceEntry,
    SnapshotData,
)
from mesh_common.grpc_host import GrpcHost
from mesh_common.transport import listen
from mesh_common.wire_time import to_seconds
from tests.aggregator_fleet import FAILING, HUNG, NOT_SERVING, STOPPED, AnswerServicer, fleet
from tests.clocks import FakeClock
from tests.eventually import eventually

DEADLINE = 0.3

ACTIVE = snapshot_pb2.SERVICE_STATUS_ACTIVE
INACTIVE = snapshot_pb2.SERVICE_STATUS_INACTIVE
ERROR = snapshot_pb2.SERVICE_STATUS_ERROR
SERVING = snapshot_pb2.AGENT_HEALTH_SERVING


def settings(**changes: float) -> AggregatorSettings:
    values: dict[str, float] = {
        "port": 0,
        "interval_seconds": 1.0,
        "deadline_seconds": DEADLINE,
        "min_round_spacing_seconds": 0.0,  # on-demand rounds as fast as the tests ask
    }
    values.update(changes)
    return AggregatorSettings(**values)  # type: ignore[arg-type]


def fake_clocks(clock: FakeClock) -> Clocks:
    """A monotonic clock that only moves when the test says so: backoff is exact."""
    return Clocks(monotonic=clock, wall=time.time)


async def get_snapshot(address: str, *, fresh: bool = False) -> snapshot_pb2.Snapshot:
    """GetSnapshot; with `fresh`, max_age 0, so that every call runs a round of its own."""
    request = aggregator_pb2.GetSnapshotRequest()
    if fresh:
        request.max_age.FromNanoseconds(0)
    async with grpc.aio.insecure_channel(address) as channel:
        stub = aggregator_pb2_grpc.AggregatorServiceStub(channel)
        response = await stub.GetSnapshot(request)
        return response.snapshot


def row(snapshot: snapshot_pb2.Snapshot, name: str) -> snapshot_pb2.ServiceRow:
    return next(each for each in snapshot.services if each.service_name == name)


PATIENT = 0.8
"""A deadline no healthy agent misses on a loaded machine (0.3 s did, one run in three)."""


async def test_fleet_with_broken_agents_gives_every_row_its_status() -> None:
    patient = settings(deadline_seconds=PATIENT)
    async with fleet() as mesh, AggregatorServer(mesh.registry, patient) as server:
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
    # It was given its whole deadline (a lower bound: a loaded machine only adds to it).
    assert to_seconds(hung.call_latency) >= PATIENT * 0.9
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


async def test_hung_agent_is_called_once_and_the_round_ends_at_its_deadline() -> None:
    async with fleet() as mesh, AggregatorServer(mesh.registry, settings()) as server:
        snapshot = await get_snapshot(server.address)
        # The round is over although the hung agent has still not answered: it cost its
        # deadline, once, and the others' answers were not lost waiting for it.
        assert mesh.hanging.calls == 1
        assert not mesh.hanging.release.is_set()
    assert to_seconds(snapshot.round_duration) >= DEADLINE
    assert snapshot.active_count == 11
    assert "DEADLINE_EXCEEDED" in row(snapshot, mesh.name(HUNG)).error_message


async def test_agent_that_keeps_failing_is_skipped_with_backoff_but_still_listed(
    clock: FakeClock,
) -> None:
    # interval 1 s: after the second failure in a row, the next call is 2 s away.
    async with (
        fleet() as mesh,
        AggregatorServer(
            mesh.registry, settings(), clocks=fake_clocks(clock), interval_rounds=False
        ) as server,
    ):
        seen = [await get_snapshot(server.address, fresh=True) for _ in range(3)]
        calls_while_backing_off = mesh.hanging.calls
        clock.tick(2.0)  # the backoff is over
        after = await get_snapshot(server.address, fresh=True)
        calls_after = mesh.hanging.calls
    hung = [row(snapshot, mesh.name(HUNG)) for snapshot in seen]
    # Rounds 1 and 2 call the hung agent; after the second failure it is left alone.
    assert calls_while_backing_off == 2
    assert [r.consecutive_failures for r in hung] == [1, 2, 2]
    assert all(r.status == INACTIVE for r in hung)
    assert "backing off after 2 failed calls, next attempt in 2.0 s" in hung[2].error_message
    assert "DEADLINE_EXCEEDED" in hung[2].error_message
    # A call that failed has its latency; a call never made has none (not a 0).
    assert hung[1].HasField("call_latency")
    assert not hung[2].HasField("call_latency")
    assert seen[2].active_count == 11  # the others are called as usual
    # Once the backoff is over it is called again (and fails a third time).
    assert calls_after == 3
    assert row(after, mesh.name(HUNG)).consecutive_failures == 3


async def test_fifty_concurrent_get_snapshot_calls_share_one_round() -> None:
    async with (
        fleet(broken=False) as mesh,
        AggregatorServer(mesh.registry, settings(), interval_rounds=False) as server,
    ):  # rounds only when asked: a slow machine would otherwise see an interval round too
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

            async def not_serving() -> snapshot_pb2.Snapshot | None:
                later = await get_snapshot(server.address, fresh=True)
                return None if later.active_count else later

            later = await eventually(not_serving, what="the agent's NOT_SERVING to show")
    finally:
        await host.stop(0)
    (first,) = snapshot.services
    assert (first.status, first.health, first.total_events) == (ACTIVE, SERVING, 3)
    assert later.services[0].health == snapshot_pb2.AGENT_HEALTH_NOT_SERVING


async def test_agent_that_comes_back_is_active_again() -> None:
    async with fleet(DEFAULT_REGISTRY[:2], broken=False) as mesh:
        name = mesh.name(1)
        agent = mesh.agents[name]
        port = agent.port
        async with AggregatorServer(mesh.registry, settings(deadline_seconds=0.2)) as server:
            assert (await get_snapshot(server.address, fresh=True)).active_count == 2
            await agent.stop(0)
            gone = await get_snapshot(server.address, fresh=True)
            assert gone.services[1].status == INACTIVE
            revived = AgentServer(mesh.trackers[name], port=port, grace_seconds=0)
            await revived.start()
            try:

                async def both_active() -> snapshot_pb2.Snapshot | None:
                    snapshot = await get_snapshot(server.address, fresh=True)
                    return snapshot if snapshot.active_count == 2 else None

                back = await eventually(both_active, what=f"{name} to be active again")
            finally:
                await revived.stop(0)
    assert back.services[1].consecutive_failures == 0
    assert back.services[1].health == SERVING


async def test_agent_that_comes_back_during_its_backoff_is_called_at_once(
    clock: FakeClock,
) -> None:
    # The monotonic clock never moves in this test, so the backoff never runs out by itself:
    # only the agent's health stream answering again can end it.
    async with fleet(DEFAULT_REGISTRY[:2], broken=False) as mesh:
        name = mesh.name(1)
        port = mesh.agents[name].port
        long_backoff = settings(deadline_seconds=0.2, backoff_max_seconds=60)
        async with AggregatorServer(
            mesh.registry, long_backoff, clocks=fake_clocks(clock), interval_rounds=False
        ) as server:
            await mesh.agents[name].stop(0)
            for _ in range(3):
                gone = await get_snapshot(server.address, fresh=True)
            assert "backing off" in gone.services[1].error_message
            revived = AgentServer(mesh.trackers[name], port=port, grace_seconds=0)
            await revived.start()
            try:

                async def both_active() -> snapshot_pb2.Snapshot | None:
                    snapshot = await get_snapshot(server.address, fresh=True)
                    return snapshot if snapshot.active_count == 2 else None

                back = await eventually(both_active, what=f"{name} to be called again")
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
                # The round is under way once the hung agent has been called; it holds it.
                await eventually(lambda: mesh.hanging.calls, what="a round to call the agents")
                await server.stop()
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await call
        finally:
            await server.stop()
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert caught.value.details() == "aggregator shutting down"


async def test_an_agent_answering_garbage_is_an_error_row_and_rounds_go_on() -> None:
    async with fleet(DEFAULT_REGISTRY[:3], broken=False) as mesh:
        garbage = await mesh.add_garbage("garbage-api")
        entry = ServiceEntry("garbage-api", "127.0.0.1", 8200, garbage.port, "core")
        registry = Registry((*mesh.registry, entry))
        # Rounds only when asked: an interval round between the two would make a third.
        async with AggregatorServer(registry, settings(), interval_rounds=False) as server:
            first = await get_snapshot(server.address, fresh=True)
            second = await get_snapshot(server.address, fresh=True)
    broken = row(first, "garbage-api")
    assert broken.status == ERROR
    assert broken.error_message.startswith("undecodable answer")
    assert (first.active_count, first.error_count) == (3, 1)
    assert (second.sequence, second.active_count) == (2, 3)
    assert row(second, "garbage-api").consecutive_failures == 2


def foreign_answer(name: str, where: str) -> event_rate_pb2.GetEventRateResponse:
    """A real agent's answer with one latency histogram of scale 3 (the mesh's is 4)."""
    tracker = EventTracker(name)
    tracker.observe("api_call", 0.02)
    response = reading_to_response(tracker.read())
    kind = response.kinds[0]
    target = {
        "service": response.latency.histogram,
        "kind": kind.latency.histogram,
        "since_start": kind.latency_since_start,
    }[where]
    target.scale = 3
    return response


@pytest.mark.parametrize(
    ("where", "named"),
    [
        ("service", "the service's latency"),
        ("kind", "the latency of kind 'api_call'"),
        ("since_start", "the latency_since_start of kind 'api_call'"),
    ],
)
async def test_an_agent_with_a_foreign_histogram_scale_is_an_error_row_naming_it(
    where: str, named: str
) -> None:
    async with fleet(DEFAULT_REGISTRY[:2], broken=False) as mesh:
        odd = await mesh.add_servicer("odd-api", AnswerServicer(foreign_answer("odd-api", where)))
        entry = ServiceEntry("odd-api", "127.0.0.1", 8200, odd.port, "core")
        registry = Registry((*mesh.registry, entry))
        async with AggregatorServer(registry, settings()) as server:
            snapshot = await get_snapshot(server.address, fresh=True)
    odd_row = row(snapshot, "odd-api")
    assert odd_row.status == ERROR
    assert odd_row.error_message == (
        f"unusable answer: {named}: latency histogram of scale 3; the mesh uses 4"
    )
    assert not odd_row.kinds  # nothing of the answer reaches the readers of the snapshot
    assert (snapshot.active_count, snapshot.error_count) == (2, 1)


async def hanging_agent(calls: list[str]) -> grpc.aio.Server:
    """A server whose health Watch and GetEventRate never answer (each call is noted)."""

    async def hang(request: bytes, context: object) -> bytes:
        calls.append("GetEventRate")
        await asyncio.Event().wait()
        return b""

    async def watch(request: bytes, context: object) -> AsyncIterator[bytes]:
        calls.append("Watch")
        await asyncio.Event().wait()
        yield b""

    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                EVENT_RATE_SERVICE, {"GetEventRate": grpc.unary_unary_rpc_method_handler(hang)}
            ),
            grpc.method_handlers_generic_handler(
                "grpc.health.v1.Health", {"Watch": grpc.unary_stream_rpc_method_handler(watch)}
            ),
        )
    )
    return server


def waits_for_health() -> list[asyncio.Task[object]]:
    """The tasks of this loop still waiting for an agent's first health answer."""
    return [
        task
        for task in asyncio.all_tasks()
        if getattr(task.get_coro(), "__qualname__", "") == "HealthWatch.wait_known"
    ]


async def test_a_cancelled_round_leaves_no_task_waiting_for_health() -> None:
    calls: list[str] = []
    agent = await hanging_agent(calls)
    port = listen(agent, "127.0.0.1", 0)
    await agent.start()
    registry = Registry((ServiceEntry("silent-api", "127.0.0.1", 8100, port, "core"),))
    try:
        server = AggregatorServer(registry, settings(), interval_rounds=False)
        await server.start()
        try:
            request = asyncio.ensure_future(get_snapshot(server.address))
            await eventually(lambda: "GetEventRate" in calls and "Watch" in calls)
            assert waits_for_health()  # the round waits for the agent's first health answer
        finally:
            await server.stop(0)  # cancels the round in flight
        with pytest.raises(grpc.aio.AioRpcError):
            await request
        await eventually(lambda: not waits_for_health(), what="the health waits to end")
    finally:
        await agent.stop(0)


class BreakingWallClock:
    """A wall clock that fails when armed, once: a round that blows up from the inside."""

    def __init__(self) -> None:
        self.armed = False
        self.failures = 0

    def __call__(self) -> float:
        if self.armed:
            self.armed = False
            self.failures += 1
            raise RuntimeError("wall clock broke")
        return time.time()


async def test_a_round_that_blows_up_fails_its_callers_and_the_next_one_runs() -> None:
    wall = BreakingWallClock()
    clocks = Clocks(monotonic=time.monotonic, wall=wall)
    async with (
        fleet(DEFAULT_REGISTRY[:3], broken=False) as mesh,
        AggregatorServer(mesh.registry, settings(), clocks=clocks, interval_rounds=False) as server,
    ):
        wall.armed = True
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await get_snapshot(server.address, fresh=True)
        assert server.rounds == 0
        second = await get_snapshot(server.address, fresh=True)
    assert caught.value.code() == grpc.StatusCode.UNKNOWN
    assert wall.failures == 1
    assert (second.sequence, second.active_count) == (1, 3)


async def test_the_interval_loop_goes_on_after_a_round_blows_up() -> None:
    wall = BreakingWallClock()
    clocks = Clocks(monotonic=time.monotonic, wall=wall)
    fast = settings(interval_seconds=0.2, deadline_seconds=0.15)
    sequences: list[int] = []

    async def witness(snapshot: SnapshotData) -> None:
        sequences.append(snapshot.sequence)

    async with (
        fleet(DEFAULT_REGISTRY[:3], broken=False) as mesh,
        AggregatorServer(mesh.registry, fast, clocks=clocks) as server,
        grpc.aio.insecure_channel(server.address) as channel,
    ):
        server.loop.add_observer("witness", witness)
        stub = aggregator_pb2_grpc.AggregatorServiceStub(channel)
        call = stub.StreamSnapshots(aggregator_pb2.StreamSnapshotsRequest())
        await anext(aiter(call))  # somebody listens: the interval loop runs rounds
        wall.armed = True
        await eventually(lambda: wall.failures, what="a round of the interval loop to fail")
        before = server.rounds  # the failed round made no snapshot
        await eventually(
            lambda: sequences and sequences[-1] > before, what="a round after the failed one"
        )
        call.cancel()
    assert wall.failures == 1
    assert sequences == sorted(set(sequences))
