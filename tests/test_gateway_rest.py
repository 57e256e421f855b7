"""GET /api/v1/real-time-metrics and the health endpoints, against a real mesh."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from metricsmesh.v1 import snapshot_pb2

from gateway import GatewaySettings, RealTimeMetrics, RealTimeMetricsError, create_app
from gateway._views import SnapshotEntry
from mesh_common.clocks import Clocks
from tests.clocks import FakeClock
from tests.eventually import eventually
from tests.gateway_mesh import Mesh, running_mesh

pytestmark = pytest.mark.mesh(wait="nothing")

# Story 23.2's example, verbatim: the served body must have every one of these fields, with
# a JSON value of the same kind.
STORY_EXAMPLE: dict[str, Any] = {
    "events_per_second": 45.2,
    "events_per_hour": 162720,
    "active_apis": [
        {
            "service_name": "websocket-ingestion",
            "port": 8001,
            "service_type": "core",
            "status": "active",
            "events_per_second": 25.5,
            "events_per_hour": 91800,
            "total_events": 2500000,
            "uptime_seconds": 86400,
            "last_activity": "2025-01-17T10:30:00Z",
            "error_message": None,
        }
    ],
    "inactive_apis": 3,
    "data_sources_active": ["weather", "carbon", "electricity"],
    "timestamp": "2025-01-17T10:30:00Z",
    "collection_time_ms": 245,
}
STORY_ERROR_KEYS = {
    "events_per_second",
    "events_per_hour",
    "active_apis",
    "inactive_apis",
    "data_sources_active",
    "timestamp",
    "error",
    "collection_time_ms",
}


def kind(value: Any) -> str:
    """The JSON kind of a value; int and float are both numbers."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__


def parse_iso(text: str) -> datetime:
    """An ISO 8601 UTC timestamp as the story writes it (with a Z)."""
    assert text.endswith("Z"), text
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def test_body_has_every_field_of_the_story_with_the_same_json_kinds(mesh: Mesh) -> None:
    mesh.tracker("weather-api").record(n=3)
    body = await mesh.metrics_all_active()
    for key, example in STORY_EXAMPLE.items():
        assert key in body, key
        if example is not None and key != "active_apis":
            assert kind(body[key]) == kind(example), key
    row_example = STORY_EXAMPLE["active_apis"][0]
    assert len(body["active_apis"]) == 15
    for row in body["active_apis"]:
        assert set(row_example) <= set(row)
        for key, example in row_example.items():
            if example is not None and row[key] is not None:
                assert kind(row[key]) == kind(example), key
        assert row["status"] == "active"
        assert row["error_message"] is None
    assert body["inactive_apis"] == 0
    assert body["inactive_services"] == []
    parse_iso(body["timestamp"])
    RealTimeMetrics.model_validate(body)


async def test_rows_carry_registry_facts_and_the_time_of_the_last_event(mesh: Mesh) -> None:
    before = datetime.now(UTC)
    mesh.tracker("weather-api").record(n=5)

    async def recorded() -> dict[str, Any] | None:
        body = await mesh.metrics_all_active()  # a loaded machine may miss a deadline
        rows = {row["service_name"]: row for row in body["active_apis"]}
        return body if rows["weather-api"]["total_events"] == 5 else None

    body = await eventually(recorded, what="weather-api to show 5 events")
    rows = {row["service_name"]: row for row in body["active_apis"]}
    weather = rows["weather-api"]
    assert (weather["port"], weather["service_type"]) == (8009, "data")
    assert weather["events_per_second"] > 0
    assert weather["events_per_hour"] == pytest.approx(weather["events_per_second"] * 3600, 1e-3)
    last = parse_iso(weather["last_activity"])
    assert before.replace(microsecond=0) <= last <= datetime.now(UTC)
    # A service that never recorded an event has no last activity (not "now").
    assert rows["admin-api"]["last_activity"] is None
    assert body["events_per_second"] == pytest.approx(
        sum(row["events_per_second"] for row in body["active_apis"]), abs=1e-3
    )
    assert set(body["data_sources_active"]) == {
        "sports",
        "weather",
        "carbon",
        "electricity",
        "air-quality",
        "calendar",
        "smart-meter",
    }


