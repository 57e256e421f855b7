"""Errors and latency: the bucket scheme's bound, exact merging, ageing, no data is not zero."""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import pytest
from ddsketch import DDSketch

from agent import EventTracker
from agent._convert import reading_to_response
from aggregator._fanout import parse_figures
from aggregator._fold import Backoff, RoundTimes, fold_round
from aggregator._model import CallResult, Health, Outcome
from mesh_common import latency
from mesh_common.registry import Registry, ServiceEntry
from tests.clocks import FakeClock

WALL = 1_700_000_000.0


def tracker_at(clock: FakeClock, name: str = "svc") -> EventTracker:
    return EventTracker(name, clock=clock, wall_clock=FakeClock(WALL))


def exact(values: list[float], q: float) -> float:
    """The nearest-rank q-quantile: the value of rank ceil(q * n)."""
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


DISTRIBUTIONS: dict[str, Callable[[random.Random], float]] = {
    "uniform": lambda rng: rng.uniform(0.001, 0.5),
    "log-normal": lambda rng: rng.lognormvariate(math.log(0.02), 1.2),
    "bimodal": lambda rng: rng.gauss(0.005, 0.001) if rng.random() < 0.9 else rng.gauss(1.5, 0.2),
}


@pytest.mark.parametrize("name", sorted(DISTRIBUTIONS))
def test_every_quantile_is_within_the_stated_relative_error(name: str, clock: FakeClock) -> None:
    rng = random.Random(name)
    values = [max(2e-5, DISTRIBUTIONS[name](rng)) for _ in range(20_000)]
    tracker = tracker_at(clock)
    sketch = DDSketch(relative_accuracy=latency.RELATIVE_ERROR)
    for value in values:
        tracker.observe("call", value)
        sketch.add(value)
        clock.tick(0.001)  # 20 s in all: everything is in the window
    histogram = tracker.read().latency
    assert histogram is not None and histogram.count == len(values)
    assert latency.RELATIVE_ERROR <= 0.05
    for q in (0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 1.0):
        truth = exact(values, q)
        ours = histogram.quantile(q)
        assert ours is not None
        assert abs(ours - truth) <= latency.RELATIVE_ERROR * truth * (1 + 1e-9), (q, ours, truth)
        # An independent implementation of the same guarantee agrees within both bounds.
        theirs = sketch.get_quantile_value(q)
        assert abs(ours - theirs) <= 2.2 * latency.RELATIVE_ERROR * truth, (q, ours, theirs)
    assert histogram.max_seconds == max(values)
    assert histogram.mean_seconds == pytest.approx(sum(values) / len(values), rel=1e-9)


def test_merging_two_agents_buckets_equals_one_fed_both_streams(clock: FakeClock) -> None:
    rng = random.Random(7)
    one, two, both = tracker_at(clock, "a"), tracker_at(clock, "b"), tracker_at(clock, "c")
    for _ in range(5000):
        first, second = rng.expovariate(20), rng.lognormvariate(-4, 2)
        one.observe("x", first)
        two.observe("y", second)
        both.observe("x", first)
        both.observe("y", second)
        clock.tick(0.002)
    merged = latency.merge([one.read().latency, two.read().latency])  # type: ignore[list-item]
    together = both.read().latency
    assert together is not None
    assert (merged.offset, merged.counts) == (together.offset, together.counts)
    assert merged.max_seconds == together.max_seconds
    assert merged.sum_seconds == pytest.approx(together.sum_seconds, rel=1e-12)


def test_a_services_quantiles_come_from_its_kinds_merged_buckets(clock: FakeClock) -> None:
    tracker = tracker_at(clock)
    for _ in range(990):
        tracker.observe("fast", 0.010)
    for _ in range(10):
        tracker.observe("slow", 2.0)
    reading = tracker.read()
    fast, slow = reading.kinds
    assert reading.latency is not None and fast.latency is not None and slow.latency is not None
    # 1 % of the service's events are slow: its p99 is a fast one, its p99.9 a slow one. An
    # average of the kinds' p99s (about 1 s) would describe no request at all.
    assert reading.latency.quantile(0.99) == pytest.approx(0.010, rel=latency.RELATIVE_ERROR)
    assert reading.latency.quantile(0.999) == pytest.approx(2.0, rel=latency.RELATIVE_ERROR * 1.001)
    assert reading.latency.max_seconds == 2.0
    assert reading.latency.mean_seconds == pytest.approx((990 * 0.010 + 10 * 2.0) / 1000)


