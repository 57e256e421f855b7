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

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

from aggregator._errors import HistoryQueryError
from aggregator._history.model import KindSample, Sample, ServiceSample
from aggregator._history.tiers import choose_tier
from mesh_common.latency import quantiles
from mesh_common.status import ServiceStatus

__all__ = [
    "FIGURES",
    "INSTANT_WINDOW_MS",
    "Figure",
    "Point",
    "choose_tier",
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


@dataclass(slots=True)
class _KindWindow:
    events: int = 0
    errors: int = 0
    timed: int = 0
    latency_sum_ns: int = 0
    latency_max_ns: int | None = None
    buckets: dict[int, int] = field(default_factory=dict)


@dataclass(slots=True)
class _ServiceWindow:
    rounds: int = 0
    active_rounds: int = 0
    last_ms: int = -(2**62)
    status: ServiceStatus = ServiceStatus.ERROR
    calls: int = 0
    call_ns: int = 0
    cpu_milli: int = 0
    cpu_count: int = 0


Window = _KindWindow | _ServiceWindow


@dataclass(frozen=True, slots=True)
class Figure:
    """A figure a history query may ask for: which samples it reads and its value on a window."""

    name: str
    reads: Literal["kind", "service"]
    """Kind samples (events, errors, latency) or the service's own samples (status, calls)."""
    unit: str
    description: str
    value: Callable[[Any, float], float | None]
    """The value on a window (its accumulated samples, the step in seconds); None: no point."""
    buckets: bool = False
    """True when the value needs the window's merged buckets (quantiles)."""


def _quantile(q: float) -> Callable[[_KindWindow, float], float | None]:
    def value(window: _KindWindow, step: float) -> float | None:
        if not window.timed:
            return None
        low = min(window.buckets)
        dense = [window.buckets.get(index, 0) for index in range(low, max(window.buckets) + 1)]
        top = window.latency_max_ns
        found = quantiles(low, dense, (q,), float("inf") if top is None else top / 1e9)[0]
        return None if found is None else found * 1000.0

    return value


def _ratio(part: int, whole: int, scale: float = 1.0) -> float | None:
    return part / whole * scale if whole else None


_KIND_FIGURES = (
    Figure("events_per_second", "kind", "1/s", "events / step seconds",
           lambda w, step: w.events / step),
    Figure("errors_per_second", "kind", "1/s", "failed events / step seconds",
           lambda w, step: w.errors / step),
    Figure("error_rate", "kind", "ratio", "failed / all events; no point without events",
           lambda w, step: _ratio(w.errors, w.events)),
    Figure("latency_avg_ms", "kind", "ms", "latency sum / timed events",
           lambda w, step: _ratio(w.latency_sum_ns, w.timed, 1e-6)),
    Figure("latency_p50_ms", "kind", "ms", "median of the merged buckets", _quantile(0.5), True),
    Figure("latency_p95_ms", "kind", "ms", "95th percentile of the merged buckets",
           _quantile(0.95), True),
    Figure("latency_p99_ms", "kind", "ms", "99th percentile of the merged buckets",
           _quantile(0.99), True),
    Figure("latency_max_ms", "kind", "ms", "the longest duration",
           lambda w, step: None if w.latency_max_ns is None else w.latency_max_ns / 1e6),
    Figure("events", "kind", "events", "events in the window", lambda w, step: float(w.events)),
    Figure("errors", "kind", "events", "failed events in the window",
           lambda w, step: float(w.errors)),
)  # fmt: skip
_SERVICE_FIGURES = (
    Figure("status", "service", "", "1 when the last round in the window was active, else 0",
           lambda w, step: float(w.status is ServiceStatus.ACTIVE)),
    Figure("availability", "service", "ratio", "active rounds / rounds",
           lambda w, step: _ratio(w.active_rounds, w.rounds)),
    Figure("call_latency_ms", "service", "ms", "call time / calls to the agent",
           lambda w, step: _ratio(w.call_ns, w.calls, 1e-6)),
    Figure("cpu_usage_percent", "service", "%", "mean CPU of the agent's process",
           lambda w, step: _ratio(w.cpu_milli, w.cpu_count, 1e-3)),
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


def _add_kind(window: _KindWindow, sample: KindSample, buckets: bool) -> None:
    window.events += sample.events
    window.errors += sample.errors
    window.latency_sum_ns += sample.latency_sum_ns
    top = sample.latency_max_ns
    if top is not None and (window.latency_max_ns is None or top > window.latency_max_ns):
        window.latency_max_ns = top
    counts = sample.bucket_counts
    window.timed += sum(counts)
    if buckets:
        merged = window.buckets
        for index, count in zip(sample.bucket_indexes, counts, strict=True):
            merged[index] = merged.get(index, 0) + count


def _add_service(window: _ServiceWindow, sample: ServiceSample) -> None:
    window.rounds += sample.rounds
    window.active_rounds += sample.active_rounds
    if sample.time_ms >= window.last_ms:
        window.last_ms, window.status = sample.time_ms, sample.status
    window.calls += sample.calls
    window.call_ns += sample.call_ns
    window.cpu_milli += sample.cpu_milli
    window.cpu_count += sample.cpu_count


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
    spec = figure_named(figure)
    if step_ms <= 0:
        raise HistoryQueryError(f"step {step_ms} ms: must be positive", field="step")
    if end_ms < start_ms:
        raise HistoryQueryError("end_time is before start_time", field="end_time")
    last = (end_ms - start_ms) // step_ms
    windows: dict[int, Any] = {}
    for samples in _lists(samples_by_series):
        _accumulate(windows, samples, spec, start_ms, step_ms, last)
    step_seconds = step_ms / 1000.0
    points = []
    for index in sorted(windows):
        value = spec.value(windows[index], step_seconds)
        if value is not None:
            points.append(Point(start_ms + index * step_ms, value))
    return points


def _lists(
    samples_by_series: Mapping[Any, Sequence[Sample]] | Iterable[Sequence[Sample]],
) -> Iterable[Sequence[Sample]]:
    if isinstance(samples_by_series, Mapping):
        return samples_by_series.values()
    return samples_by_series


def _accumulate(
    windows: dict[int, Any],
    samples: Iterable[Sample],
    spec: Figure,
    start_ms: int,
    step_ms: int,
    last: int,
) -> None:
    """Add each sample of the figure's type to the window its time falls in.

    For a kind figure, a service sample that answered opens its window (module doc).
    """
    kind = spec.reads == "kind"
    wanted = KindSample if kind else ServiceSample
    for sample in samples:
        if not isinstance(sample, wanted) and not (kind and _answered(sample)):
            continue
        index = -((start_ms - sample.time_ms) // step_ms)  # ceil((time - start) / step)
        if not 0 <= index <= last:
            continue
        window = windows.get(index)
        if window is None:
            window = windows[index] = _KindWindow() if kind else _ServiceWindow()
        if not kind:
            _add_service(window, sample)  # type: ignore[arg-type]
        elif isinstance(sample, KindSample):
            _add_kind(window, sample, spec.buckets)  # type: ignore[arg-type]


def _answered(sample: Sample) -> bool:
    """True for the sample of a service that answered in its interval."""
    return isinstance(sample, ServiceSample) and sample.answered > 0


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
