"""The pure part of the history: a round's wire rows and cursors in, samples out; rollups.

`round_samples(snapshot, time_ms, cursors)` reads the round's shared wire `Snapshot` (never
changing it) and returns, for every row, a `ServiceSample` of the service's own series, and
for each kind of a row whose figures are this round's (`last_seen_age` 0: it answered), the
*increase* of the agent's since-start figures over the kind's cursor: events, errors, the
latency buckets and sum of the interval, and its maximum. Rows whose figures are older produce
no kind sample: their events are counted when they next answer (the totals are cumulative).

**Resets**, as Prometheus's `increase()` treats them: the row's `start_time` is the agent's
lifetime. A first reading, a new lifetime, or any since-start figure lower than the cursor's
(total events or errors, a bucket, the latency sum) is a reset: the increase is the new
cumulative value itself, so an agent restart never counts negative and loses nothing the new
lifetime reported. The round says which samples are resets (`RoundSamples.resets`, kept in
the head row), so `advance_cursor`
rebuilds the cursors exactly when the head is replayed after a restart.

**The maximum** of an interval: the agent's window maximum (`kinds[].latency.max`) when it lies
in the highest bucket of the increase and the window still holds every event of the interval
in that bucket (then it is the interval's own maximum, or above it within that bucket), else
that bucket's upper bound: never below the true maximum, at most one bucket above it.

**Rollups** (`rollup`) add counts and sums, merge buckets index by index, keep the largest
maximum and the last status: a coarse sample is exactly the sum of the finer ones it covers.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from itertools import accumulate, compress, groupby
from operator import sub
from typing import NamedTuple

from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp
from metricsmesh.v1 import event_rate_pb2, snapshot_pb2

from aggregator._history.codec import STATUSES, Columns, KindColumns, ServiceColumns
from aggregator._history.model import (
    Cursor,
    KindSample,
    Sample,
    SeriesKey,
    ServiceSample,
)
from aggregator._history.tiers import bucket_end
from mesh_common.latency import MAX_INDEX, MIN_INDEX, upper_bound
from mesh_common.status import ServiceStatus, from_wire

_UPPER_NS = {
    index: math.ceil(upper_bound(index) * 1e9) for index in range(MIN_INDEX, MAX_INDEX + 1)
}
"""Each bucket's upper bound in nanoseconds (rounded up: never below a duration in it)."""
_LOWER_NS = {index: math.floor(upper_bound(index - 1) * 1e9) for index in _UPPER_NS}
_LOWER_NS[MIN_INDEX] = -1  # the first and last buckets also hold the durations clamped into them
_TOP_NS = {**_UPPER_NS, MAX_INDEX: 2**63}
"""The (exclusive, inclusive) nanosecond bounds of what a bucket holds: a bound check instead
of a logarithm per kind and round (bench/bench_history.py, `writer`)."""


class RoundSamples(NamedTuple):
    """What one round adds: kind samples, service samples, the kinds' new cursors, types.

    Parallel lists rather than a tuple per series: at 1000 services a round holds thousands,
    and every object that outlives the round's work feeds the garbage collector's young
    generations (bench/bench_history.py, `writer`).
    """

    time_ms: int
    kind_keys: list[SeriesKey]
    kind_samples: list[KindSample]
    resets: list[bool]
    """Whether each kind sample is a reset (the new cumulative value itself)."""
    service_keys: list[SeriesKey]
    service_samples: list[ServiceSample]
    cursors: dict[SeriesKey, Cursor]
    """The cursor of every kind whose totals moved this round (the others keep theirs)."""
    types: dict[str, str]
    """The registry type of every service of the round."""
    lifetimes: dict[str, int]
    """The lifetime (start_time, ns) of every service that answered this round."""


def nanoseconds(value: Duration | Timestamp) -> int:
    """A Duration's length or a Timestamp's epoch time in integer nanoseconds (exact)."""
    return value.seconds * 1_000_000_000 + value.nanos


def time_ms_of(value: Timestamp) -> int:
    """A Timestamp in integer milliseconds since the epoch (rounded down)."""
    return value.seconds * 1000 + value.nanos // 1_000_000


class RowMemo(NamedTuple):
    """A service's kinds at its last reading: their totals, lifetime and keys."""

    events: tuple[int, ...]
    errors: tuple[int, ...]
    lifetime_ns: int
    keys: tuple[SeriesKey, ...]


