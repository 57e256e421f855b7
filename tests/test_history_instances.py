"""The history of a service of several instances: one series per service and kind, its events
counted exactly through an instance stopping, coming back and restarting (per-instance
increases, added), and what a restart of the writer costs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from agent import AgentServer, EventTracker
from aggregator import AggregatorServer, Registry, ServiceEntry
from aggregator._history import SeriesKey
from tests.history_mesh import (
    fake_clocks,
    history_server,
    run_round,
    stored_events,
    tick,
    tracker,
    writer_of,
)

NAME = "orders-api"
API = SeriesKey(NAME, "api_call")


def registry_of(servers: Sequence[AgentServer]) -> Registry:
    addresses = tuple(f"127.0.0.1:{server.port}" for server in servers)
    return Registry(
        [ServiceEntry(NAME, "127.0.0.1", 9000, servers[0].port, "core", instances=addresses)]
    )


async def started(tracker: EventTracker, port: int = 0) -> AgentServer:
    server = AgentServer(tracker, port=port, grace_seconds=0)
    await server.start()
    return server


def counted(server: AggregatorServer) -> int:
    """Every `api_call` event the history holds for the service (finest tier)."""
    writer = writer_of(server)
    return stored_events(writer, API, writer.reader.tiers[0])


async def test_events_are_counted_once_through_a_stop_a_return_and_a_restart(
    tmp_path: Path,
) -> None:
    monotonic, wall, clocks = fake_clocks()
    trackers = [tracker(NAME, monotonic, wall) for _ in range(3)]
    servers = [await started(each) for each in trackers]
    fed = 0

    def feed(index: int, n: int) -> None:
        nonlocal fed
        trackers[index].record("api_call", n=n)
        fed += n

    try:
        async with history_server(registry_of(servers), tmp_path / "h.sqlite3", clocks) as server:
            for index, n in enumerate((5, 3, 2)):
                feed(index, n)
            snapshot = await run_round(server)
            assert snapshot.services[0].instances_up == 3
            assert counted(server) == fed == 10
            feed(0, 7)
            feed(1, 1)
            tick(monotonic, wall, 1.0)
            await run_round(server)
            assert counted(server) == fed
            # The second instance stops: the row's totals go down, no event is counted twice.
            port = servers[1].port
            await servers[1].stop(0)
            feed(0, 4)
            feed(2, 6)
            tick(monotonic, wall, 1.0)
            assert (await run_round(server)).services[0].instances_up == 2
            assert counted(server) == fed
            # It comes back, restarted (a new lifetime): its new events count, once.
            trackers[1] = tracker(NAME, monotonic, wall)
            servers[1] = await started(trackers[1], port)
            feed(1, 9)
            feed(2, 1)
            tick(monotonic, wall, 1.0)
            while (await run_round(server)).services[0].instances_up != 3:
                tick(monotonic, wall, 1.0)
            assert counted(server) == fed
    finally:
        for each in servers:
            await each.stop(0)


async def test_an_instance_that_is_not_serving_but_answers_is_counted(tmp_path: Path) -> None:
    monotonic, wall, clocks = fake_clocks()
    trackers = [tracker(NAME, monotonic, wall) for _ in range(2)]
    servers = [await started(each) for each in trackers]
    try:
        async with history_server(registry_of(servers), tmp_path / "h.sqlite3", clocks) as server:
            trackers[0].record("api_call", n=2)
            await run_round(server)
            await servers[0].set_serving(False)  # answers, but is not active
            trackers[0].record("api_call", n=3)
            tick(monotonic, wall, 1.0)
            row = (await run_round(server)).services[0]
            assert row.instances_up == 1
            assert counted(server) == 5  # its answer was fresh: counted all the same
    finally:
        for each in servers:
            await each.stop(0)


async def test_after_a_restart_of_the_writer_nothing_is_counted_twice(tmp_path: Path) -> None:
    monotonic, wall, clocks = fake_clocks()
    trackers = [tracker(NAME, monotonic, wall) for _ in range(2)]
    servers = [await started(each) for each in trackers]
    path = tmp_path / "h.sqlite3"
    try:
        async with history_server(registry_of(servers), path, clocks) as server:
            trackers[0].record("api_call", n=4)
            trackers[1].record("api_call", n=6)
            await run_round(server)
            before = counted(server)
        # While no aggregator runs, the instances count on.
        trackers[0].record("api_call", n=5)
        tick(monotonic, wall, 1.0)
        async with history_server(registry_of(servers), path, clocks) as server:
            await run_round(server)  # the starting point of each instance
            after_restart = counted(server)
            trackers[1].record("api_call", n=8)
            tick(monotonic, wall, 1.0)
            await run_round(server)
            latest = counted(server)
    finally:
        for each in servers:
            await each.stop(0)
    assert before == 10
    # Documented: the events counted between the last stored round and the first reading
    # after the restart are not counted (never twice); from then on every event is.
    assert after_restart == before
    assert latest == before + 8
