"""RequestCountMiddleware in a real FastAPI app served by real uvicorn on an ephemeral port."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, HTTPException, WebSocket
from websockets.asyncio.client import connect

from agent import EventTracker, RequestCountMiddleware, http_route_kind
from tests.clocks import FakeClock
from tests.eventually import eventually
from tests.ports import free_socket

SHORT = 10.0
WORK_SECONDS = 0.05
"""How long the timed endpoint works, on the tracker's fake clock."""


def build_app(lifespan_ran: list[str]) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        lifespan_ran.append("startup")
        yield

    app = FastAPI(lifespan=lifespan)

    @app.get("/items/{item_id}")
    async def read_item(item_id: int) -> dict[str, int]:
        return {"item_id": item_id}

    @app.post("/items")
    async def create_item() -> dict[str, bool]:
        return {"created": True}

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("the endpoint failed")

    @app.get("/unavailable")
    async def unavailable() -> None:
        raise HTTPException(503, "try later")

    @app.websocket("/ws")
    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text(await websocket.receive_text())
        await websocket.close()

    return app


@asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[str]:
    """Serve `app` with uvicorn on a free port; on exit, shut down and wait for every request."""
    sock = free_socket()
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, lifespan="on", log_level="critical", ws="websockets-sansio")
    )
    task = asyncio.create_task(server.serve(sockets=[sock]))

    def started() -> bool:
        assert not task.done(), "uvicorn stopped while starting"
        return server.started

    try:
        await eventually(started, timeout=SHORT, what="uvicorn to start")
        yield f"127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, SHORT)
        sock.close()


async def send_requests(address: str) -> None:
    async with httpx.AsyncClient(base_url=f"http://{address}", timeout=SHORT) as client:
        for item_id in (1, 2, 3):
            assert (await client.get(f"/items/{item_id}")).status_code == 200
        for _ in range(2):
            assert (await client.post("/items")).status_code == 200
        assert (await client.get("/boom")).status_code == 500
        assert (await client.get("/no/such/page")).status_code == 404
        assert (await client.delete("/items")).status_code == 405


def kind_totals(tracker: EventTracker) -> dict[str, int]:
    return {row.kind: row.total_events for row in tracker.read().kinds if row.total_events}


def kind_errors(tracker: EventTracker) -> dict[str, int]:
    return {row.kind: row.total_errors for row in tracker.read().kinds if row.total_errors}


async def test_every_request_counts_once_including_errors_and_not_found() -> None:
    tracker = EventTracker("web")
    lifespan_ran: list[str] = []
    app = build_app(lifespan_ran)
    app.add_middleware(RequestCountMiddleware, tracker=tracker)

    async with serving(app) as address:
        await send_requests(address)

    assert lifespan_ran == ["startup"]  # lifespan passed through the middleware
    assert kind_totals(tracker) == {"http_request": 8}


async def test_5xx_and_unhandled_exceptions_fail_while_4xx_do_not() -> None:
    tracker = EventTracker("web")
    app = build_app([])
    app.add_middleware(RequestCountMiddleware, tracker=tracker, kind=http_route_kind)

    async with serving(app) as address:
        await send_requests(address)
        async with httpx.AsyncClient(base_url=f"http://{address}", timeout=SHORT) as client:
            assert (await client.get("/unavailable")).status_code == 503

    # The unhandled exception (500) and the 503 fail; 404 and 405 are the client's doing.
    assert kind_errors(tracker) == {"GET /boom": 1, "GET /unavailable": 1}


async def test_a_classifier_decides_which_statuses_fail() -> None:
    tracker = EventTracker("web")
    app = build_app([])
    app.add_middleware(RequestCountMiddleware, tracker=tracker, failed=lambda status: status >= 400)

    async with serving(app) as address:
        await send_requests(address)

    assert kind_errors(tracker) == {"http_request": 3}  # the 500, the 404 and the 405