def test_error_rate_is_errors_over_events_and_none_without_events(clock: FakeClock) -> None:
    tracker = tracker_at(clock)
    assert tracker.read().error_rate is None
    api = tracker.counter("api")
    for index in range(200):
        api.observe(0.01, error=index % 20 == 0)
    api.record(n=50)  # untimed events count in the rate's denominator too
    tracker.counter("batch").record_error(n=5)
    reading = tracker.read()
    assert (reading.window_events, reading.window_errors) == (255, 15)
    assert reading.error_rate == pytest.approx(15 / 255)
    by_kind = {kind.kind: kind for kind in reading.kinds}
    assert by_kind["api"].error_rate == pytest.approx(10 / 250)
    assert by_kind["batch"].error_rate == 1.0
    clock.tick(61)
    later = tracker.read()
    assert later.error_rate is None and later.window_errors == 0
    assert later.total_errors == 15  # since start, for Prometheus


def test_no_timed_event_means_no_latency_not_zero(clock: FakeClock) -> None:
    tracker = tracker_at(clock)
    tracker.record("untimed", n=10)
    reading = tracker.read()
    assert reading.latency is None and reading.kinds[0].latency is None
    response = reading_to_response(reading)
    assert not response.HasField("latency")
    assert not response.kinds[0].HasField("latency")


def test_a_slow_minute_then_a_fast_minute_reads_fast(clock: FakeClock) -> None:
    tracker = tracker_at(clock)
    for _ in range(600):  # one slow minute: 10 calls a second of 2 s
        tracker.observe("call", 2.0)
        clock.tick(0.1)
    slow = tracker.read().latency
    assert slow is not None and slow.quantile(0.5) == pytest.approx(2.0, rel=0.03)
    for _ in range(600):  # then one fast minute of 5 ms
        tracker.observe("call", 0.005)
        clock.tick(0.1)
    fast = tracker.read()
    assert fast.latency is not None
    assert fast.latency.quantile(0.99) == pytest.approx(0.005, rel=0.03)
    assert fast.latency.max_seconds == pytest.approx(0.005)
    assert fast.kinds[0].latency_since_start is not None
    assert fast.kinds[0].latency_since_start.count == 1200  # since start keeps both minutes
    clock.tick(61)
    assert tracker.read().latency is None  # an idle minute: no data, not zero


def test_durations_outside_the_range_are_clamped_and_counted(clock: FakeClock) -> None:
    tracker = tracker_at(clock)
    for seconds in (0.0, 1e-9, -1.0, 3600.0, float("nan")):
        tracker.observe("odd", seconds)
    histogram = tracker.read().latency
    assert histogram is not None and histogram.count == 5
    assert histogram.offset == latency.MIN_INDEX
    assert histogram.offset + len(histogram.counts) - 1 == latency.MAX_INDEX


def test_the_fleets_figures_come_from_the_active_services_merged_buckets(
    clock: FakeClock,
) -> None:
    registry = Registry(
        ServiceEntry(name, "127.0.0.1", 8000 + index, 9000 + index, "core")
        for index, name in enumerate(("busy", "slow", "down"))
    )
    trackers = {entry.name: tracker_at(clock, entry.name) for entry in registry}
    for index in range(900):
        trackers["busy"].observe("api", 0.004, error=index % 100 == 0)
    for _ in range(100):
        trackers["slow"].observe("api", 3.0, error=True)
    for _ in range(1000):
        trackers["down"].observe("api", 60.0, error=True)  # not active: must not count
    outcomes = {}
    for entry in registry:
        answer = reading_to_response(trackers[entry.name].read()).SerializeToString()
        health = Health.NOT_SERVING if entry.name == "down" else Health.SERVING
        outcomes[entry.name] = Outcome(CallResult.OK, health, 0.001, figures=parse_figures(answer))
    snapshot, _ = fold_round(
        registry, outcomes, {}, RoundTimes(1, WALL, 0.0, 0.01), Backoff(1.0, 30.0)
    )
    assert (snapshot.window_events, snapshot.window_errors) == (1000, 9 + 100)
    assert snapshot.latency is not None
    assert snapshot.latency.count == 1000
    assert snapshot.latency.quantile(0.5) == pytest.approx(0.004, rel=latency.RELATIVE_ERROR)
    assert snapshot.latency.quantile(0.95) == pytest.approx(3.0, rel=latency.RELATIVE_ERROR)
    assert snapshot.latency.max_seconds == 3.0


def test_the_wire_summary_states_its_bound_and_carries_mergeable_buckets(
    clock: FakeClock,
) -> None:
    tracker = tracker_at(clock)
    for index in range(100):
        tracker.observe("api", 0.001 * (index + 1))
    response = reading_to_response(tracker.read())
    summary = response.latency
    assert summary.relative_error == pytest.approx(latency.RELATIVE_ERROR)
    assert summary.histogram.scale == latency.SCALE
    assert summary.histogram.count == 100
    again = latency.from_proto(summary.histogram)
    assert again.quantile(0.95) == pytest.approx(summary.p95.ToNanoseconds() / 1e9, abs=1e-9)
    assert summary.max.ToNanoseconds() == 100_000_000
    since = response.kinds[0].latency_since_start
    assert since.count == 100 and sum(since.bucket_counts) == 100