def round_samples(
    snapshot: snapshot_pb2.Snapshot,
    time_ms: int,
    cursors: Mapping[SeriesKey, Cursor],
    keys: dict[tuple[str, str], SeriesKey] | None = None,
    memos: dict[str, RowMemo] | None = None,
) -> RoundSamples:
    """The samples of one round's rows at `time_ms`, against the kinds' `cursors`.

    `keys` caches the series keys from round to round (one object per series, not per round);
    `memos` the kinds' totals at the last round, kept with the cursors: a row none of whose
    kinds moved has only empty kind samples, found from two totals per kind instead of its
    buckets and cursors (an idle service costs half as much: bench/bench_history.py, `writer`).
    """
    keys = {} if keys is None else keys
    memos = {} if memos is None else memos
    result = RoundSamples(time_ms, [], [], [], [], [], {}, {}, {})
    idle = KindSample(time_ms, 0, 0, (), (), 0, None)  # shared by every kind without events
    for row in snapshot.services:
        name = row.service_name
        result.types[name] = row.service_type
        fresh = _fresh(row)
        result.service_keys.append(_key(keys, name, ""))
        result.service_samples.append(service_sample(row, time_ms, fresh))
        if not fresh:
            continue
        lifetime = result.lifetimes[name] = nanoseconds(row.start_time)  # unset: 0
        kinds = row.kinds
        events = tuple([kind.total_events for kind in kinds])
        errors = tuple([kind.total_errors for kind in kinds])
        memo = memos.get(name)
        if memo is not None and memo[:3] == (events, errors, lifetime):
            result.kind_keys.extend(memo.keys)
            result.kind_samples.extend([idle] * len(memo.keys))
            result.resets.extend([False] * len(memo.keys))
            continue
        memos[name] = RowMemo(
            events, errors, lifetime, _kind_samples(result, row, cursors, keys, idle)
        )
    return result


def _kind_samples(
    result: RoundSamples,
    row: snapshot_pb2.ServiceRow,
    cursors: Mapping[SeriesKey, Cursor],
    keys: dict[tuple[str, str], SeriesKey],
    idle: KindSample,
) -> tuple[SeriesKey, ...]:
    """Add the samples of a fresh row's kinds to `result`; their keys."""
    name, lifetime = row.service_name, result.lifetimes[row.service_name]
    found = []
    for kind in row.kinds:
        key = _key(keys, name, kind.kind)
        before = cursors.get(key)
        sample, reset, cursor = kind_increase(kind, lifetime, before, result.time_ms, idle)
        found.append(key)
        result.kind_samples.append(sample)
        result.resets.append(reset)
        if cursor is not before:
            result.cursors[key] = cursor
    result.kind_keys.extend(found)
    return tuple(found)


def _key(keys: dict[tuple[str, str], SeriesKey], service: str, kind: str) -> SeriesKey:
    key = keys.get((service, kind))
    if key is None:
        key = keys[(service, kind)] = SeriesKey(service, kind)
    return key


def _fresh(row: snapshot_pb2.ServiceRow) -> bool:
    """True when the row's figures are this round's (the agent answered: age 0)."""
    age = row.last_seen_age
    return row.HasField("last_seen_time") and age.seconds == 0 and age.nanos == 0


def service_sample(row: snapshot_pb2.ServiceRow, time_ms: int, fresh: bool) -> ServiceSample:
    """The service's own sample of one round: status, its call, its CPU when fresh."""
    status = from_wire(row.status)
    called = row.HasField("call_latency")
    cpu = row.cpu_usage_percent
    measured = fresh and math.isfinite(cpu) and cpu >= 0
    return ServiceSample(
        time_ms,
        1,
        int(status is ServiceStatus.ACTIVE),
        status,
        int(called),
        nanoseconds(row.call_latency) if called else 0,
        round(cpu * 1000) if measured else 0,
        int(measured),
    )


