"""The rolling-window event tracker: exact counts in fixed one-second buckets.

A tracker holds one `KindCounter` per kind of event. Each counter keeps the count of the
current bucket plus a ring of the previous `buckets - 1` buckets, so memory is fixed however
many events arrive, and every event is counted (no cap, no sampling). The rate is the count in
the window divided by the span those buckets actually cover: during warm-up that span is the
uptime, afterwards it is between `window - width` and `window` depending on how far into the
current bucket the reading falls. Both figures are exact, so a steady 1000 ev/s reads 1000.

Failed events are counted the same way, in a ring of their own. Timed events (`observe()`)
also go into the kind's `LatencyWindow` (`agent._latency`): log-scale buckets of
`mesh_common.latency` for the window and since start, in fixed memory, never one entry per
event.
"""

from __future__ import annotations

import collections
import operator
import threading
import time
from array import array
from collections.abc import Iterable
from typing import NamedTuple, NoReturn

from agent._latency import LatencyHistograms, LatencyWindow, slot_buckets
from mesh_common.clocks import ReadClock
from mesh_common.latency import Histogram, merge, position_of

DEFAULT_KIND = "event"
DEFAULT_WINDOW_SECONDS = 60.0
DEFAULT_BUCKETS = 60
NEVER = float("-inf")
"""The `_last` of a counter that has not recorded anything yet."""


class KindReading(NamedTuple):
    """The figures of one kind of event at one reading (immutable).

    `last_event_time` is the wall-clock time (epoch seconds) of this kind's last event, None if
    it never happened. A named tuple rather than a frozen dataclass: it is built on every
    reading, and a frozen dataclass costs about four times as much to build.
    """

    kind: str
    events_per_second: float
    window_events: int
    total_events: int
    last_event_time: float | None
    window_errors: int = 0
    total_errors: int = 0
    latency: Histogram | None = None
    """The durations of the kind's timed events in the window; None when there is none."""
    latency_since_start: Histogram | None = None
    """Every timed event of the kind since start (cumulative); None when there never was one."""

    @property
    def error_rate(self) -> float | None:
        """window_errors / window_events; None when the window holds no event."""
        return self.window_errors / self.window_events if self.window_events else None


