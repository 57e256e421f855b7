"""OTLP Export of 1000 data points: server CPU per request over OTLP/gRPC and OTLP/HTTP.

python -m bench ingest_otlp

The servers (an aggregator without agents and a gateway in front of it, one event loop) run in
a child process; its CPU time (/proc, user + system) is read around REQUESTS sequential
requests from this process, so the figures are the servers' CPU, not the client's. Each
request is 10 services x (50 `http.server.request.duration` points, explicit semconv buckets,
cumulative, 10 routes x 5 statuses + 50 gauge and counter points): 1000 data points, counts
growing from request to request so every one is real work. Ratios are against the baseline
measured in the same run: parsing the same request (protobuf `FromString`) in this process.
Target (issue 18): <= 20 ms of server CPU per OTLP/gRPC request.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import timeit

import grpc
import httpx
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.metrics.v1 import metrics_pb2

from aggregator._ingest.ingestor import Ingestor
from aggregator._ingest.otlp import export
from aggregator._ingest.settings import IngestSettings
from mesh_common.clocks import SYSTEM_CLOCKS

REQUESTS = 200
TARGET_GRPC_MS = 20.0
SERVICES, ROUTES, STATUSES = 10, 10, (200, 201, 404, 500, 503)
BOUNDS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10)
EXPORT = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"
TICKS = os.sysconf("SC_CLK_TCK")

SERVERS = """
import asyncio, sys
from aggregator import AggregatorServer, AggregatorSettings, Registry
from aggregator._ingest.settings import IngestSettings
from gateway import GatewaySettings
from gateway.__main__ import uvicorn_config
import uvicorn

