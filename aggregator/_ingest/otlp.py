"""OpenTelemetry's OTLP metrics into the ingestion path: `export` answers MetricsService/Export.

An `ExportMetricsServiceRequest` (OTLP/gRPC on the aggregator, OTLP/HTTP through the gateway)
becomes `MetricPoint`s and `KindPoint`s handed to `Ingestor.ingest` (in calls of at most
`max_batch` items), and every data point that is not kept is counted in the answer's
`partial_success.rejected_data_points`, its reason in `error_message`: nothing is dropped
silently. The mapping:

| OTLP | The mesh |
|---|---|
| resource `service.name` | the pushed row; the `job` label of its series (1) |
| resource `service.instance.id` | the `instance` label; keeps instances' streams apart |
| duration histogram (2) | one kind of the row: events = `count`, errors, latency |
| its kind | `http.route`, else `http.request.method`, else `request` (HTTP); |
| | `rpc.service/rpc.method`, else `rpc.method`, else `request` (RPC) |
| its errors | the whole count of a point with `http.response.status_code` 5xx, |
| | `rpc.grpc.status_code` not 0, `rpc.response.status_code` not `OK`, |
| | or any `error.type` attribute |
| its unit | `s`, `ms`, `us`, `ns` to seconds; none: the convention's (3) |
| explicit buckets | each count at its bucket's upper bound (4) |
| exponential buckets | scale >= 4 in seconds: exact; else at the upper bound (5) |
| cumulative | a stream read reset-aware from its start time (6) |
| delta | new events; a delta sum is added to its series' latest value |
| gauge, non-monotonic sum | a gauge series |
| monotonic sum | a counter series |
| other histogram | counters `<name>_count`, `<name>_sum` (buckets not kept) |
| summary | counters `<name>_count`, `<name>_sum`; gauges `<name>{quantile="q"}` |
| metric, attribute names | Prometheus syntax (7) |
| description, unit | the series' help text and unit |
| `time_unix_nano` | the value's time (too old or ahead: refused (8)) |
| flag "no recorded value" | skipped: the point carries no value (not rejected) |

1. Without `service.name`, OpenTelemetry's own default `unknown_service` names the row.
2. `http.server.request.duration`, `rpc.server.duration`, `rpc.server.call.duration`: the
   module constant `DURATION_METRICS` (not a setting: change it there for another convention).
3. `s`, or `ms` for `rpc.server.duration`; another unit: its points are refused.
4. The highest non-empty bucket at the stated `max` when there is one; the +Inf bucket at
   the last finite bound without one. A quantile reads the explicit bucket's upper bound:
   within that bucket's width (the pusher's resolution), plus the mesh's 2.2 %.
5. Bucket `j` at scale >= 4 lies inside mesh bucket `j >> (scale - 4)`; below scale 4, or in
   another unit than seconds, each count is at its bucket's upper bound (within one OTLP
   bucket). The zero bucket goes to the first mesh bucket; a negative bucket holding a count
   refuses the point (a duration is never negative).
6. Stream = (service, instance, metric, attribute set); the row counts what grew, and a
   reading below the previous one (or a new start time) is a restart counted from 0.
7. Every character outside `[a-zA-Z0-9_:]` (labels: `[a-zA-Z0-9_]`) becomes `_`; a leading
   digit gets `_` (labels: `key_`); attributes meeting on one label name join their values
   with `;`; non-string values as text (arrays and maps as JSON, bytes as base64).
8. `[ingest]` max_past_seconds and max_future_seconds.

The bounds of `[ingest]` apply to every item (names, labels, NaN and infinities refused,
series and services caps): a data point one of whose items is refused is rejected, its other
items are kept.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from google.protobuf import json_format
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.metrics.v1 import metrics_pb2

from aggregator._errors import Refused
from aggregator._ingest.ingestor import Ingestor
from aggregator._ingest.model import KindPoint, Labels, MetricPoint, MetricType, Refusal
from aggregator._ingest.otlp_buckets import explicit, exponential
from aggregator._ingest.otlp_names import label_name, metric_name
from mesh_common.bounded import quote, shorten

UNKNOWN_SERVICE = "unknown_service"
"""The row of a resource without `service.name` (OpenTelemetry's own default name)."""
UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}
"""Duration units and their factor to seconds."""
MAX_REASONS = 5
"""Refused points whose reasons `error_message` spells out (the rest are counted)."""
NO_RECORDED_VALUE = metrics_pb2.DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK
DELTA = metrics_pb2.AGGREGATION_TEMPORALITY_DELTA
CUMULATIVE = metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
Response = metrics_service_pb2.ExportMetricsServiceResponse
Latest = Callable[[str, Labels], float | None]
"""The latest value of a pushed series (name, label set), None when it is not held."""


