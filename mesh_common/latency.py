"""The latency bucket scheme of the mesh: log-scale buckets with a bounded relative error.

Durations fall into the buckets of an exponential histogram as OpenTelemetry defines it, at
`SCALE` 4: bucket `i` covers (base**i, base**(i+1)] seconds with base = 2 ** (2 ** -SCALE)
= 2 ** (1/16) ~ 1.0443. Buckets run from index `MIN_INDEX` (10 us falls in it) to `MAX_INDEX`
(10 min); a duration outside is clamped into the end bucket and still counted. A quantile read
from the buckets is the bucket's representative value 2 * base**(i+1) / (base + 1), within
`RELATIVE_ERROR` = (base - 1) / (base + 1) ~ 2.17 % of the exact quantile (nearest rank) of
the same durations, and never above the exact maximum.

Every histogram of the mesh uses this one scheme, so merging is adding counts index by index:
the buckets of two agents, two kinds or two windows added together are exactly the buckets
one histogram fed both streams would hold. Quantiles of a service come from its kinds' merged
buckets, of the fleet from its services' merged buckets; percentiles are never averaged.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import accumulate

from metricsmesh.v1 import latency_pb2

from mesh_common.errors import MeshError
from mesh_common.wire_time import set_seconds, to_seconds

SCALE = 4
"""OpenTelemetry exponential-histogram scale: base = 2 ** (2 ** -SCALE)."""
BASE: float = 2.0 ** (2.0**-SCALE)
"""Ratio between a bucket's upper and lower bound."""
RELATIVE_ERROR: float = (BASE - 1.0) / (BASE + 1.0)
"""Largest relative error of a quantile read from the buckets (about 0.0217)."""
INDEX_FACTOR = float(2**SCALE)
"""index = ceil(log2(seconds) * INDEX_FACTOR) - 1."""
SMALLEST_SECONDS = 1e-5
"""10 us: shorter durations are counted in the first bucket."""
LARGEST_SECONDS = 600.0
"""10 min: longer durations are counted in the last bucket."""


MIN_INDEX = math.ceil(math.log2(SMALLEST_SECONDS) * INDEX_FACTOR) - 1
MAX_INDEX = math.ceil(math.log2(LARGEST_SECONDS) * INDEX_FACTOR) - 1
BUCKETS = MAX_INDEX - MIN_INDEX + 1
"""How many buckets the scheme has (a dense array of them is indexed by index - MIN_INDEX)."""
_LAST_POSITION = BUCKETS - 1
_POSITION_OFFSET = -1 - MIN_INDEX
_ceil, _log2 = math.ceil, math.log2


def position_of(seconds: float) -> int:
    """The position of a duration in a dense array of BUCKETS counts: index_of - MIN_INDEX.

    Durations up to SMALLEST_SECONDS (NaN and negative ones too) are at 0, from
    LARGEST_SECONDS on at BUCKETS - 1.
    """
    if SMALLEST_SECONDS < seconds < LARGEST_SECONDS:
        return _ceil(_log2(seconds) * INDEX_FACTOR) + _POSITION_OFFSET
    return _LAST_POSITION if seconds >= LARGEST_SECONDS else 0


def index_of(seconds: float) -> int:
    """The bucket index of a duration, clamped to MIN_INDEX..MAX_INDEX."""
    return position_of(seconds) + MIN_INDEX


def upper_bound(index: int) -> float:
    """The inclusive upper bound of bucket `index`, in seconds."""
    return float(BASE ** (index + 1))


def representative(index: int) -> float:
    """The value a quantile in bucket `index` reads: within RELATIVE_ERROR of anything in it."""
    return 2.0 * upper_bound(index) / (BASE + 1.0)


@dataclass(frozen=True, slots=True)
class Histogram:
    """Bucket counts from `offset` on (bucket `offset + k` holds `counts[k]`), sum and max.

    The wire form is `metricsmesh.v1.LatencyHistogram`; `count` is the number of durations.
    """

    offset: int
    counts: tuple[int, ...]
    sum_seconds: float
    max_seconds: float

    @property
    def count(self) -> int:
        """How many durations the histogram holds."""
        return sum(self.counts)

    @property
    def mean_seconds(self) -> float | None:
        """Sum / count; None for an empty histogram."""
        count = self.count
        return self.sum_seconds / count if count else None

    def quantile(self, q: float) -> float | None:
        """The q-quantile (nearest rank, 0 < q <= 1) in seconds; None for an empty histogram."""
        return quantiles(self.offset, self.counts, (q,), self.max_seconds)[0]


EMPTY = Histogram(0, (), 0.0, 0.0)
"""A histogram with no duration."""


def quantiles(
    offset: int, counts: Sequence[int], qs: Iterable[float], max_seconds: float
) -> list[float | None]:
    """Each q-quantile (nearest rank) of dense bucket counts from `offset`; None if empty.

    The rank of q among n durations is ceil(q * n) (at least 1); the answer is the
    representative of the bucket holding that rank, capped at the exact maximum.
    """
    cumulative = list(accumulate(counts))
    total = cumulative[-1] if cumulative else 0
    if total == 0:
        return [None for _ in qs]
    result: list[float | None] = []
    for q in qs:
        rank = max(1, math.ceil(q * total))
        position = bisect_left(cumulative, rank)
        result.append(min(representative(offset + position), max_seconds))
    return result


def merge(histograms: Iterable[Histogram]) -> Histogram:
    """The histogram of all durations of `histograms` (exact: counts add index by index)."""
    items = [item for item in histograms if item.counts]
    if not items:
        return EMPTY
    if len(items) == 1:
        return items[0]
    offset, counts = _dense_sum([(item.offset, item.counts) for item in items])
    return Histogram(
        offset,
        counts,
        math.fsum(item.sum_seconds for item in items),
        max(item.max_seconds for item in items),
    )


