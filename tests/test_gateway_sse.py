"""GET /api/v1/real-time-metrics/stream with a real streaming HTTP client."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest

import gateway._sse
from gateway import RealTimeMetrics
from gateway._sse import Admission, EventStreamResponse
from gateway._state import ClientStats
from gateway._views import WHOLE
from mesh_common.bounded import QUOTE_LIMIT
from tests.eventually import eventually
from tests.gateway_mesh import Mesh, running_mesh
from tests.sse_client import STREAM, Event, events, take

# The first snapshot is in (no test starts on a 503 body); a ring of 8, heartbeats every 0.3 s.
pytestmark = pytest.mark.mesh(history_size=8, heartbeat_seconds=0.3)

REST = "/api/v1/real-time-metrics"


async def test_snapshots_stream_with_increasing_ids_and_the_rest_body(mesh: Mesh) -> None:
    await mesh.metrics()
    got = await asyncio.wait_for(take(mesh, 3), 10)
    assert [event.name for event in got] == ["snapshot"] * 3
    ids = [event.id for event in got]
    assert ids == sorted(ids) and len(set(ids)) == 3
    for event in got:
        body = event.json()
        assert body["sequence"] == event.id
        RealTimeMetrics.model_validate(body)


async def test_filters_and_fields_shape_each_event(mesh: Mesh) -> None:
    await mesh.metrics()
    (event,) = await asyncio.wait_for(
        take(
            mesh,
            1,
            params={"services": "weather-api,admin-api", "fields": "events_per_second"},
        ),
        10,
    )
    body = event.json()
    rows = body["active_apis"] + body["inactive_services"]
    assert {row["service_name"] for row in rows} == {"weather-api", "admin-api"}
    for row in rows:
        assert set(row) == {"service_name", "status", "events_per_second"}
    assert set(body["data_sources_active"]) <= {"weather"}
    (typed,) = await asyncio.wait_for(take(mesh, 1, params={"types": "data"}), 10)
    rows = typed.json()["active_apis"] + typed.json()["inactive_services"]
    assert {row["service_type"] for row in rows} == {"data"}
    assert len(rows) == 7


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({"interval": "-1"}, 422),
        ({"interval": "soon"}, 422),
        ({"fields": "events_per_second,bogus"}, 422),
        ({"services": "no-such-service"}, 422),
        ({"types": "nosuch"}, 422),
        ({"replay": "-3"}, 422),
    ],
)
async def test_bad_parameters_are_rejected(mesh: Mesh, params: dict[str, str], status: int) -> None:
    await mesh.metrics()
    response = await mesh.http.get(STREAM, params=params)
    assert response.status_code == status
    assert "detail" in response.json()


async def test_bad_last_event_id_is_a_400(mesh: Mesh) -> None:
    response = await mesh.http.get(STREAM, headers={"Last-Event-ID": "yesterday"})
    assert response.status_code == 400


async def test_last_event_id_resumes_without_a_gap_from_the_gateway_ring(mesh: Mesh) -> None:
    await mesh.metrics()
    first = await asyncio.wait_for(take(mesh, 2), 10)
    resume_after = first[-1].id
    assert resume_after is not None
    # Let some snapshots pass while "disconnected", fewer than the ring holds (8).
    await _wait_for_sequence(mesh, resume_after + 3)
    resumed = await asyncio.wait_for(take(mesh, 3, **{"Last-Event-ID": str(resume_after)}), 10)
    assert [event.id for event in resumed] == [resume_after + 1, resume_after + 2, resume_after + 3]


async def test_resume_beyond_the_ring_replays_from_the_aggregator_history(mesh: Mesh) -> None:
    await mesh.metrics()
    (first,) = await asyncio.wait_for(take(mesh, 1), 10)
    assert first.id is not None
    await _wait_for_sequence(mesh, first.id + 12)  # the ring holds 8: it no longer reaches back
    resumed = await asyncio.wait_for(take(mesh, 10, **{"Last-Event-ID": str(first.id)}), 10)
    assert [event.id for event in resumed] == list(range(first.id + 1, first.id + 11))


async def test_replay_sends_recent_snapshots_first(mesh: Mesh) -> None:
    await _wait_for_sequence(mesh, 6)
    got = await asyncio.wait_for(take(mesh, 5, params={"replay": "5"}), 10)
    ids = [event.id for event in got]
    assert ids == list(range(ids[0], ids[0] + 5))


async def test_error_event_when_the_aggregator_fails_then_snapshots_again(mesh: Mesh) -> None:
    await mesh.metrics()
    seen: list[Event] = []
    async with mesh.http.stream("GET", STREAM) as response:
        stream = events(response)
        seen.append(await asyncio.wait_for(_next_data(stream), 10))
        await mesh.stop_aggregator()
        while seen[-1].name != "error":
            seen.append(await asyncio.wait_for(_next_data(stream), 10))
        error = seen[-1].json()
        assert error["active_apis"] == [] and error["inactive_apis"] == 15
        assert error["error"]
        await mesh.start_aggregator()
        after = await asyncio.wait_for(_next_data(stream), 10)
        assert after.name == "gap"  # a new aggregator lifetime: the client is told
        after = await asyncio.wait_for(_next_data(stream), 10)
        assert after.name == "snapshot"
        body = after.json()
        assert len(body["active_apis"]) + len(body["inactive_services"]) == 15


async def test_heartbeat_comments_keep_an_idle_stream_open(mesh: Mesh) -> None:
    await mesh.metrics()
    comments = 0
    async with mesh.http.stream("GET", STREAM, params={"interval": "30"}) as response:
        async for event in events(response):
            if event.name == "comment":
                assert event.data.startswith("heartbeat")
                comments += 1
                if comments == 2:
                    break
    assert comments == 2


async def _next_data(stream: AsyncIterator[Event]) -> Event:
    async for event in stream:
        if event.name != "comment":
            return event
    raise AssertionError("stream ended")


async def _wait_for_sequence(mesh: Mesh, sequence: int) -> None:
    async def reached() -> bool:
        body = (await mesh.http.get("/api/v1/real-time-metrics")).json()
        return (body.get("sequence") or 0) >= sequence  # null in the 503 body

    await eventually(reached, what=f"sequence {sequence}")


async def test_interval_spaces_the_events(mesh: Mesh) -> None:
    await mesh.metrics()
    got = await asyncio.wait_for(take(mesh, 3, params={"interval": "1"}), 15)
    ids = [event.id or 0 for event in got]
    # Rounds complete every 0.2 s: events a second apart are at least 4 sequences apart.
    assert ids[1] - ids[0] >= 4 and ids[2] - ids[1] >= 4, ids


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"services": "weather-api,admin-api", "fields": "events_per_second,latency_p95_ms"},
        {"types": "data"},
    ],
)
async def test_a_replayed_snapshot_is_the_body_served_while_it_was_the_latest(
    mesh: Mesh, params: dict[str, str]
) -> None:
    """Older snapshots are kept compacted in the ring; replaying one gives back the same body."""
    for name in ("weather-api", "admin-api"):
        mesh.tracker(name).observe("call", 0.02, error=name == "admin-api")
    await eventually(
        lambda: mesh.tracker("weather-api").read().total_events == 1, what="the events counted"
    )

    async def served() -> dict[str, Any] | None:
        response = await mesh.http.get(REST, params=params)
        return response.json() if response.status_code == 200 else None

    live = await eventually(served, what="a 200 body")

    async def two_newer() -> bool:  # then `live` is an older entry of the ring
        return bool((await mesh.http.get(REST)).json()["sequence"] >= live["sequence"] + 2)

    await eventually(two_newer, what="two newer snapshots")
    replayed = await asyncio.wait_for(take(mesh, 8, params={**params, "replay": "8"}), 10)
    (same,) = [event.json() for event in replayed if event.id == live["sequence"]]
    for body in (live, same):
        del body["snapshot_age_ms"]
    assert same == live


def no_sse_client_counted(mesh: Mesh) -> Callable[[], Awaitable[bool]]:
    """A probe: /health/detailed counts no SSE client (every place was given back)."""

    async def probe() -> bool:
        return bool((await mesh.http.get("/health/detailed")).json()["clients"]["sse"] == 0)

    return probe


async def test_a_burst_of_sse_clients_never_passes_the_cap() -> None:
    """30 streams opened at once against a cap of 5: five get in, the rest get 503."""
    async with running_mesh(max_sse_clients=5) as mesh:
        await mesh.metrics()
        limits = httpx.Limits(max_connections=40)
        async with httpx.AsyncClient(base_url=mesh.url, timeout=10, limits=limits) as http:
            opened = asyncio.Event()
            statuses: list[int] = []

            async def client() -> None:
                async with http.stream("GET", STREAM) as response:
                    statuses.append(response.status_code)
                    if len(statuses) == 30:
                        opened.set()
                    await opened.wait()  # every stream stays open until all have answered

            await asyncio.wait_for(asyncio.gather(*(client() for _ in range(30))), 20)
        assert sorted(statuses) == [200] * 5 + [503] * 25
        await eventually(no_sse_client_counted(mesh), what="every SSE place given back")


async def test_clients_gone_before_the_first_byte_give_their_place_back() -> None:
    """Requests whose client hangs up at once never keep a place: the next 5 all get in."""
    async with running_mesh(max_sse_clients=5) as mesh:
        await mesh.metrics()
        request = f"GET {STREAM} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
        for _ in range(20):
            _, writer = await asyncio.open_connection("127.0.0.1", mesh.port)
            writer.write(request)
            await writer.drain()
            writer.transport.abort()  # gone before the response's first byte
        await eventually(no_sse_client_counted(mesh), what="every SSE place given back")
        async with contextlib.AsyncExitStack() as streams:
            for _ in range(5):
                response = await streams.enter_async_context(mesh.http.stream("GET", STREAM))
                assert response.status_code == 200
        await eventually(no_sse_client_counted(mesh), what="every SSE place given back")


async def test_a_stream_that_fails_gives_its_place_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """A stream ended by an exception (injected: its frames cannot be built) frees its place."""
    async with running_mesh(max_sse_clients=1) as mesh:
        await mesh.metrics()

        def broken(*args: object) -> bytes:
            raise RuntimeError("injected: no frame")

        monkeypatch.setattr(gateway._sse, "frame", broken)
        for _ in range(3):  # with the place kept, the second would get a 503
            with pytest.raises(httpx.RemoteProtocolError):  # the response ends mid-stream
                async with mesh.http.stream("GET", STREAM) as response:
                    assert response.status_code == 200
                    async for _ in response.aiter_bytes():
                        pass
        await eventually(no_sse_client_counted(mesh), what="the SSE place given back")


async def test_a_refused_stream_gives_its_place_back() -> None:
    """A view checked at the first snapshot and refused ends its stream and frees its place."""
    async with running_mesh(aggregator_first=False, max_sse_clients=1) as mesh:
        params = {"services": "no-such-service"}
        async with mesh.http.stream("GET", STREAM, params=params) as response:
            assert response.status_code == 200  # nothing to check the name against yet
            await mesh.start_aggregator()
            got = [event async for event in events(response) if event.name != "comment"]
        # An `error` event while no snapshot exists, then the refusal that ends the stream.
        assert got[-1].name == "error" and got[-1].json()["status"] == 422
        await eventually(no_sse_client_counted(mesh), what="the SSE place given back")


def test_a_response_never_sent_gives_its_place_back() -> None:
    stats = ClientStats()

    async def body() -> AsyncIterator[bytes]:
        yield b""

    response = EventStreamResponse(body(), Admission(stats))
    assert stats.sse_clients == 1
    del response
    gc.collect()
    assert stats.sse_clients == 0


async def test_a_replay_lets_other_requests_run_between_its_frames(mesh: Mesh) -> None:
    """Each replayed frame is made on its own turn of the event loop, never all in one go.

    (50 stalled clients asking `replay=100` once held the loop for 1.6 s: a REST request
    waited that long.) A task counting loop turns must advance while each frame is made.
    """
    await _wait_for_sequence(mesh, 6)
    state = mesh.server.config.app.state.gateway  # type: ignore[union-attr]
    stream = gateway._sse.events(state, WHOLE, 0.0, None, 5)
    turns = 0

    async def count_turns() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    counter = asyncio.create_task(count_turns())
    try:
        assert (await anext(stream)).startswith(b"retry: ")
        during: list[int] = []
        for _ in range(5):
            before = turns
            assert (await anext(stream)).startswith(b"id: ")
            during.append(turns - before)
        assert all(during), during
    finally:
        counter.cancel()
        await stream.aclose()


@pytest.mark.parametrize("path", [REST, STREAM])
@pytest.mark.parametrize(
    "fields",
    ["x" * 5000, ",".join(f"bogus_{index}" for index in range(1000))],
    ids=["one long name", "a thousand names"],
)
async def test_the_422_of_unknown_fields_repeats_a_bounded_part_of_them(
    mesh: Mesh, path: str, fields: str
) -> None:
    response = await mesh.http.get(path, params={"fields": fields})
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert detail.startswith("unknown field(s) ") and "; known: " in detail
    assert len(detail) <= 2 * QUOTE_LIMIT + 600, len(detail)  # the known names: ~400


async def test_a_stream_opened_anew_resumes_with_the_query_parameter(mesh: Mesh) -> None:
    await mesh.metrics()
    first = await asyncio.wait_for(take(mesh, 2), 10)
    resume_after = first[-1].id
    assert resume_after is not None
    await _wait_for_sequence(mesh, resume_after + 3)
    params = {"last_event_id": str(resume_after)}
    resumed = await asyncio.wait_for(take(mesh, 3, params=params), 10)
    assert [event.id for event in resumed] == [resume_after + 1, resume_after + 2, resume_after + 3]
    both = await mesh.http.get(
        STREAM, params=params, headers={"Last-Event-ID": str(resume_after + 1)}
    )
    assert both.status_code == 400 and "send one of them" in both.text
    assert (await mesh.http.get(STREAM, params={"last_event_id": "soon"})).status_code == 400