class RateReading(NamedTuple):
    """One consistent reading of a tracker: every figure was taken at the same instant.

    Times are epoch seconds (`start_time`, `read_time`, `last_event_time`, None when no event
    happened yet); spans are seconds. `kinds` is the per-kind breakdown, sorted by kind.
    """

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
    window_errors: int = 0
    total_errors: int = 0
    latency: Histogram | None = None
    """The durations of every kind's timed events in the window (merged buckets), or None."""
    cpu_usage_percent: float = 0.0
    """CPU time of the process over the window's readings, in percent of one core."""

    @property
    def error_rate(self) -> float | None:
        """window_errors / window_events; None when the window holds no event."""
        return self.window_errors / self.window_events if self.window_events else None

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
    Failed events have the same three (`_errors`, `_error_ring`, `_error_ring_sum`), and timed
    ones go into `_latency` (one dense array of bucket counts, about 1.7 KB, for every kind).
    """

    __slots__ = (
        "_buckets",
        "_clock",
        "_committed_errors",
        "_committed_total",
        "_count",
        "_error_ring",
        "_error_ring_sum",
        "_errors",
        "_last",
        "_latency",
        "_latency_slot_buckets",
        "_lock",
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
        clock: ReadClock,
        start: float,
        width: float,
        buckets: int,
    ) -> None:
        self.kind = kind
        self._lock = lock
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
        self._errors = 0
        self._error_ring = array("Q", bytes(8 * buckets))
        self._error_ring_sum = 0
        self._committed_errors = 0
        self._latency_slot_buckets = slot_buckets(buckets)
        self._latency = LatencyWindow(buckets // self._latency_slot_buckets)
        self._last = NEVER
        # Built by EventTracker.counter() under the lock, so advancing here is safe.
        now = clock()
        if now >= self._slot_end:
            self._advance(now)

    def record(self, n: int = 1, *, error: bool = False) -> None:
        """Count `n` events (default 1) happening now, all failed when `error`. Thread-safe.

        `n` must be positive. This is the hot path: one clock read, one lock, three slots.
        """
        if n < 1:
            _refuse(n)
        # The clock is read before the lock, so the lock is held for the counting alone: an
        # event racing another past a bucket edge lands in the later bucket, and `_last` may
        # be a few nanoseconds older than the newest event; counts stay exact.
        # acquire()/release() rather than `with` (CPython 3.11 calls the lock's __exit__ with
        # three arguments): about 55 ns less per call, record() 0.75x Counter.inc() instead
        # of 0.91x (bench/bench_agent.py, "record(), 1 thread").
        now = self._clock()
        lock = self._lock
        lock.acquire()
        try:
            if now >= self._slot_end:
                self._advance(now)
            self._count += n
            if error:
                self._errors += n
            self._last = now
        finally:
            lock.release()

    def record_error(self, n: int = 1) -> None:
        """Count `n` failed events (default 1) happening now, without a duration."""
        self.record(n, error=True)

    def observe(self, seconds: float, *, error: bool = False) -> None:
        """Count one event that took `seconds` and failed when `error`. Thread-safe.

        The duration goes into the kind's latency buckets (`mesh_common.latency`); one
        outside 10 us..10 min is counted in the end bucket.
        """
        position = position_of(seconds)
        now = self._clock()
        lock = self._lock
        lock.acquire()  # not `with`: as in record()
        try:
            if now >= self._slot_end:
                self._advance(now)
            self._count += 1
            if error:
                self._errors += 1
            self._last = now
            latency = self._latency
            latency.window[position] += 1
            latency.count += 1
            latency.sum += seconds
            if seconds > latency.max:
                latency.max = seconds
        finally:
            lock.release()

    def _take(self, now: float, built: dict[str, LatencyHistograms]) -> _KindCounts:
        """The kind's counts at `now`; call under the lock.

        The latency comes as `built[kind]` when that was made from the window as it still is,
        else as a copy of the window to build from outside the lock (None when untimed).
        """
        if now >= self._slot_end:
            self._advance(now)
        current, errors, last, latency = self._count, self._errors, self._last, self._latency
        histograms: LatencyHistograms | LatencyWindow | None = None
        if latency.timed:
            histograms = built.get(self.kind)
            if histograms is None or histograms.version != latency.version:
                histograms = latency.copy()
        return (
            self.kind,
            self._ring_sum + current,
            self._committed_total + current,
            None if last == NEVER else last,
            self._error_ring_sum + errors,
            self._committed_errors + errors,
            histograms,
        )

    def _advance(self, now: float) -> None:
        """Move the current bucket to the one holding `now`, zeroing the buckets skipped.

        Call under the lock.
        """
        slot = int((now - self._start) // self._width)
        current = self._slot
        if slot <= current:
            return
        count, errors = self._count, self._errors
        self._committed_total += count
        self._committed_errors += errors
        self._count = self._errors = 0
        self._ring_sum = _commit(self._ring, self._ring_sum, current, slot, count)
        self._error_ring_sum = _commit(
            self._error_ring, self._error_ring_sum, current, slot, errors
        )
        self._latency.advance(slot // self._latency_slot_buckets)
        self._slot = slot
        self._slot_end = self._start + (slot + 1) * self._width


def _refuse(n: int) -> NoReturn:
    raise ValueError(f"record() counts events: n must be >= 1, got {n!r}")


def _commit(ring: array[int], ring_sum: int, current: int, slot: int, count: int) -> int:
    """Store bucket `current`'s count, zero the buckets up to `slot`; the new running sum."""
    buckets = len(ring)
    ring[current % buckets] = count
    if slot - current >= buckets:
        ring[:] = array("Q", bytes(8 * buckets))
        return 0
    ring_sum += count
    for skipped in range(current + 1, slot + 1):
        index = skipped % buckets
        ring_sum -= ring[index]
        ring[index] = 0
    return ring_sum


