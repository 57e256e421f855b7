"""A service of three instances through the gateway: its REST row (k of n, the `instances`
list), the gRPC row it comes from, the schema, and /metrics with an `instance` label."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from metricsmesh.v1 import aggregator_pb2, aggregator_pb2_grpc, snapshot_pb2
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from gateway import RealTimeMetrics
from tests.eventually import eventually
from tests.gateway_mesh import Mesh

SERVICE = "weather-api"
pytestmark = pytest.mark.mesh(instances={SERVICE: 3}, wait="all_active")


def rows_of(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["service_name"]: row for row in body["active_apis"] + body["inactive_services"]}


async def row_where(mesh: Mesh, what: str, check: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """(body, the weather-api row) of the first REST body whose row passes `check`."""

    async def probe() -> tuple[dict[str, Any], dict[str, Any]] | None:
        body = await mesh.metrics()
        row = rows_of(body)[SERVICE]
        return (body, row) if check(row) else None

    return await eventually(probe, what=what)


def addresses(mesh: Mesh) -> list[str]:
    return [f"127.0.0.1:{agent.port}" for agent in mesh.instances[SERVICE]]


async def families(mesh: Mesh) -> dict[str, Metric]:
    response = await mesh.http.get("/metrics")
    assert response.status_code == 200
    return {family.name: family for family in text_string_to_metric_families(response.text)}


async def test_the_rest_row_sums_three_instances_and_lists_them(mesh: Mesh) -> None:
    for agent, events in zip(mesh.instances[SERVICE], (3, 4, 5), strict=True):
        agent.tracker.record(n=events)
    body, row = await row_where(
        mesh, "12 events over 3 instances", lambda row: row["total_events"] == 12
    )
    RealTimeMetrics.model_validate(body)
    assert (row["status"], row["instances_up"], row["instances_total"]) == ("active", 3, 3)
    assert row["error_message"] is None
    listed = row["instances"]
    assert [each["address"] for each in listed] == addresses(mesh)
    assert [each["total_events"] for each in listed] == [3, 4, 5]
    assert {each["status"] for each in listed} == {"active"}
    assert all(each["seconds_since_seen"] == 0 for each in listed)
    assert all(each["uptime_seconds"] > 0 for each in listed)
    assert row["events_per_second"] == pytest.approx(
        sum(each["events_per_second"] for each in listed), abs=1e-3
    )
    # Every other service is one agent: one instance, no list.
    others = [each for name, each in rows_of(body).items() if name != SERVICE]
    assert {(each["instances_up"], each["instances_total"]) for each in others} == {(1, 1)}
    assert all(each["instances"] == [] for each in others)
    assert body["total_events"] == 12  # the fleet counts the row once
    # The gRPC row the gateway read it from carries the same.
    snapshot = await grpc_snapshot(mesh)
    (wire,) = [each for each in snapshot.services if each.service_name == SERVICE]
    assert (wire.instances_up, wire.instances_total) == (3, 3)
    assert [each.address for each in wire.instances] == addresses(mesh)
    assert [each.total_events for each in wire.instances] == [3, 4, 5]


async def grpc_snapshot(mesh: Mesh) -> snapshot_pb2.Snapshot:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{mesh.aggregator_port}") as channel:
        stub = aggregator_pb2_grpc.AggregatorServiceStub(channel)
        response = await stub.GetSnapshot(aggregator_pb2.GetSnapshotRequest())
    return response.snapshot


async def test_a_stopped_instance_shows_two_of_three_and_its_address(mesh: Mesh) -> None:
    stopped = mesh.instances[SERVICE][1]
    gone = f"127.0.0.1:{stopped.port}"
    await stopped.stop(0)
    body, row = await row_where(mesh, "2 of 3", lambda row: row["instances_up"] == 2)
    assert row in body["active_apis"]  # still active, one of three down
    assert gone in row["error_message"]
    down = row["instances"][1]
    assert (down["address"], down["status"]) == (gone, "inactive")
    assert down["error_message"]
    filtered = await mesh.http.get(
        "/api/v1/real-time-metrics", params={"fields": "instances_up,instances_total"}
    )
    (narrow,) = [each for each in filtered.json()["active_apis"] if each["service_name"] == SERVICE]
    assert narrow == {
        "service_name": SERVICE,
        "status": "active",
        "instances_up": 2,
        "instances_total": 3,
    }


async def test_metrics_label_the_instances_of_a_service_of_several(mesh: Mesh) -> None:
    first, second, third = mesh.instances[SERVICE]
    first.tracker.record("api_call", n=2)
    third.tracker.observe("api_call", 0.02)
    await second.stop(0)
    await row_where(
        mesh, "2 of 3 with 3 events", lambda row: row["instances_up"] == 2 and row["total_events"]
    )

    async def found() -> dict[str, Metric] | None:
        page = await families(mesh)
        events = page["metricsmesh_service_kind_events"].samples
        mine = [s for s in events if s.labels["service"] == SERVICE]
        return page if sum(s.value for s in mine) == 3 else None

    page = await eventually(found, what="3 api_call events of weather-api in /metrics")
    up = {
        s.labels["instance"]: s.value
        for s in page["metricsmesh_instance_up"].samples
        if s.labels["service"] == SERVICE
    }
    assert up == dict(zip(addresses(mesh), (1.0, 0.0, 1.0), strict=True))
    by_service = {
        name: {s.labels["service"]: s.value for s in page[name].samples}
        for name in ("metricsmesh_service_instances_up", "metricsmesh_service_instances")
    }
    assert by_service["metricsmesh_service_instances_up"][SERVICE] == 2
    assert by_service["metricsmesh_service_instances"][SERVICE] == 3
    assert by_service["metricsmesh_service_instances"]["admin-api"] == 1
    # Counters of a service of several are per active instance; of one agent, unlabelled.
    kinds = [
        s for s in page["metricsmesh_service_kind_events"].samples if s.labels["kind"] == "api_call"
    ]
    per_instance = {s.labels["instance"]: s.value for s in kinds if s.labels["service"] == SERVICE}
    assert per_instance == {addresses(mesh)[0]: 2.0, addresses(mesh)[2]: 1.0}
    events = page["metricsmesh_service_events"].samples
    assert {s.labels.get("instance") for s in events if s.labels["service"] == SERVICE} == {
        addresses(mesh)[0],
        addresses(mesh)[2],
    }
    assert all("instance" not in s.labels for s in events if s.labels["service"] != SERVICE)
    buckets = [
        s
        for s in page["metricsmesh_service_latency_seconds"].samples
        if s.name.endswith("_count") and s.labels["service"] == SERVICE
    ]
    assert [(s.labels["instance"], s.value) for s in buckets] == [(addresses(mesh)[2], 1.0)]
    # The gauges stay the service's: one series, the row's figure.
    rates = page["metricsmesh_service_events_per_second"].samples
    assert [s.labels for s in rates if s.labels["service"] == SERVICE] == [
        {"service": SERVICE, "type": "data"}
    ]


async def test_the_schema_describes_the_instance_columns(mesh: Mesh) -> None:
    schema = (await mesh.http.get("/api/v1/schema")).json()
    columns = sorted(
        (entry for entry in schema["instances"] if entry["column"]),
        key=lambda entry: entry["column"],
    )
    assert [entry["name"] for entry in columns][:3] == ["address", "status", "events_per_second"]
    rows = {entry["name"] for entry in schema["rows"]}
    assert {"instances_up", "instances_total", "instances"} <= rows
    api = (await mesh.http.get("/openapi.json")).json()
    assert "InstanceMetrics" in api["components"]["schemas"]
