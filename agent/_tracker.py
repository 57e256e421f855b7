"""The rolling-window event tracker: exact counts in fixed one-second buckets.

A tracker holds one `KindCounter` per kind of event. Each counter keeps the count of the
current bucket plus a ring of the previous `buckets - 1` buckets, so memory is fixed however
many events arrive, and every event is counted (no cap, no sampling). The rate is the count in
the window divided by the span those buckets actually cover: during warm-up that span is the
uptime, afterwards it is between `window - width` and `window` depending on how far into the
current bucket the reading falls. Both figures are exact, so a steady 1000 ev/s reads 1000.
"""

from __future__ import annotations

import threading
import time
from array import array
from collections.abc import Callable, Iterable
from dataclasses import dataclass

Clock = Callable[[], float]

DEFAULT_KIND = "event"
DEFAULT_WINDOW_SECONDS = 60.0
DEFAULT_BUCKETS = 60


@dataclass(frozen=True, slots=True)
class KindReading:
    """The figures of one kind of event at one reading."""

    kind: str
    events_per_second: float
    window_events: int
    total_events: int
    last_event_time: float | None
    """Wall-clock time (epoch seconds) of this kind's last event, None if it never happened."""


@dataclass(frozen=True, slots=True)
class RateReading:
    """One consistent reading of a tracker: every figure was taken at the same instant."""

    service_name: str
    events_per_second: float
    window_events: int
    total_events: int
    uptime_seconds: float
    window_seconds: float
    covered_seconds: float
    start_time: float
    read_time: float
    last_event_time: float | None
    kinds: tuple[KindReading, ...]

    @property
    def events_per_hour(self) -> float:
        """Events per second projected over an hour (x 3600), as the REST contract defines it."""
        return self.events_per_second * 3600.0


