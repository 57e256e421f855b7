"""Fuzzing with hypothesis: 2,200 generated inputs over gRPC raw bytes, REST/SSE parameters and
headers, and WebSocket frames, against real agents, aggregator and gateway.

The servers run in a thread of their own (their own event loop); each test drives them with
blocking clients, one generated input at a time. Every input must get a proper answer (no
5xx, gRPC INVALID_ARGUMENT or OK, a WebSocket reply), no traceback may be logged, and every
server must answer correctly afterwards.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import httpx
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from metricsmesh.v1 import aggregator_pb2
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.hardened_gateway import small_mesh

FUZZ = settings(
    max_examples=600,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
GRPC_METHODS = (
    "/metricsmesh.v1.AggregatorService/GetSnapshot",
    "/metricsmesh.v1.EventRateService/GetEventRate",
)
STREAM_METHOD = "/metricsmesh.v1.AggregatorService/StreamSnapshots"
ACCEPTED = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT}
PATHS = (
    "/api/v1/real-time-metrics",
    "/api/v1/real-time-metrics/stream",
    "/api/v1/schema",
    "/health/detailed",
    "/metrics",
)


@dataclass
class Running:
    """Where the servers of the fuzz run listen."""

    aggregator: str
    agent: str
    gateway: str
    loop: asyncio.AbstractEventLoop
    """The servers' event loop (their thread's)."""


@pytest.fixture(scope="module")
def running() -> Iterator[Running]:
    ready = threading.Event()
    found: list[Running] = []
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    async def serve() -> None:
        async with small_mesh(
            ws_messages_per_second=100_000.0,
            rate_limit_per_second=0.0,
            heartbeat_seconds=0.2,
        ) as mesh:
            found.append(Running(mesh.aggregator.address, mesh.agents[0].address, mesh.url, loop))
            ready.set()
            await stop.wait()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    assert ready.wait(30), "the mesh did not start"
    try:
        yield found[0]
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(30)
        loop.close()


@pytest.fixture(scope="module")
def channels(running: Running) -> Iterator[dict[str, grpc.Channel]]:
    opened = {
        "aggregator": grpc.insecure_channel(running.aggregator),
        "agent": grpc.insecure_channel(running.agent),
    }
    yield opened
    for channel in opened.values():
        channel.close()


@pytest.fixture(scope="module")
def http(running: Running) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=running.gateway, timeout=10) as client:
        yield client


async def _log_canary(text: str) -> None:
    logging.getLogger("gateway").warning(text)


def no_tracebacks(caplog: pytest.LogCaptureFixture, running: Running) -> None:
    """Nothing was logged with a traceback, by a capture that sees the servers' thread.

    A canary logged on the servers' loop must be captured, so an empty capture (the servers'
    records going elsewhere) fails instead of passing.
    """
    canary = f"fuzz canary {time.monotonic_ns()}"
    asyncio.run_coroutine_threadsafe(_log_canary(canary), running.loop).result(10)
    assert canary in caplog.text, "the log capture does not see the servers' records"
    assert not [record for record in caplog.records if record.exc_info], "a traceback was logged"
    assert "Traceback" not in caplog.text


@settings(FUZZ, max_examples=800)
@given(payload=st.binary(max_size=512), method=st.sampled_from(range(3)))
def test_grpc_raw_bytes(
    channels: dict[str, grpc.Channel],
    payload: bytes,
    method: int,
    caplog: pytest.LogCaptureFixture,
    running: Running,
) -> None:
    caplog.set_level(logging.WARNING)
    try:
        if method == 2:
            call = channels["aggregator"].unary_stream(STREAM_METHOD)(payload, timeout=2)
            next(iter(call))
            call.cancel()
        else:
            channel = channels["aggregator" if method == 0 else "agent"]
            channel.unary_unary(GRPC_METHODS[method])(payload, timeout=2)
    except grpc.RpcError as error:
        code = error.code()  # type: ignore[attr-defined]
        assert code in ACCEPTED or code is grpc.StatusCode.CANCELLED, error
        assert len(error.details() or "") < 1000  # type: ignore[attr-defined]
    no_tracebacks(caplog, running)


TEXT = st.text(st.characters(codec="latin-1", exclude_characters="\r\n\x00"), max_size=80)


@FUZZ
@given(
    path=st.sampled_from(PATHS),
    params=st.dictionaries(
        st.sampled_from(["services", "types", "fields", "interval", "replay", "x"]),
        st.text(max_size=60),
        max_size=4,
    ),
    header=st.tuples(st.sampled_from(["Last-Event-ID", "Accept", "X-Any", "Origin"]), TEXT),
)
def test_rest_and_sse_parameters_and_headers(
    http: httpx.Client,
    path: str,
    params: dict[str, str],
    header: tuple[str, str],
    caplog: pytest.LogCaptureFixture,
    running: Running,
) -> None:
    caplog.set_level(logging.WARNING)
    name, value = header
    assume(value == value.strip())
    try:
        with http.stream("GET", path, params=params, headers={name: value.encode("latin-1")}) as r:
            status = r.status_code
            if status == 200 and path.endswith("/stream"):
                next(r.iter_lines())  # the stream opens; enough
            else:
                r.read()
    except httpx.LocalProtocolError:
        assume(False)
    assert status < 500 or (status == 503 and path != "/api/v1/schema"), status
    no_tracebacks(caplog, running)


@pytest.fixture(scope="module")
def ws(running: Running) -> Iterator[list[ClientConnection]]:
    url = running.gateway.replace("http://", "ws://") + "/ws/metrics"
    with connect(url, max_size=None) as one, connect(url, max_size=None) as two:
        one.recv(10)
        two.recv(10)  # a second client that must stay unharmed
        yield [one, two]


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
MESSAGES = st.one_of(
    st.text(max_size=200),
    st.builds(
        lambda kind, rest: json.dumps({"type": kind, **rest}),
        st.sampled_from(
            [
                "subscribe",
                "unsubscribe",
                "set_filters",
                "set_update_interval",
                "set_batching",
                "ping",
                "get_statistics",
                "nope",
            ]
        ),
        st.dictionaries(
            st.sampled_from(
                [
                    "metric_types",
                    "filters",
                    "interval_seconds",
                    "batch_size",
                    "batch_timeout_seconds",
                    "data",
                ]
            ),
            JSON_VALUES,
            max_size=3,
        ),
    ),
    st.integers(1, 3000).map(lambda depth: "[" * depth),
)


@settings(FUZZ, max_examples=800)
@given(message=MESSAGES)
def test_websocket_frames(
    ws: list[ClientConnection], message: str, caplog: pytest.LogCaptureFixture, running: Running
) -> None:
    caplog.set_level(logging.WARNING)
    client = ws[0]
    client.send(message)
    client.send(json.dumps({"type": "ping"}))
    try:
        while json.loads(client.recv(10))["type"] != "pong":
            pass  # replies, errors and pushed updates before the pong
    except ConnectionClosed as closed:  # pragma: no cover - must not happen
        raise AssertionError(f"the connection was dropped: {closed}") from closed
    no_tracebacks(caplog, running)


def test_every_server_answers_correctly_afterwards(
    running: Running,
    channels: dict[str, grpc.Channel],
    http: httpx.Client,
    ws: list[ClientConnection],
) -> None:
    body = http.get("/api/v1/real-time-metrics").json()
    assert len(body["active_apis"]) == 3
    request = aggregator_pb2.GetSnapshotRequest()
    answer = channels["aggregator"].unary_unary(
        "/metricsmesh.v1.AggregatorService/GetSnapshot",
        request_serializer=aggregator_pb2.GetSnapshotRequest.SerializeToString,
        response_deserializer=aggregator_pb2.GetSnapshotResponse.FromString,
    )(request, timeout=5)
    assert answer.snapshot.active_count == 3
    ws[1].send(json.dumps({"type": "ping"}))
    while json.loads(ws[1].recv(10))["type"] != "pong":
        pass
