"""OTLP histogram data points as the mesh's latency buckets (`mesh_common.latency`).

- Explicit bounds: each bucket's count goes into the mesh bucket holding the bucket's upper
  bound; the highest non-empty bucket goes at the stated `max` instead when there is one (it
  lies in that bucket and is tighter), else the +Inf bucket at the last finite bound. A
  quantile read from the result is the explicit bucket's upper bound (within the mesh's
  `RELATIVE_ERROR`), so its error is at most that bucket's width: the resolution the pusher
  chose, never better.
- Exponential buckets: at scale >= `SCALE` (4) bucket `j` lies wholly inside mesh bucket
  `j >> (scale - 4)` when the unit is seconds: the merge is exact. At a lower scale, or in
  another unit (1 ms is not a power of two of seconds), each bucket goes into the mesh bucket
  holding its upper bound (error at most one OTLP bucket's width). The zero bucket goes into
  the first mesh bucket; a negative bucket holding a count is refused (a duration is never
  negative).

Durations outside the mesh's 10 us .. 10 min are clamped into its end buckets and counted, as
the agents' are. Without a stated `sum` the sum is estimated from the buckets (each count at
its bucket's representative value); without a stated `max` the max is the top bucket's upper
bound.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Mapping

from opentelemetry.proto.metrics.v1 import metrics_pb2

from aggregator._errors import Refused
from aggregator._ingest.model import Durations
from mesh_common.latency import (
    MAX_INDEX,
    MIN_INDEX,
    SCALE,
    index_of,
    representative,
    upper_bound,
)

MAX_CACHED_BOUNDS = 64
"""Bound lists up to this long have their buckets cached (256 lists at most, so a hostile
pusher's lists cost a bounded 256 x 64 floats)."""
MIN_SCALE, MAX_SCALE = -10, 20
"""The scales OTLP defines; a point outside them is refused."""
_LOG2_LARGEST = math.log2(upper_bound(MAX_INDEX))


def explicit(point: metrics_pb2.HistogramDataPoint, factor: float) -> Durations | None:
    """The point's durations (bounds times `factor`: seconds); None when it has no buckets.

    Refused when its buckets do not fit its bounds or do not add up to its count.
    """
    counts = point.bucket_counts
    if not counts:
        return None
    bounds = tuple(point.explicit_bounds)
    cached = len(bounds) <= MAX_CACHED_BOUNDS
    indexes = _cached_indexes(bounds, factor) if cached else _bound_indexes(bounds, factor)
    if len(counts) != len(indexes):
        raise Refused(f"{len(counts)} bucket counts for {len(indexes) - 1} bounds (needs + 1)")
    total = sum(counts)
    if total != point.count:
        raise Refused(f"count {point.count} is not the sum of its bucket counts {total}")
    if not total:
        return None
    stated_max = point.max * factor if point.HasField("max") else None
    if len(set(indexes)) == len(indexes) - 1:  # each finite bound in a mesh bucket of its own
        finite = zip(indexes[:-1], counts, strict=False)  # counts has the +Inf one more
        placed = {index: count for index, count in finite if count}
        if counts[-1]:  # the +Inf bucket, at the last finite bound
            placed[indexes[-1]] = placed.get(indexes[-1], 0) + counts[-1]
    else:
        placed = {}
        for index, count in zip(indexes, counts, strict=True):
            if count:
                placed[index] = placed.get(index, 0) + count
    top_position = len(counts) - 1
    while not counts[top_position]:
        top_position -= 1
    top, top_count = indexes[top_position], counts[top_position]
    if stated_max is not None:  # the highest non-empty bucket holds the max: place it there
        placed[top] -= top_count
        if not placed[top]:
            del placed[top]
        at = index_of(stated_max)
        placed[at] = placed.get(at, 0) + top_count
    return _histogram(placed, point.sum * factor if point.HasField("sum") else None, stated_max)


def _bound_indexes(bounds: tuple[float, ...], factor: float) -> tuple[int, ...]:
    """The mesh bucket of each explicit bucket (the +Inf one at the last finite bound).

    Refused for bounds that are not finite and increasing.
    """
    if any(not math.isfinite(b) for b in bounds) or any(
        a >= b for a, b in itertools.pairwise(bounds)
    ):
        raise Refused("explicit bounds must be finite and increasing")
    indexes = tuple(index_of(bound * factor) for bound in bounds)
    return (*indexes, indexes[-1]) if indexes else (index_of(0.0),)


def exponential(
    point: metrics_pb2.ExponentialHistogramDataPoint, factor: float
) -> Durations | None:
    """The point's durations (bucket bounds times `factor`: seconds); None when it is empty.

    Refused for negative durations, a scale OTLP does not define, or a count that is not the
    sum of its buckets.
    """
    if any(point.negative.bucket_counts):
        raise Refused("negative bucket counts: a duration is never negative")
    scale = point.scale
    if not MIN_SCALE <= scale <= MAX_SCALE:
        raise Refused(f"scale {scale} is outside OTLP's {MIN_SCALE}..{MAX_SCALE}")
    positive = point.positive
    total = point.zero_count + sum(positive.bucket_counts)
    if total != point.count:
        raise Refused(f"count {point.count} is not the sum of its bucket counts {total}")
    if not total:
        return None
    placed: dict[int, int] = {MIN_INDEX: point.zero_count} if point.zero_count else {}
    exact = scale >= SCALE and factor == 1.0
    for j, count in enumerate(positive.bucket_counts, positive.offset):
        if not count:
            continue
        if exact:
            index = min(max(j >> (scale - SCALE), MIN_INDEX), MAX_INDEX)
        else:
            index = _index_of_log2((j + 1) * 2.0**-scale + math.log2(factor))
        placed[index] = placed.get(index, 0) + count
    stated_max = point.max * factor if point.HasField("max") else None
    return _histogram(placed, point.sum * factor if point.HasField("sum") else None, stated_max)


def _index_of_log2(log2_seconds: float) -> int:
    """The mesh bucket of 2 ** log2_seconds seconds (no overflow for a hostile exponent)."""
    if log2_seconds >= _LOG2_LARGEST:
        return MAX_INDEX
    return index_of(2.0**log2_seconds)


_cached_indexes = functools.lru_cache(maxsize=256)(_bound_indexes)
"""`_bound_indexes` cached: a pusher sends the same bounds in every point
(bench/bench_ingest_otlp.py)."""


def _histogram(
    placed: Mapping[int, int], sum_seconds: float | None, max_seconds: float | None
) -> Durations:
    high = max(placed)
    if sum_seconds is None or not math.isfinite(sum_seconds):
        sum_seconds = math.fsum(representative(i) * count for i, count in placed.items())
    if max_seconds is None or not math.isfinite(max_seconds):
        max_seconds = upper_bound(high)
    return Durations(placed, max(0.0, sum_seconds), max(0.0, max_seconds))
