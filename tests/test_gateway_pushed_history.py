"""Seed 003's queries answer pushed series, on the real gateway over a real aggregator's history.

Seed 003 ingests `cpu_usage_percent{host="server01", region="us-east-1"}` and queries it with
`POST /api/v1/metrics/query` (`metric_name`, a range, `step: "5m"`, `aggregation: "avg"`) and
Prometheus's `query/range` and `query/instant`. Here two hosts push it every 10 s for ten
minutes (server01 the number of its push, 1 to 60; server02 100 more) through the aggregator's
ingestion path, beside the fleet's agents (whose own figure `cpu_usage_percent` stays theirs,
told apart by its `service` label).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from aggregator._ingest.model import MetricPoint, MetricType
from tests.history_fleet import HistoryFleet, history_fleet
from tests.history_mesh import run_round, tick

START = 1_735_689_600.0
"""2025-01-01T00:00:00Z."""
T5, T10 = int(START) + 300, int(START) + 600
HOSTS = {"server01": "us-east-1", "server02": "eu-west-1"}


@pytest.fixture
async def fleet(tmp_path: Path) -> AsyncIterator[HistoryFleet]:
    async with history_fleet(tmp_path, start=START, gateway=True) as running:
        assert running.server.ingestor is not None
        for number in range(1, 61):
            tick(running.monotonic, running.wall, 10.0)
            points = [
                MetricPoint(
                    "cpu_usage_percent",
                    MetricType.GAUGE,
                    float(number if host == "server01" else 100 + number),
                    {"host": host, "region": region},
                    "CPU usage percentage",
                    "percent",
                )
                for host, region in HOSTS.items()
            ]
            assert running.server.ingestor.ingest(points).refused == ()
            await run_round(running.server)
        yield running


async def call(fleet: HistoryFleet, method: str, path: str, **kwargs: Any) -> httpx.Response:
    async with httpx.AsyncClient(base_url=fleet.gateway_url, timeout=30) as client:
        return await client.request(method, path, **kwargs)


async def test_seed_003s_query_body_answers_the_pushed_series(fleet: HistoryFleet) -> None:
    body = {
        "metric_name": "cpu_usage_percent",
        "start_time": "2025-01-01T00:05:00Z",
        "end_time": "2025-01-01T00:10:00Z",
        "step": "5m",
        "aggregation": "avg",
    }
    response = await call(fleet, "POST", "/api/v1/metrics/query", json=body)
    assert response.status_code == 200, response.text
    pushed = {
        one["labels"]["host"]: [value["value"] for value in one["values"]]
        for one in response.json()["series"]
        if "host" in one["labels"]
    }
    assert pushed == {"server01": [15.5, 45.5], "server02": [115.5, 145.5]}
    agents = [one for one in response.json()["series"] if "service" in one["labels"]]
    assert agents  # the agents' own cpu_usage_percent, by service, as before
    narrowed = await call(
        fleet, "POST", "/api/v1/metrics/query", json={**body, "labels": {"host": "server02"}}
    )
    (series,) = narrowed.json()["series"]
    assert series["labels"] == {"host": "server02", "region": "eu-west-1"}
    refused = await call(
        fleet, "POST", "/api/v1/metrics/query", json={**body, "labels": {"colour": "red"}}
    )
    assert refused.status_code == 200 and refused.json()["series"] == []  # as Prometheus: none


async def test_prometheus_range_and_instant_queries_answer_pushed_values(
    fleet: HistoryFleet,
) -> None:
    response = await call(
        fleet,
        "GET",
        "/api/v1/metrics/query/range",
        params={
            "query": 'cpu_usage_percent{host="server01"}',
            "start": str(T5),
            "end": str(T10),
            "step": "5m",
        },
    )
    assert response.status_code == 200, response.text
    assert response.text == (
        '{"status":"success","data":{"resultType":"matrix","result":[{"metric":'
        '{"__name__":"cpu_usage_percent","host":"server01","region":"us-east-1"},'
        f'"values":[[{T5},"30"],[{T10},"60"]]}}]}}}}'
    )
    instant = await call(
        fleet,
        "GET",
        "/api/v1/metrics/query/instant",
        params={"query": '{__name__="cpu_usage_percent", region=~"eu-.*"}', "time": str(T10)},
    )
    (result,) = instant.json()["data"]["result"]
    assert result["metric"]["host"] == "server02" and result["value"] == [T10, "160"]
    unknown = await call(
        fleet, "GET", "/api/v1/metrics/query/instant", params={"query": 'events{host="a"}'}
    )
    assert unknown.status_code == 400 and "unknown label 'host'" in unknown.json()["error"]
