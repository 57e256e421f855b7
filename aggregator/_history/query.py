"""Figures over time from stored samples: pure functions, no I/O (the query RPCs build on them).

A range query is `(start, end, step)`: one point per `t = start + i * step` with `t <= end`; the
value at `t` covers the window `(t - step, t]` and takes the samples whose time falls in it
(a sample's time is the end of the interval it covers, in every tier: `tiers.py`). A window
without samples has no point, and neither has a figure that is undefined on it (an error rate
without events): never a 0 that means nothing. Figures carry the row schema's names:

| figure | over a window | reads |
|---|---|---|
| events_per_second, errors_per_second | events (errors) / step seconds | kind samples |
| error_rate | errors / events | kind samples |
| latency_avg_ms | latency sum / timed events | kind samples |
| latency_p50_ms, _p95_ms, _p99_ms | nearest-rank quantile of the merged buckets | kind samples |
| latency_max_ms | the largest sample maximum | kind samples |
| events, errors | counts | kind samples |
| status | 1 when the last round in the window was active, else 0 | service samples |
| availability | active rounds / rounds | service samples |
| call_latency_ms | call time / calls | service samples |
| cpu_usage_percent | CPU sum / rounds with fresh figures | service samples |

Every evaluation takes `samples_by_series`: the sample lists of the series that make up the
answer's one series, summed window by window. A kind's figure: its own samples; a service's
kind figure: the samples of its kinds; the fleet's: every kind of every service (quantiles of
all their buckets merged, never an average of percentiles). The caller picks the series (by
labels) and the tier (`choose_tier`), reads them (`HistoryReader.read(keys, tier, start - step,
end)`) and calls `evaluate_range`. Quantiles are within `mesh_common.latency.RELATIVE_ERROR` of
the exact ones, at every tier (every tier keeps the agents' buckets).

**Idle is 0, down is no point.** The store keeps a kind's sample only for the rounds its totals
moved (`samples.py`): a round in which the kind had no event has none. What tells "0 events"
from "no data" is the service's own series: its samples count the rounds it `answered`. So a
kind figure's caller passes, beside the kind series, the own series of their services
(`SeriesKey(service, "")`): a window in which one of them answered has a point for a count
(`events`, `errors`, their rates: 0 when no kind sample falls in it), a window in which none of
them answered and no kind sample falls has none. Figures undefined without events (error rate,
latencies) have no point in an idle window either. Without the services' samples, a window
has a point only where a kind sample falls (an idle window then has none: never a wrong
value, only a missing 0). Service samples written before `answered` existed count 0 there,
and their kinds have a sample in every round the service answered: the same answer.
"""

from __future__ import annotations

import math
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import accumulate, compress, pairwise, repeat
from operator import add, or_
from typing import Any, Literal, NamedTuple

from aggregator._errors import HistoryQueryError
from aggregator._history.codec import STATUS_CODES, Columns, KindColumns, ServiceColumns, columns_of
from aggregator._history.model import KindSample, Sample, ServiceSample
from aggregator._history.tiers import choose_tier
from mesh_common.latency import representative
from mesh_common.status import ServiceStatus

__all__ = [
    "FIGURES",
    "INSTANT_WINDOW_MS",
    "Figure",
    "Point",
    "choose_tier",
    "evaluate_columns",
    "evaluate_instant",
    "evaluate_latest",
    "evaluate_range",
]

INSTANT_WINDOW_MS = 60_000
"""An instant query's default window: the agents' rolling minute, so an instant rate at now
reads as the live row does."""


class Point(NamedTuple):
    """One point of an answer: its time (ms since the epoch) and value."""

    time_ms: int
    value: float


NEVER = -(2**62)
_new_tuple = tuple.__new__


def points_of(times: Iterable[int], values: Iterable[float]) -> list[Point]:
    """The points of parallel times and values (as long as each other), built at C speed.

    What `Point(t, v)` does without its Python-level `__new__`: half the time for the 32,400
    points of a 90-day answer (bench/bench_history_query.py).
    """
    return list(map(_new_tuple, repeat(Point), zip(times, values, strict=True)))


