"""Count and time calls of a function, or runs of a block, with a decorator or a context manager.

@counted(tracker, "data_fetch")     # sync or async; a raised exception counts as an error
async def fetch(...): ...

with counted(tracker, "batch"):
    ...
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Coroutine
from types import TracebackType
from typing import Any, ParamSpec, TypeVar, overload

from agent._tracker import EventTracker

P = ParamSpec("P")
R = TypeVar("R")

DEFAULT_CALL_KIND = "call"


class CallCounter:
    """Counts and times calls into a tracker; made by `counted()`, decorator and `with` block.

    A call (or a `with` block) counts once, when it returns or raises, with its duration on the
    tracker's clock. It counts as an error when it raised an `Exception`; cancellation and other
    `BaseException`s count as a call that did not fail. One instance can decorate any number of
    functions called from many threads or tasks at once. A `with` block keeps its start on the
    instance, so write `with counted(...)` where the block is (a new counter per block): one
    instance shared by concurrent blocks counts every block, but may pair their times crosswise.
    """

    __slots__ = ("_clock", "_observe", "_starts")

    def __init__(self, tracker: EventTracker, kind: str) -> None:
        self._observe = tracker.counter(kind).observe
        self._clock = tracker.clock
        self._starts: list[float] = []

    @overload
    def __call__(
        self, function: Callable[P, Coroutine[Any, Any, R]]
    ) -> Callable[P, Coroutine[Any, Any, R]]: ...

    @overload
    def __call__(self, function: Callable[P, R]) -> Callable[P, R]: ...

    def __call__(self, function: Callable[..., Any]) -> Callable[..., Any]:
        """Wrap a plain or `async` function so that each of its calls counts, timed."""
        if inspect.isgeneratorfunction(function) or inspect.isasyncgenfunction(function):
            raise TypeError(
                f"counted() cannot wrap the generator function {function.__qualname__}: a call "
                "only creates the generator; count inside it with `with counted(...):` instead"
            )
        observe, clock = self._observe, self._clock
        if inspect.iscoroutinefunction(function):

            @functools.wraps(function)
            async def count_async(*args: Any, **kwargs: Any) -> Any:
                failed = False
                started = clock()
                try:
                    return await function(*args, **kwargs)
                except Exception:
                    failed = True
                    raise
                finally:
                    observe(clock() - started, error=failed)

            return count_async

        @functools.wraps(function)
        def count(*args: Any, **kwargs: Any) -> Any:
            failed = False
            started = clock()
            try:
                return function(*args, **kwargs)
            except Exception:
                failed = True
                raise
            finally:
                observe(clock() - started, error=failed)

        return count

    def __enter__(self) -> None:
        """Start a timed block; it counts when it ends."""
        self._starts.append(self._clock())

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Count the block with its duration, failed when it raised an `Exception`."""
        started = self._starts.pop()
        self._observe(self._clock() - started, error=isinstance(exc, Exception))


def counted(tracker: EventTracker, kind: str = DEFAULT_CALL_KIND) -> CallCounter:
    """Count and time calls of the decorated function (sync or `async`), or runs of a block.

    Each call counts one `kind` event with its duration when it returns or raises; a call that
    raises an `Exception` counts as failed (its kind's error rate), and the exception goes on.
    """
    return CallCounter(tracker, kind)