async def test_a_stopped_agent_moves_from_active_apis_to_the_inactive_count(mesh: Mesh) -> None:
    await mesh.metrics()
    await mesh.agents["calendar-service"].stop(0)

    async def calendar_down() -> dict[str, Any] | None:
        body = await mesh.metrics()
        down = [row["service_name"] for row in body["inactive_services"]]
        return body if down == ["calendar-service"] else None

    body = await eventually(calendar_down, what="calendar-service to turn inactive")
    assert "calendar-service" not in {row["service_name"] for row in body["active_apis"]}
    assert len(body["active_apis"]) == 14
    (row,) = body["inactive_services"]
    assert row["service_name"] == "calendar-service"
    assert row["status"] == "inactive"
    assert row["error_message"]
    assert "calendar" not in body["data_sources_active"]
    RealTimeMetrics.model_validate(body)


async def test_aggregator_down_gives_the_story_error_shape_then_recovers(mesh: Mesh) -> None:
    served = await mesh.metrics()
    await mesh.stop_aggregator()

    async def unavailable() -> dict[str, Any] | None:
        response = await mesh.http.get("/api/v1/real-time-metrics")
        return response.json() if response.status_code == 503 else None

    body = await eventually(unavailable, what="a 503")
    assert set(body) >= STORY_ERROR_KEYS
    assert body["events_per_second"] == 0
    assert body["events_per_hour"] == 0
    assert body["active_apis"] == []
    assert body["data_sources_active"] == []
    assert body["inactive_apis"] == 15
    assert mesh.aggregator_port and str(mesh.aggregator_port) in body["error"]
    assert body["sequence"] >= served["sequence"]
    parse_iso(body["timestamp"])
    RealTimeMetricsError.model_validate(body)
    ready = await mesh.http.get("/health/ready")
    assert ready.status_code == 503
    assert str(mesh.aggregator_port) in ready.json()["reason"]
    assert (await mesh.http.get("/health/live")).status_code == 200
    detailed = (await mesh.http.get("/health/detailed")).json()
    assert detailed["status"] == "degraded"
    assert detailed["upstream"]["state"] == "disconnected"
    assert detailed["snapshot"]["fresh"] is False

    await mesh.start_aggregator()
    recovered = await mesh.metrics_all_active()
    assert len(recovered["active_apis"]) == 15
    assert (await mesh.http.get("/health/ready")).status_code == 200


async def test_rest_takes_the_stream_s_services_types_and_fields(mesh: Mesh) -> None:
    mesh.tracker("weather-api").record(n=30)
    mesh.tracker("admin-api").record(n=12)
    whole = await mesh.metrics_all_active()

    async def counted() -> dict[str, Any] | None:
        response = await mesh.http.get(
            "/api/v1/real-time-metrics",
            params={"services": "weather-api,admin-api", "fields": "total_events"},
        )
        body: dict[str, Any] = response.json()
        totals = {row["service_name"]: row["total_events"] for row in body["active_apis"]}
        return body if totals == {"weather-api": 30, "admin-api": 12} else None

    body = await eventually(counted, what="the two services' events")
    assert set(body) == set(whole)  # the same shape, filtered
    assert {key for row in body["active_apis"] for key in row} == {
        "service_name",
        "status",
        "total_events",
    }
    assert body["total_events"] == 42 and body["inactive_apis"] == 0
    data = (await mesh.http.get("/api/v1/real-time-metrics", params={"types": "data"})).json()
    assert {row["service_type"] for row in data["active_apis"]} == {"data"}
    assert len(data["active_apis"]) == 7


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"services": "nope"}, "unknown service name 'nope'"),
        ({"types": "nosuch"}, "unknown service type 'nosuch'"),
        ({"fields": "colour"}, "unknown field(s) colour"),
    ],
)
async def test_an_unknown_filter_value_is_a_422_naming_it(
    mesh: Mesh, params: dict[str, str], message: str
) -> None:
    await mesh.metrics()
    response = await mesh.http.get("/api/v1/real-time-metrics", params=params)
    assert response.status_code == 422
    assert message in response.json()["detail"]


