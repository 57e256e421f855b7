"""counted(): a decorator and context manager counting and timing calls, sync and async."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Iterator

import pytest

from agent import CallCounter, EventTracker, counted
from tests.clocks import FakeClock


def kind_totals(tracker: EventTracker) -> dict[str, int]:
    return {row.kind: row.total_events for row in tracker.read().kinds if row.total_events}


def kind_errors(tracker: EventTracker) -> dict[str, int]:
    return {row.kind: row.total_errors for row in tracker.read().kinds if row.total_events}


def test_decorated_function_counts_each_call_and_keeps_its_result_and_name() -> None:
    tracker = EventTracker("svc")

    @counted(tracker, "enrich")
    def enrich(value: int, *, factor: int = 2) -> int:
        """Multiply."""
        return value * factor

    assert [enrich(i, factor=3) for i in range(4)] == [0, 3, 6, 9]
    assert enrich.__name__ == "enrich"
    assert enrich.__doc__ == "Multiply."
    assert kind_totals(tracker) == {"enrich": 4}


async def test_decorated_async_function_counts_when_awaited() -> None:
    tracker = EventTracker("svc")

    @counted(tracker, "data_fetch")
    async def fetch(source: str) -> str:
        await asyncio.sleep(0)
        return source.upper()

    pending = fetch("weather")
    assert tracker.read().total_events == 0  # creating the coroutine is not a call yet
    assert await pending == "WEATHER"
    assert await asyncio.gather(*(fetch("x") for _ in range(5))) == ["X"] * 5
    assert inspect.iscoroutinefunction(fetch)
    assert kind_totals(tracker) == {"data_fetch": 6}


def test_calls_that_raise_count_as_failed_calls() -> None:
    tracker = EventTracker("svc")

    @counted(tracker, "parse")
    def parse(text: str) -> int:
        return int(text)

    assert parse("12") == 12
    for bad in ("x", "y"):
        with pytest.raises(ValueError):
            parse(bad)
    assert kind_totals(tracker) == {"parse": 3}
    assert kind_errors(tracker) == {"parse": 2}
    (kind,) = tracker.read().kinds
    assert kind.error_rate == pytest.approx(2 / 3)


async def test_async_calls_that_raise_count_as_failed_calls() -> None:
    tracker = EventTracker("svc")

    @counted(tracker, "call")
    async def flaky(fail: bool) -> str:
        if fail:
            raise ConnectionError("upstream down")
        return "ok"

    assert await flaky(False) == "ok"
    with pytest.raises(ConnectionError, match="upstream down"):
        await flaky(True)
    assert kind_totals(tracker) == {"call": 2}
    assert kind_errors(tracker) == {"call": 1}


async def test_a_cancelled_call_counts_as_a_call_not_an_error() -> None:
    tracker = EventTracker("svc")
    started = asyncio.Event()

    @counted(tracker, "wait")
    async def wait_forever() -> None:
        started.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(wait_forever())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert kind_totals(tracker) == {"wait": 1}
    assert kind_errors(tracker) == {"wait": 0}


def test_each_call_is_timed_on_the_trackers_clock(clock: FakeClock) -> None:
    tracker = EventTracker("svc", clock=clock)

    @counted(tracker, "work")
    def work(seconds: float) -> None:
        clock.tick(seconds)

    for seconds in (0.010, 0.020, 0.030, 2.0):
        work(seconds)
    (kind,) = tracker.read().kinds
    assert kind.latency is not None
    assert kind.latency.count == 4
    assert kind.latency.sum_seconds == pytest.approx(2.06)
    assert kind.latency.max_seconds == pytest.approx(2.0)
    assert kind.latency.quantile(0.5) == pytest.approx(0.020, rel=0.022)


def test_context_manager_times_each_block_and_counts_its_errors(clock: FakeClock) -> None:
    tracker = EventTracker("svc", clock=clock)
    batch = counted(tracker, "batch")
    assert isinstance(batch, CallCounter)
    for _ in range(3):
        with batch:
            clock.tick(0.5)
    with pytest.raises(KeyError), batch:
        clock.tick(1.5)
        raise KeyError("missing")
    (kind,) = tracker.read().kinds
    assert (kind.total_events, kind.total_errors) == (4, 1)
    assert kind.latency is not None
    assert kind.latency.sum_seconds == pytest.approx(3.0)
    assert kind.latency.max_seconds == pytest.approx(1.5)


def test_nested_blocks_of_one_counter_each_get_their_own_time(clock: FakeClock) -> None:
    tracker = EventTracker("svc", clock=clock)
    step = counted(tracker, "step")
    with step:
        clock.tick(1.0)
        with step:
            clock.tick(0.25)
    (kind,) = tracker.read().kinds
    assert kind.latency is not None
    assert kind.latency.sum_seconds == pytest.approx(1.25 + 0.25)
    assert kind.latency.max_seconds == pytest.approx(1.25)


def test_generator_functions_are_refused_with_advice() -> None:
    tracker = EventTracker("svc")

    def numbers() -> Iterator[int]:
        yield 1

    async def stream() -> AsyncIterator[int]:
        yield 1

    for function in (numbers, stream):
        with pytest.raises(TypeError, match=r"generator function .* `with counted\(\.\.\.\):`"):
            counted(tracker)(function)


def test_an_empty_kind_is_refused_when_decorating() -> None:
    with pytest.raises(ValueError, match="non-empty"):
        counted(EventTracker("svc"), "")
