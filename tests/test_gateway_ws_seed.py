"""WebSocket /ws/metrics speaks seed 002 and seed 003 as written, on a real mesh.

Seed 002's Python client runs as it is (its URL replaced) in a subprocess; every message of
seed 002's "Message Protocol" and seed 003's subscribe form is sent as written, with a real
`websockets` client. The JavaScript snippets run in Chromium (test_gateway_ws_browser.py).
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from gateway._ws_vocabulary import ALL_TYPES, HERO_FIELDS, SYSTEM_FIELDS
from mesh_common.figures import KIND_FIGURES, ROW_FIGURE_NAMES
from tests.eventually import eventually
from tests.gateway_mesh import Mesh
from tests.ws_client import receive, send, until

SERVICES = 15

# Seed 002, "Client Connection (Python)", as it is (blank lines without their trailing spaces);
# the test replaces the URI only, and runs it with `python -u` to read its prints as they come.
SEED_002_PYTHON_CLIENT = """\
import asyncio
import websockets
import json

async def connect():
    uri = "ws://localhost:8765"

    async with websockets.connect(uri) as websocket:
        # Subscribe to metrics
        await websocket.send(json.dumps({
            'type': 'subscribe',
            'metric_types': ['system', 'business']
        }))

        # Receive messages
        async for message in websocket:
            data = json.loads(message)
            print(f"Received: {data['type']}")

            if data['type'] == 'metric_update':
                print(f"Metric data: {data['data']}")

