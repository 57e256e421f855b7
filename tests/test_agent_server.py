"""The agent's gRPC server on a real port: EventRateService, health, reflection, lifecycle."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from metricsmesh.v1 import event_rate_pb2, event_rate_pb2_grpc

from agent import (
    AgentServer,
    AgentServerThread,
    EventTracker,
    PortInUseError,
    RpcCountInterceptor,
    ServerStateError,
)
from agent._convert import reading_to_response
from tests.clocks import FakeClock

WALL_START = 1_750_000_000.0
SERVICE = "weather-api"
EVENT_RATE_SERVICE = "metricsmesh.v1.EventRateService"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SHORT = 5.0  # seconds to wait for something that should happen at once


@pytest.fixture
async def server(clock: FakeClock) -> AsyncIterator[AgentServer]:
    tracker = EventTracker(SERVICE, clock=clock, wall_clock=FakeClock(WALL_START))
    async with AgentServer(tracker, port=0, grace_seconds=0.5) as running:
        yield running


@pytest.fixture
async def channel(server: AgentServer) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(server.address) as open_channel:
        yield open_channel


async def test_get_event_rate_answers_what_was_recorded(
    server: AgentServer, channel: grpc.aio.Channel, clock: FakeClock
) -> None:
    tracker = server.tracker
    for _ in range(30):  # 30 api_call and 10 data_fetch in the first 10 s
        tracker.record("api_call")
    clock.tick(4.0)
    tracker.record("data_fetch", 10)
    clock.tick(6.0)
    stub = event_rate_pb2_grpc.EventRateServiceStub(channel)

    response = await stub.GetEventRate(event_rate_pb2.GetEventRateRequest(), timeout=SHORT)

    assert response.service_name == SERVICE
    assert response.total_events == 40
    assert response.window_events == 40
    assert response.events_per_second == pytest.approx(4.0)
    assert response.events_per_hour == pytest.approx(14_400.0)
    assert response.window.ToTimedelta().total_seconds() == 60.0
    assert response.uptime.ToTimedelta().total_seconds() == pytest.approx(10.0)
    assert response.covered_span.ToTimedelta().total_seconds() == pytest.approx(10.0)
    assert response.start_time.ToNanoseconds() == round(WALL_START * 1e9)
    assert response.read_time.ToNanoseconds() == round((WALL_START + 10.0) * 1e9)
    assert response.last_event_time.ToNanoseconds() == round((WALL_START + 4.0) * 1e9)
    rows = {row.kind: row for row in response.kinds}
    assert [row.kind for row in response.kinds] == ["api_call", "data_fetch"]
    assert (rows["api_call"].total_events, rows["data_fetch"].total_events) == (30, 10)
    assert rows["api_call"].events_per_second == pytest.approx(3.0)
    assert rows["api_call"].last_event_time.ToNanoseconds() == round(WALL_START * 1e9)


async def test_each_answer_has_the_latency_of_its_moment(
    server: AgentServer, channel: grpc.aio.Channel, clock: FakeClock
) -> None:
    # The server reuses latency messages while a kind's window is unchanged: a new duration,
    # a closed slot and an expired one must each show in the next answer, exactly as an
    # answer built from nothing shows them.
    tracker = server.tracker
    stub = event_rate_pb2_grpc.EventRateServiceStub(channel)
    request = event_rate_pb2.GetEventRateRequest()
    answers = []
    for step in range(5):
        tracker.observe("api_call", 0.010 * (step + 1))
        tracker.observe("data_fetch", 0.002)  # the same duration in every step
        for _ in range(2):  # twice: an unchanged window answers the same
            answers.append(await stub.GetEventRate(request, timeout=SHORT))
            expected = reading_to_response(tracker.read())
            expected.read_time.CopyFrom(answers[-1].read_time)
            expected.cpu_usage_percent = answers[-1].cpu_usage_percent
            assert answers[-1] == expected
        clock.tick(30.0)  # the latency window moves on: slots close, then leave it
    counts = [answer.latency.histogram.count for answer in answers[::2]]
    assert counts == [2, 4, 4, 4, 4]  # 60 s of window: two steps of two durations
    api = [answer.kinds[0] for answer in answers[::2]]
    assert [row.latency.max.ToMicroseconds() for row in api] == [
        10_000,
        20_000,
        30_000,
        40_000,
        50_000,
    ]
    assert [row.latency_since_start.count for row in api] == [1, 2, 3, 4, 5]


async def test_get_event_rate_limits_the_breakdown_to_the_kinds_asked_for(
    server: AgentServer, channel: grpc.aio.Channel, clock: FakeClock
) -> None:
    server.tracker.record("api_call", 5)
    server.tracker.record("data_fetch", 7)
    clock.tick(1.0)
    stub = event_rate_pb2_grpc.EventRateServiceStub(channel)

    response = await stub.GetEventRate(
        event_rate_pb2.GetEventRateRequest(kinds=["data_fetch", "never_seen"]), timeout=SHORT
    )

    assert [row.kind for row in response.kinds] == ["data_fetch", "never_seen"]
    assert response.kinds[0].total_events == 7
    assert response.kinds[1].total_events == 0
    assert not response.kinds[1].HasField("last_event_time")
    assert response.total_events == 12  # the totals still cover every kind


async def test_no_event_yet_leaves_last_event_time_unset(
    server: AgentServer, channel: grpc.aio.Channel
) -> None:
    stub = event_rate_pb2_grpc.EventRateServiceStub(channel)
    response = await stub.GetEventRate(event_rate_pb2.GetEventRateRequest(), timeout=SHORT)
    assert response.total_events == 0
    assert not response.HasField("last_event_time")


@pytest.mark.parametrize("name", ["", SERVICE, EVENT_RATE_SERVICE])
async def test_health_check_is_serving_overall_and_per_name(
    channel: grpc.aio.Channel, name: str
) -> None:
    stub = health_pb2_grpc.HealthStub(channel)
    response = await stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=SHORT)
    assert response.status == SERVING


async def test_health_check_of_an_unknown_name_is_not_found(channel: grpc.aio.Channel) -> None:
    stub = health_pb2_grpc.HealthStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Check(health_pb2.HealthCheckRequest(service="no-such-service"), timeout=SHORT)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_watch_streams_not_serving_then_serving_again(
    server: AgentServer, channel: grpc.aio.Channel
) -> None:
    stub = health_pb2_grpc.HealthStub(channel)
    call = stub.Watch(health_pb2.HealthCheckRequest(service=SERVICE))
    try:
        assert (await asyncio.wait_for(call.read(), SHORT)).status == SERVING
        await server.set_serving(False)
        assert (await asyncio.wait_for(call.read(), SHORT)).status == NOT_SERVING
        await server.set_serving(True)
        assert (await asyncio.wait_for(call.read(), SHORT)).status == SERVING
    finally:
        call.cancel()


async def test_set_serving_false_shows_in_check_for_every_name(
    server: AgentServer, channel: grpc.aio.Channel
) -> None:
    stub = health_pb2_grpc.HealthStub(channel)
    await server.set_serving(False)
    for name in ("", SERVICE, EVENT_RATE_SERVICE):
        response = await stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=SHORT)
        assert response.status == NOT_SERVING, name


async def test_reflection_lists_the_services_and_serves_their_descriptors(
    channel: grpc.aio.Channel,
) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    requests = [
        reflection_pb2.ServerReflectionRequest(list_services=""),
        reflection_pb2.ServerReflectionRequest(file_containing_symbol=EVENT_RATE_SERVICE),
    ]
    responses = [response async for response in stub.ServerReflectionInfo(iter(requests))]

    listed = {service.name for service in responses[0].list_services_response.service}
    assert listed == {
        EVENT_RATE_SERVICE,
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    }
    files = responses[1].file_descriptor_response.file_descriptor_proto
    assert any(b"GetEventRate" in serialized for serialized in files)


async def test_port_in_use_gives_a_clear_error(server: AgentServer) -> None:
    second = AgentServer(EventTracker("other"), port=server.port)
    with pytest.raises(PortInUseError) as caught:
        await second.start()
    message = str(caught.value)
    assert f"127.0.0.1:{server.port}" in message
    assert "already in use" in message
    assert "0 picks a free one" in message


async def test_graceful_stop_flips_health_to_not_serving_first(
    server: AgentServer, channel: grpc.aio.Channel
) -> None:
    stub = health_pb2_grpc.HealthStub(channel)
    call = stub.Watch(health_pb2.HealthCheckRequest(service=""))
    assert (await asyncio.wait_for(call.read(), SHORT)).status == SERVING

    stopping = asyncio.create_task(server.stop(grace_seconds=2.0))
    assert (await asyncio.wait_for(call.read(), SHORT)).status == NOT_SERVING
    call.cancel()  # the only in-flight call: the stop need not use its whole grace period
    await asyncio.wait_for(stopping, SHORT)

    event_rate = event_rate_pb2_grpc.EventRateServiceStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await event_rate.GetEventRate(event_rate_pb2.GetEventRateRequest(), timeout=SHORT)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_a_stopped_server_cannot_start_again(server: AgentServer) -> None:
    await server.stop()
    await server.stop()  # a second stop is harmless
    with pytest.raises(ServerStateError, match="create a new one"):
        await server.start()


async def test_port_of_a_server_not_started_is_an_error() -> None:
    with pytest.raises(ServerStateError, match="not started"):
        _ = AgentServer(EventTracker("idle")).port


def test_agent_server_thread_serves_plain_threaded_code() -> None:
    tracker = EventTracker("threaded-worker")
    worker = threading.Thread(target=lambda: [tracker.record("job") for _ in range(25)])
    server = AgentServerThread(tracker)
    port = server.start()
    try:
        worker.start()
        worker.join()
        assert port > 0
        assert server.port == port
        with grpc.insecure_channel(server.address) as channel:
            stub = event_rate_pb2_grpc.EventRateServiceStub(channel)
            response = stub.GetEventRate(event_rate_pb2.GetEventRateRequest(), timeout=SHORT)
            assert response.service_name == "threaded-worker"
            assert response.total_events == 25
            health = health_pb2_grpc.HealthStub(channel)
            server.set_serving(False)
            check = health.Check(health_pb2.HealthCheckRequest(service="threaded-worker"))
            assert check.status == NOT_SERVING
    finally:
        server.stop()
    server.stop()  # harmless
    with pytest.raises(ServerStateError):
        _ = server.port


def test_agent_server_thread_as_a_context_manager() -> None:
    tracker = EventTracker("ctx-worker")
    with AgentServerThread(tracker) as server:
        tracker.record("job", 3)
        address = server.address
        with grpc.insecure_channel(address) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            assert health.Check(health_pb2.HealthCheckRequest(), timeout=SHORT).status == SERVING
            stub = event_rate_pb2_grpc.EventRateServiceStub(channel)
            response = stub.GetEventRate(event_rate_pb2.GetEventRateRequest(), timeout=SHORT)
            assert response.total_events == 3
    with grpc.insecure_channel(address) as channel:
        stub = event_rate_pb2_grpc.EventRateServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.GetEventRate(event_rate_pb2.GetEventRateRequest(), timeout=SHORT)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]


def test_agent_server_thread_runs_the_interceptors_it_is_given() -> None:
    tracker = EventTracker("intercepted-worker")
    counting = RpcCountInterceptor(tracker, kind="rate_read", uncounted_services=())
    with (
        AgentServerThread(tracker, interceptors=[counting]) as server,
        grpc.insecure_channel(server.address) as channel,
    ):
        stub = event_rate_pb2_grpc.EventRateServiceStub(channel)
        for _ in range(3):
            stub.GetEventRate(event_rate_pb2.GetEventRateRequest(), timeout=SHORT)
        response = stub.GetEventRate(
            event_rate_pb2.GetEventRateRequest(kinds=["rate_read"]), timeout=SHORT
        )
    # A call counts when its handler is done: the fourth reads the first three, timed.
    (kind,) = response.kinds
    assert (kind.kind, kind.total_events, kind.total_errors) == ("rate_read", 3, 0)
    assert kind.latency.histogram.count == 3


def test_agent_server_thread_on_a_taken_port_raises_and_cleans_up() -> None:
    with AgentServerThread(EventTracker("first")) as first:
        second = AgentServerThread(EventTracker("second"), port=first.port)
        with pytest.raises(PortInUseError, match="already in use"):
            second.start()
        with pytest.raises(ServerStateError, match="not started"):
            second.set_serving(True)


def test_agent_server_thread_cannot_start_twice() -> None:
    with (
        AgentServerThread(EventTracker("twice")) as server,
        pytest.raises(ServerStateError, match="already started"),
    ):
        server.start()
