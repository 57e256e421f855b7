"""OTLP/HTTP through the gateway: `POST /v1/metrics`, protobuf and JSON, gzip, its errors.

The real OpenTelemetry SDK's OTLP/HTTP exporter posts to a real gateway (uvicorn, port 0),
which forwards to a real aggregator over gRPC; the row's figures must be the program's.
"""

from __future__ import annotations

import gzip
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from google.rpc import status_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2

from aggregator import AggregatorServer
from gateway import GatewaySettings
from mesh_common.latency import RELATIVE_ERROR
from tests.gateway_mesh import serve_gateway
from tests.otlp_mesh import otlp_aggregator, pushed, row_with
from tests.otlp_program import P99_SECONDS, Program, exponential, http_exporter
from tests.ports import free_port

PROTOBUF = {"content-type": "application/x-protobuf"}
Answer = metrics_service_pb2.ExportMetricsServiceResponse


@asynccontextmanager
async def gateway_to(address: str, **settings: Any) -> AsyncIterator[httpx.AsyncClient]:
    """A real gateway in front of the aggregator at `address`; an httpx client to it."""
    gateway_settings = GatewaySettings(
        aggregator=address,
        reconnect_initial_seconds=0.05,
        reconnect_max_seconds=0.5,
        **settings,
    )
    async with (
        serve_gateway(gateway_settings) as (_, port),
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http,
    ):
        yield http


@asynccontextmanager
async def mesh(**settings: Any) -> AsyncIterator[tuple[AggregatorServer, httpx.AsyncClient]]:
    """An aggregator and a gateway in front of it."""
    async with otlp_aggregator() as server, gateway_to(server.address, **settings) as http:
        yield server, http


def gauge_request(name: str = "queue.depth", value: float = 7.0) -> bytes:
    """A protobuf ExportMetricsServiceRequest with one gauge of service `billing`."""
    request = metrics_service_pb2.ExportMetricsServiceRequest()
    resource = request.resource_metrics.add()
    resource.resource.attributes.add(key="service.name").value.string_value = "billing"
    metric = resource.scope_metrics.add().metrics.add(name=name)
    metric.gauge.data_points.add(as_double=value, time_unix_nano=time.time_ns())
    return request.SerializeToString()


async def test_an_sdk_program_over_otlp_http_is_a_row_with_its_figures() -> None:
    async with mesh() as (server, http):
        program = Program(
            "checkout", http_exporter(str(http.base_url), preferred_aggregation=exponential())
        )
        program.serve_requests()
        await program.flush()
        row = await row_with(server.address, "checkout", 100)
        await program.close()
    assert (row.total_errors, row.window_events, row.window_errors) == (10, 100, 10)
    p99 = row.latency.p99.seconds + row.latency.p99.nanos / 1e9
    assert p99 == pytest.approx(P99_SECONDS, rel=RELATIVE_ERROR)


async def test_a_gzip_protobuf_body_is_answered_in_protobuf() -> None:
    async with mesh() as (server, http):
        response = await http.post(
            "/v1/metrics",
            content=gzip.compress(gauge_request()),
            headers={**PROTOBUF, "content-encoding": "gzip"},
        )
        values = await pushed(server.address, "queue_depth")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-protobuf"
    assert not Answer.FromString(response.content).HasField("partial_success")
    assert [value.value for value in values] == [7.0]


async def test_an_otlp_json_body_is_answered_in_json_with_partial_success() -> None:
    now = str(time.time_ns())
    body = {
        "resourceMetrics": [
            {
                "resource": {
                    "attributes": [{"key": "service.name", "value": {"stringValue": "billing"}}]
                },
                "scopeMetrics": [
                    {
                        "metrics": [
                            {
                                "name": "jobs.done",
                                "sum": {
                                    "aggregationTemporality": 2,
                                    "isMonotonic": True,
                                    "dataPoints": [{"asInt": "12", "timeUnixNano": now}],
                                },
                            },
                            {
                                "name": "temperature",
                                "gauge": {"dataPoints": [{"asDouble": "NaN", "timeUnixNano": now}]},
                            },
                        ]
                    }
                ],
            }
        ]
    }
    async with mesh() as (server, http):
        response = await http.post("/v1/metrics", json=body)
        values = await pushed(server.address)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    partial = response.json()["partialSuccess"]
    assert partial["rejectedDataPoints"] == "1"  # int64 in OTLP JSON: a string
    assert "'temperature' point 0: value nan is not a finite number" in partial["errorMessage"]
    assert [(value.name, value.value) for value in values] == [("jobs_done", 12.0)]


async def test_an_undecodable_body_is_400_with_a_status() -> None:
    async with mesh() as (_, http):
        response = await http.post("/v1/metrics", content=b"\xff\xff\xff", headers=PROTOBUF)
        json_response = await http.post(
            "/v1/metrics", content=b"{not json", headers={"content-type": "application/json"}
        )
    assert response.status_code == 400
    status = status_pb2.Status.FromString(response.content)
    assert status.message.startswith("the body is not a protobuf ExportMetricsServiceRequest")
    assert json_response.status_code == 400
    assert json_response.json()["message"].startswith("the body is not OTLP JSON")


async def test_another_content_type_or_encoding_is_415() -> None:
    async with mesh() as (_, http):
        text = await http.post("/v1/metrics", content=b"x", headers={"content-type": "text/plain"})
        brotli = await http.post(
            "/v1/metrics", content=b"x", headers={**PROTOBUF, "content-encoding": "br"}
        )
    assert text.status_code == 415
    assert (
        "'text/plain' is not application/x-protobuf or application/json" in (text.json()["message"])
    )
    assert brotli.status_code == 415


async def test_a_body_or_its_inflation_past_the_limit_is_413_naming_it() -> None:
    bomb = gzip.compress(b"\0" * (5 * 1024 * 1024))  # 5 MiB of zeros in about 5 KiB
    async with mesh() as (_, http):
        large = await http.post(
            "/v1/metrics", content=b"\0" * (4 * 1024 * 1024 + 1), headers=PROTOBUF
        )
        inflated = await http.post(
            "/v1/metrics", content=bomb, headers={**PROTOBUF, "content-encoding": "gzip"}
        )
    for response in (large, inflated):
        assert response.status_code == 413
        message = status_pb2.Status.FromString(response.content).message
        assert message == "the body is larger than 4194304 bytes (the gateway's OTLP body limit)"


async def test_the_rate_limit_applies() -> None:
    async with mesh(rate_limit_per_second=0.01, rate_limit_burst=1) as (_, http):
        first = await http.post("/v1/metrics", content=gauge_request(), headers=PROTOBUF)
        second = await http.post("/v1/metrics", content=gauge_request(), headers=PROTOBUF)
    assert first.status_code == 200
    assert second.status_code == 429
    assert "retry-after" in second.headers


async def test_an_unreachable_aggregator_is_503() -> None:
    async with gateway_to(f"127.0.0.1:{free_port()}") as http:
        response = await http.post("/v1/metrics", content=gauge_request(), headers=PROTOBUF)
    assert response.status_code == 503
    assert "is unreachable" in status_pb2.Status.FromString(response.content).message


async def test_docs_declare_the_path_and_its_errors() -> None:
    async with gateway_to(f"127.0.0.1:{free_port()}") as http:
        schema = (await http.get("/openapi.json")).json()
    operation = schema["paths"]["/v1/metrics"]["post"]
    assert set(operation["requestBody"]["content"]) == {
        "application/x-protobuf",
        "application/json",
    }
    assert {"200", "400", "413", "415", "429", "503"} <= set(operation["responses"])