async def test_each_request_is_timed(clock: FakeClock) -> None:
    tracker = EventTracker("web", clock=clock)
    app = build_app([])

    @app.get("/slow")
    async def slow() -> dict[str, bool]:
        clock.tick(WORK_SECONDS)  # the endpoint's work takes 50 ms on the tracker's clock
        return {"slow": True}

    app.add_middleware(RequestCountMiddleware, tracker=tracker, kind=http_route_kind)

    async with (
        serving(app) as address,
        httpx.AsyncClient(base_url=f"http://{address}", timeout=SHORT) as client,
    ):
        for _ in range(3):
            assert (await client.get("/slow")).status_code == 200

    (kind,) = tracker.read(["GET /slow"]).kinds
    assert kind.latency is not None and kind.latency.count == 3
    # Each request lasted the endpoint's 50 ms, no more and no less: the middleware timed it.
    assert kind.latency.max_seconds == pytest.approx(WORK_SECONDS)
    assert kind.latency.sum_seconds == pytest.approx(3 * WORK_SECONDS)


async def test_kinds_per_route_template_and_method() -> None:
    tracker = EventTracker("web")
    app = build_app([])
    app.add_middleware(RequestCountMiddleware, tracker=tracker, kind=http_route_kind)

    async with serving(app) as address:
        await send_requests(address)

    assert kind_totals(tracker) == {
        "GET /items/{item_id}": 3,
        "POST /items": 2,
        "GET /boom": 1,
        "GET (no route)": 1,
        "DELETE /items": 1,
    }


async def test_a_function_of_the_scope_chooses_the_kind() -> None:
    tracker = EventTracker("web")
    app = build_app([])
    by_method: Callable[[Any], str] = lambda scope: f"http_{scope['method'].lower()}"  # noqa: E731
    app.add_middleware(RequestCountMiddleware, tracker=tracker, kind=by_method)

    async with serving(app) as address:
        await send_requests(address)

    assert kind_totals(tracker) == {"http_get": 5, "http_post": 2, "http_delete": 1}


async def exchange_one_websocket_message(address: str) -> None:
    async with connect(f"ws://{address}/ws", open_timeout=SHORT) as websocket:
        await websocket.send("ping")
        assert await asyncio.wait_for(websocket.recv(), SHORT) == "ping"


async def test_websockets_pass_through_uncounted_by_default() -> None:
    tracker = EventTracker("web")
    app = build_app([])
    app.add_middleware(RequestCountMiddleware, tracker=tracker)

    async with serving(app) as address:
        await exchange_one_websocket_message(address)
        async with httpx.AsyncClient(base_url=f"http://{address}") as client:
            assert (await client.get("/items/7")).status_code == 200

    assert kind_totals(tracker) == {"http_request": 1}


async def test_websocket_sessions_count_under_their_own_kind_when_asked() -> None:
    tracker = EventTracker("web")
    app = build_app([])
    app.add_middleware(RequestCountMiddleware, tracker=tracker, websocket_kind="ws_session")

    async with serving(app) as address:
        for _ in range(2):
            await exchange_one_websocket_message(address)

    assert kind_totals(tracker) == {"ws_session": 2}


def test_a_kind_that_is_neither_a_name_nor_a_function_is_refused() -> None:
    with pytest.raises(TypeError, match="kind must be a kind name or a function"):
        RequestCountMiddleware(build_app([]), EventTracker("web"), kind=42)  # type: ignore[arg-type]


def test_an_empty_kind_is_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="non-empty"):
        RequestCountMiddleware(build_app([]), EventTracker("web"), kind="")


def test_route_kind_keeps_clients_from_inventing_kinds() -> None:
    # uvicorn's parser refuses such methods before the app sees them; other servers may not.
    assert http_route_kind({"type": "http", "method": "BREW", "path": "/pot"}) == "OTHER (no route)"
    assert http_route_kind({"type": "http", "method": "GET", "path": "/x/1"}) == "GET (no route)"
