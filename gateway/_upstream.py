"""The gateway's one long-lived StreamSnapshots subscription and its fan-out to clients.

`SnapshotHub` keeps the latest snapshot and a small ring of recent ones. Every HTTP request,
SSE stream and WebSocket reads from it; nothing ever calls the aggregator per request. When the
subscription fails, the hub reconnects with exponential backoff and full jitter (resuming after
the last (epoch, sequence) it saw, so the ring has no gaps), and logs each state change once.
The ring always holds one aggregator lifetime (epoch): a new epoch starts it afresh. Where
snapshots were missed (a new epoch, or a resume the aggregator's history no longer covered)
the hub remembers it, so that streams can tell their clients (`gap_between`).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from collections.abc import AsyncIterator, Callable

import grpc
from metricsmesh.v1 import aggregator_pb2, aggregator_pb2_grpc, snapshot_pb2

from gateway._link import UpstreamLink, UpstreamState
from gateway._views import SnapshotEntry
from mesh_common.clocks import ReadClock
from mesh_common.tls import TlsSettings, connection_failure

log = logging.getLogger("gateway.upstream")

MAX_GAPS = 64
"""Missed stretches the hub remembers (streams compare against the recent ones only)."""


_RESUME_REJECTED = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.OUT_OF_RANGE,
    grpc.StatusCode.FAILED_PRECONDITION,
}


class SnapshotHub(UpstreamLink):
    """Holds the latest snapshot from one upstream subscription and wakes waiting clients.

    `start()` opens the subscription in a background task; `stop()` ends it (a second call is
    harmless). Clients read `latest`, `history_after(sequence)`, `state`, `error`, and wait on
    `change_marker()` to learn about a new snapshot or a state change. When nothing changes for
    `tick_seconds`, the hub wakes its waiters anyway, so each can check staleness and send
    heartbeats without a timer of its own (a thousand timers per snapshot cost more).
    """

    def __init__(
        self,
        target: str,
        *,
        history_size: int = 600,
        reconnect_initial_seconds: float = 0.2,
        reconnect_max_seconds: float = 5.0,
        tick_seconds: float = 1.0,
        monotonic: ReadClock,
        rng: Callable[[], float] = random.random,
        tls: TlsSettings | None = None,
    ) -> None:
        super().__init__(
            target,
            "upstream",
            logger=log,
            reconnect_initial_seconds=reconnect_initial_seconds,
            reconnect_max_seconds=reconnect_max_seconds,
            monotonic=monotonic,
            rng=rng,
            tls=tls,
        )
        self.latest: SnapshotEntry | None = None
        self.snapshots_received = 0
        self.failed_attempts = 0
        """Consecutive failed subscription attempts (0 while connected)."""
        self._history: deque[SnapshotEntry] = deque(maxlen=history_size)
        self._gaps: deque[tuple[int, int, int | None]] = deque(maxlen=MAX_GAPS)
        """(epoch, sequence, missed or None) of snapshots that came after missed ones."""
        self._changed = asyncio.Event()
        self._tick = tick_seconds
        self._last_notify = monotonic()

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Open the channel, start the subscription task and the idle ticker."""
        if self._tasks:
            return
        super().start()
        self._spawn(self._tick_loop(), "upstream ticker")

    # -- reading ---------------------------------------------------------------------------

    def fresh(self, stale_after: float) -> SnapshotEntry | None:
        """The latest snapshot if it is younger than `stale_after` seconds, else None."""
        entry = self.latest
        if entry is None or entry.age(self.monotonic()) > stale_after:
            return None
        return entry

    def history(self) -> list[SnapshotEntry]:
        """The ring of recent snapshots, oldest first."""
        return list(self._history)

    def history_after(self, sequence: int) -> list[SnapshotEntry] | None:
        """Snapshots after `sequence` from the ring; None when the ring no longer reaches back."""
        entries = list(self._history)
        if not entries:
            return None
        if entries[0].sequence > sequence + 1:
            return None
        return [entry for entry in entries if entry.sequence > sequence]

    @property
    def epoch(self) -> int | None:
        """The aggregator lifetime of the latest snapshot (None before the first)."""
        return None if self.latest is None else self.latest.epoch

    def gap_between(self, epoch: int, after: int, upto: int) -> tuple[bool, int | None]:
        """Whether snapshots of `epoch` in (after, upto] follow missed ones; (gap, missed)."""
        counts = [c for e, sequence, c in self._gaps if e == epoch and after < sequence <= upto]
        if not counts:
            return False, None
        return True, None if None in counts else sum(c or 0 for c in counts)

    def change_marker(self) -> asyncio.Event:
        """The event the next change sets; take it before checking state to never miss one."""
        return self._changed

    async def replay_from_aggregator(
        self, after_sequence: int, until_sequence: int, timeout: float = 5.0
    ) -> AsyncIterator[SnapshotEntry]:
        """Snapshots in (after_sequence, until_sequence) of the ring's epoch, from the aggregator.

        Used when a client resumes from further back than the gateway's ring. Ends quietly
        when the aggregator's history does not reach back either (the caller sees the gap
        in the sequences), or when the aggregator is in another lifetime by now.
        """
        epoch = self.epoch
        if self._channel is None or epoch is None:
            return
        stub = aggregator_pb2_grpc.AggregatorServiceStub(self._channel)
        call = stub.StreamSnapshots(
            aggregator_pb2.StreamSnapshotsRequest(after_sequence=after_sequence, after_epoch=epoch),
            timeout=timeout,
        )
        try:
            async for message in call:
                snapshot = message.snapshot
                if (
                    not message.replayed
                    or snapshot.epoch != epoch
                    or snapshot.sequence >= until_sequence
                ):
                    break
                yield SnapshotEntry(message.snapshot, self.monotonic())
        except grpc.aio.AioRpcError as error:
            log.warning("replay after %d from %s failed: %s", after_sequence, self.target, error)
        finally:
            call.cancel()

    # -- the subscription --------------------------------------------------------------------

    async def _run(self) -> None:
        delays = self._delays()
        resume = True
        assert self._channel is not None
        stub = aggregator_pb2_grpc.AggregatorServiceStub(self._channel)
        while True:
            request = aggregator_pb2.StreamSnapshotsRequest()
            if resume and self.latest is not None:
                request.after_sequence = self.latest.sequence
                request.after_epoch = self.latest.epoch
            try:
                call = stub.StreamSnapshots(request)
                async for message in call:
                    if self.state is not UpstreamState.CONNECTED:
                        self.connects += 1
                        self._set_state(UpstreamState.CONNECTED, None)
                        delays = self._delays()
                        self.failed_attempts = 0
                    self._publish(message.snapshot, message.gap, message.missed)
                reason = "the aggregator ended the subscription"
            except asyncio.CancelledError:
                raise
            except grpc.aio.AioRpcError as error:
                details = error.details() or ""
                plaintext = self.tls is None or not self.tls.enabled
                reason = connection_failure(details, plaintext=plaintext) or (
                    f"{error.code().name}: {details}"
                )
                if request.HasField("after_sequence") and error.code() in _RESUME_REJECTED:
                    resume = False  # the aggregator restarted or forgot; take the latest
                    self.error = reason
                    continue
            except Exception as error:  # keep the subscription alive whatever happens
                log.exception("upstream subscription to %s failed", self.target)
                reason = f"{type(error).__name__}: {error}"
            resume = True
            self.failed_attempts += 1
            self._set_state(
                UpstreamState.DISCONNECTED, f"aggregator {self.target} unreachable ({reason})"
            )
            pause = next(delays)
            log.debug(
                "upstream %s: attempt %d failed, retrying in %.2f s",
                self.target,
                self.failed_attempts,
                pause,
            )
            await asyncio.sleep(pause)

    def _publish(self, snapshot: snapshot_pb2.Snapshot, gap: bool = False, missed: int = 0) -> None:
        entry = SnapshotEntry(snapshot, self.monotonic())
        latest = self.latest
        if latest is not None and snapshot.epoch != latest.epoch:
            log.warning(
                "aggregator %s is in a new lifetime (epoch %d after %d, restarted?); the "
                "resume history starts afresh and streams are told of the gap",
                self.target,
                snapshot.epoch,
                latest.epoch,
            )
            self._history.clear()
            self._gaps.append((snapshot.epoch, snapshot.sequence, None))
        elif latest is not None and entry.sequence <= latest.sequence:
            same = next((old for old in self._history if old.sequence == entry.sequence), None)
            if same is not None and same.take_time == entry.take_time:
                return  # a replayed snapshot the ring already holds
            log.warning(
                "aggregator %s sequence went back from %d to %d (restarted?); "
                "clearing the resume history",
                self.target,
                latest.sequence,
                entry.sequence,
            )
            self._history.clear()
            self._gaps.append((snapshot.epoch, snapshot.sequence, None))
        elif gap and latest is not None:
            log.warning(
                "aggregator %s: %s snapshots after %d were missed (older than its history)",
                self.target,
                missed or "some",
                latest.sequence,
            )
            self._gaps.append((snapshot.epoch, snapshot.sequence, missed or None))
        if latest is not None:
            latest.compact()
        self._history.append(entry)
        self.latest = entry
        self.snapshots_received += 1
        self._notify()

    def wake_waiters(self) -> None:
        """Wake every client waiting on the change marker (news other than a snapshot)."""
        self._notify()

    def _notify(self) -> None:
        self._last_notify = self.monotonic()
        event, self._changed = self._changed, asyncio.Event()
        event.set()

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(self._tick)
            if self.monotonic() - self._last_notify >= self._tick * 0.9:
                self._notify()
