"""GetSnapshot / StreamSnapshots behaviour a subscriber notices: filters, masks, pacing,
resume, slow readers, the subscriber cap, cancellation and shutdown."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import time

import grpc
import pytest
from metricsmesh.v1 import aggregator_pb2, aggregator_pb2_grpc, snapshot_pb2

from aggregator import AggregatorServer, AggregatorSettings, Clocks
from tests.aggregator_fleet import Fleet
from tests.clocks import FakeClock
from tests.eventually import eventually

QUIET = 0.3
"""How long the one test that checks that nothing happens watches for it."""


def fast_settings(**changes: object) -> AggregatorSettings:
    values: dict[str, object] = {
        "port": 0,
        "interval_seconds": 0.05,
        "deadline_seconds": 0.04,
        "min_round_spacing_seconds": 0.0,  # on-demand rounds as fast as the tests ask
    }
    values.update(changes)
    return AggregatorSettings(**values)  # type: ignore[arg-type]


def stub(channel: grpc.aio.Channel) -> aggregator_pb2_grpc.AggregatorServiceAsyncStub:
    return aggregator_pb2_grpc.AggregatorServiceStub(channel)  # type: ignore[return-value]


async def fresh_round(client: aggregator_pb2_grpc.AggregatorServiceAsyncStub) -> int:
    request = aggregator_pb2.GetSnapshotRequest()
    request.max_age.FromNanoseconds(0)
    response = await client.GetSnapshot(request)
    return response.snapshot.sequence


def pipe(call: object) -> asyncio.Queue[aggregator_pb2.StreamSnapshotsResponse]:
    """Read a stream into a queue from a background task (cancelled with the call)."""
    queue: asyncio.Queue[aggregator_pb2.StreamSnapshotsResponse] = asyncio.Queue()

    async def read() -> None:
        async for message in call:  # type: ignore[attr-defined]
            queue.put_nowait(message)

    task = asyncio.ensure_future(read())
    call.add_done_callback(lambda _: task.cancel())  # type: ignore[attr-defined]
    return queue


def fake_clocks(clock: FakeClock) -> Clocks:
    return Clocks(monotonic=clock, wall=time.time)


async def test_filter_by_names_and_types_keeps_matching_rows_in_registry_order(
    agents: Fleet,
) -> None:
    async with (
        AggregatorServer(agents.registry, fast_settings()) as server,
        grpc.aio.insecure_channel(server.address) as channel,
    ):
        request = aggregator_pb2.GetSnapshotRequest()
        request.filter.service_types.append("data")
        request.filter.service_names.extend(["weather-api", "admin-api", "sports-data"])
        response = await stub(channel).GetSnapshot(request)
    names = [row.service_name for row in response.snapshot.services]
    assert names == ["sports-data", "weather-api"]
    assert response.snapshot.services_total == 15  # totals stay those of the whole fleet


async def test_read_mask_keeps_only_the_named_fields(agents: Fleet) -> None:
    settings = fast_settings(interval_seconds=1.0, deadline_seconds=0.5)
    async with (
        AggregatorServer(agents.registry, settings) as server,
        grpc.aio.insecure_channel(server.address) as channel,
    ):
        request = aggregator_pb2.StreamSnapshotsRequest(last_count=1)
        request.filter.read_mask.paths.extend(
            ["sequence", "active_count", "services.service_name", "services.age"]
        )
        call = stub(channel).StreamSnapshots(request)
        message = await anext(aiter(call))
        call.cancel()
    snapshot = message.snapshot
    assert snapshot.sequence >= 1 and snapshot.active_count == 15
    assert not snapshot.HasField("take_time") and not snapshot.HasField("age")
    assert snapshot.services_total == 0 and snapshot.events_per_second == 0
    assert [row.service_name for row in snapshot.services] == list(agents.registry.names)
    for row in snapshot.services:
        assert row.status == snapshot_pb2.SERVICE_STATUS_UNSPECIFIED
        assert row.port == 0 and not row.HasField("call_latency")
        assert row.HasField("age")


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda r: r.filter.service_names.append("nope"), "unknown service name 'nope'"),
        (lambda r: r.filter.service_types.append("nosuch"), "unknown service type 'nosuch'"),
        (lambda r: r.filter.read_mask.paths.append("colour"), "Snapshot has no field 'colour'"),
        (
            lambda r: r.filter.read_mask.paths.append("services.colour"),
            "ServiceRow has no field 'colour'",
        ),
        (lambda r: r.min_interval.FromNanoseconds(-1), "min_interval must not be negative"),
    ],
)
async def test_bad_stream_requests_are_invalid_argument(
    agents: Fleet, change: object, expected: str
) -> None:
    request = aggregator_pb2.StreamSnapshotsRequest()
    change(request)  # type: ignore[operator]
    async with (
        AggregatorServer(agents.registry, fast_settings()) as server,
        grpc.aio.insecure_channel(server.address) as channel,
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            async for _ in stub(channel).StreamSnapshots(request):
                pass
        assert server.subscriber_count == 0
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert expected in (caught.value.details() or "")


async def test_unknown_name_in_get_snapshot_is_invalid_argument(agents: Fleet) -> None:
    async with (
        # No rounds of its own: only a request could make one, and a refused one must not.
        AggregatorServer(agents.registry, fast_settings(), interval_rounds=False) as server,
        grpc.aio.insecure_channel(server.address) as channel,
    ):
        request = aggregator_pb2.GetSnapshotRequest()
        request.filter.service_names.append("nope")
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub(channel).GetSnapshot(request)
        assert server.rounds == 0
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_min_interval_merges_snapshots_and_the_latest_wins(
    agents: Fleet, clock: FakeClock
) -> None:
    # The fake monotonic clock only moves when told to: rounds come from GetSnapshot(max_age=0).
    settings = fast_settings(interval_seconds=30.0, deadline_seconds=0.3)
    server = AggregatorServer(
        agents.registry, settings, clocks=fake_clocks(clock), interval_rounds=False
    )
    async with server, grpc.aio.insecure_channel(server.address) as channel:
        client = stub(channel)
        assert await fresh_round(client) == 1
        request = aggregator_pb2.StreamSnapshotsRequest()
        request.min_interval.FromSeconds(10)
        call = client.StreamSnapshots(request)
        received = pipe(call)
        first = await received.get()
        assert (first.snapshot.sequence, first.replayed) == (1, True)
        for expected in (2, 3, 4):  # within min_interval: each replaces the one before
            assert await fresh_round(client) == expected
        clock.tick(10)
        assert await fresh_round(client) == 5
        second = await received.get()
        # The next message is 5: 2, 3 and 4 were merged away, not queued behind it.
        assert (second.snapshot.sequence, second.replayed) == (5, False)
        assert received.empty()
        call.cancel()


async def test_resume_after_sequence_and_last_count_replay_history(
    agents: Fleet, clock: FakeClock
) -> None:
    settings = fast_settings(interval_seconds=30.0, deadline_seconds=0.3)
    server = AggregatorServer(
        agents.registry, settings, clocks=fake_clocks(clock), interval_rounds=False
    )
    async with server, grpc.aio.insecure_channel(server.address) as channel:
        client = stub(channel)
        for _ in range(4):
            await fresh_round(client)
        after = client.StreamSnapshots(aggregator_pb2.StreamSnapshotsRequest(after_sequence=2))
        last = client.StreamSnapshots(aggregator_pb2.StreamSnapshotsRequest(last_count=3))
        after_stream, last_stream = aiter(after), aiter(last)
        got_after = [await anext(after_stream) for _ in range(2)]
        got_last = [await anext(last_stream) for _ in range(3)]
        assert [(m.snapshot.sequence, m.replayed) for m in got_after] == [(3, True), (4, True)]
        assert [m.snapshot.sequence for m in got_last] == [2, 3, 4]
        assert all(m.replayed for m in got_last)
        await eventually(lambda: server.subscriber_count == 2, what="two subscribers")
        assert await fresh_round(client) == 5
        live = await anext(after_stream), await anext(last_stream)
        assert [(m.snapshot.sequence, m.replayed) for m in live] == [(5, False), (5, False)]
        after.cancel()
        last.cancel()


async def test_stalled_subscriber_does_not_hold_up_a_live_one(agents: Fleet) -> None:
    async with (
        AggregatorServer(agents.registry, fast_settings()) as server,
        # Without BDP probing the stalled call's HTTP/2 window stays at 64 KB, so the server's
        # writes to it really block once that much is unread.
        grpc.aio.insecure_channel(
            server.address, options=(("grpc.http2.bdp_probe", 0),)
        ) as stalled_channel,
        grpc.aio.insecure_channel(server.address) as live_channel,
    ):
        stalled = stub(stalled_channel).StreamSnapshots(aggregator_pb2.StreamSnapshotsRequest())
        await stalled.wait_for_connection()  # subscribed, and not read from for a while
        await eventually(lambda: server.subscriber_count == 1, what="the stalled subscriber")
        live = stub(live_channel).StreamSnapshots(aggregator_pb2.StreamSnapshotsRequest())
        live_sequences = []
        async for message in live:
            live_sequences.append(message.snapshot.sequence)
            if len(live_sequences) == 60:
                break
        assert server.subscriber_count == 2
        # The stalled reader now drains what gRPC buffered, then gets the newest snapshot:
        # snapshots that completed while its slot was full were dropped, not queued.
        stalled_sequences = []
        async for message in stalled:
            stalled_sequences.append(message.snapshot.sequence)
            if message.snapshot.sequence >= live_sequences[-1]:
                break
        live.cancel()
        stalled.cancel()
    assert live_sequences == sorted(set(live_sequences))
    assert stalled_sequences == sorted(set(stalled_sequences))
    spanned = stalled_sequences[-1] - stalled_sequences[0] + 1
    assert len(stalled_sequences) < spanned, stalled_sequences


async def test_subscriber_cap_refuses_with_resource_exhausted(agents: Fleet) -> None:
    async with (
        AggregatorServer(agents.registry, fast_settings(max_subscribers=2)) as server,
        grpc.aio.insecure_channel(server.address) as channel,
    ):
        client = stub(channel)
        calls = [client.StreamSnapshots(aggregator_pb2.StreamSnapshotsRequest()) for _ in "ab"]
        for call in calls:
            await anext(aiter(call))
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            async for _ in client.StreamSnapshots(aggregator_pb2.StreamSnapshotsRequest()):
                pass
        for call in calls:
            call.cancel()
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "limit of 2" in (caught.value.details() or "")


async def test_cancelled_streams_detach_and_rounds_go_on_without_listeners(agents: Fleet) -> None:
    async with (
        AggregatorServer(agents.registry, fast_settings()) as server,
        grpc.aio.insecure_channel(server.address) as channel,
    ):
        client = stub(channel)
        calls = [client.StreamSnapshots(aggregator_pb2.StreamSnapshotsRequest()) for _ in "abc"]
        for call in calls:
            await anext(aiter(call))
        assert server.subscriber_count == 3
        for call in calls:
            call.cancel()
        await eventually(lambda: server.subscriber_count == 0, what="every stream to detach")
        rounds = server.rounds
        # History, alerts and a dashboard's first paint need rounds whoever listens.
        await eventually(lambda: server.rounds >= rounds + 3, what="rounds without listeners")


async def test_rounds_run_on_their_interval_before_anybody_asks(agents: Fleet) -> None:
    interval = 0.2
    settings = fast_settings(interval_seconds=interval, deadline_seconds=0.15)
    async with AggregatorServer(agents.registry, settings) as server:
        await eventually(lambda: server.rounds >= 8, what="rounds with nobody listening")
        starts = [snapshot.taken_at for snapshot in server.loop.history]
    spacings = sorted(later - earlier for earlier, later in itertools.pairwise(starts))
    # One round per interval: never sooner, and typically on time (a lone aggregator once
    # ran 2 rounds in 116 s); the median is generous for a loaded machine.
    assert spacings[0] >= interval * 0.99
    assert spacings[len(spacings) // 2] < interval * 2


async def test_max_age_zero_cannot_force_rounds_closer_than_the_minimum_spacing(
    agents: Fleet, clock: FakeClock
) -> None:
    settings = dataclasses.replace(
        fast_settings(), interval_seconds=10.0, deadline_seconds=0.5, min_round_spacing_seconds=0.5
    )
    server = AggregatorServer(
        agents.registry, settings, clocks=Clocks(clock, time.time), interval_rounds=False
    )
    async with server:
        first = await server.loop.snapshot(0)
        for _ in range(20):  # 20 calls asking for a fresh round, no time passing
            assert (await server.loop.snapshot(0)).sequence == first.sequence
        clock.tick(0.5)
        assert (await server.loop.snapshot(0)).sequence > first.sequence


async def test_shutdown_ends_streams_with_unavailable(agents: Fleet) -> None:
    server = AggregatorServer(agents.registry, fast_settings())
    await server.start()
    try:
        async with grpc.aio.insecure_channel(server.address) as channel:
            call = stub(channel).StreamSnapshots(aggregator_pb2.StreamSnapshotsRequest())
            await anext(aiter(call))
            await server.stop()
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                async for _ in call:
                    pass
    finally:
        await server.stop()
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert caught.value.details() == "aggregator shutting down"
