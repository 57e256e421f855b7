"""What the writer's worker thread does with each round: samples, the head, seals, retention.

`Recorder.record(message)` turns one round's wire snapshot into samples against the cursors,
encodes them as one head row, adds them to the open chunks (readers see them at once) and puts
the row in the **retry buffer**; then it writes the buffer's rows in order, one transaction
each. When the buffer is empty it seals the chunk spans that are complete and, once a minute of
round time, deletes at most `RETENTION_BATCH` expired chunks per tier. A round's time is its
take_time in milliseconds, kept strictly increasing (two rounds in one millisecond, or a wall
clock stepped back, get the previous round's time + 1 ms until the clock catches up).

While the store fails (it cannot be opened, a write or a seal fails), rounds go on: up to
`buffer_rounds` rounds wait in the buffer (or, while seals fail, in the open chunks) and are
retried with each new round; later rounds are **dropped** and counted, their samples never
computed, so the next round kept counts their events (the agents' totals are cumulative): only
their time resolution and their service samples are lost. The reason is kept (`degraded`) and
logged at most once a minute; a line says when the store is written again.

Pushed series (`pushed.py`): each round's changed series are upserted, one point per tier, in a
transaction of their own after the round's. While the store fails, the last point per series
and tier waits (so memory stays bounded by the series held): an older bucket of the same series
and tier read meanwhile is lost, the newest is written when the store comes back.

A store that could not be opened is tried again with a round at least OPEN_RETRY_SECONDS later
(opening reads the whole state back). Until then the recorder starts
from nothing; if the store then holds a history, the rounds buffered meanwhile are dropped
(their series ids and cursors would not match it) and the stored state is taken.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Sequence
from typing import NamedTuple

from metricsmesh.v1 import snapshot_pb2

from aggregator._errors import HistoryStoreError
from aggregator._history.codec import ServiceColumns, encode_cursor, encode_head
from aggregator._history.memory import NEVER, OpenChunks
from aggregator._history.model import Cursor, CursorRecord, SeriesKey, SeriesRecord
from aggregator._history.pushed import PushedCatalog, PushedPoint, PushedRecord, points_of
from aggregator._history.recovery import Recovered, recover
from aggregator._history.samples import (
    InstanceCursors,
    RoundSamples,
    RowMemo,
    round_samples,
    time_ms_of,
)
from aggregator._history.sealing import SealState, plan_seal, seal_target
from aggregator._history.store import (
    META_SEALED,
    META_SUMMARY_SINCE,
    META_TIERS,
    StoreOpener,
    meta_checkpoint,
    meta_complete,
)
from aggregator._ingest.model import PushedSeries
from mesh_common.clocks import ReadClock

_LOG = logging.getLogger("aggregator.history")

LOG_INTERVAL_SECONDS = 60.0
"""At most one line about a failing store per this many seconds."""
RETENTION_INTERVAL_MS = 60_000
"""Retention runs once per minute of round time."""
RETENTION_BATCH = 500
"""Most chunks one retention run deletes per tier (the rest waits for the next round)."""
OPEN_RETRY_SECONDS = 10.0
"""After a failed open, the next round that tries again comes at least this much later."""


class PendingRound(NamedTuple):
    """A round's head row waiting to be written, with the series it introduces."""

    time_ms: int
    data: bytes
    series: tuple[SeriesRecord, ...]


