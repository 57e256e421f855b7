"""WebSocket /ws/metrics: the protocol's mechanics (pacing, batching, errors) with `websockets`.

The seeds' own snippets and the vocabulary (metric types, filters, ignored parts) are in
test_gateway_ws_seed.py and, in Chromium, test_gateway_ws_browser.py.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosedError

import gateway._ws
from gateway import GatewaySettings
from tests.gateway_mesh import Mesh
from tests.hardened_gateway import serve_hardened
from tests.ports import free_port
from tests.ws_client import receive, send, until


@pytest.fixture
async def ws(mesh: Mesh) -> AsyncIterator[ClientConnection]:
    async with connect(mesh.ws_url) as client:
        welcome = await receive(client)
        assert welcome["type"] == "welcome"
        yield client


async def test_welcome_names_the_client_and_the_known_metric_types(mesh: Mesh) -> None:
    async with connect(mesh.ws_url) as one, connect(mesh.ws_url) as two:
        first, second = await receive(one), await receive(two)
    assert first["type"] == second["type"] == "welcome"
    assert first["client_id"] != second["client_id"]
    assert set(first["known_metric_types"]) == {
        *("system", "agent", "service", "business", "hero", "presentation"),
        *("alerts", "metrics", "all"),
    }
    assert first["message"] == "Connected to real-time metrics stream"
    assert first["timestamp"].endswith("Z")


async def test_nothing_is_pushed_before_a_subscription(ws: ClientConnection) -> None:
    with pytest.raises(TimeoutError):
        await receive(ws, timeout=0.6)  # three rounds pass without a message


async def test_subscribe_system_gets_confirmation_then_updates(ws: ClientConnection) -> None:
    await send(ws, {"type": "subscribe", "metric_types": ["system"]})
    assert await receive(ws) == {
        "type": "subscription_confirmed",
        "metric_types": ["system"],
        "subscriptions": ["system"],
        "ignored": [],
    }
    first = await until(ws, "metric_update")
    second = await until(ws, "metric_update")
    for update in (first, second):
        item = update["data"]
        assert item["metric_type"] == "system"
        assert item["data"]["services_total"] == 15
        assert item["data"]["active_count"] + item["data"]["inactive_apis"] == 15
    assert second["data"]["sequence"] > first["data"]["sequence"]


async def test_service_rows_come_as_a_batch_filtered_by_name_and_field(
    ws: ClientConnection,
) -> None:
    await send(
        ws,
        {
            "type": "set_filters",
            "filters": {
                "service_names": ["weather-api", "admin-api"],
                "fields": ["events_per_second"],
            },
        },
    )
    updated = await receive(ws)
    assert updated == {
        "type": "filters_updated",
        "filters": {"service_names": ["weather-api", "admin-api"], "fields": ["events_per_second"]},
        "applied": {
            "service_names": ["admin-api", "weather-api"],
            "service_types": [],
            "fields": ["events_per_second"],
        },
        "ignored": [],
    }
    await send(ws, {"type": "subscribe", "metric_types": ["service"]})
    await until(ws, "subscription_confirmed")
    batch = await until(ws, "metric_batch")
    assert batch["count"] == 2
    names = {item["data"]["service_name"] for item in batch["data"]}
    assert names == {"weather-api", "admin-api"}
    for item in batch["data"]:
        assert item["metric_type"] == "service"
        assert set(item["data"]) == {"service_name", "status", "events_per_second"}


async def test_service_rows_can_be_filtered_by_service_type(ws: ClientConnection) -> None:
    await send(ws, {"type": "set_filters", "filters": {"service_types": ["analysis", "ai"]}})
    assert (await until(ws, "filters_updated"))["applied"]["service_types"] == ["ai", "analysis"]
    await send(ws, {"type": "subscribe", "metric_types": ["service"]})
    batch = await until(ws, "metric_batch")
    names = {item["data"]["service_name"] for item in batch["data"]}
    assert names == {"energy-correlator", "ai-automation-service"}


async def test_batches_are_cut_by_size(ws: ClientConnection) -> None:
    await send(ws, {"type": "set_batching", "batch_size": 4})
    assert (await receive(ws))["batch_size"] == 4
    await send(ws, {"type": "subscribe", "metric_types": ["system", "service"]})
    confirmed = await until(ws, "subscription_confirmed")
    assert confirmed["subscriptions"] == ["service", "system"]
    counts = []
    sequence = None
    while sum(counts) < 16:  # one system item + 15 rows = one snapshot
        message = await receive(ws)
        items = message["data"] if message["type"] == "metric_batch" else [message["data"]]
        sequence = sequence or items[0]["sequence"]
        assert {item["sequence"] for item in items} == {sequence}
        counts.append(len(items))
    assert counts == [4, 4, 4, 4]


async def test_batch_timeout_merges_several_snapshots_into_one_batch(ws: ClientConnection) -> None:
    await send(ws, {"type": "set_batching", "batch_size": 100, "batch_timeout_seconds": 0.7})
    await until(ws, "batching_updated")
    await send(ws, {"type": "subscribe", "metric_types": ["system"]})
    await until(ws, "subscription_confirmed")
    batch = await until(ws, "metric_batch")
    sequences = [item["sequence"] for item in batch["data"]]
    assert batch["count"] == len(sequences) >= 2  # rounds are 0.2 s apart
    assert sequences == sorted(set(sequences))


async def test_update_interval_spaces_the_updates(ws: ClientConnection) -> None:
    await send(ws, {"type": "set_update_interval", "interval_seconds": 1.0})
    assert await receive(ws) == {"type": "update_interval_set", "interval_seconds": 1.0}
    await send(ws, {"type": "subscribe", "metric_types": ["system"]})
    await until(ws, "subscription_confirmed")
    first = (await until(ws, "metric_update"))["data"]["sequence"]
    arrived = time.monotonic()
    second = (await until(ws, "metric_update"))["data"]["sequence"]
    # Sent a second apart (the socket's delivery may shift each by a little), and the rounds
    # between them (every 0.2 s, fewer on a loaded machine) were skipped, not queued.
    assert time.monotonic() - arrived >= 0.8
    assert second - first >= 2


async def test_unsubscribe_stops_the_updates(ws: ClientConnection) -> None:
    await send(ws, {"type": "subscribe", "metric_types": ["system", "service"]})
    await until(ws, "subscription_confirmed")
    await send(ws, {"type": "unsubscribe", "metric_types": ["service", "system"]})
    confirmed = await until(ws, "unsubscription_confirmed")
    assert confirmed["metric_types"] == ["service", "system"]
    assert confirmed["subscriptions"] == []
    await send(ws, {"type": "ping"})
    assert (await until(ws, "pong"))["timestamp"].endswith("Z")
    with pytest.raises(TimeoutError):
        await receive(ws, timeout=0.6)


@pytest.mark.parametrize(
    "message",
    [
        "not json",
        "[1, 2]",
        {"no": "type"},
        {"type": "dance"},
        {"type": "subscribe"},
        {"type": "subscribe", "metric_types": "system"},
        {"type": "subscribe", "metric_types": ["system", 3]},
        {"type": "subscribe", "data": {"subscription": ["metrics"]}},
        {"type": "set_filters", "filters": ["agent_1"]},
        {"type": "set_filters", "filters": {"agent_ids": "agent_1"}},
        {"type": "set_filters", "filters": {"fields": [1, 2]}},
        {"type": "set_update_interval", "interval_seconds": -1},
        {"type": "set_update_interval", "interval_seconds": "fast"},
        {"type": "set_batching", "batch_size": 0},
    ],
)
async def test_a_malformed_message_gets_an_error_and_the_connection_stays(
    ws: ClientConnection, message: Any
) -> None:
    await send(ws, message)
    error = await receive(ws)
    assert error["type"] == "error"
    assert error["code"] == "invalid_message"
    assert error["message"]
    await send(ws, {"type": "ping"})
    assert (await receive(ws))["type"] == "pong"


async def test_statistics_count_what_was_sent(mesh: Mesh, ws: ClientConnection) -> None:
    await send(ws, {"type": "get_statistics"})
    first = await until(ws, "statistics")
    assert first["connected_clients"] == 1
    assert first["client"]["messages_sent"] == 1  # the welcome
    assert first["client"]["subscriptions"] == []
    assert first["upstream"]["state"] == "connected"
    await send(ws, {"type": "ping"})
    await until(ws, "pong")
    await send(ws, {"type": "get_statistics"})
    second = await until(ws, "statistics")
    # Seed 002's figures: the first statistics and the pong went out in between.
    assert second["total_messages_sent"] == first["total_messages_sent"] + 2
    assert second["client"]["messages_sent"] == 3
    assert isinstance(second["uptime_seconds"], float)
    assert second["uptime_seconds"] >= first["uptime_seconds"] > 0


async def test_aggregator_down_is_reported_and_updates_resume(
    mesh: Mesh, ws: ClientConnection
) -> None:
    await send(ws, {"type": "subscribe", "metric_types": ["system"]})
    await until(ws, "metric_update")
    await mesh.stop_aggregator()
    error = await until(ws, "error")
    assert error["code"] == "upstream_unavailable"
    assert str(mesh.aggregator_port) in error["message"]
    await mesh.start_aggregator()
    update = await until(ws, "metric_update")
    assert update["data"]["data"]["services_total"] == 15


async def test_a_pusher_that_fails_is_logged_and_closes_the_connection_at_once(
    mesh: Mesh, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The client is told (close 1011) without having to send anything; the log has why."""
    failure = RuntimeError("injected: the items cannot be built")

    def broken(*args: object) -> list[object]:
        raise failure

    monkeypatch.setattr(gateway._ws, "items_for", broken)
    async with connect(mesh.ws_url) as client:
        assert (await receive(client))["type"] == "welcome"
        await send(client, {"type": "subscribe", "metric_types": ["system"]})
        assert (await receive(client))["type"] == "subscription_confirmed"
        with pytest.raises(ConnectionClosedError) as closed:
            await receive(client)  # the next snapshot makes the pusher fail
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1011
    failures = [
        record
        for record in caplog.records
        if record.name == "gateway.ws" and record.exc_info is not None
    ]
    assert len(failures) == 1, caplog.text
    assert failures[0].exc_info is not None and failures[0].exc_info[1] is failure


async def test_the_gateway_as_run_keeps_no_compressor_per_websocket() -> None:
    """Per-message deflate is declined: its zlib state was half of what a client cost.

    (About 93 KB per client with it, 45 KB without, and twice the CPU: compressing every
    shared message once per client; `python -m bench ws_memory`.) The client offers it, as
    browsers do.
    """
    nobody = free_port()  # no aggregator: the welcome needs none
    settings = GatewaySettings(aggregator=f"127.0.0.1:{nobody}")
    async with (
        serve_hardened(settings) as port,
        connect(f"ws://127.0.0.1:{port}/ws/metrics", compression="deflate") as client,
    ):
        assert (await receive(client))["type"] == "welcome"
        assert client.protocol.extensions == []
        assert client.response is not None
        assert "Sec-WebSocket-Extensions" not in client.response.headers
