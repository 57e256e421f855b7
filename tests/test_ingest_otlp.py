"""OTLP/gRPC into the mesh: the real OpenTelemetry SDK as the client, and the mapping's rules.

The SDK program (tests/otlp_program.py) records 100 requests it chose on
`http.server.request.duration`; the aggregator must show them as a row with the exact counts
and the p99 within the stated error, on its own port and on its OTLP port. The mapping's
rules are checked on the conversion itself (`export` on an `Ingestor`, fake clock).
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

import grpc
import pytest
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.metrics.v1 import metrics_pb2

from aggregator import AggregatorServer, AggregatorSettings, Registry
from aggregator._ingest.ingestor import Ingestor
from aggregator._ingest.model import MetricType
from aggregator._ingest.otlp import export
from aggregator._ingest.settings import IngestSettings
from mesh_common.clocks import Clocks
from mesh_common.latency import RELATIVE_ERROR, Histogram, index_of
from tests.clocks import FakeClock
from tests.otlp_mesh import export as export_call
from tests.otlp_mesh import otlp_aggregator, pushed, row_with
from tests.otlp_program import P99_SECONDS, Program, exponential, grpc_exporter

WALL = 1_800_000_000.0
CUMULATIVE = metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
DELTA = metrics_pb2.AGGREGATION_TEMPORALITY_DELTA


def seconds(duration: Any) -> float:
    return float(duration.seconds + duration.nanos / 1e9)


# -- the real SDK over OTLP/gRPC -------------------------------------------------------------


@pytest.mark.parametrize("port", ["aggregator port", "otlp port"])
async def test_an_sdk_program_is_a_row_with_its_events_errors_and_p99(port: str) -> None:
    async with otlp_aggregator() as server:
        assert server.otlp_port is not None and server.otlp_port != server.port
        target = server.port if port == "aggregator port" else server.otlp_port
        program = Program("checkout", grpc_exporter(target, preferred_aggregation=exponential()))
        program.serve_requests()
        await program.flush()
        row = await row_with(server.address, "checkout", 100)
        await program.close()
    assert row.service_type == "pushed"
    assert (row.total_errors, row.window_events, row.window_errors) == (10, 100, 10)
    (kind,) = row.kinds
    assert (kind.kind, kind.total_events, kind.total_errors) == ("/pay", 100, 10)
    # Exponential buckets at scale >= 4 merge exactly: the mesh's own error bound holds.
    assert seconds(row.latency.p99) == pytest.approx(P99_SECONDS, rel=RELATIVE_ERROR)
    assert seconds(row.latency.max) == pytest.approx(0.75)


async def test_explicit_buckets_keep_their_resolution() -> None:
    async with otlp_aggregator() as server:
        program = Program("checkout", grpc_exporter(server.port))
        program.serve_requests()
        await program.flush()
        row = await row_with(server.address, "checkout", 100)
        await program.close()
    # 0.70 s lies in the advised bucket (0.5, 0.75]: the p99 reads its upper bound (the
    # stated max, 0.75 s, is in that bucket too): within the bucket's width, never below.
    p99 = seconds(row.latency.p99)
    assert P99_SECONDS * (1 - RELATIVE_ERROR) <= p99 <= 0.75 * (1 + RELATIVE_ERROR)
    assert row.total_errors == 10


async def test_a_second_export_adds_only_what_grew() -> None:
    async with otlp_aggregator() as server:
        program = Program("checkout", grpc_exporter(server.port))
        program.serve_requests()
        await program.flush()
        await row_with(server.address, "checkout", 100)
        program.serve_requests()  # cumulative: the next export reads 200
        await program.flush()
        row = await row_with(server.address, "checkout", 200)
        await program.close()
    assert (row.total_errors, row.window_events, row.window_errors) == (20, 200, 20)


async def test_a_gauge_and_a_counter_become_pushed_series() -> None:
    async with otlp_aggregator() as server:
        program = Program("billing", grpc_exporter(server.port))
        program.meter.create_counter("jobs.done", unit="1", description="Jobs done").add(
            5, {"queue": "nightly"}
        )
        program.meter.create_gauge("queue.depth").set(7, {"queue": "nightly"})
        await program.flush()
        values = await pushed(server.address)
        await program.close()
    by_name = {value.name: value for value in values}
    assert set(by_name) == {"jobs_done", "queue_depth"}
    jobs = by_name["jobs_done"]
    assert (jobs.type, jobs.value, jobs.help_text, jobs.service_name) == (
        2,  # PUSHED_METRIC_TYPE_COUNTER
        5.0,
        "Jobs done",
        "billing",
    )
    labels = dict(jobs.labels)
    # The SDK gives every process a `service.instance.id`: the `instance` label.
    assert (
        labels.pop("instance")
        == program.provider._sdk_config.resource.attributes["service.instance.id"]
    )
    assert labels == {"queue": "nightly", "job": "billing"}
    assert by_name["queue_depth"].value == 7.0


async def test_refused_points_are_counted_and_named_in_partial_success() -> None:
    request = _request(
        _gauge("temperature", math.nan, time.time()),
        _gauge("humidity", 41.0, time.time()),
        _exponential_durations(negative=True, at=time.time()),
    )
    async with otlp_aggregator() as server:
        answer = await export_call(server.address, request)
        assert [value.name for value in await pushed(server.address)] == ["humidity"]
    assert answer.partial_success.rejected_data_points == 2
    message = answer.partial_success.error_message
    assert message.startswith("2 of 3 data points refused: ")
    assert "'temperature' point 0: value nan is not a finite number" in message
    assert "'http.server.request.duration' point 0: negative bucket counts" in message


async def test_series_past_max_series_are_refused_with_the_cap_named() -> None:
    request = _request(*(_gauge(f"g{i}", 1.0, time.time()) for i in range(3)))
    async with otlp_aggregator(max_series=2) as server:
        answer = await export_call(server.address, request)
    assert answer.partial_success.rejected_data_points == 1
    assert "2 pushed series are held already (max_series)" in answer.partial_success.error_message


async def test_a_malformed_request_is_invalid_argument() -> None:
    async with (
        otlp_aggregator() as server,
        grpc.aio.insecure_channel(server.address) as channel,
    ):
        call = channel.unary_unary(
            "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"
        )
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await call(b"\xff\xff\xff")
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "ExportMetricsServiceRequest" in (raised.value.details() or "")


async def test_reflection_lists_the_otlp_service() -> None:
    async with otlp_aggregator() as server:

        def services() -> tuple[str, ...]:
            with grpc.insecure_channel(server.address) as channel:
                return tuple(ProtoReflectionDescriptorDatabase(channel).get_services())

        names = await asyncio.to_thread(services)
    assert "opentelemetry.proto.collector.metrics.v1.MetricsService" in names


async def test_no_second_port_without_ingest_settings() -> None:
    async with AggregatorServer(Registry(()), AggregatorSettings(port=0)) as server:
        assert server.otlp_port is None
    async with otlp_aggregator(otlp_port=-1) as server:
        assert server.otlp_port is None


# -- the mapping, on the conversion itself ---------------------------------------------------


def _ingestor(clock: FakeClock, **settings: Any) -> Ingestor:
    clocks = Clocks(monotonic=clock, wall=lambda: WALL + clock.now)
    return Ingestor(IngestSettings(**settings), clocks)


def _attributes(**values: Any) -> list[common_pb2.KeyValue]:
    result = []
    for key, value in values.items():
        any_value = (
            common_pb2.AnyValue(int_value=value)
            if isinstance(value, int)
            else common_pb2.AnyValue(string_value=value)
        )
        result.append(common_pb2.KeyValue(key=key.replace("__", "."), value=any_value))
    return result


def _request(
    *metrics: metrics_pb2.Metric, service: str | None = "checkout"
) -> metrics_service_pb2.ExportMetricsServiceRequest:
    request = metrics_service_pb2.ExportMetricsServiceRequest()
    resource_metrics = request.resource_metrics.add()
    if service is not None:
        resource_metrics.resource.attributes.extend(_attributes(service__name=service))
    resource_metrics.scope_metrics.add().metrics.extend(metrics)
    return request


def _now_nanos() -> int:
    return int(WALL * 1e9)


def _gauge(name: str, value: float, at: float = WALL, **attributes: Any) -> metrics_pb2.Metric:
    metric = metrics_pb2.Metric(name=name)
    point = metric.gauge.data_points.add(as_double=value, time_unix_nano=int(at * 1e9))
    point.attributes.extend(_attributes(**attributes))
    return metric


def _sum(name: str, value: int, temporality: int, *, monotonic: bool = True) -> metrics_pb2.Metric:
    metric = metrics_pb2.Metric(name=name)
    metric.sum.aggregation_temporality = temporality
    metric.sum.is_monotonic = monotonic
    metric.sum.data_points.add(as_int=value, time_unix_nano=_now_nanos())
    return metric


def _explicit_durations(
    bounds: list[float], counts: list[int], *, unit: str = "s", status: int = 200, **extra: Any
) -> metrics_pb2.Metric:
    metric = metrics_pb2.Metric(name="http.server.request.duration", unit=unit)
    metric.histogram.aggregation_temporality = DELTA
    point = metric.histogram.data_points.add(
        count=sum(counts),
        bucket_counts=counts,
        explicit_bounds=bounds,
        start_time_unix_nano=_now_nanos() - 10**9,
        time_unix_nano=_now_nanos(),
        **extra,
    )
    point.attributes.extend(_attributes(http__route="/pay", http__response__status_code=status))
    return metric


def _exponential_durations(
    *,
    scale: int = 4,
    offset: int = 0,
    counts: tuple[int, ...] = (1,),
    negative: bool = False,
    at: float = WALL,
) -> metrics_pb2.Metric:
    metric = metrics_pb2.Metric(name="http.server.request.duration", unit="s")
    metric.exponential_histogram.aggregation_temporality = DELTA
    point = metric.exponential_histogram.data_points.add(
        scale=scale,
        count=sum(counts) + (1 if negative else 0),
        start_time_unix_nano=int(at * 1e9) - 10**9,
        time_unix_nano=int(at * 1e9),
    )
    point.positive.offset = offset
    point.positive.bucket_counts.extend(counts)
    if negative:
        point.negative.bucket_counts.append(1)
    return metric


def _latency(ingestor: Ingestor, service: str = "checkout") -> Histogram:
    figures = ingestor.round().outcomes[service].figures
    assert figures is not None and figures.latency is not None
    return figures.latency


def test_explicit_buckets_go_to_the_mesh_bucket_of_their_upper_bound(clock: FakeClock) -> None:
    ingestor = _ingestor(clock)
    answer = export(ingestor, _request(_explicit_durations([0.1, 0.5], [3, 2, 1])))
    assert not answer.HasField("partial_success")
    latency = _latency(ingestor)
    counts = dict((latency.offset + i, count) for i, count in enumerate(latency.counts) if count)
    # (.., 0.1] at 0.1; (0.1, 0.5] at 0.5; (0.5, +Inf) at the last finite bound, 0.5.
    assert counts == {index_of(0.1): 3, index_of(0.5): 3}


def test_the_stated_max_places_the_highest_bucket(clock: FakeClock) -> None:
    ingestor = _ingestor(clock)
    export(ingestor, _request(_explicit_durations([0.1, 0.5], [3, 0, 1], max=2.0)))
    latency = _latency(ingestor)
    assert latency.offset + len(latency.counts) - 1 == index_of(2.0)
    assert latency.max_seconds == 2.0


def test_milliseconds_are_converted_to_seconds(clock: FakeClock) -> None:
    ingestor = _ingestor(clock)
    export(ingestor, _request(_explicit_durations([100.0], [4, 0], unit="ms")))
    assert _latency(ingestor).offset == index_of(0.1)


def test_a_unit_that_is_no_duration_refuses_the_points(clock: FakeClock) -> None:
    ingestor = _ingestor(clock)
    answer = export(ingestor, _request(_explicit_durations([1.0], [1, 0], unit="By")))
    assert answer.partial_success.rejected_data_points == 1
    assert "unit 'By' is not a duration (s, ms, us, ns)" in answer.partial_success.error_message


def test_exponential_buckets_of_a_finer_scale_merge_exactly(clock: FakeClock) -> None:
    ingestor = _ingestor(clock)
    # Scale 6: four buckets per mesh bucket. Buckets 40..47 fall in mesh buckets 10 and 11.
    export(ingestor, _request(_exponential_durations(scale=6, offset=40, counts=(1,) * 8)))
    latency = _latency(ingestor)
    assert (latency.offset, latency.counts) == (10, (4, 4))


def test_exponential_buckets_of_a_coarser_scale_go_to_their_upper_bound(clock: FakeClock) -> None:
    ingestor = _ingestor(clock)
    # Scale 0: bucket -4 is (1/16 s, 1/8 s]: counted at 1/8 s, i.e. mesh bucket 16 * -3 - 1.
    export(ingestor, _request(_exponential_durations(scale=0, offset=-4, counts=(5,))))
    latency = _latency(ingestor)
    assert (latency.offset, latency.counts) == (index_of(0.125), (5,))


def test_errors_are_the_5xx_points(clock: FakeClock) -> None:
    ingestor = _ingestor(clock)
    export(
        ingestor,
        _request(
            _explicit_durations([0.1], [9, 0], status=200),
            _explicit_durations([0.1], [1, 0], status=503),
        ),
    )
    figures = ingestor.round().outcomes["checkout"].figures
    assert figures is not None
    assert (figures.total_events, figures.total_errors) == (10, 1)


def test_delta_sums_add_up_and_cumulative_sums_are_read_as_running_totals(
    clock: FakeClock,
) -> None:
    ingestor = _ingestor(clock)
    for value in (3, 4):
        export(ingestor, _request(_sum("bytes.sent", value, DELTA)))
        export(ingestor, _request(_sum("requests", value * 10, CUMULATIVE)))
        clock.tick(1)
    (sent,) = ingestor.series.read("bytes_sent")
    (requests,) = ingestor.series.read("requests")
    assert (sent.type, sent.value) == (MetricType.COUNTER, 7.0)
    assert (requests.type, requests.value, requests.total) == (MetricType.COUNTER, 40.0, 40.0)


def test_a_non_duration_histogram_and_a_summary_are_count_and_sum_counters(
    clock: FakeClock,
) -> None:
    histogram = metrics_pb2.Metric(name="payload.size", unit="By")
    histogram.histogram.aggregation_temporality = CUMULATIVE
    histogram.histogram.data_points.add(count=4, sum=4096.0, time_unix_nano=_now_nanos())
    summary = metrics_pb2.Metric(name="gc.pause")
    point = summary.summary.data_points.add(count=2, sum=0.5, time_unix_nano=_now_nanos())
    point.quantile_values.add(quantile=0.99, value=0.4)
    ingestor = _ingestor(clock)
    assert not export(ingestor, _request(histogram, summary)).HasField("partial_success")
    values = {(s.name, s.labels): (s.type, s.value) for s in ingestor.series.read()}
    job = ("job", "checkout")
    assert values == {
        ("payload_size_count", (job,)): (MetricType.COUNTER, 4.0),
        ("payload_size_sum", (job,)): (MetricType.COUNTER, 4096.0),
        ("gc_pause_count", (job,)): (MetricType.COUNTER, 2.0),
        ("gc_pause_sum", (job,)): (MetricType.COUNTER, 0.5),
        ("gc_pause", (job, ("quantile", "0.99"))): (MetricType.GAUGE, 0.4),
    }


def test_a_resource_without_service_name_is_unknown_service(clock: FakeClock) -> None:
    ingestor = _ingestor(clock)
    export(ingestor, _request(_explicit_durations([0.1], [1, 0]), service=None))
    assert list(ingestor.round().outcomes) == ["unknown_service"]


def test_names_and_attributes_take_prometheus_syntax(clock: FakeClock) -> None:
    ingestor = _ingestor(clock)
    export(ingestor, _request(_gauge("9lives.cpu-usage", 1.0, host__name="a", host_name="b")))
    (series,) = ingestor.series.read()
    assert series.name == "_9lives_cpu_usage"
    assert dict(series.labels) == {"host_name": "a;b", "job": "checkout"}


def test_a_request_past_max_batch_is_split_and_every_point_kept(clock: FakeClock) -> None:
    ingestor = _ingestor(clock, max_batch=10)
    answer = export(ingestor, _request(*(_gauge(f"g{i}", float(i)) for i in range(25))))
    assert not answer.HasField("partial_success")
    assert ingestor.series.count == 25
