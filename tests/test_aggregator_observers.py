"""Snapshot observers: one slow or failing observer never delays a round or another observer.

Real agents; the monotonic clock is fake and frozen, so the interval loop never runs a round
by itself: every round here is one the test asked for.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import grpc
import pytest
from metricsmesh.v1 import aggregator_pb2, aggregator_pb2_grpc

from aggregator import DEFAULT_REGISTRY, AggregatorServer, AggregatorSettings, Clocks, SnapshotData
from tests.aggregator_fleet import fleet
from tests.clocks import FakeClock
from tests.eventually import eventually

SETTINGS = AggregatorSettings(
    port=0, interval_seconds=1.0, deadline_seconds=0.3, min_round_spacing_seconds=0
)  # rounds on demand as fast as the test asks, on a clock that does not move
ROUND_TIMEOUT = 30.0
"""A round that waited for a blocked observer would never end; this turns that into a failure."""


class Recorder:
    """Records the sequence of every snapshot it is given."""

    def __init__(self) -> None:
        self.seen: list[int] = []

    async def __call__(self, snapshot: SnapshotData) -> None:
        self.seen.append(snapshot.sequence)


class Blocked(Recorder):
    """Records, then blocks until `release` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()

    async def __call__(self, snapshot: SnapshotData) -> None:
        self.seen.append(snapshot.sequence)
        await self.release.wait()


class Failing(Recorder):
    """Records, then raises."""

    async def __call__(self, snapshot: SnapshotData) -> None:
        self.seen.append(snapshot.sequence)
        raise RuntimeError(f"observer exploded on {snapshot.sequence}")


@pytest.fixture
async def server(clock: FakeClock) -> AsyncIterator[AggregatorServer]:
    async with (
        fleet(DEFAULT_REGISTRY[:2], broken=False) as mesh,
        AggregatorServer(
            mesh.registry,
            SETTINGS,
            clocks=Clocks(monotonic=clock, wall=time.time),
            interval_rounds=False,
        ) as running,
    ):
        yield running


def got(recorder: Recorder, sequence: int) -> Callable[[], bool]:
    """A probe: the last snapshot `recorder` was given is `sequence`."""
    return lambda: recorder.seen[-1:] == [sequence]


async def a_round(server: AggregatorServer) -> SnapshotData:
    return await asyncio.wait_for(server.loop.snapshot(0), ROUND_TIMEOUT)


async def test_slow_and_failing_observers_delay_neither_rounds_nor_the_others(
    server: AggregatorServer,
) -> None:
    slow, failing, steady = Blocked(), Failing(), Recorder()
    server.loop.add_observer("slow", slow)
    server.loop.add_observer("failing", failing)
    server.loop.add_observer("steady", steady)

    first = await a_round(server)
    await eventually(lambda: slow.seen == [1], what="the slow observer to block on snapshot 1")
    async with grpc.aio.insecure_channel(server.address) as channel:
        stub = aggregator_pb2_grpc.AggregatorServiceStub(channel)
        call = stub.StreamSnapshots(aggregator_pb2.StreamSnapshotsRequest())
        stream = aiter(call)
        streamed = [(await anext(stream)).snapshot.sequence]  # the latest, on subscribing
        for sequence in range(2, 7):
            assert (await a_round(server)).sequence == sequence
            # Every other observer gets every snapshot, the stream subscribers too.
            await eventually(got(steady, sequence), what=f"steady to get {sequence}")
            await eventually(got(failing, sequence), what=f"failing to get {sequence}")
            streamed.append((await anext(stream)).snapshot.sequence)
        call.cancel()

    assert first.sequence == 1
    assert steady.seen == failing.seen == streamed == [1, 2, 3, 4, 5, 6]
    assert slow.seen == [1]  # still busy with the first one
    slow.release.set()
    # Ready again, it gets the newest snapshot, not the backlog of 2..5.
    await eventually(lambda: slow.seen == [1, 6], what="the slow observer to get snapshot 6")
    await a_round(server)
    await eventually(lambda: slow.seen == [1, 6, 7], what="the slow observer to get snapshot 7")


async def test_a_removed_observer_gets_no_more_snapshots(server: AggregatorServer) -> None:
    removed = Recorder()
    remove = server.loop.add_observer("removed", removed)
    await a_round(server)
    await eventually(lambda: removed.seen == [1], what="the observer to get snapshot 1")
    remove()
    remove()  # a second call is harmless
    # Observers are woken in the order they were added: had `removed` still been there, it
    # would have recorded snapshot 2 before the witness added after it.
    witness = Recorder()
    server.loop.add_observer("witness", witness)
    await a_round(server)
    await eventually(lambda: witness.seen == [2], what="the witness to get snapshot 2")
    assert removed.seen == [1]


async def test_an_observer_added_later_starts_with_the_next_snapshot(
    server: AggregatorServer,
) -> None:
    await a_round(server)
    late = Recorder()
    server.loop.add_observer("late", late)
    await a_round(server)
    await eventually(lambda: late.seen, what="the late observer to get a snapshot")
    assert late.seen == [2]
