"""The pure part of the history: a round's wire rows and cursors in, samples out; rollups.

`round_samples(snapshot, time_ms, cursors)` reads the round's shared wire `Snapshot` (never
changing it) and returns, for every row, the service's own sample (`RoundSamples.service_rows`,
with `answered` 1 when the row's figures are this round's: `last_seen_age` 0), and for each
kind of an answered row whose totals moved, the *increase* of the agent's since-start figures
over the kind's cursor: events, errors, the latency buckets and sum of the interval, and its
maximum. A kind whose totals did not move has **no sample**: an idle kind costs nothing, and its
count in the round is known all the same (0: its service answered; `query.py`). Rows whose
figures are older produce no kind sample: their events are counted when they next answer (the
totals are cumulative).

**Resets**, as Prometheus's `increase()` treats them: the row's `start_time` is the agent's
lifetime. A first reading, a new lifetime, or any since-start figure lower than the cursor's
(total events or errors, a bucket, the latency sum) is a reset: the increase is the new
cumulative value itself, so an agent restart never counts negative and loses nothing the new
lifetime reported. The round says which samples are resets (`RoundSamples.resets`, kept in
the head row), so `advance_cursor` rebuilds the cursors exactly when the head is replayed after
a restart. A kind whose totals and lifetime did not move keeps its cursor.

**A service of several instances** (a row with `instances`): its row's totals are those of
the instances that answered, so they go down when one stops and up when it is back; read as
one counter they would make resets that are not. Its increases are therefore taken per
instance (each against a cursor of its own, with the same reset rules: an instance's restart
is its own reset) and added per kind into the service's one sample (`merge_kind`): the store
keeps one series per service and kind, as for any service, and the service's cursor is the
running sum of its increases (lifetime 0, never a reset). The instances' cursors
(`InstanceCursors`) are kept in memory only: after a restart of the writer the first reading
of each instance is its new starting point (the events it counted between the last stored
round and that reading are not counted), and an instance that stays down keeps its cursor,
so its events are counted when it answers again. A service of one agent that gets several
instances continues that agent's cursor; the other instances count as new ones (their whole
totals, as a new agent's first reading).

**The maximum** of an interval: the agent's window maximum (`kinds[].latency.max`) when it lies
in the highest bucket of the increase and the window still holds every event of the interval
in that bucket (then it is the interval's own maximum, or above it within that bucket), else
that bucket's upper bound: never below the true maximum, at most one bucket above it.

**Rollups** (`rollup`) add counts and sums, merge buckets index by index, keep the largest
maximum and the last status: a coarse sample is exactly the sum of the finer ones it covers.
"""

from __future__ import annotations

import math
from array import array
from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from itertools import accumulate, compress, groupby
from operator import ne, sub
from typing import NamedTuple

from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp
from metricsmesh.v1 import event_rate_pb2, snapshot_pb2

from aggregator._history.codec import (
    STATUS_CODES,
    STATUSES,
    Columns,
    KindColumns,
    ServiceColumns,
    ServiceRow,
)
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
_NS = 1_000_000_000
_ACTIVE = STATUS_CODES[ServiceStatus.ACTIVE]
_ERROR = STATUS_CODES[ServiceStatus.ERROR]
_STATUS_OF_WIRE = {
    wire: STATUS_CODES[from_wire(wire)] for wire in snapshot_pb2.ServiceStatus.values()
}
"""A wire status's code in a status column (anything else is an error: `from_wire`)."""


class RoundSamples(NamedTuple):
    """What one round adds: kind samples, service samples, the kinds' new cursors, types.

    Parallel lists rather than a tuple per series, and a service's sample as a plain tuple of
    its column values: at 1000 services a round holds thousands, and every object that
    outlives the round's work feeds the garbage collector's young generations
    (bench/bench_history.py, `writer`).
    """

    time_ms: int
    kind_keys: list[SeriesKey]
    kind_samples: list[KindSample]
    """The kinds whose totals moved (or were reset) this round: the others have no sample."""
    resets: list[bool]
    """Whether each kind sample is a reset (the new cumulative value itself)."""
    services: list[str]
    """Every service of the round (its own series is `SeriesKey(name, "")`)."""
    service_rows: list[ServiceRow]
    """Each service's sample (`ServiceColumns.VALUES` order), parallel to `services`."""
    lifetimes: list[int]
    """Each service's lifetime (start_time, ns) when it answered this round, else 0."""
    cursors: dict[SeriesKey, Cursor]
    """The cursor of every kind whose totals moved this round (the others keep theirs)."""
    types: dict[str, str]
    """The registry type of every service of the round."""

    @property
    def service_samples(self) -> list[ServiceSample]:
        """The service samples as values (built on demand: the writer keeps the rows)."""
        return ServiceColumns.of_rows(self.time_ms, self.service_rows).samples()


