"""A round's rows become samples: increases of the agents' totals, reset-aware; rollups; codec."""

from __future__ import annotations

import struct
import zlib

from hypothesis import given
from hypothesis import strategies as st

from aggregator._history.codec import (
    ServiceColumns,
    columns_of,
    decode_chunk,
    decode_cursor,
    decode_head,
    encode_chunk,
    encode_cursor,
    encode_head,
    pack_ints,
)
from aggregator._history.model import Cursor, KindSample, SeriesKey, ServiceSample
from aggregator._history.samples import (
    RowMemo,
    advance_cursor,
    bucket_increase,
    merge_kind,
    rollup,
    rollup_columns,
    round_samples,
)
from mesh_common.latency import MAX_INDEX, MIN_INDEX, index_of
from mesh_common.status import ServiceStatus
from tests.history_mesh import fake_clocks, tick, tracker, wire_snapshot

API = SeriesKey("orders-api", "api_call")


def test_a_kind_sample_is_what_happened_since_the_last_reading() -> None:
    monotonic, wall, _ = fake_clocks()
    orders = tracker("orders-api", monotonic, wall)
    orders.observe("api_call", 0.010)
    first = round_samples(wire_snapshot(wall(), [orders]), 1000, {})
    assert (first.resets, first.kind_samples[0].events) == ([True], 1)  # new: all of it
    tick(monotonic, wall, 1.0)
    orders.observe("api_call", 0.200, error=True)
    orders.observe("api_call", 0.020)
    orders.record("api_call")  # untimed
    second = round_samples(wire_snapshot(wall(), [orders]), 2000, first.cursors)
    (sample,) = second.kind_samples
    assert second.resets == [False]
    assert (sample.events, sample.errors, sample.timed) == (3, 1, 2)
    assert sample.bucket_indexes == (index_of(0.020), index_of(0.200))
    assert sample.latency_sum_ns == 220_000_000
    assert sample.latency_max_ns == 200_000_000  # the window shows this interval's maximum


def test_an_agent_restart_counts_every_event_of_the_new_lifetime_once() -> None:
    monotonic, wall, _ = fake_clocks()
    before = tracker("orders-api", monotonic, wall)
    before.observe("api_call", 0.5, error=True)
    before.record("api_call", n=9)
    cursors = round_samples(wire_snapshot(wall(), [before]), 1000, {}).cursors
    tick(monotonic, wall, 5.0)
    after = tracker("orders-api", monotonic, wall)  # a new lifetime, with fewer events so far
    after.record("api_call", n=3)
    restarted = round_samples(wire_snapshot(wall(), [after]), 6000, cursors)
    (sample,) = restarted.kind_samples
    assert restarted.resets == [True]
    assert (sample.events, sample.errors, sample.timed) == (3, 0, 0)


def test_a_total_that_goes_down_is_a_reset_even_in_the_same_lifetime() -> None:
    monotonic, wall, _ = fake_clocks()
    orders = tracker("orders-api", monotonic, wall)
    orders.record("api_call", n=2)
    message = wire_snapshot(wall(), [orders])
    cursor = round_samples(message, 1000, {}).cursors[API]
    bigger = {API: cursor._replace(events=50)}
    lower = round_samples(message, 2000, bigger)
    assert lower.resets == [True] and lower.kind_samples[0].events == 2


def test_a_row_without_fresh_figures_has_a_service_sample_and_no_kind_sample() -> None:
    monotonic, wall, _ = fake_clocks()
    orders = tracker("orders-api", monotonic, wall)
    orders.record("api_call")
    samples = round_samples(wire_snapshot(wall(), [orders], answered=[False]), 1000, {})
    assert samples.kind_samples == [] and samples.cursors == {}
    (service,) = samples.service_samples
    assert samples.services == ["orders-api"]
    assert (service.rounds, service.active_rounds, service.status) == (1, 0, "inactive")
    assert (service.calls, service.call_ns, service.cpu_count) == (1, 2_000_000, 0)


def test_replaying_the_increases_rebuilds_the_cursor() -> None:
    monotonic, wall, _ = fake_clocks()
    orders = tracker("orders-api", monotonic, wall)
    cursors: dict[SeriesKey, Cursor] = {}
    replayed: Cursor | None = None
    for step in range(1, 40):
        tick(monotonic, wall, 7.0)
        for k in range(step % 5):
            orders.observe("api_call", 0.001 * 1.3 ** (step + k), error=k == 2)
        if step == 20:  # a restart in the middle
            orders = tracker("orders-api", monotonic, wall)
            orders.record("api_call")
        samples = round_samples(wire_snapshot(wall(), [orders]), step * 7000, cursors)
        cursors.update(samples.cursors)
        for sample, reset in zip(samples.kind_samples, samples.resets, strict=True):
            replayed = advance_cursor(replayed, sample, reset, samples.lifetimes[0])
    assert replayed is not None
    now = cursors[API]
    assert (replayed.lifetime_ns, replayed.events, replayed.errors) == (
        now.lifetime_ns,
        now.events,
        now.errors,
    )
    assert replayed.latency_sum_ns == now.latency_sum_ns
    assert bucket_increase(
        replayed.bucket_offset, replayed.bucket_counts, now.bucket_offset, now.bucket_counts
    ) == ((), ())


