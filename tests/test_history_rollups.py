"""The coarse tiers hold the exact sums of the finest one; retention deletes what expired; an
idle minute counts 0 events in every tier, a minute without an answer has no point.

The recorder (the writer's worker, without its thread) is fed rounds of real trackers under a
fake clock: 30 minutes of 1 s rounds, then 12 hours of 20 s rounds, restarted in the middle.
Every 1 min and 5 min sample must be the sum of the 1 s samples it covers, computed here
independently (counts add, buckets merge, the largest maximum, the last status), whether it
was sealed, is in a partial chunk, or is still rolled up on read. Each backend in turn.
"""

from __future__ import annotations

import random
from collections import Counter

from agent import EventTracker
from aggregator._history import KindSample, SeriesKey, ServiceSample, evaluate_range, parse_tiers
from aggregator._history.memory import OpenChunks
from aggregator._history.reader import HistoryReader
from aggregator._history.recorder import Recorder
from aggregator._history.tiers import DEFAULT_TIERS
from tests.clocks import FakeClock
from tests.history_backends import HistoryBackend
from tests.history_mesh import KINDS, fake_clocks, tick, tracker, wire_snapshot

TIERS = parse_tiers(DEFAULT_TIERS)
SERVICES = ("orders-api", "billing-api")
KEYS = [SeriesKey(s, k) for s in SERVICES for k in KINDS] + [SeriesKey(s, "") for s in SERVICES]
EVERYTHING = (-(2**62), 2**62)


def recorder_for(backend: HistoryBackend, monotonic: FakeClock) -> tuple[Recorder, HistoryReader]:
    memory = OpenChunks(TIERS)
    recorder = Recorder(backend.opener(), memory, buffer_rounds=300, monotonic=monotonic)
    recorder.open()
    assert recorder.degraded == ""
    return recorder, HistoryReader(memory)


def play(
    recorder: Recorder,
    trackers: list[EventTracker],
    clocks: tuple[FakeClock, FakeClock],
    rounds: int,
    gap: float,
    rng: random.Random,
) -> None:
    monotonic, wall = clocks
    for _ in range(rounds):
        tick(monotonic, wall, gap)
        for each in trackers:
            for kind in KINDS:
                for _ in range(rng.randrange(4)):
                    each.observe(kind, rng.uniform(0.0005, 3.0), error=rng.random() < 0.2)
        answered = [rng.random() > 0.05 for _ in trackers]  # now and then a round without
        recorder.record(wire_snapshot(wall(), trackers, answered=answered))
        assert recorder.degraded == ""


