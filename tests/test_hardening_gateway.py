"""Hostile HTTP, SSE and WebSocket input against the gateway as it really runs.

Raw sockets where a client library would refuse to misbehave (huge or slow headers, idle
connections), httpx and websockets otherwise. Every refusal is a 4xx / close code with a
short reason, and the gateway keeps serving everybody else.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time

import httpx
import pytest
from starlette.responses import RedirectResponse
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from gateway import GatewaySettings, create_app
from gateway._limits import SafeRedirects, TokenBucket
from gateway._sse import PATH as SSE_PATH
from mesh_common.clocks import Clocks
from tests.clocks import FakeClock
from tests.eventually import eventually
from tests.hardened_gateway import SmallMesh, serve_hardened, small_mesh

REST = "/api/v1/real-time-metrics"


async def raw(port: int, data: bytes, *, read_timeout: float = 5.0) -> bytes:
    """Send `data` on a fresh connection and read until the server closes it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), read_timeout)
    finally:
        writer.close()


@pytest.mark.parametrize(
    "value", ["²", "9" * 5000, "99999999999999999999", "1-2-3", "é", "-", "12-", "4 5"]
)
async def test_any_bad_last_event_id_is_a_short_400(hardened: SmallMesh, value: str) -> None:
    async with httpx.AsyncClient(base_url=hardened.url) as http:
        response = await http.get(SSE_PATH, headers={"Last-Event-ID": value.encode()})
    assert response.status_code == 400
    assert len(response.content) < 300
    assert "Traceback" not in response.text


async def test_a_foreign_host_is_refused_and_redirects_stay_home(hardened: SmallMesh) -> None:
    async with httpx.AsyncClient(base_url=hardened.url) as http:
        evil = await http.get(REST, headers={"Host": "attacker.example"})
        assert evil.status_code == 400 and "allowed_hosts" in evil.text
        slash = await http.get(REST + "/", headers={"Host": "evil.example"})
        assert slash.status_code == 400
        local = await http.get(REST, headers={"Host": f"localhost:{hardened.port}"})
        assert local.status_code == 200
    app = create_app(GatewaySettings())
    redirects = SafeRedirects(app, app.state.gateway)
    assert redirects.local_location(b"http://evil.example//x.example/a?b=1") == b"/x.example/a?b=1"
    assert redirects.local_location(b"http://localhost:8000/a") == b"http://localhost:8000/a"


async def test_redirects_to_a_foreign_host_stay_home() -> None:
    app = create_app(GatewaySettings())
    app.add_api_route("/away", lambda: RedirectResponse("http://evil.example//x.example/a"))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as http:
        response = await http.get("/away")
    assert response.status_code == 307 and response.headers["location"] == "/x.example/a"


async def test_configured_hosts_are_answered() -> None:
    async with (
        small_mesh(allowed_hosts=("metrics.example",)) as running,
        httpx.AsyncClient(base_url=running.url) as http,
    ):
        ok = await http.get("/health", headers={"Host": "metrics.example:443"})
        assert ok.status_code == 200


async def test_headers_over_the_limit_get_431(hardened: SmallMesh) -> None:
    request = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 50_000 + b"\r\n\r\n"
    answer = await raw(hardened.port, request)
    assert answer.startswith(b"HTTP/1.1 431") and b"max_header_bytes" in answer


async def test_a_head_that_never_ends_gets_431(hardened: SmallMesh) -> None:
    answer = await raw(
        hardened.port, b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 50_000
    )
    assert answer.startswith(b"HTTP/1.1 431") and b"max_header_bytes" in answer


async def test_heads_under_the_limit_after_other_requests_are_served(hardened: SmallMesh) -> None:
    # Header bytes are counted per read: a body, or a request before in the same read,
    # must not be taken for part of the next head (the limit is 8192 bytes here).
    pad = b"X-Pad: " + b"a" * 7000 + b"\r\n"
    small = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    post = b"POST /health HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 20000\r\n\r\n"
    last = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n" + pad + b"Connection: close\r\n\r\n"
    answer = await raw(hardened.port, small + post + b"b" * 20_000 + last)
    assert re.findall(rb"HTTP/1.1 (\d+)", answer) == [b"200", b"405", b"200"]


