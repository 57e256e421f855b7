"""Pushed services: rows whose figures come from pushes, read like an agent's answer.

Each pushed service keeps, per kind of event, its running totals (events, errors, the latency
buckets of its timed events, all reset-aware) and checkpoints of those totals as pushes arrive
(at most one per second, so a window holds at most about 60). A round reads a service as the
agent contract's `GetEventRateResponse`, so the fold, history, alerts and every surface treat
the row exactly like a polled one:

- The window is the last 60 s up to the service's newest knowledge: "now" for seed 004's
  events (each push is the event itself, so nothing happened since), the last push for OTLP
  (what happened after it is not known yet). `window_events` is the increase of the totals
  since the newest checkpoint at least 60 s older (or the first one), the rate that increase
  over the span between them, as Prometheus's `rate()` reads two samples. A cumulative
  stream's first reading is a starting point, not a burst: its counts enter the totals, and
  the window only when its start time lies inside it.
- A service is active while it pushed within its staleness window (`[ingest]
  staleness_seconds`; by default 3 x the median of its last push intervals, at least 5 s,
  30 s until two pushes are seen), then the round marks it inactive and its row keeps its last
  figures with their age, like a polled row.
"""

from __future__ import annotations

import collections
import math
import statistics
from collections.abc import Hashable
from dataclasses import dataclass, field

from metricsmesh.v1 import event_rate_pb2

from aggregator._ingest.bounds import Refused
from aggregator._ingest.model import KindPoint
from aggregator._ingest.settings import (
    DEFAULT_STALENESS_SECONDS,
    STALENESS_INTERVALS,
    IngestSettings,
)
from mesh_common import latency
from mesh_common.bounded import quote
from mesh_common.latency import EMPTY, Histogram
from mesh_common.wire_time import set_seconds

WINDOW_SECONDS = 60.0
"""The rolling window of a pushed row, as an agent's (DESIGN.md: one minute)."""
CHECKPOINT_SECONDS = 1.0
"""Pushes closer together than this share one checkpoint (the newest totals win)."""
MIN_STALENESS_SECONDS = 5.0
"""The automatic staleness window is never shorter than this."""
_INTERVALS_KEPT = 8


def difference(newer: Histogram, older: Histogram) -> Histogram:
    """The durations in `newer` and not in `older`.

    `older` is an earlier state of the same running totals, so each of its counts is at most
    `newer`'s.
    """
    if not older.counts:
        return newer
    low = min(newer.offset, older.offset)
    high = max(newer.offset + len(newer.counts), older.offset + len(older.counts))
    dense = [0] * (high - low)
    for index, count in enumerate(newer.counts, newer.offset - low):
        dense[index] += count
    for index, count in enumerate(older.counts, older.offset - low):
        dense[index] -= count
    first = next((i for i, count in enumerate(dense) if count), None)
    if first is None:
        return EMPTY
    last = max(i for i, count in enumerate(dense) if count)
    return Histogram(
        low + first,
        tuple(max(0, count) for count in dense[first : last + 1]),
        max(0.0, newer.sum_seconds - older.sum_seconds),
        newer.max_seconds,
    )


@dataclass(slots=True)
class _Checkpoint:
    at: float
    """Monotonic instant of the totals."""
    events: int
    errors: int
    latency: Histogram
    max_seconds: float
    """The longest duration pushed since the previous checkpoint (0 when none)."""


@dataclass(slots=True)
class _Stream:
    """A cumulative stream's previous reading, to take the next increase from."""

    events: int
    errors: int
    latency: Histogram
    start_time: float | None


@dataclass(slots=True)
class _Kind:
    events: int = 0
    errors: int = 0
    latency: Histogram = EMPTY
    last_event_time: float | None = None
    checkpoints: collections.deque[_Checkpoint] = field(default_factory=collections.deque)


