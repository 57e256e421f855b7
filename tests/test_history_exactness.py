"""The history's figures are the exact figures of the events the agents counted, at any step.

Two real agents count known events (durations, failures, untimed ones) under a fake clock; a
real aggregator writes each round to its history (SQLite, then PostgreSQL). Rounds come every
second, then every ten minutes for two days, then every second again. The store's rate, error
rate, mean, p50, p95, p99 and maximum, read from each tier at 1 s, 1 min, 1 h and 1 day steps,
are compared with the same figures computed from the events themselves (each event belongs to
the round that reported it): counts and rates equal, quantiles within the buckets' stated
error, the maximum within its bucket.
"""

from __future__ import annotations

import math
import random

from aggregator._history import HistoryReader, Sample, SeriesKey, Tier, evaluate_range
from aggregator._history.samples import time_ms_of
from tests.history_backends import HistoryBackend
from tests.history_mesh import (
    EPOCH,
    KINDS,
    ExactWindow,
    Workload,
    agents,
    exact_windows,
    fake_clocks,
    history_server,
    max_within_bucket,
    registry_of,
    run_round,
    tick,
    tracker,
    within_buckets,
    writer_of,
)

SERVICES = ("orders-api", "billing-api")
SECOND, MINUTE, HOUR, DAY = 1000, 60_000, 3_600_000, 86_400_000
SCHEDULE = [1.0] * 150 + [600.0] * 300 + [1.0] * 150
"""Seconds between rounds: 2.5 min of 1 s rounds, 50 h of 10 min ones, 2.5 min of 1 s ones."""


def feed(work: Workload, rng: random.Random) -> None:
    for service in SERVICES:
        for kind in KINDS:
            for _ in range(rng.randrange(0, 6)):
                seconds = None
                if rng.random() < 0.8:
                    seconds = min(50.0, max(1e-4, rng.lognormvariate(math.log(0.04), 1.2)))
                work.feed(service, kind, seconds, error=rng.random() < 0.15)


def check_figures(
    samples: dict[SeriesKey, list[Sample]],
    expected: dict[int, ExactWindow],
    start: int,
    end: int,
    step: int,
) -> int:
    """Compare every figure of `samples` (summed) with `expected`; returns the windows checked."""

    def points(figure: str) -> dict[int, float]:
        return dict(evaluate_range(samples, figure, start, end, step))

    events, rate, error_rate = points("events"), points("events_per_second"), points("error_rate")
    quantiles = {q: points(f"latency_p{q}_ms") for q in (50, 95, 99)}
    mean, top = points("latency_avg_ms"), points("latency_max_ms")
    assert {t for t, value in events.items() if value} == set(expected)
    for t, window in expected.items():
        assert events[t] == window.events
        assert rate[t] == window.events / (step / 1000)
        assert error_rate[t] == window.errors / window.events
        if window.durations:
            for q, found in quantiles.items():
                assert within_buckets(found[t], window.quantile(q / 100)), (t, q)
            exact_mean = sum(window.durations) / len(window.durations) * 1000
            assert math.isclose(mean[t], exact_mean, rel_tol=1e-6)
            assert max_within_bucket(top[t], max(window.durations))
        else:
            assert t not in quantiles[50] and t not in mean and t not in top
    return len(expected)


async def test_figures_from_the_store_are_exact_at_every_step_and_tier(
    history_backend: HistoryBackend,
) -> None:
    monotonic, wall, clocks = fake_clocks()
    rng = random.Random(17)
    trackers = {name: tracker(name, monotonic, wall) for name in SERVICES}
    work = Workload(trackers)
    async with (
        agents(list(trackers.values())) as servers,
        history_server(registry_of(servers), history_backend, clocks) as server,
    ):
        for gap in SCHEDULE:
            tick(monotonic, wall, gap / 2)
            feed(work, rng)
            tick(monotonic, wall, gap / 2)
            feed(work, rng)
            work.reported_at(time_ms_of((await run_round(server)).take_time))
        writer = writer_of(server)
        assert writer.status().dropped_rounds == 0
        now = int(wall() * 1000)
        checked = 0
        for tier in writer.reader.tiers:
            for step in (SECOND, MINUTE, HOUR, DAY):
                if step % tier.resolution_ms or (tier.resolution_ms == SECOND and step == DAY):
                    continue
                checked += check_tier(writer.reader, work, tier, step, now)
    assert checked > 1000


def check_tier(reader: HistoryReader, work: Workload, tier: Tier, step: int, now: int) -> int:
    """Every kind, every service and the fleet, over what the tier keeps, at `step`."""
    oldest = max(int(EPOCH * 1000), now - tier.retention_ms)
    start = -(-oldest // step) * step + step
    end = -(-now // step) * step
    keys = [SeriesKey(service, kind) for service in SERVICES for kind in KINDS]
    read = reader.read(keys, tier, start - step, end)
    checked = 0
    groups = [[key] for key in keys] + [[k for k in keys if k.service == s] for s in SERVICES]
    for group in [*groups, keys]:
        wanted = set(group)
        expected = exact_windows(
            work.reported,
            start,
            end,
            step,
            lambda e, wanted=wanted: SeriesKey(e.service, e.kind) in wanted,
        )
        samples = {key: read.get(key, []) for key in group}
        checked += check_figures(samples, expected, start, end, step)
    return checked
