"""RpcCountInterceptor / SyncRpcCountInterceptor on real gRPC servers with real clients."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from metricsmesh.v1 import event_rate_pb2, event_rate_pb2_grpc

from agent import AgentServer, EventTracker, RpcCountInterceptor, SyncRpcCountInterceptor
from tests.clocks import FakeClock

SHORT = 5.0
SAY = "/demo.Echo/Say"
FAIL = "/demo.Echo/Fail"
TICKS = "/demo.Echo/Ticks"
TICK_SECONDS = 0.02
"""How long each message of the Ticks stream takes, on the tracker's fake clock."""

StartServer = Callable[[grpc.aio.ServerInterceptor], Awaitable[str]]


def echo_handler(asynchronous: bool, clock: FakeClock) -> grpc.GenericRpcHandler:
    """A tiny bytes-in, bytes-out service `demo.Echo` with a method that always fails.

    Its stream `Ticks` sends three messages, each after TICK_SECONDS on `clock`.
    """
    if asynchronous:

        async def say(request: bytes, context: Any) -> bytes:
            return request

        async def fail(request: bytes, context: Any) -> bytes:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "always fails")
            raise AssertionError("unreachable")

        async def ticks(request: bytes, context: Any) -> AsyncIterator[bytes]:
            for index in range(3):
                clock.tick(TICK_SECONDS)
                yield b"%d" % index
            if request == b"then fail":
                await context.abort(grpc.StatusCode.UNAVAILABLE, "stream broke")

    else:

        def say(request: bytes, context: Any) -> bytes:  # type: ignore[misc]
            return request

        def fail(request: bytes, context: Any) -> bytes:  # type: ignore[misc]
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "always fails")
            raise AssertionError("unreachable")

        def ticks(request: bytes, context: Any) -> Iterator[bytes]:  # type: ignore[misc]
            for index in range(3):
                clock.tick(TICK_SECONDS)
                yield b"%d" % index
            if request == b"then fail":
                context.abort(grpc.StatusCode.UNAVAILABLE, "stream broke")

    return grpc.method_handlers_generic_handler(
        "demo.Echo",
        {
            "Say": grpc.unary_unary_rpc_method_handler(say),
            "Fail": grpc.unary_unary_rpc_method_handler(fail),
            "Ticks": grpc.unary_stream_rpc_method_handler(ticks),
        },
    )


def kind_totals(tracker: EventTracker) -> dict[str, int]:
    return {row.kind: row.total_events for row in tracker.read().kinds if row.total_events}


def kind_errors(tracker: EventTracker) -> dict[str, int]:
    return {row.kind: row.total_errors for row in tracker.read().kinds if row.total_events}


@pytest.fixture
def tracker(clock: FakeClock) -> EventTracker:
    return EventTracker("rpc-service", clock=clock)


async def start_aio_server(
    interceptor: grpc.aio.ServerInterceptor, clock: FakeClock
) -> tuple[grpc.aio.Server, str]:
    server = grpc.aio.server(interceptors=[interceptor])
    server.add_generic_rpc_handlers([echo_handler(asynchronous=True, clock=clock)])
    health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, f"127.0.0.1:{port}"


async def drive_aio(address: str) -> None:
    """3 good calls, 2 failing calls, 4 health checks, 1 call to an unknown method."""
    async with grpc.aio.insecure_channel(address) as channel:
        say = channel.unary_unary(SAY)
        fail = channel.unary_unary(FAIL)
        for _ in range(3):
            assert await say(b"hi", timeout=SHORT) == b"hi"
        for _ in range(2):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await fail(b"x", timeout=SHORT)
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        checker = health_pb2_grpc.HealthStub(channel)
        for _ in range(4):
            await checker.Check(health_pb2.HealthCheckRequest(), timeout=SHORT)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await channel.unary_unary("/demo.Echo/NoSuchMethod")(b"", timeout=SHORT)
        assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED


@pytest.fixture
async def aio_server_factory(clock: FakeClock) -> AsyncIterator[StartServer]:
    started: list[grpc.aio.Server] = []

    async def factory(interceptor: grpc.aio.ServerInterceptor) -> str:
        server, address = await start_aio_server(interceptor, clock)
        started.append(server)
        return address

    yield factory
    for server in started:
        await server.stop(None)


async def test_handled_rpcs_count_once_each_failures_included(
    tracker: EventTracker, aio_server_factory: StartServer
) -> None:
    address = await aio_server_factory(RpcCountInterceptor(tracker))
    await drive_aio(address)
    # Health checks are the mesh's plumbing and an unknown method has no handler: not counted.
    assert kind_totals(tracker) == {"grpc_call": 5}


async def test_one_kind_per_method(tracker: EventTracker, aio_server_factory: StartServer) -> None:
    address = await aio_server_factory(RpcCountInterceptor(tracker, kind=lambda method: method))
    await drive_aio(address)
    assert kind_totals(tracker) == {SAY: 3, FAIL: 2}