@dataclass(slots=True)
class PushedService:
    """One pushed service's running totals, checkpoints and push times."""

    name: str
    start_time: float
    """Wall-clock time its counts began (the earliest start time pushed, or the first push)."""
    live: bool = False
    """True when its pushes are the events themselves (seed 004): known up to now."""
    last_push: float = 0.0
    """Monotonic instant of the last push."""
    intervals: collections.deque[float] = field(
        default_factory=lambda: collections.deque(maxlen=_INTERVALS_KEPT)
    )
    kinds: dict[str, _Kind] = field(default_factory=dict)
    streams: dict[Hashable, _Stream] = field(default_factory=dict)

    def staleness(self, configured: float) -> float:
        """How long after its last push the service stays active, in seconds."""
        if configured > 0:
            return configured
        if not self.intervals:
            return DEFAULT_STALENESS_SECONDS
        return max(MIN_STALENESS_SECONDS, STALENESS_INTERVALS * statistics.median(self.intervals))


class PushedServices:
    """Every pushed service, capped by `max_services` and `max_kinds_per_service`."""

    def __init__(self, settings: IngestSettings) -> None:
        self._settings = settings
        self.services: dict[str, PushedService] = {}
        self.polled: frozenset[str] = frozenset()
        """Names of the registry's services: a push may not take one of them."""

    def add(self, point: KindPoint, time: float, received: float, wall: float) -> None:
        """Count `point` (time checked, epoch seconds) received at the monotonic `received`.

        `wall` is the wall-clock time of `received`. Refused past a cap, for a polled name, or
        for counts that make no sense (more errors than events).
        """
        if point.errors > point.events:
            raise Refused(f"{point.errors} errors among {point.events} events")
        service = self._service(point, time, wall)
        kind = service.kinds.get(point.kind)
        if kind is None:
            limit = self._settings.max_kinds_per_service
            if len(service.kinds) >= limit:
                raise Refused(
                    f"new kind {quote(point.kind)} of {quote(point.service)} refused: it has "
                    f"{limit} kinds already",
                    "max_kinds_per_service",
                )
            kind = service.kinds[point.kind] = _Kind()
            start = received if point.start_time is None else received - (wall - point.start_time)
            kind.checkpoints.append(_Checkpoint(min(start, received), 0, 0, EMPTY, 0.0))
        events, errors, durations = self._increase(service, point)
        if service.last_push and received - service.last_push >= CHECKPOINT_SECONDS / 2:
            service.intervals.append(received - service.last_push)
        service.last_push = max(service.last_push, received)
        if point.stream is None:
            service.live = service.live or point.start_time is None
        if events == 0 and errors == 0 and durations is None:
            self._checkpoint(kind, received, 0.0)
            return
        kind.events += events
        kind.errors += errors
        if durations is not None and durations.counts:
            kind.latency = latency.merge((kind.latency, durations))
        if events:
            kind.last_event_time = time
        self._checkpoint(kind, received, 0.0 if durations is None else durations.max_seconds)

    def _service(self, point: KindPoint, time: float, wall: float) -> PushedService:
        service = self.services.get(point.service)
        if service is not None:
            return service
        if point.service in self.polled:
            raise Refused(
                f"service {quote(point.service)} is polled from its agent (it is in the "
                "registry); a pushed service needs a name of its own"
            )
        limit = self._settings.max_services
        if len(self.services) >= limit:
            raise Refused(
                f"new service {quote(point.service)} refused: {limit} pushed services are held",
                "max_services",
            )
        start = min(wall, time if point.start_time is None else point.start_time)
        service = self.services[point.service] = PushedService(point.service, start)
        return service

    @staticmethod
    def _increase(service: PushedService, point: KindPoint) -> tuple[int, int, Histogram | None]:
        if point.stream is None:
            return point.events, point.errors, point.latency
        previous = service.streams.get(point.stream)
        reading = _Stream(point.events, point.errors, point.latency or EMPTY, point.start_time)
        service.streams[point.stream] = reading
        if previous is None:
            # The first reading of a stream: its counts since its start. They enter the
            # window only when that start is known (the kind's first checkpoint sits there).
            return point.events, point.errors, point.latency
        restarted = (
            point.events < previous.events
            or point.errors < previous.errors
            or (point.start_time is not None and point.start_time != previous.start_time)
        )
        if restarted:
            return point.events, point.errors, point.latency
        durations = None
        if point.latency is not None:
            durations = difference(point.latency, previous.latency)
        return point.events - previous.events, point.errors - previous.errors, durations

    @staticmethod
    def _checkpoint(kind: _Kind, at: float, max_seconds: float) -> None:
        checkpoints = kind.checkpoints
        last = checkpoints[-1] if checkpoints else None
        if last is not None and at - last.at < CHECKPOINT_SECONDS and len(checkpoints) > 1:
            last.events, last.errors, last.latency = kind.events, kind.errors, kind.latency
            last.max_seconds = max(last.max_seconds, max_seconds)
            last.at = max(last.at, at)
            return
        checkpoints.append(_Checkpoint(at, kind.events, kind.errors, kind.latency, max_seconds))
        # Keep one checkpoint at or before the oldest window start still needed.
        while len(checkpoints) > 2 and checkpoints[1].at <= at - WINDOW_SECONDS:
            checkpoints.popleft()

    def forget(self, before: float) -> list[str]:
        """Drop the services whose last push was before the monotonic `before`; their names."""
        gone = [name for name, service in self.services.items() if service.last_push < before]
        for name in gone:
            del self.services[name]
        return gone

    def read(
        self, service: PushedService, now: float, wall: float
    ) -> event_rate_pb2.GetEventRateResponse:
        """The service's figures at the monotonic `now` (wall clock `wall`), as an agent's."""
        end = now if service.live else service.last_push
        response = event_rate_pb2.GetEventRateResponse(
            service_name=service.name,
            cpu_usage_percent=math.nan,  # no process of ours to measure
        )
        total_events = total_errors = window_events = window_errors = 0
        rate = 0.0
        window_latency: list[Histogram] = []
        last_event: float | None = None
        covered = 0.0
        for name in sorted(service.kinds):
            kind = service.kinds[name]
            reference, newest = _span(kind.checkpoints, end)
            span = max(end - reference.at, 0.0)
            events = newest.events - reference.events
            errors = newest.errors - reference.errors
            kind_rate = events / span if span > 0 else 0.0
            row = response.kinds.add(
                kind=name,
                events_per_second=kind_rate,
                total_events=kind.events,
                window_events=events,
                window_errors=errors,
                total_errors=kind.errors,
            )
            if kind.last_event_time is not None:
                set_seconds(row.last_event_time, kind.last_event_time)
                last_event = max(last_event or kind.last_event_time, kind.last_event_time)
            window = difference(newest.latency, reference.latency)
            if window.counts:
                window = Histogram(
                    window.offset,
                    window.counts,
                    window.sum_seconds,
                    _window_max(kind.checkpoints, reference, window),
                )
                latency.summarize(window, row.latency)
                window_latency.append(window)
            if kind.latency.counts:
                latency.to_proto(kind.latency, row.latency_since_start)
            total_events += kind.events
            total_errors += kind.errors
            window_events += events
            window_errors += errors
            rate += kind_rate
            covered = max(covered, span)
        response.events_per_second = rate
        response.events_per_hour = rate * 3600.0
        response.total_events = total_events
        response.total_errors = total_errors
        response.window_events = window_events
        response.window_errors = window_errors
        set_seconds(response.uptime, max(0.0, wall - service.start_time))
        set_seconds(response.window, WINDOW_SECONDS)
        set_seconds(response.covered_span, min(covered, WINDOW_SECONDS))
        set_seconds(response.start_time, service.start_time)
        set_seconds(response.read_time, wall - (now - end))
        if last_event is not None:
            set_seconds(response.last_event_time, last_event)
        merged = latency.merge(window_latency)
        if merged.counts:
            latency.summarize(merged, response.latency)
        return response


def _span(
    checkpoints: collections.deque[_Checkpoint], end: float
) -> tuple[_Checkpoint, _Checkpoint]:
    """(the newest checkpoint at least a window before `end`, else the first; the newest)."""
    reference = checkpoints[0]
    for checkpoint in checkpoints:
        if checkpoint.at <= end - WINDOW_SECONDS:
            reference = checkpoint
        else:
            break
    return reference, checkpoints[-1]


def _window_max(
    checkpoints: collections.deque[_Checkpoint], reference: _Checkpoint, window: Histogram
) -> float:
    """The longest duration pushed after `reference`.

    The upper bound of the window's highest bucket when the pushes did not state one (within
    one bucket, never below).
    """
    stated = max((c.max_seconds for c in checkpoints if c.at > reference.at), default=0.0)
    top = window.offset + len(window.counts) - 1
    highest = latency.upper_bound(top)
    return stated if latency.upper_bound(top - 1) < stated <= highest else highest
