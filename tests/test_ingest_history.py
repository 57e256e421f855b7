"""A pushed row is kept in history like a polled one: its events per round, exactly.

A real aggregator with no agents, history in SQLite, rounds on demand every 10 s of a fake
clock; seed 004 style events are pushed between rounds through the Ingest RPC, then the
history is asked for the row's events over the range.
"""

from __future__ import annotations

from pathlib import Path

import grpc
from metricsmesh.v1 import aggregator_pb2_grpc, history_pb2, ingest_pb2

from aggregator import Clocks, Registry
from aggregator._ingest.model import KindPoint
from tests.clocks import FakeClock
from tests.history_mesh import EPOCH, history_server, run_round

ROUND = 10.0


async def test_pushed_events_are_stored_per_round_and_query_back_exactly(
    tmp_path: Path, clock: FakeClock
) -> None:
    clock.now = 0.0
    clocks = Clocks(monotonic=clock, wall=lambda: EPOCH + clock.now)
    pushed = [3, 0, 5, 2, 7, 1]  # logins between one round and the next
    async with (
        history_server(Registry(()), tmp_path / "history.sqlite3", clocks) as server,
        grpc.aio.insecure_channel(server.address) as channel,
    ):
        stub = aggregator_pb2_grpc.AggregatorServiceStub(channel)
        for count in pushed:
            if count:
                event = ingest_pb2.PushedEvent(kind="user_login", count=count)
                await stub.Ingest(ingest_pb2.IngestRequest(events=[event]))
            clock.tick(ROUND)
            await run_round(server)
        request = history_pb2.QueryRangeRequest(
            query='events{service="metrics-service", kind="user_login"}'
        )
        request.start_time.FromSeconds(int(EPOCH + ROUND))
        request.end_time.FromSeconds(int(EPOCH + ROUND * len(pushed)))
        request.step.FromSeconds(int(ROUND))
        (series,) = (await stub.QueryRange(request)).series
    # Each round stores what was pushed since the previous one (a new row counts from 0).
    assert [point.value for point in series.points] == pushed


async def test_a_row_pushed_by_cumulative_readings_is_stored_like_an_agents(
    tmp_path: Path, clock: FakeClock
) -> None:
    """OTLP's way: each push is the stream's running total as of the push, before the round."""
    clock.now = 0.0
    clocks = Clocks(monotonic=clock, wall=lambda: EPOCH + clock.now)
    totals = [4, 4, 10, 15]
    async with history_server(Registry(()), tmp_path / "history.sqlite3", clocks) as server:
        assert server.ingestor is not None
        for total in totals:
            reading = KindPoint(
                "checkout", "GET /cart", total, 0, stream="cart", start_time=EPOCH - 5
            )
            assert server.ingestor.ingest(kinds=[reading]).refused == ()
            clock.tick(ROUND)
            await run_round(server)
        async with grpc.aio.insecure_channel(server.address) as channel:
            stub = aggregator_pb2_grpc.AggregatorServiceStub(channel)
            request = history_pb2.QueryRangeRequest(query='events{service="checkout", kind=""}')
            request.start_time.FromSeconds(int(EPOCH + ROUND))
            request.end_time.FromSeconds(int(EPOCH + ROUND * len(totals)))
            request.step.FromSeconds(int(ROUND))
            (series,) = (await stub.QueryRange(request)).series
    assert [point.value for point in series.points] == [4, 0, 6, 5]
