"""GET /metrics: parsed with prometheus_client's parser, and scraped by a real Prometheus."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from mesh_common import latency
from tests.eventually import eventually
from tests.gateway_mesh import Mesh
from tests.ports import free_port


async def families(mesh: Mesh) -> dict[str, Metric]:
    response = await mesh.http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {family.name: family for family in text_string_to_metric_families(response.text)}


async def test_per_service_families_with_service_and_type_labels(mesh: Mesh) -> None:
    mesh.tracker("weather-api").record(n=7)

    async def counted() -> dict[str, Metric] | None:
        found = await families(mesh)
        totals = {s.labels["service"]: s.value for s in found["metricsmesh_service_events"].samples}
        answered = found["metricsmesh_services_answered"].samples[0].value
        return found if totals.get("weather-api") == 7 and answered == 15 else None

    found = await eventually(counted, what="weather-api's 7 events, every service answering")
    up = found["metricsmesh_service_up"]
    assert up.type == "gauge"
    assert {(s.labels["service"], s.labels["type"]) for s in up.samples} >= {
        ("weather-api", "data"),
        ("websocket-ingestion", "core"),
        ("energy-correlator", "analysis"),
        ("ai-automation-service", "ai"),
    }
    assert len(up.samples) == 15 and {s.value for s in up.samples} == {1.0}
    events = found["metricsmesh_service_events"]
    assert events.type == "counter"
    assert {s.name for s in events.samples} == {"metricsmesh_service_events_total"}
    rates = {
        s.labels["service"]: s.value for s in found["metricsmesh_service_events_per_second"].samples
    }
    assert rates["weather-api"] > 0
    latency = found["metricsmesh_service_call_latency_seconds"].samples
    assert len(latency) == 15 and all(0 < s.value < 1 for s in latency)
    assert 0 < found["metricsmesh_round_duration_seconds"].samples[0].value < 1
    assert found["metricsmesh_services_answered"].samples[0].value == 15
    assert found["metricsmesh_services_configured"].samples[0].value == 15
    assert found["metricsmesh_gateway_upstream_up"].samples[0].value == 1


async def test_a_dead_service_is_down_with_no_rate_or_counter(mesh: Mesh) -> None:
    await mesh.agents["data-retention"].stop(0)

    async def down() -> dict[str, Metric] | None:
        found = await families(mesh)
        up = {s.labels["service"]: s.value for s in found["metricsmesh_service_up"].samples}
        only = {name for name, value in up.items() if value == 0} == {"data-retention"}
        return (
            found
            if only and found["metricsmesh_services_answered"].samples[0].value == 14
            else None
        )

    found = await eventually(down, what="data-retention up 0")
    for name in ("metricsmesh_service_events", "metricsmesh_service_events_per_second"):
        services = {s.labels["service"] for s in found[name].samples}
        assert "data-retention" not in services and len(services) == 14
    assert found["metricsmesh_services_answered"].samples[0].value == 14


async def test_a_service_not_called_this_round_has_no_call_latency_sample(mesh: Mesh) -> None:
    await mesh.agents["data-retention"].stop(0)

    async def backing_off() -> dict[str, Metric] | None:
        body = await mesh.metrics()
        found = await families(mesh)
        (sequence,) = found["metricsmesh_snapshot_sequence"].samples
        errors = [r["error_message"] for r in body["inactive_services"]]
        skipped = any("backing off" in error for error in errors)
        return found if skipped and sequence.value == body["sequence"] else None

    found = await eventually(backing_off, what="a round that skips data-retention")
    calls = {s.labels["service"] for s in found["metricsmesh_service_call_latency_seconds"].samples}
    assert "data-retention" not in calls and len(calls) == 14  # no data, not a 0


async def test_a_real_prometheus_scrapes_the_gateway(mesh: Mesh, tmp_path: Path) -> None:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("the prometheus binary is not installed (Debian package `prometheus`)")
    mesh.tracker("weather-api").record(n=7)
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: metricsmesh\n"
        f"    static_configs:\n      - targets: ['127.0.0.1:{mesh.port}']\n"
    )
    port = free_port()
    log_file = (tmp_path / "prometheus.log").open("w")
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--web.listen-address=127.0.0.1:{port}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=log_file,
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as prom:

            async def series() -> list[dict[str, Any]] | None:
                if process.poll() is not None:
                    log = (tmp_path / "prometheus.log").read_text()
                    raise AssertionError(f"prometheus exited: {log[-2000:]}")
                try:
                    response = await prom.get(
                        "/api/v1/query", params={"query": "metricsmesh_service_up"}
                    )
                except httpx.TransportError:
                    return None
                if response.status_code == 503:  # still starting: its TSDB is not ready yet
                    return None
                result: list[dict[str, Any]] = response.json()["data"]["result"]
                return result if len(result) == 15 else None

            result = await eventually(series, timeout=60, what="Prometheus to hold 15 series")
            assert {r["metric"]["job"] for r in result} == {"metricsmesh"}
            assert {(r["metric"]["service"], r["metric"]["type"]) for r in result} == {
                (e.name, e.type) for e in mesh.registry
            }
            assert {r["value"][1] for r in result} <= {"0", "1"}

            async def weather_total() -> str | None:
                query = 'max_over_time(metricsmesh_service_events_total{service="weather-api"}[5m])'
                response = await prom.get("/api/v1/query", params={"query": query})
                found = response.json()["data"]["result"]
                return found[0]["value"][1] if found and found[0]["value"][1] == "7" else None

            await eventually(weather_total, timeout=60, what="weather-api's 7 events in Prometheus")
            targets = (await prom.get("/api/v1/targets")).json()["data"]["activeTargets"]
            assert [t["health"] for t in targets] == ["up"]
            await _prometheus_quantile_agrees_with_ours(mesh, prom)
    finally:
        process.terminate()
        await asyncio.to_thread(process.wait, 10)
        log_file.close()


async def test_latency_is_a_classic_histogram_and_errors_a_counter_per_kind(mesh: Mesh) -> None:
    tracker = mesh.tracker("weather-api")
    for index in range(100):
        tracker.observe("fetch", 0.030 if index < 90 else 0.300, error=index % 25 == 0)
    tracker.record("tick", n=3)

    async def exposed() -> dict[str, Metric] | None:
        found = await families(mesh)
        family = found.get("metricsmesh_service_latency_seconds")
        return found if family is not None and family.samples else None

    found = await eventually(exposed, what="weather-api's latency histogram")
    histogram = found["metricsmesh_service_latency_seconds"]
    assert histogram.type == "histogram"
    samples = [s for s in histogram.samples if s.labels["service"] == "weather-api"]
    assert {s.labels["kind"] for s in samples} == {"fetch"}
    buckets = [(float(s.labels["le"]), s.value) for s in samples if s.name.endswith("_bucket")]
    assert buckets == sorted(buckets) and buckets[-1] == (float("inf"), 100)
    at = dict(buckets)
    assert at[latency.upper_bound(latency.index_of(0.025))] == 0
    assert at[latency.upper_bound(latency.index_of(0.05))] == 90  # every 30 ms event, exactly
    assert at[latency.upper_bound(latency.index_of(0.5))] == 100
    (total,) = [s.value for s in samples if s.name.endswith("_sum")]
    assert total == pytest.approx(90 * 0.030 + 10 * 0.300)
    errors = {
        (s.labels["service"], s.labels["kind"]): s.value
        for s in found["metricsmesh_service_errors"].samples
    }
    assert errors[("weather-api", "fetch")] == 4 and errors[("weather-api", "tick")] == 0
    kinds = {
        (s.labels["service"], s.labels["kind"]): s.value
        for s in found["metricsmesh_service_kind_events"].samples
    }
    assert kinds[("weather-api", "fetch")] == 100 and kinds[("weather-api", "tick")] == 3


def _le_bucket(seconds: float) -> tuple[float, float]:
    lower = 0.0
    for bound in latency.PROMETHEUS_BOUNDS:
        if seconds <= bound:
            return lower, bound
        lower = bound
    return lower, float("inf")


def _observe_mix(mesh: Mesh, count: int) -> None:
    """98 % of the calls take about 30 ms, 2 % about 300 ms: the p99 is a slow one."""
    tracker = mesh.tracker("weather-api")
    for index in range(count):
        tracker.observe("fetch", 0.028 + 0.004 * (index % 5) if index % 50 > 0 else 0.3)


async def _prometheus_quantile_agrees_with_ours(mesh: Mesh, prom: httpx.AsyncClient) -> None:
    _observe_mix(mesh, 100)  # the series exists before the batch Prometheus will rate

    async def scraped(minimum: float) -> float | None:
        query = 'metricsmesh_service_latency_seconds_count{service="weather-api"}'
        found = (await prom.get("/api/v1/query", params={"query": query})).json()["data"]
        value = float(found["result"][0]["value"][1]) if found["result"] else 0.0
        return value if value >= minimum else None

    await eventually(lambda: scraped(100), timeout=60, what="the first batch in Prometheus")
    _observe_mix(mesh, 1000)
    await eventually(lambda: scraped(1100), timeout=60, what="the second batch in Prometheus")
    query = (
        "histogram_quantile(0.99, sum by (le) "
        '(rate(metricsmesh_service_latency_seconds_bucket{service="weather-api"}[1m])))'
    )

    async def estimate() -> float | None:
        found = (await prom.get("/api/v1/query", params={"query": query})).json()["data"]
        text = found["result"][0]["value"][1] if found["result"] else "NaN"
        return None if text == "NaN" else float(text)

    theirs = await eventually(estimate, timeout=60, what="Prometheus's p99")
    row = next(
        r for r in (await mesh.metrics())["active_apis"] if r["service_name"] == "weather-api"
    )
    ours = row["latency_p99_ms"] / 1000.0
    low, high = _le_bucket(ours)
    assert low < theirs <= high, (theirs, ours, (low, high))