class Totals:
    """What the samples of each window of a range add up to, one list per total, by window.

    Only the totals a figure `needs` exist. A kind window's `maxes` hold the largest maximum
    plus 1 (0: no timed event, as stored), `buckets` the merged buckets (None for a window
    without buckets); a service window's `status` is the status code of its
    latest sample (`codec.STATUSES`), at `last_ms`.
    """

    __slots__ = (
        "active", "buckets", "call_ns", "calls", "cpu_count", "cpu_milli", "errors", "events",
        "last_ms", "maxes", "present", "rounds", "status", "sums", "timed",
    )  # fmt: skip

    present: bytearray
    """1 for a window with a point (a sample of the figure's type, or a service that answered
    for a kind figure: module doc)."""
    events: list[int]
    errors: list[int]
    timed: list[int]
    sums: list[int]
    maxes: list[int]
    buckets: list[Buckets | None]
    rounds: list[int]
    active: list[int]
    last_ms: list[int]
    status: list[int]
    calls: list[int]
    call_ns: list[int]
    cpu_milli: list[int]
    cpu_count: list[int]

    def __init__(self, size: int, needs: Iterable[str]) -> None:
        self.present = bytearray(size)
        for name in needs:
            start: Any = None if name == "buckets" else NEVER if name == "last_ms" else 0
            setattr(self, name, [start] * size)


Value = Callable[[Totals, int, float], float | None]
"""A figure's value on window `i` of `Totals`, the step in seconds; None: no point."""


@dataclass(frozen=True, slots=True)
class Figure:
    """A figure a history query may ask for: which samples it reads and its value on a window."""

    name: str
    reads: Literal["kind", "service"]
    """Kind samples (events, errors, latency) or the service's own samples (status, calls)."""
    unit: str
    description: str
    value: Value
    """The value on a window (the totals, the window's index, the step in seconds)."""
    needs: tuple[str, ...] = ()
    """The `Totals` it reads."""

    @property
    def buckets(self) -> bool:
        """True when the value needs the samples' buckets (timed events, quantiles)."""
        return "buckets" in self.needs or "timed" in self.needs


def _quantile(q: float) -> Value:
    def value(totals: Totals, i: int, step: float) -> float | None:
        merged = totals.buckets[i]
        if merged is None:
            return None
        cumulative = list(accumulate(merged.counts))
        total = cumulative[-1]
        if total <= 0:
            return None
        index = merged.offset + bisect_left(cumulative, max(1, math.ceil(q * total)))
        top = totals.maxes[i]
        found = representative(index)
        return (found if not top else min(found, (top - 1) / 1e9)) * 1000.0

    return value


def _ratio(part: int, whole: int, scale: float = 1.0) -> float | None:
    return part / whole * scale if whole else None


