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
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field

from metricsmesh.v1 import event_rate_pb2

from aggregator._errors import Refused
from aggregator._ingest.model import Durations, KindPoint
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


Buckets = dict[int, int]
"""Sparse latency buckets: mesh bucket index -> count (only the non-empty ones). Pushes keep
their buckets sparse: an OTLP histogram fills a few dozen of the mesh's hundreds, and adding
or subtracting dense spans per data point was most of an Export's cost
(`python -m bench ingest_otlp`)."""


def sparse(latency: Histogram | Durations | None) -> Mapping[int, int]:
    """The non-empty buckets of `latency` ({} for None); never changed by the caller."""
    if latency is None:
        return {}
    if isinstance(latency, Durations):
        return latency.buckets
    return {index: count for index, count in enumerate(latency.counts, latency.offset) if count}


def dense(buckets: Buckets, sum_seconds: float, max_seconds: float) -> Histogram:
    """The Histogram of sparse `buckets` (EMPTY when there is none)."""
    if not buckets:
        return EMPTY
    low, high = min(buckets), max(buckets)
    counts = [0] * (high - low + 1)
    for index, count in buckets.items():
        counts[index - low] = count
    return Histogram(low, tuple(counts), sum_seconds, max_seconds)


def _minus(newer: Mapping[int, int], older: Mapping[int, int]) -> Buckets:
    """The buckets of `newer` not in `older` (an earlier state of the same running totals)."""
    get = older.get
    return {index: count - old for index, count in newer.items() if (old := get(index, 0)) < count}


@dataclass(slots=True)
class _Checkpoint:
    at: float
    """Monotonic instant of the totals."""
    events: int
    errors: int
    buckets: Buckets
    """The kind's latency buckets since start, as of `at` (its own copy)."""
    sum_seconds: float
    max_seconds: float
    """The longest duration pushed since the previous checkpoint (0 when none was stated)."""


@dataclass(slots=True)
class _Stream:
    """A cumulative stream's previous reading, to take the next increase from."""

    events: int
    errors: int
    buckets: Mapping[int, int]
    sum_seconds: float
    max_seconds: float
    start_time: float | None


