"""The pushed series: the latest value of every label set of every pushed metric, capped.

A metric name has one type, help text and unit (the latest push that states them wins); its
label sets are its series. Memory is bounded by the caps of `[ingest]`: `max_series` in all,
`max_series_per_metric` per name. A new series past a cap is refused with the cap's name;
series already held keep taking values. Names and label texts are interned, so a label set
repeated across series costs its tuple only (`python -m bench ingest memory`: bytes per series).
"""

from __future__ import annotations

from collections.abc import Iterator

from aggregator._errors import Refused
from aggregator._ingest.model import Labels, MetricPoint, MetricType, PushedSeries
from aggregator._ingest.settings import IngestSettings
from mesh_common.bounded import quote


class Series:
    """One label set's latest value (mutable; slots keep it small)."""

    __slots__ = ("labels", "received", "service", "time", "total", "value")

    def __init__(self, labels: Labels) -> None:
        self.labels = labels
        self.value = 0.0
        self.total = 0.0
        self.time = float("-inf")
        self.received = 0.0
        self.service = ""


class Metric:
    """One metric name: its type, help text, unit and series."""

    __slots__ = ("help", "name", "series", "type", "unit")

    def __init__(self, name: str, type: MetricType) -> None:
        self.name = name
        self.type = type
        self.help = ""
        self.unit = ""
        self.series: dict[Labels, Series] = {}


class SeriesTable:
    """Every pushed series, the caps on them, and which changed since the last drain."""

    def __init__(self, settings: IngestSettings) -> None:
        self._settings = settings
        self.metrics: dict[str, Metric] = {}
        self.count = 0
        """How many series are held."""
        self._changed: dict[tuple[str, Labels], Series] = {}

    def put(self, point: MetricPoint, labels: Labels, time: float, received: float) -> None:
        """Keep `point` as the latest value of series `labels`; Refused past a cap, out of order.

        `labels` is the point's checked label set, `time` the reading's checked time (epoch
        seconds), `received` the monotonic instant it arrived (for forgetting silent series).
        """
        metric = self.metrics.get(point.name)
        if metric is None:
            self._check_room(point)
            metric = self.metrics[point.name] = Metric(point.name, point.type)
        elif metric.type is not point.type:
            raise Refused(
                f"metric {quote(point.name)} is a {metric.type.value}, not a {point.type.value}"
            )
        series = metric.series.get(labels)
        if series is None:
            self._check_room(point, metric)
            series = metric.series[labels] = Series(labels)
            self.count += 1
            series.total = point.value
        elif time < series.time:
            raise Refused(
                f"out of order: the series already has a value read {series.time - time:.3f} s "
                "later"
            )
        elif metric.type is MetricType.COUNTER:
            increase = point.value - series.value
            series.total += point.value if increase < 0 else increase
        else:
            series.total = point.value
        series.value = point.value
        series.time = time
        series.received = received
        if point.service:
            series.service = point.service
        if point.help:
            metric.help = point.help
        if point.unit:
            metric.unit = point.unit
        self._changed[(metric.name, series.labels)] = series

    def _check_room(self, point: MetricPoint, metric: Metric | None = None) -> None:
        settings = self._settings
        if self.count >= settings.max_series:
            raise Refused(
                f"new series of {quote(point.name)} refused: {settings.max_series} pushed series "
                "are held already",
                "max_series",
            )
        if metric is not None and len(metric.series) >= settings.max_series_per_metric:
            raise Refused(
                f"new series of {quote(point.name)} refused: the metric has "
                f"{settings.max_series_per_metric} label sets already",
                "max_series_per_metric",
            )

    def drain_changed(self) -> list[PushedSeries]:
        """The series that took a value since the previous drain, in the order they changed."""
        changed, self._changed = self._changed, {}
        return [self._read(self.metrics[name], series) for (name, _), series in changed.items()]

    def read(self, name: str = "") -> Iterator[PushedSeries]:
        """The latest value of every series of metric `name` (every metric's when ""), sorted."""
        names = [name] if name else sorted(self.metrics)
        for each in names:
            metric = self.metrics.get(each)
            if metric is None:
                continue
            for labels in sorted(metric.series):
                yield self._read(metric, metric.series[labels])

    @staticmethod
    def _read(metric: Metric, series: Series) -> PushedSeries:
        return PushedSeries(
            metric.name,
            metric.type,
            series.labels,
            series.value,
            series.total,
            series.time,
            metric.help,
            metric.unit,
            series.service,
        )

    def forget(self, before: float) -> int:
        """Drop the series received last before the monotonic instant `before`; how many."""
        dropped = 0
        for name in list(self.metrics):
            metric = self.metrics[name]
            old = [labels for labels, series in metric.series.items() if series.received < before]
            for labels in old:
                del metric.series[labels]
                self._changed.pop((name, labels), None)
            dropped += len(old)
            if not metric.series:
                del self.metrics[name]
        self.count -= dropped
        return dropped
