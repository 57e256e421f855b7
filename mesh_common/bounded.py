"""Bounded echoes of untrusted input: error texts and log lines of fixed, small size.

Every error text that repeats what a client sent goes through `quote` (one value) or
`quote_list` (several): at most `QUOTE_LIMIT` characters of it, and a count of the rest, so a
100,000-name request gets a short refusal, never a megabyte echo or a gRPC status whose
details exceed the metadata limit. `RateLimitedLog` keeps a log from being flooded by one
line per hostile request: at most `burst` lines per `period`, then one summary of how many
were dropped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

QUOTE_LIMIT = 200
"""The most characters of client input an error text repeats."""


def quote(value: object, limit: int = QUOTE_LIMIT) -> str:
    """`repr(value)` cut to `limit` characters, with how many more there were."""
    text = value if isinstance(value, str) else str(value)
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text) - limit} more characters)"


def shorten(text: str, limit: int = 2 * QUOTE_LIMIT) -> str:
    """`text` cut to `limit` characters, with how many more there were (for error texts)."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit} more characters)"


def quote_list(values: Iterable[object], limit: int = QUOTE_LIMIT) -> str:
    """The values joined by ", ", cut to about `limit` characters, with how many are left out."""
    items = [str(value) for value in values]
    shown: list[str] = []
    used = 0
    for item in items:
        if used + len(item) > limit:
            break
        shown.append(item)
        used += len(item) + 2
    text = ", ".join(shown)
    rest = len(items) - len(shown)
    if rest:
        if not shown:
            return quote(items[0], limit) + f" and {rest - 1} more"
        text += f" and {rest} more"
    return text


class RateLimitedLog:
    """A logger wrapper that writes at most `burst` lines per `period` seconds.

    Lines beyond the budget are counted; the next line written says how many were dropped.
    Meant for lines that a client can cause (a malformed request, a refused connection).
    """

    def __init__(
        self,
        logger: logging.Logger,
        *,
        burst: int = 10,
        period: float = 60.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._burst = burst
        self._period = period
        self._monotonic = monotonic
        self._window_start = -float("inf")
        self._written = 0
        self.dropped = 0
        """Lines dropped since the last one written."""

    def log(
        self, level: int, message: str, *args: object, exc_info: BaseException | None = None
    ) -> bool:
        """Write the line (with `exc_info`'s traceback) if the budget allows; whether it was."""
        now = self._monotonic()
        if now - self._window_start >= self._period:
            self._window_start, self._written = now, 0
        if self._written >= self._burst:
            self.dropped += 1
            return False
        self._written += 1
        if self.dropped:
            message += " (%d similar lines dropped)"
            args = (*args, self.dropped)
            self.dropped = 0
        self._logger.log(level, message, *args, exc_info=exc_info)
        return True

    def warning(self, message: str, *args: object) -> bool:
        """`log(WARNING, ...)`."""
        return self.log(logging.WARNING, message, *args)
