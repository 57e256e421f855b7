"""The hourly summary: the 1 h tier the store adds after the configured ones answers a range at
a step of whole hours exactly as the 5 min tier does, on each backend.

The recorder (the writer's worker, without its thread) is fed rounds of real trackers under a
fake clock, four days of 5 min rounds restarted in the middle, so the summary has final
chunks, a partial one and samples still rolled up on read. A store written before the summary
existed fills it from its first seal on: a range before that reads the 5 min tier.
"""

from __future__ import annotations

import random

from aggregator._history import SeriesKey, evaluate_range, parse_tiers
from aggregator._history.engine import QueryEngine, QueryLimits
from aggregator._history.memory import OpenChunks
from aggregator._history.reader import HistoryReader
from aggregator._history.recorder import Recorder
from aggregator._history.tiers import DEFAULT_TIERS
from tests.clocks import FakeClock
from tests.history_backends import HistoryBackend
from tests.history_mesh import KINDS, fake_clocks, tracker
from tests.test_history_rollups import EVERYTHING, KEYS, SERVICES, play, summed

HOUR = 3_600_000
TIERS = parse_tiers(DEFAULT_TIERS, summary=True)
FIVE, SUMMARY = TIERS[2], TIERS[3]
FIGURES = (
    "events_per_second", "error_rate", "latency_avg_ms", "latency_p50_ms", "latency_p99_ms",
    "latency_max_ms", "events", "status", "availability", "call_latency_ms",
)  # fmt: skip


def recorder_for(
    backend: HistoryBackend,
    monotonic: FakeClock,
    tiers: tuple = TIERS,  # type: ignore[type-arg]
) -> tuple[Recorder, HistoryReader]:
    memory = OpenChunks(tiers)
    recorder = Recorder(backend.opener(tiers), memory, buffer_rounds=300, monotonic=monotonic)
    recorder.open()
    assert recorder.degraded == ""
    return recorder, HistoryReader(memory)


def answers(reader: HistoryReader, tier_text: str, start: int, end: int, step: int) -> dict:  # type: ignore[type-arg]
    """Every figure of every service (its kinds summed) and of each kind, from one tier."""
    (tier,) = [tier for tier in reader.tiers if tier.text == tier_text]
    samples = reader.read(KEYS, tier, start - step, end)
    found = {}
    for service in SERVICES:
        own = samples.get(SeriesKey(service, ""), [])
        for kind in (*KINDS, None):
            kinds = KINDS if kind is None else (kind,)
            lists = [samples.get(SeriesKey(service, each), []) for each in kinds] + [own]
            for figure in FIGURES:
                points = evaluate_range(lists, figure, start, end, step)
                found[service, kind, figure] = points
    return found


def test_the_hourly_summary_answers_as_the_5_minute_tier(history_backend: HistoryBackend) -> None:
    monotonic, wall, _ = fake_clocks()
    rng = random.Random(17)
    trackers = [tracker(name, monotonic, wall) for name in SERVICES]
    recorder, _ = recorder_for(history_backend, monotonic)
    play(recorder, trackers, (monotonic, wall), 600, 300.0, rng)  # 50 h
    recorder.finish()  # a restart: the summary's state comes back from the store
    recorder, reader = recorder_for(history_backend, monotonic)
    play(recorder, trackers, (monotonic, wall), 560, 300.0, rng)  # 46 h 40 min more
    five = reader.read(KEYS, FIVE, *EVERYTHING)
    hourly = reader.read(KEYS, SUMMARY, *EVERYTHING)
    for key in KEYS:
        assert hourly[key] == summed(five[key], HOUR), key
    store = recorder.store
    assert store is not None and {t.tier for t in store.size().tiers} >= {SUMMARY.key}
    now = int(wall() * 1000) // HOUR * HOUR
    for step in (HOUR, 3 * HOUR):
        start = now - 90 * HOUR
        from_summary = answers(reader, "1h:90d", start, now, step)
        assert from_summary == answers(reader, "5m:90d", start, now, step)
        assert sum(len(points) for points in from_summary.values()) > 1000
    recorder.finish()


def test_a_store_from_before_the_summary_answers_from_the_5_minute_tier_until_it_holds(
    history_backend: HistoryBackend,
) -> None:
    monotonic, wall, _ = fake_clocks()
    rng = random.Random(23)
    trackers = [tracker(name, monotonic, wall) for name in SERVICES]
    recorder, _ = recorder_for(history_backend, monotonic, parse_tiers(DEFAULT_TIERS))
    play(recorder, trackers, (monotonic, wall), 300, 300.0, rng)  # 25 h without a summary
    recorder.finish()
    recorder, reader = recorder_for(history_backend, monotonic)
    since = reader.held_from_ms(SUMMARY)
    assert since > EVERYTHING[0] and since % HOUR == 0
    play(recorder, trackers, (monotonic, wall), 300, 300.0, rng)  # 25 h with one
    engine = QueryEngine(reader, QueryLimits(), wall=wall)
    now = int(wall() * 1000) // HOUR * HOUR
    query = 'latency_p99_ms{kind=""}'
    before = engine.query_range(query, now - 48 * HOUR, now, HOUR)
    assert {answer.tier.text for answer in before.series} == {"5m:90d"}
    held = engine.query_range(query, since + HOUR, now, HOUR)
    assert {answer.tier.text for answer in held.series} == {"1h:90d"}
    tail = [(a.labels, [p for p in a.points if p.time_ms >= since + HOUR]) for a in before.series]
    assert [(a.labels, a.points) for a in held.series] == tail
    recorder.finish()
    recorder, reader = recorder_for(history_backend, monotonic)  # remembered after a restart
    assert reader.held_from_ms(SUMMARY) == since
    recorder.finish()


def test_a_query_asked_again_answers_as_a_fresh_engine_while_rounds_come_and_expire(
    history_backend: HistoryBackend,
) -> None:
    # The engine keeps final windows (window_cache.py) and decoded chunks (decoded.py): the
    # same query after more rounds, seals and expiries must equal a new engine's answer.
    monotonic, wall, _ = fake_clocks()
    rng = random.Random(29)
    trackers = [tracker(name, monotonic, wall) for name in SERVICES]
    tiers = parse_tiers(["1s:1h", "1m:6h", "5m:2d"], summary=True)
    memory = OpenChunks(tiers)
    opener = history_backend.opener(tiers)
    recorder = Recorder(opener, memory, buffer_rounds=300, monotonic=monotonic)
    recorder.open()
    kept = QueryEngine(HistoryReader(memory), QueryLimits(), wall=wall)
    queries = [
        (figure, span, step)
        for figure in ('latency_p99_ms{kind=""}', "events_per_second", "availability")
        for span, step in ((3 * 86_400_000, HOUR), (86_400_000, 300_000), (5 * HOUR, 60_000))
    ]
    for rounds in (400, 300, 250, 600, 30):  # 33 h, then on past the 2-day retention
        play(recorder, trackers, (monotonic, wall), rounds, 300.0, rng)
        play(recorder, trackers, (monotonic, wall), 5, 1.0, rng)  # a few rounds in the head
        now = int(wall() * 1000)
        fresh = QueryEngine(HistoryReader(memory), QueryLimits(), wall=wall)
        for query, span, step in queries:
            start = (now - span) // step * step + 12_345  # not on the tier's boundaries
            for _ in range(2):  # the second time from what the first kept
                answer = kept.query_range(query, start, now, step)
                assert answer == fresh.query_range(query, start, now, step), (query, step)
                assert answer.series
    recorder.finish()