@dataclass(frozen=True, slots=True)
class DurationMetric:
    """A duration histogram of the semantic conventions: where its kind and status are."""

    name: str
    status: str
    """The attribute holding the status."""
    kinds: tuple[tuple[str, ...], ...]
    """Attribute groups naming the kind, the first one present wins (joined by `/`)."""
    unit: str
    """The unit when the metric states none."""
    failed: Callable[[str], bool]
    """True for a status (as text, non-empty) that counts the events as errors."""


def _http_failed(status: str) -> bool:
    return status.isdigit() and 500 <= int(status) <= 599


DURATION_METRICS: dict[str, DurationMetric] = {
    metric.name: metric
    for metric in (
        DurationMetric(
            "http.server.request.duration",
            "http.response.status_code",
            (("http.route",), ("http.request.method",)),
            "s",
            _http_failed,
        ),
        DurationMetric(
            "rpc.server.duration",
            "rpc.grpc.status_code",
            (("rpc.service", "rpc.method"), ("rpc.method",)),
            "ms",
            lambda status: status != "0",
        ),
        DurationMetric(
            "rpc.server.call.duration",
            "rpc.response.status_code",
            (("rpc.method",),),
            "s",
            lambda status: status not in ("0", "OK"),
        ),
    )
}
"""The histograms read as a row's events, errors and latency (a module constant: change it
here to read another convention)."""


def text(value: common_pb2.AnyValue) -> str:
    """An attribute value as label text (arrays and maps as JSON, bytes as base64)."""
    which = value.WhichOneof("value")
    if which == "string_value":
        return value.string_value
    if which == "bool_value":
        return "true" if value.bool_value else "false"
    if which == "int_value":
        return str(value.int_value)
    if which == "double_value":
        return repr(value.double_value)
    if which == "bytes_value":
        return base64.b64encode(value.bytes_value).decode()
    if which is None:
        return ""
    return json_format.MessageToJson(value, indent=None)


def attributes(items: Iterable[common_pb2.KeyValue]) -> dict[str, str]:
    """Attribute names and their values as text."""
    return {item.key: text(item.value) for item in items}


def _seconds(nanos: int) -> float | None:
    return nanos / 1e9 if nanos else None


class Conversion:
    """One request as items for the path, and the data points refused on the way.

    Data points are numbered in the request's order; `where[n]` is (metric name, position of
    the point in its metric) of point n, `metric_points[i]` / `kind_points[i]` the point item
    i came from.
    """

    def __init__(self, latest: Latest) -> None:
        self.metrics: list[MetricPoint] = []
        self.kinds: list[KindPoint] = []
        self.metric_points: list[int] = []
        self.kind_points: list[int] = []
        self.refused: dict[int, str] = {}
        self.where: list[tuple[str, int]] = []
        self._latest = latest
        self._running: dict[tuple[str, Labels], float] = {}

    def add(self, request: metrics_service_pb2.ExportMetricsServiceRequest) -> None:
        """Convert every data point of `request`."""
        for resource_metrics in request.resource_metrics:
            resource = attributes(resource_metrics.resource.attributes)
            service = resource.get("service.name") or UNKNOWN_SERVICE
            target = {"job": service}
            instance = resource.get("service.instance.id", "")
            if instance:
                target["instance"] = instance
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    self._metric(metric, service, target)

    def _metric(self, metric: metrics_pb2.Metric, service: str, target: dict[str, str]) -> None:
        which = metric.WhichOneof("data")
        if which in ("histogram", "exponential_histogram") and metric.name in DURATION_METRICS:
            _Durations(self, metric, service, target).add(which)
        elif which is not None:
            _Series(self, metric, service, target).add(which)

    def point(self, name: str, position: int) -> int:
        """Number a new data point of metric `name`."""
        self.where.append((name, position))
        return len(self.where) - 1

    def metric(self, number: int, item: MetricPoint) -> None:
        """Item `item` of data point `number`."""
        self.metrics.append(item)
        self.metric_points.append(number)

    def kind(self, number: int, item: KindPoint) -> None:
        """Kind item `item` of data point `number`."""
        self.kinds.append(item)
        self.kind_points.append(number)

    def running(self, name: str, labels: dict[str, str], delta: float) -> float:
        """The series' latest value plus `delta` (a delta sum's running total)."""
        key = (name, tuple(sorted(labels.items())))
        previous = self._running.get(key)
        if previous is None:
            previous = self._latest(*key) or 0.0
        self._running[key] = total = previous + delta
        return total