def kind_increase(
    kind: event_rate_pb2.EventKindRate,
    lifetime_ns: int,
    cursor: Cursor | None,
    time_ms: int,
    idle: KindSample | None = None,
) -> tuple[KindSample, bool, Cursor]:
    """The kind's increase over `cursor`, whether it is a reset, and its new cursor.

    A kind whose totals did not move gets `idle` (an empty sample at `time_ms`) and keeps its
    cursor (the same object): the common idle kind costs no bucket arithmetic and no new
    object (bench/bench_history.py, `writer`).
    """
    events, errors = kind.total_events, kind.total_errors
    if (
        cursor is not None
        and events == cursor.events
        and errors == cursor.errors
        and cursor.lifetime_ns == lifetime_ns
    ):
        return idle or KindSample(time_ms, 0, 0, (), (), 0, None), False, cursor
    since = kind.latency_since_start  # unset: offset 0, no bucket, sum 0
    offset, counts, total_ns = since.offset, tuple(since.bucket_counts), nanoseconds(since.sum)
    now = Cursor(lifetime_ns, events, errors, offset, counts, total_ns)
    buckets = None
    if (
        cursor is not None
        and cursor.lifetime_ns == lifetime_ns
        and events >= cursor.events
        and errors >= cursor.errors
        and total_ns >= cursor.latency_sum_ns
    ):
        buckets = bucket_increase(cursor.bucket_offset, cursor.bucket_counts, offset, counts)
    reset = buckets is None
    if buckets is None:
        buckets = _sparse(offset, counts)
        base_events = base_errors = base_ns = 0
    else:
        assert cursor is not None
        base_events, base_errors, base_ns = cursor.events, cursor.errors, cursor.latency_sum_ns
    indexes, increments = buckets
    sample = KindSample(
        time_ms,
        events - base_events,
        errors - base_errors,
        indexes,
        increments,
        total_ns - base_ns,
        _interval_max(kind, indexes[-1], increments[-1]) if indexes else None,
    )
    return sample, reset, now


def bucket_increase(
    old_offset: int, old: tuple[int, ...], new_offset: int, new: tuple[int, ...]
) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
    """The sparse increase from cumulative buckets `old` to `new`; None when one went down."""
    if old_offset == new_offset and old == new:
        return (), ()
    if not old:
        return _sparse(new_offset, new)
    lead = old_offset - new_offset
    tail = lead + len(old)
    if lead >= 0 and tail <= len(new):  # the usual case: the new buckets cover the old ones
        middle = list(map(sub, new[lead:tail], old))
        if min(middle) < 0:
            return None
        return _sparse(new_offset, [*new[:lead], *middle, *new[tail:]])
    low = min(old_offset, new_offset)
    high = max(old_offset + len(old), new_offset + len(new))
    padded_new = (0,) * (new_offset - low) + new + (0,) * (high - new_offset - len(new))
    padded_old = (0,) * (old_offset - low) + old + (0,) * (high - old_offset - len(old))
    difference = list(map(sub, padded_new, padded_old))
    if min(difference) < 0:
        return None
    return _sparse(low, difference)


