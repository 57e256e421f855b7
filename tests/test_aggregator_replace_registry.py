"""`RoundLoop.replace_registry()`: targets added, removed and moved between two rounds.

Real agents on ephemeral ports; the monotonic clock is fake, so backoff only moves when a test
says so and every round is one the test asked for (GetSnapshot with max_age 0).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Sequence

import grpc
from metricsmesh.v1 import aggregator_pb2, aggregator_pb2_grpc, snapshot_pb2

from aggregator import (
    DEFAULT_REGISTRY,
    AggregatorServer,
    AggregatorSettings,
    Clocks,
    Registry,
)
from tests.aggregator_fleet import HUNG, entry_at, fleet
from tests.clocks import FakeClock
from tests.eventually import eventually
from tests.ports import free_port

ACTIVE = snapshot_pb2.SERVICE_STATUS_ACTIVE
INACTIVE = snapshot_pb2.SERVICE_STATUS_INACTIVE

SETTINGS = AggregatorSettings(
    port=0, interval_seconds=1.0, deadline_seconds=0.3, min_round_spacing_seconds=0
)  # rounds on demand as fast as the test asks, on a clock that does not move
"""interval 1 s: after two failures in a row an agent is left alone for 2 s."""


def fake_clocks(clock: FakeClock) -> Clocks:
    return Clocks(monotonic=clock, wall=time.time)


async def fresh(address: str) -> snapshot_pb2.Snapshot:
    """A snapshot from a round of its own (max_age 0)."""
    request = aggregator_pb2.GetSnapshotRequest()
    request.max_age.FromNanoseconds(0)
    async with grpc.aio.insecure_channel(address) as channel:
        response = await aggregator_pb2_grpc.AggregatorServiceStub(channel).GetSnapshot(request)
    return response.snapshot


async def latest(address: str) -> snapshot_pb2.Snapshot:
    """The latest snapshot, without a new round (the fake clock does not move)."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = aggregator_pb2_grpc.AggregatorServiceStub(channel)
        response = await stub.GetSnapshot(aggregator_pb2.GetSnapshotRequest())
    return response.snapshot


async def replay(address: str, count: int) -> list[snapshot_pb2.Snapshot]:
    """Every snapshot of the history, oldest first, as StreamSnapshots replays it."""
    request = aggregator_pb2.StreamSnapshotsRequest(after_sequence=0)
    async with grpc.aio.insecure_channel(address) as channel:
        call = aggregator_pb2_grpc.AggregatorServiceStub(channel).StreamSnapshots(request)
        stream = aiter(call)
        messages = [await anext(stream) for _ in range(count)]
        call.cancel()
    assert all(message.replayed for message in messages)
    return [message.snapshot for message in messages]


def rows(snapshot: snapshot_pb2.Snapshot) -> dict[str, snapshot_pb2.ServiceRow]:
    return {row.service_name: row for row in snapshot.services}


def names(snapshot: snapshot_pb2.Snapshot) -> Sequence[str]:
    return [row.service_name for row in snapshot.services]


async def test_services_added_removed_and_moved_between_two_rounds(clock: FakeClock) -> None:
    async with fleet(DEFAULT_REGISTRY[:3], broken=False) as mesh:
        removed, moved, kept = mesh.registry  # healthy agents with 1, 2 and 3 events
        down = entry_at(DEFAULT_REGISTRY[3], free_port())  # nothing listens there
        added = entry_at(
            DEFAULT_REGISTRY[4], (await mesh.add_agent(DEFAULT_REGISTRY[4].name, 50)).port
        )
        # The moved service's new agent has other figures; its old one keeps running, so a
        # call to the old address would show 2 events, not 20.
        new_home = await mesh.add_agent(moved.name, 20)
        moved_there = entry_at(moved, new_home.port)
        async with AggregatorServer(
            Registry((removed, moved, kept, down)),
            SETTINGS,
            clocks=fake_clocks(clock),
            interval_rounds=False,
        ) as server:
            await fresh(server.address)
            second = await fresh(server.address)
            assert rows(second)[down.name].consecutive_failures == 2  # now backing off

            server.loop.replace_registry(Registry((kept, down, moved_there, added)))
            # Nothing changes until the next round: the latest snapshot is the old one.
            assert names(await latest(server.address)) == names(second)

            third = await fresh(server.address)
            history = await replay(server.address, 3)
            clock.tick(2.0)  # the down agent's backoff is over
            fourth = await fresh(server.address)

    # The new registry's services, in its order: the removed one no longer appears.
    assert names(third) == [kept.name, down.name, moved.name, added.name]
    assert third.services_total == 4
    now = rows(third)
    # The new service is called from the next round on.
    assert (now[added.name].status, now[added.name].total_events) == (ACTIVE, 50)
    # The moved one is called at its new address.
    assert (now[moved.name].status, now[moved.name].total_events) == (ACTIVE, 20)
    assert now[moved.name].agent_port == new_home.port
    # The untouched ones kept their state: the down agent is still backing off after its
    # two failures (a fresh target would have been called and shown one failure).
    assert now[kept.name].status == ACTIVE and now[kept.name].total_events == 3
    assert now[down.name].status == INACTIVE
    assert now[down.name].consecutive_failures == 2
    assert "backing off after 2 failed calls" in now[down.name].error_message
    assert rows(fourth)[down.name].consecutive_failures == 3  # called again, failed again
    # The history keeps the earlier snapshots as they were taken.
    assert [snapshot.sequence for snapshot in history] == [1, 2, 3]
    assert (
        names(history[0]) == names(history[1]) == [removed.name, moved.name, kept.name, down.name]
    )
    assert rows(history[1])[moved.name].total_events == 2
    assert rows(history[1])[moved.name].agent_port == moved.agent_port
    assert names(history[2]) == names(third)


