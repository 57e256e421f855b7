"""Pushed series in the history: stored per tier, answered by range, instant, latest and
aggregations with Prometheus's 5-minute staleness, read back after a restart, and a store
written before pushed series opens and takes them. Each backend in turn.

Values go through the real ingestion path (`Ingestor`, as the Ingest RPC and OTLP do) and the
history's worker (`Recorder`, without its thread) under fake clocks: a series pushed every
10 s for 10 minutes, its value the number of its push (1 to 60).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from aggregator._errors import SelectorError
from aggregator._history import parse_tiers
from aggregator._history.engine import Aggregation, QueryEngine, QueryLimits
from aggregator._history.memory import OpenChunks
from aggregator._history.pushed import PushedCatalog
from aggregator._history.reader import HistoryReader
from aggregator._history.recorder import Recorder
from aggregator._history.tiers import DEFAULT_TIERS
from aggregator._ingest.ingestor import Ingestor
from aggregator._ingest.model import MetricPoint, MetricType
from aggregator._ingest.settings import IngestSettings
from tests.clocks import FakeClock
from tests.history_backends import HistoryBackend
from tests.history_mesh import fake_clocks, tick, wire_snapshot

TIERS = parse_tiers(DEFAULT_TIERS)
START = 1_735_689_600.0
"""2025-01-01T00:00:00Z."""
START_MS = int(START * 1000)
PUSHES = 60
HOSTS = {"server01": "us-east-1", "server02": "eu-west-1"}


class Pushed:
    """An ingestor and a recorder on one backend, under fake clocks."""

    def __init__(self, backend: HistoryBackend) -> None:
        self.monotonic, self.wall, clocks = fake_clocks(START)
        self.ingestor = Ingestor(IngestSettings(), clocks)
        self.backend = backend
        self.recorder, self.engine = self.open()

    def open(self) -> tuple[Recorder, QueryEngine]:
        memory, catalog = OpenChunks(TIERS), PushedCatalog()
        recorder = Recorder(
            self.backend.opener(),
            memory,
            buffer_rounds=300,
            monotonic=self.monotonic,
            pushed=catalog,
        )
        recorder.open()
        assert recorder.degraded == ""
        engine = QueryEngine(HistoryReader(memory, catalog), QueryLimits(), wall=self.wall)
        return recorder, engine

    def push(self, value: float, **labels: str) -> None:
        point = MetricPoint("cpu_usage_percent", MetricType.GAUGE, value, labels, "CPU", "percent")
        assert self.ingestor.ingest([point]).refused == ()

    def round(self, seconds: float) -> None:
        tick(self.monotonic, self.wall, seconds)
        self.recorder.record(wire_snapshot(self.wall(), []), self.ingestor.round().series)
        assert self.recorder.degraded == ""

    def play(self) -> None:
        for number in range(1, PUSHES + 1):
            tick(self.monotonic, self.wall, 10.0)
            for host, region in HOSTS.items():
                value = number if host == "server01" else 100.0 + number
                self.push(value, host=host, region=region)
            self.round(0.0)


@pytest.fixture
def pushed(history_backend: HistoryBackend) -> Iterator[Pushed]:
    running = Pushed(history_backend)
    try:
        running.play()
        yield running
    finally:
        running.recorder.finish()


def seconds(offset: int) -> int:
    return START_MS + offset * 1000


def values(series: list) -> list[tuple[int, float]]:  # type: ignore[type-arg]
    return [(point.time_ms, point.value) for point in series]


def test_a_range_answers_the_last_value_at_each_step(pushed: Pushed) -> None:
    answer = pushed.engine.query_range(
        'cpu_usage_percent{host="server01"}', seconds(60), seconds(600), 60_000
    )
    (series,) = answer.series
    assert series.figure == "cpu_usage_percent"
    assert series.labels == {"host": "server01", "region": "us-east-1"}
    assert values(series.points) == [(seconds(t), t / 10) for t in range(60, 601, 60)]
    between = pushed.engine.query_range(
        'cpu_usage_percent{host="server01"}', seconds(15), seconds(35), 5000
    )  # a step between two pushes reads the one before it
    assert values(between.series[0].points) == [
        (seconds(15), 1.0), (seconds(20), 2.0), (seconds(25), 2.0), (seconds(30), 3.0),
        (seconds(35), 3.0),
    ]  # fmt: skip


def test_selectors_take_any_label_of_a_pushed_metric(pushed: Pushed) -> None:
    engine = pushed.engine
    regions = engine.query_instant(
        '{__name__="cpu_usage_percent", region=~"eu-.*"}', seconds(600)
    ).series
    assert [(s.labels["host"], s.points[0].value) for s in regions] == [("server02", 160.0)]
    both = engine.query_instant("cpu_usage_percent", seconds(600)).series
    assert sorted(s.labels["host"] for s in both) == ["server01", "server02"]
    with pytest.raises(SelectorError, match="unknown label 'host'"):
        engine.query_instant('events{host="server01"}', seconds(600))  # a mesh figure's
    with pytest.raises(SelectorError, match="unknown figure 'cpu_usage'"):
        engine.query_instant("cpu_usage", seconds(600))


def test_a_value_is_stale_five_minutes_after_its_last_push(pushed: Pushed) -> None:
    tick(pushed.monotonic, pushed.wall, 400.0)
    query = 'cpu_usage_percent{host="server01"}'
    assert values(pushed.engine.query_instant(query, seconds(899)).series[0].points) == [
        (seconds(899), 60.0)
    ]
    assert pushed.engine.query_instant(query, seconds(900)).series == []
    tail = pushed.engine.query_range(query, seconds(600), seconds(960), 60_000).series[0]
    assert [time for time, _ in values(tail.points)] == [seconds(t) for t in (600, 660, 720, 780,
                                                                               840)]  # fmt: skip


def test_aggregations_take_the_values_within_each_step(pushed: Pushed) -> None:
    answer = pushed.engine.query_range(
        'cpu_usage_percent{host="server01"}',
        seconds(300),
        seconds(600),
        300_000,
        aggregations=[Aggregation.AVG, Aggregation.MAX, Aggregation.COUNT],
    )
    found = {series.aggregation: values(series.points) for series in answer.series}
    assert found == {
        Aggregation.AVG: [(seconds(300), 15.5), (seconds(600), 45.5)],
        Aggregation.MAX: [(seconds(300), 30.0), (seconds(600), 60.0)],
        Aggregation.COUNT: [(seconds(300), 30.0), (seconds(600), 30.0)],
    }


def test_coarse_tiers_keep_the_last_value_of_each_bucket(pushed: Pushed) -> None:
    tick(pushed.monotonic, pushed.wall, 7 * 86400.0)  # past the 1 s tier's day
    answer = pushed.engine.query_range(
        'cpu_usage_percent{host="server02"}', seconds(300), seconds(600), 300_000
    )
    (series,) = answer.series
    assert series.tier.text == "5m:90d"  # the coarsest tier whose resolution divides the step
    assert values(series.points) == [(seconds(300), 130.0), (seconds(600), 160.0)]


def test_latest_is_the_newest_value_and_survives_a_restart(pushed: Pushed) -> None:
    latest = pushed.engine.query_latest("cpu_usage_percent")
    assert [(s.labels["host"], values(s.points)) for s in latest] == [
        ("server01", [(seconds(600), 60.0)]),
        ("server02", [(seconds(600), 160.0)]),
    ]
    pushed.recorder.finish()
    pushed.recorder, pushed.engine = pushed.open()
    again = pushed.engine.query_latest('cpu_usage_percent{host="server02"}')
    assert [values(s.points) for s in again] == [[(seconds(600), 160.0)]]
    tick(pushed.monotonic, pushed.wall, 5.0)
    pushed.push(7.0, host="server02", region="eu-west-1")  # the series keeps its id
    pushed.round(0.0)
    assert values(pushed.engine.query_latest('cpu_usage_percent{host="server02"}')[0].points) == [
        (seconds(605), 7.0)
    ]


def test_a_store_written_before_pushed_series_opens_and_takes_them(
    history_backend: HistoryBackend,
) -> None:
    history_backend.open().close()
    history_backend.make_schema_1()
    running = Pushed(history_backend)  # opens the old store: its tables are added
    try:
        running.push(42.0, host="server01")
        running.round(1.0)
        (series,) = running.engine.query_latest("cpu_usage_percent")
        assert values(series.points) == [(START_MS, 42.0)]
    finally:
        running.recorder.finish()
    store = history_backend.open()
    try:
        assert store.meta()["schema"] == "2"
        assert [record.name for record in store.pushed_series()] == ["cpu_usage_percent"]
    finally:
        store.close()


def test_retention_deletes_a_tiers_old_points(pushed: Pushed) -> None:
    clock: FakeClock = pushed.wall
    tick(pushed.monotonic, clock, 2 * 86400.0)  # the 1 s tier keeps a day
    pushed.push(1.0, host="server03")
    pushed.round(1.0)
    engine = pushed.engine
    fine = engine.tiers[0]
    reader = engine._reader
    records = reader.pushed_series(["cpu_usage_percent"])
    ids = [record.id for record in records]
    assert reader.pushed_points(ids, fine, START_MS, START_MS + 600_000) == []
    coarse = engine.tiers[1]
    assert len(reader.pushed_points(ids, coarse, START_MS, START_MS + 600_000)) == 2 * 10