async def main():
    aggregator = AggregatorServer(Registry(()), AggregatorSettings(port=0),
                                  ingest=IngestSettings(otlp_port=-1))
    port = await aggregator.start()
    settings = GatewaySettings(aggregator=f"127.0.0.1:{port}", port=0, rate_limit_per_second=0)
    server = uvicorn.Server(uvicorn_config(settings, host="127.0.0.1", port=0, log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.05)
    http_port = server.servers[0].sockets[0].getsockname()[1]
    print(port, http_port, flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    server.should_exit = True
    await task
    await aggregator.stop(0)

asyncio.run(main())
"""


AGGREGATOR_ONLY = """
import asyncio, sys
from aggregator import AggregatorServer, AggregatorSettings, Registry
from aggregator._ingest.settings import IngestSettings

async def main():
    aggregator = AggregatorServer(Registry(()), AggregatorSettings(port=0),
                                  ingest=IngestSettings(otlp_port=-1))
    print(await aggregator.start(), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await aggregator.stop(0)

asyncio.run(main())
"""
"""The aggregator alone, as it runs (rounds every second): the OTLP/gRPC server measured."""


def _kv(key: str, value: str | int) -> common_pb2.KeyValue:
    if isinstance(value, int):
        return common_pb2.KeyValue(key=key, value=common_pb2.AnyValue(int_value=value))
    return common_pb2.KeyValue(key=key, value=common_pb2.AnyValue(string_value=value))


def build_request(round_: int) -> metrics_service_pb2.ExportMetricsServiceRequest:
    """1000 data points; every count grows with `round_` (cumulative)."""
    now = time.time_ns()
    start = now - 60 * 10**9
    request = metrics_service_pb2.ExportMetricsServiceRequest()
    for s in range(SERVICES):
        resource = request.resource_metrics.add()
        resource.resource.attributes.append(_kv("service.name", f"service-{s}"))
        metrics = resource.scope_metrics.add().metrics
        durations = metrics.add(name="http.server.request.duration", unit="s")
        durations.histogram.aggregation_temporality = metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
        for route in range(ROUTES):
            for status in STATUSES:
                counts = [(round_ + 1) * (i % 4) for i in range(len(BOUNDS) + 1)]
                point = durations.histogram.data_points.add(
                    count=sum(counts), sum=0.1 * sum(counts), bucket_counts=counts,
                    explicit_bounds=BOUNDS, start_time_unix_nano=start, time_unix_nano=now,
                )  # fmt: skip
                point.attributes.extend(
                    (_kv("http.route", f"/api/r{route}"), _kv("http.request.method", "GET"),
                     _kv("http.response.status_code", status))
                )  # fmt: skip
        for m in range(5):
            gauge = metrics.add(name=f"app.metric{m}", unit="1")
            for label in range(10):
                point = gauge.gauge.data_points.add(as_double=round_ + label, time_unix_nano=now)
                point.attributes.append(_kv("shard", f"s{label}"))
    return request


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid`, from /proc."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def parse_baseline(body: bytes) -> float:
    """Seconds to parse `body` once (best of 5 x 20)."""
    parse = metrics_service_pb2.ExportMetricsServiceRequest.FromString
    return min(timeit.repeat(lambda: parse(body), number=20, repeat=5)) / 20


def in_process(bodies: list[bytes]) -> float:
    """Seconds per request of parse + conversion + ingestion alone (no transport)."""
    ingestor = Ingestor(IngestSettings(), SYSTEM_CLOCKS)
    parse = metrics_service_pb2.ExportMetricsServiceRequest.FromString
    started = time.process_time()
    for body in bodies:
        answer = export(ingestor, parse(body))
        assert not answer.HasField("partial_success"), answer
    return (time.process_time() - started) / len(bodies)


def measure(pid: int, send: object, bodies: list[bytes]) -> tuple[float, float]:
    """(server CPU seconds, wall seconds) per request."""
    assert callable(send)
    send(bodies[0])  # connect, warm up
    cpu, wall = cpu_seconds(pid), time.perf_counter()
    for body in bodies[1:]:
        send(body)
    count = len(bodies) - 1
    return (cpu_seconds(pid) - cpu) / count, (time.perf_counter() - wall) / count


def main() -> None:
    bodies = [build_request(i).SerializeToString() for i in range(REQUESTS + 1)]
    baseline = parse_baseline(bodies[0])
    print(f"request: 1000 data points, {len(bodies[0]):,} B protobuf")
    print(f"baseline, parse alone (FromString): {baseline * 1e3:.2f} ms")
    alone = in_process(bodies)
    print(f"parse + convert + ingest, in process: {alone * 1e3:.2f} ms ({alone / baseline:.1f}x)")
    alone_server = subprocess.Popen(
        [sys.executable, "-c", AGGREGATOR_ONLY], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert alone_server.stdout is not None
        port = int(alone_server.stdout.readline())
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            call = channel.unary_unary(EXPORT)
            cpu, wall = measure(alone_server.pid, lambda body: call(body, timeout=10), bodies)
        print(
            f"OTLP/gRPC Export, the aggregator alone: server CPU {cpu * 1e3:.2f} ms/request "
            f"({cpu / baseline:.1f}x), wall {wall * 1e3:.2f} ms (target <= {TARGET_GRPC_MS:g} ms "
            f"CPU: {'ok' if cpu * 1e3 <= TARGET_GRPC_MS else 'MISSED'})"
        )
    finally:
        if alone_server.stdin is not None:
            alone_server.stdin.close()
        alone_server.wait(30)
    child = subprocess.Popen(
        [sys.executable, "-c", SERVERS], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None and child.stdin is not None
        grpc_port, http_port = map(int, child.stdout.readline().split())
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            call = channel.unary_unary(EXPORT)
            cpu, wall = measure(child.pid, lambda body: call(body, timeout=10), bodies)
        print(
            f"OTLP/gRPC Export, aggregator + gateway in one process (the gateway receives the "
            f"changed series of every round): CPU {cpu * 1e3:.2f} ms/request "
            f"({cpu / baseline:.1f}x), wall {wall * 1e3:.2f} ms"
        )
        headers = {"content-type": "application/x-protobuf"}
        with httpx.Client(base_url=f"http://127.0.0.1:{http_port}", timeout=10) as http:

            def post(body: bytes) -> None:
                assert http.post("/v1/metrics", content=body, headers=headers).status_code == 200

            cpu, wall = measure(
                child.pid,
                post,
                [build_request(REQUESTS + 1 + i).SerializeToString() for i in range(REQUESTS + 1)],
            )
        print(
            f"OTLP/HTTP via the gateway: gateway + aggregator CPU {cpu * 1e3:.2f} ms/request "
            f"({cpu / baseline:.1f}x), wall {wall * 1e3:.2f} ms"
        )
    finally:
        if child.stdin is not None:
            child.stdin.close()
        child.wait(30)


if __name__ == "__main__":
    main()
