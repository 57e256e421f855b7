"""Agents restart and go away: the history counts every reported event once, none twice.

A real aggregator writes its history while one agent restarts (a new tracker, a new
start_time: its totals begin again) and while another is unreachable for some rounds and then
answers again (its events of the gap are counted in the round it comes back). Each backend
in turn.
"""

from __future__ import annotations

from metricsmesh.v1 import snapshot_pb2

from agent import AgentServer
from aggregator import AggregatorServer
from aggregator._history import KindSample, SeriesKey
from aggregator._history.samples import time_ms_of
from tests.clocks import FakeClock
from tests.eventually import eventually
from tests.history_backends import HistoryBackend
from tests.history_mesh import (
    Workload,
    agents,
    fake_clocks,
    history_server,
    registry_of,
    run_round,
    stored_events,
    tick,
    tracker,
    writer_of,
)

ACTIVE = snapshot_pb2.SERVICE_STATUS_ACTIVE
API = SeriesKey("orders-api", "api_call")


async def round_until_active(
    server: AggregatorServer, monotonic: FakeClock, wall: FakeClock
) -> snapshot_pb2.Snapshot:
    """Rounds (a second apart) until the agent answers again; the round that sees it."""

    async def answered() -> snapshot_pb2.Snapshot | None:
        tick(monotonic, wall, 1.0)
        snapshot = await run_round(server)
        return snapshot if snapshot.services[0].status == ACTIVE else None

    return await eventually(answered, what="the agent to answer again")


async def test_an_agent_restart_counts_nothing_twice_and_loses_nothing_it_reported(
    history_backend: HistoryBackend,
) -> None:
    monotonic, wall, clocks = fake_clocks()
    first = tracker("orders-api", monotonic, wall)
    work = Workload({"orders-api": first})
    agent = AgentServer(first, grace_seconds=0)
    port = await agent.start()
    try:
        async with history_server(registry_of([agent]), history_backend, clocks) as server:
            for _ in range(5):
                tick(monotonic, wall, 1.0)
                for _ in range(4):
                    work.feed("orders-api", "api_call", 0.01, error=False)
                work.reported_at(time_ms_of((await run_round(server)).take_time))
            last_of_first = work.reported[-1][0]
            work.feed("orders-api", "api_call", 0.01)  # counted by no round: lost with it
            await agent.stop(0)
            work.lost("orders-api")
            tick(monotonic, wall, 1.0)
            second = tracker("orders-api", monotonic, wall)  # its totals start again
            work.trackers["orders-api"] = second
            for number in range(30):  # more than the first lifetime's total: still a reset
                work.feed("orders-api", "api_call", 0.01, error=number < 7)
            agent = AgentServer(second, port=port, grace_seconds=0)
            await agent.start()
            back = await round_until_active(server, monotonic, wall)
            work.reported_at(time_ms_of(back.take_time))
            for _ in range(3):
                tick(monotonic, wall, 1.0)
                work.feed("orders-api", "api_call", 0.03)
                work.reported_at(time_ms_of((await run_round(server)).take_time))
            writer = writer_of(server)
            tier = writer.reader.tiers[0]
            samples = writer.reader.read([API], tier, 0, 2**62)[API]
            errors = sum(s.errors for s in samples if isinstance(s, KindSample))
            stored = stored_events(writer, API, tier)
    finally:
        await agent.stop(0)
    assert stored == len(work.reported) == 5 * 4 + 30 + 3
    assert errors == 7
    assert all(isinstance(s, KindSample) and s.events >= 0 for s in samples)
    # The first round that read the new lifetime (it may still wait for its health) has its
    # events: 30, not 30 - 21.
    restart = next(s for s in samples if s.time_ms > last_of_first)
    assert (restart.events, restart.errors) == (30, 7)


async def test_an_agent_unreachable_for_rounds_has_its_events_in_the_round_it_comes_back(
    history_backend: HistoryBackend,
) -> None:
    monotonic, wall, clocks = fake_clocks()
    orders = tracker("orders-api", monotonic, wall)
    async with agents([orders]) as servers:
        registry = registry_of(servers)
        async with history_server(registry, history_backend, clocks) as server:
            orders.record("api_call", n=10)
            tick(monotonic, wall, 1.0)
            await run_round(server)
            port = servers[0].port
            await servers[0].stop(0)
            for _ in range(4):  # unreachable: no kind sample, the events wait in the agent
                tick(monotonic, wall, 1.0)
                orders.record("api_call", n=25)
                assert (await run_round(server)).services[0].status != ACTIVE
            servers[0] = AgentServer(orders, port=port, grace_seconds=0)
            await servers[0].start()
            back = await round_until_active(server, monotonic, wall)
            writer = writer_of(server)
            reader = writer.reader
            samples = reader.read([API], reader.tiers[0], 0, 2**62)[API]
            service = reader.read([SeriesKey("orders-api", "")], reader.tiers[0], 0, 2**62)
    assert [(s.time_ms, s.events) for s in samples] == [
        (samples[0].time_ms, 10),
        (time_ms_of(back.take_time), 100),
    ]
    statuses = [s.active_rounds for s in service[SeriesKey("orders-api", "")]]
    assert statuses[0] == 1 and statuses[-1] == 1 and 0 in statuses