def summed(fine: list, resolution: int) -> list:  # type: ignore[type-arg]
    """The fine samples summed per `(T - resolution, T]`, written out independently."""
    groups: dict[int, list] = {}  # type: ignore[type-arg]
    for sample in fine:
        groups.setdefault(-(-sample.time_ms // resolution) * resolution, []).append(sample)
    result = []
    for end, group in sorted(groups.items()):
        if isinstance(group[0], KindSample):
            buckets: Counter[int] = Counter()
            for sample in group:
                buckets.update(dict(zip(sample.bucket_indexes, sample.bucket_counts, strict=True)))
            maxima = [s.latency_max_ns for s in group if s.latency_max_ns is not None]
            result.append(
                KindSample(
                    end,
                    sum(s.events for s in group),
                    sum(s.errors for s in group),
                    tuple(sorted(buckets)),
                    tuple(buckets[i] for i in sorted(buckets)),
                    sum(s.latency_sum_ns for s in group),
                    max(maxima) if maxima else None,
                )
            )
        else:
            result.append(
                ServiceSample(
                    end,
                    sum(s.rounds for s in group),
                    sum(s.active_rounds for s in group),
                    group[-1].status,
                    sum(s.calls for s in group),
                    sum(s.call_ns for s in group),
                    sum(s.cpu_milli for s in group),
                    sum(s.cpu_count for s in group),
                    sum(s.answered for s in group),
                )
            )
    return result


def test_the_1m_and_5m_tiers_hold_the_exact_sums_of_the_1s_tier(
    history_backend: HistoryBackend,
) -> None:
    monotonic, wall, _ = fake_clocks()
    rng = random.Random(5)
    trackers = [tracker(name, monotonic, wall) for name in SERVICES]
    recorder, _ = recorder_for(history_backend, monotonic)
    play(recorder, trackers, (monotonic, wall), 1800, 1.0, rng)
    play(recorder, trackers, (monotonic, wall), 1000, 20.0, rng)
    recorder.finish()  # a restart: the state comes back from the file
    recorder, reader = recorder_for(history_backend, monotonic)
    play(recorder, trackers, (monotonic, wall), 1160, 20.0, rng)
    fine = reader.read(KEYS, TIERS[0], *EVERYTHING)
    for tier in TIERS[1:]:
        coarse = reader.read(KEYS, tier, *EVERYTHING)
        for key in KEYS:
            assert coarse[key] == summed(fine[key], tier.resolution_ms), (tier.text, key)
    size = recorder.store.size() if recorder.store else None
    assert size is not None
    assert {t.tier for t in size.tiers} == {1000, 60_000, 300_000}  # final coarse chunks too
    recorder.finish()


def test_retention_deletes_expired_chunks_of_each_tier_and_keeps_the_rest(
    history_backend: HistoryBackend,
) -> None:
    monotonic, wall, _ = fake_clocks()
    rng = random.Random(9)
    trackers = [tracker(name, monotonic, wall) for name in SERVICES]
    recorder, reader = recorder_for(history_backend, monotonic)
    play(recorder, trackers, (monotonic, wall), 600, 1.0, rng)  # 10 min of 1 s rounds
    first_day = reader.read(KEYS, TIERS[0], *EVERYTHING)
    assert sum(len(samples) for samples in first_day.values()) > 2800
    play(recorder, trackers, (monotonic, wall), 160, 600.0, rng)  # 26 h later
    now = int(wall() * 1000)
    store = recorder.store
    assert store is not None
    fine = list(store.chunks(TIERS[0].key, range(1, 7), *EVERYTHING))
    assert fine and min(chunk.end_ms for chunk in fine) >= now - TIERS[0].retention_ms
    minutes = reader.read(KEYS, TIERS[1], *EVERYTHING)
    # The 1 s rounds of the first ten minutes are gone from the 1 s tier, kept in the 1 m one.
    assert min(s.time_ms for s in reader.read(KEYS, TIERS[0], *EVERYTHING)[KEYS[0]]) >= (
        now - TIERS[0].retention_ms
    )
    assert sum(s.events for s in minutes[KEYS[0]][:10]) == sum(s.events for s in first_day[KEYS[0]])
    recorder.finish()


def test_a_minute_without_events_counts_0_and_a_minute_without_an_answer_has_no_point(
    history_backend: HistoryBackend,
) -> None:
    monotonic, wall, _ = fake_clocks()
    orders = tracker("orders-api", monotonic, wall)
    recorder, reader = recorder_for(history_backend, monotonic)
    start = int(wall() * 1000)
    for second in range(1, 241):  # minute 1 busy then idle, minute 2 down, 3 and 4 idle
        tick(monotonic, wall, 1.0)
        if second in (1, 90):  # the events of second 90 wait in the agent until it is back
            orders.record("api_call", n=5 if second == 1 else 7)
        answered = not 60 < second <= 120
        recorder.record(wire_snapshot(wall(), [orders], answered=[answered]))
    keys = [SeriesKey("orders-api", "api_call"), SeriesKey("orders-api", "")]
    for tier, step in ((TIERS[0], 60_000), (TIERS[1], 60_000), (TIERS[0], 1000)):
        samples = reader.read(keys, tier, start, start + 240_000)
        points = evaluate_range(samples, "events", start + step, start + 240_000, step)
        counts = {(point.time_ms - start) // 1000: point.value for point in points}
        if step == 1000:
            assert counts[1] == 5 and counts[121] == 7 and counts[60] == counts[240] == 0
            assert not any(61 <= second <= 120 for second in counts)  # down: no point
            assert len(counts) == 180
        else:
            assert counts == {60: 5, 180: 7, 240: 0}, tier.text
        # The kind's samples alone: a point only where it moved.
        alone = evaluate_range([samples[keys[0]]], "events", start + step, start + 240_000, step)
        assert [point.value for point in alone] == [5, 7]
    recorder.finish()