def nanoseconds(value: Duration | Timestamp) -> int:
    """A Duration's length or a Timestamp's epoch time in integer nanoseconds (exact)."""
    return value.seconds * 1_000_000_000 + value.nanos


def time_ms_of(value: Timestamp) -> int:
    """A Timestamp in integer milliseconds since the epoch (rounded down)."""
    return value.seconds * 1000 + value.nanos // 1_000_000


class InstanceCursors:
    """The kinds' cursors of every instance of the services of several instances, in memory.

    `by_service[name][address][kind]`; `established` names the services whose instances were
    read before by this writer (a new instance of one of them is new: its whole totals count).
    """

    __slots__ = ("by_service", "established")

    def __init__(self) -> None:
        self.by_service: dict[str, dict[str, dict[str, Cursor]]] = {}
        self.established: set[str] = set()

    def keep_only(self, names: set[str]) -> None:
        """Forget the services that are no longer of several instances (or gone)."""
        for name in [name for name in self.by_service if name not in names]:
            del self.by_service[name]
        self.established &= names


class RowMemo(NamedTuple):
    """A service's lifetime and its kinds' (events, errors) totals at its last reading."""

    lifetime_ns: int
    totals: list[tuple[int, int]]


def round_samples(
    snapshot: snapshot_pb2.Snapshot,
    time_ms: int,
    cursors: Mapping[SeriesKey, Cursor],
    keys: dict[tuple[str, str], SeriesKey] | None = None,
    memos: dict[str, RowMemo] | None = None,
    instances: InstanceCursors | None = None,
) -> RoundSamples:
    """The samples of one round's rows at `time_ms`, against the kinds' `cursors`.

    `keys` caches the series keys from round to round (one object per series, not per round);
    `memos` the rows' totals at their last reading, kept with the cursors: a row none of whose
    kinds moved is found idle from two totals per kind, without a look at its kinds' cursors.
    `instances` holds the cursors of the instances of services of several instances, updated
    in place. One pass, the service's fields read inline into one tuple per row: at 1000
    services the per-row work is most of a round (bench/bench_history.py, `writer`).
    """
    keys = {} if keys is None else keys
    memos = {} if memos is None else memos
    instances = InstanceCursors() if instances is None else instances
    several: set[str] = set()
    result = RoundSamples(time_ms, [], [], [], [], [], [], {}, {})
    services, service_rows = result.services, result.service_rows
    lifetimes, types = result.lifetimes, result.types
    for row in snapshot.services:
        name = row.service_name
        types[name] = row.service_type
        services.append(name)
        status = _STATUS_OF_WIRE.get(row.status, _ERROR)
        call_ns = calls = 0
        if row.HasField("call_latency"):
            call = row.call_latency
            call_ns, calls = call.seconds * _NS + call.nanos, 1
        age = row.last_seen_age
        if age.seconds or age.nanos or not row.HasField("last_seen_time"):  # not this round's
            service_rows.append((1, status == _ACTIVE, status, calls, call_ns, 0, 0, 0))
            lifetimes.append(0)
            continue
        cpu = row.cpu_usage_percent
        measured = 0.0 <= cpu < math.inf
        cpu_milli = round(cpu * 1000) if measured else 0
        service_rows.append((1, status == _ACTIVE, status, calls, call_ns, cpu_milli, measured, 1))
        if row.instances:
            several.add(name)
            memos.pop(name, None)
            lifetimes.append(0)  # the service's cursors are running sums: one lifetime, 0
            _instances_kinds(result, row, cursors, keys, instances)
            continue
        start = row.start_time  # unset: 0
        lifetime = start.seconds * _NS + start.nanos
        lifetimes.append(lifetime)
        kinds = row.kinds
        totals = [(kind.total_events, kind.total_errors) for kind in kinds]
        memo = memos.get(name)
        if memo is not None and memo.totals == totals and memo.lifetime_ns == lifetime:
            continue  # an idle row: no kind moved
        memos[name] = RowMemo(lifetime, totals)
        _moved_kinds(result, name, kinds, totals, lifetime, cursors, keys)
    if several or instances.by_service:
        instances.keep_only(several)
    return result


