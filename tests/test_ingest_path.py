"""The one ingestion path (`aggregator._ingest.Ingestor`): what it keeps, refuses and reads.

Driven by a fake clock: every rate, window and staleness below is exact.
"""

from __future__ import annotations

import math

import pytest

from aggregator._errors import BatchTooLarge
from aggregator._ingest.ingestor import Ingestor
from aggregator._ingest.model import KindPoint, MetricPoint, MetricType
from aggregator._ingest.settings import IngestSettings
from aggregator._model import CallResult
from mesh_common.clocks import Clocks
from mesh_common.errors import ConfigError
from mesh_common.latency import Histogram, index_of
from tests.clocks import FakeClock

WALL = 1_800_000_000.0


def make(clock: FakeClock, **settings: object) -> Ingestor:
    """An ingestor on `clock` (its wall clock runs with it)."""
    clocks = Clocks(monotonic=clock, wall=lambda: WALL + clock.now)
    return Ingestor(IngestSettings(**settings), clocks)  # type: ignore[arg-type]


def gauge(name: str = "cpu_usage_percent", value: float = 45.2, **labels: str) -> MetricPoint:
    """A seed 003 gauge."""
    return MetricPoint(name, MetricType.GAUGE, value, labels or {"host": "server01"})


def counter(value: float, name: str = "jobs_done_total") -> MetricPoint:
    """A seed 003 counter of one series."""
    return MetricPoint(name, MetricType.COUNTER, value, {"job": "nightly"})


def events(service: str, kind: str, count: int = 1, errors: int = 0) -> KindPoint:
    """Seed 004 events: new events, known up to now."""
    return KindPoint(service, kind, count, errors)


def test_a_gauge_is_kept_with_its_help_and_unit_and_read_back(clock: FakeClock) -> None:
    ingestor = make(clock)
    point = gauge()._replace(help="CPU usage percentage", unit="percent")
    result = ingestor.ingest([point])
    assert (result.accepted, result.refused) == (1, ())
    (series,) = ingestor.series.read("cpu_usage_percent")
    assert series.labels == (("host", "server01"),)
    assert (series.value, series.help, series.unit) == (45.2, "CPU usage percentage", "percent")
    assert series.time == WALL + clock.now


def test_a_counter_going_backwards_is_a_reset_not_a_negative_increase(clock: FakeClock) -> None:
    ingestor = make(clock)
    for value in (100.0, 150.0, 20.0, 50.0):
        clock.tick(1)
        assert ingestor.ingest([counter(value)]).accepted == 1
    (series,) = ingestor.series.read("jobs_done_total")
    assert series.value == 50.0
    assert series.total == 200.0  # 100 + 50, then a reset: + 20 + 30


def test_each_bad_item_is_refused_with_its_reason_and_the_rest_is_kept(clock: FakeClock) -> None:
    ingestor = make(clock, max_labels=2)
    batch = [
        gauge(),
        gauge(value=math.nan),
        gauge(name="cpu-usage"),
        gauge(a="1", b="2", c="3"),
        gauge(__name__="x"),
        gauge()._replace(time=WALL + clock.now - 7200),
        gauge()._replace(time=WALL + clock.now + 3600),
        gauge(name="memory_usage_percent", value=78.5),
    ]
    result = ingestor.ingest(batch)
    assert result.accepted == 2
    reasons = {refusal.item: (refusal.reason, refusal.limit) for refusal in result.refused}
    assert sorted(reasons) == [f"metrics[{i}]" for i in range(1, 7)]
    assert "not a finite number" in reasons["metrics[1]"][0]
    assert "is not [a-zA-Z_:][a-zA-Z0-9_:]*" in reasons["metrics[2]"][0]
    assert reasons["metrics[3]"] == ("3 labels, more than 2", "max_labels")
    assert "reserved" in reasons["metrics[4]"][0]
    assert reasons["metrics[5]"][1] == "max_past_seconds"
    assert reasons["metrics[6]"][1] == "max_future_seconds"
    assert ingestor.refused_total["max_labels"] == 1
    assert ingestor.accepted_total == 2


def test_a_batch_past_max_batch_is_refused_whole(clock: FakeClock) -> None:
    ingestor = make(clock)
    with pytest.raises(BatchTooLarge, match=r"1001 metrics in one request, more than 1000"):
        ingestor.ingest([gauge(value=float(i)) for i in range(1001)])
    assert ingestor.series.count == 0


def test_new_series_past_the_caps_are_refused_and_held_ones_keep_taking_values(
    clock: FakeClock,
) -> None:
    ingestor = make(clock, max_series=3, max_series_per_metric=2)
    first = ingestor.ingest([gauge(host=f"h{i}") for i in range(3)])
    assert first.accepted == 2
    assert first.refused[0].limit == "max_series_per_metric"
    second = ingestor.ingest([gauge(name="other", host="a"), gauge(name="third", host="a")])
    assert second.accepted == 1
    assert second.refused[0].limit == "max_series"
    clock.tick(1)
    assert ingestor.ingest([gauge(value=99.0, host="h0")]).accepted == 1
    assert ingestor.series.count == 3


def test_a_value_older_than_the_series_latest_is_refused_as_out_of_order(
    clock: FakeClock,
) -> None:
    ingestor = make(clock)
    now = WALL + clock.now
    ingestor.ingest([gauge()._replace(time=now)])
    result = ingestor.ingest([gauge()._replace(time=now - 5)])
    assert "out of order" in result.refused[0].reason


def test_a_metric_keeps_its_type(clock: FakeClock) -> None:
    ingestor = make(clock)
    ingestor.ingest([gauge()])
    result = ingestor.ingest([gauge()._replace(type=MetricType.COUNTER)])
    assert result.refused[0].reason == "metric 'cpu_usage_percent' is a gauge, not a counter"