async def test_non_ok_codes_count_as_errors_unless_declared_ok(
    tracker: EventTracker, aio_server_factory: StartServer
) -> None:
    address = await aio_server_factory(RpcCountInterceptor(tracker, kind=lambda method: method))
    await drive_aio(address)
    assert kind_errors(tracker) == {SAY: 0, FAIL: 2}
    lenient = EventTracker("lenient")
    interceptor = RpcCountInterceptor(
        lenient,
        kind=lambda method: method,
        ok_codes={grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT},
    )
    await drive_aio(await aio_server_factory(interceptor))
    assert kind_errors(lenient) == {SAY: 0, FAIL: 0}


async def test_a_streaming_rpc_is_timed_until_its_last_message(
    tracker: EventTracker, aio_server_factory: StartServer
) -> None:
    address = await aio_server_factory(RpcCountInterceptor(tracker, kind=lambda method: method))
    async with grpc.aio.insecure_channel(address) as channel:
        ticks = channel.unary_stream(TICKS)
        assert [reply async for reply in ticks(b"", timeout=SHORT)] == [b"0", b"1", b"2"]
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            async for _ in ticks(b"then fail", timeout=SHORT):
                pass
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    (kind,) = tracker.read([TICKS]).kinds
    assert (kind.total_events, kind.total_errors) == (2, 1)
    assert kind.latency is not None  # each call: the whole stream (3 ticks), not its start
    assert kind.latency.max_seconds == pytest.approx(3 * TICK_SECONDS)
    assert kind.latency.sum_seconds == pytest.approx(2 * 3 * TICK_SECONDS)


async def test_uncounted_services_are_configurable(
    tracker: EventTracker, aio_server_factory: StartServer
) -> None:
    interceptor = RpcCountInterceptor(
        tracker, kind=lambda method: method.rsplit("/", 1)[1], uncounted_services=["demo.Echo"]
    )
    address = await aio_server_factory(interceptor)
    await drive_aio(address)
    assert kind_totals(tracker) == {"Check": 4}


async def test_the_aggregators_polling_of_an_agent_is_not_counted_as_work(
    tracker: EventTracker,
) -> None:
    interceptor = RpcCountInterceptor(tracker)
    async with (
        AgentServer(tracker, interceptors=[interceptor]) as agent,
        grpc.aio.insecure_channel(agent.address) as channel,
    ):
        stub = event_rate_pb2_grpc.EventRateServiceStub(channel)
        checker = health_pb2_grpc.HealthStub(channel)
        for _ in range(3):
            await checker.Check(health_pb2.HealthCheckRequest(), timeout=SHORT)
            response = await stub.GetEventRate(event_rate_pb2.GetEventRateRequest(), timeout=SHORT)
            assert response.total_events == 0
    assert tracker.read().total_events == 0


@pytest.fixture
def sync_server(tracker: EventTracker, clock: FakeClock) -> Iterator[str]:
    server = grpc.server(
        ThreadPoolExecutor(max_workers=4),
        interceptors=[SyncRpcCountInterceptor(tracker, kind=lambda method: method)],
    )
    server.add_generic_rpc_handlers([echo_handler(asynchronous=False, clock=clock)])
    health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(None)


def test_sync_interceptor_counts_a_threaded_servers_rpcs(
    tracker: EventTracker, sync_server: str
) -> None:
    with grpc.insecure_channel(sync_server) as channel:
        say = channel.unary_unary(SAY)
        with ThreadPoolExecutor(max_workers=4) as pool:
            replies = list(pool.map(lambda i: say(b"%d" % i, timeout=SHORT), range(40)))
        assert len(replies) == 40
        with pytest.raises(grpc.RpcError):
            channel.unary_unary(FAIL)(b"", timeout=SHORT)
        health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=SHORT)
    assert kind_totals(tracker) == {SAY: 40, FAIL: 1}
    assert kind_errors(tracker) == {SAY: 0, FAIL: 1}


def test_sync_interceptor_times_a_streaming_rpc(tracker: EventTracker, sync_server: str) -> None:
    with grpc.insecure_channel(sync_server) as channel:
        ticks = channel.unary_stream(TICKS)
        assert list(ticks(b"", timeout=SHORT)) == [b"0", b"1", b"2"]
        with pytest.raises(grpc.RpcError):
            list(ticks(b"then fail", timeout=SHORT))
    (kind,) = tracker.read([TICKS]).kinds
    assert (kind.total_events, kind.total_errors) == (2, 1)
    assert kind.latency is not None  # each call: the whole stream (3 ticks), not its start
    assert kind.latency.max_seconds == pytest.approx(3 * TICK_SECONDS)
    assert kind.latency.sum_seconds == pytest.approx(2 * 3 * TICK_SECONDS)


def test_a_kind_that_is_neither_a_name_nor_a_function_is_refused(tracker: EventTracker) -> None:
    with pytest.raises(TypeError, match="kind must be a kind name or a function"):
        RpcCountInterceptor(tracker, kind=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="non-empty"):
        SyncRpcCountInterceptor(tracker, kind="")
