"""Conversion of tracker readings into the EventRateService wire messages."""

from __future__ import annotations

from metricsmesh.v1 import event_rate_pb2

from agent._tracker import RateReading
from mesh_common import latency
from mesh_common.wire_time import set_seconds


def reading_to_response(reading: RateReading) -> event_rate_pb2.GetEventRateResponse:
    """The GetEventRate answer for one tracker reading.

    Times are written into the response's own sub-messages (no temporary message to copy);
    a latency summary is set only where there were timed events (no data is not zero).
    """
    response = event_rate_pb2.GetEventRateResponse(
        service_name=reading.service_name,
        events_per_second=reading.events_per_second,
        events_per_hour=reading.events_per_hour,
        total_events=reading.total_events,
        window_events=reading.window_events,
        window_errors=reading.window_errors,
        total_errors=reading.total_errors,
        cpu_usage_percent=reading.cpu_usage_percent,
    )
    set_seconds(response.uptime, reading.uptime_seconds)
    set_seconds(response.window, reading.window_seconds)
    set_seconds(response.covered_span, reading.covered_seconds)
    set_seconds(response.start_time, reading.start_time)
    set_seconds(response.read_time, reading.read_time)
    if reading.last_event_time is not None:
        set_seconds(response.last_event_time, reading.last_event_time)
    if reading.latency is not None:
        latency.summarize(reading.latency, response.latency)
    add_kind = response.kinds.add
    for kind in reading.kinds:
        row = add_kind(
            kind=kind.kind,
            events_per_second=kind.events_per_second,
            total_events=kind.total_events,
            window_events=kind.window_events,
            window_errors=kind.window_errors,
            total_errors=kind.total_errors,
        )
        if kind.last_event_time is not None:
            set_seconds(row.last_event_time, kind.last_event_time)
        if kind.latency is not None:
            latency.summarize(kind.latency, row.latency)
        if kind.latency_since_start is not None:
            latency.to_proto(kind.latency_since_start, row.latency_since_start)
    return response
