"""The values of final windows, kept per series and step: a range query's past computed once.

A window `(t - step, t]` of a range query is **final** once every sample it takes is in the
tier's sealed chunks (`t <= sealed_ms`: chunks are never changed, only appended after) and
retention cannot have taken one yet (`t - step >= now - retention`). Its value then never
changes, so the engine keeps it: a dashboard asking for the same figures again (every few
seconds, a range ending now) reads and evaluates only the windows after the last final one.
This is what Prometheus's query frontends (Thanos, Cortex) do with their results cache.

An **extent** is the values of consecutive windows `first_ms + i * step` of one answer series
(figure, stored series, tier, step), NaN for a window without a point (no figure is NaN).
At most `MAX_WINDOWS` values are kept in all, 8 bytes each (8 MB), the least recently used
extent going first. Thread-safe. Measured by bench/bench_history_query.py (warm figures).
"""

from __future__ import annotations

import math
import threading
from array import array
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass

MAX_WINDOWS = 1_000_000
"""The most window values kept (8 bytes each): 30 answers of 15 series x 2,161 points."""


@dataclass(frozen=True, slots=True)
class Extent:
    """The values of windows `first_ms + i * step_ms` (NaN: no point there)."""

    first_ms: int
    step_ms: int
    values: array[float]

    @property
    def last_ms(self) -> int:
        """The time of the last window held."""
        return self.first_ms + (len(self.values) - 1) * self.step_ms

    def value_at(self, time_ms: int) -> float | None:
        """The value of the window ending at `time_ms` (held: see `holds`); None: no point."""
        value = self.values[(time_ms - self.first_ms) // self.step_ms]
        return None if math.isnan(value) else value

    def holds(self, time_ms: int) -> bool:
        """True when the window ending at `time_ms` is one of the extent's."""
        offset = time_ms - self.first_ms
        return offset >= 0 and offset % self.step_ms == 0 and time_ms <= self.last_ms


class WindowCache:
    """Extents by key, least recently used first out (see the module doc)."""

    def __init__(self, max_windows: int = MAX_WINDOWS) -> None:
        self._lock = threading.Lock()
        self._extents: OrderedDict[Hashable, Extent] = OrderedDict()
        self._windows = 0
        self.max_windows = max_windows

    def get(self, key: Hashable) -> Extent | None:
        """The extent kept for `key`, if any."""
        with self._lock:
            extent = self._extents.get(key)
            if extent is not None:
                self._extents.move_to_end(key)
            return extent

    def put(self, key: Hashable, extent: Extent) -> None:
        """Keep `extent` for `key` (replacing the one before), within `max_windows`."""
        if len(extent.values) > self.max_windows:
            return
        with self._lock:
            old = self._extents.pop(key, None)
            if old is not None:
                self._windows -= len(old.values)
            self._extents[key] = extent
            self._windows += len(extent.values)
            while self._windows > self.max_windows:
                _, dropped = self._extents.popitem(last=False)
                self._windows -= len(dropped.values)

    def clear(self) -> None:
        """Forget every extent."""
        with self._lock:
            self._extents.clear()
            self._windows = 0
