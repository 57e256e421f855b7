"""One kind's latency buckets: the rolling window and since start, in fixed memory.

The window is cut into `SLOTS` slots (12 of 5 s for the default 60 s window). Each duration
is added, under the tracker's lock, to the dense bucket counts of the current slot, of the
window and of since-start (three array increments, no allocation). When a slot closes, its
non-empty buckets are kept as a compact (positions, counts) pair; when it leaves the window,
they are subtracted from the window's counts. So the window's buckets are always at hand,
memory is fixed (three dense arrays of `mesh_common.latency.BUCKETS` counts plus at most
`SLOTS` compact slots), and durations age out of the window in whole slots: the latency
window covers the last 55 to 60 s while the rate's covers the last 59 to 60 s.
"""

from __future__ import annotations

import math
from array import array
from dataclasses import dataclass

from mesh_common.latency import (
    BUCKETS,
    INDEX_FACTOR,
    LARGEST_SECONDS,
    MIN_INDEX,
    SMALLEST_SECONDS,
    Histogram,
    from_dense,
    trimmed,
    upper_bound,
)

SLOTS = 12
"""Slots of the latency window (it ages out one slot at a time)."""

_LAST_POSITION = BUCKETS - 1
_ZEROS_32 = bytes(4 * BUCKETS)
_ZEROS_64 = bytes(8 * BUCKETS)
_LOG2 = math.log2
_CEIL = math.ceil


def bucket_position(seconds: float) -> int:
    """The position in a dense bucket array (0 is the scheme's first bucket) of a duration."""
    if not seconds > SMALLEST_SECONDS:  # also NaN and negative
        return 0
    if seconds >= LARGEST_SECONDS:
        return _LAST_POSITION
    return _CEIL(_LOG2(seconds) * INDEX_FACTOR) - 1 - MIN_INDEX


@dataclass(frozen=True, slots=True)
class _ClosedSlot:
    """A closed slot's non-empty buckets, count, sum and max."""

    positions: array[int]
    counts: array[int]
    count: int
    sum: float
    max: float


class LatencyWindow:
    """The latency buckets of one kind; every method is called under the tracker's lock."""

    __slots__ = (
        "_ring",
        "_slot",
        "_start",
        "_width",
        "count",
        "current",
        "max",
        "since_start",
        "since_start_sum",
        "slot_end",
        "sum",
        "window",
    )

    def __init__(self, start: float, window_seconds: float) -> None:
        self._start = start
        self._width = window_seconds / SLOTS
        self._slot = 0
        self.slot_end = start + self._width
        self._ring: list[_ClosedSlot | None] = [None] * SLOTS
        self.current = array("I", _ZEROS_32)
        """The current slot's bucket counts."""
        self.window = array("I", _ZEROS_32)
        """The bucket counts of every slot in the window, the current one included."""
        self.since_start = array("Q", _ZEROS_64)
        self.count = 0
        """Durations in the current slot."""
        self.sum = 0.0
        """Their sum."""
        self.max = 0.0
        """Their maximum."""
        self.since_start_sum = 0.0

    def advance(self, now: float) -> None:
        """Close the current slot and expire the slots that left the window by `now`."""
        slot = int((now - self._start) // self._width)
        current = self._slot
        if slot <= current:
            return
        ring = self._ring
        ring[current % SLOTS] = self._close()
        if slot - current >= SLOTS:
            self._ring = [None] * SLOTS
            self.window = array("I", _ZEROS_32)
        else:
            window = self.window
            for skipped in range(current + 1, slot + 1):
                gone = ring[skipped % SLOTS]
                if gone is not None:
                    for position, count in zip(gone.positions, gone.counts, strict=True):
                        window[position] -= count
                    ring[skipped % SLOTS] = None
        self._slot = slot
        self.slot_end = self._start + (slot + 1) * self._width

    def copy(self) -> LatencyWindow:
        """A snapshot of the window's state, to read outside the lock."""
        copied = LatencyWindow.__new__(LatencyWindow)
        copied._start, copied._width, copied._slot = self._start, self._width, self._slot
        copied.slot_end = self.slot_end
        copied._ring = list(self._ring)
        copied.current = self.current  # not read from a copy
        copied.window = array("I", self.window)
        copied.since_start = array("Q", self.since_start)
        copied.count, copied.sum, copied.max = self.count, self.sum, self.max
        copied.since_start_sum = self.since_start_sum
        return copied

    def window_histogram(self) -> Histogram | None:
        """The window's durations; None when it holds none."""
        closed = [item for item in self._ring if item is not None]
        count = self.count + sum(item.count for item in closed)
        if count == 0:
            return None
        total = math.fsum([self.sum, *(item.sum for item in closed)])
        longest = max([self.max, *(item.max for item in closed)])
        return from_dense(self.window, total, longest)

    def since_start_histogram(self) -> Histogram | None:
        """Every duration since start (cumulative buckets); None when there never was one."""
        offset, counts = trimmed(MIN_INDEX, self.since_start)
        if not counts:
            return None
        # No exact maximum is kept since start: the highest bucket's bound stands for it.
        return Histogram(
            offset, counts, self.since_start_sum, upper_bound(offset + len(counts) - 1)
        )

    def _close(self) -> _ClosedSlot | None:
        if self.count == 0:
            return None
        current = self.current
        raw = current.tobytes()
        low = (len(raw) - len(raw.lstrip(b"\0"))) // 4
        positions = array("H", (i for i in range(low, BUCKETS) if current[i]))
        counts = array("I", (current[i] for i in positions))
        closed = _ClosedSlot(positions, counts, self.count, self.sum, self.max)
        self.current = array("I", _ZEROS_32)
        self.count, self.sum, self.max = 0, 0.0, 0.0
        return closed
