"""The one shared round loop: rounds on an interval, whoever listens, and on demand.

`RoundLoop` runs rounds over its `Targets` through a `FanOut`, folds them with `fold_round`,
keeps the latest snapshot and a bounded history, and publishes each new snapshot to its
observers (the first of which feeds the StreamSnapshots subscribers). A round runs (a) every
`interval` from start, whether or not anybody subscribes (history, alerts and a dashboard's
first paint need it), and (b) on demand when a caller needs a snapshot fresher than the
latest, never closer to the previous one than `min_round_spacing_seconds`; concurrent
callers share the one in-flight round. Nothing runs per request or per subscriber.
`replace_registry()` changes the set of targets between two rounds. Like OpenTelemetry's
periodic reader, every failure is caught and logged: one failure never stops the loop.
Each change of a service's status is logged once, on the `aggregator.status` logger
(`service NAME: FROM -> TO (REASON)`), the first round's from `unknown`.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
from collections.abc import Callable, Sequence

from aggregator._callers import IN_PROCESS, Caller
from aggregator._errors import AggregatorStateError, TooManySubscribers
from aggregator._fanout import FanOut
from aggregator._fold import Backoff, RoundTimes, fold_round, status_changes
from aggregator._ingest.ingestor import Ingestor
from aggregator._model import (
    Outcome,
    SnapshotData,
    StatusChange,
    TargetKey,
    TargetState,
    failed_outcome,
    new_epoch,
)
from aggregator._observers import ObserverSet, SnapshotObserver
from aggregator._settings import AggregatorSettings
from aggregator._slot import SnapshotSlot
from aggregator._targets import Targets
from mesh_common.clocks import Clocks
from mesh_common.registry import Registry, ServiceEntry
from mesh_common.status import ServiceStatus
from mesh_common.tls import TlsSettings

_LOG = logging.getLogger(__name__)
STATUS_LOG = logging.getLogger("aggregator.status")
"""One line per status change of a service (not one per round while it stays down)."""


def log_status_change(change: StatusChange) -> None:
    """`service NAME: FROM -> TO (REASON)` on STATUS_LOG, the parts also as `extra` fields.

    A service that stops being active is a warning; one that becomes active is news (info).
    """
    level = logging.INFO if change.status is ServiceStatus.ACTIVE else logging.WARNING
    STATUS_LOG.log(
        level,
        "service %s: %s -> %s (%s)",
        change.service_name,
        change.previous,
        change.status.value,
        change.reason,
        extra={
            "service": change.service_name,
            "from": change.previous,
            "to": change.status.value,
            "reason": change.reason,
        },
    )


class RoundLoop:
    """Rounds, the latest snapshot, history, observers and subscribers of one aggregator."""

    rounds: int
    """How many rounds have completed (each yields one snapshot)."""
    latest: SnapshotData | None
    epoch: int
    """This lifetime's identity, carried by every snapshot (resume points name it)."""

    def __init__(
        self,
        registry: Registry,
        settings: AggregatorSettings,
        *,
        clocks: Clocks,
        epoch: int | None = None,
        interval_rounds: bool = True,
        ingestor: Ingestor | None = None,
        tls: TlsSettings | None = None,
    ) -> None:
        self.settings = settings
        self.clocks = clocks
        self.epoch = new_epoch(clocks.wall()) if epoch is None else epoch
        self.rounds = 0
        self.latest = None
        self.history: collections.deque[SnapshotData] = collections.deque(
            maxlen=settings.history_size
        )
        self._targets = Targets(
            registry,
            reconnect_max_seconds=settings.interval_seconds,
            deadline=settings.deadline_seconds,
            tls=tls,
        )
        self._next_registry: Registry | None = None
        self._fanout = FanOut(deadline=settings.deadline_seconds, monotonic=clocks.monotonic)
        self._backoff = Backoff(settings.interval_seconds, settings.backoff_max_seconds)
        self._observers = ObserverSet(clocks.monotonic)
        self._subscribers: set[SnapshotSlot] = set()
        self._untrusted_by_caller: collections.Counter[str] = collections.Counter()
        self._inflight: asyncio.Task[SnapshotData] | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._stopped = False
        self._interval_rounds = interval_rounds
        self._ingestor = ingestor
        self._pushed_states: dict[str, TargetState] = {}
        self._row_states: dict[TargetKey, TargetState] = {}
        """The rows' own states of the services of several instances (last folded figures)."""
        if ingestor is not None:
            ingestor.reserve(entry.name for entry in registry)

    @property
    def registry(self) -> Registry:
        """The registry the next round calls (a pending replacement included)."""
        pending = self._next_registry
        return self._targets.registry if pending is None else pending

    @property
    def subscriber_count(self) -> int:
        """How many subscribers are attached."""
        return len(self._subscribers)

    def start(self) -> None:
        """Open the channels and start the interval loop."""
        if self._stopped:
            raise AggregatorStateError("a stopped round loop cannot be started again")
        if self._ticker is None:
            self._targets.start()
            self._observers.add("streams", self._offer_to_subscribers)
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
        await self._observers.close()
        await self._targets.close()

    def replace_registry(self, registry: Registry) -> None:
        """Call the services of `registry` from the next round on.

        Services that stay keep their channel, health watch, backoff state and history;
        new ones are called from the next round, removed ones no longer appear.
        """
        self._next_registry = registry
        if self._ingestor is not None:
            self._ingestor.reserve(entry.name for entry in registry)

    def add_observer(self, name: str, observer: SnapshotObserver) -> Callable[[], None]:
        """Have `observer` awaited with every new snapshot; returns the function to remove it.

        A slow observer gets only the newest snapshot when it is ready again; a failing one
        is logged. Neither delays a round or another observer.
        """
        return self._observers.add(name, observer)

    async def snapshot(self, max_age: float | None = None) -> SnapshotData:
        """The latest snapshot if younger than `max_age` (default: the interval), else a new one.

        A new one comes from the in-flight round when there is one, so concurrent callers
        share a single round.
        """
        settings = self.settings
        limit = settings.interval_seconds if max_age is None else max_age
        # No caller makes rounds closer together than the configured spacing (max_age 0 in a
        # loop would otherwise run a round per call).
        limit = max(limit, min(settings.min_round_spacing_seconds, settings.interval_seconds))
        latest = self.latest
        if latest is not None and self.clocks.monotonic() - latest.taken_at < limit:
            return latest
        try:
            return await asyncio.shield(self._shared_round())
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if self._stopped and task is not None and not task.cancelling():
                # The shared round was cancelled by stop(), not this caller.
                raise AggregatorStateError("the aggregator is shutting down") from None
            raise

    def subscribe(self, min_interval: float, caller: Caller = IN_PROCESS) -> SnapshotSlot:
        """Attach a subscriber; raises TooManySubscribers at the cap.

        A `caller` that is not trusted may not take the last `reserved_subscribers` slots,
        and may hold at most `max_streams_per_peer` of the others (`aggregator._callers`).
        """
        if self._stopped:
            raise AggregatorStateError("the aggregator is shutting down")
        settings = self.settings
        count = len(self._subscribers)
        if count >= settings.max_subscribers:
            raise TooManySubscribers(
                f"too many subscribers: the limit of {settings.max_subscribers} "
                "concurrent StreamSnapshots calls is reached (max_subscribers); retry later"
            )
        if not caller.trusted:
            if count >= settings.untrusted_subscribers:
                raise TooManySubscribers(
                    f"too many subscribers: the {settings.untrusted_subscribers} slots open to "
                    "callers other than the gateway are taken (max_subscribers - "
                    "reserved_subscribers: the reserved ones are kept for the gateway); retry "
                    "later"
                )
            if self._untrusted_by_caller[caller.name] >= settings.max_streams_per_peer:
                raise TooManySubscribers(
                    f"too many subscribers of one caller ({caller.name}): the limit is "
                    f"{settings.max_streams_per_peer} (max_streams_per_peer)"
                )
        subscription = SnapshotSlot(min_interval, self.clocks.monotonic)
        if not caller.trusted:
            subscription.caller = caller.name
            self._untrusted_by_caller[caller.name] += 1
        self._subscribers.add(subscription)
        return subscription

    def unsubscribe(self, subscription: SnapshotSlot) -> None:
        """Detach a subscriber (idempotent)."""
        if subscription in self._subscribers and subscription.caller is not None:
            name = subscription.caller
            self._untrusted_by_caller[name] -= 1
            if self._untrusted_by_caller[name] <= 0:
                del self._untrusted_by_caller[name]
        self._subscribers.discard(subscription)
        subscription.close()

    def history_after(self, sequence: int) -> list[SnapshotData]:
        """Every snapshot in history with a sequence greater than `sequence`, oldest first."""
        return [item for item in self.history if item.sequence > sequence]

    def resume(self, epoch: int, sequence: int) -> tuple[list[SnapshotData], bool, int]:
        """What a subscriber resuming after (epoch, sequence) gets first: (snapshots, gap, missed).

        epoch 0 means this lifetime. A resume point of another lifetime (or, with epoch 0, a
        sequence this lifetime has not reached) replays this lifetime's whole history (gap,
        missed unknown: 0); one that the history no longer
        reaches replays all of it (gap, missed = the snapshots no longer held).
        """
        latest = self.latest
        ahead = epoch == 0 and latest is not None and sequence > latest.sequence
        if epoch not in (0, self.epoch) or ahead:
            return list(self.history), True, 0
        replay = self.history_after(sequence)
        first = replay[0].sequence if replay else None
        if first is not None and first > sequence + 1:
            return replay, True, first - sequence - 1
        return replay, False, 0

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

    async def _offer_to_subscribers(self, snapshot: SnapshotData) -> None:
        for subscription in self._subscribers:
            subscription.offer(snapshot)

    async def _tick(self) -> None:
        if not self._interval_rounds:
            return  # on demand only: tests that drive a fake clock run every round themselves
        interval = self.settings.interval_seconds
        while True:
            latest = self.latest
            now = self.clocks.monotonic()
            due = now if latest is None else latest.taken_at + interval
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
        if self._next_registry is not None:
            registry, self._next_registry = self._next_registry, None
            await self._targets.replace(registry)
        await self._targets.renew_channels()  # a few stat calls: rotated [tls] files
        targets = self._targets
        monotonic = self.clocks.monotonic
        started = monotonic()
        take_time = self.clocks.wall()
        try:
            outcomes: dict[TargetKey, Outcome] = await self._fanout.collect(targets)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            _LOG.exception("collecting a round failed")
            failed = failed_outcome(f"round failed: {error!r}")
            outcomes = {target.key: failed for target in targets}
        pushed = None if self._ingestor is None else self._ingestor.round()
        entries: Sequence[ServiceEntry] = targets.registry
        states: dict[TargetKey, TargetState] = {target.key: target.state for target in targets}
        states.update(self._row_states)
        if pushed is not None:
            entries = (*entries, *pushed.entries)
            outcomes.update(pushed.outcomes)
            states.update(self._pushed_states)
        times = RoundTimes(self.rounds + 1, take_time, started, monotonic())
        snapshot, new_states = fold_round(entries, outcomes, states, times, self._backoff)
        snapshot = dataclasses.replace(snapshot, epoch=self.epoch)
        if pushed is not None:
            self._pushed_states = {entry.name: new_states[entry.name] for entry in pushed.entries}
            snapshot = dataclasses.replace(
                snapshot,
                pushed=pushed.series,
                pushed_omitted=max(0, len(pushed.series) - pushed.stream_limit),
            )
        self._row_states = {
            entry.name: new_states[entry.name] for entry in targets.registry if entry.instances
        }
        for target in targets:
            target.state = new_states[target.key]
            target.record(outcomes.get(target.key))
        for change in status_changes(self.latest, snapshot):
            log_status_change(change)
        self.latest = snapshot
        self.history.append(snapshot)
        self.rounds += 1
        self._observers.publish(snapshot)
        return snapshot
