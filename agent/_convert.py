"""Conversion of tracker readings into the EventRateService wire messages."""

from __future__ import annotations

from metricsmesh.v1 import event_rate_pb2

from agent._tracker import RateReading


def reading_to_response(reading: RateReading) -> event_rate_pb2.GetEventRateResponse:
    """The GetEventRate answer for one tracker reading.

    Times are written into the response's own sub-messages (no temporary message to copy).
    """
    response = event_rate_pb2.GetEventRateResponse(
        service_name=reading.service_name,
        events_per_second=reading.events_per_second,
        events_per_hour=reading.events_per_hour,
        total_events=reading.total_events,
        window_events=reading.window_events,
    )
    response.uptime.FromNanoseconds(round(reading.uptime_seconds * 1e9))
    response.window.FromNanoseconds(round(reading.window_seconds * 1e9))
    response.covered_span.FromNanoseconds(round(reading.covered_seconds * 1e9))
    response.start_time.FromNanoseconds(round(reading.start_time * 1e9))
    response.read_time.FromNanoseconds(round(reading.read_time * 1e9))
    if reading.last_event_time is not None:
        response.last_event_time.FromNanoseconds(round(reading.last_event_time * 1e9))
    add_kind = response.kinds.add
    for kind in reading.kinds:
        row = add_kind(
            kind=kind.kind,
            events_per_second=kind.events_per_second,
            total_events=kind.total_events,
            window_events=kind.window_events,
        )
        if kind.last_event_time is not None:
            row.last_event_time.FromNanoseconds(round(kind.last_event_time * 1e9))
    return response
