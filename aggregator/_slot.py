"""A subscriber's slot of size one where the latest snapshot wins (StreamSnapshots, observers).

The round loop `offer`s every new snapshot to every subscriber without waiting, so a slow or
stalled reader never holds up the loop or the other readers; it just finds the newest
snapshot when it next looks. `min_interval` spaces the deliveries: snapshots that complete in
between replace each other in the slot.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from aggregator._model import SnapshotData


class SnapshotSlot:
    """The slot, the wake-up event and the spacing rule of one subscriber."""

    def __init__(self, min_interval: float, monotonic: Callable[[], float]) -> None:
        self.min_interval = min_interval
        self._monotonic = monotonic
        self._slot: SnapshotData | None = None
        self._event = asyncio.Event()
        self._last_sent: float | None = None
        self.closed = False
        self.caller: str | None = None
        """The caller of an untrusted subscriber (counted against its cap); None if trusted."""

    def offer(self, snapshot: SnapshotData) -> None:
        """Put `snapshot` in the slot, replacing an undelivered one; never blocks."""
        self._slot = snapshot
        self._event.set()

    def close(self) -> None:
        """End the subscription: `next()` returns None from now on."""
        self.closed = True
        self._event.set()

    def mark_sent(self) -> None:
        """Record a delivery made outside `next()` (a replayed or initial snapshot)."""
        self._last_sent = self._monotonic()

    async def next(self) -> SnapshotData | None:
        """The next snapshot to send, waiting for one and for min_interval; None when closed."""
        while not self.closed:
            if self._slot is None:
                self._event.clear()
                await self._event.wait()
                continue
            if self.min_interval > 0 and self._last_sent is not None:
                remaining = self._last_sent + self.min_interval - self._monotonic()
                if remaining > 0:
                    self._event.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._event.wait(), remaining)
                    continue
            snapshot, self._slot = self._slot, None
            self._last_sent = self._monotonic()
            return snapshot
        return None
