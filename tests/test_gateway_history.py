"""Seed 003's query endpoints on the real gateway, over a real aggregator's history.

The fleet (tests.history_fleet) counted a known load for two minutes under a fake clock that
starts at 2025-01-01: the Prometheus-style range and instant queries answer Prometheus's JSON
to the character, seed 003's own curl examples run as written (its 2024 range is empty, not
an error), the query body, latest values and a tier's rows are exact, and every bad input is a
400/422 naming what is wrong (431 naming the header limit for a 100k-character URL), never a
500 and never slow.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway import GatewaySettings
from tests.eventually import eventually
from tests.gateway_mesh import Mesh
from tests.hardened_gateway import serve_hardened
from tests.history_fleet import LOAD, HistoryFleet, history_fleet
from tests.seed_curl import curl_commands, run_curl

START = 1_735_689_600.0
"""2025-01-01T00:00:00Z: seed 003's 2024 dates are in the past, beyond every tier."""
MINUTE = 60
T1, T2 = int(START) + MINUTE, int(START) + 2 * MINUTE
"""The two whole minutes of rounds, as Prometheus writes their times."""


@pytest.fixture
async def fleet(tmp_path: Path) -> AsyncIterator[HistoryFleet]:
    async with history_fleet(tmp_path, start=START, gateway=True) as running:
        await running.rounds(2 * MINUTE)
        yield running


async def get(fleet: HistoryFleet, path: str, **params: Any) -> httpx.Response:
    async with httpx.AsyncClient(base_url=fleet.gateway_url, timeout=30) as client:
        return await client.get(path, params=params)


RANGE = "/api/v1/metrics/query/range"
INSTANT = "/api/v1/metrics/query/instant"


async def test_a_range_query_answers_prometheus_json_to_the_character(fleet: HistoryFleet) -> None:
    response = await get(
        fleet,
        RANGE,
        query='events_per_second{service="weather-api", kind=""}',
        start="2025-01-01T00:01:00Z",
        end=str(T2),
        step="1m",
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.text == (
        '{"status":"success","data":{"resultType":"matrix","result":[{"metric":'
        '{"__name__":"events_per_second","service":"weather-api","type":"data"},'
        f'"values":[[{T1},"3"],[{T2},"3"]]}}]}}}}'
    )


async def test_steps_as_seconds_and_fractions_of_seconds_read_as_prometheus_does(
    fleet: HistoryFleet,
) -> None:
    response = await get(
        fleet, RANGE, query='error_rate{service=""}', start=f"{T2 - 1}.5", end=str(T2), step="0.5"
    )
    assert response.status_code == 400  # half a second is finer than the 1 s tier
    assert "1s:24h" in response.json()["error"]
    response = await get(fleet, RANGE, query='error_rate{service=""}', start=T1, end=T2, step=60)
    (series,) = response.json()["data"]["result"]
    assert series["metric"] == {"__name__": "error_rate"}  # the fleet has no label
    assert series["values"] == [[T1, "0.3333333333333333"], [T2, "0.3333333333333333"]]


async def test_an_instant_query_answers_a_vector_at_the_time(fleet: HistoryFleet) -> None:
    response = await get(fleet, INSTANT, query='events{kind="api_call"}', time=str(T2))
    body = response.json()
    assert body["status"] == "success" and body["data"]["resultType"] == "vector"
    values = {item["metric"]["service"]: item["value"] for item in body["data"]["result"]}
    assert values == {name: [T2, str(2 * load * MINUTE)] for name, load in LOAD.items()}
    now = await get(fleet, INSTANT, query='status{service="sports-data"}')
    ((item,),) = [now.json()["data"]["result"]]
    assert item["value"] == [T2, "1"]


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"query": "rate(events[5m])"}, 'invalid parameter "query": functions like rate(...)'),
        ({"query": "events[5m]"}, "range selectors like '[5m]'"),
        ({"query": 'events{host="a"}'}, "unknown label 'host'"),
        ({"query": "events_per_minute"}, "unknown figure 'events_per_minute'"),
        ({"query": "events offset 5m"}, "offset modifiers"),
        ({"query": ""}, 'invalid parameter "query": missing'),
        ({"query": "e" * 5000}, "the limit is 4096"),
        ({"start": "yesterday"}, 'invalid parameter "start": cannot parse'),
        ({"end": "2025-13-01T00:00:00Z"}, 'invalid parameter "end": cannot parse'),
        ({"start": "2030-01-01T00:00:00Z", "end": "2030-01-01T01:00:00Z"}, "in the future"),
        ({"start": str(T2), "end": str(T1)}, "end_time is before start_time"),
        ({"step": "0"}, "zero or negative query resolution step"),
        ({"step": "-1m"}, 'invalid parameter "step": cannot parse'),
        ({"step": "5x"}, 'invalid parameter "step": cannot parse'),
        ({"step": "1s", "start": "1700000000"}, "more than the limit of 11000"),
        ({"step": "90s", "start": str(T1 - 2 * 86_400)}, "not a whole multiple of 60s"),
    ],
)
async def test_bad_range_queries_are_400_bad_data_naming_what_is_wrong(
    fleet: HistoryFleet, params: dict[str, str], named: str
) -> None:
    query = {"query": "events", "start": str(T1), "end": str(T2), "step": "60", **params}
    started = time.perf_counter()
    response = await get(fleet, RANGE, **query)
    assert time.perf_counter() - started < 2.0
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["status"] == "error" and body["errorType"] == "bad_data"
    assert named in body["error"]


