"""Pushed series over time: their stored points read as Prometheus reads a gauge (pure).

A pushed series' value at `t` is its last point read at or before `t`, and no more than
`pushed.LOOKBACK_MS` (5 minutes) before it: Prometheus's staleness rule, so a series that
stopped being pushed has no value 5 minutes later instead of its last one forever. A tier
holds the last value of each of its buckets (`pushed.py`): at steps that are multiples of the
tier's resolution (what `tiers.choose_tier` picks) the value at each step is exactly the last
one read at or before it.

An aggregation over a step (avg, min, max, sum, count) takes the points read within the step
`(t - step, t]` at the tier of the query's resolution: `avg_over_time(metric[step])` over the
values that tier kept.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from itertools import groupby
from operator import attrgetter

from aggregator._history.pushed import LOOKBACK_MS, PushedPoint
from aggregator._history.query import Point

__all__ = ["by_series", "last_values", "newest", "step_values"]


def _value(point: PushedPoint) -> float:
    return math.nan if point.value is None else point.value


def by_series(points: Sequence[PushedPoint]) -> Iterator[tuple[int, list[PushedPoint]]]:
    """The points grouped by series (they come sorted by series, then time)."""
    for series, group in groupby(points, key=attrgetter("series")):
        yield series, list(group)


def last_values(
    points: Sequence[PushedPoint], start_ms: int, end_ms: int, step_ms: int
) -> list[Point]:
    """At each `start_ms + i * step_ms` up to `end_ms`: the last value within the lookback.

    `points` are one series' points in time order.
    """
    found: list[Point] = []
    index, count = 0, len(points)
    last: PushedPoint | None = None
    for time_ms in range(start_ms, end_ms + 1, step_ms):
        while index < count and points[index].time_ms <= time_ms:
            last = points[index]
            index += 1
        if last is not None and time_ms - last.time_ms < LOOKBACK_MS:
            found.append(Point(time_ms, _value(last)))
    return found


def step_values(
    points: Sequence[PushedPoint],
    start_ms: int,
    end_ms: int,
    step_ms: int,
    aggregate: Callable[[list[float]], float],
) -> list[Point]:
    """At each step with points read in `(t - step, t]`: `aggregate` of their values."""
    windows: dict[int, list[float]] = {}
    for point in points:
        index = -((start_ms - point.time_ms) // step_ms)  # ceil: the window (t - step, t]
        if index >= 0 and start_ms + index * step_ms <= end_ms:
            windows.setdefault(index, []).append(_value(point))
    return [
        Point(start_ms + index * step_ms, aggregate(values))
        for index, values in sorted(windows.items())
    ]


def newest(points: Sequence[PushedPoint]) -> Point | None:
    """The newest of one series' points (None without points)."""
    if not points:
        return None
    top = max(points, key=attrgetter("time_ms"))
    return Point(top.time_ms, _value(top))
