"""Hostile gRPC input and subscriber floods: short INVALID_ARGUMENTs, bounded texts, fair slots.

Real agents and a real aggregator on ephemeral ports; raw bytes go over a generic channel
method, so the servers' own deserializers see them exactly as sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import socket
from collections.abc import AsyncIterator, Iterator

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from metricsmesh.v1 import aggregator_pb2, aggregator_pb2_grpc, event_rate_pb2

from agent import AgentServer, EventTracker
from agent._server import MAX_KINDS
from aggregator import AggregatorServer, AggregatorSettings, Registry
from aggregator._callers import Caller
from aggregator._service import SERVICE_NAME
from mesh_common import grpc_input
from mesh_common.bounded import QUOTE_LIMIT, RateLimitedLog, quote, quote_list
from mesh_common.grpc_input import peer_host, service_handler
from mesh_common.registry import DEFAULT_REGISTRY
from tests.clocks import FakeClock
from tests.eventually import eventually

GET_SNAPSHOT = "/metricsmesh.v1.AggregatorService/GetSnapshot"
STREAM = "/metricsmesh.v1.AggregatorService/StreamSnapshots"
GET_EVENT_RATE = "/metricsmesh.v1.EventRateService/GetEventRate"
NOT_A_MESSAGE = b"\xff\xff\xff\xff\x0f"  # a truncated varint: no protobuf parses it


@pytest.fixture
async def agent() -> AsyncIterator[AgentServer]:
    server = AgentServer(EventTracker(DEFAULT_REGISTRY[0].name), grace_seconds=0)
    await server.start()
    try:
        yield server
    finally:
        await server.stop(0)


def settings(**changes: object) -> AggregatorSettings:
    return dataclasses.replace(
        AggregatorSettings(port=0, interval_seconds=0.2, deadline_seconds=0.1), **changes
    )


def registry_for(agent: AgentServer) -> Registry:
    entry = dataclasses.replace(DEFAULT_REGISTRY[0], host="127.0.0.1", agent_port=agent.port)
    return Registry([entry])


async def raw_unary(address: str, method: str, payload: bytes) -> grpc.aio.AioRpcError | bytes:
    async with grpc.aio.insecure_channel(address) as channel:
        call = channel.unary_unary(method)
        try:
            result: bytes = await call(payload, timeout=5)
            return result
        except grpc.aio.AioRpcError as error:
            return error


OTLP_EXPORT = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"


async def test_malformed_bytes_are_a_short_invalid_argument_and_no_traceback(
    agent: AgentServer, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.WARNING)
    # A fresh budget of log lines: earlier tests of this process may have spent the minute's.
    budget = RateLimitedLog(logging.getLogger("mesh_common.grpc_input"))
    monkeypatch.setattr(grpc_input, "_LOG", budget)
    aggregator_methods = aggregator_pb2.DESCRIPTOR.services_by_name["AggregatorService"].methods
    async with AggregatorServer(registry_for(agent), settings()) as server:
        targets = [(agent.address, GET_EVENT_RATE, False), (server.address, OTLP_EXPORT, False)]
        targets += [
            (server.address, f"/{SERVICE_NAME}/{method.name}", method.server_streaming)
            for method in aggregator_methods
        ]
        # GetEventRate, OTLP's Export, 2 snapshot, 6 alert, 5 history, 3 ingest, 2 fleet methods
        assert len(targets) == 20
        for address, method, streaming in targets:
            for _ in range(10):
                if streaming:
                    async with grpc.aio.insecure_channel(address) as channel:
                        call = channel.unary_stream(method)(NOT_A_MESSAGE, timeout=5)
                        with pytest.raises(grpc.aio.AioRpcError) as caught:
                            async for _ in call:
                                pass
                        error = caught.value
                else:
                    result = await raw_unary(address, method, NOT_A_MESSAGE)
                    assert isinstance(result, grpc.aio.AioRpcError)
                    error = result
                assert error.code() is grpc.StatusCode.INVALID_ARGUMENT, (method, error)
                assert "malformed request" in (error.details() or "")
                assert len(error.details() or "") < 200
    # 90 malformed requests, logged (the capture sees them) but rate-limited (10 a minute).
    assert 1 <= sum("malformed" in record.getMessage() for record in caplog.records) <= 10
    assert "Traceback" not in caplog.text
    assert not any(record.exc_info for record in caplog.records)


def test_a_service_is_served_whole_or_not_at_all() -> None:
    service = aggregator_pb2.DESCRIPTOR.services_by_name["AggregatorService"]

    async def method(request: object, context: object) -> None:
        return None

    every = {m.name: method for m in service.methods}
    service_handler(service, every)
    with pytest.raises(ValueError, match="no implementation of ResolveAlert"):
        service_handler(service, {k: v for k, v in every.items() if k != "ResolveAlert"})
    with pytest.raises(ValueError, match="no such method GetSnapshots"):
        service_handler(service, {**every, "GetSnapshots": method})


async def test_get_event_rate_refuses_too_many_or_too_long_kinds(agent: AgentServer) -> None:
    async with grpc.aio.insecure_channel(agent.address) as channel:
        call = channel.unary_unary(
            GET_EVENT_RATE,
            request_serializer=event_rate_pb2.GetEventRateRequest.SerializeToString,
            response_deserializer=event_rate_pb2.GetEventRateResponse.FromString,
        )
        fine = await call(event_rate_pb2.GetEventRateRequest(kinds=["a"] * MAX_KINDS))
        assert fine.service_name == DEFAULT_REGISTRY[0].name
        for request in (
            event_rate_pb2.GetEventRateRequest(kinds=[f"k{i}" for i in range(MAX_KINDS + 1)]),
            event_rate_pb2.GetEventRateRequest(kinds=["x" * 5000]),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await call(request)
            assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
            assert len(caught.value.details() or "") < 200
        # 100k kinds: over the request size limit, refused by gRPC before any parsing.
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call(event_rate_pb2.GetEventRateRequest(kinds=[f"k{i}" for i in range(100_000)]))
        assert caught.value.code() in (
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            grpc.StatusCode.INVALID_ARGUMENT,
        )
        assert (await call(event_rate_pb2.GetEventRateRequest())).service_name == DEFAULT_REGISTRY[
            0
        ].name


async def test_error_texts_quote_at_most_about_200_characters(agent: AgentServer) -> None:
    async with (
        AggregatorServer(registry_for(agent), settings()) as server,
        grpc.aio.insecure_channel(server.address) as channel,
    ):
        stub = aggregator_pb2_grpc.AggregatorServiceStub(channel)
        bad = [
            aggregator_pb2.GetSnapshotRequest(
                filter=aggregator_pb2.SnapshotFilter(service_names=["nope" + "é" * 240])
            ),
            aggregator_pb2.GetSnapshotRequest(
                filter=aggregator_pb2.SnapshotFilter(service_names=[f"n{i}" for i in range(2000)])
            ),
        ]
        masked = aggregator_pb2.GetSnapshotRequest()
        masked.filter.read_mask.paths.append("é" * 250)
        bad.append(masked)
        many = aggregator_pb2.GetSnapshotRequest()
        many.filter.service_names.extend(f"unknown-{i}" for i in range(500))
        bad.append(many)
        huge = aggregator_pb2.GetSnapshotRequest()
        huge.max_age.seconds = 10**12
        bad.append(huge)
        for request in bad:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.GetSnapshot(request)
            assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT, caught.value
            assert len(caught.value.details() or "") < 4 * QUOTE_LIMIT + 200


def test_quote_helpers_cut_and_count() -> None:
    assert quote("abc") == "'abc'"
    long = quote("x" * 1000)
    assert long.startswith("'" + "x" * 200 + "'") and "(800 more characters)" in long
    listed = quote_list([f"name-{i}" for i in range(1000)])
    assert len(listed) < 250 and listed.endswith("more")


def test_rate_limited_log_writes_a_burst_then_counts(clock: FakeClock) -> None:
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    logger = logging.getLogger("test.ratelimited")
    logger.addHandler(Collect())
    logger.propagate = False
    log = RateLimitedLog(logger, burst=3, period=60.0, monotonic=clock)
    for index in range(100):
        log.warning("bad input %d", index)
    assert len(lines) == 3
    clock.tick(60.0)
    log.warning("bad input again")
    assert lines[-1] == "bad input again (97 similar lines dropped)"


def test_peer_host_of_grpc_peers() -> None:
    assert peer_host("ipv4:127.0.0.1:5000") == "127.0.0.1"
    assert peer_host("ipv6:[::1]:5000") == "::1"
    assert peer_host("ipv6:%5B::1%5D:5000") == "::1"


async def test_untrusted_peers_leave_the_reserved_slots_and_are_capped_per_peer(
    agent: AgentServer,
) -> None:
    untrusted = settings(
        max_subscribers=4, reserved_subscribers=1, max_streams_per_peer=2, trusted_peers=()
    )
    async with (
        AggregatorServer(registry_for(agent), untrusted) as server,
        grpc.aio.insecure_channel(server.address) as channel,
    ):
        stub = aggregator_pb2_grpc.AggregatorServiceStub(channel)
        streams = [stub.StreamSnapshots(aggregator_pb2.StreamSnapshotsRequest()) for _ in range(2)]
        for call in streams:
            await call.read()
        third = stub.StreamSnapshots(aggregator_pb2.StreamSnapshotsRequest())
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await third.read()
        assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "max_streams_per_peer" in (caught.value.details() or "")
        for call in streams:
            call.cancel()
        await eventually(lambda: server.subscriber_count == 0, what="streams to end")
    # The loop's own rule: untrusted callers never take the reserved slot, trusted ones may.
    async with AggregatorServer(registry_for(agent), untrusted) as server:
        loop = server.loop
        taken = [loop.subscribe(0.0, Caller(f"peer host 10.0.0.{i}", False)) for i in range(3)]
        with pytest.raises(Exception, match="reserved_subscribers"):
            loop.subscribe(0.0, Caller("peer host 10.0.0.9", False))
        gateway = loop.subscribe(0.0, Caller("peer host 127.0.0.1", True))
        for subscription in (*taken, gateway):
            loop.unsubscribe(subscription)
        assert loop.subscriber_count == 0


async def test_a_resume_point_of_another_lifetime_replays_this_one_with_a_gap(
    agent: AgentServer,
) -> None:
    async with (
        AggregatorServer(registry_for(agent), settings()) as first,
        grpc.aio.insecure_channel(first.address) as channel,
    ):
        call = aggregator_pb2_grpc.AggregatorServiceStub(channel).StreamSnapshots(
            aggregator_pb2.StreamSnapshotsRequest()
        )
        old = None
        async for message in call:
            old = message.snapshot
            if old.sequence >= 5:
                break
        call.cancel()
    assert old is not None and old.epoch > 0
    async with (
        AggregatorServer(registry_for(agent), settings()) as second,
        grpc.aio.insecure_channel(second.address) as channel,
    ):
        stub = aggregator_pb2_grpc.AggregatorServiceStub(channel)
        fresh = aggregator_pb2.GetSnapshotRequest()
        fresh.max_age.SetInParent()  # zero: a new round each time
        for _ in range(2):
            await stub.GetSnapshot(fresh)
        request = aggregator_pb2.StreamSnapshotsRequest(
            after_sequence=old.sequence, after_epoch=old.epoch
        )
        call = stub.StreamSnapshots(request)
        got = []
        async for message in call:
            got.append(message)
            if len(got) == 2:
                break
        call.cancel()
        assert got[0].snapshot.epoch != old.epoch
        assert got[0].snapshot.sequence == 1  # from the start of the new lifetime
        assert got[0].gap and not got[1].gap
        # The same resume point in its own lifetime has no gap.
        same = aggregator_pb2.StreamSnapshotsRequest(
            after_sequence=got[0].snapshot.sequence, after_epoch=got[0].snapshot.epoch
        )
        call = stub.StreamSnapshots(same)
        message = await call.read()
        assert isinstance(message, aggregator_pb2.StreamSnapshotsResponse)
        assert message.snapshot.sequence == 2 and not message.gap
        call.cancel()


async def test_history_that_no_longer_reaches_back_is_a_gap_with_the_count(
    agent: AgentServer,
) -> None:
    short = settings(history_seconds=0.6)  # three snapshots
    async with (
        AggregatorServer(registry_for(agent), short) as server,
        grpc.aio.insecure_channel(server.address) as channel,
    ):
        stub = aggregator_pb2_grpc.AggregatorServiceStub(channel)
        call = stub.StreamSnapshots(aggregator_pb2.StreamSnapshotsRequest())
        async for message in call:
            if message.snapshot.sequence >= 6:
                break
        call.cancel()
        epoch = server.loop.epoch
        call = stub.StreamSnapshots(
            aggregator_pb2.StreamSnapshotsRequest(after_sequence=1, after_epoch=epoch)
        )
        first = await call.read()
        call.cancel()
    assert isinstance(first, aggregator_pb2.StreamSnapshotsResponse)
    assert first.gap and first.missed == first.snapshot.sequence - 2


async def test_malformed_requests_leave_the_servers_serving(agent: AgentServer) -> None:
    async with AggregatorServer(registry_for(agent), settings()) as server:
        await asyncio.gather(
            *(raw_unary(server.address, GET_SNAPSHOT, NOT_A_MESSAGE * n) for n in range(1, 40))
        )
        async with grpc.aio.insecure_channel(server.address) as channel:
            stub = aggregator_pb2_grpc.AggregatorServiceStub(channel)
            fresh = aggregator_pb2.GetSnapshotRequest()
            fresh.max_age.SetInParent()

            async def active() -> bool:
                response = await stub.GetSnapshot(fresh)
                return response.snapshot.active_count == 1

            await eventually(active, what="the agent active in a fresh snapshot")


HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
"""A client's HTTP/2 connection preface and an empty SETTINGS frame: a connection, no call."""