async def test_a_query_past_the_timeout_is_503_timeout(tmp_path: Path) -> None:
    async with history_fleet(
        tmp_path, start=START, gateway=True, query_timeout_seconds=1e-9
    ) as fleet:
        await fleet.rounds(2)
        response = await get(fleet, RANGE, query="events", start=int(START), end=T1, step=1)
    assert response.status_code == 503
    assert response.json()["errorType"] == "timeout"


@pytest.mark.mesh(wait="snapshot")
async def test_without_history_the_queries_are_503_naming_it(mesh: Mesh) -> None:
    response = await mesh.http.get(INSTANT, params={"query": "events"})
    assert response.status_code == 503
    body = response.json()
    assert body["errorType"] == "unavailable" and "history is disabled" in body["error"]
    latest = await mesh.http.get("/api/v1/metrics/latest/events")
    assert latest.status_code == 503 and "history is disabled" in latest.json()["detail"]


async def test_a_100k_character_url_is_refused_at_once_naming_the_limit(
    fleet: HistoryFleet,
) -> None:
    settings = GatewaySettings(aggregator=fleet.address)
    async with serve_hardened(settings) as port:
        started = time.perf_counter()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        target = f"{RANGE}?step=60&query=" + "e" * 100_000
        writer.write(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        answer = await asyncio.wait_for(reader.read(), timeout=10)  # the gateway closes
        writer.close()
        assert time.perf_counter() - started < 1.0
    assert answer.startswith(b"HTTP/1.1 431 ")
    assert b"max_header_bytes" in answer and b"16384" in answer


# --- seed 003's own paths -----------------------------------------------------------------------


async def test_seed_003s_curl_examples_run_as_written(fleet: HistoryFleet) -> None:
    query, latest = curl_commands("003", "Querying Metrics")
    status, body = await run_curl(query, fleet.gateway_url)
    assert status == 200, body  # its 2024 hour is before the history: empty, not an error
    answer = httpx.Response(200, text=body).json()
    assert answer["series"] == [] and answer["count"] == 0
    assert answer["metric_name"] == "cpu_usage_percent" and answer["aggregation"] == "avg"
    status, body = await run_curl(latest, fleet.gateway_url)
    assert status == 200, body
    values = httpx.Response(200, text=body).json()["values"]
    assert {value["labels"]["service"] for value in values} == set(LOAD)
    assert {value["timestamp"] for value in values} == {"2025-01-01T00:02:00.000Z"}


async def post_query(fleet: HistoryFleet, body: Any) -> httpx.Response:
    async with httpx.AsyncClient(base_url=fleet.gateway_url, timeout=30) as client:
        return await client.post("/api/v1/metrics/query", json=body)


async def test_the_query_body_aggregates_each_step_of_the_filtered_series(
    fleet: HistoryFleet,
) -> None:
    body = {
        "metric_name": "events_per_second",
        "start_time": "2025-01-01T00:01:00Z",
        "end_time": "2025-01-01T00:02:00Z",
        "step": "1m",
        "aggregation": "max",
        "labels": {"service": "sports-data", "kind": "data_fetch"},
    }
    response = await post_query(fleet, body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["resolution"] == "1s" and answer["labels"] == body["labels"]
    (series,) = answer["series"]
    assert series["labels"] == {"service": "sports-data", "type": "analysis", "kind": "data_fetch"}
    assert series["values"] == [
        {"timestamp": "2025-01-01T00:01:00.000Z", "value": float(LOAD["sports-data"])},
        {"timestamp": "2025-01-01T00:02:00.000Z", "value": float(LOAD["sports-data"])},
    ]
    counted = await post_query(fleet, {**body, "aggregation": "count", "labels": {}})
    assert {len(one["values"]) for one in counted.json()["series"]} == {2}


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"start_time": None}, 422, "start_time"),
        ({"extra": 1}, 422, "extra"),
        ({"aggregation": "median"}, 422, "aggregation"),
        ({"labels": {"host": "a"}}, 422, "labels"),
        ({"metric_name": "rate(x)"}, 422, "metric_name"),
        ({"metric_name": "cpu"}, 422, "metric_name"),
        ({"step": "0"}, 422, "step"),
        ({"start_time": "2030-01-01T00:00:00Z", "end_time": "2030-01-02T00:00:00Z"}, 422,
         "start_time"),
        ({"metric_name": "x" * 100_000}, 413, None),
        ([1, 2], 422, "body"),
    ],
)  # fmt: skip
async def test_a_bad_query_body_is_refused_naming_its_field(
    fleet: HistoryFleet, body: Any, status: int, field: str | None
) -> None:
    base = {
        "metric_name": "cpu_usage_percent",
        "start_time": "2025-01-01T00:00:00Z",
        "end_time": "2025-01-01T00:02:00Z",
    }
    started = time.perf_counter()
    response = await post_query(fleet, {**base, **body} if isinstance(body, dict) else body)
    assert time.perf_counter() - started < 2.0
    assert response.status_code == status, response.text
    assert response.json()["field"] == field