def kind(time_ms: int, events: int, buckets: dict[int, int], top: int | None) -> KindSample:
    indexes = tuple(sorted(buckets))
    return KindSample(
        time_ms,
        events,
        events // 3,
        indexes,
        tuple(buckets[i] for i in indexes),
        sum(buckets.values()) * 7,
        top,
    )


def test_a_rollup_adds_counts_merges_buckets_and_keeps_the_largest_maximum() -> None:
    samples = [
        kind(61_000, 4, {-10: 1, -5: 2}, 9_000),
        kind(90_000, 6, {-5: 3, 0: 1}, 30_000),
        kind(120_000, 3, {}, None),  # (60 s, 120 s]: the last one belongs to the same minute
        kind(120_001, 1, {2: 1}, 5),
    ]
    first, second = rollup(samples, 60_000)
    assert first == KindSample(120_000, 13, 4, (-10, -5, 0), (1, 5, 1), 49, 30_000)
    assert second.time_ms == 180_000 and second.events == 1
    assert rollup_columns(columns_of(samples, False), 60_000).samples() == [first, second]
    assert merge_kind(samples[:3], 120_000) == first


def test_a_service_rollup_keeps_the_last_status() -> None:
    active = ServiceSample(1_000, 1, 1, ServiceStatus.ACTIVE, 1, 5, 2_000, 1)
    down = ServiceSample(2_000, 1, 0, ServiceStatus.INACTIVE, 0, 0, 0, 0)
    (rolled,) = rollup([active, down], 60_000)
    assert rolled == ServiceSample(60_000, 2, 1, ServiceStatus.INACTIVE, 1, 5, 2_000, 1)
    assert rollup_columns(columns_of([active, down], True), 60_000).samples() == [rolled]


_buckets = st.dictionaries(st.integers(MIN_INDEX, MAX_INDEX), st.integers(1, 2**40), max_size=20)
_kinds = st.lists(
    st.tuples(
        st.integers(0, 2**62),
        st.integers(0, 2**40),
        _buckets,
        st.one_of(st.none(), st.integers(0, 2**50)),
    ),
    max_size=30,
)


@given(_kinds, st.integers(0, 2**41))
def test_chunks_and_head_rows_give_back_what_was_written(
    raw: list[tuple[int, int, dict[int, int], int | None]], start: int
) -> None:
    samples = [
        kind(start + position * 997, events, buckets, top)._replace(
            events=events, latency_sum_ns=total
        )
        for position, (total, events, buckets, top) in enumerate(raw)
    ]
    if samples:
        assert decode_chunk(encode_chunk(columns_of(samples, False))).samples() == samples
    same_time = [sample._replace(time_ms=start) for sample in samples]
    ids = list(range(1, len(same_time) + 1))
    resets = [i % 2 == 0 for i in ids]
    service = ServiceSample(start, 1, 1, ServiceStatus.ERROR, 0, 0, 0, 0, 1)
    data = encode_head(ids, same_time, resets, [99], columns_of([service], True), [2**62])
    decoded_kinds, decoded_services = decode_head(start, data)
    assert decoded_kinds == list(zip(ids, same_time, resets, strict=True))
    assert decoded_services == [(99, service, 2**62)]


def test_a_cursor_gives_back_what_was_written() -> None:
    cursor = Cursor(1_700_000_000_123_456_789, 2**40, 17, MIN_INDEX + 3, (1, 0, 2**33), 5)
    assert decode_cursor(encode_cursor(cursor)) == cursor


def test_a_kind_that_moved_is_counted_even_when_its_row_totals_did_not() -> None:
    monotonic, wall, _ = fake_clocks()
    orders = tracker("orders-api", monotonic, wall)
    orders.record("api_call", n=4)
    keys: dict[tuple[str, str], SeriesKey] = {}
    memos: dict[str, RowMemo] = {}
    first = wire_snapshot(wall(), [orders])
    orders.record("api_call", n=3)
    tick(monotonic, wall, 1.0)
    second = wire_snapshot(wall(), [orders])
    for message in (first, second):  # rows whose own totals are not the sum of their kinds'
        message.services[0].total_events = message.services[0].total_errors = 0
    cursors = round_samples(first, 1000, {}, keys, memos).cursors
    (sample,) = round_samples(second, 2000, cursors, keys, memos).kind_samples
    assert sample.events == 3


def test_what_version_1_wrote_reads_back_with_answered_0() -> None:
    """A store written before `answered` existed (its kinds have a sample in every answered
    round, so a query answers as it did)."""
    service = ServiceSample(5_000, 1, 1, ServiceStatus.ACTIVE, 1, 5, 2_000, 1, answered=1)
    columns = columns_of([service], True)
    assert isinstance(columns, ServiceColumns)
    version_1 = columns.encode()[: -len(pack_ints(columns.answered))]  # no answered column
    chunk = zlib.compress(struct.pack("<BcIq", 1, b"S", 1, 5_000) + version_1)
    assert decode_chunk(chunk).samples() == [service._replace(answered=0)]
    head = b"".join(
        (
            struct.pack("<BII", 1, 0, 1),
            *(pack_ints([]) for _ in range(9)),  # kind ids, 7 kind columns, resets
            pack_ints([7]),
            columns.encode(times=False)[: -len(pack_ints(columns.answered))],
            pack_ints([123]),
        )
    )
    assert decode_head(5_000, head) == ([], [(7, service._replace(answered=0), 123)])
