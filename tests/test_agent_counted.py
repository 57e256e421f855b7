"""counted(): a decorator and context manager counting calls, their errors, sync and async."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Iterator

import pytest

from agent import CallCounter, EventTracker, counted


def kind_totals(tracker: EventTracker) -> dict[str, int]:
    return {row.kind: row.total_events for row in tracker.read().kinds if row.total_events}


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


def test_calls_that_raise_count_as_calls_and_as_errors() -> None:
    tracker = EventTracker("svc")

    @counted(tracker, "parse", error_kind="parse_error")
    def parse(text: str) -> int:
        return int(text)

    assert parse("12") == 12
    for bad in ("x", "y"):
        with pytest.raises(ValueError):
            parse(bad)
    assert kind_totals(tracker) == {"parse": 3, "parse_error": 2}


async def test_async_calls_that_raise_count_as_calls_and_as_errors() -> None:
    tracker = EventTracker("svc")

    @counted(tracker, "call", error_kind="failure")
    async def flaky(fail: bool) -> str:
        if fail:
            raise ConnectionError("upstream down")
        return "ok"

    assert await flaky(False) == "ok"
    with pytest.raises(ConnectionError, match="upstream down"):
        await flaky(True)
    assert kind_totals(tracker) == {"call": 2, "failure": 1}


async def test_a_cancelled_call_counts_as_a_call_not_an_error() -> None:
    tracker = EventTracker("svc")
    started = asyncio.Event()

    @counted(tracker, "wait", error_kind="wait_error")
    async def wait_forever() -> None:
        started.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(wait_forever())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert kind_totals(tracker) == {"wait": 1}


def test_errors_are_counted_only_when_an_error_kind_is_given() -> None:
    tracker = EventTracker("svc")

    @counted(tracker)
    def boom() -> None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        boom()
    assert kind_totals(tracker) == {"call": 1}


def test_context_manager_counts_each_block_and_its_errors() -> None:
    tracker = EventTracker("svc")
    batch = counted(tracker, "batch", error_kind="batch_error")
    assert isinstance(batch, CallCounter)
    for _ in range(3):
        with batch:
            pass
    with pytest.raises(KeyError), batch:
        raise KeyError("missing")
    assert kind_totals(tracker) == {"batch": 4, "batch_error": 1}


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
