"""Count calls of a function, or runs of a block, with a decorator or a context manager.

@counted(tracker, "data_fetch", error_kind="data_fetch_error")
async def fetch(...): ...          # plain functions work the same way

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
    """Counts calls into a tracker; made by `counted()`, usable as decorator and `with` block.

    A call (or a `with` block) counts once, when it returns or raises. When it raises an
    `Exception` and `error_kind` is set, it also counts one `error_kind` event; cancellation
    and other `BaseException`s count as a call only. One instance can decorate any number of
    functions and be entered from many threads or tasks at once: it keeps no state per call.
    """

    __slots__ = ("_record", "_record_error")

    def __init__(self, tracker: EventTracker, kind: str, error_kind: str | None) -> None:
        self._record = tracker.counter(kind).record
        self._record_error = None if error_kind is None else tracker.counter(error_kind).record

    @overload
    def __call__(
        self, function: Callable[P, Coroutine[Any, Any, R]]
    ) -> Callable[P, Coroutine[Any, Any, R]]: ...

    @overload
    def __call__(self, function: Callable[P, R]) -> Callable[P, R]: ...

    def __call__(self, function: Callable[..., Any]) -> Callable[..., Any]:
        """Wrap a plain or `async` function so that each of its calls counts."""
        if inspect.isgeneratorfunction(function) or inspect.isasyncgenfunction(function):
            raise TypeError(
                f"counted() cannot wrap the generator function {function.__qualname__}: a call "
                "only creates the generator; count inside it with `with counted(...):` instead"
            )
        record, record_error = self._record, self._record_error
        if inspect.iscoroutinefunction(function):

            @functools.wraps(function)
            async def count_async(*args: Any, **kwargs: Any) -> Any:
                try:
                    return await function(*args, **kwargs)
                except Exception:
                    if record_error is not None:
                        record_error()
                    raise
                finally:
                    record()

            return count_async

        @functools.wraps(function)
        def count(*args: Any, **kwargs: Any) -> Any:
            try:
                return function(*args, **kwargs)
            except Exception:
                if record_error is not None:
                    record_error()
                raise
            finally:
                record()

        return count

    def __enter__(self) -> None:
        """Start the block; it counts when it ends."""

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Count the block, and an error when it raised an `Exception`; never swallows it."""
        self._record()
        if self._record_error is not None and isinstance(exc, Exception):
            self._record_error()


def counted(
    tracker: EventTracker, kind: str = DEFAULT_CALL_KIND, *, error_kind: str | None = None
) -> CallCounter:
    """Count calls of the decorated function (sync or `async`), or runs of a `with` block.

    Each call counts one `kind` event when it returns or raises; with `error_kind`, a call that
    raises an `Exception` counts one `error_kind` event too.
    """
    return CallCounter(tracker, kind, error_kind)
