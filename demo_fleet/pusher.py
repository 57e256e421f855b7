"""The demo's pushed metrics: what a service that embeds no agent sends, three ways.

`python -m demo_fleet.pusher --gateway URL --otlp HOST:PORT` pushes, every second until it is
stopped (or its parent goes away):

- seed 004's events (`POST /metrics/events`): logins, appointments and notifications of the
  `metrics-service` row (the aggregator's `[ingest] default_service`);
- seed 003's batch (`POST /api/v1/metrics/batch`): `cpu_usage_percent` and
  `memory_usage_percent` of three hosts, a `queue_depth` gauge and a `jobs_processed_total`
  counter, pushed series;
- OpenTelemetry's OTLP/gRPC Export (every 2 s, to the aggregator's OTLP port): the cumulative
  `http.server.request.duration` histogram of a `checkout` service that is not in the
  registry, built with the `opentelemetry-proto` messages as any OTLP SDK sends them. It shows
  as a row with its rate, error rate (its 500s) and latency.

With `--config FILE` it pushes as the mesh's programs do: over TLS with the file's `[tls]`
(its certificate shown under mutual TLS) and with `[auth] client_token` as its bearer token
(`metrics-mesh demo --secure`).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import random
import signal
import sys
import time
from dataclasses import dataclass, field
from types import FrameType

import grpc
import httpx
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.resource.v1 import resource_pb2

from mesh_common.auth_client import AUTHORIZATION
from mesh_common.auth_settings import SECTION as AUTH
from mesh_common.config import load_mesh_file
from mesh_common.errors import ConfigError
from mesh_common.options import add_config_option
from mesh_common.tls import PLAINTEXT, TlsSettings, https_client_context
from mesh_common.tls import SECTION as TLS
from mesh_common.transport import open_blocking_channel

EVENT_TYPES = ("user_login", "appointment_created", "notification_sent")
HOSTS = ("server01", "server02", "server03")
ROUTES = {"/cart": 0.035, "/pay": 0.180}
"""Checkout's routes and their typical duration in seconds."""
BOUNDS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
"""OpenTelemetry's default explicit bounds for a duration in seconds."""
OTLP_EVERY_SECONDS = 2.0


@dataclass
class Checkout:
    """The cumulative histogram streams of the fake `checkout` service, by (route, status)."""

    start_nanos: int = field(default_factory=time.time_ns)
    streams: dict[tuple[str, int], list[int]] = field(default_factory=dict)
    sums: dict[tuple[str, int], float] = field(default_factory=dict)

    def serve(self, requests: int) -> None:
        """Record `requests` requests with made-up durations; about 2 % fail with a 500."""
        for _ in range(requests):
            route = random.choice(tuple(ROUTES))
            status = 500 if random.random() < 0.02 else 200
            seconds = random.lognormvariate(math.log(ROUTES[route]), 0.5)
            counts = self.streams.setdefault((route, status), [0] * (len(BOUNDS) + 1))
            counts[sum(1 for bound in BOUNDS if seconds > bound)] += 1
            self.sums[(route, status)] = self.sums.get((route, status), 0.0) + seconds

    def request(self) -> metrics_service_pb2.ExportMetricsServiceRequest:
        """The streams as one OTLP Export request (cumulative temporality)."""
        now = time.time_ns()
        points = [
            metrics_pb2.HistogramDataPoint(
                attributes=[
                    _attribute("http.route", route),
                    _attribute("http.request.method", "POST" if route == "/pay" else "GET"),
                    common_pb2.KeyValue(
                        key="http.response.status_code",
                        value=common_pb2.AnyValue(int_value=status),
                    ),
                ],
                start_time_unix_nano=self.start_nanos,
                time_unix_nano=now,
                count=sum(counts),
                sum=self.sums[(route, status)],
                bucket_counts=counts,
                explicit_bounds=BOUNDS,
            )
            for (route, status), counts in sorted(self.streams.items())
        ]
        metric = metrics_pb2.Metric(
            name="http.server.request.duration",
            unit="s",
            histogram=metrics_pb2.Histogram(
                data_points=points,
                aggregation_temporality=metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE,
            ),
        )
        return metrics_service_pb2.ExportMetricsServiceRequest(
            resource_metrics=[
                metrics_pb2.ResourceMetrics(
                    resource=resource_pb2.Resource(
                        attributes=[_attribute("service.name", "checkout")]
                    ),
                    scope_metrics=[metrics_pb2.ScopeMetrics(metrics=[metric])],
                )
            ]
        )


def _attribute(key: str, value: str) -> common_pb2.KeyValue:
    return common_pb2.KeyValue(key=key, value=common_pb2.AnyValue(string_value=value))


