"""Conversion of tracker readings into the EventRateService wire messages."""

from __future__ import annotations

from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp
from metricsmesh.v1 import event_rate_pb2

from agent._tracker import RateReading


def timestamp(epoch_seconds: float) -> Timestamp:
    """A Timestamp for `epoch_seconds` (nanosecond precision)."""
    value = Timestamp()
    value.FromNanoseconds(round(epoch_seconds * 1e9))
    return value


def duration(seconds: float) -> Duration:
    """A Duration of `seconds` (nanosecond precision)."""
    value = Duration()
    value.FromNanoseconds(round(seconds * 1e9))
    return value


def reading_to_response(reading: RateReading) -> event_rate_pb2.GetEventRateResponse:
    """The GetEventRate answer for one tracker reading."""
    response = event_rate_pb2.GetEventRateResponse(
        service_name=reading.service_name,
        events_per_second=reading.events_per_second,
        events_per_hour=reading.events_per_hour,
        total_events=reading.total_events,
        window_events=reading.window_events,
        uptime=duration(reading.uptime_seconds),
        window=duration(reading.window_seconds),
        covered_span=duration(reading.covered_seconds),
        start_time=timestamp(reading.start_time),
        read_time=timestamp(reading.read_time),
    )
    if reading.last_event_time is not None:
        response.last_event_time.CopyFrom(timestamp(reading.last_event_time))
    for kind in reading.kinds:
        row = response.kinds.add(
            kind=kind.kind,
            events_per_second=kind.events_per_second,
            total_events=kind.total_events,
            window_events=kind.window_events,
        )
        if kind.last_event_time is not None:
            row.last_event_time.CopyFrom(timestamp(kind.last_event_time))
    return response