_KindCounts = tuple[str, int, int, float | None, int, int, LatencyHistograms | LatencyWindow | None]
"""One kind's counts as taken under the lock: kind, window events, total events, last event
instant, window errors, total errors, and its latency (see `KindCounter._take`). A plain
tuple: a NamedTuple's construction costs a Python call per kind and reading."""


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
        clock: ReadClock = time.monotonic,
        wall_clock: ReadClock = time.time,
        cpu_clock: ReadClock = time.process_time,
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
        self._full_buckets_span = (buckets - 1) * self._width
        self._clock = clock
        self._lock = threading.Lock()
        self._read_lock = threading.Lock()
        """Taken by read(): one reading at a time, so `_built` needs no other guard."""
        self._built: dict[str, LatencyHistograms] = {}
        """Each timed kind's last latency histograms: reused while its window is unchanged."""
        self._last_merge: tuple[list[Histogram], Histogram] | None = None
        """The kinds' windows last merged, and their merge."""
        self._start = clock()
        self._start_wall = wall_clock()
        self._cpu_clock = cpu_clock
        self._cpu_samples: collections.deque[tuple[float, float]] = collections.deque(
            [(self._start, cpu_clock())], maxlen=buckets + 1
        )
        # Sorted by kind; replaced (never mutated) when a kind is added, so readers need no lock.
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
                self._counters = dict(sorted({**self._counters, kind: counter}.items()))
            return counter

    def record(self, kind: str = DEFAULT_KIND, n: int = 1) -> None:
        """Count `n` events of `kind` happening now. Thread-safe; `n` must be positive.

        `counter(kind).record(n)` with the kind looked up on every call: keep the counter
        where the kind is fixed.
        """
        try:
            counter = self._counters[kind]
        except KeyError:
            counter = self._new_counter(kind, n)
        counter.record(n)

    def record_error(self, kind: str = DEFAULT_KIND, n: int = 1) -> None:
        """Count `n` failed events of `kind` happening now, without a duration."""
        try:
            counter = self._counters[kind]
        except KeyError:
            counter = self._new_counter(kind, n)
        counter.record(n, error=True)

    def _new_counter(self, kind: str, n: int) -> KindCounter:
        """The counter of a kind not seen yet, to count `n` events: a refused `n` adds none."""
        if n < 1:
            _refuse(n)
        return self.counter(kind)

    def observe(self, kind: str, seconds: float, *, error: bool = False) -> None:
        """Count one event of `kind` that took `seconds` and failed when `error`."""
        try:
            counter = self._counters[kind]
        except KeyError:
            counter = self.counter(kind)
        counter.observe(seconds, error=error)

    @property
    def clock(self) -> ReadClock:
        """The tracker's monotonic clock (the helpers time calls with it)."""
        return self._clock

    @property
    def kinds(self) -> tuple[str, ...]:
        """The kinds counted so far, sorted."""
        return tuple(self._counters)

    def read(self, kinds: Iterable[str] = ()) -> RateReading:
        """Return the current figures; `kinds` limits the breakdown (unknown kinds read zero).

        The totals always cover every kind, whatever `kinds` selects; the service's latency
        comes from the merged buckets of its kinds. Only the counts are taken under the
        counters' lock; the rest is arithmetic on them afterwards. A kind's latency
        histograms are built again only when its window changed since the last reading.
        """
        with self._read_lock:  # one reading at a time: the built histograms are shared
            now, counts = self._counts()
            start, width = self._start, self._width
            uptime = now - start if now > start else 0.0
            slot_start = start + (uptime // width) * width
            covered = min(uptime, self._full_buckets_span + (now - slot_start))
            per_second = 1.0 / covered if covered > 0 else 0.0
            to_wall = self._start_wall - start
            readings, latencies, last, sums = self._kind_readings(counts, per_second, to_wall)
            latency = self._merged(latencies)
            cpu = self._cpu_usage(now)
        wanted = tuple(kinds)
        if wanted:
            by_kind = {item.kind: item for item in readings}
            readings = [
                by_kind.get(kind) or KindReading(kind, 0.0, 0, 0, None)
                for kind in sorted(set(wanted))
            ]
        window_total, grand_total, window_errors, total_errors = sums
        return RateReading(
            self.service_name,
            window_total * per_second,
            window_total,
            grand_total,
            uptime,
            self.window_seconds,
            covered,
            self._start_wall,
            self._start_wall + uptime,
            last,
            tuple(readings),
            window_errors,
            total_errors,
            latency,
            cpu,
        )

    def _kind_readings(
        self, counts: list[_KindCounts], per_second: float, to_wall: float
    ) -> tuple[list[KindReading], list[Histogram], float | None, tuple[int, int, int, int]]:
        """Every kind's reading, their latency windows, the last event's wall time, and sums.

        The sums are of window events, total events, window errors and total errors;
        `per_second` is 1 / the covered span. Call under the read lock.
        """
        readings: list[KindReading] = []
        latencies: list[Histogram] = []
        last_any: float | None = None
        window_total = grand_total = window_errors = total_errors = 0
        for kind, in_window, total, last, errors_in_window, errors, latency in counts:
            window_total += in_window
            grand_total += total
            window_errors += errors_in_window
            total_errors += errors
            window = since_start = wall = None
            if latency is not None:
                window, since_start = self._histograms(kind, latency)
                if window is not None:
                    latencies.append(window)
            if last is not None:
                wall = last + to_wall
                if last_any is None or wall > last_any:
                    last_any = wall
            readings.append(
                KindReading(
                    kind,
                    in_window * per_second,
                    in_window,
                    total,
                    wall,
                    errors_in_window,
                    errors,
                    window,
                    since_start,
                )
            )
        return (
            readings,
            latencies,
            last_any,
            (window_total, grand_total, window_errors, total_errors),
        )

    def _counts(self) -> tuple[float, list[_KindCounts]]:
        """Now, and every kind's counts taken under the lock."""
        built = self._built
        with self._lock:
            now = self._clock()
            counts = [counter._take(now, built) for counter in self._counters.values()]
        return now, counts

    def _histograms(
        self, kind: str, latency: LatencyHistograms | LatencyWindow
    ) -> tuple[Histogram | None, Histogram | None]:
        """A kind's latency (window, since start): as built before, or built now from its copy.

        Call under the read lock.
        """
        if isinstance(latency, LatencyWindow):
            latency = self._built[kind] = latency.histograms()
        return latency.window, latency.since_start

    def _merged(self, latencies: list[Histogram]) -> Histogram | None:
        """The service's latency: its kinds' windows merged (again only when one changed).

        Call under the read lock.
        """
        if not latencies:
            return None
        last = self._last_merge
        if (
            last is not None
            and len(last[0]) == len(latencies)
            and all(map(operator.is_, last[0], latencies))
        ):
            return last[1]
        merged = merge(latencies)
        self._last_merge = (latencies, merged)
        return merged

    def _cpu_usage(self, now: float) -> float:
        """The process's CPU over the readings of the last window, in percent of one core.

        Call under the read lock. Readings are sampled at most once a bucket (the aggregator
        reads once a round).
        """
        cpu = self._cpu_clock()
        samples = self._cpu_samples
        if now - samples[-1][0] >= self._width:
            samples.append((now, cpu))
        while len(samples) > 2 and now - samples[1][0] >= self.window_seconds:
            samples.popleft()
        first_at, first_cpu = samples[0]
        span = now - first_at
        return max(0.0, (cpu - first_cpu) / span * 100.0) if span > 0 else 0.0