async def test_a_head_pipelined_behind_a_stream_cannot_grow_without_end(
    hardened: SmallMesh,
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", hardened.port)
    writer.write(f"GET {SSE_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
    closed = asyncio.Event()

    async def read_to_the_end() -> None:
        with contextlib.suppress(ConnectionError):
            while await reader.read(65536):
                pass
        closed.set()

    reading = asyncio.create_task(read_to_the_end())
    sent = 0
    try:
        writer.write(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ")
        while sent < 1_000_000 and not closed.is_set():
            writer.write(b"a" * 4096)
            await writer.drain()
            await asyncio.sleep(0)  # the server runs in this loop: let it read
            sent += 4096
    except ConnectionError:
        pass  # the server closed the connection under our writes
    finally:
        await asyncio.wait_for(closed.wait(), 10)
        await reading
        writer.close()
    assert sent < 200_000  # 8192 bytes of head, and what was in flight


async def test_idle_and_slow_header_connections_are_closed(hardened: SmallMesh) -> None:
    started = time.monotonic()
    assert await raw(hardened.port, b"") == b""  # idle: closed without a word
    idle = time.monotonic() - started
    slow = await raw(hardened.port, b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
    assert slow.startswith(b"HTTP/1.1 408")
    # The 0.5 s header timeout (less the loop clock's millisecond), not forever.
    assert idle >= 0.45 and time.monotonic() - started < 5
    async with httpx.AsyncClient(base_url=hardened.url) as http:
        assert (await http.get("/health")).status_code == 200


async def read_response(reader: asyncio.StreamReader) -> bytes:
    """One response with a content-length body."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    return head + await reader.readexactly(length)


async def test_after_a_response_idle_and_slow_header_connections_are_closed(
    hardened: SmallMesh,
) -> None:
    request = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    for then, expected in ((b"", b""), (b"GET /health HTTP/1.1\r\nX-Slow: ", b"HTTP/1.1 408")):
        reader, writer = await asyncio.open_connection("127.0.0.1", hardened.port)
        try:
            writer.write(request)
            assert (await read_response(reader)).startswith(b"HTTP/1.1 200")
            answered = time.monotonic()
            writer.write(then)
            rest = await asyncio.wait_for(reader.read(), 5)
            assert rest.startswith(expected) and (expected or rest == b"")
            assert time.monotonic() - answered >= 0.45  # the 0.5 s header timeout
        finally:
            writer.close()


async def test_idle_keep_alive_connections_close_after_uvicorns_timeout() -> None:
    settings = GatewaySettings(port=0, header_timeout_seconds=30)
    async with serve_hardened(settings, timeout_keep_alive=0.3) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert (await read_response(reader)).startswith(b"HTTP/1.1 200")
            answered = time.monotonic()
            assert await asyncio.wait_for(reader.read(), 5) == b""  # not the 30 s of headers
            assert time.monotonic() - answered >= 0.25
        finally:
            writer.close()


async def test_connections_beyond_the_cap_get_503_at_once() -> None:
    async with small_mesh(max_connections=3, header_timeout_seconds=30) as running:
        held = [await asyncio.open_connection("127.0.0.1", running.port) for _ in range(3)]
        try:
            answer = await raw(running.port, b"")
            assert answer.startswith(b"HTTP/1.1 503") and b"max_connections" in answer
        finally:
            for _, writer in held:
                writer.close()
        async with httpx.AsyncClient(base_url=running.url) as http:

            async def served() -> bool:
                return (await http.get("/health")).status_code == 200

            await eventually(served, what="the gateway to serve again")


async def test_sse_clients_beyond_the_cap_get_503(hardened: SmallMesh) -> None:
    async with (
        httpx.AsyncClient(base_url=hardened.url, timeout=10) as http,
        http.stream("GET", SSE_PATH) as one,
        http.stream("GET", SSE_PATH) as two,
    ):
        assert one.status_code == two.status_code == 200
        await one.aiter_lines().__anext__()
        await two.aiter_lines().__anext__()
        third = await http.get(SSE_PATH)
        assert third.status_code == 503 and "max_sse_clients" in third.text


async def test_rest_rate_limit_answers_429_with_retry_after(clock: FakeClock) -> None:
    settings = GatewaySettings(rate_limit_per_second=1.0, rate_limit_burst=3)
    app = create_app(settings, clocks=Clocks(monotonic=clock, wall=time.time))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as http:
        statuses = [(await http.get("/api/v1/schema")).status_code for _ in range(4)]
        assert statuses == [200, 200, 200, 429]
        limited = await http.get("/api/v1/schema")
        assert limited.status_code == 429 and limited.headers["retry-after"] == "1"
        assert (await http.get("/health")).status_code == 200  # not an API route
        clock.tick(1.0)
        assert (await http.get("/api/v1/schema")).status_code == 200


def test_token_bucket_refills_at_its_rate(clock: FakeClock) -> None:
    bucket = TokenBucket(2.0, 2.0, clock)
    assert [bucket.take() for _ in range(3)] == [True, True, False]
    assert bucket.retry_after() == pytest.approx(0.5)
    clock.tick(0.5)
    assert bucket.take() and not bucket.take()


async def test_websocket_origin_check(hardened: SmallMesh) -> None:
    url = f"ws://127.0.0.1:{hardened.port}/ws/metrics"
    with pytest.raises(InvalidStatus) as caught:
        async with connect(url, origin="https://evil.example"):  # type: ignore[arg-type]
            pass
    assert caught.value.response.status_code == 403
    for origin in (f"http://127.0.0.1:{hardened.port}", "https://dash.example"):
        async with connect(url, origin=origin) as client:  # type: ignore[arg-type]
            assert json.loads(await client.recv())["type"] == "welcome"


async def test_websocket_clients_beyond_the_cap_are_closed_with_1013(hardened: SmallMesh) -> None:
    url = f"ws://127.0.0.1:{hardened.port}/ws/metrics"
    async with connect(url) as one, connect(url) as two:
        await one.recv()
        await two.recv()
        async with connect(url) as three:
            with pytest.raises(ConnectionClosed) as caught:
                await asyncio.wait_for(three.recv(), 10)
        assert caught.value.rcvd is not None and caught.value.rcvd.code == 1013
        assert "too many" in caught.value.rcvd.reason


@pytest.mark.hardened(ws_messages_per_second=1000.0)  # not what this test is about
async def test_websocket_bad_messages_keep_the_connection_big_ones_close_it(
    hardened: SmallMesh,
) -> None:
    url = f"ws://127.0.0.1:{hardened.port}/ws/metrics"
    async with connect(url) as client:
        await client.recv()
        for bad in ("[" * 60_000, "\ud7ff\x00", '{"type": "' + "x" * 30_000 + '"}', b"\x00\x01"):
            await client.send(bad)  # type: ignore[arg-type]
            reply = json.loads(await asyncio.wait_for(client.recv(), 10))
            assert reply["type"] == "error" and len(reply["message"]) < 600
        await client.send(json.dumps({"type": "ping"}))
        while json.loads(await asyncio.wait_for(client.recv(), 10))["type"] != "pong":
            pass
        await client.send("x" * 65_537)
        with pytest.raises(ConnectionClosed) as caught:
            while True:
                await asyncio.wait_for(client.recv(), 10)
        assert caught.value.rcvd is not None and caught.value.rcvd.code == 1009


async def test_websocket_message_flood_is_rate_limited(hardened: SmallMesh) -> None:
    url = f"ws://127.0.0.1:{hardened.port}/ws/metrics"
    async with connect(url) as client:
        await client.recv()
        for _ in range(100):
            await client.send(json.dumps({"type": "ping"}))
        await client.send(json.dumps({"type": "get_statistics"}))
        kinds: list[str] = []
        try:
            while True:
                message = json.loads(await asyncio.wait_for(client.recv(), 1.0))
                kinds.append(message.get("code") or message["type"])
        except TimeoutError:
            pass
        assert "rate_limited" in kinds
        assert kinds.count("pong") <= 12  # the burst (10) and what refilled meanwhile

        async def answered_again() -> bool:  # once the bucket refilled, pings are served
            await client.send(json.dumps({"type": "ping"}))
            with contextlib.suppress(TimeoutError):
                while True:
                    message = json.loads(await asyncio.wait_for(client.recv(), 0.3))
                    if message["type"] == "pong":
                        return True
            return False

        await eventually(answered_again, what="a pong once the rate limit refilled")


async def test_sse_resume_from_another_lifetime_is_told_as_a_gap(hardened: SmallMesh) -> None:
    async with (
        httpx.AsyncClient(base_url=hardened.url, timeout=10) as http,
        http.stream("GET", SSE_PATH, headers={"Last-Event-ID": "12345-40"}) as response,
    ):
        assert response.status_code == 200
        names: list[str] = []
        data: list[str] = []
        async for line in response.aiter_lines():
            if line.startswith("event: "):
                names.append(line[7:])
            elif line.startswith("data: "):
                data.append(line[6:])
            if names.count("snapshot") == 1 and line == "":
                break
        assert names[0] == "gap"
        gap = json.loads(data[0])
        assert gap["after"] == "12345-40" and gap["resumed_at"].endswith("-1")


async def test_serve_hardened_uses_the_settings() -> None:
    async with serve_hardened(GatewaySettings(port=0)) as port:
        assert port > 0
