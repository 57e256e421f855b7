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

import itertools
import math
from collections.abc import Mapping

from opentelemetry.proto.metrics.v1 import metrics_pb2

from aggregator._ingest.bounds import Refused
from mesh_common.latency import (
    MAX_INDEX,
    MIN_INDEX,
    SCALE,
    Histogram,
    index_of,
    representative,
    upper_bound,
)

MIN_SCALE, MAX_SCALE = -10, 20
"""The scales OTLP defines; a point outside them is refused."""
_LOG2_LARGEST = math.log2(upper_bound(MAX_INDEX))


def explicit(point: metrics_pb2.HistogramDataPoint, factor: float) -> Histogram | None:
    """The point's durations (bounds times `factor`: seconds); None when it has no buckets.

    Refused when its buckets do not fit its bounds or do not add up to its count.
    """
    counts, bounds = point.bucket_counts, point.explicit_bounds
    if not counts:
        return None
    if len(counts) != len(bounds) + 1:
        raise Refused(f"{len(counts)} bucket counts for {len(bounds)} bounds (needs bounds + 1)")
    if any(not math.isfinite(b) for b in bounds) or any(
        a >= b for a, b in itertools.pairwise(bounds)
    ):
        raise Refused("explicit bounds must be finite and increasing")
    total = sum(counts)
    if total != point.count:
        raise Refused(f"count {point.count} is not the sum of its bucket counts {total}")
    stated_max = point.max * factor if point.HasField("max") else None
    top = max((i for i, count in enumerate(counts) if count), default=None)
    placed: dict[int, int] = {}
    for i, count in enumerate(counts):
        if not count:
            continue
        if i == top and stated_max is not None:
            seconds = stated_max
        else:
            seconds = bounds[min(i, len(bounds) - 1)] * factor if bounds else 0.0
        index = index_of(seconds)
        placed[index] = placed.get(index, 0) + count
    if not placed:
        return None
    return _histogram(placed, point.sum * factor if point.HasField("sum") else None, stated_max)


def exponential(
    point: metrics_pb2.ExponentialHistogramDataPoint, factor: float
) -> Histogram | None:
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


def _histogram(
    placed: Mapping[int, int], sum_seconds: float | None, max_seconds: float | None
) -> Histogram:
    low, high = min(placed), max(placed)
    counts = tuple(placed.get(index, 0) for index in range(low, high + 1))
    if sum_seconds is None or not math.isfinite(sum_seconds):
        sum_seconds = math.fsum(representative(i) * count for i, count in placed.items())
    if max_seconds is None or not math.isfinite(max_seconds):
        max_seconds = upper_bound(high)
    return Histogram(low, counts, max(0.0, sum_seconds), max(0.0, max_seconds))