def _instances_kinds(
    result: RoundSamples,
    row: snapshot_pb2.ServiceRow,
    cursors: Mapping[SeriesKey, Cursor],
    keys: dict[tuple[str, str], SeriesKey],
    instances: InstanceCursors,
) -> None:
    """Add the kind samples of a row of several instances: its instances' increases, added.

    Each instance that answered this round is read against its own cursors (an instance
    that did not keeps them); the increases of one kind are merged into one sample of the
    service's kind series, which is never a reset: the service's cursor adds it up.
    """
    name = row.service_name
    before = instances.by_service.get(name, {})
    after: dict[str, dict[str, Cursor]] = {}
    parts: dict[str, list[KindSample]] = {}
    for instance in row.instances:
        address = instance.address
        age = instance.last_seen_age
        if age.seconds or age.nanos or not instance.HasField("last_seen_time"):
            if address in before:
                after[address] = before[address]  # not this round's: counted when it answers
            continue
        stored = None
        if name not in instances.established:
            kinds = instance.kinds
            stored = {each.kind: cursors.get(_key(keys, name, each.kind)) for each in kinds}
        after[address] = _instance_increases(
            instance, before.get(address, {}), stored, result.time_ms, parts
        )
    instances.by_service[name] = after
    instances.established.add(name)
    for kind_name, samples in parts.items():
        key = _key(keys, name, kind_name)
        merged = merge_kind(samples, result.time_ms)
        result.cursors[key] = advance_cursor(cursors.get(key), merged, False, 0)
        result.kind_keys.append(key)
        result.kind_samples.append(merged)
        result.resets.append(False)


def _instance_increases(
    instance: snapshot_pb2.InstanceRow,
    own: Mapping[str, Cursor],
    stored: Mapping[str, Cursor | None] | None,
    time_ms: int,
    parts: dict[str, list[KindSample]],
) -> dict[str, Cursor]:
    """Add the increases of one instance's kinds that moved to `parts`; its new cursors.

    `stored` (the service's stored cursors by kind) is given on the writer's first reading of
    the service's instances (`_first_reading`).
    """
    lifetime = nanoseconds(instance.start_time)
    mine: dict[str, Cursor] = {}
    for kind in instance.kinds:
        kind_name, events, errors = kind.kind, kind.total_events, kind.total_errors
        cursor = own.get(kind_name)
        if cursor is None and stored is not None:
            cursor, baseline = _first_reading(stored.get(kind_name), lifetime)
            if baseline:  # the writer restarted: this reading is the starting point
                mine[kind_name] = kind_increase(kind, events, errors, lifetime, None, 0)[2]
                continue
        if (
            cursor is not None
            and cursor.events == events
            and cursor.errors == errors
            and cursor.lifetime_ns == lifetime
        ):
            mine[kind_name] = cursor  # idle
            continue
        sample, _, mine[kind_name] = kind_increase(kind, events, errors, lifetime, cursor, time_ms)
        parts.setdefault(kind_name, []).append(sample)
    return mine


def _first_reading(service: Cursor | None, lifetime_ns: int) -> tuple[Cursor | None, bool]:
    """(cursor, baseline) of an instance read for the first time, by the service's stored cursor.

    That agent's own cursor when the service had only it (the same lifetime); a starting point
    only (baseline) when the service already had several instances (the writer restarted);
    else none (a new instance: its whole totals count).
    """
    if service is None:
        return None, False
    if lifetime_ns and service.lifetime_ns == lifetime_ns:
        return service, False
    return None, service.lifetime_ns == 0


