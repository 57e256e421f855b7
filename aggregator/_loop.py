"""The one shared round loop: rounds on an interval while anybody listens, or on demand.

`RoundLoop` runs rounds through a `FanOut`, folds them with `fold_round`, keeps the latest
snapshot and a bounded history, and offers each new snapshot to every subscriber. A round runs
(a) every `interval` while at least one subscriber listens, and (b) on demand when a caller
needs a snapshot fresher than the latest; concurrent callers share the one in-flight round.
Nothing runs per request or per subscriber. Like OpenTelemetry's periodic reader, every
failure is caught and logged: one failure never stops the loop.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Sequence

from aggregator._errors import AggregatorStateError
from aggregator._fanout import FanOut
from aggregator._fold import Backoff, RoundTimes, fold_round
from aggregator._model import CallKind, Clock, Health, Outcome, SnapshotData, TargetState
from aggregator._subscription import Subscription
from aggregator.config import AggregatorSettings, Registry

_LOG = logging.getLogger(__name__)


class TooManySubscribers(Exception):
    """The subscriber cap is reached."""


class RoundLoop:
    """Rounds, the latest snapshot, history and subscribers of one aggregator."""

    rounds: int
    """How many rounds have completed (each yields one snapshot)."""
    latest: SnapshotData | None

    def __init__(
        self,
        registry: Registry,
        settings: AggregatorSettings,
        *,
        clock: Clock,
        fanout: FanOut | None = None,
    ) -> None:
        self.registry = registry
        self.settings = settings
        self.clock = clock
        self.rounds = 0
        self.latest = None
        self.history: collections.deque[SnapshotData] = collections.deque(
            maxlen=settings.history_size
        )
        self._fanout = fanout or FanOut(registry, deadline=settings.deadline_seconds, clock=clock)
        self._backoff = Backoff(settings.interval_seconds, settings.backoff_max_seconds)
        self._states: tuple[TargetState, ...] = tuple(TargetState() for _ in registry)
        self._subscribers: set[Subscription] = set()
        self._listening = asyncio.Event()
        self._inflight: asyncio.Task[SnapshotData] | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._stopped = False

    @property
    def subscriber_count(self) -> int:
        """How many subscribers are attached."""
        return len(self._subscribers)

    @property
    def round_in_flight(self) -> bool:
        """True while a round is running."""
        return self._inflight is not None and not self._inflight.done()

    def start(self) -> None:
        """Create the channels and start the interval loop (idle until somebody listens)."""
        if self._stopped:
            raise AggregatorStateError("a stopped round loop cannot be started again")
        if self._ticker is None:
            self._fanout.start()
            self._ticker = asyncio.get_running_loop().create_task(self._tick(), name="rounds")

    async def stop(self) -> None:
        """End every subscription, stop the loop and close the channels; idempotent."""
        self._stopped = True
        for subscription in list(self._subscribers):
            subscription.close()
        self._subscribers.clear()
        tasks = [task for task in (self._ticker, self._inflight) if task is not None]
        self._ticker = self._inflight = None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._fanout.close()

    async def snapshot(self, max_age: float | None = None) -> SnapshotData:
        """The latest snapshot if younger than `max_age` (default: the interval), else a new one.

        A new one comes from the in-flight round when there is one, so concurrent callers
        share a single round.
        """
        limit = self.settings.interval_seconds if max_age is None else max_age
        latest = self.latest
        if latest is not None and self.clock.monotonic() - latest.take_monotonic < limit:
            return latest
        try:
            return await asyncio.shield(self._shared_round())
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if self._stopped and task is not None and not task.cancelling():
                # The shared round was cancelled by stop(), not this caller.
                raise AggregatorStateError("the aggregator is shutting down") from None
            raise

    def subscribe(self, min_interval: float) -> Subscription:
        """Attach a subscriber; raises TooManySubscribers at the cap."""
        if self._stopped:
            raise AggregatorStateError("the aggregator is shutting down")
        if len(self._subscribers) >= self.settings.max_subscribers:
            raise TooManySubscribers(
                f"too many subscribers: the limit of {self.settings.max_subscribers} "
                "concurrent StreamSnapshots calls is reached (max_subscribers); retry later"
            )
        subscription = Subscription(min_interval, self.clock.monotonic)
        self._subscribers.add(subscription)
        self._listening.set()
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        """Detach a subscriber (idempotent); rounds stop when the last one leaves."""
        self._subscribers.discard(subscription)
        subscription.close()
        if not self._subscribers:
            self._listening.clear()

    def history_after(self, sequence: int) -> list[SnapshotData]:
        """Every snapshot in history with a sequence greater than `sequence`, oldest first."""
        return [item for item in self.history if item.sequence > sequence]

    def history_last(self, count: int) -> list[SnapshotData]:
        """The last `count` snapshots of history, oldest first."""
        if count <= 0:
            return []
        return list(self.history)[-count:]

    def _shared_round(self) -> asyncio.Task[SnapshotData]:
        if self._stopped:
            raise AggregatorStateError("the aggregator is shutting down")
        if self._inflight is None or self._inflight.done():
            self._inflight = asyncio.get_running_loop().create_task(self._round(), name="round")
        return self._inflight

    async def _tick(self) -> None:
        interval = self.settings.interval_seconds
        while True:
            await self._listening.wait()
            latest = self.latest
            now = self.clock.monotonic()
            due = now if latest is None else latest.take_monotonic + interval
            if now < due:
                await asyncio.sleep(due - now)
                continue
            try:
                await asyncio.shield(self._shared_round())
            except asyncio.CancelledError:
                raise
            except Exception:
                _LOG.exception("round failed; the loop goes on")
                await asyncio.sleep(interval)

    async def _round(self) -> SnapshotData:
        monotonic = self.clock.monotonic
        started = monotonic()
        take_time = self.clock.wall()
        states = self._states
        skip = [_skip_reason(state, started) for state in states]
        try:
            outcomes: Sequence[Outcome] = await self._fanout.collect(skip)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            _LOG.exception("collecting a round failed")
            outcomes = [
                Outcome(CallKind.ERROR, Health.UNKNOWN, 0.0, error=f"round failed: {error!r}")
                for _ in self.registry
            ]
        finished = monotonic()
        times = RoundTimes(self.rounds + 1, take_time, started, finished)
        snapshot, self._states = fold_round(self.registry, outcomes, states, times, self._backoff)
        self.latest = snapshot
        self.history.append(snapshot)
        self.rounds += 1
        for subscription in self._subscribers:
            subscription.offer(snapshot)
        return snapshot


def _skip_reason(state: TargetState, now: float) -> str | None:
    if state.retry_at <= now:
        return None
    return (
        f"not called: backing off after {state.consecutive_failures} failed calls, next "
        f"attempt in {state.retry_at - now:.1f} s; last error: {state.last_error}"
    )