@dataclass(slots=True)
class _Kind:
    events: int = 0
    errors: int = 0
    buckets: Buckets = field(default_factory=dict)
    sum_seconds: float = 0.0
    max_seconds: float = 0.0
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
        self.stream_count = 0
        """Cumulative streams held (every service's), capped by `max_series`."""

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
            kind.checkpoints.append(_Checkpoint(min(start, received), 0, 0, {}, 0.0, 0.0))
        events, errors, buckets, sum_seconds, max_seconds = self._increase(service, point)
        if service.last_push and received - service.last_push >= CHECKPOINT_SECONDS / 2:
            service.intervals.append(received - service.last_push)
        service.last_push = max(service.last_push, received)
        if point.stream is None:
            service.live = service.live or point.start_time is None
        kind.events += events
        kind.errors += errors
        if buckets:
            totals = kind.buckets
            for index, count in buckets.items():
                totals[index] = totals.get(index, 0) + count
            kind.sum_seconds += sum_seconds
            kind.max_seconds = max(kind.max_seconds, max_seconds)
        if events:
            kind.last_event_time = time
        self._checkpoint(kind, received, buckets, max_seconds)

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

    def _increase(
        self, service: PushedService, point: KindPoint
    ) -> tuple[int, int, Mapping[int, int], float, float]:
        """(events, errors, latency buckets, their sum, their max or 0) new with `point`."""
        latency = point.latency
        buckets = sparse(latency)
        sum_seconds = 0.0 if latency is None else latency.sum_seconds
        max_seconds = 0.0 if latency is None else latency.max_seconds
        if point.stream is None:
            return point.events, point.errors, buckets, sum_seconds, max_seconds
        previous = service.streams.get(point.stream)
        if previous is None:
            if self.stream_count >= self._settings.max_series:
                raise Refused(
                    f"new stream of {quote(point.service)} refused: {self._settings.max_series} "
                    "cumulative streams (attribute sets) are held already",
                    "max_series",
                )
            self.stream_count += 1
        service.streams[point.stream] = _Stream(
            point.events, point.errors, buckets, sum_seconds, max_seconds, point.start_time
        )
        if previous is None:
            # The first reading of a stream: its counts since its start. They enter the
            # window only when that start is known (the kind's first checkpoint sits there).
            return point.events, point.errors, buckets, sum_seconds, max_seconds
        restarted = (
            point.events < previous.events
            or point.errors < previous.errors
            or (point.start_time is not None and point.start_time != previous.start_time)
        )
        if restarted:
            return point.events, point.errors, buckets, sum_seconds, max_seconds
        return (
            point.events - previous.events,
            point.errors - previous.errors,
            _minus(buckets, previous.buckets),
            max(0.0, sum_seconds - previous.sum_seconds),
            # The stream's maximum since its start says something of this interval only
            # when it grew in it.
            max_seconds if max_seconds > previous.max_seconds else 0.0,
        )

    @staticmethod
    def _checkpoint(kind: _Kind, at: float, new: Mapping[int, int], max_seconds: float) -> None:
        checkpoints = kind.checkpoints
        last = checkpoints[-1]
        if at - last.at < CHECKPOINT_SECONDS and len(checkpoints) > 1:
            last.events, last.errors, last.sum_seconds = kind.events, kind.errors, kind.sum_seconds
            held = last.buckets
            for index in new:
                held[index] = kind.buckets[index]
            last.max_seconds = max(last.max_seconds, max_seconds)
            last.at = max(last.at, at)
            return
        checkpoints.append(
            _Checkpoint(
                at, kind.events, kind.errors, dict(kind.buckets), kind.sum_seconds, max_seconds
            )
        )
        # Keep one checkpoint at or before the oldest window start still needed.
        while len(checkpoints) > 2 and checkpoints[1].at <= at - WINDOW_SECONDS:
            checkpoints.popleft()

    def forget(self, before: float) -> list[str]:
        """Drop the services whose last push was before the monotonic `before`; their names."""
        gone = [name for name, service in self.services.items() if service.last_push < before]
        for name in gone:
            self.stream_count -= len(self.services.pop(name).streams)
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
            reference, stated = _span(kind.checkpoints, end)
            newest = kind.checkpoints[-1]
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
            buckets = _minus(newest.buckets, reference.buckets)
            if buckets:
                window = dense(
                    buckets,
                    max(0.0, newest.sum_seconds - reference.sum_seconds),
                    _within_top(stated, max(buckets)),
                )
                latency.summarize(window, row.latency)
                window_latency.append(window)
            if kind.buckets:
                since_start = dense(
                    kind.buckets, kind.sum_seconds, _within_top(kind.max_seconds, max(kind.buckets))
                )
                latency.to_proto(since_start, row.latency_since_start)
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


def _span(checkpoints: collections.deque[_Checkpoint], end: float) -> tuple[_Checkpoint, float]:
    """The window's reference checkpoint and the longest duration stated after it.

    The reference is the newest checkpoint at least a window before `end`, else the first; the
    duration is 0 when no push after it stated one. One pass, from the newest back.
    """
    start = end - WINDOW_SECONDS
    first = checkpoints[0]
    stated = 0.0
    for checkpoint in reversed(checkpoints):
        if checkpoint.at <= start or checkpoint is first:
            return checkpoint, stated
        if checkpoint.max_seconds > stated:
            stated = checkpoint.max_seconds
    return first, stated  # not reached: the loop ends at the first checkpoint


def _within_top(stated: float, top: int) -> float:
    """The longest duration: `stated` when it lies in bucket `top` (the highest non-empty).

    Else that bucket's upper bound: within one bucket, never below the true maximum.
    """
    highest = latency.upper_bound(top)
    return stated if latency.upper_bound(top - 1) < stated <= highest else highest