_BUCKETS = ("buckets", "maxes")
_KIND_FIGURES = (
    Figure("events_per_second", "kind", "1/s", "events / step seconds",
           lambda t, i, step: t.events[i] / step, ("events",)),
    Figure("errors_per_second", "kind", "1/s", "failed events / step seconds",
           lambda t, i, step: t.errors[i] / step, ("errors",)),
    Figure("error_rate", "kind", "ratio", "failed / all events; no point without events",
           lambda t, i, step: _ratio(t.errors[i], t.events[i]), ("events", "errors")),
    Figure("latency_avg_ms", "kind", "ms", "latency sum / timed events",
           lambda t, i, step: _ratio(t.sums[i], t.timed[i], 1e-6), ("sums", "timed")),
    Figure("latency_p50_ms", "kind", "ms", "median of the merged buckets", _quantile(0.5),
           _BUCKETS),
    Figure("latency_p95_ms", "kind", "ms", "95th percentile of the merged buckets",
           _quantile(0.95), _BUCKETS),
    Figure("latency_p99_ms", "kind", "ms", "99th percentile of the merged buckets",
           _quantile(0.99), _BUCKETS),
    Figure("latency_max_ms", "kind", "ms", "the longest duration",
           lambda t, i, step: (t.maxes[i] - 1) / 1e6 if t.maxes[i] else None, ("maxes",)),
    Figure("events", "kind", "events", "events in the window",
           lambda t, i, step: float(t.events[i]), ("events",)),
    Figure("errors", "kind", "events", "failed events in the window",
           lambda t, i, step: float(t.errors[i]), ("errors",)),
)  # fmt: skip
_ACTIVE = STATUS_CODES[ServiceStatus.ACTIVE]
_SERVICE_FIGURES = (
    Figure("status", "service", "", "1 when the last round in the window was active, else 0",
           lambda t, i, step: float(t.status[i] == _ACTIVE), ("last_ms", "status")),
    Figure("availability", "service", "ratio", "active rounds / rounds",
           lambda t, i, step: _ratio(t.active[i], t.rounds[i]), ("active", "rounds")),
    Figure("call_latency_ms", "service", "ms", "call time / calls to the agent",
           lambda t, i, step: _ratio(t.call_ns[i], t.calls[i], 1e-6), ("call_ns", "calls")),
    Figure("cpu_usage_percent", "service", "%", "mean CPU of the agent's process",
           lambda t, i, step: _ratio(t.cpu_milli[i], t.cpu_count[i], 1e-3),
           ("cpu_milli", "cpu_count")),
)  # fmt: skip
FIGURES: Mapping[str, Figure] = {figure.name: figure for figure in _KIND_FIGURES + _SERVICE_FIGURES}
"""Every figure by name."""


def figure_named(name: str) -> Figure:
    """The figure called `name`; HistoryQueryError (field `query`) naming the known ones."""
    found = FIGURES.get(name)
    if found is None:
        raise HistoryQueryError(
            f"unknown figure {name!r}; known: {', '.join(sorted(FIGURES))}", field="query"
        )
    return found


def evaluate_range(
    samples_by_series: Mapping[Any, Sequence[Sample]] | Iterable[Sequence[Sample]],
    figure: str,
    start_ms: int,
    end_ms: int,
    step_ms: int,
) -> list[Point]:
    """The points of `figure` at `start_ms + i * step_ms` up to `end_ms` (module doc).

    `samples_by_series` holds the sample lists (any order) summed into the answer; samples of
    the other type than the figure reads are ignored, but for a kind figure a service sample
    that answered gives its window a point (idle: 0 events; module doc). Raises
    HistoryQueryError for an unknown figure (field `query`), a step that is not positive
    (`step`) or an end before the start (`end_time`).
    """
    parts = []
    for samples in _lists(samples_by_series):
        kinds = [sample for sample in samples if isinstance(sample, KindSample)]
        services = [sample for sample in samples if isinstance(sample, ServiceSample)]
        parts += [columns_of(kinds, False), columns_of(services, True)]
    return evaluate_columns([parts], figure, start_ms, end_ms, step_ms)


def evaluate_columns(
    parts_by_series: Iterable[Sequence[Columns]],
    figure: str,
    start_ms: int,
    end_ms: int,
    step_ms: int,
) -> list[Point]:
    """`evaluate_range` of samples held in columns (`HistoryReader.read_columns`' parts).

    Column by column, without an object per sample (bench/bench_history_query.py); each
    series' parts in time order.
    """
    spec = figure_named(figure)
    if step_ms <= 0:
        raise HistoryQueryError(f"step {step_ms} ms: must be positive", field="step")
    if end_ms < start_ms:
        raise HistoryQueryError("end_time is before start_time", field="end_time")
    last = (end_ms - start_ms) // step_ms
    totals = Totals(last + 1, spec.needs)
    kind = spec.reads == "kind"
    low, high = start_ms - step_ms, start_ms + last * step_ms
    for parts in parts_by_series:
        for part in parts:
            times = part.times
            lo, hi = bisect_right(times, low), bisect_right(times, high)
            if hi <= lo:
                continue
            windows = _windows(times[lo:hi], start_ms, step_ms)
            if isinstance(part, KindColumns):
                if kind:
                    _add_kinds(totals, spec.needs, part, windows, lo, hi)
            elif kind:
                _mark(totals.present, windows, part.answered[lo:hi])
            else:
                _add_services(totals, spec.needs, part, windows, lo, hi)
    step_seconds = step_ms / 1000.0
    value = spec.value
    found_times: list[int] = []
    found_values: list[float] = []
    for index in compress(range(last + 1), totals.present):
        found = value(totals, index, step_seconds)
        if found is not None:
            found_times.append(start_ms + index * step_ms)
            found_values.append(found)
    return points_of(found_times, found_values)


