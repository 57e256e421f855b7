"""A small OpenTelemetry-instrumented program, the OTLP tests' client (the real SDK).

`Program` is a `MeterProvider` with one OTLP exporter (gRPC or HTTP, the SDK's own) behind a
reader that exports only when asked (`flush()`, no timer). `serve_requests()` records the
durations the tests chose on the semantic conventions' `http.server.request.duration`: 100
requests of `POST /pay`, 10 of them answered 500, so the row's figures are known exactly.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
    OTLPMetricExporter as GrpcExporter,
)
from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
    OTLPMetricExporter as HttpExporter,
)
from opentelemetry.sdk.metrics import Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import MetricExporter, PeriodicExportingMetricReader
from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation
from opentelemetry.sdk.resources import Resource

OK_SECONDS = tuple(0.010 + 0.001 * i for i in range(90))
"""The durations of the 90 requests answered 200: 10 ms .. 99 ms."""
FAILED_SECONDS = tuple(0.300 + 0.050 * i for i in range(10))
"""The durations of the 10 requests answered 500: 300 ms .. 750 ms."""
P99_SECONDS = sorted(OK_SECONDS + FAILED_SECONDS)[98]
"""The exact p99 (nearest rank: the 99th of 100): 0.70 s."""
SEMCONV_BOUNDS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10)
"""The semantic conventions' advised buckets of `http.server.request.duration`."""


def grpc_exporter(port: int, **options: Any) -> MetricExporter:
    """The SDK's OTLP/gRPC exporter to 127.0.0.1:`port`."""
    return GrpcExporter(endpoint=f"127.0.0.1:{port}", insecure=True, timeout=10, **options)


def http_exporter(base_url: str, **options: Any) -> MetricExporter:
    """The SDK's OTLP/HTTP exporter to `base_url`/v1/metrics."""
    return HttpExporter(endpoint=f"{base_url}/v1/metrics", timeout=10, **options)


def exponential() -> dict[type, Any]:
    """An exporter's `preferred_aggregation` making histograms exponential."""
    return {Histogram: ExponentialBucketHistogramAggregation()}


class Program:
    """A MeterProvider for service `service` exporting through `exporter` when flushed."""

    def __init__(self, service: str, exporter: MetricExporter) -> None:
        reader = PeriodicExportingMetricReader(exporter, export_interval_millis=math.inf)
        self.provider = MeterProvider(
            metric_readers=[reader],
            resource=Resource.create({"service.name": service}),
        )
        self.meter = self.provider.get_meter("checkout.app")

    def serve_requests(self) -> None:
        """Record the chosen 100 requests on `http.server.request.duration` (seconds)."""
        histogram = self.meter.create_histogram(
            "http.server.request.duration",
            unit="s",
            explicit_bucket_boundaries_advisory=list(SEMCONV_BOUNDS),
        )
        for status, durations in ((200, OK_SECONDS), (500, FAILED_SECONDS)):
            attributes = {
                "http.route": "/pay",
                "http.request.method": "POST",
                "http.response.status_code": status,
            }
            for seconds in durations:
                histogram.record(seconds, attributes)

    async def flush(self) -> None:
        """Export now (in a thread: the servers answering run on this event loop)."""
        assert await asyncio.to_thread(self.provider.force_flush, 10_000)

    async def close(self) -> None:
        """Shut the provider down (a last export included)."""
        await asyncio.to_thread(self.provider.shutdown)
