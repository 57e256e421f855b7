"""Conversion of tracker readings into the EventRateService wire messages."""

from __future__ import annotations

from metricsmesh.v1 import event_rate_pb2, latency_pb2

from agent._tracker import RateReading
from mesh_common import latency
from mesh_common.latency import Histogram
from mesh_common.wire_time import set_seconds


class ResponseBuilder:
    """Builds GetEventRate answers, each latency message once per histogram.

    The tracker hands back the very same `Histogram` while a kind's latency window has not
    changed, so a summary (quantiles, buckets, seven times) built for one answer is copied
    into the next as long as its histogram is the same object. Use one builder per tracker,
    from one thread at a time (the server's event loop).
    """

    def __init__(self) -> None:
        self._summaries: dict[str, tuple[Histogram, latency_pb2.LatencySummary]] = {}
        """kind -> its window's histogram and the summary built from it ("": the service's)."""
        self._histograms: dict[str, tuple[Histogram, latency_pb2.LatencyHistogram]] = {}
        """kind -> its histogram since start and the message built from it."""

    def build(self, reading: RateReading) -> event_rate_pb2.GetEventRateResponse:
        """The GetEventRate answer for one tracker reading.

        Times are written into the response's own sub-messages; a latency summary is set only
        where there were timed events (no data is not zero).
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
            self._summary("", reading.latency, response.latency)
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
                self._summary(kind.kind, kind.latency, row.latency)
            if kind.latency_since_start is not None:
                self._since_start(kind.kind, kind.latency_since_start, row.latency_since_start)
        return response

    def _summary(self, kind: str, histogram: Histogram, target: latency_pb2.LatencySummary) -> None:
        built = self._summaries.get(kind)
        if built is None or built[0] is not histogram:
            message = latency_pb2.LatencySummary()
            latency.summarize(histogram, message)
            built = self._summaries[kind] = (histogram, message)
        target.CopyFrom(built[1])

    def _since_start(
        self, kind: str, histogram: Histogram, target: latency_pb2.LatencyHistogram
    ) -> None:
        built = self._histograms.get(kind)
        if built is None or built[0] is not histogram:
            message = latency_pb2.LatencyHistogram()
            latency.to_proto(histogram, message)
            built = self._histograms[kind] = (histogram, message)
        target.CopyFrom(built[1])


def reading_to_response(reading: RateReading) -> event_rate_pb2.GetEventRateResponse:
    """The GetEventRate answer for one tracker reading, every message built anew."""
    return ResponseBuilder().build(reading)
