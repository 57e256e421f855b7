"""Answers history queries: a selector's series, the tier, the bounds, the points.

`QueryEngine` is blocking (it reads the store through `HistoryReader`): the query RPCs run it on
their own threads, never on the event loop. Every refusal is a `HistoryQueryError` whose
`field` names the request's parameter (`query`, `start_time`, `end_time`, `step`, `time`,
`resolution`, `matchers`); a query that runs past its deadline raises `HistoryTimeout`.

**Series.** From the series the store knows (`HistoryReader.series()`), each figure of the
selector (`selector.Selector.figures`) has:
- for a kind figure (`events_per_second`, `latency_p99_ms`, ...): one series per kind
  (labels `service`, `type`, `kind`), one per service (`service`, `type`: its kinds summed)
  and the fleet's (no label: every kind of every service summed, quantiles from all their
  buckets merged);
- for a service figure (`status`, `availability`, `call_latency_ms`, `cpu_usage_percent`):
  one series per service.
`type` is the service's registry type at its last round. The selector keeps the series whose
labels (with the figure as `__name__`) it matches; more than `max_series` is refused.

**Pushed series** (`pushed.py`): a selector naming a metric pushed to the mesh (any label name
allowed then, `selector.py`) also selects its stored label sets, each a series of the answer
with its own labels. Their values follow Prometheus's staleness rule (`pushed_query.py`): at a
step, the last value read at or before it within 5 minutes; an aggregation takes the values
read within the step; instant is the last value within 5 minutes of the time, latest the
newest value. A name that is both (`cpu_usage_percent`: the agents' CPU, and a pushed gauge)
selects the series of both; labels tell them apart (`service=` for the mesh's, `host=` ...).

**Range** (`query_range`): points at `start + i * step` up to `end` (at most
`max_points_per_series`), each the figure over `(t - step, t]` (`query.evaluate_range`), from
the tier `tiers.choose_tier` picks. With `aggregations`, each point is instead the average,
minimum, maximum, sum or count of the figure's values at `resolution` within the step (as
`avg_over_time(figure[step:resolution])` in PromQL): resolution defaults to the finest tier
holding `start` whose values per series stay within `MAX_VALUES`. The values of final windows
(sealed, out of retention's reach) are kept (`window_cache.py`): the same query asked again
reads and evaluates only its first window and those after the last sealed chunk.

**Instant** (`query_instant`): the figure over the minute ending at the time (the agents'
window), read from the finest tier holding it (its resolution when that is longer).
**Latest** (`query_latest`): per series, the figure over its newest sample, from the finest
tier that has one (looking back `LATEST_LOOKBACK_CHUNKS` chunks of each tier but the last,
the whole retention of the last).

A range may not start in the future nor end before it starts; a step must be positive; an
instant may not be in the future. Times are integer milliseconds since the epoch.
"""

from __future__ import annotations

import math
import time
from array import array
from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from itertools import compress
from operator import eq

from aggregator._errors import HistoryQueryError, HistoryTimeout
from aggregator._history.codec import Columns
from aggregator._history.model import SeriesKey, SeriesRecord, Tier
from aggregator._history.pushed import LOOKBACK_MS, PushedPoint, PushedRecord
from aggregator._history.pushed_query import by_series, last_values, newest, step_values
from aggregator._history.query import (
    FIGURES,
    INSTANT_WINDOW_MS,
    Point,
    evaluate_columns,
    evaluate_latest,
    points_of,
)
from aggregator._history.reader import HistoryReader
from aggregator._history.selector import Selector, parse_selector
from aggregator._history.tiers import choose_tier
from aggregator._history.window_cache import Extent, WindowCache

__all__ = [
    "LATEST_LOOKBACK_CHUNKS",
    "MAX_LISTED_SERIES",
    "MAX_MATCHER_SELECTORS",
    "MAX_VALUES",
    "Aggregation",
    "QueryEngine",
    "QueryLimits",
    "SeriesAnswer",
    "SeriesSpec",
]