class Recorder:
    """The worker thread's state and work; every method runs on that one thread."""

    def __init__(
        self,
        opener: StoreOpener,
        memory: OpenChunks,
        *,
        buffer_rounds: int,
        monotonic: ReadClock,
        pushed: PushedCatalog | None = None,
    ) -> None:
        self._opener = opener
        self.pushed = pushed or PushedCatalog()
        """The pushed series stored (or waiting to be), shared with the readers."""
        self._pushed_records: dict[int, PushedRecord] = {}
        self._pushed_points: dict[tuple[int, int], PushedPoint] = {}
        """The points waiting to be written, the last per (series, tier)."""
        self._memory = memory
        self._tiers = memory.tiers
        self._buffer_rounds = buffer_rounds
        self._monotonic = monotonic
        self.store = memory.store
        self._series: dict[SeriesKey, SeriesRecord] = {}
        self._service_ids: dict[str, int] = {}
        """Each service's own series id, by name (a round looks up every service)."""
        self._keys: dict[tuple[str, str], SeriesKey] = {}
        self._memos: dict[str, RowMemo] = {}
        """The rows' totals at the last round (kept with the cursors, reset with them)."""
        self._instances = InstanceCursors()
        """The instances' cursors of the services of several instances (memory only)."""
        self._types: dict[str, str] = {}
        """Each service's registry type at its last round."""
        self._cursors: dict[SeriesKey, Cursor] = {}
        self._changed: set[SeriesKey] = set()
        self._last_ms = NEVER
        self._pending: collections.deque[PendingRound] = collections.deque()
        self._next_id = 1
        self._checkpoint_ms = [NEVER for _ in self._tiers]
        self._unsealed = 0
        """Rounds kept since a seal failed (they wait in the open chunks): capped as the buffer."""
        self._sealing_fails = False
        self._retention_due_ms = NEVER
        self.dropped = 0
        self.rounds_written = 0
        self.last_write_seconds = 0.0
        self.cpu_seconds = 0.0
        """The worker thread's CPU spent on rounds so far (samples, encoding, SQL, seals)."""
        self.degraded = ""
        self._logged_at = float("-inf")
        self._open_after = float("-inf")

    @property
    def buffered(self) -> int:
        """Rounds waiting in the retry buffer."""
        return len(self._pending)

    def open(self) -> None:
        """Open the store and take its state (or keep ours for an empty one); failures kept."""
        self._open_after = self._monotonic() + OPEN_RETRY_SECONDS
        try:
            store = self._opener()
        except HistoryStoreError as error:
            self._failed(str(error))
            return
        try:
            recovered = recover(store, self._tiers)
        except HistoryStoreError as error:
            store.close()
            self._failed(f"cannot read the history store {store.name}: {error}")
            return
        try:
            pushed = store.pushed_series()
        except HistoryStoreError as error:
            store.close()
            self._failed(f"cannot read the history store {store.name}: {error}")
            return
        if pushed:  # the store's ids win: what waits with ours is dropped
            self.pushed.reset(pushed)
            self._pushed_records.clear()
            self._pushed_points.clear()
        self.store = store
        if recovered.records or self._last_ms == NEVER:
            self._adopt(recovered)
        else:
            self._memory.use_store(store)  # an empty store: what we kept goes into it
        self._write_pending()

    def _adopt(self, recovered: Recovered) -> None:
        if self._pending:
            _LOG.warning(
                "history: the store holds a history; %d rounds kept while it could not be "
                "opened are dropped",
                len(self._pending),
            )
            self.dropped += len(self._pending)
            self._pending.clear()
        tiers_text = ",".join(tier.text for tier in self._tiers)
        if recovered.tiers_text and recovered.tiers_text != tiers_text:
            _LOG.info(
                "history: tiers changed from %s to %s (a new tier fills from now on)",
                recovered.tiers_text,
                tiers_text,
            )
        self._series = {record.key: record for record in recovered.records}
        self._service_ids = {r.service: r.id for r in recovered.records if not r.kind}
        self._types = {record.service: record.type for record in recovered.records}
        self._next_id = max((record.id for record in recovered.records), default=0) + 1
        self._cursors = dict(recovered.cursors)
        self._memos = {}
        self._instances = InstanceCursors()
        self._changed = set()
        self._last_ms = recovered.last_ms
        self._unsealed = 0
        self._memory.reset(recovered.records, self.store, recovered.summary_since_ms)
        self._memory.replace(recovered.open, recovered.sealed_ms, recovered.complete_ms)
        self._checkpoint_ms = list(recovered.checkpoint_ms)

    def record(self, message: snapshot_pb2.Snapshot, pushed: Sequence[PushedSeries] = ()) -> None:
        """Keep one round (or drop it when the buffer is full), then write, seal, expire.

        `pushed` are the series changed since the previous round (`SnapshotData.pushed`).
        """
        started, cpu = time.perf_counter(), time.thread_time()
        try:
            self._record(message)
            self._record_pushed(pushed)
        finally:
            self.last_write_seconds = time.perf_counter() - started
            self.cpu_seconds += time.thread_time() - cpu

    def _record(self, message: snapshot_pb2.Snapshot) -> None:
        if self.store is None:
            if self._monotonic() >= self._open_after:
                self.open()
        elif self.degraded and self._write_pending():  # retried before this round is judged
            self._seal()
        if len(self._pending) >= self._buffer_rounds or self._unsealed >= self._buffer_rounds:
            self.dropped += 1
            self._complain()
            return
        time_ms = max(time_ms_of(message.take_time), self._last_ms + 1)
        samples = round_samples(
            message, time_ms, self._cursors, self._keys, self._memos, self._instances
        )
        self._keep(samples)
        if self._write_pending() and self._seal() and self._expire():
            self._healthy()

    def _record_pushed(self, pushed: Sequence[PushedSeries]) -> None:
        """Upsert the changed series' points (one per tier); kept to retry when the store fails."""
        if pushed:
            ids, records = self.pushed.update(pushed)
            self._pushed_records.update((record.id, record) for record in records)
            waiting = self._pushed_points
            for series, each in zip(ids, pushed, strict=True):
                for point in points_of(series, each.value, round(each.time * 1000), self._tiers):
                    key = (point.series, point.tier)
                    before = waiting.get(key)
                    if before is None or before.time_ms <= point.time_ms:
                        waiting[key] = point
        store = self.store
        if store is None or not (self._pushed_points or self._pushed_records):
            return
        try:
            store.append_pushed(
                list(self._pushed_records.values()), list(self._pushed_points.values())
            )
        except HistoryStoreError as error:
            self._failed(f"writing pushed series failed: {error}")
            return
        self._pushed_records.clear()
        self._pushed_points.clear()

    def _keep(self, samples: RoundSamples) -> None:
        """Add the round to the cursors, the open chunks and the retry buffer."""
        records = self._records(samples)
        series = self._series
        kind_ids = [series[key].id for key in samples.kind_keys]
        service_ids = list(map(self._service_ids.__getitem__, samples.services))
        data = encode_head(
            kind_ids,
            samples.kind_samples,
            samples.resets,
            service_ids,
            ServiceColumns.of_rows(samples.time_ms, samples.service_rows),
            samples.lifetimes,
        )
        self._cursors.update(samples.cursors)
        self._changed.update(samples.cursors)
        self._last_ms = samples.time_ms
        self._memory.append_round(
            samples.time_ms, kind_ids, samples.kind_samples, service_ids, samples.service_rows,
            records,
        )  # fmt: skip
        self._pending.append(PendingRound(samples.time_ms, data, tuple(records)))
        if self._sealing_fails:
            self._unsealed += 1

    def _records(self, samples: RoundSamples) -> list[SeriesRecord]:
        """The series of the round that are new or whose type changed (ids given here)."""
        changed = []
        if not samples.types.items() <= self._types.items():  # rare: checked at C speed
            changed = self._services_changed(samples.types)
        series, types = self._series, self._types
        for key in samples.kind_keys:
            if key not in series:
                record = SeriesRecord(self._next_id, key.service, key.kind, types[key.service])
                self._next_id += 1
                series[key] = record
                changed.append(record)
        return changed

    def _services_changed(self, types: dict[str, str]) -> list[SeriesRecord]:
        """The records of services that are new or changed type (their kinds' too)."""
        changed = []
        retyped = set()
        for name, service_type in types.items():
            if name not in self._service_ids:
                record = SeriesRecord(self._next_id, name, "", service_type)
                self._next_id += 1
                self._series[record.key] = record
                self._service_ids[name] = record.id
                changed.append(record)
            elif self._types.get(name) != service_type:
                retyped.add(name)
        self._types.update(types)
        for key, record in self._series.items():
            if key.service in retyped and record.type != types[key.service]:
                self._series[key] = record = record._replace(type=types[key.service])
                changed.append(record)
        return changed

    def _write_pending(self) -> bool:
        """Write the buffered rounds in order; False (and the reason kept) when the store fails."""
        store = self.store
        if store is None:
            return False
        while self._pending:
            pending = self._pending[0]
            try:
                store.append_round(pending.time_ms, pending.data, pending.series)
            except HistoryStoreError as error:
                self._failed(str(error))
                return False
            self._pending.popleft()
            self.rounds_written += 1
        return True

    def _seal(self) -> bool:
        """Seal the complete chunk spans (none due: True); False when the store fails."""
        store, memory = self.store, self._memory
        target = seal_target(self._last_ms, self._tiers[0])
        if store is None or target <= memory.sealed_ms[0]:
            return True
        state = SealState(
            self._tiers, memory.open, memory.sealed_ms, memory.complete_ms, self._checkpoint_ms
        )
        plan = plan_seal(state, target)
        cursors = [
            CursorRecord(self._series[key].id, encode_cursor(self._cursors[key]), self._last_ms)
            for key in self._changed
        ]
        meta = {META_SEALED: str(target), META_TIERS: ",".join(t.text for t in self._tiers)}
        if memory.summary_since_ms > NEVER:
            meta[META_SUMMARY_SINCE] = str(memory.summary_since_ms)
        for index, tier in enumerate(self._tiers[1:], start=1):
            meta[meta_complete(tier)] = str(plan.state.complete_ms[index])
            meta[meta_checkpoint(tier)] = str(plan.state.checkpoint_ms[index])
        try:
            store.seal(plan.chunks, cursors, target, meta)
        except HistoryStoreError as error:
            self._sealing_fails = True
            self._failed(f"sealing failed: {error}")
            return False
        new = plan.state
        memory.replace(new.open, new.sealed_ms, new.complete_ms)
        self._checkpoint_ms = new.checkpoint_ms
        self._changed.clear()
        self._sealing_fails = False
        self._unsealed = 0
        return True

    def _expire(self) -> bool:
        """Once a minute of round time, delete expired chunks (a batch per tier)."""
        store = self.store
        if store is None or self._last_ms < self._retention_due_ms:
            return True
        more = False
        try:
            for tier in self._tiers:
                before = self._last_ms - tier.retention_ms
                deleted = store.delete_before(tier.key, before, RETENTION_BATCH)
                points = store.delete_pushed_before(tier.key, before, RETENTION_BATCH)
                more = more or max(deleted, points) >= RETENTION_BATCH
        except HistoryStoreError as error:
            self._failed(f"retention failed: {error}")
            return False
        self._retention_due_ms = self._last_ms + (0 if more else RETENTION_INTERVAL_MS)
        return True

    def _failed(self, reason: str) -> None:
        self.degraded = reason
        self._complain()

    def _complain(self) -> None:
        now = self._monotonic()
        if now - self._logged_at >= LOG_INTERVAL_SECONDS:
            self._logged_at = now
            _LOG.warning(
                "history degraded: %s (%d rounds buffered, %d dropped so far; rounds go on)",
                self.degraded,
                len(self._pending),
                self.dropped,
            )

    def _healthy(self) -> None:
        if self.degraded:
            _LOG.info(
                "history: the store is written again (%d rounds dropped so far)", self.dropped
            )
            self.degraded = ""
            self._logged_at = float("-inf")

    def finish(self) -> None:
        """Write what is buffered (one try) and close the store; a second call is harmless."""
        if self._pending:
            self._write_pending()
        if self._pending:
            _LOG.warning("history: %d rounds could not be written at shutdown", len(self._pending))
        store, self.store = self.store, None
        self._memory.use_store(None)
        if store is not None:
            store.close()