class _Series:
    """A gauge, sum, summary or non-duration histogram: pushed series."""

    def __init__(
        self, out: Conversion, metric: metrics_pb2.Metric, service: str, target: dict[str, str]
    ) -> None:
        self.out, self.metric, self.service, self.target = out, metric, service, target
        self.name = metric_name(metric.name)

    def add(self, which: str) -> None:
        """Convert the metric's points of data type `which`."""
        metric = self.metric
        if which == "gauge":
            self._numbers(metric.gauge.data_points, MetricType.GAUGE, delta=False)
        elif which == "sum":
            kind = MetricType.COUNTER if metric.sum.is_monotonic else MetricType.GAUGE
            temporality = metric.sum.aggregation_temporality
            self._numbers(metric.sum.data_points, kind, temporality, delta=temporality == DELTA)
        elif which == "summary":
            self._summaries(metric.summary.data_points)
        else:
            data = metric.histogram if which == "histogram" else metric.exponential_histogram
            self._histograms(data.data_points, data.aggregation_temporality)

    def _item(
        self, number: int, point: _Point, name: str, kind: MetricType, value: float, **extra: str
    ) -> None:
        labels = _labels(point.attributes, self.target, extra)
        self.out.metric(
            number,
            MetricPoint(
                name,
                kind,
                value,
                labels,
                self.metric.description,
                self.metric.unit,
                _seconds(point.time_unix_nano),
                self.service,
            ),
        )

    def _start(self, position: int, point: _Point, temporality: int = CUMULATIVE) -> int | None:
        number = self.out.point(self.metric.name, position)
        if point.flags & NO_RECORDED_VALUE:
            return None
        if temporality not in (DELTA, CUMULATIVE):
            self.out.refused[number] = "aggregation temporality unspecified"
            return None
        return number

    def _numbers(
        self,
        points: Iterable[metrics_pb2.NumberDataPoint],
        kind: MetricType,
        temporality: int = CUMULATIVE,
        *,
        delta: bool,
    ) -> None:
        for position, point in enumerate(points):
            number = self._start(position, point, temporality)
            if number is None:
                continue
            which = point.WhichOneof("value")
            if which is None:
                self.out.refused[number] = "the data point has no value"
                continue
            value = point.as_double if which == "as_double" else float(point.as_int)
            if delta:
                value = self.out.running(self.name, _labels(point.attributes, self.target), value)
            self._item(number, point, self.name, kind, value)

    def _histograms(self, points: Iterable[_HistogramPoint], temporality: int) -> None:
        for position, point in enumerate(points):
            number = self._start(position, point, temporality)
            if number is None:
                continue
            parts = [("_count", float(point.count))]
            if point.HasField("sum"):
                parts.append(("_sum", point.sum))
            for suffix, value in parts:
                name = self.name + suffix
                if temporality == DELTA:
                    value = self.out.running(name, _labels(point.attributes, self.target), value)
                self._item(number, point, name, MetricType.COUNTER, value)

    def _summaries(self, points: Iterable[metrics_pb2.SummaryDataPoint]) -> None:
        for position, point in enumerate(points):
            number = self._start(position, point)
            if number is None:
                continue
            self._item(number, point, self.name + "_count", MetricType.COUNTER, float(point.count))
            self._item(number, point, self.name + "_sum", MetricType.COUNTER, point.sum)
            for quantile in point.quantile_values:
                self._item(
                    number,
                    point,
                    self.name,
                    MetricType.GAUGE,
                    quantile.value,
                    quantile=repr(quantile.quantile),
                )


