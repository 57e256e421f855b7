"""The rolling-window tracker: exact rates, driven by a fake clock (no sleeps)."""

from __future__ import annotations

import sys
import threading
import tracemalloc

import pytest

from agent import EventTracker, KindCounter
from tests.clocks import FakeClock

START = 1000.0  # FakeClock's default start
WALL_START = 1_700_000_000.0


def make_tracker(clock: FakeClock, **kwargs: object) -> EventTracker:
    wall = FakeClock(WALL_START)
    return EventTracker("svc", clock=clock, wall_clock=wall, **kwargs)  # type: ignore[arg-type]


def at(clock: FakeClock, seconds_after_start: float) -> None:
    """Put the clock at an absolute offset from the start (no float drift from many ticks)."""
    clock.now = START + seconds_after_start


def test_steady_1000_per_second_for_a_minute_reads_1000(clock: FakeClock) -> None:
    # The requirement's deque(maxlen=3600) of timestamps would hold only the last 3600 events
    # and divide them by 60: it reads 60 ev/s here. Buckets count every event.
    tracker = make_tracker(clock)
    counter = tracker.counter("api_call")
    for i in range(60_000):
        at(clock, i / 1000)
        counter.record()
    at(clock, 60.0)
    reading = tracker.read()
    assert reading.events_per_second == pytest.approx(1000.0, rel=1e-12)
    assert reading.events_per_hour == pytest.approx(3_600_000.0, rel=1e-12)
    assert reading.total_events == 60_000
    assert reading.window_seconds == 60.0


def test_rate_during_warm_up_divides_by_uptime_not_the_window(clock: FakeClock) -> None:
    tracker = make_tracker(clock)
    for i in range(50):  # 5 ev/s for 10 s
        at(clock, i * 0.2)
        tracker.record("tick")
    at(clock, 10.0)
    reading = tracker.read()
    assert reading.covered_seconds == pytest.approx(10.0)
    assert reading.uptime_seconds == pytest.approx(10.0)
    assert reading.events_per_second == pytest.approx(5.0)
    assert reading.window_events == 50


def test_event_exactly_on_a_bucket_edge_belongs_to_the_later_bucket(clock: FakeClock) -> None:
    tracker = make_tracker(clock)
    at(clock, 1.0)  # the edge between bucket 0 and bucket 1
    tracker.record("edge")
    at(clock, 60.999)  # window = buckets 1..60: bucket 1 still inside
    assert tracker.read().window_events == 1
    at(clock, 61.0)  # window = buckets 2..61: bucket 1 has left
    reading = tracker.read()
    assert reading.window_events == 0
    assert reading.total_events == 1


def test_event_just_before_an_edge_leaves_the_window_one_bucket_earlier(clock: FakeClock) -> None:
    tracker = make_tracker(clock)
    at(clock, 0.999)
    tracker.record("early")
    at(clock, 59.999)
    assert tracker.read().window_events == 1
    at(clock, 60.0)
    assert tracker.read().window_events == 0


@pytest.mark.parametrize(
    ("uptime", "covered"),
    [
        (0.0, 0.0),
        (30.5, 30.5),  # warm-up: the uptime
        (59.75, 59.75),
        (60.0, 59.0),  # 59 full buckets + an empty current one
        (60.25, 59.25),
        (90.999, 59.999),
    ],
)
def test_covered_span_is_the_uptime_then_the_buckets_in_the_window(
    clock: FakeClock, uptime: float, covered: float
) -> None:
    tracker = make_tracker(clock)
    at(clock, uptime)
    assert tracker.read().covered_seconds == pytest.approx(covered, abs=1e-9)


def test_readings_just_before_and_after_a_boundary_are_exact_means(clock: FakeClock) -> None:
    tracker = make_tracker(clock)
    for second in range(120):  # 10 events at the start of every second for 2 minutes
        at(clock, float(second))
        tracker.record("e", 10)
    at(clock, 119.5)  # window = buckets 60..119: 600 events over 59.5 s
    before = tracker.read()
    assert before.window_events == 600
    assert before.events_per_second == pytest.approx(600 / 59.5)
    at(clock, 120.0)  # bucket 60 left, bucket 120 is empty: 590 events over 59 s
    after = tracker.read()
    assert after.window_events == 590
    assert after.events_per_second == pytest.approx(10.0)


def test_idle_service_decays_to_zero_within_one_window(clock: FakeClock) -> None:
    tracker = make_tracker(clock)
    for i in range(3000):  # 100 ev/s for 30 s, then nothing
        at(clock, i / 100)
        tracker.record()
    last_event = 2999 / 100
    at(clock, 45.0)
    assert 0 < tracker.read().events_per_second < 100
    at(clock, last_event + 59.0)
    assert tracker.read().events_per_second > 0
    at(clock, last_event + 60.0)
    reading = tracker.read()
    assert reading.events_per_second == 0.0
    assert reading.window_events == 0
    assert reading.total_events == 3000


