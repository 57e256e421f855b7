"""Conversions between the ingestion path's values and the `metricsmesh.v1` ingest messages."""

from __future__ import annotations

from metricsmesh.v1 import ingest_pb2

from aggregator._errors import UnknownType
from aggregator._ingest.model import (
    IngestResult,
    KindPoint,
    MetricPoint,
    MetricType,
    PushedSeries,
)
from mesh_common.latency import Histogram, index_of
from mesh_common.wire_time import set_seconds, to_seconds

_TYPES = {
    ingest_pb2.PUSHED_METRIC_TYPE_GAUGE: MetricType.GAUGE,
    ingest_pb2.PUSHED_METRIC_TYPE_COUNTER: MetricType.COUNTER,
}
_WIRE_TYPES = {value: key for key, value in _TYPES.items()}


def metric_type(value: int) -> MetricType:
    """The MetricType of a wire enum value; UnknownType when unspecified."""
    try:
        return _TYPES[value]  # type: ignore[index]
    except KeyError:
        raise UnknownType("type must be gauge or counter") from None


def to_pushed_value(series: PushedSeries, target: ingest_pb2.PushedValue) -> None:
    """Write one series' latest value into `target` (age unset)."""
    target.name = series.name
    target.type = _WIRE_TYPES[series.type]
    target.labels.update(series.labels)
    target.value = series.value
    set_seconds(target.time, series.time)
    target.help_text = series.help
    target.unit = series.unit
    target.service_name = series.service


def metric_point(message: ingest_pb2.PushedMetric, type: MetricType) -> MetricPoint:
    """The path's value of one wire metric (`type` read by `metric_type`)."""
    return MetricPoint(
        message.name,
        type,
        message.value,
        dict(message.labels),
        message.help_text,
        message.unit,
        to_seconds(message.time) if message.HasField("time") else None,
    )


def kind_point(message: ingest_pb2.PushedEvent, default_service: str) -> KindPoint:
    """The path's value of one wire event (`count` 0 reads as 1)."""
    count = message.count or 1
    duration = to_seconds(message.duration) if message.HasField("duration") else None
    latency = None
    if duration is not None:
        latency = Histogram(index_of(duration), (count,), duration * count, duration)
    return KindPoint(
        message.service_name or default_service,
        message.kind,
        count,
        message.errors,
        latency,
        to_seconds(message.time) if message.HasField("time") else None,
    )


def to_response(result: IngestResult, target: ingest_pb2.IngestResponse) -> None:
    """Write what the path kept and refused into `target`."""
    target.accepted = result.accepted
    for refusal in result.refused:
        target.rejected.add(item=refusal.item, reason=refusal.reason, limit=refusal.limit)