class _Durations:
    """A duration histogram of the semantic conventions: a kind's events, errors, latency."""

    def __init__(
        self, out: Conversion, metric: metrics_pb2.Metric, service: str, target: dict[str, str]
    ) -> None:
        self.out, self.metric, self.service = out, metric, service
        self.instance = target.get("instance", "")
        self.rule = DURATION_METRICS[metric.name]

    def add(self, which: str) -> None:
        """Convert the metric's points (`which`: histogram or exponential_histogram)."""
        metric = self.metric
        data = metric.histogram if which == "histogram" else metric.exponential_histogram
        self._points(data.data_points, data.aggregation_temporality)

    def _points(self, points: Iterable[_HistogramPoint], temporality: int) -> None:
        name = self.metric.name
        unit = self.metric.unit or self.rule.unit
        factor = UNITS.get(unit)
        for position, point in enumerate(points):
            number = self.out.point(name, position)
            if point.flags & NO_RECORDED_VALUE:
                continue
            try:
                if temporality not in (DELTA, CUMULATIVE):
                    raise Refused("aggregation temporality unspecified")
                if factor is None:
                    raise Refused(f"unit {quote(unit)} is not a duration ({', '.join(UNITS)})")
                self.out.kind(number, self._kind(point, factor, temporality))
            except Refused as refusal:
                self.out.refused[number] = refusal.reason

    def _kind(self, point: _HistogramPoint, factor: float, temporality: int) -> KindPoint:
        values = attributes(point.attributes)
        rule = self.rule
        status = values.get(rule.status, "")
        failed = (bool(status) and rule.failed(status)) or "error.type" in values
        if isinstance(point, metrics_pb2.HistogramDataPoint):
            latency = explicit(point, factor)
        else:
            latency = exponential(point, factor)
        time = _seconds(point.time_unix_nano)
        start = _seconds(point.start_time_unix_nano)
        stream = None
        if temporality == CUMULATIVE:
            stream = (self.service, self.instance, self.metric.name, tuple(sorted(values.items())))
        elif start is None:
            start = time  # a delta is known up to its time, not up to now
        return KindPoint(
            self.service,
            _kind_name(rule, values),
            point.count,
            point.count if failed else 0,
            latency,
            time,
            stream,
            start,
        )


_Point = (
    metrics_pb2.NumberDataPoint
    | metrics_pb2.HistogramDataPoint
    | metrics_pb2.ExponentialHistogramDataPoint
    | metrics_pb2.SummaryDataPoint
)
_HistogramPoint = metrics_pb2.HistogramDataPoint | metrics_pb2.ExponentialHistogramDataPoint


def _kind_name(rule: DurationMetric, values: dict[str, str]) -> str:
    for group in rule.kinds:
        parts = [values.get(name, "") for name in group]
        if all(parts):
            return "/".join(parts)
    return "request"


def _labels(
    items: Iterable[common_pb2.KeyValue],
    target: dict[str, str],
    extra: dict[str, str] | None = None,
) -> dict[str, str]:
    """A point's attributes as labels (Prometheus names), then the resource's and `extra`."""
    values = attributes(items)
    labels: dict[str, str] = {}
    for key in sorted(values):
        name = label_name(key)
        labels[name] = f"{labels[name]};{values[key]}" if name in labels else values[key]
    labels.update(target)
    if extra:
        labels.update(extra)
    return labels


def export(
    ingestor: Ingestor, request: metrics_service_pb2.ExportMetricsServiceRequest
) -> Response:
    """Hand the request's data points to `ingestor`; the answer counts and names the refused."""
    conversion = Conversion(_latest(ingestor))
    conversion.add(request)
    refused = dict(conversion.refused)
    if refused:
        ingestor.refused_total[""] += len(refused)
    metrics, kinds = conversion.metrics, conversion.kinds
    limit = ingestor.settings.max_batch
    for start in range(0, max(len(metrics), len(kinds)), limit):
        result = ingestor.ingest(metrics[start : start + limit], kinds[start : start + limit])
        for refusal in result.refused:
            number = _point_of(conversion, refusal, start)
            refused.setdefault(number, _reason(refusal))
    response = Response()
    if refused:
        response.partial_success.rejected_data_points = len(refused)
        response.partial_success.error_message = _message(conversion, refused)
    return response


def _latest(ingestor: Ingestor) -> Latest:
    metrics = ingestor.series.metrics

    def latest(name: str, labels: Labels) -> float | None:
        metric = metrics.get(name)
        series = None if metric is None else metric.series.get(labels)
        return None if series is None else series.value

    return latest


def _point_of(conversion: Conversion, refusal: Refusal, start: int) -> int:
    """The data point of a refused item (`metrics[i]` or `events[i]` of the call at `start`)."""
    what, _, rest = refusal.item.partition("[")
    index = start + int(rest.rstrip("]"))
    return (conversion.metric_points if what == "metrics" else conversion.kind_points)[index]


def _reason(refusal: Refusal) -> str:
    return f"{refusal.reason} ({refusal.limit})" if refusal.limit else refusal.reason


def _message(conversion: Conversion, refused: dict[int, str]) -> str:
    """'N of M data points refused: <metric> point k: reason; ...' (bounded)."""
    shown = []
    for number in sorted(refused)[:MAX_REASONS]:
        name, position = conversion.where[number]
        shown.append(f"{quote(name, 80)} point {position}: {refused[number]}")
    more = len(refused) - len(shown)
    text = f"{len(refused)} of {len(conversion.where)} data points refused: " + "; ".join(shown)
    if more:
        text += f"; and {more} more"
    return shorten(text, 1000)