async def test_latest_is_the_newest_round_per_series(fleet: HistoryFleet) -> None:
    response = await get(fleet, "/api/v1/metrics/latest/events", kind="api_call")
    assert response.status_code == 200
    answer = response.json()
    assert answer["count"] == len(LOAD)
    for value in answer["values"]:
        assert value["value"] == 2 * LOAD[value["labels"]["service"]]  # one round's events
        assert value["timestamp"] == "2025-01-01T00:02:00.000Z" and value["tier"] == "1s:24h"
    unknown = await get(fleet, "/api/v1/metrics/latest/cpu")
    assert unknown.status_code == 422 and unknown.json()["field"] == "metric_name"


async def test_aggregated_rows_are_a_tiers_avg_min_max_and_count(fleet: HistoryFleet) -> None:
    response = await get(
        fleet,
        "/api/v1/metrics/aggregated",
        metric_name="events",
        service="weather-api",
        kind="",
        start=str(T1),
        end=str(T2),
        step="1m",
        tier="1s",
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["tier"] == "1s:24h" and answer["step"] == "1m"
    (series,) = answer["series"]
    assert series["rows"][-1] == {
        "timestamp": "2025-01-01T00:02:00.000Z",
        "avg": 3.0,
        "min": 3.0,
        "max": 3.0,
        "count": 60,
    }
    bad = await get(
        fleet, "/api/v1/metrics/aggregated", metric_name="events", start=T1, end=T2, tier="7s"
    )
    assert bad.status_code == 422 and bad.json()["field"] in ("tier", "step")


async def test_docs_describe_every_history_path_and_its_errors(fleet: HistoryFleet) -> None:
    schema = (await get(fleet, "/openapi.json")).json()
    expected = {
        ("/api/v1/metrics/query/range", "get"): {"200", "400", "502", "503"},
        ("/api/v1/metrics/query/instant", "get"): {"200", "400", "502", "503"},
        ("/api/v1/metrics/query", "post"): {"200", "413", "422", "503", "504"},
        ("/api/v1/metrics/latest/{metric_name}", "get"): {"200", "422", "503", "504"},
        ("/api/v1/metrics/aggregated", "get"): {"200", "422", "503", "504"},
    }
    for (path, method), codes in expected.items():
        operation = schema["paths"][path][method]
        assert codes <= set(operation["responses"]), (path, operation["responses"].keys())
        assert operation["description"] and operation["summary"]


# --- the store's own figures ---------------------------------------------------------------------


def samples_of(text: str, name: str) -> dict[str, float]:
    """`{labels: value}` of the samples of `name` in a Prometheus exposition."""
    found = {}
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            key, _, value = line.rpartition(" ")
            found[key.removeprefix(name)] = float(value)
    return found


async def test_metrics_has_the_history_stores_own_figures(fleet: HistoryFleet) -> None:
    async def polled() -> str | None:  # the gateway polls the status every few seconds
        text = (await get(fleet, "/metrics")).text
        written = samples_of(text, "metricsmesh_history_rows_written_total")
        return text if written == {"": 2 * MINUTE} else None

    text = await eventually(polled, timeout=15, what="the polled status of 120 rounds")
    assert samples_of(text, "metricsmesh_history_up") == {"": 1.0}
    sizes = samples_of(text, "metricsmesh_history_bytes")
    assert set(sizes) == {
        '{tier="1s:24h"}', '{tier="1m:30d"}', '{tier="5m:90d"}', '{tier="1h:90d"}'
    }  # fmt: skip
    assert sizes['{tier="1s:24h"}'] > 0
    assert samples_of(text, "metricsmesh_history_dropped_total") == {"": 0.0}
    (latency,) = samples_of(text, "metricsmesh_history_write_seconds").values()
    assert 0 < latency < 1
    health = (await get(fleet, "/health/detailed")).json()
    assert health["history"]["state"] == "ok" and health["history"]["message"] == "history ok"


async def test_a_degraded_history_shows_in_health_and_metrics(tmp_path: Path) -> None:
    (tmp_path / "history.sqlite3").mkdir()  # a directory where the store's file should be
    async with history_fleet(tmp_path, start=START, gateway=True) as fleet:
        await fleet.rounds(2)

        async def degraded() -> dict[str, Any] | None:
            body: dict[str, Any] = (await get(fleet, "/health/detailed")).json()
            return body if body["history"]["state"] == "degraded" else None

        health = await eventually(degraded, timeout=15, what="the degraded history status")
        metrics = (await get(fleet, "/metrics")).text
    assert health["status"] == "degraded"
    assert health["history"]["message"].startswith("history degraded: ")
    assert "history.sqlite3" in health["history"]["message"]
    assert samples_of(metrics, "metricsmesh_history_up") == {"": 0.0}