def merge_proto(messages: Iterable[latency_pb2.LatencyHistogram]) -> Histogram:
    """`merge` of wire histograms that passed `check_proto`, read where they are.

    No `Histogram` per message: a row of several instances merges a few per kind every round
    (bench/bench_instances.py).
    """
    parts: list[tuple[int, list[int]]] = []
    sums: list[float] = []
    maxes: list[float] = []
    # One pass reading each message's fields once, a list of each one's counts first: reading
    # a repeated field element by element costs more than copying it whole
    # (bench/bench_instances.py, `fold`).
    for message in messages:
        counts = message.bucket_counts[:]
        if counts:
            parts.append((message.offset, counts))
            sums.append(to_seconds(message.sum))
            maxes.append(to_seconds(message.max))
    if not parts:
        return EMPTY
    offset, merged = _dense_sum(parts)
    return Histogram(offset, merged, math.fsum(sums), max(maxes))


def _dense_sum(parts: Sequence[tuple[int, Sequence[int]]]) -> tuple[int, tuple[int, ...]]:
    """(offset, counts) of the index-by-index sum of bucket counts that start at offsets.

    Each part padded to the common span, then summed column by column at C speed (zip):
    about 3x faster than adding slices in place (bench/bench_instances.py, `fold`).
    """
    if len(parts) == 1:
        return parts[0][0], tuple(parts[0][1])
    offsets = {offset for offset, _ in parts}
    lengths = {len(counts) for _, counts in parts}
    if len(offsets) == 1 and len(lengths) == 1:
        # The common case (instances of one service see alike durations): no padding, no
        # span to find (bench/bench_instances.py, `fold`).
        return offsets.pop(), tuple(map(sum, zip(*[counts for _, counts in parts], strict=True)))
    low = min(offset for offset, _ in parts)
    high = max(offset + len(counts) for offset, counts in parts)
    padded = [
        counts
        if offset == low and len(counts) == high - low
        else [*([0] * (offset - low)), *counts, *([0] * (high - offset - len(counts)))]
        for offset, counts in parts
    ]
    return low, tuple(map(sum, zip(*padded, strict=True)))


def to_proto(histogram: Histogram, target: latency_pb2.LatencyHistogram) -> None:
    """Write `histogram` into the message `target` (e.g. a field of a response)."""
    target.scale = SCALE
    target.offset = histogram.offset
    target.bucket_counts.extend(histogram.counts)
    target.count = histogram.count
    set_seconds(target.sum, histogram.sum_seconds)
    set_seconds(target.max, histogram.max_seconds)


def check_proto(message: latency_pb2.LatencyHistogram) -> None:
    """Raise MeshError naming the problem when `message` is not a histogram of the scheme.

    Its scale must be `SCALE`, its buckets within MIN_INDEX..MAX_INDEX (a foreign offset
    would make a merge allocate without bound) and its count their sum. An empty one passes.
    """
    counts = message.bucket_counts
    if not counts:
        return
    if message.scale != SCALE:
        raise MeshError(f"latency histogram of scale {message.scale}; the mesh uses {SCALE}")
    end = message.offset + len(counts) - 1
    if message.offset < MIN_INDEX or end > MAX_INDEX:
        raise MeshError(
            f"latency histogram buckets {message.offset}..{end} are outside the scheme's "
            f"{MIN_INDEX}..{MAX_INDEX}"
        )
    if message.count != sum(counts):
        raise MeshError(
            f"latency histogram count {message.count} is not the sum of its buckets {sum(counts)}"
        )


def from_proto(message: latency_pb2.LatencyHistogram) -> Histogram:
    """The histogram of a `LatencyHistogram` message; MeshError when `check_proto` refuses it."""
    check_proto(message)
    return Histogram(
        message.offset,
        tuple(message.bucket_counts),
        to_seconds(message.sum),
        to_seconds(message.max),
    )


def summarize(histogram: Histogram, target: latency_pb2.LatencySummary) -> None:
    """Fill the summary `target` (mean, max, p50, p95, p99, buckets) from a non-empty histogram."""
    p50, p95, p99 = quantiles(
        histogram.offset, histogram.counts, (0.5, 0.95, 0.99), histogram.max_seconds
    )
    mean = histogram.mean_seconds
    if mean is None or p50 is None or p95 is None or p99 is None:
        raise ValueError("an empty histogram has no summary (leave the field unset)")
    set_seconds(target.mean, mean)
    set_seconds(target.max, histogram.max_seconds)
    set_seconds(target.p50, p50)
    set_seconds(target.p95, p95)
    set_seconds(target.p99, p99)
    target.relative_error = RELATIVE_ERROR
    to_proto(histogram, target.histogram)


PROMETHEUS_BOUNDS: tuple[float, ...] = tuple(
    upper_bound(index_of(seconds))
    for seconds in (
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        30.0, 60.0,
    )
)  # fmt: skip
"""The `le` bounds of the Prometheus histograms: each is the upper bound of one of our buckets
(the one holding 0.5 ms, 1 ms, 2.5 ms, ... 60 s), so folding our buckets into them is exact."""


def cumulative_at(histogram: Histogram, bounds: Sequence[float]) -> list[int]:
    """How many durations are at most each bound (the `le` counts of a classic histogram).

    Every bucket lies wholly below or above a bound made by `upper_bound`, so nothing is split.
    """
    counts: list[int] = []
    running = 0
    position = 0
    items = histogram.counts
    for bound in bounds:
        while position < len(items) and upper_bound(histogram.offset + position) <= bound * (
            1 + 1e-12
        ):
            running += items[position]
            position += 1
        counts.append(running)
    return counts
