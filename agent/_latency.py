"""One kind's latency buckets: the rolling window and since start, in fixed memory.

The window is cut into slots of a whole number of the tracker's buckets (12 slots of 5 s for
the default 60 buckets of 1 s), so a latency slot only ever changes when a bucket does.
`observe()` adds a duration to one dense array (the window's bucket counts, under the
tracker's lock) and to the current slot's count, sum and maximum: nothing else on the hot path.

When a slot closes, its bucket counts (the window's minus those of the slots still in it) are
kept as a compact (positions, counts) pair; when it leaves the window, they are subtracted
from the window and added to the counts of the durations that left it (`expired`). Since
start is then `expired + window`, computed when read. Memory is fixed: two dense arrays of
`mesh_common.latency.BUCKETS` counts plus at most `slots` compact slots. Durations age out in
whole slots: the latency window covers the last 55 to 60 s while the rate's covers 59 to 60 s.
"""

from __future__ import annotations

import math
from array import array
from dataclasses import dataclass
from itertools import compress
from typing import NamedTuple

from mesh_common.latency import (
    BUCKETS,
    MIN_INDEX,
    Histogram,
    upper_bound,
)

TARGET_SLOTS = 12
"""About this many latency slots per window (it ages out one slot at a time)."""

_ZEROS_32 = bytes(4 * BUCKETS)
_ZEROS_64 = bytes(8 * BUCKETS)


def slot_buckets(buckets: int) -> int:
    """How many of the tracker's buckets one latency slot spans."""
    return max(1, buckets // TARGET_SLOTS)


@dataclass(frozen=True, slots=True)
class _ClosedSlot:
    """A closed slot's non-empty buckets, count, sum and max."""

    positions: array[int]
    counts: array[int]
    count: int
    sum: float
    max: float


def _span(dense: array[int]) -> tuple[int, int]:
    """(first, end) positions of the non-empty part of `dense`, found at C speed."""
    raw = dense.tobytes()
    size = dense.itemsize
    low = (len(raw) - len(raw.lstrip(b"\0"))) // size
    high = len(dense) - (len(raw) - len(raw.rstrip(b"\0"))) // size
    return low, max(low, high)


class LatencyHistograms(NamedTuple):
    """A kind's latency histograms as built from its window at `version`."""

    version: tuple[int, int]
    window: Histogram | None
    since_start: Histogram | None


class LatencyWindow:
    """The latency buckets of one kind; every method is called under the tracker's lock.

    `window`, `count`, `sum` and `max` are updated by the counter's `observe()` directly.
    """

    __slots__ = (
        "_expired",
        "_expired_high",
        "_expired_low",
        "_expired_sum",
        "_has_history",
        "_ring",
        "_slot",
        "count",
        "max",
        "sum",
        "window",
    )

    def __init__(self, slots: int) -> None:
        self._ring: list[_ClosedSlot | None] = [None] * slots
        self._slot = 0
        self.window = array("I", _ZEROS_32)
        """The bucket counts of every slot in the window, the current one included."""
        self.count = 0
        """Durations in the current slot."""
        self.sum = 0.0
        """Their sum."""
        self.max = 0.0
        """Their maximum."""
        self._expired: array[int] | None = None
        """Counts of the durations that left the window; made when the first one does."""
        self._expired_low = BUCKETS
        self._expired_high = 0
        self._expired_sum = 0.0
        self._has_history = False

    def advance(self, slot: int) -> None:
        """Close the current slot and expire the slots that left the window by `slot`."""
        current = self._slot
        if slot <= current:
            return
        ring = self._ring
        slots = len(ring)
        ring[current % slots] = self._close()
        for skipped in range(current + 1, slot + 1)[-slots:]:
            gone = ring[skipped % slots]
            if gone is not None:
                self._expire(gone)
                ring[skipped % slots] = None
        self._slot = slot

    @property
    def timed(self) -> bool:
        """True once a duration was observed (the window or since start holds one)."""
        return self.count > 0 or self._has_history

    @property
    def version(self) -> tuple[int, int]:
        """The slot and its count of durations: while it is the same, so are the histograms."""
        return self._slot, self.count

    def histograms(self) -> LatencyHistograms:
        """The window's and since start's histograms (of a copy), with the version."""
        window = self.window_histogram()
        return LatencyHistograms(self.version, window, self.since_start_histogram(window))

    def copy(self) -> LatencyWindow:
        """A snapshot of the window's state, to read outside the lock."""
        copied = LatencyWindow.__new__(LatencyWindow)
        copied._ring = list(self._ring)
        copied._slot = self._slot
        copied._has_history = self._has_history
        copied.window = array("I", self.window)
        copied.count, copied.sum, copied.max = self.count, self.sum, self.max
        low, high = self._expired_low, self._expired_high
        expired = self._expired
        copied._expired = expired[low:high] if expired is not None and low < high else array("Q")
        copied._expired_low, copied._expired_high = low, high
        copied._expired_sum = self._expired_sum
        return copied

    def window_histogram(self) -> Histogram | None:
        """The window's durations; None when it holds none (of a copy)."""
        closed = [item for item in self._ring if item is not None]
        count = self.count + sum(item.count for item in closed)
        if count == 0:
            return None
        low, high = _span(self.window)
        return Histogram(
            MIN_INDEX + low,
            tuple(self.window[low:high]),
            math.fsum([self.sum, *(item.sum for item in closed)]),
            max([self.max, *(item.max for item in closed)]),
        )

    def since_start_histogram(self, window: Histogram | None) -> Histogram | None:
        """Every duration since start (cumulative buckets), given the window's (of a copy).

        No exact maximum is kept since start: the highest bucket's upper bound stands for it.
        """
        parts: list[tuple[int, tuple[int, ...] | array[int]]] = []
        if window is not None:
            parts.append((window.offset - MIN_INDEX, window.counts))
        if self._expired is not None and self._expired_low < self._expired_high:
            parts.append((self._expired_low, self._expired))
        if not parts:
            return None
        low = min(start for start, _ in parts)
        high = max(start + len(counts) for start, counts in parts)
        dense = [0] * (high - low)
        for start, counts in parts:
            at = start - low
            dense[at : at + len(counts)] = map(int.__add__, dense[at : at + len(counts)], counts)
        total = self._expired_sum + (window.sum_seconds if window is not None else 0.0)
        return Histogram(MIN_INDEX + low, tuple(dense), total, upper_bound(MIN_INDEX + high - 1))

    def _close(self) -> _ClosedSlot | None:
        """The current slot's buckets (the window's minus the closed slots'), compacted."""
        if self.count == 0:
            return None
        low, high = _span(self.window)
        counts = list(self.window[low:high])
        for item in self._ring:
            if item is not None:
                for position, count in zip(item.positions, item.counts, strict=True):
                    counts[position - low] -= count
        nonzero = [count != 0 for count in counts]
        self._has_history = True
        closed = _ClosedSlot(
            array("H", compress(range(low, high), nonzero)),
            array("I", compress(counts, nonzero)),
            self.count,
            self.sum,
            self.max,
        )
        self.count, self.sum, self.max = 0, 0.0, 0.0
        return closed

    def _expire(self, gone: _ClosedSlot) -> None:
        expired = self._expired
        if expired is None:
            expired = self._expired = array("Q", _ZEROS_64)
        window = self.window
        for position, count in zip(gone.positions, gone.counts, strict=True):
            window[position] -= count
            expired[position] += count
        if gone.positions:
            self._expired_low = min(self._expired_low, gone.positions[0])
            self._expired_high = max(self._expired_high, gone.positions[-1] + 1)
        self._expired_sum += gone.sum