def _moved_kinds(
    result: RoundSamples,
    name: str,
    kinds: Iterable[event_rate_pb2.EventKindRate],
    totals: list[tuple[int, int]],
    lifetime: int,
    cursors: Mapping[SeriesKey, Cursor],
    keys: dict[tuple[str, str], SeriesKey],
) -> None:
    """Add the samples of the kinds of an answered row whose totals moved to `result`."""
    time_ms = result.time_ms
    for kind, (events, errors) in zip(kinds, totals, strict=True):
        kind_name = kind.kind
        key = keys.get((name, kind_name)) or _key(keys, name, kind_name)
        cursor = cursors.get(key)
        if (
            cursor is not None
            and cursor.events == events
            and cursor.errors == errors
            and cursor.lifetime_ns == lifetime
        ):
            continue  # idle: no sample, the cursor stays
        sample, reset, result.cursors[key] = kind_increase(
            kind, events, errors, lifetime, cursor, time_ms
        )
        result.kind_keys.append(key)
        result.kind_samples.append(sample)
        result.resets.append(reset)


def _key(keys: dict[tuple[str, str], SeriesKey], service: str, kind: str) -> SeriesKey:
    key = keys.get((service, kind))
    if key is None:
        key = keys[(service, kind)] = SeriesKey(service, kind)
    return key


def kind_increase(
    kind: event_rate_pb2.EventKindRate,
    events: int,
    errors: int,
    lifetime_ns: int,
    cursor: Cursor | None,
    time_ms: int,
) -> tuple[KindSample, bool, Cursor]:
    """The increase of a kind that moved over its `cursor`; whether it is a reset; its cursor.

    `events` and `errors` are the kind's totals (read by the caller).
    """
    since = kind.latency_since_start  # unset: offset 0, no bucket, sum 0
    offset, total = since.offset, since.sum
    counts = since.bucket_counts[:]  # a list: faster to take than a tuple (bench_history writer)
    total_ns = total.seconds * _NS + total.nanos
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
    if buckets is None:
        indexes, increments = _sparse(offset, counts)
        base_events = base_errors = base_ns = 0
    else:
        assert cursor is not None
        indexes, increments = buckets
        base_events, base_errors, base_ns = cursor.events, cursor.errors, cursor.latency_sum_ns
    sample = KindSample(
        time_ms,
        events - base_events,
        errors - base_errors,
        indexes,
        increments,
        total_ns - base_ns,
        _interval_max(kind, indexes[-1], increments[-1]) if indexes else None,
    )
    return sample, buckets is None, now


def bucket_increase(
    old_offset: int, old: Sequence[int], new_offset: int, new: Sequence[int]
) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
    """The sparse increase from cumulative buckets `old` to `new`; None when one went down."""
    if not old:
        return _sparse(new_offset, new)
    lead = old_offset - new_offset
    tail = lead + len(old)
    if lead < 0 or tail > len(new):  # the new buckets do not cover the old ones (rare)
        return _padded_increase(old_offset, old, new_offset, new)
    # Only the buckets that changed, found at C speed (map, compress): a round moves few of
    # the dozens a kind has (bench/bench_history.py, `writer`).
    middle = new if lead == 0 and tail == len(new) else new[lead:tail]
    changed = list(compress(range(lead, tail), map(ne, middle, old)))
    increments = [new[position] - old[position - lead] for position in changed]
    if increments and min(increments) < 0:
        return None
    if lead or tail < len(new):  # buckets beyond the old ones: their whole count
        before = [position for position in range(lead) if new[position]]
        after = [position for position in range(tail, len(new)) if new[position]]
        increments = [new[p] for p in before] + increments + [new[p] for p in after]
        changed = before + changed + after
    return tuple([position + new_offset for position in changed]), tuple(increments)


def _padded_increase(
    old_offset: int, old: Sequence[int], new_offset: int, new: Sequence[int]
) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
    """`bucket_increase` over both spans padded to their union."""
    low = min(old_offset, new_offset)
    high = max(old_offset + len(old), new_offset + len(new))
    padded_new = [0] * (new_offset - low) + [*new] + [0] * (high - new_offset - len(new))
    padded_old = [0] * (old_offset - low) + [*old] + [0] * (high - old_offset - len(old))
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
        sum(sample.answered for sample in samples),
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
    if len(times) <= len(ends):  # maybe one sample per interval (rounds as long as it)
        own_ends = array("q", [bucket_end(time, resolution_ms) for time in times])
        if len(set(own_ends)) == len(own_ends):
            # Each sample is its own sum, at its interval's end: nothing to add
            # (bench/bench_history_query.py, 24 h: the newest rounds rolled up on read).
            alone = columns.slice(0, len(times))
            alone.times = own_ends
            return alone
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
        sum(columns.answered[start:stop]),
    )
