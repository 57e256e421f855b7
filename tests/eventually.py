"""The one way tests wait for a state: `eventually(probe)` polls until the probe has a value.

A probe returns the value the test wants (anything truthy) or a falsy value for "not yet";
sync and async probes both work. A timeout fails the test with what was awaited and the last
value seen, never a bare assertion. Use it for state reached through real servers; with a
fake clock, advance the clock instead of waiting.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

POLL_SECONDS = 0.02


async def eventually(
    probe: Callable[[], T | Awaitable[T | None] | None],
    *,
    timeout: float = 10.0,
    what: str = "the condition",
) -> T:
    """Poll `probe` until it returns something truthy and return that; fail after `timeout`."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        value = probe()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value  # type: ignore[return-value]
        last = value
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"timed out after {timeout:g} s waiting for {what} (last: {last!r})"
            )
        await asyncio.sleep(POLL_SECONDS)


def eventually_sync(
    probe: Callable[[], T | None], *, timeout: float = 10.0, what: str = "the condition"
) -> T:
    """`eventually` for tests without an event loop (subprocesses, blocking clients)."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"timed out after {timeout:g} s waiting for {what} (last: {value!r})"
            )
        time.sleep(POLL_SECONDS)