def test_events_after_an_idle_gap_longer_than_the_window_count_from_zero(
    clock: FakeClock,
) -> None:
    tracker = make_tracker(clock)
    tracker.record("x", 500)
    at(clock, 300.0)
    tracker.record("x", 3)
    at(clock, 301.0)
    reading = tracker.read()
    assert reading.window_events == 3
    assert reading.total_events == 503
    assert reading.events_per_second == pytest.approx(3 / 59.0)


def test_several_kinds_have_separate_figures_and_a_correct_total(clock: FakeClock) -> None:
    tracker = make_tracker(clock, kinds=["api_call", "data_fetch", "idle"])
    for second in range(20):
        at(clock, float(second))
        tracker.record("api_call", 6)
        tracker.record("data_fetch", 2)
    at(clock, 20.0)
    reading = tracker.read()
    by_kind = {row.kind: row for row in reading.kinds}
    assert [row.kind for row in reading.kinds] == ["api_call", "data_fetch", "idle"]
    assert by_kind["api_call"].events_per_second == pytest.approx(6.0)
    assert by_kind["data_fetch"].events_per_second == pytest.approx(2.0)
    assert by_kind["idle"].events_per_second == 0.0
    assert by_kind["idle"].last_event_time is None
    assert (by_kind["api_call"].total_events, by_kind["data_fetch"].total_events) == (120, 40)
    assert reading.total_events == 160
    assert reading.events_per_second == pytest.approx(8.0)


def test_last_event_time_is_when_the_last_event_happened_not_now(clock: FakeClock) -> None:
    tracker = make_tracker(clock)
    at(clock, 5.0)
    tracker.record("a")
    at(clock, 7.5)
    tracker.record("b")
    at(clock, 25.0)
    reading = tracker.read()
    assert reading.start_time == WALL_START
    assert reading.read_time == pytest.approx(WALL_START + 25.0)
    assert reading.last_event_time == pytest.approx(WALL_START + 7.5)
    lasts = {row.kind: row.last_event_time for row in reading.kinds}
    assert lasts == {"a": pytest.approx(WALL_START + 5.0), "b": pytest.approx(WALL_START + 7.5)}


def test_no_event_yet_reads_zero_and_no_last_event(clock: FakeClock) -> None:
    tracker = make_tracker(clock)
    at(clock, 3.0)
    reading = tracker.read()
    assert (reading.events_per_second, reading.total_events, reading.kinds) == (0.0, 0, ())
    assert reading.last_event_time is None


@pytest.mark.parametrize("n", [0, -1, -1000])
def test_record_of_fewer_than_one_event_is_refused(clock: FakeClock, n: int) -> None:
    tracker = make_tracker(clock)
    counter = tracker.counter("x")
    with pytest.raises(ValueError, match="n must be >= 1"):
        counter.record(n)
    with pytest.raises(ValueError, match="n must be >= 1"):
        tracker.record("x", n)
    assert tracker.read().total_events == 0


@pytest.mark.parametrize("call", ["record", "record_error"])
def test_a_refused_record_does_not_register_its_kind(clock: FakeClock, call: str) -> None:
    tracker = make_tracker(clock)
    with pytest.raises(ValueError, match="n must be >= 1"):
        getattr(tracker, call)("typo", 0)
    assert tracker.kinds == ()
    assert tracker.read().kinds == ()


def test_failed_events_count_as_events_and_as_errors(clock: FakeClock) -> None:
    tracker = make_tracker(clock)
    tracker.counter("job").record(3, error=True)
    tracker.record_error("job", 2)
    tracker.record("job", 5)
    at(clock, 10.0)
    (row,) = tracker.read().kinds
    assert (row.window_events, row.window_errors, row.total_errors) == (10, 5, 5)
    assert row.error_rate == 0.5


def test_record_n_counts_n_events(clock: FakeClock) -> None:
    tracker = make_tracker(clock)
    tracker.record("batch", 250)
    tracker.counter("batch").record(50)
    at(clock, 10.0)
    assert tracker.read().window_events == 300