async def test_a_new_entry_at_the_same_address_keeps_the_state_and_shows_the_new_entry(
    clock: FakeClock,
) -> None:
    async with fleet(DEFAULT_REGISTRY[:1], broken=False) as mesh:
        (healthy,) = mesh.registry
        down = entry_at(DEFAULT_REGISTRY[1], free_port())
        async with AggregatorServer(
            Registry((healthy, down)), SETTINGS, clocks=fake_clocks(clock), interval_rounds=False
        ) as server:
            for _ in range(2):
                await fresh(server.address)
            renamed_type = dataclasses.replace(down, type="analysis", port=9999)
            server.loop.replace_registry(Registry((healthy, renamed_type)))
            after = await fresh(server.address)
    row = rows(after)[down.name]
    assert (row.service_type, row.port) == ("analysis", 9999)
    assert row.consecutive_failures == 2
    assert "backing off" in row.error_message


async def test_the_registry_shown_changes_at_once_even_to_an_empty_one(clock: FakeClock) -> None:
    async with (
        fleet(DEFAULT_REGISTRY[:2], broken=False) as mesh,
        AggregatorServer(
            mesh.registry, SETTINGS, clocks=fake_clocks(clock), interval_rounds=False
        ) as server,
    ):
        first = await fresh(server.address)
        only_one = Registry(mesh.registry[1:])
        server.loop.replace_registry(only_one)
        assert server.registry == only_one  # what filters are checked against from now
        server.loop.replace_registry(Registry(()))
        assert server.registry == Registry(())
        empty = await fresh(server.address)
        server.loop.replace_registry(mesh.registry)
        back = await fresh(server.address)
    assert first.services_total == 2
    assert (empty.sequence, empty.services_total, len(empty.services)) == (2, 0, 0)
    assert (back.sequence, back.active_count) == (3, 2)


async def test_a_replacement_during_a_round_applies_from_the_next_one() -> None:
    async with fleet(DEFAULT_REGISTRY[:6]) as mesh:  # index HUNG (5) hangs until its deadline
        settings = dataclasses.replace(SETTINGS, deadline_seconds=0.5)
        async with AggregatorServer(mesh.registry, settings) as server:
            in_flight = asyncio.ensure_future(fresh(server.address))
            await eventually(lambda: mesh.hanging.calls, what="the round to call the agents")
            smaller = Registry(mesh.registry[:2])
            server.loop.replace_registry(smaller)
            during = await in_flight
            after = await fresh(server.address)
    assert names(during) == list(mesh.registry.names)
    assert "DEADLINE_EXCEEDED" in rows(during)[mesh.name(HUNG)].error_message
    assert names(after) == list(smaller.names)


async def test_last_known_figures_survive_a_replacement_but_not_a_move(clock: FakeClock) -> None:
    async with fleet(DEFAULT_REGISTRY[:2], broken=False) as mesh:
        stays, moves = mesh.registry  # healthy agents with 1 and 2 events
        async with AggregatorServer(
            mesh.registry, SETTINGS, clocks=fake_clocks(clock), interval_rounds=False
        ) as server:
            await fresh(server.address)
            for entry in mesh.registry:
                await mesh.agents[entry.name].stop(0)
            down = await fresh(server.address)
            moved_away = entry_at(moves, free_port())  # another agent: nothing known
            server.loop.replace_registry(Registry((stays, moved_away)))
            after = await fresh(server.address)
    before = rows(down)
    assert [row.status for row in before.values()] == [INACTIVE, INACTIVE]
    assert (before[stays.name].total_events, before[moves.name].total_events) == (1, 2)
    assert before[stays.name].HasField("last_seen_time")
    now = rows(after)
    assert now[stays.name].status == INACTIVE and now[stays.name].total_events == 1
    assert now[stays.name].last_seen_time == before[stays.name].last_seen_time
    assert not now[moves.name].HasField("last_seen_time")
    assert now[moves.name].total_events == 0 and not now[moves.name].kinds
    assert after.total_events == 0 and after.services_answered == 0