asyncio.run(connect())
"""


@pytest.fixture
async def ws(mesh: Mesh) -> AsyncIterator[ClientConnection]:
    """A client whose every snapshot comes as one message (batch size 1000)."""
    async with connect(mesh.ws_url) as client:
        assert (await receive(client))["type"] == "welcome"
        await send(client, {"type": "set_batching", "batch_size": 1000})
        await until(client, "batching_updated")
        yield client


async def snapshot_items(client: ClientConnection) -> list[dict[str, Any]]:
    """The items of the next snapshot (one message each with the fixture's batch size)."""
    while True:
        message = await receive(client)
        if message["type"] == "metric_batch":
            assert set(message) == {"type", "count", "data"}
            assert message["count"] == len(message["data"])
            return list(message["data"])
        if message["type"] == "metric_update" and "metric_type" in message["data"]:
            assert set(message) == {"type", "data"}
            return [message["data"]]


async def items_of(client: ClientConnection, metric_type: str) -> list[dict[str, Any]]:
    """The items of one type in the next snapshot."""
    return [item for item in await snapshot_items(client) if item["metric_type"] == metric_type]


def by_service(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {item["data"]["service_name"]: item["data"] for item in items}


async def test_seed_002s_python_client_runs_unchanged(mesh: Mesh) -> None:
    code = SEED_002_PYTHON_CLIENT.replace("ws://localhost:8765", mesh.ws_url)
    assert code != SEED_002_PYTHON_CLIENT
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-u", "-c", code, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        lines = [
            (await asyncio.wait_for(process.stdout.readline(), 10)).decode().rstrip()
            for _ in range(5)
        ]
    finally:
        process.kill()
        await process.wait()
    # One snapshot's system item and 15 business items exceed no batch: one metric_batch each.
    assert lines == [
        "Received: welcome",
        "Received: subscription_confirmed",
        "Received: metric_batch",
        "Received: metric_batch",
        "Received: metric_batch",
    ]


async def test_seed_002s_python_subscription_is_confirmed_and_fed(mesh: Mesh) -> None:
    async with connect(mesh.ws_url) as websocket:  # the snippet's messages, read in full
        await websocket.send(
            json.dumps({"type": "subscribe", "metric_types": ["system", "business"]})
        )
        assert (await receive(websocket))["type"] == "welcome"
        assert await receive(websocket) == {
            "type": "subscription_confirmed",
            "metric_types": ["system", "business"],
            "subscriptions": ["business", "system"],
            "ignored": [],
        }
        batch = await until(websocket, "metric_batch")
    assert batch["count"] == 1 + SERVICES
    kinds = [item["metric_type"] for item in batch["data"]]
    assert kinds == ["system"] + ["business"] * SERVICES
    for item in batch["data"]:
        assert set(item) == {"metric_type", "timestamp", "data", "sequence"}
        assert item["timestamp"].endswith("Z")


@pytest.mark.parametrize(
    ("message", "reply"),
    [
        (
            {"type": "subscribe", "metric_types": ["system", "agent", "business"]},
            {
                "type": "subscription_confirmed",
                "metric_types": ["system", "agent", "business"],
                "subscriptions": ["agent", "business", "system"],
                "ignored": [],
            },
        ),
        (
            {"type": "unsubscribe", "metric_types": ["hero"]},
            {
                "type": "unsubscription_confirmed",
                "metric_types": ["hero"],
                "subscriptions": [],
                "ignored": [],
            },
        ),
        (
            {
                "type": "set_filters",
                "filters": {
                    "agent_ids": ["agent_1", "agent_2"],
                    "fields": ["throughput_tps", "error_rate"],
                },
            },
            {
                "type": "filters_updated",
                "filters": {
                    "agent_ids": ["agent_1", "agent_2"],
                    "fields": ["throughput_tps", "error_rate"],
                },
                "applied": {
                    "service_names": [],
                    "service_types": [],
                    "fields": ["throughput_tps", "error_rate"],
                },
                "ignored": [
                    {"agent_id": "agent_1", "reason": "no such service; known: ..."},
                    {"agent_id": "agent_2", "reason": "no such service; known: ..."},
                ],
            },
        ),
        (
            {"type": "set_update_interval", "interval_seconds": 2.0},
            {"type": "update_interval_set", "interval_seconds": 2.0},
        ),
        ({"type": "ping"}, {"type": "pong", "timestamp": "..."}),
        (
            {"type": "set_filters", "filters": {"agent_ids": ["agent_1", "agent_2"]}},
            {
                "type": "filters_updated",
                "filters": {"agent_ids": ["agent_1", "agent_2"]},
                "applied": {"service_names": [], "service_types": [], "fields": []},
                "ignored": [
                    {"agent_id": "agent_1", "reason": "no such service; known: ..."},
                    {"agent_id": "agent_2", "reason": "no such service; known: ..."},
                ],
            },
        ),
        (
            {
                "type": "set_filters",
                "filters": {"fields": ["throughput_tps", "error_rate", "cpu_utilization"]},
            },
            {
                "type": "filters_updated",
                "filters": {"fields": ["throughput_tps", "error_rate", "cpu_utilization"]},
                "applied": {
                    "service_names": [],
                    "service_types": [],
                    "fields": ["throughput_tps", "error_rate"],
                },
                "ignored": [
                    {
                        "field": "cpu_utilization",
                        "reason": "no such figure in the mesh: cpu_usage_percent is a "
                        "service's own process CPU, in % of one core",
                    }
                ],
            },
        ),
        (
            {"type": "subscribe", "metric_types": ["all"]},
            {
                "type": "subscription_confirmed",
                "metric_types": ["all"],
                "subscriptions": sorted(ALL_TYPES),
                "ignored": [],
            },
        ),
        (
            {"type": "subscribe", "data": {"subscription": "metrics"}},
            {
                "type": "subscription_confirmed",
                "metric_types": ["metrics"],
                "subscription": "metrics",
                "subscriptions": ["metrics"],
                "ignored": [],
            },
        ),
        (
            {"type": "subscribe", "data": {"subscription": "alerts"}},
            {
                "type": "subscription_confirmed",
                "metric_types": ["alerts"],
                "subscription": "alerts",
                "subscriptions": ["alerts"],
                "ignored": [],
            },
        ),
        (
            {"type": "get_statistics"},
            {
                "type": "statistics",
                "connected_clients": 1,
                "total_messages_sent": "...",
                "uptime_seconds": "...",
                "client": "...",
                "upstream": "...",
            },
        ),
    ],
    ids=lambda value: json.dumps(value)[:60],
)
async def test_every_seed_message_gets_its_answer(
    mesh: Mesh, message: dict[str, Any], reply: dict[str, Any]
) -> None:
    async with connect(mesh.ws_url) as client:
        await receive(client)  # welcome
        await send(client, message)
        answer = await until(client, reply["type"])
    assert answer == _with_elisions(answer, reply)


def _with_elisions(answer: dict[str, Any], reply: dict[str, Any]) -> dict[str, Any]:
    """`reply` with its "..." parts taken from `answer`: a whole value, or a reason's tail."""
    merged = {key: answer.get(key) if value == "..." else value for key, value in reply.items()}
    for want, got in zip(merged.get("ignored", []), answer.get("ignored", []), strict=False):
        reason = want["reason"]
        if reason.endswith("...") and got["reason"].startswith(reason[:-3]):
            want["reason"] = got["reason"]
    return merged


async def test_agent_items_are_the_rows_and_service_is_their_synonym(
    mesh: Mesh, ws: ClientConnection
) -> None:
    mesh.tracker("weather-api").record(n=12)
    await send(ws, {"type": "subscribe", "metric_types": ["agent"]})
    await until(ws, "subscription_confirmed")

    async def counted() -> dict[str, dict[str, Any]] | None:
        rows = by_service(await items_of(ws, "agent"))
        return rows if rows["weather-api"]["total_events"] == 12 else None

    rows = await eventually(counted, what="weather-api's 12 events in its agent item")
    assert len(rows) == SERVICES
    assert all(list(row) == list(ROW_FIGURE_NAMES) for row in rows.values())
    # `service` names the same subscription: its items carry that name, never twice.
    await send(ws, {"type": "subscribe", "metric_types": ["service"]})
    confirmed = await until(ws, "subscription_confirmed")
    assert confirmed["subscriptions"] == ["service"]
    items = await snapshot_items(ws)
    assert [item["metric_type"] for item in items] == ["service"] * SERVICES
    await send(ws, {"type": "unsubscribe", "metric_types": ["agent"]})
    assert (await until(ws, "unsubscription_confirmed"))["subscriptions"] == []


async def test_business_items_carry_each_services_kinds(mesh: Mesh, ws: ClientConnection) -> None:
    tracker = mesh.tracker("air-quality-service")
    for index in range(10):
        tracker.observe("fetch", 0.050, error=index < 2)
    tracker.record("parse", 5)
    await send(ws, {"type": "subscribe", "metric_types": ["business"]})

    async def with_kinds() -> dict[str, Any] | None:
        rows = by_service(await items_of(ws, "business"))
        item = rows["air-quality-service"]
        return rows if {kind["kind"] for kind in item["kinds"]} == {"fetch", "parse"} else None

    rows = await eventually(with_kinds, what="air-quality-service's kinds")
    assert len(rows) == SERVICES
    item = rows["air-quality-service"]
    assert set(item) == {"service_name", "service_type", "status", "kinds"}
    kinds = {kind["kind"]: kind for kind in item["kinds"]}
    assert list(kinds["fetch"]) == [figure.name for figure in KIND_FIGURES]
    assert (kinds["fetch"]["total_events"], kinds["fetch"]["total_errors"]) == (10, 2)
    assert kinds["fetch"]["error_rate"] == 0.2
    assert kinds["fetch"]["latency_p50_ms"] == pytest.approx(50.0, rel=0.03)
    assert kinds["parse"]["total_events"] == 5 and kinds["parse"]["latency_p50_ms"] is None
    assert rows["admin-api"]["kinds"] == []


async def test_system_and_hero_items_headline_the_fleet(mesh: Mesh, ws: ClientConnection) -> None:
    tracker = mesh.tracker("weather-api")
    for index in range(20):
        tracker.observe("fetch", 0.2, error=index < 5)
    await mesh.agents["calendar-service"].stop(0)
    await send(ws, {"type": "subscribe", "metric_types": ["system", "hero"]})

    async def settled() -> list[dict[str, Any]] | None:
        items = await snapshot_items(ws)
        hero = items[1]["data"]
        return items if hero["active_count"] == 14 and hero["error_rate"] else None

    system, hero = await eventually(settled, what="14 active services and weather-api's errors")
    assert [system["metric_type"], hero["metric_type"]] == ["system", "hero"]
    assert list(system["data"]) == list(SYSTEM_FIELDS)
    assert system["data"]["services_total"] == SERVICES
    assert list(hero["data"]) == list(HERO_FIELDS)
    assert hero["data"]["services_total"] == SERVICES
    assert hero["data"]["error_rate"] == 0.25
    assert hero["data"]["latency_p99_ms"] == pytest.approx(200.0, rel=0.03)
    assert hero["data"]["events_per_second"] == system["data"]["events_per_second"] > 0
    assert hero["data"]["alerts_firing"] == 0  # an aggregator without rules: none, known


async def test_filtered_system_and_hero_sum_up_the_kept_services_as_presentation_does(
    mesh: Mesh, ws: ClientConnection
) -> None:
    mesh.tracker("weather-api").record(n=30)
    mesh.tracker("admin-api").record(n=90)
    await send(ws, {"type": "set_filters", "filters": {"agent_ids": ["weather-api"]}})
    await until(ws, "filters_updated")
    await send(ws, {"type": "subscribe", "metric_types": ["system", "hero", "presentation"]})

    async def counted() -> list[dict[str, Any]] | None:
        items = await snapshot_items(ws)
        return items if items[0]["data"]["total_events"] == 30 else None

    system, hero, presentation = await eventually(counted, what="weather-api's 30 events")
    # Only weather-api's figures: admin-api's 90 events are not in them.
    assert system["data"]["active_count"] == hero["data"]["active_count"] == 1
    assert system["data"]["services_total"] == SERVICES  # the fleet's, as on REST
    body = presentation["data"]
    assert system["data"]["events_per_second"] == body["events_per_second"]
    weather = next(row for row in body["active_apis"] if row["service_name"] == "weather-api")
    assert hero["data"]["events_per_second"] == weather["events_per_second"] > 0
    assert system["data"]["total_events"] == body["total_events"] == 30


async def test_presentation_is_the_rest_body_of_the_clients_view(
    mesh: Mesh, ws: ClientConnection
) -> None:
    await send(
        ws,
        {
            "type": "set_filters",
            "filters": {"agent_ids": ["weather-api", "admin-api"], "fields": ["throughput_tps"]},
        },
    )
    await until(ws, "filters_updated")
    await send(ws, {"type": "subscribe", "metric_types": ["presentation"]})

    async def same_snapshot_as_rest() -> tuple[dict[str, Any], dict[str, Any]] | None:
        (item,) = await items_of(ws, "presentation")
        response = await mesh.http.get(
            "/api/v1/real-time-metrics",
            params={"services": "weather-api,admin-api", "fields": "events_per_second"},
        )
        rest = response.json()
        both_active = len(rest.get("active_apis", [])) == 2  # a first round may precede them
        return (item, rest) if rest["sequence"] == item["sequence"] and both_active else None

    item, rest = await eventually(same_snapshot_as_rest, what="an item and a REST body alike")
    body = item["data"]
    assert body.pop("snapshot_age_ms") >= 0 and rest.pop("snapshot_age_ms") >= 0
    assert body == rest
    assert {row["service_name"] for row in body["active_apis"]} == {"weather-api", "admin-api"}
    assert set(body["active_apis"][0]) == {"service_name", "status", "events_per_second"}


async def test_all_subscribes_to_every_seed_type(mesh: Mesh, ws: ClientConnection) -> None:
    await send(ws, {"type": "subscribe", "metric_types": ["all"]})
    confirmed = await until(ws, "subscription_confirmed")
    assert confirmed["subscriptions"] == sorted(ALL_TYPES)
    items = await snapshot_items(ws)
    kinds = [item["metric_type"] for item in items]
    assert kinds == [
        "system",
        *["agent"] * SERVICES,
        *["business"] * SERVICES,
        "hero",
        "presentation",
    ]
    await send(ws, {"type": "unsubscribe", "metric_types": ["all"]})
    assert (await until(ws, "unsubscription_confirmed"))["subscriptions"] == []


async def test_agent_ids_select_services_and_seed_field_names_are_read_back(
    mesh: Mesh, ws: ClientConnection
) -> None:
    tracker = mesh.tracker("sports-data")
    for index in range(40):
        tracker.observe("fetch", 0.010 if index % 2 else 0.030, error=index % 10 == 0)
    seed_fields = [
        "throughput_tps",
        "error_rate",
        "avg_response_time_ms",
        "p50_response_time_ms",
        "p95_response_time_ms",
        "p99_response_time_ms",
        "max_response_time_ms",
        "requests_total",
        "requests_failed",
    ]
    await send(
        ws,
        {
            "type": "set_filters",
            "filters": {"agent_ids": ["sports-data", "weather-api"], "fields": seed_fields},
        },
    )
    updated = await until(ws, "filters_updated")
    assert updated["applied"]["service_names"] == ["sports-data", "weather-api"]
    assert updated["applied"]["fields"] == seed_fields and updated["ignored"] == []
    await send(ws, {"type": "subscribe", "metric_types": ["system", "agent", "business"]})

    async def counted() -> list[dict[str, Any]] | None:
        items = await snapshot_items(ws)
        rows = by_service([item for item in items if item["metric_type"] == "agent"])
        return items if rows["sports-data"]["requests_total"] == 40 else None

    items = await eventually(counted, what="sports-data's 40 events")
    system = items[0]["data"]
    assert list(system) == [
        "throughput_tps",
        "error_rate",
        "p50_response_time_ms",
        "p95_response_time_ms",
        "p99_response_time_ms",
        "requests_total",
    ]  # the fleet has no mean, max or failed total
    rows = by_service([item for item in items if item["metric_type"] == "agent"])
    assert set(rows) == {"sports-data", "weather-api"}
    sports = rows["sports-data"]
    assert list(sports) == ["service_name", "status", *seed_fields]
    assert (sports["requests_total"], sports["requests_failed"]) == (40, 4)
    assert sports["error_rate"] == 0.1 and sports["throughput_tps"] > 0
    assert sports["avg_response_time_ms"] == pytest.approx(20.0, rel=0.001)
    assert sports["max_response_time_ms"] == pytest.approx(30.0, rel=0.001)
    assert sports["p95_response_time_ms"] == pytest.approx(30.0, rel=0.03)
    business = by_service([item for item in items if item["metric_type"] == "business"])
    (fetch,) = business["sports-data"]["kinds"]
    assert set(fetch) == {"kind", *seed_fields}
    assert fetch["requests_failed"] == 4


async def test_unknown_parts_are_ignored_with_reasons_and_the_rest_applies(
    ws: ClientConnection,
) -> None:
    await send(
        ws,
        {
            "type": "set_filters",
            "filters": {
                "agent_ids": ["weather-api", "agent_1"],
                "service_types": ["data", "quantum"],
                "fields": ["requests_total", "timeout_rate", "bogus"],
                "colour": "red",
            },
        },
    )
    updated = await until(ws, "filters_updated")
    assert updated["filters"] == {  # echoed as sent, the unknown filter included
        "agent_ids": ["weather-api", "agent_1"],
        "service_types": ["data", "quantum"],
        "fields": ["requests_total", "timeout_rate", "bogus"],
        "colour": "red",
    }
    assert updated["applied"] == {
        "service_names": ["weather-api"],
        "service_types": ["data"],
        "fields": ["requests_total"],
    }
    ignored = {next(iter(entry.items())): entry["reason"] for entry in updated["ignored"]}
    assert set(ignored) == {
        ("filter", "colour"),
        ("agent_id", "agent_1"),
        ("service_type", "quantum"),
        ("field", "timeout_rate"),
        ("field", "bogus"),
    }
    assert ignored["agent_id", "agent_1"].startswith("no such service; known: admin-api, ")
    assert "weather-api" in ignored["agent_id", "agent_1"]
    assert (
        ignored["service_type", "quantum"]
        == "no such service type; known: ai, analysis, core, data"
    )
    assert ignored["field", "timeout_rate"].startswith("no such figure in the mesh")
    assert ignored["field", "bogus"].startswith("unknown field; known: the row and total figures")
    assert "throughput_tps" in ignored["field", "bogus"]
    assert ignored["filter", "colour"].startswith("unknown filter; known: agent_ids, ")
    await send(ws, {"type": "subscribe", "metric_types": ["agent", "foo", "system"]})
    confirmed = await until(ws, "subscription_confirmed")
    assert confirmed["metric_types"] == ["agent", "foo", "system"]  # as asked
    assert confirmed["subscriptions"] == ["agent", "system"]  # what it now gets
    (entry,) = confirmed["ignored"]
    assert entry["metric_type"] == "foo"
    assert entry["reason"].startswith("unknown metric type; known: system, agent, business")
    items = await snapshot_items(ws)
    assert [item["metric_type"] for item in items] == ["system", "agent"]
    assert items[1]["data"]["service_name"] == "weather-api"
    assert set(items[1]["data"]) == {"service_name", "status", "requests_total"}
    # Every name unknown: the filter stays as it was, never an empty fleet.
    await send(ws, {"type": "set_filters", "filters": {"agent_ids": ["agent_1", "agent_2"]}})
    updated = await until(ws, "filters_updated")
    assert updated["applied"]["service_names"] == ["weather-api"]
    assert [entry["agent_id"] for entry in updated["ignored"]] == ["agent_1", "agent_2"]
    # An empty list clears a filter.
    await send(ws, {"type": "set_filters", "filters": {"agent_ids": [], "fields": []}})
    updated = await until(ws, "filters_updated")
    assert updated["applied"] == {"service_names": [], "service_types": ["data"], "fields": []}


async def test_the_ignored_list_is_bounded(ws: ClientConnection) -> None:
    asked = [f"type-{n}" * 50 for n in range(30)]
    await send(ws, {"type": "subscribe", "metric_types": asked})
    confirmed = await until(ws, "subscription_confirmed")
    assert confirmed["metric_types"] == asked and confirmed["subscriptions"] == []
    assert len(confirmed["ignored"]) == 10
    assert confirmed["ignored_more"] == 20
    assert all(len(entry["metric_type"]) < 260 for entry in confirmed["ignored"])


async def test_seed_003s_metrics_subscription_gets_data_metrics(
    mesh: Mesh, ws: ClientConnection
) -> None:
    mesh.tracker("weather-api").record(n=7)
    await send(ws, {"type": "subscribe", "data": {"subscription": "metrics"}})
    confirmed = await until(ws, "subscription_confirmed")
    assert (confirmed["metric_types"], confirmed["subscription"]) == (["metrics"], "metrics")

    async def counted() -> list[dict[str, Any]] | None:
        update = await until(ws, "metric_update")
        assert set(update["data"]) == {"metrics", "timestamp", "sequence"}
        metrics = update["data"]["metrics"]
        found = [
            metric
            for metric in metrics
            if metric["name"] == "total_events"
            and metric["labels"].get("service") == "weather-api"
            and metric["value"] == 7
        ]
        return metrics if found else None

    metrics = await eventually(counted, what="weather-api's total_events of 7")
    weather = {
        metric["name"]: metric
        for metric in metrics
        if metric["labels"].get("service") == "weather-api"
    }
    assert weather["total_events"] == {
        "name": "total_events",
        "type": "counter",
        "value": 7,
        "unit": "events",
        "labels": {"service": "weather-api", "service_type": "data", "status": "active"},
    }
    assert weather["events_per_second"]["type"] == "gauge"
    assert "latency_p50_ms" not in weather  # no timed event: no figure, not a 0
    fleet = {metric["name"]: metric for metric in metrics if not metric["labels"]}
    assert fleet["services_total"]["value"] == SERVICES
    # Filters apply: one service, seed names read back.
    await send(
        ws,
        {
            "type": "set_filters",
            "filters": {"agent_ids": ["weather-api"], "fields": ["requests_total"]},
        },
    )
    await until(ws, "filters_updated")

    async def filtered() -> list[dict[str, Any]] | None:
        update = await until(ws, "metric_update")
        metrics = update["data"]["metrics"]
        return metrics if len(metrics) == 2 else None

    fleet_total, weather_total = await eventually(filtered, what="the filtered metrics")
    assert (fleet_total["name"], fleet_total["labels"]) == ("requests_total", {})
    assert weather_total["labels"]["service"] == "weather-api" and weather_total["value"] == 7


async def test_seed_003s_unknown_subscription_is_ignored(ws: ClientConnection) -> None:
    await send(ws, {"type": "subscribe", "data": {"subscription": "logs"}})
    confirmed = await until(ws, "subscription_confirmed")
    assert confirmed["metric_types"] == [] and confirmed["subscription"] == "logs"
    assert confirmed["ignored"] == [
        {"subscription": "logs", "reason": "unknown subscription; known: metrics, alerts"}
    ]
    await send(ws, {"type": "unsubscribe", "data": {"subscription": "metrics"}})
    assert (await until(ws, "unsubscription_confirmed"))["metric_types"] == ["metrics"]