def _lists(
    samples_by_series: Mapping[Any, Sequence[Sample]] | Iterable[Sequence[Sample]],
) -> Iterable[Sequence[Sample]]:
    if isinstance(samples_by_series, Mapping):
        return samples_by_series.values()
    return samples_by_series


_ALWAYS = repeat(1)
Windows = range | list[int]
"""The window of each sample of a part: a range when they are one per window, in a row."""


def _windows(times: Sequence[int], start_ms: int, step_ms: int) -> Windows:
    """The window index of each of `times` (`ceil((time - start) / step)`).

    Samples exactly a step apart (a tier's samples at a step of its resolution, the common
    case) fill windows in a row: a range, which every total then takes as a slice at C speed
    (bench/bench_history_query.py).
    """
    count, first_time = len(times), times[0]
    first = -((start_ms - first_time) // step_ms)
    if times[-1] - first_time == (count - 1) * step_ms and (
        count < 3 or times == array("q", range(first_time, times[-1] + 1, step_ms))
    ):
        return range(first, first + count)
    return [-((start_ms - time) // step_ms) for time in times]


def _mark(present: bytearray, windows: Windows, flags: Iterable[int]) -> None:
    """Mark the windows whose flag is set as having a point."""
    if isinstance(windows, range):
        first, end = windows.start, windows.stop
        present[first:end] = bytes(map(or_, present[first:end], map(bool, flags)))
        return
    for window in compress(windows, flags):
        present[window] = 1


def _sum_into(totals: list[int], windows: Windows, values: Sequence[int]) -> None:
    """Add each value to its window's total."""
    if isinstance(windows, range):
        first, end = windows.start, windows.stop
        totals[first:end] = map(add, totals[first:end], values)
        return
    for window, each in zip(windows, values, strict=True):
        totals[window] += each


def _add_kinds(
    totals: Totals, needs: Sequence[str], part: KindColumns, windows: Windows, lo: int, hi: int
) -> None:
    """Add kind samples `lo` to `hi` of `part` (in `windows`) to `totals`."""
    _mark(totals.present, windows, _ALWAYS)
    for name in ("events", "errors", "sums"):
        if name in needs:
            _sum_into(getattr(totals, name), windows, getattr(part, name)[lo:hi])
    if "maxes" in needs:
        maxes = totals.maxes
        if isinstance(windows, range):
            first, end = windows.start, windows.stop
            maxes[first:end] = map(max, maxes[first:end], part.maxes[lo:hi])
        else:
            for window, top in zip(windows, part.maxes[lo:hi], strict=True):
                if top > maxes[window]:
                    maxes[window] = top
    if "timed" in needs or "buckets" in needs:
        cuts = list(accumulate(part.pairs[:hi], initial=0))[lo:]
        if "timed" in needs:
            counts = part.counts
            timed = [sum(counts[a:b]) for a, b in pairwise(cuts)]
            _sum_into(totals.timed, windows, timed)
        if "buckets" in needs:
            _merge_buckets(totals.buckets, windows, part, cuts)


class Buckets:
    """A window's merged buckets, dense: `counts[i]` is bucket `offset + i`'s count."""

    __slots__ = ("counts", "offset")

    def __init__(self, offset: int, counts: list[int]) -> None:
        self.offset = offset
        self.counts = counts

    def cover(self, low: int, high: int) -> None:
        """Grow to hold buckets `low` to `high` (zeros where new)."""
        if low < self.offset:
            self.counts[0:0] = [0] * (self.offset - low)
            self.offset = low
        missing = high + 1 - self.offset - len(self.counts)
        if missing > 0:
            self.counts += [0] * missing


def _merge_buckets(
    merged: list[Buckets | None], windows: Windows, part: KindColumns, cuts: list[int]
) -> None:
    """Merge each sample's buckets into its window's (counts add index by index).

    A sample's non-empty buckets are nearly always consecutive: they are added to the
    window's as one slice at C speed, a few times faster than index by index in a dict
    (bench/bench_history_query.py, `latency_p99_ms`).
    """
    indexes, counts = part.indexes, part.counts
    for window, a, b in zip(windows, cuts, cuts[1:], strict=False):
        if a == b:
            continue
        low, high = indexes[a], indexes[b - 1]
        buckets = merged[window]
        if buckets is None:
            buckets = merged[window] = Buckets(low, [0] * (high - low + 1))
        else:
            buckets.cover(low, high)
        dense, offset = buckets.counts, buckets.offset
        if high - low == b - a - 1:  # consecutive
            start, end = low - offset, high + 1 - offset
            dense[start:end] = map(add, dense[start:end], counts[a:b])
        else:
            for index, count in zip(indexes[a:b], counts[a:b], strict=True):
                dense[index - offset] += count


def _add_services(
    totals: Totals, needs: Sequence[str], part: ServiceColumns, windows: Windows, lo: int, hi: int
) -> None:
    """Add service samples `lo` to `hi` of `part` (in `windows`) to `totals`."""
    _mark(totals.present, windows, _ALWAYS)
    for name, column in (
        ("rounds", part.rounds),
        ("active", part.active),
        ("calls", part.calls),
        ("call_ns", part.call_ns),
        ("cpu_milli", part.cpu_milli),
        ("cpu_count", part.cpu_count),
    ):
        if name in needs:
            _sum_into(getattr(totals, name), windows, column[lo:hi])
    if "status" in needs:
        last_ms, status = totals.last_ms, totals.status
        for window, time, code in zip(windows, part.times[lo:hi], part.status[lo:hi], strict=True):
            if time >= last_ms[window]:
                last_ms[window], status[window] = time, code


def evaluate_instant(
    samples_by_series: Mapping[Any, Sequence[Sample]] | Iterable[Sequence[Sample]],
    figure: str,
    time_ms: int,
    window_ms: int = INSTANT_WINDOW_MS,
) -> Point | None:
    """`figure` over the window `(time_ms - window_ms, time_ms]`; None without a value there.

    The window is the last step window ending at the time.
    """
    points = evaluate_range(samples_by_series, figure, time_ms, time_ms, window_ms)
    return points[0] if points else None


def evaluate_latest(
    samples_by_series: Mapping[Any, Sequence[Sample]] | Iterable[Sequence[Sample]],
    figure: str,
    resolution_ms: int,
) -> Point | None:
    """`figure` at the newest sample's time `T`, over `(T - resolution_ms, T]`.

    With a tier's resolution, that is the newest round of the finest tier, or the newest
    sample of a coarser one. None without samples of the type the figure reads (for a kind
    figure, a service sample that answered counts: module doc).
    """
    spec = figure_named(figure)
    kind = spec.reads == "kind"
    wanted = KindSample if kind else ServiceSample
    lists = list(_lists(samples_by_series))
    newest = max(
        (
            s.time_ms
            for samples in lists
            for s in samples
            if isinstance(s, wanted) or (kind and _answered(s))
        ),
        default=None,
    )
    if newest is None:
        return None
    return evaluate_instant(lists, figure, newest, resolution_ms)


def _answered(sample: Sample) -> bool:
    """True for the sample of a service that answered in its interval."""
    return isinstance(sample, ServiceSample) and sample.answered > 0
