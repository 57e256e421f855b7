"""Seed 004's metrics-service endpoints through the real gateway and aggregator.

Events pushed with POST /metrics/events make a pushed row: active with its total and rate
while it pushes, inactive with its last figures once its staleness window has passed (the
aggregator's clocks are fake and rounds run when the test asks: `tests.ingest_mesh`).
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.ingest_mesh import AGENT_NAME, IngestMesh, ingest_mesh

SEED_EVENT = {
    "event_type": "user_login",
    "user_id": 1,
    "metadata": {"browser": "chrome", "ip": "192.168.1.1"},
}
"""Seed 004's own body, as its document shows it."""
DEFAULT_SERVICE = "metrics-service"


def _row(body: dict[str, Any], name: str, where: str) -> dict[str, Any]:
    rows = [row for row in body[where] if row["service_name"] == name]
    assert len(rows) == 1, body
    return rows[0]


async def _push_events(mesh: IngestMesh, count: int, every: float) -> None:
    for _ in range(count):
        response = await mesh.http.post("/metrics/events", json=SEED_EVENT)
        assert response.status_code == 201, response.text
        assert response.json() == {
            "accepted": 1,
            "service_name": None,
            "event_type": "user_login",
            "count": 1,
        }
        mesh.tick(every)


async def test_seed_004_events_make_an_active_row_then_an_inactive_one_with_its_figures() -> None:
    async with ingest_mesh() as mesh:
        await _push_events(mesh, 3, every=5.0)  # at 0, 5 and 10 s; the round at 15 s
        await mesh.round()
        active = _row(await mesh.metrics(), DEFAULT_SERVICE, "active_apis")
        mesh.tick(15.0)  # 20 s after the last push: past 3 x its 5 s interval
        await mesh.round()
        after = await mesh.metrics()
    assert active["status"] == "active" and active["service_type"] == "pushed"
    assert (
        active["port"] is None and active["pushed"] is True and active["cpu_usage_percent"] is None
    )
    assert active["total_events"] == 3
    assert active["events_per_second"] == pytest.approx(3 / 15)
    assert active["kinds"][0]["kind"] == "user_login"
    inactive = _row(after, DEFAULT_SERVICE, "inactive_services")
    assert inactive["status"] == "inactive"
    assert inactive["total_events"] == 3  # its last figures, not zeros
    assert inactive["events_per_second"] == pytest.approx(3 / 15)
    assert inactive["seconds_since_seen"] == pytest.approx(15.0)
    assert "staleness window is 15 s" in inactive["error_message"]
    assert after["inactive_apis"] == 1 and after["total_events"] == 0


async def test_an_event_counts_for_the_service_it_names() -> None:
    async with ingest_mesh() as mesh:
        response = await mesh.http.post(
            "/metrics/events",
            json={**SEED_EVENT, "service_name": "billing", "error": True, "duration_ms": 12.5},
        )
        await mesh.round()
        body = await mesh.metrics()
    assert response.status_code == 201 and response.json()["service_name"] == "billing"
    row = _row(body, "billing", "active_apis")
    assert row["total_events"] == 1 and row["total_errors"] == 1
    assert row["latency_max_ms"] == pytest.approx(12.5, rel=0.02)


async def test_a_bad_event_is_a_422_naming_why() -> None:
    async with ingest_mesh() as mesh:
        missing = await mesh.http.post("/metrics/events", json={"user_id": 1})
        too_long = await mesh.http.post("/metrics/events", json={"event_type": "x" * 2000})
        polled = await mesh.http.post(
            "/metrics/events", json={**SEED_EVENT, "service_name": AGENT_NAME}
        )
    assert missing.status_code == 422 and missing.json()["detail"].startswith("event_type:")
    assert too_long.status_code == 422
    assert too_long.json()["limit"] == "max_text_length"
    assert polled.status_code == 422  # a polled service's name cannot be pushed to


async def test_summary_health_dashboard_and_prometheus_answer_in_one_call() -> None:
    async with ingest_mesh() as mesh:
        await _push_events(mesh, 2, every=1.0)
        await mesh.round()
        summary = (await mesh.http.get("/metrics/summary")).json()
        health = (await mesh.http.get("/metrics/services/health")).json()
        dashboard = (await mesh.http.get("/metrics/dashboard")).json()
        rest = (await mesh.http.get("/api/v1/real-time-metrics")).json()
        page = await mesh.http.get("/metrics/prometheus")
        own = await mesh.http.get("/metrics")
    assert summary["services"] == {
        "total": 2, "active": 2, "inactive": 0, "error": 0, "pushed": 1, "polled": 1,
    }  # fmt: skip
    assert summary["total_events"] == 2
    assert summary["top_services"][0]["service_name"] == DEFAULT_SERVICE
    assert {(s["service_name"], s["source"], s["status"]) for s in health["services"]} == {
        (DEFAULT_SERVICE, "pushed", "active"),
        (AGENT_NAME, "polled", "active"),
    }
    assert health["healthy"] == 2 and health["unhealthy"] == 0
    for moment in ("snapshot_age_ms", "collection_time_ms"):
        dashboard.pop(moment), rest.pop(moment)
    assert dashboard == rest
    assert page.status_code == 200
    assert page.headers["content-type"] == own.headers["content-type"]
    assert 'metricsmesh_service_up{service="metrics-service",type="pushed"} 1.0' in page.text


async def test_the_new_paths_are_documented_with_their_errors() -> None:
    async with ingest_mesh() as mesh:
        paths = (await mesh.http.get("/openapi.json")).json()["paths"]
    for path, method, statuses in (
        ("/api/v1/metrics/ingest", "post", {"201", "401", "413", "422", "429", "503"}),
        ("/api/v1/metrics/batch", "post", {"201", "401", "413", "422", "429", "503"}),
        ("/metrics/events", "post", {"201", "401", "413", "422", "503"}),
        ("/metrics/summary", "get", {"200", "503"}),
        ("/metrics/dashboard", "get", {"200", "503"}),
        ("/metrics/services/health", "get", {"200", "503"}),
        ("/metrics/prometheus", "get", {"200"}),
    ):
        operation = paths[path][method]
        assert statuses <= set(operation["responses"]), (path, operation["responses"])
        if method == "post":
            assert "examples" in operation["requestBody"]["content"]["application/json"]