def test_unknown_kinds_in_read_answer_zeros_and_totals_cover_everything(
    clock: FakeClock,
) -> None:
    tracker = make_tracker(clock)
    tracker.record("known", 4)
    at(clock, 2.0)
    reading = tracker.read(["known", "never-seen"])
    by_kind = {row.kind: row for row in reading.kinds}
    assert set(by_kind) == {"known", "never-seen"}
    unknown = by_kind["never-seen"]
    assert (unknown.events_per_second, unknown.window_events, unknown.total_events) == (0, 0, 0)
    assert unknown.last_event_time is None
    assert by_kind["known"].total_events == 4
    only_unknown = tracker.read(["never-seen"])
    assert only_unknown.total_events == 4  # totals cover every kind, whatever is selected
    assert "never-seen" not in tracker.kinds  # reading does not create kinds


def test_counter_is_one_object_per_kind(clock: FakeClock) -> None:
    tracker = make_tracker(clock)
    counter = tracker.counter("api_call")
    assert isinstance(counter, KindCounter)
    assert tracker.counter("api_call") is counter
    assert counter.kind == "api_call"
    assert tracker.kinds == ("api_call",)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"service_name": ""}, "service_name must be a non-empty string"),
        ({"window_seconds": 0}, "window_seconds must be > 0"),
        ({"buckets": 1}, "buckets must be >= 2"),
    ],
)
def test_bad_settings_are_refused_with_a_clear_message(
    kwargs: dict[str, object], message: str
) -> None:
    settings: dict[str, object] = {"service_name": "svc", **kwargs}
    with pytest.raises(ValueError, match=message):
        EventTracker(**settings)  # type: ignore[arg-type]


def test_empty_kind_is_refused(clock: FakeClock) -> None:
    tracker = make_tracker(clock)
    with pytest.raises(ValueError, match="non-empty string"):
        tracker.record("")


def test_custom_window_and_bucket_count(clock: FakeClock) -> None:
    tracker = make_tracker(clock, window_seconds=10.0, buckets=5)  # 2 s buckets
    for i in range(40):  # 4 ev/s for 10 s
        at(clock, i / 4)
        tracker.record()
    at(clock, 12.0)  # current bucket 6 = [12, 14): window = [4, 14), 24 events over 8 s
    reading = tracker.read()
    assert reading.window_seconds == 10.0
    assert reading.covered_seconds == pytest.approx(8.0)
    assert reading.window_events == 24
    assert reading.events_per_second == pytest.approx(3.0)


def test_memory_does_not_grow_with_the_number_of_events(clock: FakeClock) -> None:
    tracker = make_tracker(clock)
    counter = tracker.counter("busy")
    for i in range(200):  # fill every bucket with a large count first
        at(clock, i * 0.5)
        counter.record(1_000_000)
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        for i in range(100_000):
            at(clock, 100.0 + i * 0.002)
            counter.record()
        grown = sum(
            stat.size_diff
            for stat in tracemalloc.take_snapshot().compare_to(before, "filename")
            if stat.traceback[0].filename.endswith("_tracker.py")
        )
    finally:
        tracemalloc.stop()
    assert grown <= 512
    assert tracker.read().total_events == 200_000_000 + 100_000


@pytest.mark.parametrize("via", ["counter", "tracker"])
def test_threads_recording_at_once_lose_no_event(via: str) -> None:
    # A real clock and 5 ms buckets, so buckets roll over constantly while threads race, but a
    # window far longer than the test, so every event must still be inside it at the end. A
    # reader thread reads all along, and a tiny switch interval makes the interpreter switch
    # threads as often as it can.
    tracker = EventTracker("svc", window_seconds=30.0, buckets=6000)
    writers, per_thread = 4, 20_000
    barrier = threading.Barrier(writers + 1)
    done = threading.Event()
    inconsistent: list[str] = []

    def write(kind: str) -> None:
        record = tracker.counter(kind).record if via == "counter" else None
        barrier.wait()
        for _ in range(per_thread):
            if record is not None:
                record()
            else:
                tracker.record(kind)

    def read() -> None:
        barrier.wait()
        while not done.is_set():
            reading = tracker.read()
            if reading.window_events != reading.total_events:
                inconsistent.append(f"{reading.window_events} != {reading.total_events}")
            if sum(row.total_events for row in reading.kinds) != reading.total_events:
                inconsistent.append("kinds do not add up to the total")

    kinds = ["a", "a", "b", "c"]  # two threads share a kind
    old_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        reader = threading.Thread(target=read)
        threads = [threading.Thread(target=write, args=(kind,)) for kind in kinds]
        for thread in [reader, *threads]:
            thread.start()
        for thread in threads:
            thread.join()
        done.set()
        reader.join()
    finally:
        sys.setswitchinterval(old_interval)
    reading = tracker.read()
    assert inconsistent == []
    assert reading.total_events == writers * per_thread
    assert reading.window_events == writers * per_thread
    totals = {row.kind: row.total_events for row in reading.kinds}
    assert totals == {"a": 2 * per_thread, "b": per_thread, "c": per_thread}