async def test_requests_are_served_from_the_latest_snapshot(mesh: Mesh) -> None:
    first = await mesh.metrics()
    bodies = [(await mesh.http.get("/api/v1/real-time-metrics")).json() for _ in range(20)]
    # Twenty requests inside a few rounds see at most a few snapshots, never one per request.
    sequences = {body["sequence"] for body in bodies}
    assert len(sequences) < 20
    assert min(sequences) >= first["sequence"]


async def test_head_and_openapi_document_the_shape(mesh: Mesh) -> None:
    await mesh.metrics()
    head = await mesh.http.head("/api/v1/real-time-metrics")
    assert head.status_code == 200
    assert head.content == b""
    schema = (await mesh.http.get("/openapi.json")).json()
    operation = schema["paths"]["/api/v1/real-time-metrics"]["get"]
    ok = operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    assert ok.endswith("/RealTimeMetrics")
    error = operation["responses"]["503"]["content"]["application/json"]["schema"]["$ref"]
    assert error.endswith("/RealTimeMetricsError")
    row = schema["components"]["schemas"]["ServiceMetrics"]["properties"]
    assert set(STORY_EXAMPLE["active_apis"][0]) <= set(row)
    assert (await mesh.http.get("/docs")).status_code == 200


async def test_health_endpoints(mesh: Mesh) -> None:
    await mesh.metrics_all_active()
    assert (await mesh.http.get("/health")).json() == {"status": "ok"}
    assert (await mesh.http.get("/health/live")).json() == {"status": "ok"}
    ready = await mesh.http.get("/health/ready")
    assert ready.status_code == 200
    assert ready.json()["status"] == "ready"
    detailed = (await mesh.http.get("/health/detailed")).json()
    assert detailed["status"] == "ok"
    assert detailed["upstream"]["state"] == "connected"
    assert detailed["upstream"]["target"].endswith(f":{mesh.aggregator_port}")
    assert detailed["snapshot"]["services_total"] == 15
    assert set(detailed["snapshot"]["services"]) == {e.name for e in mesh.registry}


async def test_cors_origins_are_configurable() -> None:
    async with running_mesh(cors_origins=("http://dash.example",)) as mesh:
        await mesh.metrics()
        allowed = await mesh.http.get(
            "/api/v1/real-time-metrics", headers={"Origin": "http://dash.example"}
        )
        assert allowed.headers["access-control-allow-origin"] == "http://dash.example"
        other = await mesh.http.get(
            "/api/v1/real-time-metrics", headers={"Origin": "http://elsewhere.example"}
        )
        assert "access-control-allow-origin" not in other.headers


async def test_dashboard_page_and_assets_are_served(mesh: Mesh) -> None:
    page = await mesh.http.get("/")
    assert page.status_code == 200
    assert "<title>metrics-mesh</title>" in page.text
    for asset in ("dashboard.js", "format.js", "trends.js", "dashboard.css"):
        response = await mesh.http.get(f"/static/{asset}")
        assert response.status_code == 200, asset
        # no CDN, nothing fetched from elsewhere
        assert "http" not in response.text.replace("http://www.w3.org/2000/svg", ""), asset


async def test_each_answer_tells_the_snapshot_age_at_its_moment(clock: FakeClock) -> None:
    # The fast path serializes the body again only when snapshot_age_ms changes.
    app = create_app(GatewaySettings(), clocks=Clocks(monotonic=clock, wall=time.time))
    snapshot = snapshot_pb2.Snapshot(epoch=7, sequence=3, services_total=1)
    snapshot.services.add(service_name="weather-api", status=snapshot_pb2.SERVICE_STATUS_ACTIVE)
    app.state.gateway.hub.latest = SnapshotEntry(snapshot, received_at=clock())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as http:
        ages = []
        for step in (0.0, 0.0, 0.0004, 0.0002, 0.25, 0.0):
            clock.tick(step)
            ages.append((await http.get("/api/v1/real-time-metrics")).json()["snapshot_age_ms"])
    assert ages == [0, 0, 0, 1, 251, 251]
