"""When a streaming client gets its next update: the one pacing model of SSE and WebSocket.

A `Pacer` hands out each fresh snapshot once, at least `interval` seconds after the previous
one, the latest winning when several arrive in between; while no fresh snapshot exists it says
so once per outage. It waits on the hub's change marker (the hub ticks it when idle, so
staleness is noticed without a timer per client), and returns early at a caller's deadline
(a heartbeat, a batch flush) or when one of the caller's `pokes` is set (a new subscription,
an alert change).
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass

from gateway._state import GatewayState
from gateway._views import SnapshotEntry


@dataclass(frozen=True, slots=True)
class Update:
    """What to send next: a snapshot, or (entry None) the news that none is fresh and why."""

    entry: SnapshotEntry | None
    problem: str = ""


class Pacer:
    """One client's pacing: interval, latest wins, one notice per outage."""

    def __init__(self, state: GatewayState, interval: float = 0.0) -> None:
        self.interval = interval
        """Least seconds between two snapshots handed out."""
        self._state = state
        self._sent: SnapshotEntry | None = None
        self._sent_at = -math.inf
        self._in_outage = False

    def mark_sent(self, entry: SnapshotEntry) -> None:
        """Record that `entry` went out another way (a replayed backlog)."""
        self._sent = entry

    def resend(self) -> None:
        """Hand out the current snapshot again at the next call (e.g. after a subscribe)."""
        self._sent = None

    async def next(
        self,
        *,
        deadline: float | None = None,
        pokes: tuple[asyncio.Event, ...] = (),
        snapshots: bool = True,
        wake: bool = False,
    ) -> Update | None:
        """The next update; None when monotonic `deadline` passes or one of `pokes` is set first.

        With `snapshots` False only outage notices are handed out (a client that subscribed
        to nothing yet); its next snapshot then comes when it asks again with True. With
        `wake`, every change or tick of the hub also returns None, so a caller can check its
        own soft deadlines (heartbeats) and news (alerts wake the hub too) without a timer or
        a waiter task of its own: a thousand SSE clients then wait on one event.
        """
        state = self._state
        hub = state.hub
        while True:
            marker = hub.change_marker()
            now = state.clocks.monotonic()
            entry = state.fresh()
            wake_at = deadline
            if entry is None:
                if not self._in_outage:
                    self._in_outage = True
                    return Update(None, state.problem())
            elif snapshots and entry is not self._sent:
                due = self._sent_at + self.interval
                if now >= due:
                    self._in_outage = False
                    self._sent, self._sent_at = entry, now
                    return Update(entry)
                wake_at = due if deadline is None else min(due, deadline)
            if deadline is not None and now >= deadline:
                return None
            if any(poke.is_set() for poke in pokes):
                return None
            await _wait_any(marker, pokes, None if wake_at is None else wake_at - now)
            if wake and marker.is_set():
                return None


async def _wait_any(
    first: asyncio.Event, others: tuple[asyncio.Event, ...], timeout: float | None
) -> None:
    """Return when any of the events is set or the timeout passes."""
    if not others:
        if timeout is None:
            await first.wait()
            return
        try:
            async with asyncio.timeout(timeout):
                await first.wait()
        except TimeoutError:
            pass
        return
    waiters = [asyncio.ensure_future(event.wait()) for event in (first, *others)]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
