"""Seed 003's ingestion through the real gateway and aggregator: curl lines, bounds, /metrics, WS.

Every test runs one agent, an aggregator on fake clocks (rounds on demand) and the gateway on
uvicorn, all on ephemeral ports (`tests.ingest_mesh`); clients are real (curl, httpx,
websockets).
"""

from __future__ import annotations

import json
from typing import Any

import httpx
from websockets.asyncio.client import connect

from gateway._limits import PUSH_BODY_BYTES
from tests.gateway_mesh import ADMIN_TOKEN
from tests.ingest_mesh import ingest_mesh
from tests.seed_curl import curl_commands, run_curl
from tests.ws_client import receive, send, until

GAUGE = {"name": "queue_depth", "type": "gauge", "value": 7.0, "labels": {"queue": "mail"}}


def _json(body: str) -> Any:
    return httpx.Response(200, text=body).json()


async def test_seed_003s_ingest_batch_and_latest_curl_lines_run_unchanged() -> None:
    ingest, batch = curl_commands("003", "Ingesting Metrics")
    latest = next(c for c in curl_commands("003", "Querying Metrics") if "/latest/" in c)
    async with ingest_mesh() as mesh:
        status, body = await run_curl(ingest, mesh.url)
        assert status == 201, body
        answer = _json(body)
        assert answer["accepted"] == 1 and answer["rejected"] == []
        assert answer["metric"]["labels"] == {"host": "server01", "region": "us-east-1"}
        status, body = await run_curl(batch, mesh.url)
        assert status == 201, body
        assert _json(body)["kept"] == ["metrics[0]", "metrics[1]"]
        status, body = await run_curl(latest, mesh.url)
    assert status == 200, body
    answer = _json(body)
    assert answer["metric_name"] == "cpu_usage_percent"
    # The batch's cpu_usage_percent{host=server01} is a label set of its own, beside the first.
    by_labels = {json.dumps(v["labels"], sort_keys=True): v for v in answer["values"]}
    assert set(by_labels) == {
        '{"host": "server01"}',
        '{"host": "server01", "region": "us-east-1"}',
    }
    first = by_labels['{"host": "server01", "region": "us-east-1"}']
    assert first["value"] == 45.2 and first["source"] == "pushed"
    assert first["help_text"] == "CPU usage percentage" and first["unit"] == "percent"
    assert first["timestamp"].endswith("Z")


async def test_a_batch_keeps_its_good_items_and_names_each_refused_one() -> None:
    too_many_labels = {f"l{i}": "v" for i in range(33)}
    items = [
        GAUGE,
        {**GAUGE, "value": "NaN"},
        {**GAUGE, "name": "1st_bad_name"},
        {**GAUGE, "labels": too_many_labels},
        {**GAUGE, "type": "histogram"},
        {**GAUGE, "name": "jobs_done_total", "type": "counter", "value": 3},
    ]
    async with ingest_mesh() as mesh:
        response = await mesh.http.post("/api/v1/metrics/batch", json={"metrics": items})
        latest = await mesh.http.get("/api/v1/metrics/latest/jobs_done_total")
    assert response.status_code == 422
    answer = response.json()
    assert answer["accepted"] == 2 and answer["kept"] == ["metrics[0]", "metrics[5]"]
    refused = {r["item"]: r for r in answer["rejected"]}
    assert set(refused) == {"metrics[1]", "metrics[2]", "metrics[3]", "metrics[4]"}
    assert "not a finite number" in refused["metrics[1]"]["reason"]
    assert "1st_bad_name" in refused["metrics[2]"]["reason"]
    assert refused["metrics[3]"]["reason"] == "33 labels, more than 32"
    assert refused["metrics[3]"]["limit"] == "max_labels"
    assert refused["metrics[4]"]["reason"].startswith("type:")
    assert answer["detail"].startswith("4 of 6 refused")
    # What the 422 says was kept, was kept.
    assert [v["value"] for v in latest.json()["values"]] == [3.0]


async def test_a_single_refused_metric_is_a_422_naming_it() -> None:
    async with ingest_mesh() as mesh:
        response = await mesh.http.post("/api/v1/metrics/ingest", json={**GAUGE, "value": "+Inf"})
    assert response.status_code == 422
    assert response.json()["rejected"][0]["item"] == "metric"
    assert "not a finite number" in response.json()["detail"]


async def test_a_batch_over_1000_is_refused_whole_and_nothing_is_kept() -> None:
    items = [{**GAUGE, "labels": {"n": str(i)}} for i in range(1001)]
    async with ingest_mesh() as mesh:
        response = await mesh.http.post("/api/v1/metrics/batch", json={"metrics": items})
        latest = await mesh.http.get("/api/v1/metrics/latest/queue_depth")
        exactly = await mesh.http.post("/api/v1/metrics/batch", json={"metrics": items[:1000]})
    assert response.status_code == 422
    assert response.json() == {
        "detail": "1001 metrics in one request, more than 1000 (max_batch)",
        "field": "metrics",
    }
    assert latest.status_code == 503  # no pushed value, and this aggregator keeps no history
    assert exactly.status_code == 201 and exactly.json()["accepted"] == 1000


