"""Figures over a range from samples: windows, no point without data, merged buckets.

A kind has a sample only in the rounds its totals moved; its service's samples say in which
rounds it answered: an idle window counts 0 events, a window in which it never answered has
no point (the end-to-end case is in test_history_rollups.py).
"""

from __future__ import annotations

import pytest

from aggregator._history import (
    HistoryQueryError,
    KindSample,
    Point,
    ServiceSample,
    evaluate_instant,
    evaluate_latest,
    evaluate_range,
)
from mesh_common.latency import index_of, representative
from mesh_common.status import ServiceStatus


def timed(time_ms: int, durations: list[float], errors: int = 0, untimed: int = 0) -> KindSample:
    counts: dict[int, int] = {}
    for seconds in durations:
        counts[index_of(seconds)] = counts.get(index_of(seconds), 0) + 1
    indexes = tuple(sorted(counts))
    return KindSample(
        time_ms,
        len(durations) + untimed,
        errors,
        indexes,
        tuple(counts[i] for i in indexes),
        round(sum(durations) * 1e9),
        round(max(durations) * 1e9) if durations else None,
    )


def test_each_point_covers_the_step_that_ends_at_it_and_empty_windows_have_none() -> None:
    samples = [timed(1_000, [0.1]), timed(2_000, [0.1, 0.1]), timed(5_000, [0.3], untimed=1)]
    points = evaluate_range([samples], "events_per_second", 2_000, 6_000, 2_000)
    # (0, 2] holds 1 + 2 events, (2, 4] nothing (no point), (4, 6] 2 events.
    assert points == [Point(2_000, 1.5), Point(6_000, 1.0)]
    assert evaluate_range([samples], "events", 2_000, 6_000, 2_000) == [
        Point(2_000, 3.0),
        Point(6_000, 2.0),
    ]


def test_an_error_rate_needs_events_and_a_latency_needs_timed_events() -> None:
    idle = KindSample(1_000, 0, 0, (), (), 0, None)
    untimed = KindSample(2_000, 4, 1, (), (), 0, None)
    assert evaluate_range([[idle]], "events_per_second", 1_000, 1_000, 1_000) == [Point(1_000, 0)]
    assert evaluate_range([[idle]], "error_rate", 1_000, 1_000, 1_000) == []
    assert evaluate_range([[untimed]], "error_rate", 2_000, 2_000, 1_000) == [Point(2_000, 0.25)]
    for figure in ("latency_p99_ms", "latency_avg_ms", "latency_max_ms"):
        assert evaluate_range([[untimed]], figure, 2_000, 2_000, 1_000) == []


def test_a_fleet_quantile_comes_from_merged_buckets_not_from_averaged_percentiles() -> None:
    fast = [timed(1_000, [0.010] * 99)]
    slow = [timed(1_000, [2.0] * 3)]
    (point,) = evaluate_range([fast, slow], "latency_p95_ms", 1_000, 1_000, 1_000)
    # 102 durations: rank ceil(0.95 * 102) = 97 is a fast one; an average of the two p95s
    # would say about 1 s.
    assert point.value == pytest.approx(representative(index_of(0.010)) * 1000)
    (top,) = evaluate_range([fast, slow], "latency_max_ms", 1_000, 1_000, 1_000)
    assert top.value == 2000.0


def test_service_figures_read_the_service_samples() -> None:
    up = ServiceSample(1_000, 1, 1, ServiceStatus.ACTIVE, 1, 2_000_000, 12_500, 1)
    down = ServiceSample(2_000, 1, 0, ServiceStatus.INACTIVE, 1, 300_000_000, 0, 0)
    samples = [[up, down]]
    assert evaluate_range(samples, "status", 2_000, 2_000, 2_000) == [Point(2_000, 0.0)]
    assert evaluate_range(samples, "status", 1_000, 2_000, 1_000)[0] == Point(1_000, 1.0)
    assert evaluate_range(samples, "availability", 2_000, 2_000, 2_000) == [Point(2_000, 0.5)]
    assert evaluate_range(samples, "call_latency_ms", 2_000, 2_000, 2_000) == [Point(2_000, 151.0)]
    assert evaluate_range(samples, "cpu_usage_percent", 2_000, 2_000, 2_000) == [Point(2_000, 12.5)]
    assert evaluate_range(samples, "events", 2_000, 2_000, 2_000) == []  # no kind sample


def test_instant_is_the_window_ending_at_the_time_and_latest_the_newest_sample() -> None:
    samples = {"a": [timed(t, [0.1] * (t // 1000)) for t in range(1_000, 61_000, 1_000)]}
    assert evaluate_instant(samples, "events", 60_000) == Point(60_000, sum(range(1, 61)))
    assert evaluate_instant(samples, "events", 10_000, 2_000) == Point(10_000, 19.0)
    assert evaluate_latest(samples, "events_per_second", 1_000) == Point(60_000, 60.0)
    assert evaluate_latest(samples, "status", 1_000) is None


@pytest.mark.parametrize(
    ("figure", "start", "end", "step", "field"),
    [
        ("events_per_minute", 0, 1, 1, "query"),
        ("events", 0, 1000, 0, "step"),
        ("events", 5000, 1000, 1000, "end_time"),
    ],
)
def test_a_bad_query_names_its_parameter(
    figure: str, start: int, end: int, step: int, field: str
) -> None:
    with pytest.raises(HistoryQueryError) as caught:
        evaluate_range([], figure, start, end, step)
    assert caught.value.field == field


def test_an_idle_window_counts_0_and_a_window_without_an_answer_has_no_point() -> None:
    answered = ServiceSample(1_000, 1, 1, ServiceStatus.ACTIVE, 1, 2_000_000, 0, 1, answered=1)
    down = ServiceSample(2_000, 1, 0, ServiceStatus.INACTIVE, 1, 2_000_000, 0, 0, answered=0)
    back = ServiceSample(3_000, 1, 1, ServiceStatus.ACTIVE, 1, 2_000_000, 0, 1, answered=1)
    busy = timed(3_000, [0.1, 0.2], errors=1)
    series = [[busy], [answered, down, back]]  # the kind's samples and its service's
    # (0, 1]: answered, no event: 0; (1, 2]: no answer: no point; (2, 3]: the events.
    assert evaluate_range(series, "events", 1_000, 3_000, 1_000) == [
        Point(1_000, 0.0),
        Point(3_000, 2.0),
    ]
    assert evaluate_range(series, "errors_per_second", 1_000, 3_000, 1_000) == [
        Point(1_000, 0.0),
        Point(3_000, 1.0),
    ]
    for undefined in ("error_rate", "latency_p99_ms", "latency_avg_ms", "latency_max_ms"):
        assert [p.time_ms for p in evaluate_range(series, undefined, 1_000, 3_000, 1_000)] == [
            3_000
        ]
    assert evaluate_latest([[answered]], "events_per_second", 1_000) == Point(1_000, 0.0)
    assert evaluate_latest([[down]], "events_per_second", 1_000) is None