MAX_VALUES = 100_000
"""The most values per series an aggregated range query works on (24 h of 1 s rounds fit)."""
MAX_LISTED_SERIES = 10_000
"""The most series one ListSeries answers."""
MAX_MATCHER_SELECTORS = 32
"""The most selectors one ListSeries takes."""
LATEST_LOOKBACK_CHUNKS = 2
"""How many chunk spans of a tier (not the last) a latest query looks back for a sample."""


class Aggregation(StrEnum):
    """What a range query's point stands for (`HistoryAggregation` on the wire)."""

    FIGURE = ""
    """The figure over the whole step."""
    AVG = "avg"
    MIN = "min"
    MAX = "max"
    SUM = "sum"
    COUNT = "count"


_AGGREGATE: dict[Aggregation, Callable[[list[float]], float]] = {
    Aggregation.AVG: lambda values: math.fsum(values) / len(values),
    Aggregation.MIN: min,
    Aggregation.MAX: max,
    Aggregation.SUM: math.fsum,
    Aggregation.COUNT: lambda values: float(len(values)),
}


@dataclass(frozen=True, slots=True)
class QueryLimits:
    """The bounds of a query (the `[history]` settings of the same names)."""

    max_points_per_series: int = 11_000
    max_series: int = 500
    timeout_seconds: float = 10.0


@dataclass(frozen=True, slots=True)
class SeriesSpec:
    """One series of an answer, before it is read: its figure, labels and stored series."""

    figure: str
    labels: tuple[tuple[str, str], ...]
    """`service`, `type`, `kind` as the series has them (sorted; the figure is not one)."""
    keys: tuple[SeriesKey, ...]
    """The stored series whose samples it sums."""

    def label_set(self) -> dict[str, str]:
        """The labels with the figure as `__name__`, as a selector matches them."""
        return {"__name__": self.figure, **dict(self.labels)}


@dataclass(frozen=True, slots=True)
class SeriesAnswer:
    """One series of an answer: what it is, its points and the tier they come from."""

    figure: str
    labels: dict[str, str]
    points: list[Point]
    tier: Tier
    aggregation: Aggregation = Aggregation.FIGURE


@dataclass(frozen=True, slots=True)
class RangeAnswer:
    """A range query's series, and the spacing of aggregated values (0 without)."""

    series: list[SeriesAnswer]
    resolution_ms: int = 0


@dataclass(frozen=True, slots=True)
class InstantAnswer:
    """An instant query's series (one point each) and the window each value covers."""

    series: list[SeriesAnswer]
    window_ms: int


@dataclass(slots=True)
class _Deadline:
    """The monotonic instant a query must be done by; `check()` raises past it."""

    at: float
    seconds: float
    monotonic: Callable[[], float]

    def check(self) -> None:
        if self.monotonic() > self.at:
            raise HistoryTimeout(
                f"the query ran longer than {self.seconds:g} s (the query timeout: [history] "
                "query_timeout_seconds, or the call's deadline); narrow the range or the selector"
            )