class RawConnection:
    """A TCP connection to a gRPC server that speaks HTTP/2 but makes no call."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.sendall(HTTP2_PREFACE)
        self.sock.setblocking(False)
        self.received = b""
        self.ended = False

    def closed_by_server(self) -> bool:
        """True once the server closed it (everything it sent before is in `received`)."""
        while not self.ended:
            try:
                chunk = self.sock.recv(65536)
            except BlockingIOError:
                return False
            except ConnectionResetError:
                chunk = b""
            self.received += chunk
            self.ended = not chunk
        return True

    def close(self) -> None:
        self.sock.close()


@contextlib.contextmanager
def raw_connections(port: int, count: int) -> Iterator[list[RawConnection]]:
    opened = [RawConnection(port) for _ in range(count)]
    try:
        yield opened
    finally:
        for connection in opened:
            connection.close()


async def get_snapshot(address: str, **request: object) -> aggregator_pb2.GetSnapshotResponse:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = aggregator_pb2_grpc.AggregatorServiceStub(channel)
        message = aggregator_pb2.GetSnapshotRequest(**request)  # type: ignore[arg-type]
        return await stub.GetSnapshot(message, timeout=5)  # type: ignore[no-any-return]


async def test_idle_connections_are_closed_after_the_idle_time(agent: AgentServer) -> None:
    idle = settings(connection_idle_seconds=0.3)
    async with AggregatorServer(registry_for(agent), idle) as server:
        with raw_connections(server.port, 20) as idle_ones:
            await eventually(
                lambda: all(each.closed_by_server() for each in idle_ones),
                what="the server to close 20 connections that made no call",
            )
        assert all(b"connection idle" in each.received for each in idle_ones)  # GOAWAY's text
        async with grpc.aio.insecure_channel(server.address) as channel:
            stub = aggregator_pb2_grpc.AggregatorServiceStub(channel)
            await stub.GetSnapshot(aggregator_pb2.GetSnapshotRequest(), timeout=5)
            await eventually(
                lambda: channel.get_state() is grpc.ChannelConnectivity.IDLE,
                what="the server to close the client's connection once its call was over",
            )
            # A client reconnects by itself on its next call.
            await stub.GetSnapshot(aggregator_pb2.GetSnapshotRequest(), timeout=5)


async def test_a_stream_with_nothing_to_send_is_not_closed_as_idle(agent: AgentServer) -> None:
    quiet = settings(connection_idle_seconds=0.3, interval_seconds=60.0)
    async with AggregatorServer(registry_for(agent), quiet, interval_rounds=False) as server:
        await get_snapshot(server.address)  # round 1
        async with grpc.aio.insecure_channel(server.address) as channel:
            stub = aggregator_pb2_grpc.AggregatorServiceStub(channel)
            call = stub.StreamSnapshots(aggregator_pb2.StreamSnapshotsRequest())
            first = await call.read()
            assert isinstance(first, aggregator_pb2.StreamSnapshotsResponse)
            # Two idle times pass (two connections opened one after the other are closed as
            # idle) while the stream has nothing to send ...
            for _ in range(2):
                with raw_connections(server.port, 1) as (control,):
                    await eventually(control.closed_by_server, what="an idle connection closed")
            # ... and it is still there for the next snapshot.
            await get_snapshot(server.address, max_age=Duration())  # a round now
            second = await call.read()
            call.cancel()
    assert isinstance(second, aggregator_pb2.StreamSnapshotsResponse)
    assert (first.snapshot.sequence, second.snapshot.sequence) == (1, 2)


async def test_a_connection_beyond_max_connections_is_closed_at_once(agent: AgentServer) -> None:
    async with AggregatorServer(registry_for(agent), settings(max_connections=3)) as server:
        with raw_connections(server.port, 3) as held:
            # Each one was accepted: the server sent its SETTINGS (an HTTP/2 frame of type 4).
            await eventually(
                lambda: all(each.closed_by_server() or len(each.received) >= 9 for each in held),
                what="the server's first frames on 3 connections",
            )
            assert all(each.received[3] == 4 and not each.ended for each in held)
            with raw_connections(server.port, 1) as (extra,):
                await eventually(extra.closed_by_server, what="the 4th connection closed")
                assert extra.received == b""  # closed before any HTTP/2
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await get_snapshot(server.address)
            assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
            held[0].close()

            async def served() -> bool:
                try:
                    await get_snapshot(server.address)
                except grpc.aio.AioRpcError:
                    return False
                return True

            await eventually(served, what="a call once a connection was freed")


async def test_300_streams_of_one_client_all_start_on_its_one_connection(
    agent: AgentServer,
) -> None:
    async with (
        AggregatorServer(registry_for(agent), settings(max_subscribers=300)) as server,
        grpc.aio.insecure_channel(server.address) as channel,
    ):
        stub = aggregator_pb2_grpc.AggregatorServiceStub(channel)
        await stub.GetSnapshot(aggregator_pb2.GetSnapshotRequest(), timeout=5)
        calls = [stub.StreamSnapshots(aggregator_pb2.StreamSnapshotsRequest()) for _ in range(300)]
        firsts = await asyncio.wait_for(asyncio.gather(*(call.read() for call in calls)), 20)
        for call in calls:
            call.cancel()
    assert all(isinstance(first, aggregator_pb2.StreamSnapshotsResponse) for first in firsts)
