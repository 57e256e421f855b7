"""Snapshot observers: whoever wants every new snapshot (streams, alerts, exporters).

The round loop publishes each snapshot to an `ObserverSet` without waiting. Each observer runs
in its own task behind a latest-wins slot: a slow observer sees only the newest snapshot when
it is ready again, and a failing one is logged and stays registered. Neither ever delays the
round or another observer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from aggregator._model import SnapshotData
from aggregator._slot import SnapshotSlot
from mesh_common.clocks import ReadClock

_LOG = logging.getLogger(__name__)

SnapshotObserver = Callable[[SnapshotData], Awaitable[None]]
"""An observer: awaited with each new snapshot (or only the newest, when it falls behind)."""


class ObserverSet:
    """The observers of one round loop, each with its slot and its task."""

    def __init__(self, monotonic: ReadClock) -> None:
        self._monotonic = monotonic
        self._running: dict[SnapshotSlot, asyncio.Task[None]] = {}

    def __len__(self) -> int:
        return len(self._running)

    def add(self, name: str, observer: SnapshotObserver) -> Callable[[], None]:
        """Register `observer` (needs a running loop); returns the function that removes it."""
        slot = SnapshotSlot(0.0, self._monotonic)
        task = asyncio.get_running_loop().create_task(
            self._feed(name, slot, observer), name=f"observer {name}"
        )
        self._running[slot] = task

        def remove() -> None:
            slot.close()
            self._running.pop(slot, None)

        return remove

    def publish(self, snapshot: SnapshotData) -> None:
        """Hand `snapshot` to every observer; never blocks."""
        for slot in self._running:
            slot.offer(snapshot)

    async def close(self) -> None:
        """Stop every observer's task; a second call is harmless."""
        running, self._running = self._running, {}
        for slot, task in running.items():
            slot.close()
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*running.values(), return_exceptions=True)

    @staticmethod
    async def _feed(name: str, slot: SnapshotSlot, observer: SnapshotObserver) -> None:
        while (snapshot := await slot.next()) is not None:
            try:
                await observer(snapshot)
            except asyncio.CancelledError:
                raise
            except Exception:
                _LOG.exception(
                    "snapshot observer %r failed on snapshot %d; it stays registered",
                    name,
                    snapshot.sequence,
                )