class QueryEngine:
    """Answers queries over one history (see the module doc); blocking, thread-safe."""

    def __init__(
        self,
        reader: HistoryReader,
        limits: QueryLimits,
        *,
        wall: Callable[[], float],
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._reader = reader
        self.limits = limits
        self._windows = WindowCache()
        self._wall = wall
        self._monotonic = monotonic

    @property
    def tiers(self) -> tuple[Tier, ...]:
        """The tiers, finest first."""
        return self._reader.tiers

    def now_ms(self) -> int:
        """The wall clock, in milliseconds since the epoch."""
        return int(self._wall() * 1000)

    def deadline(self, seconds: float | None = None) -> _Deadline:
        """A deadline `seconds` from now (default: the query timeout)."""
        limit = self.limits.timeout_seconds if seconds is None else seconds
        return _Deadline(self._monotonic() + limit, limit, self._monotonic)

    # --- series ---------------------------------------------------------------------------

    def series_of(self, selector: Selector, *, limit: int | None = None) -> list[SeriesSpec]:
        """The mesh's series `selector` selects (refused past `limit`, default `max_series`)."""
        found = [
            spec
            for figure in selector.figures()
            for spec in _candidates(figure, self._reader.series())
            if selector.matches(spec.label_set())
        ]
        _check_count(len(found), self.limits.max_series if limit is None else limit)
        return found

    def select(
        self, text: str, *, field: str = "query", limit: int | None = None
    ) -> tuple[list[SeriesSpec], list[PushedRecord]]:
        """The mesh's series and the pushed series selector `text` selects (module doc).

        Refused past `limit` (default `max_series`) series in all.
        """
        limit = self.limits.max_series if limit is None else limit
        names = self._reader.pushed_names()
        selector = parse_selector(text, field=field, pushed=names)
        specs = self.series_of(selector, limit=limit)
        pushed = [
            record
            for record in self._reader.pushed_series(selector.names(names))
            if selector.matches({**record.label_set(), "__name__": record.name})
        ]
        _check_count(len(specs) + len(pushed), limit)
        return specs, pushed

    def list_series(
        self, selectors: Sequence[str], *, deadline: _Deadline | None = None
    ) -> list[dict[str, str]]:
        """The label sets (with `__name__`) of the series any of `selectors` selects."""
        if not selectors:
            raise HistoryQueryError("give at least one selector", field="matchers")
        if len(selectors) > MAX_MATCHER_SELECTORS:
            raise HistoryQueryError(
                f"{len(selectors)} selectors; the limit is {MAX_MATCHER_SELECTORS}",
                field="matchers",
            )
        seen: dict[tuple[tuple[str, str], ...], dict[str, str]] = {}
        for text in selectors:
            if deadline is not None:
                deadline.check()
            specs, pushed = self.select(text, field="matchers", limit=MAX_LISTED_SERIES)
            label_sets = [spec.label_set() for spec in specs] + [
                {**record.label_set(), "__name__": record.name} for record in pushed
            ]
            for labels in label_sets:
                seen[tuple(sorted(labels.items()))] = labels
                if len(seen) > MAX_LISTED_SERIES:
                    raise HistoryQueryError(
                        f"the selectors match more than {MAX_LISTED_SERIES} series",
                        field="matchers",
                    )
        return [seen[key] for key in sorted(seen)]

    # --- range ----------------------------------------------------------------------------

    def query_range(
        self,
        query: str,
        start_ms: int,
        end_ms: int,
        step_ms: int,
        *,
        aggregations: Sequence[Aggregation] = (),
        resolution_ms: int = 0,
        deadline: _Deadline | None = None,
    ) -> RangeAnswer:
        """The series of `query` over `[start_ms, end_ms]` at `step_ms` (module doc)."""
        deadline = deadline or self.deadline()
        now = self.now_ms()
        self._check_range(start_ms, end_ms, step_ms, now)
        specs, pushed = self.select(query)
        wanted = [a for a in dict.fromkeys(aggregations) if a is not Aggregation.FIGURE]
        if len(wanted) * (len(specs) + len(pushed)) > self.limits.max_series:
            raise HistoryQueryError(
                f"{len(specs) + len(pushed)} series x {len(wanted)} aggregations is more than "
                f"{self.limits.max_series} series ([history] max_series)",
                field="query",
            )
        if not wanted:
            tier = choose_tier(self._holding(start_ms - step_ms), start_ms, now, step_ms)
            series = []
            answers = self._ranges(specs, tier, start_ms, end_ms, step_ms, now, deadline)
            for spec, points in zip(specs, answers, strict=True):
                if points:
                    series.append(SeriesAnswer(spec.figure, dict(spec.labels), points, tier))
            if pushed:
                tier = choose_tier(self.tiers, start_ms - LOOKBACK_MS, now, step_ms)
                read = self._pushed(pushed, tier, start_ms - LOOKBACK_MS, end_ms, deadline)
                for record, found in read:
                    points = last_values(found, start_ms, end_ms, step_ms)
                    if points:
                        series.append(_pushed_answer(record, points, tier))
            return RangeAnswer(series)
        answer = self._aggregated(specs, wanted, start_ms, end_ms, step_ms, resolution_ms, deadline)
        if pushed:
            answer.series.extend(
                self._pushed_aggregated(pushed, wanted, start_ms, end_ms, step_ms, answer, deadline)
            )
        return answer

    def _pushed(
        self,
        records: Sequence[PushedRecord],
        tier: Tier,
        start_ms: int,
        end_ms: int,
        deadline: _Deadline,
    ) -> list[tuple[PushedRecord, list[PushedPoint]]]:
        """Each pushed series with its points of `tier` read in `(start_ms, end_ms]`."""
        deadline.check()
        by_id = {record.id: record for record in records}
        points = self._reader.pushed_points(by_id, tier, start_ms, end_ms)
        deadline.check()
        found = dict(by_series(points))
        return [(record, found.get(record.id, [])) for record in records]

    def _pushed_aggregated(
        self,
        records: Sequence[PushedRecord],
        wanted: Sequence[Aggregation],
        start_ms: int,
        end_ms: int,
        step_ms: int,
        answer: RangeAnswer,
        deadline: _Deadline,
    ) -> list[SeriesAnswer]:
        """Each aggregation of the pushed values read within each step, at the resolution."""
        now = self.now_ms()
        first_ms = start_ms - step_ms
        resolution_ms = answer.resolution_ms
        tier = choose_tier(self.tiers, first_ms, now, resolution_ms)
        found = []
        for record, points in self._pushed(records, tier, first_ms, end_ms, deadline):
            for aggregation in wanted:
                values = step_values(points, start_ms, end_ms, step_ms, _AGGREGATE[aggregation])
                if values:
                    found.append(_pushed_answer(record, values, tier, aggregation))
        return found

    def _ranges(
        self,
        specs: Sequence[SeriesSpec],
        tier: Tier,
        start_ms: int,
        end_ms: int,
        step_ms: int,
        now: int,
        deadline: _Deadline,
    ) -> list[list[Point]]:
        """Each spec's points at `start_ms + i * step_ms` up to `end_ms`, from `tier`.

        Final windows are taken from the window cache (`window_cache.py`) where it holds
        them; the windows before the first final one retention cannot touch (the head) and
        those after the cached ones (the tail) are read and evaluated, and the final ones
        kept for the next query.
        """
        last = (end_ms - start_ms) // step_ms
        generation, sealed_ms = self._reader.final_ms(tier)
        safe_ms = now - tier.retention_ms + step_ms  # its window starts inside retention
        first = min(last + 1, max(0, -((start_ms - safe_ms) // step_ms)))
        final = min(last, (sealed_ms - start_ms) // step_ms)
        scope = (generation, tier.key, step_ms, start_ms % step_ms)
        keys = [(*scope, spec.figure, spec.keys) for spec in specs]
        extents = [self._windows.get(key) for key in keys]
        tail = min((_covered(e, start_ms, step_ms, first, final) for e in extents), default=first)
        head = self._evaluate(specs, tier, start_ms, step_ms, (0, first - 1), deadline)
        fresh = self._evaluate(specs, tier, start_ms, step_ms, (tail, last), deadline)
        answers = []
        for key, extent, before, after in zip(keys, extents, head, fresh, strict=True):
            points = before + _cached(extent, start_ms, step_ms, first, tail - 1) + after
            self._keep(key, points, start_ms, step_ms, first, final)
            answers.append(points)
        return answers

    def _evaluate(
        self,
        specs: Sequence[SeriesSpec],
        tier: Tier,
        start_ms: int,
        step_ms: int,
        windows: tuple[int, int],
        deadline: _Deadline,
    ) -> list[list[Point]]:
        """Each spec's points of windows `lo` to `hi` (`start_ms + i * step_ms`), read now."""
        lo, hi = windows
        if hi < lo:
            return [[] for _ in specs]
        at, to = start_ms + lo * step_ms, start_ms + hi * step_ms
        parts = self._read(specs, tier, at - step_ms, to, deadline)
        found = []
        for spec in specs:
            deadline.check()
            found.append(evaluate_columns(_of(parts, spec), spec.figure, at, to, step_ms))
        return found

    def _keep(
        self, key: Hashable, points: list[Point], start_ms: int, step_ms: int, lo: int, hi: int
    ) -> None:
        """Keep the values of windows `lo` to `hi` (all final) of `points` in the cache."""
        if hi < lo:
            return
        first_ms = start_ms + lo * step_ms
        values = array("d", [math.nan]) * (hi - lo + 1)
        for time_ms, value in points:
            index = (time_ms - first_ms) // step_ms
            if 0 <= index <= hi - lo:
                values[index] = value
        self._windows.put(key, Extent(first_ms, step_ms, values))

    def _check_range(self, start_ms: int, end_ms: int, step_ms: int, now: int) -> None:
        if step_ms <= 0:
            raise HistoryQueryError(
                f"step {step_ms / 1000:g}s: must be positive (e.g. 60s)", field="step"
            )
        if end_ms < start_ms:
            raise HistoryQueryError("end_time is before start_time", field="end_time")
        if start_ms > now:
            raise HistoryQueryError(
                "start_time is in the future: the history holds what has happened",
                field="start_time",
            )
        points = (end_ms - start_ms) // step_ms + 1
        limit = self.limits.max_points_per_series
        if points > limit:
            raise HistoryQueryError(
                f"{points} points per series: more than the limit of {limit} "
                f"([history] max_points_per_series); use a step of at least "
                f"{math.ceil((end_ms - start_ms) / (limit - 1) / 1000)}s or a shorter range",
                field="step",
            )

    def _aggregated(
        self,
        specs: Sequence[SeriesSpec],
        wanted: Sequence[Aggregation],
        start_ms: int,
        end_ms: int,
        step_ms: int,
        resolution_ms: int,
        deadline: _Deadline,
    ) -> RangeAnswer:
        """Each point: functions of the figure's values at the resolution within its step."""
        now = self.now_ms()
        first_ms = start_ms - step_ms  # values after it fall in the first window
        end_ms = start_ms + (end_ms - start_ms) // step_ms * step_ms  # the last point's time
        resolution_ms = resolution_ms or self._default_resolution(first_ms, end_ms, step_ms, now)
        if resolution_ms <= 0 or step_ms % resolution_ms:
            raise HistoryQueryError(
                f"resolution {resolution_ms / 1000:g}s must be positive and divide the step "
                f"({step_ms / 1000:g}s)",
                field="resolution",
            )
        values = (end_ms - first_ms) // resolution_ms
        if values > MAX_VALUES:
            raise HistoryQueryError(
                f"{values} values per series at a resolution of {resolution_ms / 1000:g}s: more "
                f"than {MAX_VALUES}; use a coarser resolution or a shorter range",
                field="resolution",
            )
        tier = choose_tier(self._holding(first_ms), first_ms, now, resolution_ms)
        parts = self._read(specs, tier, first_ms, end_ms, deadline)
        series = []
        for spec in specs:
            deadline.check()
            inner = evaluate_columns(
                _of(parts, spec), spec.figure, first_ms + resolution_ms, end_ms, resolution_ms
            )
            windows: dict[int, list[float]] = defaultdict(list)
            for point in inner:
                windows[-((start_ms - point.time_ms) // step_ms)].append(point.value)
            for aggregation in wanted:
                points = [
                    Point(start_ms + index * step_ms, _AGGREGATE[aggregation](values))
                    for index, values in sorted(windows.items())
                ]
                if points:
                    labels = dict(spec.labels)
                    series.append(SeriesAnswer(spec.figure, labels, points, tier, aggregation))
        return RangeAnswer(series, resolution_ms)

    def _default_resolution(self, first_ms: int, end_ms: int, step_ms: int, now: int) -> int:
        """The resolution of the values an aggregated query works on.

        That of the finest tier holding `first_ms` whose resolution divides the step, within
        MAX_VALUES values per series.
        """
        longest = max(tier.retention_ms for tier in self.tiers)
        for tier in self._holding(first_ms):
            if now - tier.retention_ms > first_ms and tier.retention_ms < longest:
                continue
            resolution = tier.resolution_ms
            if step_ms % resolution == 0 and (end_ms - first_ms) // resolution <= MAX_VALUES:
                return resolution
        raise HistoryQueryError(
            f"no tier's resolution divides the step {step_ms / 1000:g}s within {MAX_VALUES} "
            "values per series; use a step that is a multiple of a coarser tier's resolution",
            field="step",
        )

    # --- instant and latest -----------------------------------------------------------------

    def query_instant(
        self, query: str, time_ms: int | None = None, *, deadline: _Deadline | None = None
    ) -> InstantAnswer:
        """The series of `query` over the minute ending at `time_ms` (default now)."""
        deadline = deadline or self.deadline()
        now = self.now_ms()
        at = now if time_ms is None else time_ms
        if at > now:
            raise HistoryQueryError(
                "time is in the future: the history holds what has happened", field="time"
            )
        specs, pushed = self.select(query)
        configured = self._configured()
        reaching = [t for t in configured if now - t.retention_ms <= at - INSTANT_WINDOW_MS]
        tier = reaching[0] if reaching else configured[-1]
        window = -(-INSTANT_WINDOW_MS // tier.resolution_ms) * tier.resolution_ms
        parts = self._read(specs, tier, at - window, at, deadline)
        series = []
        for spec in specs:
            deadline.check()
            found = evaluate_columns(_of(parts, spec), spec.figure, at, at, window)
            if found:
                point = found[0]
                series.append(SeriesAnswer(spec.figure, dict(spec.labels), [point], tier))
        if pushed:
            reaching = [t for t in configured if now - t.retention_ms <= at - LOOKBACK_MS]
            tier = reaching[0] if reaching else configured[-1]
            for record, points in self._pushed(pushed, tier, at - LOOKBACK_MS, at, deadline):
                values = last_values(points, at, at, 1)
                if values:
                    series.append(_pushed_answer(record, values, tier))
        return InstantAnswer(series, window)

    def query_latest(self, query: str, *, deadline: _Deadline | None = None) -> list[SeriesAnswer]:
        """Per series of `query`, the figure over its newest sample (module doc)."""
        deadline = deadline or self.deadline()
        now = self.now_ms()
        specs, pushed = self.select(query)
        answers = self._latest(specs, now, deadline)
        if pushed:
            answers += self._pushed_latest(pushed, now, deadline)
        return answers

    def _pushed_latest(
        self, records: Sequence[PushedRecord], now: int, deadline: _Deadline
    ) -> list[SeriesAnswer]:
        """Per pushed series, its newest value, from the finest tier that has one."""
        left = list(records)
        found: dict[int, SeriesAnswer] = {}
        configured = self._configured()
        for tier in configured:
            if not left:
                break
            span = tier.retention_ms if tier is configured[-1] else self._latest_span(tier)
            missing = []
            for record, points in self._pushed(left, tier, now - span, now, deadline):
                point = newest(points)
                if point is None:
                    missing.append(record)
                else:
                    found[record.id] = _pushed_answer(record, [point], tier)
            left = missing
        return [found[record.id] for record in records if record.id in found]

    @staticmethod
    def _latest_span(tier: Tier) -> int:
        """How far back a latest query looks in a tier that is not the last."""
        return LATEST_LOOKBACK_CHUNKS * tier.chunk_ms

    def _latest(
        self, specs: Sequence[SeriesSpec], now: int, deadline: _Deadline
    ) -> list[SeriesAnswer]:
        """Per mesh series, the figure over its newest sample."""
        left = list(range(len(specs)))
        found: dict[int, SeriesAnswer] = {}
        configured = self._configured()
        for tier in configured:
            if not left:
                break
            span = tier.retention_ms if tier is configured[-1] else self._latest_span(tier)
            end = now + tier.resolution_ms  # a coarse tier's newest sample ends after now
            parts = self._read([specs[i] for i in left], tier, now - span, end, deadline)
            missing = []
            for index in left:
                deadline.check()
                spec = specs[index]
                samples = [
                    [s for part in found for s in part.samples()] for found in _of(parts, spec)
                ]
                point = evaluate_latest(samples, spec.figure, tier.resolution_ms)
                if point is None:
                    missing.append(index)
                else:
                    found[index] = SeriesAnswer(spec.figure, dict(spec.labels), [point], tier)
            left = missing
        return [found[index] for index in sorted(found)]

    def _configured(self) -> tuple[Tier, ...]:
        """The configured tiers, without the hourly summary (instant and latest read these)."""
        return tuple(tier for tier in self.tiers if not tier.summary)

    def _holding(self, start_ms: int) -> tuple[Tier, ...]:
        """The tiers that hold every sample after `start_ms` (`HistoryReader.held_from_ms`)."""
        reader = self._reader
        return tuple(tier for tier in reader.tiers if reader.held_from_ms(tier) <= start_ms)

    def _read(
        self,
        specs: Sequence[SeriesSpec],
        tier: Tier,
        start_ms: int,
        end_ms: int,
        deadline: _Deadline,
    ) -> dict[SeriesKey, list[Columns]]:
        """The samples of every key of `specs` in `(start_ms, end_ms]` of `tier`, as columns.

        Kind samples come with their buckets only when a figure of `specs` reads them.
        """
        keys = {key for spec in specs for key in spec.keys}
        buckets = any(FIGURES[spec.figure].buckets for spec in specs)
        deadline.check()
        parts = self._reader.read_columns(keys, tier, start_ms, end_ms, buckets=buckets)
        deadline.check()
        return parts


def _check_count(count: int, limit: int) -> None:
    """HistoryQueryError past `limit` series."""
    if count > limit:
        raise HistoryQueryError(
            f"the selector matches {count} series; the limit is {limit} "
            "([history] max_series): narrow it with service=, type=, kind= or a pushed "
            "metric's labels",
            field="query",
        )


def _pushed_answer(
    record: PushedRecord,
    points: list[Point],
    tier: Tier,
    aggregation: Aggregation = Aggregation.FIGURE,
) -> SeriesAnswer:
    """The answer's series of a pushed series: its name as the figure, its own labels."""
    return SeriesAnswer(record.name, record.label_set(), points, tier, aggregation)


def _covered(extent: Extent | None, start_ms: int, step_ms: int, lo: int, hi: int) -> int:
    """The first of windows `lo` to `hi` the extent does not hold, from `lo` on."""
    if extent is None or not extent.holds(start_ms + lo * step_ms):
        return lo
    return min(hi, (extent.last_ms - start_ms) // step_ms) + 1


def _cached(extent: Extent | None, start_ms: int, step_ms: int, lo: int, hi: int) -> list[Point]:
    """The points of windows `lo` to `hi`, which `extent` holds."""
    if extent is None or hi < lo:
        return []
    first_ms = start_ms + lo * step_ms
    offset = (first_ms - extent.first_ms) // step_ms
    values = extent.values[offset : offset + hi - lo + 1]
    held = list(map(eq, values, values))  # NaN (no point) is not equal to itself
    times = range(first_ms, first_ms + len(values) * step_ms, step_ms)
    return points_of(compress(times, held), compress(values, held))


def _of(parts: Mapping[SeriesKey, list[Columns]], spec: SeriesSpec) -> list[list[Columns]]:
    """The column parts of `spec`'s stored series."""
    return [found for key in spec.keys if (found := parts.get(key))]


def _candidates(figure: str, records: Iterable[SeriesRecord]) -> list[SeriesSpec]:
    """Every series of `figure` the stored series make up (module doc)."""
    types: dict[str, str] = {}
    kinds: dict[str, list[SeriesRecord]] = defaultdict(list)
    own: dict[str, tuple[SeriesKey, ...]] = defaultdict(tuple)
    for record in records:
        if record.kind:
            kinds[record.service].append(record)
            types.setdefault(record.service, record.type)
        else:
            types[record.service] = record.type
            own[record.service] = (SeriesKey(record.service, ""),)
    if FIGURES[figure].reads == "service":
        return [
            SeriesSpec(figure, (("service", service), ("type", types[service])),
                       (SeriesKey(service, ""),))
            for service in sorted(types)
        ]  # fmt: skip
    specs = []
    every: list[SeriesKey] = []
    for service in sorted(kinds):
        service_labels = (("service", service), ("type", types[service]))
        keys = sorted(SeriesKey(service, record.kind) for record in kinds[service])
        answered = own[service]  # tells an idle window (0 events) from one without an answer
        every += [*keys, *answered]
        for key in keys:
            specs.append(
                SeriesSpec(figure, (("kind", key.kind), *service_labels), (key, *answered))
            )
        specs.append(SeriesSpec(figure, service_labels, (*keys, *answered)))
    if every:
        specs.append(SeriesSpec(figure, (), tuple(every)))
    return specs