def _sparse(offset: int, counts: Sequence[int]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The non-empty buckets of dense `counts` from `offset`: (indexes, counts)."""
    return tuple(compress(range(offset, offset + len(counts)), counts)), tuple(filter(None, counts))


def _interval_max(kind: event_rate_pb2.EventKindRate, highest: int, count: int) -> int:
    """The interval's maximum (ns), its timed events' highest bucket `highest` holding `count`.

    The agent's window maximum when it lies in that bucket and the window still holds `count`
    events there (so every one of the interval's is in it): then it is the interval's maximum,
    or above it within that bucket. Otherwise the bucket's upper bound.
    """
    summary = kind.latency  # unset: no maximum, no bucket
    window_max = nanoseconds(summary.max)
    if _LOWER_NS[highest] < window_max <= _TOP_NS[highest]:
        window = summary.histogram
        position = highest - window.offset
        if 0 <= position < len(window.bucket_counts) and window.bucket_counts[position] >= count:
            return window_max
    return _UPPER_NS[highest]


def advance_cursor(
    cursor: Cursor | None, sample: KindSample, reset: bool, lifetime_ns: int
) -> Cursor:
    """The cursor after `sample` (a reset or an increase, of lifetime `lifetime_ns`).

    This is the head's replay after a restart: it rebuilds the cursor the writer had.
    """
    indexes, counts = sample.bucket_indexes, sample.bucket_counts
    if reset or cursor is None:
        base = Cursor(lifetime_ns, 0, 0, indexes[0] if indexes else 0, (), 0)
    else:
        base = cursor
    dense = dict(zip(range(base.bucket_offset, base.bucket_offset + len(base.bucket_counts)),
                     base.bucket_counts, strict=True))  # fmt: skip
    for index, count in zip(indexes, counts, strict=True):
        dense[index] = dense.get(index, 0) + count
    offset = min(dense, default=0)
    top = max(dense, default=-1)
    return Cursor(
        lifetime_ns,
        base.events + sample.events,
        base.errors + sample.errors,
        offset,
        tuple(dense.get(index, 0) for index in range(offset, top + 1)),
        base.latency_sum_ns + sample.latency_sum_ns,
    )


def merge_kind(samples: Sequence[KindSample], time_ms: int) -> KindSample:
    """One sample at `time_ms` holding every event of `samples` (counts add, buckets merge)."""
    if len(samples) == 1:
        return samples[0]._replace(time_ms=time_ms)
    buckets: dict[int, int] = {}
    for sample in samples:
        for index, count in zip(sample.bucket_indexes, sample.bucket_counts, strict=True):
            buckets[index] = buckets.get(index, 0) + count
    indexes = tuple(sorted(buckets))
    maxima = [sample.latency_max_ns for sample in samples if sample.latency_max_ns is not None]
    return KindSample(
        time_ms,
        sum(sample.events for sample in samples),
        sum(sample.errors for sample in samples),
        indexes,
        tuple(buckets[index] for index in indexes),
        sum(sample.latency_sum_ns for sample in samples),
        max(maxima) if maxima else None,
    )


def merge_service(samples: Sequence[ServiceSample], time_ms: int) -> ServiceSample:
    """One sample at `time_ms` for the rounds of `samples` (oldest first): sums, last status."""
    if len(samples) == 1:
        return samples[0]._replace(time_ms=time_ms)
    return ServiceSample(
        time_ms,
        sum(sample.rounds for sample in samples),
        sum(sample.active_rounds for sample in samples),
        samples[-1].status,
        sum(sample.calls for sample in samples),
        sum(sample.call_ns for sample in samples),
        sum(sample.cpu_milli for sample in samples),
        sum(sample.cpu_count for sample in samples),
    )


def rollup(samples: Iterable[Sample], resolution_ms: int) -> list[Sample]:
    """`samples` (oldest first, one series) summed per aligned interval `(T - resolution, T]`."""
    result: list[Sample] = []
    for end, group in groupby(samples, key=lambda each: bucket_end(each.time_ms, resolution_ms)):
        items = list(group)
        if isinstance(items[0], KindSample):
            result.append(merge_kind(items, end))  # type: ignore[arg-type]
        else:
            result.append(merge_service(items, end))  # type: ignore[arg-type]
    return result


def rollup_columns(columns: Columns, resolution_ms: int) -> Columns:
    """`rollup` of the samples in `columns`, read column by column (no tuple per sample).

    Sealing rolls up every series' two minutes of rounds at once: summing array slices is
    several times faster than building and adding tuples (bench/bench_history.py, `writer`).
    """
    times = columns.times
    if not times:
        return type(columns)()
    ends = range(bucket_end(times[0], resolution_ms), times[-1] + resolution_ms, resolution_ms)
    cuts = [0, *(bisect_right(times, end) for end in ends)]
    rolled: Columns = type(columns)()
    if isinstance(columns, KindColumns):
        assert isinstance(rolled, KindColumns)
        pair_cuts = list(accumulate(columns.pairs, initial=0))
        for end, start, stop in zip(ends, cuts, cuts[1:], strict=False):
            if stop > start:
                rolled.append(_kind_group(columns, end, start, stop, pair_cuts))
    else:
        assert isinstance(rolled, ServiceColumns)
        for end, start, stop in zip(ends, cuts, cuts[1:], strict=False):
            if stop > start:
                rolled.append(_service_group(columns, end, start, stop))
    return rolled


def _kind_group(
    columns: KindColumns, end: int, start: int, stop: int, pair_cuts: Sequence[int]
) -> KindSample:
    """The sum of samples `start` to `stop` of `columns`, at `end`."""
    buckets: dict[int, int] = {}
    first, last = pair_cuts[start], pair_cuts[stop]
    get = buckets.get
    for index, count in zip(columns.indexes[first:last], columns.counts[first:last], strict=True):
        buckets[index] = get(index, 0) + count
    indexes = tuple(sorted(buckets))
    top = max(columns.maxes[start:stop])
    return KindSample(
        end,
        sum(columns.events[start:stop]),
        sum(columns.errors[start:stop]),
        indexes,
        tuple(buckets[index] for index in indexes),
        sum(columns.sums[start:stop]),
        top - 1 if top else None,
    )


def _service_group(columns: ServiceColumns, end: int, start: int, stop: int) -> ServiceSample:
    """The sum of samples `start` to `stop` of `columns` (the last status), at `end`."""
    return ServiceSample(
        end,
        sum(columns.rounds[start:stop]),
        sum(columns.active[start:stop]),
        STATUSES[columns.status[stop - 1]],
        sum(columns.calls[start:stop]),
        sum(columns.call_ns[start:stop]),
        sum(columns.cpu_milli[start:stop]),
        sum(columns.cpu_count[start:stop]),
    )