async def test_a_body_over_the_limit_is_a_413_naming_it() -> None:
    big = {**GAUGE, "help_text": "x" * (PUSH_BODY_BYTES + 1)}
    async with ingest_mesh() as mesh:
        response = await mesh.http.post("/api/v1/metrics/ingest", json=big)
    assert response.status_code == 413
    assert response.json()["detail"] == f"the body is larger than {PUSH_BODY_BYTES} bytes"


async def test_a_body_that_is_not_json_is_a_422() -> None:
    async with ingest_mesh() as mesh:
        response = await mesh.http.post(
            "/api/v1/metrics/ingest",
            content=b'{"name": "x", "type": "gauge", "value": NaN}',
            headers={"content-type": "application/json"},
        )
    assert response.status_code == 422
    assert response.json()["field"] == "body"


async def test_the_bearer_token_is_checked_only_when_the_gateway_has_one() -> None:
    async with ingest_mesh() as mesh:
        anyone = await mesh.http.post(
            "/api/v1/metrics/ingest", json=GAUGE, headers={"Authorization": "Bearer whatever"}
        )
    assert anyone.status_code == 201
    async with ingest_mesh(admin_token=ADMIN_TOKEN) as mesh:
        missing = await mesh.http.post("/api/v1/metrics/ingest", json=GAUGE)
        wrong = await mesh.http.post(
            "/api/v1/metrics/ingest", json=GAUGE, headers={"Authorization": "Bearer nope"}
        )
        right = await mesh.http.post(
            "/api/v1/metrics/ingest",
            json=GAUGE,
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        )
    assert (missing.status_code, wrong.status_code, right.status_code) == (401, 401, 201)
    assert missing.headers["www-authenticate"].startswith("Bearer")


async def test_the_ingest_routes_are_rate_limited_like_the_api() -> None:
    # The fixture's own requests spend some of the burst: post until the bucket is empty.
    async with ingest_mesh(rate_limit_per_second=0.001, rate_limit_burst=20) as mesh:
        codes = [
            (await mesh.http.post("/api/v1/metrics/ingest", json=GAUGE)).status_code
            for _ in range(21)
        ]
        last = await mesh.http.post("/metrics/events", json={"event_type": "x"})
    assert codes[0] == 201 and codes[-1] == 429
    assert set(codes) == {201, 429}
    assert last.status_code == 429 and "rate_limit_per_second" in last.json()["detail"]


async def test_metrics_page_has_seed_003s_names_and_the_pushed_series_with_help() -> None:
    async with ingest_mesh() as mesh:
        ingest = curl_commands("003", "Ingesting Metrics")[0]
        await run_curl(ingest, mesh.url)
        await mesh.http.post(
            "/api/v1/metrics/ingest",
            json={"name": "jobs", "type": "counter", "value": 4, "help_text": "Jobs run"},
        )
        await mesh.http.get("/api/v1/metrics/latest/jobs")
        page = (await mesh.http.get("/metrics")).text
        seed_004_page = (await mesh.http.get("/metrics/prometheus")).text
    lines = page.splitlines()
    assert "metrics_ingested_total 2.0" in lines
    assert "query_requests_total 1.0" in lines
    assert "# TYPE active_alerts_total gauge" in lines
    assert "websocket_connections 0.0" in lines
    assert "# HELP cpu_usage_percent CPU usage percentage (unit: percent)" in lines
    assert "# TYPE cpu_usage_percent gauge" in lines
    assert 'cpu_usage_percent{host="server01",region="us-east-1"} 45.2' in lines
    assert "# TYPE jobs_total counter" in lines and "jobs_total 4.0" in lines
    assert any(line.startswith("metricsmesh_service_up{") for line in lines)
    assert "# HELP cpu_usage_percent CPU usage percentage (unit: percent)" in seed_004_page


async def test_a_seed_003_websocket_subscriber_receives_a_pushed_value() -> None:
    async with ingest_mesh() as mesh, connect(mesh.ws_url) as client:
        await until(client, "welcome")
        await send(client, {"type": "subscribe", "data": {"subscription": "metrics"}})
        await until(client, "subscription_confirmed")
        await mesh.http.post("/api/v1/metrics/ingest", json=GAUGE)
        await mesh.round()
        pushed = await _pushed_update(client)
    assert pushed == [
        {
            "name": "queue_depth",
            "type": "gauge",
            "value": 7.0,
            "unit": "",
            "labels": {"queue": "mail"},
            "timestamp": pushed[0]["timestamp"],
            "help_text": "",
            "pushed": True,
        }
    ]


async def _pushed_update(client: Any) -> list[dict[str, Any]]:
    """The pushed items of the next metric_update that has any."""
    while True:
        message = await receive(client)
        if message["type"] != "metric_update":
            continue
        pushed = [m for m in message["data"]["metrics"] if m.get("pushed")]
        if pushed:
            return pushed