def test_pushed_events_make_an_active_row_with_an_exact_rate(clock: FakeClock) -> None:
    ingestor = make(clock)
    for _ in range(30):  # 30 logins, one every 2 s, 3 of them failed every tenth
        ingestor.ingest(kinds=[events("metrics-service", "user_login")])
        clock.tick(2)
    ingestor.ingest(kinds=[events("metrics-service", "user_login", errors=1)])
    pushed = ingestor.round()
    (entry,) = pushed.entries
    assert (entry.name, entry.type, entry.pushed) == ("metrics-service", "pushed", True)
    assert (entry.host, entry.port, entry.agent_port) == ("", 0, 0)
    outcome = pushed.outcomes["metrics-service"]
    assert outcome.result is CallResult.OK
    figures = outcome.figures
    assert figures is not None
    assert figures.total_events == 31
    assert figures.total_errors == 1
    # The window is the last 60 s up to now: the events at 2, 4, ... 60 s ago and now.
    assert figures.window_events == 31 - 1  # the first event is 60 s old: the reference
    assert figures.events_per_second == pytest.approx(30 / 60)
    assert figures.uptime_seconds == pytest.approx(60.0)


def test_a_pushed_row_goes_stale_after_three_push_intervals(clock: FakeClock) -> None:
    ingestor = make(clock)
    for _ in range(4):
        ingestor.ingest(kinds=[events("billing", "invoice")])
        clock.tick(10)
    assert ingestor.round().outcomes["billing"].result is CallResult.OK  # 10 s after the last
    clock.tick(20.5)  # 30.5 s since the last push: past 3 x 10 s
    outcome = ingestor.round().outcomes["billing"]
    assert outcome.result is CallResult.STALE
    assert outcome.error == "no push for 30 s (its staleness window is 30 s)"


def test_a_configured_staleness_window_wins(clock: FakeClock) -> None:
    ingestor = make(clock, staleness_seconds=5.0)
    ingestor.ingest(kinds=[events("billing", "invoice")])
    clock.tick(4.9)
    assert ingestor.round().outcomes["billing"].result is CallResult.OK
    clock.tick(0.2)
    assert ingestor.round().outcomes["billing"].result is CallResult.STALE


def test_cumulative_readings_add_their_increase_and_a_restart_counts_from_zero(
    clock: FakeClock,
) -> None:
    ingestor = make(clock)
    stream = ("checkout", "http.server.request.duration", (("http.route", "/pay"),))
    start = WALL + clock.now - 30

    def reading(count: int, begun: float = start) -> KindPoint:
        return KindPoint("checkout", "/pay", count, 0, stream=stream, start_time=begun)

    ingestor.ingest(kinds=[reading(100)])
    clock.tick(10)
    ingestor.ingest(kinds=[reading(160)])
    clock.tick(10)
    ingestor.ingest(kinds=[reading(5, begun=WALL + clock.now - 1)])  # the pusher restarted
    figures = ingestor.round().outcomes["checkout"].figures
    assert figures is not None
    assert figures.total_events == 165
    # The first reading's start lies inside the window: everything since it is in the window,
    # over the 50 s from that start to the last push.
    assert figures.window_events == 165
    assert figures.events_per_second == pytest.approx(165 / 50)


def test_timed_events_give_the_row_its_latency(clock: FakeClock) -> None:
    ingestor = make(clock)
    for seconds in (0.010, 0.020, 0.500):
        latency = Histogram(index_of(seconds), (1,), seconds, seconds)
        ingestor.ingest(kinds=[KindPoint("api", "GET /", 1, 0, latency)])
    figures = ingestor.round().outcomes["api"].figures
    assert figures is not None and figures.latency is not None
    assert figures.latency.count == 3
    assert figures.latency.max_seconds == pytest.approx(0.5)
    assert figures.latency.quantile(0.99) == pytest.approx(0.5, rel=0.03)


def test_a_pushed_name_of_a_polled_service_is_refused(clock: FakeClock) -> None:
    ingestor = make(clock)
    ingestor.reserve(["admin-api"])
    result = ingestor.ingest(kinds=[events("admin-api", "login")])
    assert "polled from its agent" in result.refused[0].reason
    assert ingestor.round().entries == ()


def test_pushed_services_and_their_kinds_are_capped(clock: FakeClock) -> None:
    ingestor = make(clock, max_services=1, max_kinds_per_service=1)
    result = ingestor.ingest(kinds=[events("a", "x"), events("a", "y"), events("b", "x")])
    assert [refusal.limit for refusal in result.refused] == [
        "max_kinds_per_service",
        "max_services",
    ]


def test_silent_services_and_series_are_forgotten(clock: FakeClock) -> None:
    ingestor = make(clock, forget_after_seconds=100.0)
    ingestor.ingest([gauge()], [events("a", "x")])
    clock.tick(101)
    pushed = ingestor.round()
    assert pushed.entries == ()
    assert ingestor.series.count == 0


def test_changed_series_are_drained_once_per_round(clock: FakeClock) -> None:
    ingestor = make(clock)
    ingestor.ingest([gauge(host="a"), gauge(host="b")])
    assert [s.labels for s in ingestor.round().series] == [(("host", "a"),), (("host", "b"),)]
    assert ingestor.round().series == ()


def test_settings_refuse_nonsense() -> None:
    with pytest.raises(ConfigError, match="max_series: 0 must be in"):
        IngestSettings(max_series=0)
    with pytest.raises(ConfigError, match="otlp_port: 70000"):
        IngestSettings(otlp_port=70000)