@dataclass
class Gauges:
    """Random walks of the hosts' CPU and memory, a queue and a job counter."""

    cpu: dict[str, float] = field(default_factory=lambda: dict.fromkeys(HOSTS, 45.0))
    memory: dict[str, float] = field(default_factory=lambda: dict.fromkeys(HOSTS, 60.0))
    jobs: int = 0

    def batch(self) -> dict[str, object]:
        """Seed 003's batch body with this second's values."""
        metrics: list[dict[str, object]] = []
        for host in HOSTS:
            self.cpu[host] = min(99.0, max(5.0, self.cpu[host] + random.uniform(-6, 6)))
            self.memory[host] = min(95.0, max(30.0, self.memory[host] + random.uniform(-2, 2)))
            metrics.append(_gauge("cpu_usage_percent", self.cpu[host], host, "CPU usage"))
            metrics.append(_gauge("memory_usage_percent", self.memory[host], host, "Memory usage"))
        self.jobs += random.randint(0, 12)
        metrics.append(
            {
                "name": "queue_depth",
                "type": "gauge",
                "value": random.randint(0, 40),
                "labels": {"queue": "emails"},
                "help_text": "Messages waiting",
            }
        )
        metrics.append(
            {
                "name": "jobs_processed_total",
                "type": "counter",
                "value": self.jobs,
                "labels": {"queue": "emails"},
                "help_text": "Jobs processed since the worker started",
            }
        )
        return {"metrics": metrics}


def _gauge(name: str, value: float, host: str, help_text: str) -> dict[str, object]:
    return {
        "name": name,
        "type": "gauge",
        "value": round(value, 1),
        "labels": {"host": host},
        "help_text": help_text,
        "unit": "percent",
    }


def push_forever(
    gateway: str,
    otlp: str,
    parent_pid: int | None,
    *,
    tls: TlsSettings = PLAINTEXT,
    token: str = "",
) -> None:
    """Push every second until stopped; a failed push is logged and the next one tried.

    `tls` secures both the gateway's HTTPS and the OTLP channel; `token` ('' = none) is the
    bearer token of every push.
    """
    checkout = Checkout()
    gauges = Gauges()
    next_otlp = time.monotonic()
    bearer = f"Bearer {token}"
    with (
        httpx.Client(
            base_url=gateway,
            timeout=5.0,
            verify=https_client_context(tls) if tls.enabled else True,
            headers={"Authorization": bearer} if token else {},
        ) as http,
        open_blocking_channel(otlp, tls=tls) as channel,
    ):
        stub = metrics_service_pb2_grpc.MetricsServiceStub(channel)  # type: ignore[no-untyped-call]
        export = stub.Export
        metadata = ((AUTHORIZATION, bearer),) if token else ()
        while parent_pid is None or os.getppid() == parent_pid:
            started = time.monotonic()
            try:
                for _ in range(random.randint(1, 3)):
                    body = {
                        "event_type": random.choice(EVENT_TYPES),
                        "user_id": random.randint(1, 500),
                        "metadata": {"browser": "chrome"},
                    }
                    http.post("/metrics/events", json=body).raise_for_status()
                http.post("/api/v1/metrics/batch", json=gauges.batch()).raise_for_status()
                checkout.serve(random.randint(20, 40))
                if started >= next_otlp:
                    export(checkout.request(), timeout=5.0, metadata=metadata)
                    next_otlp = started + OTLP_EVERY_SECONDS
            except httpx.HTTPError as error:
                print(f"pusher: a REST push failed ({error}); trying again", flush=True)
            except grpc.RpcError as error:
                reason = error.details() if isinstance(error, grpc.Call) else repr(error)
                print(f"pusher: an OTLP Export failed ({reason}); trying again", flush=True)
            time.sleep(max(0.0, 1.0 - (time.monotonic() - started)))


def _stop(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def main(argv: list[str] | None = None) -> int:
    """`python -m demo_fleet.pusher`: push until SIGINT/SIGTERM."""
    parser = argparse.ArgumentParser(
        prog="python -m demo_fleet.pusher",
        description="Push seed 003 metrics, seed 004 events and OTLP to a running mesh.",
    )
    parser.add_argument("--gateway", required=True, help="the gateway's base URL")
    parser.add_argument("--otlp", required=True, help="host:port of the aggregator's OTLP port")
    parser.add_argument("--parent-pid", type=int, help="exit when this parent process is gone")
    add_config_option(parser)
    args = parser.parse_args(argv)
    try:
        mesh = load_mesh_file(args.config)
        tls, token = mesh.read(TLS), mesh.read(AUTH).client_token
    except ConfigError as error:
        parser.error(str(error))
    signal.signal(signal.SIGTERM, _stop)
    with contextlib.suppress(KeyboardInterrupt):
        push_forever(args.gateway, args.otlp, args.parent_pid, tls=tls, token=token)
    return 0


if __name__ == "__main__":
    sys.exit(main())
