"""Seed 003's alert rule fires on a pushed `cpu_usage_percent{host=...}`, on the real gateway.

The rule is posted with seed 003's exact body (`metric_name: cpu_usage_percent`, `condition:
"> 80"`, `for_duration: 300`); two hosts push the metric through the aggregator's ingestion
path under a fake clock that drives `for_duration`: server01 above 80 gets one alert with its
labels, pending then firing after 300 s; a value not pushed for 5 minutes is unknown (the alert
stays as it is); a value below 80 resolves it. server02, below 80, never has one. A rule with
`matchers` watches only the label sets they select, and may name any pushed metric.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from aggregator._ingest.model import MetricPoint, MetricType
from tests.eventually import eventually
from tests.history_fleet import HistoryFleet, history_fleet
from tests.history_mesh import run_round, tick

START = 1_735_689_600.0
SEED_003 = {
    "name": "High CPU Alert",
    "metric_name": "cpu_usage_percent",
    "condition": "> 80",
    "threshold": 80.0,
    "severity": "high",
    "evaluation_interval": 60,
    "for_duration": 300,
    "annotations": {"description": "CPU usage is above 80% for 5 minutes"},
}


@pytest.fixture
async def fleet(tmp_path: Path) -> AsyncIterator[HistoryFleet]:
    async with history_fleet(tmp_path, start=START, gateway=True) as running:
        yield running


async def push_round(fleet: HistoryFleet, seconds: float, name: str = "cpu_usage_percent",
                     **values: float) -> None:  # fmt: skip
    """`seconds` later, push `values` by host (none: nothing pushed), then run a round."""
    tick(fleet.monotonic, fleet.wall, seconds)
    assert fleet.server.ingestor is not None
    points = [
        MetricPoint(name, MetricType.GAUGE, value, {"host": host, "region": "us-east-1"})
        for host, value in values.items()
    ]
    assert fleet.server.ingestor.ingest(points).refused == ()
    await run_round(fleet.server)


async def pushed_alerts(fleet: HistoryFleet, rule: str = "High CPU Alert") -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=fleet.gateway_url, timeout=30) as client:
        body = (await client.get("/api/v1/alerts/active")).json()
    return [a for a in body["alerts"] if "host" in a["labels"] and a["name"] == rule]


async def state_of(fleet: HistoryFleet, state: str | None, **kwargs: str) -> list[dict[str, Any]]:
    """The pushed alerts once the gateway shows one in `state` (None: once it shows none)."""

    async def probe() -> list[dict[str, Any]] | None:
        found = await pushed_alerts(fleet, **kwargs)
        if state is None:
            return None if found else [{}]
        return found if [a["state"] for a in found] == [state] else None

    return await eventually(probe, what=f"a pushed alert {state or 'gone'}")


async def post_rule(fleet: HistoryFleet, body: dict[str, Any]) -> httpx.Response:
    async with httpx.AsyncClient(base_url=fleet.gateway_url, timeout=30) as client:
        return await client.post("/api/v1/alerts/rules", json=body)


async def test_seed_003s_rule_fires_on_a_pushed_series_and_resolves(fleet: HistoryFleet) -> None:
    created = await post_rule(fleet, SEED_003)
    assert created.status_code in (200, 201), created.text
    await push_round(fleet, 1.0, server01=85.0, server02=40.0)
    (pending,) = await state_of(fleet, "pending")
    assert pending["labels"]["host"] == "server01" and pending["labels"]["severity"] == "high"
    await push_round(fleet, 299.0, server01=86.0, server02=40.0)
    assert [a["state"] for a in await pushed_alerts(fleet)] == ["pending"]  # 299 s < 300 s
    await push_round(fleet, 1.0, server01=87.0, server02=40.0)
    (fired,) = await state_of(fleet, "firing")
    assert fired["labels"] == {
        "alertname": "High CPU Alert",
        "host": "server01",
        "region": "us-east-1",
        "severity": "high",
    }
    assert fired["value"] == 87.0
    await push_round(fleet, 400.0)  # nothing pushed for 400 s: unknown, not resolved
    assert [a["state"] for a in await pushed_alerts(fleet)] == ["firing"]
    await push_round(fleet, 1.0, server01=50.0)
    await state_of(fleet, None)


async def test_a_rule_with_matchers_watches_only_the_series_they_select(
    fleet: HistoryFleet,
) -> None:
    rule = {
        "name": "Deep queue",
        "metric_name": "queue_depth",
        "matchers": '{host=~"server0[2-9]"}',
        "condition": "> 100",
    }
    created = await post_rule(fleet, rule)
    assert created.status_code in (200, 201), created.text
    await push_round(fleet, 1.0, name="queue_depth", server01=500.0, server02=200.0)
    (fired,) = await state_of(fleet, "firing", rule="Deep queue")
    assert fired["labels"]["host"] == "server02"
    refused = await post_rule(fleet, {**rule, "name": "x", "matchers": "{host=}"})
    assert refused.status_code == 422 and refused.json()["field"] == "matchers"
    unknown = await post_rule(fleet, {**rule, "name": "y", "matchers": None})
    assert unknown.status_code == 422 and unknown.json()["field"] == "figure"