class KindCounter:
    """Counts one kind of event; `record()` is the hot path and does the minimum.

    Obtain one with `EventTracker.counter(kind)` and keep it: calling its `record()` skips the
    kind lookup that `EventTracker.record(kind)` does on every call.

    The counter keeps the count of the current bucket in `_count`, the committed counts of the
    previous buckets in `_ring` (an unsigned 64-bit array: fixed memory) and their running sum
    in `_ring_sum`, so both recording and reading are O(1) (a bucket change is O(skipped)).
    `_ring[_slot % buckets]` is always 0: it is filled when the current bucket is committed.
    """

    __slots__ = (
        "_acquire",
        "_buckets",
        "_clock",
        "_committed_total",
        "_count",
        "_last",
        "_release",
        "_ring",
        "_ring_sum",
        "_slot",
        "_slot_end",
        "_start",
        "_width",
        "kind",
    )

    def __init__(
        self,
        kind: str,
        *,
        lock: threading.Lock,
        clock: Clock,
        start: float,
        width: float,
        buckets: int,
    ) -> None:
        self.kind = kind
        # Bound methods, fetched once: `acquire()`/`release()` in a try/finally cost
        # noticeably less than `with lock:` on the hot path (no __enter__/__exit__ lookup).
        self._acquire = lock.acquire
        self._release = lock.release
        self._clock = clock
        self._start = start
        self._width = width
        self._buckets = buckets
        self._ring = array("Q", bytes(8 * buckets))
        self._ring_sum = 0
        self._slot = 0
        self._slot_end = start + width
        self._count = 0
        self._committed_total = 0
        self._last: float | None = None
        # Built by EventTracker.counter() under the lock, so advancing here is safe.
        now = clock()
        if now >= self._slot_end:
            self._advance(now)

    def record(self, n: int = 1) -> None:
        """Count `n` events (default 1) happening now. Thread-safe; `n` must be positive."""
        if n < 1:
            raise ValueError(f"record() counts events: n must be >= 1, got {n!r}")
        # The clock is read under the lock, so buckets fill in time order and `_last` never
        # goes backwards when threads race.
        self._acquire()
        try:
            now = self._clock()
            if now >= self._slot_end:
                self._advance(now)
            self._count += n
            self._last = now
        finally:
            self._release()

    def _advance(self, now: float) -> None:
        """Move the current bucket to the one holding `now`, zeroing the buckets skipped.

        Call under the lock.
        """
        slot = int((now - self._start) // self._width)
        current = self._slot
        if slot <= current:
            return
        ring = self._ring
        buckets = self._buckets
        count = self._count
        ring[current % buckets] = count
        self._committed_total += count
        self._count = 0
        if slot - current >= buckets:
            ring[:] = array("Q", bytes(8 * buckets))
            self._ring_sum = 0
        else:
            ring_sum = self._ring_sum + count
            for skipped in range(current + 1, slot + 1):
                index = skipped % buckets
                ring_sum -= ring[index]
                ring[index] = 0
            self._ring_sum = ring_sum
        self._slot = slot
        self._slot_end = self._start + (slot + 1) * self._width

    def _window_count(self) -> int:
        """Events in the current bucket and the `buckets - 1` before it; call under the lock."""
        return self._ring_sum + self._count


class EventTracker:
    """Counts a service's events by kind and reports exact rolling-window rates.

    `clock` is a monotonic clock (seconds) and `wall_clock` gives epoch seconds; both are
    injectable so tests can drive time exactly. Rates use only the monotonic clock; the wall
    clock is read once, at construction, to turn monotonic instants into timestamps.
    """

    def __init__(
        self,
        service_name: str,
        *,
        kinds: Iterable[str] = (),
        window_seconds: float = DEFAULT_WINDOW_SECONDS,
        buckets: int = DEFAULT_BUCKETS,
        clock: Clock = time.monotonic,
        wall_clock: Clock = time.time,
    ) -> None:
        if not service_name:
            raise ValueError("service_name must be a non-empty string")
        if window_seconds <= 0:
            raise ValueError(f"window_seconds must be > 0, got {window_seconds!r}")
        if buckets < 2:
            raise ValueError(f"buckets must be >= 2, got {buckets!r}")
        self.service_name = service_name
        self.window_seconds = float(window_seconds)
        self._buckets = buckets
        self._width = self.window_seconds / buckets
        self._clock = clock
        self._lock = threading.Lock()
        self._start = clock()
        self._start_wall = wall_clock()
        self._counters: dict[str, KindCounter] = {}
        for kind in kinds:
            self.counter(kind)

    def counter(self, kind: str = DEFAULT_KIND) -> KindCounter:
        """Return the counter of `kind`, creating it on first use. Thread-safe."""
        counter = self._counters.get(kind)
        if counter is not None:
            return counter
        if not kind:
            raise ValueError("an event kind must be a non-empty string")
        with self._lock:
            counter = self._counters.get(kind)
            if counter is None:
                counter = KindCounter(
                    kind,
                    lock=self._lock,
                    clock=self._clock,
                    start=self._start,
                    width=self._width,
                    buckets=self._buckets,
                )
                self._counters = {**self._counters, kind: counter}
            return counter

    def record(self, kind: str = DEFAULT_KIND, n: int = 1) -> None:
        """Count `n` events of `kind` happening now. Thread-safe; `n` must be positive.

        This is `counter(kind).record(n)` written out in place, to save a call per event.
        """
        try:
            counter = self._counters[kind]
        except KeyError:
            counter = self.counter(kind)
        if n < 1:
            raise ValueError(f"record() counts events: n must be >= 1, got {n!r}")
        counter._acquire()
        try:
            now = counter._clock()
            if now >= counter._slot_end:
                counter._advance(now)
            counter._count += n
            counter._last = now
        finally:
            counter._release()

    @property
    def kinds(self) -> tuple[str, ...]:
        """The kinds counted so far, sorted."""
        return tuple(sorted(self._counters))

    def read(self, kinds: Iterable[str] = ()) -> RateReading:
        """Return the current figures; `kinds` limits the breakdown (unknown kinds read zero).

        The totals always cover every kind, whatever `kinds` selects.
        """
        wanted = tuple(kinds)
        with self._lock:
            now = self._clock()
            uptime = max(now - self._start, 0.0)
            current_slot = int(uptime // self._width)
            slot_start = self._start + current_slot * self._width
            covered = min(uptime, (self._buckets - 1) * self._width + (now - slot_start))
            per_kind: dict[str, tuple[int, int, float | None]] = {}
            for kind, counter in self._counters.items():
                counter._advance(now)
                per_kind[kind] = (
                    counter._window_count(),
                    counter._committed_total + counter._count,
                    counter._last,
                )
        window_total = sum(entry[0] for entry in per_kind.values())
        grand_total = sum(entry[1] for entry in per_kind.values())
        lasts = [entry[2] for entry in per_kind.values() if entry[2] is not None]
        breakdown: list[KindReading] = []
        for kind in sorted(set(wanted or per_kind)):
            window_events, total_events, last = per_kind.get(kind, (0, 0, None))
            breakdown.append(
                KindReading(
                    kind=kind,
                    events_per_second=_rate(window_events, covered),
                    window_events=window_events,
                    total_events=total_events,
                    last_event_time=self._to_wall(last),
                )
            )
        return RateReading(
            service_name=self.service_name,
            events_per_second=_rate(window_total, covered),
            window_events=window_total,
            total_events=grand_total,
            uptime_seconds=uptime,
            window_seconds=self.window_seconds,
            covered_seconds=covered,
            start_time=self._start_wall,
            read_time=self._start_wall + uptime,
            last_event_time=self._to_wall(max(lasts) if lasts else None),
            kinds=tuple(breakdown),
        )

    def _to_wall(self, monotonic_instant: float | None) -> float | None:
        """Turn a monotonic instant into epoch seconds, using the wall time at start."""
        if monotonic_instant is None:
            return None
        return self._start_wall + (monotonic_instant - self._start)


def _rate(count: int, span: float) -> float:
    """Events per second over `span` seconds; 0 for an empty span."""
    return count / span if span > 0 else 0.0
